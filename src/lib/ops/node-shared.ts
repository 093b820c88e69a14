import type {HactlConfig, ResolvedNode} from '../config/load.js'
import type {EtcdHandle} from '../etcd/client.js'
import {formatMs, HactlError, HostError, InterruptedError} from '../errors.js'
import type {SshPool} from '../ssh/pool.js'
import {sh, shellQuote} from '../ssh/quote.js'

/**
 * What `hactl node add` and `hactl node remove` share: the targeted edits of Kamailio's
 * dispatcher list (one destination, in the file and at runtime), the announce agent's start and
 * stop on a host (pid file), the undo stack, and the cluster lock and history.
 *
 * Why targeted edits of the dispatcher list, not `hactl dispatcher sync`: a sync renders the whole
 * list from the etcd registrations, which removes every box that is not announced, e.g. every box
 * of a cluster whose Asterisk hosts run no announce agent (the lab's). Adding or removing exactly
 * one destination is right in both setups: where dispatcher agents run, they write the same box
 * into the list themselves (it is registered), and where the list is static, the other lines are
 * left alone byte for byte. At runtime hactl uses `dispatcher.add` / `dispatcher.remove`, never
 * `dispatcher.reload`: a reload resets every runtime state (a drained box's `d` would be lost).
 */

// ---------------------------------------------------------------------------------------------
// dispatcher.list edits (pure)

export function hostKey(host: string, port: number): string {
  return `${host.replace(/^\[(.*)\]$/, '$1').toLowerCase()}:${port}`
}

/** The line hactl writes for a new box: `SETID URI 0 0[ weight=W]`. */
export function destinationLine(setId: number, uri: string, weight?: number): string {
  return `${setId} ${uri} 0 0${weight === undefined ? '' : ` weight=${weight}`}`
}

type UriParser = (uri: string) => {host: string; port: number} | undefined

/** Set id and host:port of a list line, or undefined for comments, blanks and lines hactl cannot read. */
function lineTarget(line: string, parseUri: UriParser): {setId: number; key: string} | undefined {
  const t = line.replace(/\r$/, '').trim()
  if (t === '' || t.startsWith('#')) return undefined
  const [setId, uri] = t.split(/[ \t]+/)
  if (!setId || !/^\d+$/.test(setId) || !uri) return undefined
  const u = parseUri(uri.split('#')[0] ?? '')
  return u ? {setId: Number(setId), key: hostKey(u.host, u.port)} : undefined
}

/** Whether the list text has a line for host:port in the set. */
export function listHasDestination(text: string, setId: number, host: string, port: number, parseUri: UriParser): boolean {
  const want = hostKey(host, port)
  return text.split('\n').some((l) => {
    const t = lineTarget(l, parseUri)
    return t !== undefined && t.setId === setId && t.key === want
  })
}

/** The text with `line` appended (a newline added first if the file lacks a final one). */
export function appendListLine(text: string, line: string): string {
  const eol = text.includes('\r\n') ? '\r\n' : '\n'
  if (text === '') return `${line}${eol}`
  return `${text}${text.endsWith('\n') ? '' : eol}${line}${eol}`
}

/** The text without the lines for host:port in the set; every other byte as it was. */
export function removeListDestination(
  text: string,
  setId: number,
  host: string,
  port: number,
  parseUri: UriParser,
): {text: string; removed: string[]} {
  const want = hostKey(host, port)
  const parts = text.split('\n')
  const kept: string[] = []
  const removed: string[] = []
  for (const l of parts) {
    const t = lineTarget(l, parseUri)
    if (t && t.setId === setId && t.key === want) removed.push(l.replace(/\r$/, ''))
    else kept.push(l)
  }
  return {text: kept.join('\n'), removed}
}

// ---------------------------------------------------------------------------------------------
// Kamailio, over SSH

export interface KamailioView {
  node: string
  ok: boolean
  error?: string
  fileExists: boolean
  /** The list file's text (exact bytes as UTF-8). */
  fileText: string
  inFile: boolean
  /** The destination at runtime; null when absent. */
  runtime: {flags: string; state: string} | null
}

