import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'
import {BaseCommand} from '../../base-command.js'
import {waitLockFlag} from '../../ui/flags.js'
import {HactlError, InterruptedError, UserError} from '../../lib/errors.js'
import type {DrainRunOutput, DrainRunPlan} from '../../lib/ops/drain.js'
import type {DrainProgress} from '../../ui/drain-view.js'

export interface DrainJson {
  plan: DrainRunPlan
  /** null for --dry-run. */
  result: DrainRunOutput['result'] | null
  /** When Ctrl-C was answered with "put it back": the undrain that followed. */
  putBack?: DrainRunOutput['result'] | null
}

export default class NodeDrain extends BaseCommand<typeof NodeDrain> {
  static override interruptible = true

  static override summary = 'Take Asterisk boxes out of service for maintenance without cutting a call.'

  static override description = `For each box: preflight (the box and every Kamailio answer; the capacity guard keeps at least asterisk.minInService boxes in service), mark it draining in etcd, set it disabled on every Kamailio (kamcmd dispatcher.set_state d, read back and verified), wait for its calls to end, stop Asterisk gracefully (core stop gracefully) and wait until the unit is inactive, mark it drained.

The plan is printed first; --dry-run stops there. Draining never ends a call by itself: on --timeout the box stays out of rotation (marked draining), the calls left are reported and the exit status is 1; run drain again to keep waiting. --force overrides the capacity guard and ends the calls left at the timeout (core stop now); it asks for confirmation (--yes answers it).

Ctrl-C while waiting asks (on a terminal) whether to keep the box out of rotation or put it back; without a terminal the box stays out of rotation. Either way the state is printed, exit status 130.

Exit status: 0 drained (or nothing to do); 1 failure or timeout, nothing half done; 2 usage or config error; 3 some boxes drained, others not; 130 interrupted.`

  static override examples = [
    '<%= config.bin %> <%= command.id %> ast3',
    '<%= config.bin %> <%= command.id %> ast3 --reason "kernel update" --timeout 45m',
    '<%= config.bin %> <%= command.id %> ast3 ast4 --dry-run',
    '<%= config.bin %> <%= command.id %> ast3 --timeout 10m --force --yes',
  ]

  static override strict = false

  static override args = {
    nodes: Args.string({
      description: 'Asterisk boxes to drain: names, comma lists (ast3,ast4) or the asterisk role.',
      required: true,
    }),
  }

  static override flags = {
    timeout: Flags.custom<number>({
      summary: 'How long to wait for the calls to end (e.g. 90s, 30m; default: asterisk.drainTimeout, 30m).',
      helpValue: 'DURATION',
      parse: async (input) => (await import('../../ui/drain-view.js')).parseTimeoutFlag(input),
    })(),
    force: Flags.boolean({
      summary:
        'Override the capacity guard, and end the calls left at the timeout (core stop now). Asks first.',
    }),
    reason: Flags.string({
      summary: 'Why: stored with the maintenance mark in etcd, shown by hactl status.',
      helpValue: 'TEXT',
    }),
    'dry-run': Flags.boolean({summary: 'Print the plan and change nothing.'}),
    'wait-lock': waitLockFlag(),
  }

