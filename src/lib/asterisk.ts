import {setTimeout as delay} from 'node:timers/promises'
import type {HactlConfig, ResolvedNode} from './config/load.js'
import {HactlError, TimeoutError} from './errors.js'
import {classifyAsteriskAnswer, parseChannelsCount} from './facts/asterisk.js'
import type {SshPool} from './ssh/pool.js'
import {shellQuote} from './ssh/quote.js'

/**
 * Asterisk on one box, driven over SSH: its CLI (`asterisk.cli` from the config, e.g.
 * `asterisk -rx`) and its systemd unit (`asterisk.service`). Facts come back typed; operations
 * that wait take a deadline and an AbortSignal and return how they ended instead of throwing on
 * a timeout or an interrupt, so the caller can report the state it leaves behind.
 */

export interface AsteriskDeps {
  config: HactlConfig
  pool: SshPool
}

/** What `core show channels count` says about a box. */
export type AsteriskState =
  | {state: 'running'; activeCalls: number; activeChannels: number; callsProcessed?: number}
  | {state: 'stopped'}
  | {state: 'shutdown-pending'}
  | {state: 'unknown'; detail: string}

/** systemd's answer to `systemctl is-active`: active, inactive, failed, activating, deactivating... */
export type UnitState = string

/** The remote command for one Asterisk CLI command. The CLI command is quoted as one argument. */
export function asteriskCliCommand(config: HactlConfig, command: string): string {
  // `</dev/null`: never wait on stdin; 2>&1: Asterisk answers on either stream.
  return `( ${config.asterisk.cli} ${shellQuote(command)} ) </dev/null 2>&1`
}

function unitCommand(config: HactlConfig, verb: 'start' | 'stop' | 'is-active'): string {
  return `systemctl ${verb} ${shellQuote(config.asterisk.service)}`
}

/** Turn the CLI's answer to `core show channels count` into a state. Pure. */
export function interpretChannelsCount(output: string, code: number | null): AsteriskState {
  const answer = classifyAsteriskAnswer(output, code)
  if (answer.kind === 'not-running') return {state: 'stopped'}
  if (answer.kind === 'shutdown-pending') return {state: 'shutdown-pending'}
  const first =
    output
      .split('\n')
      .find((l) => l.trim() !== '')
      ?.trim() ?? `exit status ${code ?? 'unknown'}`
  if (answer.kind !== 'ok') return {state: 'unknown', detail: first}
  try {
    const c = parseChannelsCount(output)
    return {
      state: 'running',
      activeCalls: c.activeCalls,
      activeChannels: c.activeChannels,
      ...(c.callsProcessed === undefined ? {} : {callsProcessed: c.callsProcessed}),
    }
  } catch {
    return {state: 'unknown', detail: first}
  }
}

/** Run one Asterisk CLI command; the answer and the exit status, never a RemoteCommandError. */
export async function runAsteriskCli(
  deps: AsteriskDeps,
  node: ResolvedNode,
  command: string,
  opts: {timeoutMs?: number} = {},
): Promise<{output: string; code: number | null}> {
  const r = await deps.pool.run(node, asteriskCliCommand(deps.config, command), {
    check: false,
    ...(opts.timeoutMs === undefined ? {} : {timeoutMs: opts.timeoutMs, timeoutName: '--timeout'}),
  })
  return {output: r.stdout.trimEnd(), code: r.code}
}

/** How many calls the box has, or why it cannot tell. */
export async function probeAsterisk(deps: AsteriskDeps, node: ResolvedNode): Promise<AsteriskState> {
  const r = await runAsteriskCli(deps, node, 'core show channels count')
  return interpretChannelsCount(r.output, r.code)
}

const MARK = '@@hactl-asterisk@@'

/**
 * The unit's state and the CLI's answer in one round trip. The CLI is asked only while the unit
 * is not down: a stopped box answers with its unit state alone, one process fewer per poll.
 */
export async function probeUnitAndCli(
  deps: AsteriskDeps,
  node: ResolvedNode,
): Promise<{unit: UnitState; asterisk: AsteriskState}> {
  const r = await deps.pool.run(node, unitAndCliCommand(deps.config), {check: false})
  return parseUnitAndCli(r.stdout)
}

