import {isIP} from 'node:net'
import {DispatcherFlag, renderDispatcherFile, type DispatcherFileEntry} from '../facts/kamailio.js'

/**
 * Registrations (+ maintenance marks) → `dispatcher.list`, the job kamailio-etcd-dispatcher did
 * (issue 7), plus the two helpers around writing it: a line diff for `hactl dispatcher sync` and a
 * reload debouncer for `hactl agent dispatcher`. Everything here is pure or takes its clock as a
 * parameter, so it is tested without Kamailio or timers.
 */

/** One Asterisk box as announced in etcd. */
export interface Registration {
  name: string
  ip: string
  /** Default 5060. */
  port?: number
  /** Percent of the calls, 1–100. Absent: a share of what the explicit weights leave. */
  weight?: number
}

export type MaintenanceState = 'draining' | 'drained'

/** Marks by node name, as a Map, a record, or the list `getMarks` returns. */
export type MaintenanceMarksInput =
  | ReadonlyMap<string, {state: MaintenanceState}>
  | Readonly<Record<string, {state: MaintenanceState}>>
  | readonly {node: string; state: MaintenanceState}[]

// ---------------------------------------------------------------------------------------------
// The weight rule

export interface WeightedBox {
  name: string
  weight: number
  /**
   * `explicit`: the box's own weight, kept. `share`: an even share of what the explicit weights
   * leave. `scaled`: an explicit weight scaled down because the weights did not fit in 100.
   * `minimum`: 1, because nothing was left to share.
   */
  source: 'explicit' | 'share' | 'scaled' | 'minimum'
}

export interface WeightAssignment {
  /** Sorted by name. */
  boxes: WeightedBox[]
  total: number
  warnings: string[]
}

/** A weight Kamailio understands: an integer percentage. */
function validWeight(w: number | undefined): w is number {
  return w !== undefined && Number.isInteger(w) && w >= 1 && w <= 100
}

/**
 * The weight rule of kamailio-etcd-dispatcher, for the boxes that take calls:
 *
 * - Explicit weights are kept. What they leave of 100 is split evenly (floor) over the boxes
 *   without one; the remainder goes to the first of those (by name). Two boxes, one with 25:
 *   25 and 75.
 * - Every weight is at least 1. Kamailio never sees a 0: a 0 on the first destination of a set
 *   turns weighting off for the whole set (all calls to one box), elsewhere it starves the box.
 * - Over-subscribed (defined here; the original wrote 0 or negative weights): when the explicit
 *   weights leave less than 1 per unweighted box (their sum is over 100, or exactly 100 with
 *   unweighted boxes), each unweighted box gets 1 and the explicit weights are scaled to share the
 *   rest (largest remainder, each at least 1), so the total is 100 again. Kamailio itself would
 *   fill its 100 slots in list order and silently drop whatever comes after them.
 * - Only explicit weights, summing to less than 100: kept as they are, with a warning (Kamailio
 *   gives the missing slots to the last destination of its list), as the original did.
 * - More than 100 boxes: every box gets 1 (the total is then over 100), with a warning.
 * - A weight that is not an integer in 1–100 is ignored (the box counts as unweighted), warned.
 */