  public async run(): Promise<DrainJson> {
    const config = await this.hactlConfig()
    const {selectNodes} = await import('../../lib/select.js')
    const nodes = selectNodes(config, this.positionals)
    const {force, reason} = this.flags
    const dryRun = this.flags['dry-run']
    const json = this.jsonEnabled()
    const bin = this.config.bin
    if (reason !== undefined && reason.length > 1024)
      throw new UserError(
        `--reason is ${reason.length} characters long; at most 1024 fit in the maintenance mark`,
      )
    if (force && !this.flags.yes && !dryRun && !this.interactive) {
      throw new UserError(
        '--force may end calls and override the capacity guard, so it needs a confirmation, and there is no terminal to ask on',
        [
          `confirm on the command line: ${bin} node drain ${this.positionals.join(' ')} --force --yes`,
          `or see what it would do first: ${bin} node drain ${this.positionals.join(' ')} --force --dry-run`,
        ],
      )
    }
    const timeoutMs = this.flags.timeout ?? config.asterisk.drainTimeout
    const pool = await this.sshPool()
    if (this.interactive) {
      const {askPassphrase} = await import('../../ui/passphrase.js')
      pool.setPassphrasePrompt(askPassphrase)
    }
    const view = await import('../../ui/drain-view.js')
    const {drainNodes, undrainNodes} = await import('../../lib/ops/drain.js')
    const color = this.flags.color && !process.env.NO_COLOR
    const warn = (m: string) => process.stderr.write(`Warning: ${m}\n`)

    // Ctrl-C stops the run after the steps under way (the lib returns the state it left); a second one leaves at once.
    const tracker = view.drainStateTracker()
    const signal = this.watchInterrupts({
      describe: () => [
        ...tracker.lines(),
        `check with: ${bin} status ${nodes.map((n) => n.name).join(' ')}`,
      ],
    })

    const ctx = {config, pool, bin, argv: ['node', 'drain', ...this.argv]}
    let progress: DrainProgress | undefined
    let out: DrainRunOutput
    try {
      out = await drainNodes(
        ctx,
        {
          nodes,
          timeoutMs,
          force,
          ...(reason === undefined ? {} : {reason}),
          dryRun,
          signal,
          ...(this.flags['wait-lock'] === undefined ? {} : {waitLockMs: this.flags['wait-lock']}),
        },
        {
          onPlan: async (plan) => {
            if (!json) process.stderr.write(await view.renderPlan(plan, {color, dryRun}))
            if (dryRun || !plan.nodes.some((n) => n.action === 'apply')) return true
            if (plan.forceEffects.length > 0 && !this.flags.yes && !(await view.confirmForce(plan)))
              return false
            progress = await view.startDrainProgress(plan, {enabled: !json})
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

    if (out.cancelled) throw new HactlError('not confirmed: nothing was changed')
    const result = out.result
    if (!result) return {plan: out.plan, result: null}

    // Ctrl-C: keep the boxes out of rotation, or put them back (asked on a terminal only).
    const interrupted = result.nodes.filter(
      (n) =>
        n.outcome === 'interrupted' &&
        (n.mark !== null || Object.values(n.rotation).some((f) => f?.startsWith('D'))),
    )
    let putBack: DrainRunOutput | undefined
    if (interrupted.length > 0) {
      const names = interrupted.map((n) => n.node)
      const choice = this.interactive ? await view.askAfterInterrupt(names) : 'keep'
      if (choice === 'put-back') {
        putBack = await undrainNodes(
          {...ctx, argv: ['node', 'undrain', ...names]},
          {
            nodes: nodes.filter((n) => names.includes(n.name)),
            timeoutMs: Math.max(120_000, config.ssh.commandTimeout),
          },
          {onWarning: warn},
        )
      }
    }

    if (!json) {
      process.stdout.write(await view.renderSummary(out, {color}))
      if (putBack?.result) process.stdout.write(await view.renderSummary(putBack, {color}))
    }
    const json$: DrainJson = {plan: out.plan, result, ...(putBack ? {putBack: putBack.result ?? null} : {})}
    if (result.exitCode === 0) return json$
    if (json) {
      process.exitCode = result.exitCode
      return json$
    }
    throw outcomeError(result, bin, putBack !== undefined)
  }
}

function outcomeError(
  result: NonNullable<DrainRunOutput['result']>,
  bin: string,
  putBack: boolean,
): HactlError {
  const bad = result.nodes.filter((n) => n.outcome !== 'drained' && n.outcome !== 'nothing-to-do')
  const names = bad.map((n) => n.node).join(' ')
  if (result.exitCode === 130 && bad.length === 0) {
    const done = result.nodes.filter((n) => n.outcome === 'drained').map((n) => n.node)
    return new InterruptedError(
      `drain interrupted, but the steps under way completed it${done.length > 0 ? `: ${done.join(', ')} drained` : ''}`,
    )
  }
  if (result.exitCode === 130) {
    return putBack
      ? new InterruptedError(`drain of ${names} interrupted; put back in rotation as asked`)
      : new HactlError(
          `drain of ${names} interrupted; ${bad.length === 1 ? 'it stays' : 'they stay'} out of rotation, marked draining`,
          {
            exitCode: 130,
            suggestions: [
              `finish the drain: ${bin} node drain ${names}`,
              `or put ${bad.length === 1 ? 'it' : 'them'} back: ${bin} node undrain ${names}`,
            ],
          },
        )
  }
  const suggestions = [...new Set(bad.flatMap((n) => n.error?.suggestions ?? []))]
  return new HactlError(
    `drain ${result.exitCode === 3 ? 'partly failed' : 'failed'}: ${bad.map((n) => `${n.node}: ${n.message}`).join('; ')}`,
    {
      exitCode: result.exitCode,
      suggestions: suggestions.length > 0 ? suggestions : [`${bin} status ${names}`],
    },
  )
}
