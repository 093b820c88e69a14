import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'
import {BaseCommand} from '../../base-command.js'
import {waitLockFlag} from '../../ui/flags.js'
import {HactlError, UserError} from '../../lib/errors.js'
import type {NodeAddResult} from '../../lib/ops/node-add.js'
import type {StepProgress} from '../../ui/node-view.js'

export default class NodeAdd extends BaseCommand<typeof NodeAdd> {
  static override interruptible = true

  static override summary = 'Add a host to the cluster: inventory, etcd member, Asterisk in rotation.'

  static override description = `Steps, each shown as it runs:
1. Trust the host: its SSH host key is shown (type, SHA256 fingerprint) and trusted after a confirmation, or when it matches --host-key-fingerprint (a mismatch is refused). It goes into ssh.knownHosts. A changed key of a known host is refused.
2. Facts: host name, OS, free disk at etcd.dataDir, the commands and units the roles need, clock offset; anything missing stops here, with what to install.
3. hactl.yaml gets the node (comments and layout kept). A name or host:port already there is refused before connecting.
4. etcd role (etcd must be healthy): member add as a learner; the host's etcd configured (etcd.discovery.file) with the existing members and initial-cluster-state existing, discovery removed; etcd started; promoted once in sync.
5. asterisk role: Asterisk enabled and started; the announce agent (hactl agent announce, with --weight) started in the background, pid in /run/hactl/announce-NAME.pid; the box added to each Kamailio's dispatcher list (the file, and dispatcher.add at runtime; other entries untouched); wait until every Kamailio lists it active.
A failure after the inventory step undoes what was done, newest first, and says what could not be undone.

The announce agent runs \`hactl\` on the host; when hactl is not installed there but the host sees this machine's hactl at the same path (the lab), that one runs. --agent-command names another.

Exit status: 0 added; 1 refused or failed (rolled back); 2 usage error, bad input, or a confirmation nobody can give; 130 interrupted (Ctrl-C: no step starts after the one running, what was done is rolled back; a second Ctrl-C quits at once).`

  static override examples = [
    '<%= config.bin %> <%= command.id %> ast5 --host 10.77.0.25',
    '<%= config.bin %> <%= command.id %> ast5 --host 10.77.0.25 --roles asterisk,etcd --weight 25',
    '<%= config.bin %> <%= command.id %> ast5 --host 10.77.0.25 --host-key-fingerprint SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s --yes',
    '<%= config.bin %> <%= command.id %> ast5 --host 10.77.0.25 --dry-run',
  ]

  static override args = {
    name: Args.string({description: 'Name of the new node (lower-case letters, digits, "-").', required: true}),
  }

  static override flags = {
    host: Flags.string({summary: 'Host name or IP address to reach the node at over SSH.', required: true, helpValue: 'HOST'}),
    roles: Flags.string({summary: 'Roles, comma-separated: asterisk, etcd, kamailio, homer.', default: 'asterisk', helpValue: 'ROLE,...'}),
    port: Flags.integer({summary: 'SSH port (default: ssh.port).', min: 1, max: 65535}),
    user: Flags.string({summary: 'SSH user (default: ssh.user).', helpValue: 'USER'}),
    weight: Flags.integer({summary: 'Dispatcher weight in percent, passed to the registration (asterisk role).', min: 1, max: 100}),
    'host-key-fingerprint': Flags.string({summary: 'Trust the host key without asking when it has this SHA256 fingerprint.', helpValue: 'SHA256:...'}),
    'agent-command': Flags.string({
      summary: 'How to run hactl on the host for the announce agent (default: hactl).',
      env: 'HACTL_AGENT_COMMAND',
      helpValue: 'COMMAND',
    }),
    'dry-run': Flags.boolean({summary: 'Print the plan and change nothing.'}),
    'wait-lock': waitLockFlag(),
  }

  public async run(): Promise<NodeAddResult> {
    const config = await this.hactlConfig()
    const json = this.jsonEnabled()
    const dryRun = this.flags['dry-run']
    const bin = this.config.bin
    const {parseRoles, addNodeToCluster} = await import('../../lib/ops/node-add.js')
    const roles = parseRoles(this.flags.roles)
    if (!dryRun && !this.flags.yes && !this.interactive) {
      throw new UserError('node add changes the cluster and asks for a confirmation, and there is no terminal to ask on', [
        `confirm on the command line: ${bin} node add ${this.argv.join(' ')} --yes`,
        `or see the plan first: ${bin} node add ${this.argv.join(' ')} --dry-run`,
      ])
    }
    const agentCommand = this.flags['agent-command']?.trim().split(/\s+/).filter((w) => w !== '')
    const pool = await this.sshPool()
    let askPassphrase: import('../../lib/ssh/pool.js').PassphrasePrompt | undefined
    if (this.interactive) {
      askPassphrase = (await import('../../ui/passphrase.js')).askPassphrase
      pool.setPassphrasePrompt(askPassphrase)
    }
    const view = await import('../../ui/node-view.js')
    const color = this.flags.color && !process.env.NO_COLOR
    const warn = (m: string) => process.stderr.write(`Warning: ${m}\n`)
    const tracker = view.nodeStepTracker(this.args.name, bin)
    const signal = this.watchInterrupts({
      firstMessage: 'stopping after the step running now (Ctrl-C again to quit at once)',
      describe: () => tracker.lines(),
    })
    let progress: StepProgress | undefined
    let result: NodeAddResult
    try {
      result = await addNodeToCluster(
        {
          config,
          pool,
          poolOptions: {
            ...(this.flags.verbose ? {log: (line: string) => process.stderr.write(`[ssh] ${line}\n`)} : {}),
            interactive: this.interactive,
            ...(askPassphrase ? {askPassphrase} : {}),
          },
          bin,
          argv: ['node', 'add', ...this.argv],
        },
        {
          name: this.args.name,
          host: this.flags.host,
          roles,
          ...(this.flags.port === undefined ? {} : {port: this.flags.port}),
          ...(this.flags.user === undefined ? {} : {user: this.flags.user}),
          ...(this.flags.weight === undefined ? {} : {weight: this.flags.weight}),
          ...(this.flags['host-key-fingerprint'] === undefined ? {} : {hostKeyFingerprint: this.flags['host-key-fingerprint']}),
          ...(agentCommand && agentCommand.length > 0 ? {agentCommand} : {}),
          dryRun,
          signal,
          ...(this.flags['wait-lock'] === undefined ? {} : {waitLockMs: this.flags['wait-lock']}),
        },
        {
          ...(this.interactive ? {confirmHostKey: view.askTrustHostKey} : {}),
          onPlan: async (plan) => {
            if (!json) process.stderr.write(await view.renderAddPlan(plan, {color, dryRun}))
            if (dryRun || plan.blockers.length > 0) return true
            if (!this.flags.yes && !(await view.confirmPlan(`Add ${plan.node.name} to the cluster?`))) return false
            progress = await view.startStepProgress(plan.steps, {enabled: !json, color})
            return true
          },
          onEvent: (e) => {
            tracker.onEvent(e)
            progress?.onEvent(e)
          },
          onWarning: warn,
        },
      )
    } finally {
      await progress?.finish()
    }
    if (result.cancelled) throw new HactlError('not confirmed: nothing was changed')
    if (!json && !dryRun) process.stdout.write(await view.renderAddSummary(result, {color}))
    return result
  }
}