export function computeWeights(boxes: readonly {name: string; weight?: number}[]): WeightAssignment {
  const sorted = [...boxes].sort((a, b) => compareNames(a.name, b.name))
  const warnings: string[] = []
  for (const b of sorted) {
    if (b.weight !== undefined && !validWeight(b.weight)) {
      warnings.push(`${b.name}: weight ${b.weight} is not an integer from 1 to 100; treated as unweighted`)
    }
  }
  const explicit = sorted.filter((b) => validWeight(b.weight))
  const unweighted = sorted.filter((b) => !validWeight(b.weight))
  const explicitSum = explicit.reduce((s, b) => s + b.weight!, 0)
  const rest = 100 - explicitSum
  const out = new Map<string, WeightedBox>()

  if (sorted.length > 100) {
    warnings.push(
      `${sorted.length} boxes: more than 100, so every box gets weight 1 and Kamailio uses only the first 100`,
    )
    for (const b of sorted) out.set(b.name, {name: b.name, weight: 1, source: 'minimum'})
  } else if (unweighted.length === 0) {
    if (explicitSum > 100) {
      warnings.push(`explicit weights sum to ${explicitSum}, over 100: scaled down to sum to 100`)
      scale(explicit, 100).forEach((w, i) => {
        const b = explicit[i]!
        out.set(b.name, {name: b.name, weight: w, source: w === b.weight ? 'explicit' : 'scaled'})
      })
    } else {
      if (explicitSum < 100 && explicit.length > 0) {
        warnings.push(
          `explicit weights sum to ${explicitSum}: Kamailio gives the other ${100 - explicitSum} to the last destination of its list`,
        )
      }
      for (const b of explicit) out.set(b.name, {name: b.name, weight: b.weight!, source: 'explicit'})
    }
  } else if (rest >= unweighted.length) {
    const each = Math.floor(rest / unweighted.length)
    const leftover = rest - each * unweighted.length
    for (const b of explicit) out.set(b.name, {name: b.name, weight: b.weight!, source: 'explicit'})
    unweighted.forEach((b, i) =>
      out.set(b.name, {name: b.name, weight: each + (i === 0 ? leftover : 0), source: 'share'}),
    )
  } else {
    warnings.push(
      `explicit weights sum to ${explicitSum}, leaving less than 1 for each of ${unweighted.length} unweighted box(es): ` +
        `those get 1 and the explicit weights are scaled to ${100 - unweighted.length}`,
    )
    for (const b of unweighted) out.set(b.name, {name: b.name, weight: 1, source: 'minimum'})
    scale(explicit, 100 - unweighted.length).forEach((w, i) => {
      const b = explicit[i]!
      out.set(b.name, {name: b.name, weight: w, source: w === b.weight ? 'explicit' : 'scaled'})
    })
  }
  const result = sorted.map((b) => out.get(b.name)!)
  return {boxes: result, total: result.reduce((s, b) => s + b.weight, 0), warnings}
}

/**
 * Scale positive integers to sum to `total`, each at least 1: everyone gets 1, the rest is shared
 * in proportion (largest remainder, earlier boxes first on ties). Caller ensures total ≥ length.
 */
function scale(boxes: readonly {weight?: number}[], total: number): number[] {
  const weights = boxes.map((b) => b.weight!)
  const sum = weights.reduce((s, w) => s + w, 0)
  const spare = total - weights.length
  const exact = weights.map((w) => (w * spare) / sum)
  const result = exact.map((q) => 1 + Math.floor(q))
  let missing = total - result.reduce((s, w) => s + w, 0)
  const order = exact
    .map((q, i) => ({i, frac: q - Math.floor(q)}))
    .sort((a, b) => b.frac - a.frac || a.i - b.i)
  for (const {i} of order) {
    if (missing <= 0) break
    result[i]! += 1
    missing--
  }
  return result
}

// ---------------------------------------------------------------------------------------------
// Rendering

export interface RenderDispatcherOptions {
  setId: number
  /** PRIORITY column for every line. Default 0, as the original. */
  priority?: number
  /** FLAGS for a box in service. Default 0 (the original); 8 starts it probing. */
  flags?: number
  /** Default 5060. */
  defaultPort?: number
}

export interface RenderedDestination extends DispatcherFileEntry {
  name: string
  ip: string
  port: number
  weight: number
  /** Set when the box is draining or drained: it has the disabled flag. */
  maintenance?: MaintenanceState
}

export interface RenderedDispatcherList {
  /** The whole file. Same input, same bytes: no timestamps, so "unchanged" can be detected. */
  text: string
  destinations: RenderedDestination[]
  /** Skipped registrations and weight-rule notes, one line each, for the agent's log. */
  warnings: string[]
}

