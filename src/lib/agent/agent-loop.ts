import {createReloadDebouncer, type ReloadDebouncer, type ReloadEvent} from '../dispatcher/render.js'
import {classifyKamcmdAnswer} from '../facts/kamailio.js'
import {errorText, type AgentLog} from './log.js'

/**
 * The dispatcher agent's loop, free of etcd, files and processes so it can be driven by a fake
 * clock in tests: events in → render → write when different → debounced reload, retried while
 * Kamailio answers `Ongoing reload`.
 */

/** Timers the loop uses; tests pass a fake that they advance by hand. */
export interface AgentClock {
  now(): number
  setTimeout(fn: () => void, ms: number): unknown
  clearTimeout(handle: unknown): void
}

export const systemClock: AgentClock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
}

/** What one reload command answered. */
export interface ReloadAnswer {
  code: number | null
  output: string
}

export interface DispatcherLoopDeps {
  /** The wanted lines of our set, rendered from etcd now. Throws when etcd cannot be read. */
  wanted(): Promise<string>
  /** The list file's current text; undefined when it does not exist. */
  readFile(): Promise<string | undefined>
  /** Replace the list file (atomically). */
  writeFile(text: string): Promise<void>
  /** Ask Kamailio to reload the file (`kamcmd dispatcher.reload`). */
  reload(): Promise<ReloadAnswer>
  clock: AgentClock
  log: AgentLog
}

export interface DispatcherLoopOptions {
  /** The list file, for log lines. */
  listFile: string
  /** The dispatcher set the agent owns; lines of other sets in the file are kept as they are. */
  setId: number
  /** Quiet time after a change before rendering, so a burst of events makes one write. */
  settleMs?: number
  /** Kamailio's `reload_delta`: it refuses a reload within this long of the last one. */
  reloadDeltaMs?: number
  /** Wait before retrying a failed read (doubling up to 8x), and between reload attempts. */
  retryMs?: number
  /** Reload attempts (busy or failed) before giving up until the next change. Default 10. */
  maxReloadAttempts?: number
  /** Re-read etcd and the file this often even without events (a lost watch, a hand edit). 0: never. */
  resyncMs?: number
}

export type ReloadClass = 'ok' | 'busy' | 'failed'

/**
 * Kamailio's answer to `dispatcher.reload`: `Ok. Dispatcher successfully reloaded.`, or
 * `error: 500 - Ongoing reload` within reload_delta of the last reload (worth retrying), or
 * anything else (kamcmd cannot reach Kamailio, the file does not load). kamcmd exits 0 on an RPC
 * fault, so the text decides.
 */
export function classifyReload(answer: ReloadAnswer): {kind: ReloadClass; message: string} {
  const c = classifyKamcmdAnswer(answer.output, answer.code)
  if (c.kind === 'ok') return {kind: 'ok', message: oneLine(c.text) || 'ok'}
  if (c.kind === 'ongoing-reload') return {kind: 'busy', message: c.message}
  return {kind: 'failed', message: c.kind === 'rpc-error' ? `error ${c.code} - ${c.message}` : c.message}
}

function oneLine(text: string): string {
  return text
    .trim()
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .join(' | ')
    .slice(0, 300)
}

const isSetLine = (line: string): boolean => /^\s*\d+\s+\S/.test(line)
const setOf = (line: string): number => Number(/^\s*(\d+)/.exec(line)?.[1] ?? Number.NaN)

/**
 * The whole file the agent wants: its rendered set, then the lines of every other set from the
 * current file, unchanged (a Kamailio may route other sets, e.g. media servers, from the same file).
 * Comments and blank lines of the old file are not kept: the rendered header says who owns it.
 */
export function mergeOtherSets(current: string | undefined, rendered: string, setId: number): string {
  const others = (current ?? '').split('\n').filter((l) => isSetLine(l) && setOf(l) !== setId)
  if (others.length === 0) return rendered
  const base = rendered.endsWith('\n') || rendered === '' ? rendered : `${rendered}\n`
  return `${base}${others.join('\n')}\n`
}

