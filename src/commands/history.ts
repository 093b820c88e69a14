import * as Flags from '@oclif/core/flags'
import {BaseCommand} from '../base-command.js'
import type {ReadHistoryResult} from '../lib/history.js'

export default class History extends BaseCommand<typeof History> {
  static override summary = 'Show the audit history of the runs that changed the cluster, newest first.'

  static override description = `Every command that changes the cluster records one entry: who ran it and where, when, the
command line, the plan, the result per host and the duration. They are kept in
\${XDG_STATE_HOME:-~/.local/state}/hactl/history.jsonl on this machine (shown here) and, where etcd
answers, as the last 100 entries under etcd.prefixes.history for every operator.

Needs no hactl.yaml.`

  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --limit 5',
    '<%= config.bin %> <%= command.id %> --json',
  ]

  static override flags = {
    limit: Flags.integer({
      char: 'n',
      summary: 'Show at most this many entries.',
      default: 20,
      min: 1,
      max: 100_000,
    }),
  }

  public async run(): Promise<ReadHistoryResult> {
    const {readHistory, historyRow} = await import('../lib/history.js')
    const result = await readHistory({limit: this.flags.limit})
    if (!this.jsonEnabled()) {
      if (result.entries.length === 0) {
        process.stdout.write(`No history yet (${result.file}).\n`)
      } else {
        const {renderTable} = await import('../ui/table.js')
        const rows = result.entries.map((e) => {
          const r = historyRow(e, this.config.bin)
          return [r.when, r.who, r.command, r.result, r.duration]
        })
        const table = await renderTable(['WHEN', 'WHO', 'COMMAND', 'RESULT', 'DURATION'], rows, {
          align: ['left', 'left', 'left', 'left', 'right'],
        })
        process.stdout.write(`${table}\n`)
      }
      if (result.invalidLines > 0)
        process.stderr.write(
          `Warning: ${result.invalidLines} line(s) of ${result.file} are not history entries and were skipped\n`,
        )
    }
    return result
  }
}
