import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'
import {BaseCommand} from '../../base-command.js'
import {waitLockFlag} from '../../ui/flags.js'
import {HactlError, InterruptedError} from '../../lib/errors.js'
import type {DrainRunOutput, DrainRunPlan} from '../../lib/ops/drain.js'
import type {DrainProgress} from '../../ui/drain-view.js'

export interface UndrainJson {
  plan: DrainRunPlan
  /** null for --dry-run. */
  result: DrainRunOutput['result'] | null
}

export default class NodeUndrain extends BaseCommand<typeof NodeUndrain> {
  static override interruptible = true

  static override summary = 'Put drained Asterisk boxes back in service.'

  static override description = `For each box: start Asterisk if it is stopped and wait until its CLI answers, or cancel a pending shutdown (core abort shutdown); set it active and probing on every Kamailio (kamcmd dispatcher.set_state ap, read back and verified); clear its maintenance mark in etcd. A box already in service needs nothing and is left alone. The plan is printed first; --dry-run stops there.

Exit status: 0 back in service (or nothing to do); 1 failure; 2 usage or config error; 3 some boxes back, others not; 130 interrupted.`

  static override examples = [
    '<%= config.bin %> <%= command.id %> ast3',
    '<%= config.bin %> <%= command.id %> ast3,ast4 --dry-run',
    '<%= config.bin %> <%= command.id %> ast3 --json',
  ]

  static override strict = false

  static override args = {
    nodes: Args.string({
      description: 'Asterisk boxes to put back: names, comma lists (ast3,ast4) or the asterisk role.',
      required: true,
    }),
  }

  static override flags = {
    timeout: Flags.custom<number>({
      summary: 'How long to wait for a started Asterisk to answer its CLI (e.g. 90s; default 2m).',
      helpValue: 'DURATION',
      parse: async (input) => (await import('../../ui/drain-view.js')).parseTimeoutFlag(input),
    })(),
    'dry-run': Flags.boolean({summary: 'Print the plan and change nothing.'}),
    'wait-lock': waitLockFlag(),
  }

  public async run(): Promise<UndrainJson> {
    const config = await this.hactlConfig()
    const {selectNodes} = await import('../../lib/select.js')
    const nodes = selectNodes(config, this.positionals)
    const dryRun = this.flags['dry-run']
    const json = this.jsonEnabled()
    const bin = this.config.bin
    const pool = await this.sshPool()
    if (this.interactive) {
      const {askPassphrase} = await import('../../ui/passphrase.js')
      pool.setPassphrasePrompt(askPassphrase)
    }
    const view = await import('../../ui/drain-view.js')
    const {undrainNodes} = await import('../../lib/ops/drain.js')
    const color = this.flags.color && !process.env.NO_COLOR

    const tracker = view.drainStateTracker()
    const signal = this.watchInterrupts({
      describe: () => [...tracker.lines(), `check with: ${bin} status ${nodes.map((n) => n.name).join(' ')}`],
    })

    let progress: DrainProgress | undefined
    let out: DrainRunOutput
    try {
      out = await undrainNodes(
        {config, pool, bin, argv: ['node', 'undrain', ...this.argv]},
        {
          nodes,
          timeoutMs: this.flags.timeout ?? 120_000,
          dryRun,
          signal,
          ...(this.flags['wait-lock'] === undefined ? {} : {waitLockMs: this.flags['wait-lock']}),
        },
        {
          onPlan: async (plan) => {
            if (!json) process.stderr.write(await view.renderPlan(plan, {color, dryRun}))
            if (!dryRun && plan.nodes.some((n) => n.action === 'apply'))
              progress = await view.startDrainProgress(plan, {enabled: !json})
            return true
          },
          onEvent: (e) => {
            tracker.onEvent(e)
            progress?.onEvent(e)
          },
          onWarning: (m) => process.stderr.write(`Warning: ${m}\n`),
        },
      )
    } finally {
      await progress?.finish()
    }
    const result = out.result
    if (!result) return {plan: out.plan, result: null}
    if (!json) process.stdout.write(await view.renderSummary(out, {color}))
    if (result.exitCode === 0) return {plan: out.plan, result}
    if (json) {
      process.exitCode = result.exitCode
      return {plan: out.plan, result}
    }
    const bad = result.nodes.filter((n) => n.outcome !== 'undrained' && n.outcome !== 'nothing-to-do')
    if (result.exitCode === 130) {
      const done = result.nodes.filter((n) => n.outcome === 'undrained').map((n) => n.node)
      throw new InterruptedError(
        bad.length === 0
          ? `undrain interrupted, but the steps under way completed it${done.length > 0 ? `: ${done.join(', ')} back in service` : ''}`
          : `undrain of ${bad.map((n) => n.node).join(', ')} interrupted; ${bad.map((n) => n.node).join(', ')} ${bad.length === 1 ? 'stays' : 'stay'} out of rotation`,
      )
    }
    const suggestions = [...new Set(bad.flatMap((n) => n.error?.suggestions ?? []))]
    throw new HactlError(
      `undrain ${result.exitCode === 3 ? 'partly failed' : 'failed'}: ${bad.map((n) => `${n.node}: ${n.message}`).join('; ')}`,
      {
        exitCode: result.exitCode,
        suggestions:
          suggestions.length > 0 ? suggestions : [`${bin} status ${bad.map((n) => n.node).join(' ')}`],
      },
    )
  }
}