/** The destinations (URI and the rest of the line) of one set in a list file's text. */
function destinations(text: string | undefined, setId: number): Map<string, string> {
  const out = new Map<string, string>()
  for (const line of (text ?? '').split('\n')) {
    if (!isSetLine(line) || setOf(line) !== setId) continue
    const [, uri, ...rest] = line.trim().split(/\s+/)
    if (uri) out.set(uri, rest.join(' '))
  }
  return out
}

/** `+sip:a -sip:b ~sip:c` between two versions of one set, for the log line. */
export function describeChange(
  before: string | undefined,
  after: string,
  setId: number,
): {count: number; summary: string} {
  const a = destinations(before, setId)
  const b = destinations(after, setId)
  const parts: string[] = []
  for (const [uri, rest] of b) {
    if (!a.has(uri)) parts.push(`+${uri}`)
    else if (a.get(uri) !== rest) parts.push(`~${uri}`)
  }
  for (const uri of a.keys()) if (!b.has(uri)) parts.push(`-${uri}`)
  return {count: b.size, summary: parts.join(' ')}
}

export type SyncOutcome = 'written' | 'unchanged' | 'failed'

/**
 * One agent loop. `changed()` is called for every watch event; the loop coalesces them, renders,
 * and writes and reloads only when the file's text would change. Renders run one at a time;
 * reloads go through `createReloadDebouncer` (never two within reload_delta, retried on
 * `Ongoing reload` and on failures).
 */
export class DispatcherLoop {
  private readonly settleMs: number
  private readonly retryMs: number
  private readonly resyncMs: number
  private readonly reloader: ReloadDebouncer

  private syncTimer: unknown
  private syncRunning: Promise<void> | undefined
  private syncAgain = false
  private syncFailures = 0
  private lastSyncError: string | undefined
  private resyncTimer: unknown
  private stopped = false

  /** Counters, for tests and the `stopped` log line. */
  readonly stats = {renders: 0, writes: 0, reloads: 0, reloadRetries: 0}

  constructor(
    private readonly deps: DispatcherLoopDeps,
    private readonly opts: DispatcherLoopOptions,
  ) {
    this.settleMs = opts.settleMs ?? 200
    this.retryMs = opts.retryMs ?? 1000
    this.resyncMs = opts.resyncMs ?? 30_000
    const clock = deps.clock
    let said = ''
    this.reloader = createReloadDebouncer({
      reload: async () => {
        const answer = await deps.reload()
        const c = classifyReload(answer)
        said = c.message
        if (c.kind === 'ok') return 'ok'
        if (c.kind === 'busy') return 'ongoing-reload'
        throw new Error(c.message)
      },
      minIntervalMs: opts.reloadDeltaMs ?? 5000,
      retryDelayMs: this.retryMs,
      maxAttempts: opts.maxReloadAttempts ?? 10,
      now: () => clock.now(),
      schedule: (fn, ms) => {
        const h = clock.setTimeout(fn, ms)
        return () => clock.clearTimeout(h)
      },
      onEvent: (e) => this.onReloadEvent(e, said),
    })
  }

  /** First render at once, then the periodic resync. */
  start(): void {
    this.scheduleSync(0)
    this.scheduleResync()
  }

  /** Something under the watched prefixes changed (or the watch reconnected). */
  changed(): void {
    if (this.stopped) return
    if (this.syncRunning) {
      this.syncAgain = true
      return
    }
    // A burst of events restarts nothing: the first one schedules, the rest ride along.
    if (this.syncTimer === undefined) this.scheduleSync(this.settleMs)
  }

  /** Stop every timer and wait for the render in progress. A reload not yet started is not run. */
  async stop(): Promise<void> {
    this.stopped = true
    for (const t of [this.syncTimer, this.resyncTimer]) if (t !== undefined) this.deps.clock.clearTimeout(t)
    this.syncTimer = this.resyncTimer = undefined
    this.reloader.close()
    await this.syncRunning
  }

