import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'
import {BaseCommand} from '../../base-command.js'
import type {ImportResult} from '../../lib/inventory/import.js'

export default class InventoryImport extends BaseCommand<typeof InventoryImport> {
  static override summary = 'Write a hactl.yaml from an Ansible inventory.'

  static override description = `Reads an Ansible inventory (INI or YAML, a file or a directory, with group_vars/ and host_vars/
beside it) the way Ansible does: groups, children, group and host vars, host ranges such as
coreos[0:5]. Groups become roles: by default the groups asterisk, kamailio and homer, and etcd on
every host (CoreOS runs etcd everywhere). Each inventory host in a role group becomes a node;
names that break the node-name rule (lower-case letters, digits, "-") are changed and reported.
ansible_host/ansible_ssh_host, ansible_user/ansible_ssh_user, ansible_port/ansible_ssh_port and
ansible_ssh_private_key_file become the node address and the ssh settings; a non-root user turns
on ssh.become (sudo -n).

The result is validated like any hactl.yaml before it is written. An existing file is kept unless
--force is given. Review the etcd, asterisk and kamailio sections afterwards.`

  static override examples = [
    '<%= config.bin %> <%= command.id %> inventory/hosts',
    '<%= config.bin %> <%= command.id %> hosts.yml --cluster prod --output prod.yaml',
    '<%= config.bin %> <%= command.id %> hosts --asterisk-group pbx --kamailio-group sip_proxy --etcd-group etcd_members',
    '<%= config.bin %> <%= command.id %> hosts --etcd-group none --output - > hactl.yaml',
  ]

  static override args = {
    inventory: Args.string({
      description: 'Ansible inventory file or directory (what you pass to ansible -i).',
      required: true,
    }),
  }

  static override flags = {
    output: Flags.string({
      char: 'o',
      summary: 'hactl.yaml to write ("-" for stdout).',
      default: 'hactl.yaml',
      helpValue: 'FILE',
    }),
    force: Flags.boolean({char: 'f', summary: 'Overwrite the output file if it exists.'}),
    cluster: Flags.string({
      summary: 'Cluster name (default: from the inventory file or directory name).',
      helpValue: 'NAME',
    }),
    format: Flags.string({
      summary: 'Inventory format (default: by extension, then by content).',
      options: ['ini', 'yaml'],
    }),
    'asterisk-group': Flags.string({
      summary: 'Group whose hosts get the asterisk role (repeatable; default asterisk).',
      multiple: true,
      helpValue: 'GROUP',
    }),
    'kamailio-group': Flags.string({
      summary: 'Group whose hosts get the kamailio role (repeatable; default kamailio).',
      multiple: true,
      helpValue: 'GROUP',
    }),
    'etcd-group': Flags.string({
      summary: 'Group whose hosts get the etcd role (repeatable; default all: every host; none: no host).',
      multiple: true,
      helpValue: 'GROUP',
    }),
    'homer-group': Flags.string({
      summary: 'Group whose hosts get the homer role (repeatable; default homer).',
      multiple: true,
      helpValue: 'GROUP',
    }),
  }

  public async run(): Promise<ImportResult> {
    const {importAnsibleInventory} = await import('../../lib/inventory/import.js')
    const f = this.flags
    const result = importAnsibleInventory({
      inventory: this.args.inventory,
      output: f.output,
      force: f.force,
      ...(f.cluster === undefined ? {} : {cluster: f.cluster}),
      ...(f.format === undefined ? {} : {format: f.format as 'ini' | 'yaml'}),
      groups: {
        ...(f['asterisk-group'] ? {asterisk: f['asterisk-group']} : {}),
        ...(f['kamailio-group'] ? {kamailio: f['kamailio-group']} : {}),
        ...(f['etcd-group'] ? {etcd: f['etcd-group']} : {}),
        ...(f['homer-group'] ? {homer: f['homer-group']} : {}),
      },
    })
    if (!this.jsonEnabled()) await this.render(result)
    return result
  }

  private async render(r: ImportResult): Promise<void> {
    const {renderTable} = await import('../../ui/table.js')
    // With --output -, stdout carries the YAML: the summary goes to stderr.
    const out = (s: string) => (r.output === null ? process.stderr : process.stdout).write(s)
    if (r.output === null) process.stdout.write(r.text)
    const table = await renderTable(
      ['NODE', 'HOST', 'PORT', 'USER', 'ROLES'],
      r.nodes.map((n) => [n.name, n.host, n.port, n.user ?? 'root', n.roles.join(', ')]),
    )
    out(
      `${r.output === null ? 'imported' : `wrote ${r.output}:`} cluster ${r.cluster}, ${r.nodes.length} node${r.nodes.length === 1 ? '' : 's'} from ${r.inventory}\n`,
    )
    out(`${table.replace(/\n?$/, '\n')}`)
    for (const x of r.renamed)
      out(`renamed: ${x.from} -> ${x.to} (node names are lower-case letters, digits and "-")\n`)
    if (r.skipped.length > 0) {
      out(
        `skipped (in no role group): ${r.skipped.map((s) => (s.groups.length > 0 ? `${s.host} (${s.groups.join(', ')})` : s.host)).join(', ')}\n`,
      )
    }
    for (const w of r.warnings) process.stderr.write(`warning: ${w}\n`)
    if (r.output !== null) out(`next: ${this.config.bin} config validate -c ${r.output}\n`)
  }
}