function unitAndCliCommand(config: HactlConfig): string {
  return (
    `u=$(${unitCommand(config, 'is-active')} </dev/null 2>&1); echo "$u"; echo ${shellQuote(MARK)}; ` +
    `case "$u" in inactive|failed) ;; *) ${asteriskCliCommand(config, 'core show channels count')}; echo "${MARK}rc $?" ;; esac`
  )
}

/** Parse the output of `probeUnitAndCli`'s command. Pure. */
export function parseUnitAndCli(stdout: string): {unit: UnitState; asterisk: AsteriskState} {
  const i = stdout.indexOf(`${MARK}\n`)
  const unitText = i === -1 ? stdout : stdout.slice(0, i)
  const rest = i === -1 ? '' : stdout.slice(i + MARK.length + 1)
  const rc = /@@hactl-asterisk@@rc (\d+)\s*$/.exec(rest)
  const cli = rest.replace(/@@hactl-asterisk@@rc \d+\s*$/, '').trimEnd()
  const unit = unitText.trim().split('\n').pop()?.trim() || 'unknown'
  if (!rc && unitIsDown(unit)) return {unit, asterisk: {state: 'stopped'}}
  return {
    unit,
    asterisk: rc
      ? interpretChannelsCount(cli, Number(rc[1]))
      : {state: 'unknown', detail: 'no answer from the asterisk CLI'},
  }
}

/** `inactive` and `failed` mean the process is gone and systemd will not bring it back by itself. */
export function unitIsDown(unit: UnitState): boolean {
  return unit === 'inactive' || unit === 'failed'
}

export interface WaitOptions {
  /** Epoch milliseconds after which the wait gives up. */
  deadline: number
  pollMs: number
  signal?: AbortSignal
}

export interface CallsProgress {
  callsLeft: number
  channelsLeft: number
  elapsedMs: number
}

export type CallsWaitOutcome =
  | {outcome: 'idle'; callsAtStart: number; waitedMs: number}
  /** Asterisk went away while hactl waited. */
  | {outcome: 'stopped'; callsAtStart: number; callsLeft: number; waitedMs: number}
  /** Someone started a shutdown while hactl waited: the calls can no longer be counted. */
  | {outcome: 'shutdown-pending'; callsAtStart: number; callsLeft: number; waitedMs: number}
  | {outcome: 'timeout'; callsAtStart: number; callsLeft: number; channelsLeft: number; waitedMs: number}
  | {outcome: 'interrupted'; callsAtStart: number; callsLeft: number; channelsLeft: number; waitedMs: number}

/**
 * Poll `core show channels count` every `pollMs` until no call and no channel is left. The first
 * poll is immediate, so an idle box costs one round trip. Returns on the deadline or the signal
 * with the calls that were left; throws only when the CLI stops answering sensibly.
 */
export async function waitForCallsToEnd(
  deps: AsteriskDeps,
  node: ResolvedNode,
  opts: WaitOptions & {onProgress?: (p: CallsProgress) => void},
): Promise<CallsWaitOutcome> {
  const started = Date.now()
  let callsAtStart: number | undefined
  let last = {calls: 0, channels: 0}
  let unknownInARow = 0
  for (;;) {
    const a = await probeAsterisk(deps, node)
    const waitedMs = Date.now() - started
    if (a.state === 'running') {
      unknownInARow = 0
      callsAtStart ??= a.activeCalls
      last = {calls: a.activeCalls, channels: a.activeChannels}
      opts.onProgress?.({callsLeft: a.activeCalls, channelsLeft: a.activeChannels, elapsedMs: waitedMs})
      if (a.activeCalls === 0 && a.activeChannels === 0) return {outcome: 'idle', callsAtStart, waitedMs}
    } else if (a.state === 'stopped') {
      return {outcome: 'stopped', callsAtStart: callsAtStart ?? 0, callsLeft: 0, waitedMs}
    } else if (a.state === 'shutdown-pending') {
      return {outcome: 'shutdown-pending', callsAtStart: callsAtStart ?? 0, callsLeft: last.calls, waitedMs}
    } else {
      unknownInARow += 1
      if (unknownInARow >= 3) {
        throw new HactlError(`${node.name}: cannot count the calls: the Asterisk CLI answers "${a.detail}"`, {
          suggestions: [
            `check asterisk.cli in hactl.yaml and run: hactl exec ${node.name} -- ${deps.config.asterisk.cli} 'core show channels count'`,
          ],
        })
      }
    }
    const left = {
      callsAtStart: callsAtStart ?? 0,
      callsLeft: last.calls,
      channelsLeft: last.channels,
      waitedMs,
    }
    if (opts.signal?.aborted) return {outcome: 'interrupted', ...left}
    if (Date.now() >= opts.deadline) return {outcome: 'timeout', ...left}
    await sleep(Math.min(opts.pollMs, Math.max(0, opts.deadline - Date.now())), opts.signal)
  }
}