  /** Whether a render or a reload is running or scheduled. */
  get busy(): boolean {
    return this.syncTimer !== undefined || this.syncRunning !== undefined || this.reloader.busy
  }

  /** Resolves when no reload is waiting or running. */
  reloadsIdle(): Promise<void> {
    return this.reloader.idle()
  }

  /** Render now and write when different; the reload is requested, not awaited. */
  async syncNow(): Promise<SyncOutcome> {
    this.stats.renders += 1
    let wanted: string
    let current: string | undefined
    try {
      const rendered = await this.deps.wanted()
      current = await this.deps.readFile()
      wanted = mergeOtherSets(current, rendered, this.opts.setId)
    } catch (error) {
      // Never write from a failed read: an unreachable etcd is not an empty cluster.
      const text = errorText(error)
      if (text !== this.lastSyncError)
        this.deps.log('etcd-error', `${text}; keeping ${this.opts.listFile} as it is, retrying`)
      this.lastSyncError = text
      return 'failed'
    }
    if (this.lastSyncError !== undefined) {
      this.deps.log('etcd-ok', 'registrations readable again')
      this.lastSyncError = undefined
    }
    if (wanted === current) return 'unchanged'
    try {
      await this.deps.writeFile(wanted)
    } catch (error) {
      this.deps.log('write-failed', `${this.opts.listFile}: ${errorText(error)}`)
      return 'failed'
    }
    this.stats.writes += 1
    const change = describeChange(current, wanted, this.opts.setId)
    this.deps.log(
      'wrote',
      `${this.opts.listFile} set ${this.opts.setId}: ${change.count} destination(s)${change.summary ? ` ${change.summary}` : ''}`,
    )
    if (!this.stopped) this.reloader.request()
    return 'written'
  }

  private onReloadEvent(e: ReloadEvent, said: string): void {
    const retry = (at: number | undefined) =>
      at === undefined ? '' : `; retrying in ${Math.max(0, at - e.at)} ms`
    switch (e.type) {
      case 'reloaded':
        this.stats.reloads += 1
        this.deps.log('reloaded', said)
        break
      case 'ongoing-reload':
        // Someone else reloaded within reload_delta (hactl dispatcher sync, an operator): wait it out.
        this.stats.reloadRetries += 1
        this.deps.log('reload-busy', `${said}${retry(e.retryAt)}`)
        break
      case 'failed':
        this.stats.reloadRetries += 1
        this.deps.log('reload-failed', `${errorText(e.error)}${retry(e.retryAt)}`)
        break
      case 'gave-up':
        this.deps.log(
          'reload-gave-up',
          `after ${e.attempts} attempts; ${this.opts.listFile} is written, Kamailio loads it when it (re)starts or on the next change`,
        )
        break
    }
  }

  private scheduleSync(ms: number): void {
    if (this.stopped) return
    if (this.syncTimer !== undefined) this.deps.clock.clearTimeout(this.syncTimer)
    this.syncTimer = this.deps.clock.setTimeout(() => {
      this.syncTimer = undefined
      this.runSync()
    }, ms)
  }

  private runSync(): void {
    if (this.stopped) return
    this.syncAgain = false
    this.syncRunning = this.syncNow().then((outcome) => {
      this.syncRunning = undefined
      if (outcome === 'failed') {
        this.syncFailures += 1
        this.scheduleSync(this.retryMs * 2 ** Math.min(3, this.syncFailures - 1))
      } else {
        this.syncFailures = 0
        if (this.syncAgain) this.scheduleSync(this.settleMs)
      }
    })
  }

  private scheduleResync(): void {
    if (this.stopped || this.resyncMs <= 0) return
    this.resyncTimer = this.deps.clock.setTimeout(() => {
      this.resyncTimer = undefined
      this.changed()
      this.scheduleResync()
    }, this.resyncMs)
  }
}
