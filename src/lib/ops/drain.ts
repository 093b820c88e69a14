import type {HactlConfig, ResolvedNode} from '../config/load.js'
import {
  abortShutdown,
  probeAsterisk,
  startAsterisk,
  stopAsteriskGracefully,
  stopAsteriskNow,
  waitForAsteriskExit,
  waitForCallsToEnd,
  type AsteriskState,
  type CallsProgress,
  type StopOutcome,
} from '../asterisk.js'
import type {EtcdHandle} from '../etcd/client.js'
import type {MaintenanceMark} from '../etcd/maintenance.js'
import {ExitCode, formatMs, HactlError, HostError, InterruptedError, UserError} from '../errors.js'
import {
  readDestinations,
  setStateEverywhere,
  stateArgOf,
  type DestinationView,
  type RotationChange,
} from '../kamailio.js'
import type {SshPool} from '../ssh/pool.js'
import {shellQuote} from '../ssh/quote.js'
import {checkCapacity, type CapacityCheck} from './capacity.js'
import {drainProbedNodes} from './targets.js'

/**
 * `hactl node drain` and `hactl node undrain`, as facts → plan → apply.
 *
 * Drain: mark the node draining in etcd, set it disabled on every Kamailio (verified), wait for its
 * calls to end while `core show channels count` still answers, `core stop gracefully`, wait for the
 * unit to go inactive, mark it drained. Nothing here ever ends a call unless `force` is set and the
 * timeout has passed.
 *
 * Undrain: start Asterisk (or abort a pending shutdown), set it active+probing on every Kamailio
 * (verified), clear the mark.
 */

// ---------------------------------------------------------------------------------------------
// Facts

/** What hactl knows about one Asterisk box before it plans. */
export interface DrainNodeFacts {
  name: string
  /** SSH to the box worked. */
  reachable: boolean
  error?: string
  /** What the SSH error suggests (e.g. the ssh-keygen line for a changed host key). */
  hints?: string[]
  asterisk: AsteriskState
  /** Keyed by Kamailio name; null where that Kamailio did not answer. */
  dispatcher: Record<string, DestinationView | null>
  mark?: MaintenanceMark
}

export interface KamailioFacts {
  name: string
  reachable: boolean
  error?: string
  /** What the SSH error suggests (e.g. the ssh-keygen line for a changed host key). */
  hints?: string[]
}

export interface DrainFacts {
  /** Every Asterisk box of the cluster (the capacity guard needs them all). */
  asterisk: DrainNodeFacts[]
  kamailio: KamailioFacts[]
}

/** In service: Asterisk running, not marked for maintenance, active on every Kamailio. */
export function isInService(f: DrainNodeFacts): boolean {
  if (!f.reachable || f.asterisk.state !== 'running' || f.mark) return false
  const views = Object.values(f.dispatcher)
  return views.length > 0 && views.every((v) => v !== null && v.state === 'active')
}

/** One line on a box's starting state, for the plan. */
export function describeState(f: DrainNodeFacts): string {
  if (!f.reachable) return `unreachable${f.error ? ` (${f.error})` : ''}`
  const a = f.asterisk
  const asterisk =
    a.state === 'running'
      ? `Asterisk running, ${a.activeCalls} ${a.activeCalls === 1 ? 'call' : 'calls'}`
      : a.state === 'stopped'
        ? 'Asterisk stopped'
        : a.state === 'shutdown-pending'
          ? 'Asterisk shutdown pending'
          : `Asterisk unknown (${a.detail})`
  const rotation = Object.entries(f.dispatcher)
    .map(([k, v]) => `${k} ${v === null ? '?' : (v.flags ?? 'absent')}`)
    .join(', ')
  const mark = f.mark
    ? `marked ${f.mark.state} by ${f.mark.by} since ${f.mark.since}${f.mark.reason ? ` (${f.mark.reason})` : ''}`
    : 'not marked'
  return `${asterisk}; ${rotation || 'no Kamailio'}; ${mark}`
}

// ---------------------------------------------------------------------------------------------
// Plans

export type DrainStepKind = 'mark-draining' | 'disable' | 'wait-calls' | 'wait-exit' | 'stop' | 'mark-drained'
export type UndrainStepKind = 'start' | 'abort-shutdown' | 'enable' | 'clear-mark'
export type StepKind = DrainStepKind | UndrainStepKind

export interface PlanStep {
  kind: StepKind
  /** One line for the plan and the progress row. */
  title: string
  /** The Kamailio hosts a `disable` or `enable` step changes. */
  kamailio?: string[]
}

export type NodePlan =
  | {node: string; action: 'apply'; state: string; steps: PlanStep[]}
  | {node: string; action: 'none'; state: string; reason: string}
  /** A preflight failure: nothing may change while any node is blocked. */
  | {node: string; action: 'blocked'; state: string; reason: string; suggestions: string[]}

export interface PlanOptions {
  bin?: string
  /** asterisk.sipPort, for the titles. */
  uri?: string
}

/** What reaching each Kamailio looks like from the facts: the ones that did not answer block everything. */
function kamailioBlock(
  node: string,
  state: string,
  kamailio: KamailioFacts[],
  bin: string,
): NodePlan | undefined {
  const down = kamailio.filter((k) => !k.reachable)
  if (down.length === 0) return undefined
  return {
    node,
    action: 'blocked',
    state,
    reason: `${down.map((k) => `${k.name} does not answer${k.error ? ` (${k.error})` : ''}`).join('; ')}: a box half out of rotation is worse than none`,
    suggestions: [
      ...down.flatMap((k) => k.hints ?? []),
      `check the Kamailio hosts: ${bin} status ${down.map((k) => k.name).join(' ')}`,
    ],
  }
}

/**
 * What stops both a drain and an undrain before any step: the box does not answer, a Kamailio
 * cannot be used, or Asterisk's CLI says something unknown.
 */
function commonBlock(f: DrainNodeFacts, state: NodePlan['state'], kamailio: KamailioFacts[], bin: string): NodePlan | undefined {
  if (!f.reachable) {
    return {
      node: f.name,
      action: 'blocked',
      state,
      reason: `${f.name} does not answer${f.error ? `: ${f.error}` : ''}`,
      suggestions: [...(f.hints ?? []), `${bin} status ${f.name}`],
    }
  }
  const blocked = kamailioBlock(f.name, state, kamailio, bin)
  if (blocked) return blocked
  if (f.asterisk.state === 'unknown') {
    return {
      node: f.name,
      action: 'blocked',
      state,
      reason: `cannot tell whether Asterisk runs on ${f.name}: the CLI answers "${f.asterisk.detail}"`,
      suggestions: ['check asterisk.cli in hactl.yaml', `${bin} status ${f.name}`],
    }
  }
  return undefined
}