export type StopOutcome =
  | {outcome: 'stopped'; durationMs: number}
  | {outcome: 'timeout' | 'interrupted'; durationMs: number; unit: UnitState; asterisk: AsteriskState}

/**
 * `core stop gracefully`, then wait until systemd says the unit is down. Called when the box has no
 * calls left, so the stop is quick; if a call sneaked in, Asterisk waits for it (nothing is cut).
 * When the unit restarts Asterisk by itself (Restart=always), the fresh process has no calls and
 * `systemctl stop` finishes the job.
 */
export async function stopAsteriskGracefully(
  deps: AsteriskDeps,
  node: ResolvedNode,
  opts: WaitOptions & {onProgress?: (p: CallsProgress) => void},
): Promise<StopOutcome> {
  return stopAsterisk(deps, node, 'core stop gracefully', opts)
}

/** A shutdown is pending already (someone ran `core stop gracefully`): wait for Asterisk to exit. */
export async function waitForAsteriskExit(
  deps: AsteriskDeps,
  node: ResolvedNode,
  opts: WaitOptions & {onProgress?: (p: CallsProgress) => void},
): Promise<StopOutcome> {
  return stopAsterisk(deps, node, null, opts)
}

/** `core stop now`: ends the calls that are left. Only on `--force`. */
export async function stopAsteriskNow(
  deps: AsteriskDeps,
  node: ResolvedNode,
  opts: WaitOptions,
): Promise<StopOutcome> {
  return stopAsterisk(deps, node, 'core stop now', opts)
}

async function stopAsterisk(
  deps: AsteriskDeps,
  node: ResolvedNode,
  command: 'core stop gracefully' | 'core stop now' | null,
  opts: WaitOptions & {onProgress?: (p: CallsProgress) => void},
): Promise<StopOutcome> {
  const started = Date.now()
  // With calls left, `-rx 'core stop gracefully'` blocks until they end (up to about 60 s): bound it,
  // and let the unit poll below do the waiting when it gives up.
  const budget = Math.max(5000, Math.min(120_000, opts.deadline - Date.now()))
  // The stop and the first look at the unit go in one round trip: an idle Asterisk is gone by then.
  let first = command ? await sendStop(deps, node, command, budget) : undefined
  const pollMs = Math.min(opts.pollMs, 250)
  // An idle Asterisk is gone a moment after the CLI answered the stop: look again soon, then less
  // often (50, 100, 200 ms, then pollMs).
  let wait = Math.min(50, pollMs)
  let unitStopIssued = false
  let lastSeen: {unit: UnitState; asterisk: AsteriskState} = {
    unit: 'unknown',
    asterisk: {state: 'unknown', detail: 'not asked yet'},
  }
  for (;;) {
    const s = first ?? (await probeUnitAndCli(deps, node))
    first = undefined
    lastSeen = s
    if (unitIsDown(s.unit)) return {outcome: 'stopped', durationMs: Date.now() - started}
    const a = s.asterisk
    if (a.state === 'running')
      opts.onProgress?.({
        callsLeft: a.activeCalls,
        channelsLeft: a.activeChannels,
        elapsedMs: Date.now() - started,
      })
    // No Asterisk process (or a fresh one without calls) while systemd still calls the unit up:
    // systemd restarted it or is about to. Stopping the unit cuts nothing.
    const idle =
      a.state === 'stopped' || (a.state === 'running' && a.activeCalls === 0 && a.activeChannels === 0)
    if (
      idle &&
      !unitStopIssued &&
      (s.unit === 'activating' || s.unit === 'active' || s.unit === 'reloading')
    ) {
      unitStopIssued = true
      await deps.pool.run(node, `${unitCommand(deps.config, 'stop')} </dev/null`, {
        check: false,
        timeoutMs: budget,
        timeoutName: '--timeout',
      })
      continue
    }
    if (opts.signal?.aborted) return {outcome: 'interrupted', durationMs: Date.now() - started, ...lastSeen}
    if (Date.now() >= opts.deadline)
      return {outcome: 'timeout', durationMs: Date.now() - started, ...lastSeen}
    await sleep(Math.min(wait, Math.max(0, opts.deadline - Date.now())), opts.signal)
    wait = Math.min(wait * 2, pollMs)
  }
}

