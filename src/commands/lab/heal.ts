import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'
import {BaseCommand} from '../../base-command.js'
import type {LabHealResult} from '../../lib/lab/faults.js'

export default class LabHeal extends BaseCommand<typeof LabHeal> {
  static override summary = 'Undo every fault on a lab host (or on all hosts).'

  static override description = `Resumes a frozen sshd, starts a stopped one, puts the original host key back, and starts etcd
and Asterisk again if a fault stopped them. Healing a host without faults does nothing.`

  static override examples = [
    '<%= config.bin %> <%= command.id %> ast2',
    '<%= config.bin %> <%= command.id %> all',
  ]

  static override args = {
    node: Args.string({description: 'Lab host, or "all".', required: true}),
  }

  static override flags = {
    name: Flags.string({summary: 'Name of the lab.', default: 'hactl', env: 'HACTL_LAB'}),
  }

  public async run(): Promise<LabHealResult> {
    const {labHeal} = await import('../../lib/lab/faults.js')
    const result = await labHeal({name: this.flags.name, node: this.args.node})
    if (!this.jsonEnabled()) {
      for (const h of result.hosts)
        if (h.healed.length > 0 || result.hosts.length === 1)
          this.log(
            `${h.node}: ${h.healed.length > 0 ? `healed ${h.healed.join(', ')}` : 'no faults; nothing to do'}`,
          )
    }
    return result
  }
}