/** Each Kamailio's list file and runtime view of host:port (one round trip per Kamailio). */
export async function readKamailioViews(
  config: HactlConfig,
  pool: SshPool,
  kams: readonly ResolvedNode[],
  host: string,
  port: number,
): Promise<KamailioView[]> {
  const [{buildReadScript, parseReadScript}, {parseDispatcherList, parseSipUri}] = await Promise.all([
    import('./dispatcher-sync.js'),
    import('../facts/kamailio.js'),
  ])
  const setId = config.kamailio.setId
  return Promise.all(
    kams.map(async (k): Promise<KamailioView> => {
      try {
        const r = await pool.run(k, buildReadScript(config), {check: false})
        const f = parseReadScript(r.stdout)
        const runtime = runtimeView(f.list, setId, host, port, parseDispatcherList)
        return {node: k.name, ok: true, fileExists: f.exists, fileText: f.file, inFile: listHasDestination(f.file, setId, host, port, parseSipUri), runtime}
      } catch (error) {
        return {node: k.name, ok: false, error: firstLine(error), fileExists: false, fileText: '', inFile: false, runtime: null}
      }
    }),
  )
}

function runtimeView(
  listText: string,
  setId: number,
  host: string,
  port: number,
  parse: (t: string) => {sets: Array<{id: number; targets: Array<{host: string; port: number; flags: string; state: string}>}>},
): {flags: string; state: string} | null {
  const set = parse(listText).sets.find((s) => s.id === setId)
  const t = set?.targets.find((x) => hostKey(x.host, x.port) === hostKey(host, port))
  return t ? {flags: t.flags, state: t.state} : null
}

/** Run one kamcmd command, retried while Kamailio answers "Ongoing reload" (reload_delta, 5 s). */
export async function kamcmdRetrying(
  config: HactlConfig,
  pool: SshPool,
  kam: ResolvedNode,
  args: Array<string | number>,
  opts: {retryMs?: number} = {},
): Promise<string> {
  const [{kamcmd}, {classifyKamcmdAnswer}] = await Promise.all([import('../kamailio.js'), import('../facts/kamailio.js')])
  const deadline = Date.now() + (opts.retryMs ?? 8000)
  for (;;) {
    const r = await pool.run(kam, kamcmd(config, args), {check: false})
    const answer = classifyKamcmdAnswer(r.stdout, r.code)
    if (answer.kind === 'ok') return answer.text
    if (answer.kind === 'ongoing-reload' && Date.now() < deadline) {
      await sleep(1000)
      continue
    }
    throw new HactlError(`${kam.name}: kamcmd ${args.join(' ')} failed: ${answer.message}`, {
      suggestions: [`hactl exec ${kam.name} -- ${config.kamailio.cli} dispatcher.list`],
    })
  }
}

/** Write the list file atomically (content on stdin), as `hactl dispatcher sync` does. */
export async function writeListFile(config: HactlConfig, pool: SshPool, kam: ResolvedNode, text: string): Promise<void> {
  const {buildWriteScript} = await import('./dispatcher-sync.js')
  await pool.run(kam, buildWriteScript(config.kamailio.listFile), {stdin: text})
}

/** Poll every Kamailio until host:port is active there; throws with each one's last flags on timeout. */
export async function waitUntilActive(
  config: HactlConfig,
  pool: SshPool,
  kams: readonly ResolvedNode[],
  host: string,
  port: number,
  opts: {timeoutMs: number; onProgress?: (flags: Record<string, string | null>) => void},
): Promise<Record<string, string>> {
  const deadline = Date.now() + opts.timeoutMs
  for (;;) {
    const views = await readKamailioViews(config, pool, kams, host, port)
    const flags = Object.fromEntries(views.map((v) => [v.node, v.ok ? (v.runtime?.flags ?? null) : null]))
    opts.onProgress?.(flags)
    if (views.every((v) => v.ok && v.runtime?.state === 'active')) {
      return Object.fromEntries(views.map((v) => [v.node, v.runtime!.flags]))
    }
    if (Date.now() >= deadline) {
      throw new HactlError(
        `not active on every Kamailio after ${Math.round(opts.timeoutMs / 1000)}s: ${views.map((v) => `${v.node} ${v.ok ? (v.runtime?.flags ?? 'absent') : `unreachable (${v.error ?? ''})`}`).join(', ')}`,
        {suggestions: ['check that Asterisk answers SIP OPTIONS on the host, and the Kamailio probing settings']},
      )
    }
    await sleep(1000)
  }
}