const STOP_MARK = '@@hactl-stop@@'

/**
 * Send a stop command, then probe the unit in the same round trip. Undefined when the CLI was
 * still blocked after budgetMs (Asterisk waits for calls): the caller's poll takes over.
 */
async function sendStop(
  deps: AsteriskDeps,
  node: ResolvedNode,
  command: string,
  budgetMs: number,
): Promise<{unit: UnitState; asterisk: AsteriskState} | undefined> {
  let stdout: string
  try {
    const cmd = `${asteriskCliCommand(deps.config, command)}; echo "${STOP_MARK}rc $?"; ${unitAndCliCommand(deps.config)}`
    stdout = (await deps.pool.run(node, cmd, {check: false, timeoutMs: budgetMs, timeoutName: '--timeout'}))
      .stdout
  } catch (error) {
    if (error instanceof TimeoutError) return undefined
    throw error
  }
  const m = new RegExp(`^${STOP_MARK}rc (\\d+)$`, 'm').exec(stdout)
  const answerText = m ? stdout.slice(0, m.index) : stdout
  const answer = classifyAsteriskAnswer(answerText, m ? Number(m[1]) : null)
  if (answer.kind === 'no-such-command') {
    throw new HactlError(`${node.name}: Asterisk does not know "${command}": ${answer.message}`, {
      suggestions: ['check asterisk.cli in hactl.yaml: it must run one Asterisk CLI command (asterisk -rx)'],
    })
  }
  return m ? parseUnitAndCli(stdout.slice(m.index + m[0].length + 1)) : undefined
}

/** `core abort shutdown`: cancel a pending `core stop gracefully` / `when convenient`. */
export async function abortShutdown(deps: AsteriskDeps, node: ResolvedNode): Promise<void> {
  const r = await runAsteriskCli(deps, node, 'core abort shutdown')
  const answer = classifyAsteriskAnswer(r.output, r.code)
  if (answer.kind === 'not-running' || answer.kind === 'no-such-command') {
    throw new HactlError(`${node.name}: core abort shutdown failed: ${r.output.split('\n')[0] ?? ''}`)
  }
}

/**
 * `systemctl start` the unit, then wait until the Asterisk CLI answers `core show channels count`
 * (the unit says active well before Asterisk has loaded its modules).
 */
export async function startAsterisk(
  deps: AsteriskDeps,
  node: ResolvedNode,
  opts: WaitOptions,
): Promise<
  | {outcome: 'started'; durationMs: number}
  | {outcome: 'timeout' | 'interrupted'; durationMs: number; asterisk: AsteriskState}
> {
  const started = Date.now()
  await deps.pool.run(node, `${unitCommand(deps.config, 'start')} </dev/null`, {
    check: true,
    timeoutMs: Math.max(5000, opts.deadline - Date.now()),
    timeoutName: '--timeout',
  })
  const pollMs = Math.min(opts.pollMs, 200)
  for (;;) {
    const a = await probeAsterisk(deps, node)
    if (a.state === 'running') return {outcome: 'started', durationMs: Date.now() - started}
    if (opts.signal?.aborted) return {outcome: 'interrupted', durationMs: Date.now() - started, asterisk: a}
    if (Date.now() >= opts.deadline)
      return {outcome: 'timeout', durationMs: Date.now() - started, asterisk: a}
    await sleep(Math.min(pollMs, Math.max(0, opts.deadline - Date.now())), opts.signal)
  }
}

/** Sleep, or less when the signal fires. Never rejects. */
export async function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (ms <= 0 || signal?.aborted) return
  try {
    await delay(ms, undefined, signal ? {signal} : undefined)
  } catch {
    // Aborted: the caller checks the signal.
  }
}