const HEADER = [
  'Generated by hactl (hactl agent dispatcher / hactl dispatcher sync) from the registrations in etcd.',
  'Do not edit: the next change rewrites this file. SETID URI FLAGS PRIORITY ATTRS;',
  'flag 4 (disabled) = draining or drained by hactl node drain, so a reload keeps it out of rotation.',
]

/**
 * Render `dispatcher.list` for one set: one line per registration, ordered by name,
 * `SETID sip:IP:PORT FLAGS PRIORITY weight=W`. A draining or drained box gets the disabled flag (4)
 * so that `dispatcher.reload`, which rebuilds every state from the file, cannot bring it back; it
 * keeps weight 1 (never 0, see `computeWeights`) and the boxes in service share the 100 among
 * themselves, so the calls it would have taken are spread by the rule instead of all falling to
 * the destination after it. (Kamailio fills 100 slots in its list order, so each disabled box
 * still moves about 1% of the calls from the last destination to its neighbour.)
 *
 * Invalid registrations (bad name, IP or port; a second box with the same name or address) are
 * skipped with a warning rather than thrown: one bad key in etcd must not stop every reload.
 */
export function renderDispatcherList(
  registrations: readonly Registration[],
  marks: MaintenanceMarksInput | undefined,
  opts: RenderDispatcherOptions,
): RenderedDispatcherList {
  const warnings: string[] = []
  const markOf = marksLookup(marks)
  const priority = opts.priority ?? 0
  const activeFlags = opts.flags ?? 0
  const defaultPort = opts.defaultPort ?? 5060

  const seenNames = new Set<string>()
  const seenAddrs = new Map<string, string>()
  const boxes: {name: string; ip: string; port: number; weight?: number; mark?: MaintenanceState}[] = []
  for (const r of [...registrations].sort((a, b) => compareNames(a.name, b.name))) {
    const problem = registrationProblem(r)
    if (problem) {
      warnings.push(`skipped registration ${JSON.stringify(r.name)}: ${problem}`)
      continue
    }
    if (seenNames.has(r.name)) {
      warnings.push(`skipped a second registration named ${r.name}`)
      continue
    }
    const port = r.port ?? defaultPort
    const addr = `${r.ip}:${port}`
    const other = seenAddrs.get(addr)
    if (other !== undefined) {
      warnings.push(`skipped ${r.name}: ${addr} is already registered by ${other}`)
      continue
    }
    seenNames.add(r.name)
    seenAddrs.set(addr, r.name)
    const mark = markOf(r.name)
    boxes.push({
      name: r.name,
      ip: r.ip,
      port,
      ...(r.weight === undefined ? {} : {weight: r.weight}),
      ...(mark ? {mark} : {}),
    })
  }

  const assignment = computeWeights(boxes.filter((b) => b.mark === undefined))
  warnings.push(...assignment.warnings)
  const weightOf = new Map(assignment.boxes.map((b) => [b.name, b.weight]))

  const destinations: RenderedDestination[] = boxes.map((b) => {
    const weight = weightOf.get(b.name) ?? 1
    return {
      name: b.name,
      ip: b.ip,
      port: b.port,
      weight,
      ...(b.mark ? {maintenance: b.mark} : {}),
      setId: opts.setId,
      uri: sipUri(b.ip, b.port),
      flags: b.mark ? DispatcherFlag.disabled : activeFlags,
      priority,
      attrs: `weight=${weight}`,
    }
  })
  const text = renderDispatcherFile(destinations, {header: HEADER})
  return {text, destinations, warnings}
}

