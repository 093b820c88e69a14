import * as Flags from '@oclif/core/flags'
import {BaseCommand} from '../../base-command.js'
import type {LabStatusResult} from '../../lib/lab/status.js'

export default class LabStatus extends BaseCommand<typeof LabStatus> {
  static override summary =
    'Show the hosts of a local lab: sshd, services, faults, etcd and dispatcher health.'

  static override description = `Asks each host's supervisor, checks sshd's banner, etcd's /health on every member and each
Kamailio's dispatcher list (through its ctl socket). This is the lab's own view, without SSH; for the
cluster as hactl sees it, run hactl status.

Exit status: 0 healthy, 1 something is down or faulty, 2 the lab is not up.`

  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --name second --json',
  ]

  static override flags = {
    name: Flags.string({summary: 'Name of the lab.', default: 'hactl', env: 'HACTL_LAB'}),
  }

  public async run(): Promise<LabStatusResult> {
    const {labStatus} = await import('../../lib/lab/status.js')
    const result = await labStatus({name: this.flags.name})
    if (!this.jsonEnabled()) {
      const {renderTable} = await import('../../ui/table.js')
      const rows = result.hosts.map((h) => [
        h.name,
        h.ip,
        h.kind,
        h.up ? (h.state ?? '') : 'down',
        h.sshd,
        Object.entries(h.units)
          .map(([n, u]) => `${n}:${u.state}${u.enabled ? '' : '(disabled)'}`)
          .join(' '),
        h.faults.join(',') || '-',
        h.bootId?.slice(0, 8) ?? '',
      ])
      process.stdout.write(
        `lab ${result.name} (${result.subnet})  ${result.configPath ? `config: ${result.configPath}` : ''}\n`,
      )
      process.stdout.write(
        `${await renderTable(['HOST', 'IP', 'KIND', 'STATE', 'SSHD', 'SERVICES', 'FAULTS', 'BOOT'], rows)}\n`,
      )
      process.stdout.write(
        `etcd: ${result.etcd.healthy}/${result.etcd.expected} healthy; members: ${result.etcd.members.join(', ') || '-'}\n`,
      )
      for (const [k, flags] of Object.entries(result.dispatcher)) {
        process.stdout.write(
          `${k} dispatcher: ${
            Object.entries(flags)
              .map(([u, f]) => `${u.replace(/^sip:|:5060$/g, '')}=${f}`)
              .join(' ') || 'no answer'
          }\n`,
        )
      }
      process.stdout.write(
        result.healthy ? 'healthy\n' : `problems:\n${result.problems.map((p) => `  ${p}`).join('\n')}\n`,
      )
    }
    if (!result.healthy) process.exitCode = 1
    return result
  }
}