// ---------------------------------------------------------------------------------------------
// The announce agent on a host

/** Where the agent's pid and log live on the host (/run: the pid file goes with a reboot, as the agent does). */
export function agentFiles(name: string): {pidFile: string; logFile: string} {
  return {pidFile: `/run/hactl/announce-${name}.pid`, logFile: `/var/log/hactl-announce-${name}.log`}
}

const AM = '@@hactl-agent'

/**
 * Start `AGENT agent announce ...` in the background in its own session (setsid; every fd
 * redirected so the SSH session ends at once), and record its pid. A background `setsid` is not
 * a process group leader, so it execs without forking: `$!` is the agent's own pid. An agent that
 * already runs (pid file, live process) is left alone.
 */
export function startAgentScript(agentArgv: readonly string[], args: readonly string[], name: string): string {
  const {pidFile, logFile} = agentFiles(name)
  return [
    sh`pidf=${pidFile}; log=${logFile}`,
    'mkdir -p "$(dirname -- "$pidf")" || exit 1',
    `if [ -f "$pidf" ] && pid=$(cat "$pidf") && kill -0 "$pid" 2>/dev/null; then echo "${AM} running $pid"; exit 0; fi`,
    'cd / || exit 1',
    // A simple command alone behind `&`: the forked child applies the redirections, so nothing
    // keeps the SSH channel open, and it execs setsid, so $! is the agent's pid.
    `setsid ${[...agentArgv, ...args].map(shellQuote).join(' ')} >>"$log" 2>&1 </dev/null &`,
    'pid=$!',
    'echo "$pid" >"$pidf" || exit 1',
    // An agent that dies at once (bad flag, missing module) is reported now, with its log.
    'sleep 0.5',
    `if kill -0 "$pid" 2>/dev/null; then echo "${AM} started $pid"; else echo "${AM} died $pid"; tail -n 5 "$log"; rm -f "$pidf"; fi`,
  ].join('\n')
}

export function parseAgentStart(stdout: string): {outcome: 'started' | 'running' | 'died' | 'unknown'; pid?: number; log: string} {
  const m = new RegExp(`^${AM} (started|running|died) (\\d+)$`, 'm').exec(stdout)
  if (!m) return {outcome: 'unknown', log: stdout.trim()}
  const after = stdout.slice(m.index + m[0].length).trim()
  return {outcome: m[1] as 'started' | 'running' | 'died', pid: Number(m[2]), log: after}
}

/**
 * Stop the agent recorded in the pid file: TERM (it revokes its lease, so the box leaves the
 * rotation at once), KILL after 5 s. A pid that is no longer an announce agent is not touched.
 */
export function stopAgentScript(name: string): string {
  const {pidFile} = agentFiles(name)
  return [
    sh`pidf=${pidFile}`,
    `[ -f "$pidf" ] || { echo "${AM} none"; exit 0; }`,
    'pid=$(cat "$pidf")',
    `if ! kill -0 "$pid" 2>/dev/null; then rm -f "$pidf"; echo "${AM} gone $pid"; exit 0; fi`,
    `if ! tr '\\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'agent announce'; then rm -f "$pidf"; echo "${AM} foreign $pid"; exit 0; fi`,
    'kill -TERM "$pid"',
    'i=0; while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done',
    `if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; echo "${AM} killed $pid"; else echo "${AM} stopped $pid"; fi`,
    'rm -f "$pidf"',
  ].join('\n')
}

export function parseAgentStop(stdout: string): {outcome: 'none' | 'gone' | 'foreign' | 'stopped' | 'killed' | 'unknown'; pid?: number} {
  const m = new RegExp(`^${AM} (none|gone|foreign|stopped|killed)(?: (\\d+))?$`, 'm').exec(stdout)
  if (!m) return {outcome: 'unknown'}
  return {outcome: m[1] as 'none', ...(m[2] ? {pid: Number(m[2])} : {})}
}

