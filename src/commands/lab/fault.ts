import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'
import {BaseCommand} from '../../base-command.js'
import type {LabFaultResult} from '../../lib/lab/faults.js'

export default class LabFault extends BaseCommand<typeof LabFault> {
  static override summary = 'Break something on a lab host, for reliability tests.'

  static override description = `Faults:
  sshd-down       stop sshd (connections are refused; open sessions stay)
  sshd-hang       freeze sshd with SIGSTOP (TCP connects, no SSH banner ever comes)
  etcd-down       stop the host's etcd member
  hostkey-change  give sshd a new host key (known_hosts no longer matches)
  asterisk-down   stop Asterisk (its calls are cut)
A reboot of the host clears all but hostkey-change. hactl lab heal NODE undoes them all.`

  static override examples = [
    '<%= config.bin %> <%= command.id %> ast2 sshd-hang',
    '<%= config.bin %> <%= command.id %> ast1 etcd-down',
  ]

  static override args = {
    node: Args.string({description: 'Lab host (ast1, kam1, spare1...).', required: true}),
    fault: Args.string({
      description: 'What to break.',
      required: true,
      options: ['sshd-down', 'sshd-hang', 'etcd-down', 'hostkey-change', 'asterisk-down'],
    }),
  }

  static override flags = {
    name: Flags.string({summary: 'Name of the lab.', default: 'hactl', env: 'HACTL_LAB'}),
  }

  public async run(): Promise<LabFaultResult> {
    const {labFault} = await import('../../lib/lab/faults.js')
    const result = await labFault({name: this.flags.name, node: this.args.node, fault: this.args.fault})
    if (!this.jsonEnabled())
      this.log(
        `${result.node}: ${result.fault} (faults now: ${result.faults.join(', ')}); undo with: ${this.config.bin} lab heal ${result.node}`,
      )
    return result
  }
}