/** `sip:IP:PORT`, with brackets around an IPv6 address. */
export function sipUri(ip: string, port: number): string {
  return isIP(ip) === 6 ? `sip:[${ip}]:${port}` : `sip:${ip}:${port}`
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/

function registrationProblem(r: Registration): string | undefined {
  if (typeof r.name !== 'string' || !NAME_RE.test(r.name))
    return 'the name must be letters, digits, ".", "_" or "-"'
  if (typeof r.ip !== 'string' || isIP(r.ip) === 0) return `${JSON.stringify(r.ip)} is not an IP address`
  if (r.port !== undefined && !(Number.isInteger(r.port) && r.port >= 1 && r.port <= 65535))
    return `port ${r.port} is not 1–65535`
  return undefined
}

function marksLookup(
  marks: MaintenanceMarksInput | undefined,
): (name: string) => MaintenanceState | undefined {
  if (marks === undefined) return () => undefined
  if (Array.isArray(marks)) {
    const m = new Map(
      (marks as readonly {node: string; state: MaintenanceState}[]).map((x) => [x.node, x.state]),
    )
    return (name) => m.get(name)
  }
  if (marks instanceof Map)
    return (name) => (marks as ReadonlyMap<string, {state: MaintenanceState}>).get(name)?.state
  const rec = marks as Readonly<Record<string, {state: MaintenanceState}>>
  return (name) => (Object.hasOwn(rec, name) ? rec[name]?.state : undefined)
}

/** Byte order, not locale order: the file must not change with the machine's locale. */
function compareNames(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}

// ---------------------------------------------------------------------------------------------
// Diff

export type DiffOp = {op: 'same' | 'del' | 'add'; line: string}

/**
 * The line edits that turn `a` into `b` (longest common subsequence). Quadratic, which is fine
 * for dispatcher lists; past a few million cells it gives up on alignment and reports a
 * replacement of the differing middle.
 */
export function lineEdits(a: readonly string[], b: readonly string[]): DiffOp[] {
  // Common head and tail first: a typical change touches one or two lines.
  let start = 0
  while (start < a.length && start < b.length && a[start] === b[start]) start++
  let endA = a.length
  let endB = b.length
  while (endA > start && endB > start && a[endA - 1] === b[endB - 1]) {
    endA--
    endB--
  }
  const head: DiffOp[] = a.slice(0, start).map((line) => ({op: 'same', line}))
  const tail: DiffOp[] = a.slice(endA).map((line) => ({op: 'same', line}))
  const midA = a.slice(start, endA)
  const midB = b.slice(start, endB)
  const n = midA.length
  const m = midB.length
  if (n * m > 4_000_000) {
    return [
      ...head,
      ...midA.map((line) => ({op: 'del', line}) as DiffOp),
      ...midB.map((line) => ({op: 'add', line}) as DiffOp),
      ...tail,
    ]
  }
  // lcs[i][j] = LCS length of midA[i..] and midB[j..], flattened.
  const w = m + 1
  const lcs = new Uint32Array((n + 1) * w)
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lcs[i * w + j] =
        midA[i] === midB[j]
          ? lcs[(i + 1) * w + j + 1]! + 1
          : Math.max(lcs[(i + 1) * w + j]!, lcs[i * w + j + 1]!)
    }
  }
  const mid: DiffOp[] = []
  let i = 0
  let j = 0
  while (i < n && j < m) {
    if (midA[i] === midB[j]) {
      mid.push({op: 'same', line: midA[i]!})
      i++
      j++
    } else if (lcs[(i + 1) * w + j]! >= lcs[i * w + j + 1]!) {
      mid.push({op: 'del', line: midA[i++]!})
    } else {
      mid.push({op: 'add', line: midB[j++]!})
    }
  }
  while (i < n) mid.push({op: 'del', line: midA[i++]!})
  while (j < m) mid.push({op: 'add', line: midB[j++]!})
  return [...head, ...mid, ...tail]
}

export interface DiffOptions {
  /** Lines of context around each change. Default 3. */
  context?: number
  oldLabel?: string
  newLabel?: string
}

/**
 * A unified diff (`---`/`+++`, `@@ -a,b +c,d @@` hunks, ` `/`-`/`+` lines) of two texts, or '' when
 * they are equal, for `hactl dispatcher sync` to show before it writes. A missing final newline
 * is not reported: Kamailio does not care.
 */