/** The pid file's agent: running (pid), or not. */
export function agentStatusScript(name: string): string {
  const {pidFile} = agentFiles(name)
  return [sh`pidf=${pidFile}`, `if [ -f "$pidf" ] && pid=$(cat "$pidf") && kill -0 "$pid" 2>/dev/null; then echo "${AM} running $pid"; else echo "${AM} none"; fi`].join('\n')
}

// ---------------------------------------------------------------------------------------------
// Undo stack

export interface UndoOutcome {
  title: string
  ok: boolean
  error?: string
}

/** What a run did, to undo in reverse order when a later step fails. */
export class UndoStack {
  private readonly items: Array<{title: string; run: () => Promise<void>}> = []

  push(title: string, run: () => Promise<void>): void {
    this.items.push({title, run})
  }

  /** Forget the last entry titled `title` (the step it undoes was undone some other way). */
  drop(title: string): void {
    const i = this.items.map((x) => x.title).lastIndexOf(title)
    if (i >= 0) this.items.splice(i, 1)
  }

  get size(): number {
    return this.items.length
  }

  /** Undo everything, newest first; each undo is tried even when an earlier one failed. */
  async unwind(onEach?: (o: UndoOutcome) => void): Promise<UndoOutcome[]> {
    const out: UndoOutcome[] = []
    while (this.items.length > 0) {
      const item = this.items.pop()!
      let o: UndoOutcome
      try {
        await item.run()
        o = {title: item.title, ok: true}
      } catch (error) {
        o = {title: item.title, ok: false, error: firstLine(error)}
      }
      out.push(o)
      onEach?.(o)
    }
    return out
  }
}

// ---------------------------------------------------------------------------------------------
// Steps, lock, history

export type StepStatus = 'done' | 'skipped' | 'failed' | 'pending'

export interface StepRecord {
  id: string
  title: string
  status: StepStatus
  detail?: string
  durationMs?: number
}

export type NodeOpEvent =
  | {type: 'start'; step: string; title: string}
  | {type: 'update'; step: string; text: string}
  | {type: 'done'; step: string; detail?: string}
  | {type: 'fail'; step: string; detail: string}
  | {type: 'skip'; step: string; detail: string}
  | {type: 'undo'; title: string; ok: boolean; error?: string}

/** Runs plan steps in order, recording each and reporting it. */
export class StepRunner {
  readonly records: StepRecord[]

  constructor(
    steps: ReadonlyArray<{id: string; title: string}>,
    private readonly onEvent: (e: NodeOpEvent) => void = () => {},
    /** Ctrl-C: no step starts once it is aborted (run throws InterruptedError instead). */
    private readonly signal?: AbortSignal,
  ) {
    this.records = steps.map((s) => ({id: s.id, title: s.title, status: 'pending' as const}))
  }

  /** Run step `id`; `fn` returns a one-line detail for the summary (or nothing). */
  async run(id: string, fn: (update: (text: string) => void) => Promise<string | void>): Promise<void> {
    const rec = this.records.find((r) => r.id === id)
    if (!rec) throw new Error(`bug: no step ${id}`)
    if (this.signal?.aborted) throw new InterruptedError(`interrupted before "${rec.title}"`)
    const started = Date.now()
    this.onEvent({type: 'start', step: id, title: rec.title})
    try {
      const detail = await fn((text) => this.onEvent({type: 'update', step: id, text}))
      rec.status = 'done'
      rec.durationMs = Date.now() - started
      if (detail) rec.detail = detail
      this.onEvent({type: 'done', step: id, ...(detail ? {detail} : {})})
    } catch (error) {
      rec.status = 'failed'
      rec.durationMs = Date.now() - started
      rec.detail = firstLine(error)
      this.onEvent({type: 'fail', step: id, detail: rec.detail})
      throw error
    }
  }

  /** Mark step `id` skipped (nothing to do there). */
  skip(id: string, detail: string): void {
    const rec = this.records.find((r) => r.id === id)
    if (!rec || rec.status !== 'pending') return
    rec.status = 'skipped'
    rec.detail = detail
    this.onEvent({type: 'skip', step: id, detail})
  }

