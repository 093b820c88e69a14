import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'
import {BaseCommand} from '../base-command.js'
import {takeEarlyEtcdFacts} from '../prestart.js'
import type {ClusterStatus} from '../lib/ops/status-model.js'

export default class Status extends BaseCommand<typeof Status> {
  static override summary = 'Show the whole cluster in one view: etcd, Asterisk boxes, dispatchers, problems.'

  static override description = `Gathers facts from every host in parallel (one SSH round trip per host) and from etcd (once),
then prints a cluster line, a row per node and the problems found, worst first, each with the command
that fixes or explains it.

Exit status: 0 when everything is healthy, 1 when something is degraded or unreachable, 2 for usage
or config errors.`

  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> ast1 ast3',
    '<%= config.bin %> <%= command.id %> asterisk --json',
    '<%= config.bin %> <%= command.id %> --watch 2',
  ]

  static override strict = false

  static override args = {
    nodes: Args.string({description: 'Nodes or roles to show (default: all).', required: false}),
  }

  static override flags = {
    watch: Flags.boolean({
      summary: 'Redraw in place every --interval seconds until Ctrl-C (`--watch N` sets the interval).',
      exclusive: ['json'],
    }),
    interval: Flags.integer({summary: 'Seconds between redraws with --watch.', default: 2, min: 1, max: 3600}),
  }

  public override async init(): Promise<void> {
    // `--watch 5` is the documented short form of `--watch --interval 5`.
    const i = this.argv.findIndex((a) => a === '--watch')
    if (i !== -1 && /^\d+$/.test(this.argv[i + 1] ?? '')) this.argv.splice(i + 1, 0, '--interval')
    await super.init()
  }

  public async run(): Promise<ClusterStatus | undefined> {
    const config = await this.hactlConfig()
    const {selectNodes} = await import('../lib/select.js')
    const nodes = this.positionals.length > 0 ? selectNodes(config, this.positionals) : config.nodes
    const pool = await this.sshPool()
    const {gatherStatus} = await import('../lib/ops/status.js')
    // The first pass may take the etcd pass hactl's early start began (src/prestart.ts).
    const once = () => {
      const etcd = takeEarlyEtcdFacts(config)
      return gatherStatus(config, pool, {nodes, bin: this.config.bin, ...(etcd ? {etcd} : {})})
    }

    if (!this.flags.watch) {
      const status = await once()
      if (!this.jsonEnabled()) {
        const {renderStatus} = await import('../ui/status-view.js')
        process.stdout.write(`${await renderStatus(status, {color: this.flags.color && !process.env.NO_COLOR})}\n`)
      }
      if (!status.healthy) process.exitCode = 1
      return status
    }

    const {renderStatus} = await import('../ui/status-view.js')
    const tty = Boolean(process.stdout.isTTY)
    let stop = false
    const onSigint = () => {
      stop = true
    }
    process.once('SIGINT', onSigint)
    this.onCleanup(() => {
      process.removeListener('SIGINT', onSigint)
    })
    while (!stop) {
      // A host that failed last round is tried again (the pool remembers failed connects).
      pool.forgetFailures()
      const status = await once()
      const text = await renderStatus(status, {color: this.flags.color && !process.env.NO_COLOR})
      // Clear and redraw in place on a terminal; append otherwise so logs stay readable.
      process.stdout.write(tty ? `\u001B[H\u001B[2J${text}\n` : `${text}\n\n`)
      process.exitCode = status.healthy ? 0 : 1
      const until = Date.now() + this.flags.interval * 1000
      while (!stop && Date.now() < until) await new Promise((r) => setTimeout(r, 100))
    }
    return undefined
  }
}
