import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'
import {BaseCommand} from '../../base-command.js'
import type {LabCallsResult} from '../../lib/lab/calls.js'

export default class LabCalls extends BaseCommand<typeof LabCalls> {
  static override summary = 'Start simulated calls on a lab Asterisk host.'

  static override description = `The host's Asterisk stand-in counts them in \`core show channels count\` (2 channels per call:
a bridged call) and logs every call to /var/log/asterisk/calls.jsonl on the host (HOSTDIR/log/asterisk/
calls.jsonl from outside): "start", then "end" with outcome "finished" (ran its duration) or "cut"
(core stop now, systemctl stop, reboot). During a graceful shutdown new calls are refused and logged
as "refused". Exit status: 0 all started, 1 some were refused or Asterisk is not running.`

  static override examples = [
    '<%= config.bin %> <%= command.id %> ast1 5',
    '<%= config.bin %> <%= command.id %> ast2 2 --duration 120',
  ]

  static override args = {
    node: Args.string({description: 'Asterisk host (ast1...).', required: true}),
    count: Args.integer({description: 'How many calls to start.', required: true, min: 1, max: 10_000}),
  }

  static override flags = {
    name: Flags.string({summary: 'Name of the lab.', default: 'hactl', env: 'HACTL_LAB'}),
    duration: Flags.integer({summary: 'Seconds each call lasts.', default: 30, min: 0, max: 86_400}),
  }

  public async run(): Promise<LabCallsResult> {
    const {labCalls} = await import('../../lib/lab/calls.js')
    const result = await labCalls({
      name: this.flags.name,
      node: this.args.node,
      count: this.args.count,
      durationMs: this.flags.duration * 1000,
    })
    if (!this.jsonEnabled()) {
      this.log(
        `${result.node}: ${result.started.length} call(s) started for ${this.flags.duration} s${result.refused > 0 ? `, ${result.refused} refused (shutdown pending)` : ''}`,
      )
      this.log(`call log: ${result.callLog}`)
    }
    if (result.refused > 0) process.exitCode = 1
    return result
  }
}
