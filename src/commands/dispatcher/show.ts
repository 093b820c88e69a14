import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'
import {BaseCommand} from '../../base-command.js'
import {UserError} from '../../lib/errors.js'
import type {DispatcherShowResult} from '../../lib/ops/dispatcher-show.js'

export default class DispatcherShow extends BaseCommand<typeof DispatcherShow> {
  static override summary =
    "Show each Kamailio's dispatcher destinations side by side, marking disagreements."

  static override description = `Asks every Kamailio host (kamcmd dispatcher.list, one SSH round trip each, in parallel) and
prints one row per destination: each host's flags (AP active/probing, IP inactive, TP trying, DX
disabled...), priority and weight. A ≠ marks a row where the hosts disagree: one lacks the
destination, or the flags, priority or weight differ.

Exit status: 0 all hosts agree; 1 they disagree or a host cannot be asked; 2 usage or config error.`

  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --set 1 --json',
    '<%= config.bin %> <%= command.id %> kam1 kam2',
  ]

  static override strict = false

  static override args = {
    nodes: Args.string({
      description: 'Kamailio hosts to ask (default: every node with the kamailio role).',
      required: false,
    }),
  }

  static override flags = {
    set: Flags.integer({summary: 'Show only this dispatcher set.', min: 0, helpValue: 'ID'}),
  }

  public async run(): Promise<DispatcherShowResult> {
    const config = await this.hactlConfig()
    const {selectNodes} = await import('../../lib/select.js')
    const nodes = this.positionals.length > 0 ? selectNodes(config, this.positionals) : undefined
    const notKam = nodes?.filter((n) => !n.roles.includes('kamailio')) ?? []
    if (notKam.length > 0) {
      throw new UserError(`not a Kamailio host: ${notKam.map((n) => n.name).join(', ')}`, [
        `name Kamailio hosts, or the role: ${this.config.bin} dispatcher show kamailio`,
      ])
    }
    const pool = await this.sshPool()
    const {showDispatchers} = await import('../../lib/ops/dispatcher-show.js')
    const result = await showDispatchers(config, pool, {
      ...(nodes ? {nodes} : {}),
      ...(this.flags.set === undefined ? {} : {setId: this.flags.set}),
    })
    if (!this.jsonEnabled()) {
      const {renderShow} = await import('../../ui/dispatcher-view.js')
      process.stdout.write(await renderShow(result, {color: this.flags.color && !process.env.NO_COLOR}))
    }
    if (!result.agree) process.exitCode = 1
    return result
  }
}