export function diffLines(oldText: string, newText: string, opts: DiffOptions = {}): string {
  const a = splitLines(oldText)
  const b = splitLines(newText)
  const ops = lineEdits(a, b)
  if (ops.every((o) => o.op === 'same')) return ''
  const context = opts.context ?? 3

  // Positions (1-based line numbers) of each op in the old and new text.
  const pos: {oldLine: number; newLine: number}[] = []
  let o = 1
  let nl = 1
  for (const op of ops) {
    pos.push({oldLine: o, newLine: nl})
    if (op.op !== 'add') o++
    if (op.op !== 'del') nl++
  }

  // Group changes whose context windows touch into hunks.
  const changed = ops.flatMap((op, idx) => (op.op === 'same' ? [] : [idx]))
  const hunks: [number, number][] = []
  for (const idx of changed) {
    const from = Math.max(0, idx - context)
    const to = Math.min(ops.length - 1, idx + context)
    const last = hunks.at(-1)
    if (last && from <= last[1] + 1) last[1] = to
    else hunks.push([from, to])
  }

  const out = [`--- ${opts.oldLabel ?? 'current'}`, `+++ ${opts.newLabel ?? 'new'}`]
  for (const [from, to] of hunks) {
    const slice = ops.slice(from, to + 1)
    const oldCount = slice.filter((x) => x.op !== 'add').length
    const newCount = slice.filter((x) => x.op !== 'del').length
    const first = pos[from]!
    // An empty side is written as "line before, 0 lines", as diff -u does.
    const oldStart = oldCount === 0 ? first.oldLine - 1 : first.oldLine
    const newStart = newCount === 0 ? first.newLine - 1 : first.newLine
    out.push(`@@ -${oldStart},${oldCount} +${newStart},${newCount} @@`)
    for (const x of slice) out.push(`${x.op === 'same' ? ' ' : x.op === 'del' ? '-' : '+'}${x.line}`)
  }
  return `${out.join('\n')}\n`
}

function splitLines(text: string): string[] {
  if (text === '') return []
  const lines = text.replace(/\r\n/g, '\n').split('\n')
  if (lines.at(-1) === '') lines.pop()
  return lines
}

// ---------------------------------------------------------------------------------------------
// Reload debouncing

/** What one reload attempt gave: Kamailio reloaded, or refused within `reload_delta`. */
export type ReloadOutcome = 'ok' | 'ongoing-reload'

export type ReloadEvent =
  | {type: 'reloaded'; at: number; requests: number}
  /** `retryAt` is absent on the last attempt (a `gave-up` event follows). */
  | {type: 'ongoing-reload'; at: number; attempt: number; retryAt?: number}
  | {type: 'failed'; at: number; attempt: number; error: unknown; retryAt?: number}
  | {type: 'gave-up'; at: number; attempts: number}

export interface ReloadDebouncerOptions {
  /** Run `kamcmd dispatcher.reload`; resolve with its outcome, throw on any other failure. */
  reload: () => Promise<ReloadOutcome>
  /**
   * Minimum time between the end of one accepted reload and the start of the next. Kamailio's
   * `reload_delta` (default 5) is checked in whole seconds against the time it started the last
   * one, so measuring from the end of ours, in milliseconds, is never too early.
   */
  minIntervalMs?: number
  /** Wait this long after the first request of a batch, so a burst of changes is one reload. Default 0. */
  settleMs?: number
  /**
   * Retry delay after "Ongoing reload" (someone else reloaded less than reload_delta ago; when, we
   * cannot know) and after a failure. Default 1000.
   */
  retryDelayMs?: number
  /** Attempts per batch before giving up until the next request. Default 10. */
  maxAttempts?: number
  now?: () => number
  /** Run `fn` after `delayMs`; return a function that cancels it. */
  schedule?: (fn: () => void, delayMs: number) => () => void
  onEvent?: (event: ReloadEvent) => void
}

export interface ReloadDebouncer {
  /** Ask for a reload (the file changed). Requests made before the reload starts share it. */
  request(): void
  /** Resolves when no reload is waiting or running (or the debouncer is closed). */
  idle(): Promise<void>
  /** Whether a reload is waiting or running. */
  readonly busy: boolean
  /** Stop: cancel a waiting reload. One already running finishes, with no follow-up. */
  close(): void
}