/**
 * Plan the drain of one box from its facts. Pure: the same facts always give the same plan.
 * Starting states: in service; draining (a run was stopped by --timeout or Ctrl-C); drained;
 * shutdown pending (someone ran `core stop gracefully`); Asterisk down.
 */
export function planDrain(f: DrainNodeFacts, kamailio: KamailioFacts[], opts: PlanOptions = {}): NodePlan {
  const bin = opts.bin ?? 'hactl'
  const state = describeState(f)
  const blocked = commonBlock(f, state, kamailio, bin)
  if (blocked) return blocked
  const a = f.asterisk
  const toDisable = kamailio
    .map((k) => k.name)
    .filter((k) => {
      const v = f.dispatcher[k]
      return v !== undefined && v !== null && v.state !== 'disabled' && v.state !== 'absent'
    })
  const absent = kamailio.map((k) => k.name).filter((k) => f.dispatcher[k]?.state === 'absent')

  if (a.state === 'stopped' && toDisable.length === 0 && f.mark?.state === 'drained') {
    return {
      node: f.name,
      action: 'none',
      state,
      reason: `${f.name} is already drained (since ${f.mark.since}, by ${f.mark.by})`,
    }
  }

  const steps: PlanStep[] = []
  if (f.mark?.state !== 'draining') {
    steps.push({kind: 'mark-draining', title: `mark ${f.name} draining in etcd`})
  }
  if (toDisable.length > 0) {
    steps.push({
      kind: 'disable',
      title: `take ${f.name} out of rotation (set_state d) on ${toDisable.join(', ')}${absent.length > 0 ? ` (not in ${absent.join(', ')}'s list)` : ''}`,
      kamailio: toDisable,
    })
  }
  if (a.state === 'running') {
    steps.push({
      kind: 'wait-calls',
      title:
        a.activeCalls === 0
          ? `check that ${f.name} has no calls`
          : `wait for ${a.activeCalls} ${a.activeCalls === 1 ? 'call' : 'calls'} on ${f.name} to end`,
    })
    steps.push({
      kind: 'stop',
      title: `stop Asterisk on ${f.name} (core stop gracefully) and wait until it is inactive`,
    })
  } else if (a.state === 'shutdown-pending') {
    steps.push({
      kind: 'wait-exit',
      title: `a shutdown is pending on ${f.name}: wait for its calls to end and Asterisk to exit`,
    })
  }
  steps.push({kind: 'mark-drained', title: `mark ${f.name} drained in etcd`})
  return {node: f.name, action: 'apply', state, steps}
}

/** Plan the undrain of one box from its facts. Pure. */
export function planUndrain(f: DrainNodeFacts, kamailio: KamailioFacts[], opts: PlanOptions = {}): NodePlan {
  const bin = opts.bin ?? 'hactl'
  const state = describeState(f)
  const blocked = commonBlock(f, state, kamailio, bin)
  if (blocked) return blocked
  const a = f.asterisk
  const absent = kamailio.map((k) => k.name).filter((k) => f.dispatcher[k]?.state === 'absent')
  if (absent.length > 0) {
    return {
      node: f.name,
      action: 'blocked',
      state,
      reason: `${f.name} is not in the dispatcher list of ${absent.join(', ')}, so it cannot be put back in rotation there`,
      suggestions: [`add it to the list first: ${bin} dispatcher sync`],
    }
  }
  const toEnable = kamailio.map((k) => k.name).filter((k) => f.dispatcher[k]?.state !== 'active')
  const steps: PlanStep[] = []
  if (a.state === 'stopped')
    steps.push({kind: 'start', title: `start Asterisk on ${f.name} and wait until its CLI answers`})
  if (a.state === 'shutdown-pending')
    steps.push({
      kind: 'abort-shutdown',
      title: `cancel the pending shutdown on ${f.name} (core abort shutdown)`,
    })
  if (toEnable.length > 0) {
    steps.push({
      kind: 'enable',
      title: `put ${f.name} back in rotation (set_state ap) on ${toEnable.join(', ')}`,
      kamailio: toEnable,
    })
  }
  if (f.mark) steps.push({kind: 'clear-mark', title: `clear the ${f.mark.state} mark of ${f.name} in etcd`})
  if (steps.length === 0)
    return {node: f.name, action: 'none', state, reason: `${f.name} is already in service`}
  return {node: f.name, action: 'apply', state, steps}
}

export interface DrainRunPlan {
  operation: 'drain' | 'undrain'
  nodes: NodePlan[]
  /** Drain only. */
  capacity?: CapacityCheck
  force: boolean
  timeoutMs: number
  /** What `force` will do in this run; non-empty means the run must be confirmed (or --yes). */
  forceEffects: string[]
}

export interface BuildPlanOptions extends PlanOptions {
  operation: 'drain' | 'undrain'
  targets: string[]
  minInService: number
  force: boolean
  timeoutMs: number
}

/** The whole run's plan: each target's plan plus, for a drain, the capacity guard. Pure. */
export function buildRunPlan(facts: DrainFacts, opts: BuildPlanOptions): DrainRunPlan {
  const byName = new Map(facts.asterisk.map((f) => [f.name, f]))
  const nodes = opts.targets.map((t): NodePlan => {
    const f = byName.get(t)
    if (!f)
      return {
        node: t,
        action: 'blocked',
        state: 'unknown',
        reason: `${t} is not an Asterisk box`,
        suggestions: [],
      }
    return opts.operation === 'drain'
      ? planDrain(f, facts.kamailio, opts)
      : planUndrain(f, facts.kamailio, opts)
  })
  const forceEffects: string[] = []
  let capacity: CapacityCheck | undefined
  if (opts.operation === 'drain') {
    const changing = nodes.filter((n) => n.action === 'apply').map((n) => n.node)
    capacity = checkCapacity(
      facts.asterisk.map((f) => ({name: f.name, inService: isInService(f)})),
      changing,
      opts.minInService,
    )
    if (opts.force && !capacity.ok) forceEffects.push(`override the capacity guard: ${capacity.message}`)
    if (opts.force) {
      const withCalls = nodes.filter(
        (n) => n.action === 'apply' && n.steps.some((s) => s.kind === 'wait-calls' || s.kind === 'wait-exit'),
      )
      if (withCalls.length > 0) {
        forceEffects.push(
          `end the calls still up on ${withCalls.map((n) => n.node).join(', ')} after ${formatMs(opts.timeoutMs)} (core stop now)`,
        )
      }
    }
  }
  return {
    operation: opts.operation,
    nodes,
    ...(capacity ? {capacity} : {}),
    force: opts.force,
    timeoutMs: opts.timeoutMs,
    forceEffects,
  }
}

/** A preflight check failed (a host does not answer, a box is not what it should be). Nothing changed. Exit 1. */
export class PreflightError extends HactlError {
  readonly kind = 'preflight'
}

/** The capacity guard refused the drain. Nothing changed. Exit 1. */
export class CapacityError extends HactlError {
  readonly kind = 'capacity'
  constructor(
    message: string,
    readonly capacity: CapacityCheck,
    suggestions: string[],
  ) {
    super(message, {suggestions})
  }
}

/** The error that stops a run before it changes anything, if any. Pure. */
export function preflightError(plan: DrainRunPlan, bin = 'hactl'): HactlError | undefined {
  const blocked = plan.nodes.filter(
    (n): n is Extract<NodePlan, {action: 'blocked'}> => n.action === 'blocked',
  )
  if (blocked.length > 0) {
    return new PreflightError(
      `cannot ${plan.operation} ${blocked.map((b) => b.node).join(', ')}; nothing was changed: ${blocked.map((b) => b.reason).join('; ')}`,
      {
        suggestions: [...new Set(blocked.flatMap((b) => b.suggestions))],
      },
    )
  }
  const capacity = plan.capacity
  if (plan.operation === 'drain' && capacity && !capacity.ok && !plan.force) {
    const targets = plan.nodes.filter((n) => n.action === 'apply').map((n) => n.node)
    const others = capacity.outOfService.filter((n) => !targets.includes(n))
    return new CapacityError(`refusing to drain: ${capacity.message}; nothing was changed`, capacity, [
      others.length > 0
        ? `put a box back in service first: ${bin} node undrain ${others[0]}   (out of service: ${others.join(', ')})`
        : `add Asterisk boxes, or lower asterisk.minInService (${capacity.minInService}) in hactl.yaml`,
      `or drain anyway, leaving fewer boxes in service (asks for confirmation): ${bin} node drain ${targets.join(' ')} --force`,
    ])
  }
  return undefined
}

/** The plan as lines, for printing and for the history. */
export function planLines(plan: DrainRunPlan): string[] {
  const lines: string[] = []
  for (const n of plan.nodes) {
    lines.push(`${n.node}: ${n.state}`)
    if (n.action === 'none') lines.push(`  nothing to do: ${n.reason}`)
    else if (n.action === 'blocked') lines.push(`  cannot ${plan.operation}: ${n.reason}`)
    else n.steps.forEach((s, i) => lines.push(`  ${i + 1}. ${s.title}`))
  }
  if (plan.capacity && plan.nodes.some((n) => n.action === 'apply'))
    lines.push(`capacity: ${plan.capacity.message}`)
  if (plan.operation === 'drain' && waits(plan)) {
    lines.push(
      `timeout: ${formatMs(plan.timeoutMs)}${plan.force ? ', then end the remaining calls (--force)' : ', then leave the box out of rotation and report'}`,
    )
  }
  for (const e of plan.forceEffects) lines.push(`--force will ${e}`)
  return lines
}

/** Whether some node of the plan waits for calls or for Asterisk to stop (so --timeout matters). */
export function waits(plan: DrainRunPlan): boolean {
  return plan.nodes.some(
    (n) =>
      n.action === 'apply' &&
      n.steps.some((s) => s.kind === 'wait-calls' || s.kind === 'wait-exit' || s.kind === 'stop'),
  )
}

// ---------------------------------------------------------------------------------------------
// Results

export type NodeOutcome = 'drained' | 'undrained' | 'nothing-to-do' | 'timeout' | 'interrupted' | 'failed'

export interface NodeRunResult {
  node: string
  outcome: NodeOutcome
  /** One line for the summary. */
  message: string
  /** Calls that were up when hactl started waiting. */
  callsAtStart?: number
  /** Calls that ended normally while hactl waited. */
  callsDrained?: number
  /** Calls still up when the run stopped (timeout, interrupt). */
  callsLeft?: number
  /** Calls ended by `core stop now` (--force). */
  callsCut?: number
  durationMs: number
  /** Each Kamailio's flags for the node when the run ended (as read back), where known. */
  rotation: Record<string, string | null>
  asterisk: AsteriskState['state']
  mark: 'draining' | 'drained' | null
  error?: {kind: string; message: string; suggestions: string[]}
}

export interface DrainRunResult {
  operation: 'drain' | 'undrain'
  nodes: NodeRunResult[]
  durationMs: number
  exitCode: number
}

// ---------------------------------------------------------------------------------------------
// Apply

export interface DrainContext {
  config: HactlConfig
  pool: SshPool
  /** The program name, for the hints (`hactl`). */
  bin?: string
  /** argv after the program name, for the maintenance mark and the history. */
  argv?: string[]
}

export interface DrainOptions {
  nodes: ResolvedNode[]
  /** Drain: how long to wait for the calls to end; undrain: for Asterisk to answer. */
  timeoutMs: number
  force?: boolean
  reason?: string
  dryRun?: boolean
  /** Ctrl-C: the wait stops, the box stays out of rotation, the node's outcome is `interrupted`. */
  signal?: AbortSignal
  /** Default config.asterisk.pollInterval. */
  pollMs?: number
  /** Wait this long for the cluster lock when another run holds it (default: refuse at once). */
  waitLockMs?: number
}

export type StepEvent =
  | {type: 'start'; node: string; step: StepKind}
  | {
      type: 'progress'
      node: string
      step: StepKind
      callsLeft: number
      channelsLeft: number
      elapsedMs: number
    }
  | {type: 'done'; node: string; step: StepKind; detail?: string}
  | {type: 'skip'; node: string; step: StepKind; detail: string}
  | {type: 'fail'; node: string; step: StepKind; detail: string}

export interface DrainHooks {
  /**
   * The plan, before anything changes (not called when preflight fails). Return false to stop
   * there: the run is cancelled, nothing changed. Confirmation of `plan.forceEffects` goes here.
   */
  onPlan?(plan: DrainRunPlan): Promise<boolean | void> | boolean | void
  onEvent?(e: StepEvent): void
  /** Non-fatal trouble (history not written, lock not released...). */
  onWarning?(message: string): void
}

export interface DrainRunOutput {
  plan: DrainRunPlan
  /** Undefined for --dry-run and for a cancelled run. */
  result?: DrainRunResult
  cancelled?: boolean
}

/** Drain `opts.nodes`: see the module comment. */
export async function drainNodes(
  ctx: DrainContext,
  opts: DrainOptions,
  hooks: DrainHooks = {},
): Promise<DrainRunOutput> {
  return runOperation('drain', ctx, opts, hooks)
}

/** Put `opts.nodes` back in service. */
export async function undrainNodes(
  ctx: DrainContext,
  opts: DrainOptions,
  hooks: DrainHooks = {},
): Promise<DrainRunOutput> {
  return runOperation('undrain', ctx, opts, hooks)
}

interface RunState {
  ctx: DrainContext
  opts: DrainOptions
  hooks: DrainHooks
  etcd: EtcdHandle
  kamailio: ResolvedNode[]
  pollMs: number
  prefix: string
  command: string
}

async function runOperation(
  operation: 'drain' | 'undrain',
  ctx: DrainContext,
  opts: DrainOptions,
  hooks: DrainHooks,
): Promise<DrainRunOutput> {
  const {config, pool} = ctx
  const bin = ctx.bin ?? 'hactl'
  const notAsterisk = opts.nodes.filter((n) => !n.roles.includes('asterisk'))
  if (notAsterisk.length > 0) {
    throw new UserError(
      `${notAsterisk.map((n) => `${n.name} (${n.roles.join(', ')})`).join(', ')}: not an Asterisk box; only nodes with the asterisk role can be ${operation}ed`,
      [
        `the Asterisk boxes: ${
          config.nodes
            .filter((n) => n.roles.includes('asterisk'))
            .map((n) => n.name)
            .join(', ') || '(none)'
        }`,
      ],
    )
  }
  if (opts.nodes.length === 0) throw new UserError(`no node to ${operation}`)

  const started = Date.now()
  const minInService = operation === 'drain' ? config.asterisk.minInService : 0
  // SSH connections open while etcd opens and the lock is taken: connecting is read-only, and the
  // facts themselves are still gathered under the lock. A host that fails here is not retried.
  const connectErrors = new Map<string, unknown>()
  const warm = Promise.all(
    drainProbedNodes(config, opts.nodes, minInService).map((n) =>
      pool.connect(n).catch((error: unknown) => void connectErrors.set(n.name, error)),
    ),
  )
  const {openClusterEtcd, takeClusterLock} = await import('./node-shared.js')
  const etcd = await openClusterEtcd(config, pool)
  let lock: {release(): Promise<void>} | undefined
  try {
    const command = [bin, ...(ctx.argv ?? ['node', operation, ...opts.nodes.map((n) => n.name)])]
      .map((a) => shellQuote(a))
      .join(' ')
    // A dry run changes nothing, so it need not wait for (or block) anyone else's run.
    // One drain or undrain at a time in the whole cluster: two operators draining the last two
    // boxes must not both pass the guard.
    if (!opts.dryRun) {
      lock = await takeClusterLock(ctx.config, etcd, command, hooks.onWarning, opts.waitLockMs ?? 0)
    }
    const state: RunState = {
      ctx,
      opts,
      hooks,
      etcd,
      kamailio: config.nodes.filter((n) => n.roles.includes('kamailio')),
      pollMs: opts.pollMs ?? config.asterisk.pollInterval,
      prefix: config.etcd.prefixes.maintenance,
      // The mark keeps the command line for `hactl status`; the schema caps it.
      command: command.length > 4096 ? `${command.slice(0, 4093)}...` : command,
    }
    await warm
    const facts = await gatherDrainFacts(ctx, etcd, {minInService, targets: opts.nodes, connectErrors})
    const plan = buildRunPlan(facts, {
      operation,
      targets: opts.nodes.map((n) => n.name),
      minInService: config.asterisk.minInService,
      force: Boolean(opts.force),
      timeoutMs: opts.timeoutMs,
      bin,
    })
    const error = preflightError(plan, bin)
    if (error) throw error
    if (opts.dryRun) {
      await hooks.onPlan?.(plan)
      return {plan}
    }
    const go = await hooks.onPlan?.(plan)
    if (go === false) return {plan, cancelled: true}
    if (opts.signal?.aborted) throw new InterruptedError(`interrupted before anything changed`)

    const factsByName = new Map(facts.asterisk.map((f) => [f.name, f]))
    const results = await Promise.all(
      plan.nodes.map(async (np): Promise<NodeRunResult> => {
        const node = opts.nodes.find((n) => n.name === np.node)!
        const f = factsByName.get(np.node)!
        if (np.action !== 'apply') return nothingToDo(f, np.action === 'none' ? np.reason : '')
        try {
          return operation === 'drain'
            ? await applyDrain(state, node, f, np.steps)
            : await applyUndrain(state, node, f, np.steps)
        } catch (error) {
          // A step threw: report the node as failed with what is known, never lose the other nodes.
          return failedResult(np.node, f, error, Date.now() - started)
        }
      }),
    )
    const result: DrainRunResult = {
      operation,
      nodes: results,
      durationMs: Date.now() - started,
      // Ctrl-C is exit 130 even when the steps under way happened to finish the work.
      exitCode: opts.signal?.aborted ? ExitCode.interrupted : exitCodeOf(results),
    }
    if (plan.nodes.some((n) => n.action === 'apply')) {
      await recordHistory(state, plan, result, started).catch((e: unknown) =>
        hooks.onWarning?.(`history not written: ${(e as Error).message}`),
      )
    }
    return {plan, result}
  } finally {
    if (lock)
      await lock
        .release()
        .catch((e: unknown) =>
          hooks.onWarning?.(`could not release the cluster lock: ${(e as Error).message}`),
        )
    await etcd.close().catch(() => undefined)
  }
}

function exitCodeOf(results: NodeRunResult[]): number {
  if (results.some((r) => r.outcome === 'interrupted')) return ExitCode.interrupted
  const bad = results.filter((r) => r.outcome === 'failed' || r.outcome === 'timeout')
  if (bad.length === 0) return ExitCode.ok
  const good = results.filter((r) => r.outcome === 'drained' || r.outcome === 'undrained')
  return good.length > 0 ? ExitCode.partial : ExitCode.failure
}

function nothingToDo(f: DrainNodeFacts, reason: string): NodeRunResult {
  return {
    node: f.name,
    outcome: 'nothing-to-do',
    message: `nothing to do: ${reason}`,
    durationMs: 0,
    rotation: rotationOf(f.dispatcher),
    asterisk: f.asterisk.state,
    mark: f.mark?.state ?? null,
  }
}

function failedResult(node: string, f: DrainNodeFacts, error: unknown, durationMs: number): NodeRunResult {
  return {
    node,
    outcome: 'failed',
    message: (error as Error).message,
    durationMs,
    rotation: rotationOf(f.dispatcher),
    asterisk: 'unknown',
    mark: f.mark?.state ?? null,
    error: errorInfo(error, []),
  }
}

function errorInfo(error: unknown, fallback: string[]): NonNullable<NodeRunResult['error']> {
  const suggestions = error instanceof HactlError ? error.suggestions : []
  return {
    kind: error instanceof HostError ? error.kind : error instanceof HactlError ? error.name : 'internal',
    message: (error as Error).message,
    suggestions: suggestions.length > 0 ? suggestions : fallback,
  }
}

function rotationOf(dispatcher: Record<string, DestinationView | null>): Record<string, string | null> {
  return Object.fromEntries(Object.entries(dispatcher).map(([k, v]) => [k, v?.flags ?? null]))
}

/** Probe every Asterisk box (calls), every Kamailio (its dispatcher list) and etcd (the marks), all at once. */
export async function gatherDrainFacts(
  ctx: DrainContext,
  etcd: EtcdHandle,
  opts: {minInService: number; targets: ResolvedNode[]; connectErrors?: Map<string, unknown>},
): Promise<DrainFacts> {
  const {config, pool} = ctx
  const probed = drainProbedNodes(config, opts.targets, opts.minInService)
  const asteriskNodes = probed.filter((n) => n.roles.includes('asterisk'))
  const kamailioNodes = probed.filter((n) => n.roles.includes('kamailio'))
  const connectError = (n: ResolvedNode): void => {
    const e = opts.connectErrors?.get(n.name)
    if (e !== undefined) throw e
  }
  const {getMarks} = await import('../etcd/marks.js')
  const [asterisk, kamailio, marks] = await Promise.all([
    Promise.all(
      asteriskNodes.map(async (n) => {
        try {
          connectError(n)
          return {name: n.name, reachable: true, asterisk: await probeAsterisk(ctx, n)} as const
        } catch (error) {
          return {
            name: n.name,
            reachable: false,
            error: shortError(error),
            ...errorHints(error),
            asterisk: {state: 'unknown', detail: 'unreachable'} as AsteriskState,
          } as const
        }
      }),
    ),
    Promise.all(
      kamailioNodes.map(async (k) => {
        try {
          connectError(k)
          return {name: k.name, reachable: true, views: await readDestinations(ctx, k, asteriskNodes)}
        } catch (error) {
          return {name: k.name, reachable: false, error: shortError(error), ...errorHints(error), views: undefined}
        }
      }),
    ),
    getMarks(etcd, config.etcd.prefixes.maintenance),
  ])
  const markOf = new Map(marks.map((m) => [m.node, m]))
  return {
    asterisk: asterisk.map((a): DrainNodeFacts => {
      const mark = markOf.get(a.name)
      return {
        name: a.name,
        reachable: a.reachable,
        ...('error' in a && a.error ? {error: a.error} : {}),
        ...('hints' in a && a.hints ? {hints: a.hints} : {}),
        asterisk: a.asterisk,
        dispatcher: Object.fromEntries(kamailio.map((k) => [k.name, k.views?.get(a.name) ?? null])),
        ...(mark ? {mark} : {}),
      }
    }),
    kamailio: kamailio.map((k) => ({
      name: k.name,
      reachable: k.reachable,
      ...('error' in k && k.error ? {error: k.error} : {}),
      ...('hints' in k && k.hints ? {hints: k.hints} : {}),
    })),
  }
}

/** The suggestions a HactlError carries, as facts' `hints` (none for other errors). */
function errorHints(error: unknown): {hints?: string[]} {
  return error instanceof HactlError && error.suggestions.length > 0 ? {hints: [...error.suggestions]} : {}
}

function shortError(error: unknown): string {
  const m = (error as Error).message ?? String(error)
  return m.split('\n')[0] ?? m
}

/** Emits the events of one node's steps. */
class StepReporter {
  private current: StepKind | undefined
  /** The step running now, or the last one that ended. */
  step: StepKind | undefined
  constructor(
    private readonly node: string,
    private readonly steps: PlanStep[],
    private readonly onEvent: ((e: StepEvent) => void) | undefined,
  ) {}

  start(step: StepKind): void {
    this.current = step
    this.step = step
    this.onEvent?.({type: 'start', node: this.node, step})
  }

  progress(p: CallsProgress): void {
    if (this.current) this.onEvent?.({type: 'progress', node: this.node, step: this.current, ...p})
  }

  done(detail?: string): void {
    if (this.current)
      this.onEvent?.({type: 'done', node: this.node, step: this.current, ...(detail ? {detail} : {})})
    this.current = undefined
  }

  fail(detail: string): void {
    if (this.current) this.onEvent?.({type: 'fail', node: this.node, step: this.current, detail})
    this.current = undefined
  }

  /** Mark every step after `after` (or all, when undefined) skipped. */
  skipRest(after: StepKind | undefined, detail: string): void {
    const i = after === undefined ? -1 : this.steps.findIndex((s) => s.kind === after)
    for (const s of this.steps.slice(i + 1))
      this.onEvent?.({type: 'skip', node: this.node, step: s.kind, detail})
  }
}

async function applyDrain(
  run: RunState,
  node: ResolvedNode,
  f: DrainNodeFacts,
  steps: PlanStep[],
): Promise<NodeRunResult> {
  const {ctx, opts, etcd, prefix} = run
  const {setMark, clearMark} = await import('../etcd/marks.js')
  const started = Date.now()
  const report = new StepReporter(node.name, steps, run.hooks.onEvent)
  const rotation = rotationOf(f.dispatcher)
  let mark: NodeRunResult['mark'] = f.mark?.state ?? null
  let asterisk: AsteriskState['state'] = f.asterisk.state
  let callsAtStart: number | undefined = f.asterisk.state === 'running' ? f.asterisk.activeCalls : undefined
  let callsLeft = 0
  let callsCut: number | undefined
  let deadline = 0
  // The mark keeps the time the drain began, through draining → drained and later runs.
  let since = f.mark?.since
  // The mark keeps the reason given now, else the one it had, and when the drain began.
  const writeMark = (state: 'draining' | 'drained') =>
    setMark(etcd, prefix, {
      node: node.name,
      state,
      ...(opts.reason === undefined ? (f.mark?.reason ? {reason: f.mark.reason} : {}) : {reason: opts.reason}),
      command: run.command,
      ...(since ? {since} : {}),
    })
  const result = (
    outcome: NodeOutcome,
    message: string,
    extra: Partial<NodeRunResult> = {},
  ): NodeRunResult => ({
    node: node.name,
    outcome,
    message,
    ...(callsAtStart === undefined
      ? {}
      : {callsAtStart, callsDrained: Math.max(0, callsAtStart - callsLeft - (callsCut ?? 0))}),
    ...(outcome === 'timeout' || outcome === 'interrupted' ? {callsLeft} : {}),
    ...(callsCut === undefined ? {} : {callsCut}),
    durationMs: Date.now() - started,
    rotation,
    asterisk,
    mark,
    ...extra,
  })
  const stopped = (step: StepKind, outcome: 'timeout' | 'interrupted', what: string): NodeRunResult => {
    const out = Object.entries(rotation)
      .filter(([, v]) => v?.startsWith('D') || v === null)
      .map(([k]) => k)
    const msg =
      outcome === 'timeout'
        ? `timed out after ${formatMs(opts.timeoutMs)} with ${what}; ${node.name} stays out of rotation (marked draining)`
        : `interrupted with ${what}; ${node.name} is out of rotation on ${out.join(', ') || 'no Kamailio'} and marked ${mark ?? 'nothing'}`
    report.fail(msg)
    report.skipRest(step, outcome)
    return result(outcome, msg, {
      error: {
        kind: outcome,
        message: msg,
        suggestions:
          outcome === 'timeout'
            ? [
                `keep waiting: ${run.ctx.bin ?? 'hactl'} node drain ${node.name}`,
                `end the calls: ${run.ctx.bin ?? 'hactl'} node drain ${node.name} --force`,
                `put it back: ${run.ctx.bin ?? 'hactl'} node undrain ${node.name}`,
              ]
            : [
                `keep waiting: ${run.ctx.bin ?? 'hactl'} node drain ${node.name}`,
                `put it back: ${run.ctx.bin ?? 'hactl'} node undrain ${node.name}`,
              ],
      },
    })
  }

  // A step threw (SSH lost, etcd down...): report where the box was left, never a bare error.
  const crashed = (error: unknown): NodeRunResult => {
    const e = error as Error
    const out = Object.entries(rotation)
      .filter(([, v]) => v === null || v.startsWith('D'))
      .map(([k]) => k)
    const msg = `${e.message}; ${node.name} is out of rotation on ${out.join(', ') || 'no Kamailio'}, marked ${mark ?? 'nothing'}, Asterisk ${asterisk}`
    report.fail(msg)
    report.skipRest(report.step, 'stopped')
    return result('failed', msg, {
      error: errorInfo(error, [
        `${ctx.bin ?? 'hactl'} status ${node.name}`,
        `then again: ${ctx.bin ?? 'hactl'} node drain ${node.name}`,
      ]),
    })
  }
  try {
    for (const step of steps) {
      // Ctrl-C is honoured between steps, except between the mark and the Kamailio change: those
      // two are quick and a box marked draining but still in rotation is a needless half state.
      if (opts.signal?.aborted && step.kind !== 'disable' && step.kind !== 'mark-drained') {
        if (step === steps[0]) {
          report.skipRest(undefined, 'interrupted')
          return result('interrupted', `interrupted before anything changed on ${node.name}`)
        }
        report.start(step.kind)
        return stopped(step.kind, 'interrupted', `${callsLeft} ${callsLeft === 1 ? 'call' : 'calls'} left`)
      }
      report.start(step.kind)
      switch (step.kind) {
        case 'mark-draining': {
          const stored = await writeMark('draining')
          since = stored.since
          mark = 'draining'
          report.done()
          break
        }
        case 'disable': {
          const kams = run.kamailio.filter((k) => step.kamailio?.includes(k.name))
          const changes = await setStateEverywhere(ctx, kams, node, 'd')
          for (const c of changes) if (c.view) rotation[c.kamailio] = c.view.flags
          const failed = changes.filter((c) => !c.ok)
          if (failed.length > 0) {
            const rollback = await rollBackDrain(run, node, f, changes, mark !== (f.mark?.state ?? null), {
              setMark,
              clearMark,
            })
            for (const [k, v] of Object.entries(rollback.rotation)) rotation[k] = v
            mark = rollback.mark
            const msg = `could not take ${node.name} out of rotation on ${failed.map((c) => c.kamailio).join(', ')}: ${failed.map((c) => c.error?.message ?? '').join('; ')}; ${rollback.message}`
            report.fail(msg)
            report.skipRest(step.kind, 'stopped: a box half out of rotation is worse than none')
            return result('failed', msg, {
              error: {
                kind: failed[0]?.error?.kind ?? 'set-state-failed',
                message: msg,
                suggestions: [
                  `${ctx.bin ?? 'hactl'} status ${node.name}`,
                  `then again: ${ctx.bin ?? 'hactl'} node drain ${node.name}`,
                ],
              },
            })
          }
          report.done(changes.map((c) => `${c.kamailio} ${c.view?.flags ?? '?'}`).join(', '))
          break
        }
        case 'wait-calls': {
          deadline = Date.now() + opts.timeoutMs
          const w = await waitForCallsToEnd(ctx, node, {
            deadline,
            pollMs: run.pollMs,
            ...(opts.signal ? {signal: opts.signal} : {}),
            onProgress: (p) => report.progress(p),
          })
          callsAtStart = w.callsAtStart
          if (w.outcome === 'idle') {
            callsLeft = 0
            report.done(
              `${w.callsAtStart} ${w.callsAtStart === 1 ? 'call' : 'calls'} ended in ${formatMs(w.waitedMs)}`,
            )
            break
          }
          if (w.outcome === 'stopped') {
            callsLeft = 0
            asterisk = 'stopped'
            report.done('Asterisk stopped meanwhile')
            break
          }
          if (w.outcome === 'shutdown-pending') {
            // Someone else asked Asterisk to stop: it refuses to count now; wait for it to exit.
            asterisk = 'shutdown-pending'
            callsLeft = w.callsLeft
            report.done('a shutdown was started meanwhile')
            const s = await waitForAsteriskExit(ctx, node, {
              deadline,
              pollMs: run.pollMs,
              ...(opts.signal ? {signal: opts.signal} : {}),
            })
            const handled = await afterStop(s, 'wait-calls')
            if (handled) return handled
            break
          }
          callsLeft = w.callsLeft
          const what = `${w.callsLeft} ${w.callsLeft === 1 ? 'call' : 'calls'} left${w.callsLeft === 0 && w.channelsLeft > 0 ? ` (${w.channelsLeft} channels)` : ''}`
          if (w.outcome === 'timeout' && opts.force) return forceStop(step.kind, what)
          return stopped(step.kind, w.outcome, what)
        }
        case 'wait-exit': {
          deadline = Date.now() + opts.timeoutMs
          const s = await waitForAsteriskExit(ctx, node, {
            deadline,
            pollMs: run.pollMs,
            ...(opts.signal ? {signal: opts.signal} : {}),
            onProgress: (p) => report.progress(p),
          })
          const handled = await afterStop(s, step.kind)
          if (handled) return handled
          break
        }
        case 'stop': {
          if (asterisk === 'stopped') {
            report.done('already stopped')
            break
          }
          if (deadline === 0) deadline = Date.now() + opts.timeoutMs
          const s = await stopAsteriskGracefully(ctx, node, {
            deadline,
            pollMs: run.pollMs,
            ...(opts.signal ? {signal: opts.signal} : {}),
            onProgress: (p) => report.progress(p),
          })
          const handled = await afterStop(s, step.kind)
          if (handled) return handled
          break
        }
        case 'mark-drained': {
          await writeMark('drained')
          mark = 'drained'
          report.done()
          break
        }
        default:
          throw new Error(`drain: unexpected step ${step.kind}`)
      }
    }
  } catch (error) {
    return crashed(error)
  }
  // Unknown when a pending shutdown kept Asterisk from counting them.
  const ended = callsAtStart === undefined ? undefined : callsAtStart - (callsCut ?? 0)
  const parts = [
    `drained in ${formatMs(Date.now() - started)}`,
    ...(ended === undefined ? [] : [`${ended} ${ended === 1 ? 'call' : 'calls'} ended normally`]),
  ]
  return result('drained', parts.join(', '))

  // After a stop that did not finish: --force ends the calls, otherwise report.
  async function afterStop(s: StopOutcome, step: StepKind): Promise<NodeRunResult | undefined> {
    if (s.outcome === 'stopped') {
      asterisk = 'stopped'
      report.done(`inactive after ${formatMs(s.durationMs)}`)
      return undefined
    }
    asterisk = s.asterisk.state
    if (s.asterisk.state === 'running') callsLeft = s.asterisk.activeCalls
    const what =
      s.asterisk.state === 'running'
        ? `${s.asterisk.activeCalls} ${s.asterisk.activeCalls === 1 ? 'call' : 'calls'} left`
        : `Asterisk ${s.asterisk.state}, unit ${s.unit}`
    if (s.outcome === 'timeout' && opts.force) return forceStop(step, what)
    return stopped(step, s.outcome, what)
  }

  // --force after the timeout: `core stop now`, and the calls still up are cut.
  async function forceStop(current: StepKind, what: string): Promise<NodeRunResult> {
    callsCut = callsLeft
    callsLeft = 0
    const s = await stopAsteriskNow(ctx, node, {
      deadline: Date.now() + Math.max(30_000, ctx.config.ssh.commandTimeout),
      pollMs: run.pollMs,
    })
    if (s.outcome !== 'stopped') {
      asterisk = s.asterisk.state
      const msg = `--force: core stop now did not stop Asterisk on ${node.name} (unit ${s.unit}); it stays out of rotation, marked draining`
      report.fail(msg)
      report.skipRest(undefined, 'stopped')
      return result('failed', msg, {
        error: {
          kind: 'stop-failed',
          message: msg,
          suggestions: [
            `${ctx.bin ?? 'hactl'} exec ${node.name} -- systemctl status ${ctx.config.asterisk.service}`,
          ],
        },
      })
    }
    asterisk = 'stopped'
    report.done(`timed out with ${what}: ended them (core stop now, --force)`)
    // The steps that would have waited or stopped have nothing left to do.
    const after = steps.slice(steps.findIndex((s2) => s2.kind === current) + 1)
    for (const later of after.filter((s2) => s2.kind !== 'mark-drained')) {
      run.hooks.onEvent?.({
        type: 'skip',
        node: node.name,
        step: later.kind,
        detail: 'Asterisk stopped by --force',
      })
    }
    return finishForced()
  }

  async function finishForced(): Promise<NodeRunResult> {
    if (steps.some((s) => s.kind === 'mark-drained')) {
      report.start('mark-drained')
      await writeMark('drained')
      mark = 'drained'
      report.done()
    }
    return result(
      'drained',
      `drained in ${formatMs(Date.now() - started)}; ${callsCut ?? 0} ${callsCut === 1 ? 'call' : 'calls'} ended by --force (core stop now)`,
    )
  }
}

/**
 * Undo a half-done `disable`: put the Kamailio hosts that did change back as they were, and the
 * mark as it was. A box in rotation on some dispatchers and not on others is worse than either.
 */
async function rollBackDrain(
  run: RunState,
  node: ResolvedNode,
  f: DrainNodeFacts,
  changes: RotationChange[],
  markChanged: boolean,
  etcdOps: {
    setMark: typeof import('../etcd/marks.js').setMark
    clearMark: typeof import('../etcd/marks.js').clearMark
  },
): Promise<{rotation: Record<string, string | null>; mark: 'draining' | 'drained' | null; message: string}> {
  const rotation: Record<string, string | null> = {}
  const problems: string[] = []
  await Promise.all(
    changes
      .filter((c) => c.ok)
      .map(async (c) => {
        const before = f.dispatcher[c.kamailio]
        const arg = before ? stateArgOf(before) : undefined
        const kam = run.kamailio.find((k) => k.name === c.kamailio)
        if (!arg || !kam) return
        const [back] = await setStateEverywhere(run.ctx, [kam], node, arg)
        if (back?.ok) rotation[c.kamailio] = back.view?.flags ?? null
        else problems.push(`${c.kamailio} stays disabled (${back?.error?.message ?? 'unknown error'})`)
      }),
  )
  let mark: 'draining' | 'drained' | null = 'draining'
  if (markChanged) {
    try {
      if (f.mark) {
        await etcdOps.setMark(run.etcd, run.prefix, {...f.mark})
        mark = f.mark.state
      } else {
        await etcdOps.clearMark(run.etcd, run.prefix, node.name)
        mark = null
      }
    } catch (error) {
      problems.push(`the mark stays draining (${shortError(error)})`)
    }
  } else {
    mark = f.mark?.state ?? null
  }
  return {
    rotation,
    mark,
    message:
      problems.length === 0
        ? 'rolled back: the other Kamailio hosts and the mark are as they were'
        : `rollback incomplete: ${problems.join('; ')}`,
  }
}

async function applyUndrain(
  run: RunState,
  node: ResolvedNode,
  f: DrainNodeFacts,
  steps: PlanStep[],
): Promise<NodeRunResult> {
  const {ctx, opts, etcd, prefix} = run
  const {clearMark} = await import('../etcd/marks.js')
  const started = Date.now()
  const report = new StepReporter(node.name, steps, run.hooks.onEvent)
  const rotation = rotationOf(f.dispatcher)
  let asterisk: AsteriskState['state'] = f.asterisk.state
  let mark: NodeRunResult['mark'] = f.mark?.state ?? null
  const result = (
    outcome: NodeOutcome,
    message: string,
    extra: Partial<NodeRunResult> = {},
  ): NodeRunResult => ({
    node: node.name,
    outcome,
    message,
    durationMs: Date.now() - started,
    rotation,
    asterisk,
    mark,
    ...extra,
  })
  const fail = (step: StepKind, msg: string, kind: string, suggestions: string[]): NodeRunResult => {
    report.fail(msg)
    report.skipRest(step, 'stopped')
    return result('failed', msg, {error: {kind, message: msg, suggestions}})
  }
  const crashed = (error: unknown): NodeRunResult => {
    const msg = `${(error as Error).message}; ${node.name} stays marked ${mark ?? 'nothing'}, Asterisk ${asterisk}`
    report.fail(msg)
    report.skipRest(report.step, 'stopped')
    return result('failed', msg, {
      error: errorInfo(error, [
        `${ctx.bin ?? 'hactl'} status ${node.name}`,
        `then again: ${ctx.bin ?? 'hactl'} node undrain ${node.name}`,
      ]),
    })
  }
  try {
    for (const step of steps) {
      // Ctrl-C is honoured between steps, except before clearing the mark of a box just put back
      // in rotation (quick, and a box in rotation but marked is a needless half state).
      if (opts.signal?.aborted && step.kind !== 'clear-mark') {
        const msg =
          step === steps[0]
            ? `interrupted before anything changed on ${node.name}`
            : `interrupted before ${step.kind}; ${node.name} stays out of rotation, marked ${mark ?? 'nothing'}, Asterisk ${asterisk}`
        report.skipRest(step === steps[0] ? undefined : report.step, 'interrupted')
        return result('interrupted', msg)
      }
      report.start(step.kind)
      switch (step.kind) {
        case 'start': {
          const s = await startAsterisk(ctx, node, {
            deadline: Date.now() + opts.timeoutMs,
            pollMs: run.pollMs,
            ...(opts.signal ? {signal: opts.signal} : {}),
          })
          if (s.outcome !== 'started') {
            asterisk = s.asterisk.state
            const msg = `Asterisk on ${node.name} did not answer ${s.outcome === 'timeout' ? `within ${formatMs(opts.timeoutMs)}` : 'before the interrupt'} after systemctl start; it stays out of rotation`
            if (s.outcome === 'interrupted') {
              report.fail(msg)
              report.skipRest(step.kind, 'interrupted')
              return result('interrupted', msg)
            }
            return fail(step.kind, msg, 'timeout', [
              `${ctx.bin ?? 'hactl'} exec ${node.name} -- systemctl status ${ctx.config.asterisk.service}`,
            ])
          }
          asterisk = 'running'
          report.done(`answers after ${formatMs(s.durationMs)}`)
          break
        }
        case 'abort-shutdown': {
          await abortShutdown(ctx, node)
          const a = await probeAsterisk(ctx, node)
          asterisk = a.state
          if (a.state !== 'running') {
            return fail(
              step.kind,
              `core abort shutdown did not take on ${node.name}: Asterisk is ${a.state}`,
              'abort-failed',
              [`${ctx.bin ?? 'hactl'} status ${node.name}`],
            )
          }
          report.done(`${a.activeCalls} ${a.activeCalls === 1 ? 'call' : 'calls'} up`)
          break
        }
        case 'enable': {
          const kams = run.kamailio.filter((k) => step.kamailio?.includes(k.name))
          const changes = await setStateEverywhere(ctx, kams, node, 'ap')
          for (const c of changes) if (c.view) rotation[c.kamailio] = c.view.flags
          const failed = changes.filter((c) => !c.ok)
          if (failed.length > 0) {
            // The mark stays: the box is not fully back, and `hactl status` must keep saying so.
            return fail(
              step.kind,
              `could not put ${node.name} back in rotation on ${failed.map((c) => c.kamailio).join(', ')}: ${failed.map((c) => c.error?.message ?? '').join('; ')}`,
              failed[0]?.error?.kind ?? 'set-state-failed',
              [`run again: ${ctx.bin ?? 'hactl'} node undrain ${node.name}`],
            )
          }
          report.done(changes.map((c) => `${c.kamailio} ${c.view?.flags ?? '?'}`).join(', '))
          break
        }
        case 'clear-mark': {
          await clearMark(etcd, prefix, node.name)
          mark = null
          report.done()
          break
        }
        default:
          throw new Error(`undrain: unexpected step ${step.kind}`)
      }
    }
  } catch (error) {
    return crashed(error)
  }
  return result('undrained', `back in service in ${formatMs(Date.now() - started)}`)
}

// ---------------------------------------------------------------------------------------------
// Lock and history

async function recordHistory(
  run: RunState,
  plan: DrainRunPlan,
  result: DrainRunResult,
  started: number,
): Promise<void> {
  const {appendHistory, startHistoryEntry, finishHistoryEntry} = await import('../history.js')
  const entry = finishHistoryEntry(
    startHistoryEntry({
      cluster: run.ctx.config.cluster,
      argv: run.ctx.argv ?? ['node', plan.operation, ...plan.nodes.map((n) => n.node)],
      plan: planLines(plan),
      at: new Date(started),
    }),
    {
      exitCode: result.exitCode,
      results: result.nodes.map((n) => ({
        node: n.node,
        ok: n.outcome !== 'failed' && n.outcome !== 'timeout' && n.outcome !== 'interrupted',
        detail: n.message,
      })),
    },
  )
  const r = await appendHistory(entry, {
    etcd: {handle: run.etcd, prefix: run.ctx.config.etcd.prefixes.history},
  })
  if (r.fileError) run.hooks.onWarning?.(`history not written to ${r.file}: ${r.fileError}`)
  if (r.etcd && 'error' in r.etcd) run.hooks.onWarning?.(`history not written to etcd: ${r.etcd.error}`)
}