  skipRest(detail: string): void {
    for (const r of this.records) {
      if (r.status !== 'pending') continue
      r.status = 'skipped'
      r.detail = detail
      this.onEvent({type: 'skip', step: r.id, detail})
    }
  }
}

/**
 * Take the cluster lock for a mutating run (issue 9): refused at once when another run holds it,
 * or, with `waitMs` (`--wait-lock`), waited for with one warning per holder seen.
 */
export async function takeClusterLock(
  config: HactlConfig,
  etcd: EtcdHandle,
  command: string,
  onWarning?: (m: string) => void,
  waitMs = 0,
): Promise<{release(): Promise<void>}> {
  const {acquireClusterLock, describeHolder, lockHolder} = await import('../etcd/lock.js')
  return acquireClusterLock(etcd, {
    key: config.etcd.prefixes.lock,
    holder: lockHolder(command.length > 4096 ? `${command.slice(0, 4093)}...` : command),
    waitMs,
    onWait: (holder, raw) =>
      onWarning?.(`waiting up to ${formatMs(waitMs)} for the cluster lock: ${describeHolder(holder, raw)}`),
    onLost: (e) => onWarning?.(`lost the cluster lock (${e.message}); another run may start meanwhile`),
  })
}

export async function recordNodeHistory(
  config: HactlConfig,
  etcd: EtcdHandle | undefined,
  entry: {argv: string[]; plan: string[]; started: number; exitCode: number; node: string; ok: boolean; detail: string},
  onWarning?: (m: string) => void,
): Promise<void> {
  return recordRunHistory(config, etcd, {...entry, results: [{node: entry.node, ok: entry.ok, detail: entry.detail}]}, onWarning)
}

/** One history entry (local file, and etcd when a handle is given) for a mutating run; never throws. */
export async function recordRunHistory(
  config: HactlConfig,
  etcd: EtcdHandle | undefined,
  entry: {argv: string[]; plan: string[]; started: number; exitCode: number; results: Array<{node: string; ok: boolean; detail: string}>},
  onWarning?: (m: string) => void,
): Promise<void> {
  const {appendHistory, startHistoryEntry, finishHistoryEntry} = await import('../history.js')
  const e = finishHistoryEntry(startHistoryEntry({cluster: config.cluster, argv: entry.argv, plan: entry.plan, at: new Date(entry.started)}), {
    exitCode: entry.exitCode,
    results: entry.results,
  })
  const r = await appendHistory(e, etcd ? {etcd: {handle: etcd, prefix: config.etcd.prefixes.history}} : {})
  if (r.fileError) onWarning?.(`history not written to ${r.file}: ${r.fileError}`)
  if (r.etcd && 'error' in r.etcd) onWarning?.(`history not written to etcd: ${r.etcd.error}`)
}

/** The command line for the lock holder and the history: `hactl node add ...`, each word quoted. */
export function commandLine(bin: string, argv: readonly string[]): string {
  return [bin, ...argv].map((a) => shellQuote(a)).join(' ')
}

export function firstLine(error: unknown): string {
  const msg = error instanceof Error ? error.message : String(error)
  return (msg.split('\n').find((l) => l.trim() !== '') ?? msg).trim()
}

export function errorKind(error: unknown): string {
  if (error instanceof HostError) return error.kind
  if (error instanceof HactlError) return (error as {kind?: string}).kind ?? error.name
  return 'internal'
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** etcd handle for the cluster: through the SSH pool when `etcd.via` is ssh. */
export async function openClusterEtcd(config: HactlConfig, pool: SshPool, endpoints?: string[]): Promise<EtcdHandle> {
  const {openEtcd} = await import('../etcd/client.js')
  const etcdNode = config.nodes.find((n) => n.roles.includes('etcd'))
  return openEtcd(config, {
    ...(endpoints ? {endpoints} : {}),
    ...(config.etcd.via === 'ssh' && etcdNode ? {tunnel: (h: string, p: number) => pool.forwardOut(etcdNode, h, p)} : {}),
  })
}