/**
 * Coalesce reload requests so Kamailio is never asked twice within `minIntervalMs`, and retry when
 * it answers "Ongoing reload" anyway (another client reloaded). Every request is served by a
 * reload that starts after it, so the last version of the file is always the one loaded.
 * A reload that throws (kamcmd failed, Kamailio down) is retried like "Ongoing reload", up to
 * `maxAttempts`; if Kamailio is down it reads the file when it starts, so giving up loses nothing.
 */
export function createReloadDebouncer(opts: ReloadDebouncerOptions): ReloadDebouncer {
  const minInterval = opts.minIntervalMs ?? 5000
  const settle = opts.settleMs ?? 0
  const retryDelay = opts.retryDelayMs ?? 1000
  const maxAttempts = opts.maxAttempts ?? 10
  const now = opts.now ?? Date.now
  const schedule =
    opts.schedule ??
    ((fn: () => void, ms: number) => {
      const t = setTimeout(fn, ms)
      return () => clearTimeout(t)
    })
  const emit = (e: ReloadEvent): void => {
    try {
      opts.onEvent?.(e)
    } catch {
      // A logging callback that throws must not wedge the state machine.
    }
  }

  let closed = false
  let running = false
  /** Requests not yet served by a reload that started after them. */
  let requests = 0
  let batchStartedAt = 0
  let lastReloadEnd: number | undefined
  let retryAt: number | undefined
  let attempts = 0
  let timer: {at: number; cancel: () => void} | undefined
  let waiters: (() => void)[] = []

  const isBusy = (): boolean => !closed && (running || requests > 0)

  function settleWaiters(): void {
    if (isBusy()) return
    const w = waiters
    waiters = []
    for (const fn of w) fn()
  }

  function pump(): void {
    if (closed || running) return
    if (requests === 0) {
      settleWaiters()
      return
    }
    const t = now()
    let at = batchStartedAt + settle
    if (lastReloadEnd !== undefined) at = Math.max(at, lastReloadEnd + minInterval)
    if (retryAt !== undefined) at = Math.max(at, retryAt)
    if (at <= t) {
      timer?.cancel()
      timer = undefined
      void run()
      return
    }
    if (timer && timer.at === at) return
    timer?.cancel()
    const cancel = schedule(() => {
      timer = undefined
      pump()
    }, at - t)
    timer = {at, cancel}
  }

  async function run(): Promise<void> {
    running = true
    const served = requests
    requests = 0
    attempts++
    let outcome: ReloadOutcome | undefined
    let error: unknown
    try {
      outcome = await opts.reload()
    } catch (error_) {
      error = error_
    }
    const at = now()
    running = false
    if (outcome === 'ok') {
      lastReloadEnd = at
      retryAt = undefined
      attempts = 0
      emit({type: 'reloaded', at, requests: served})
    } else if (attempts >= maxAttempts) {
      emit(
        outcome === undefined
          ? {type: 'failed', at, attempt: attempts, error}
          : {type: 'ongoing-reload', at, attempt: attempts},
      )
      emit({type: 'gave-up', at, attempts})
      attempts = 0
      retryAt = undefined
    } else {
      // Not served: put the requests back, and try again after the retry delay.
      requests += served
      if (requests > 0) batchStartedAt = Math.min(batchStartedAt, at)
      retryAt = at + retryDelay
      emit(
        outcome === undefined
          ? {type: 'failed', at, attempt: attempts, error, retryAt}
          : {type: 'ongoing-reload', at, attempt: attempts, retryAt},
      )
    }
    pump()
  }

  return {
    request(): void {
      if (closed) return
      if (requests === 0) batchStartedAt = now()
      requests++
      pump()
    },
    idle(): Promise<void> {
      if (!isBusy()) return Promise.resolve()
      return new Promise((resolve) => waiters.push(resolve))
    },
    get busy(): boolean {
      return isBusy()
    },
    close(): void {
      closed = true
      timer?.cancel()
      timer = undefined
      requests = 0
      settleWaiters()
    },
  }
}
