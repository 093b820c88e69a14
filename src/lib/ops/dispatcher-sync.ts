import type {HactlConfig, ResolvedNode} from '../config/load.js'
import type {EtcdHandle} from '../etcd/client.js'
import {HactlError, HostError, PartialFailureError, withoutHost} from '../errors.js'
import type {DispatcherTarget} from '../facts/kamailio.js'
import type {SshPool} from '../ssh/pool.js'
import {sh, shellQuote} from '../ssh/quote.js'

/**
 * `hactl dispatcher sync`: what the dispatcher agent does, once, from the laptop. Render the list
 * from etcd, read each Kamailio's file and runtime list over SSH (one round trip per host), diff;
 * then write the changed files (content on stdin, temp file, `mv`), reload, and verify with
 * `kamcmd dispatcher.list`.
 */

/** One destination the rendering wants in the set. */
export interface WantedDestination {
  name: string
  uri: string
  host: string
  port: number
  weight: number
  /** A box in maintenance: written with the disabled flag, must show `D` at runtime. */
  disabled: boolean
}

export type SyncAction = 'none' | 'write' | 'reload'

export interface SyncHostPlan {
  node: string
  host: string
  listFile: string
  /** Whether the host could be read; when false, `error` says why and nothing is done there. */
  ok: boolean
  error?: {kind: string; message: string}
  /** Whether the list file exists on the host. */
  exists?: boolean
  /** The file's current text and what it should be (kept out of --json output's way by the caller). */
  current?: string
  wanted?: string
  /** Unified diff current → wanted ('' when equal). */
  diff?: string
  /** How the runtime list (kamcmd dispatcher.list) differs from the wanted set. */
  runtimeDifferences?: string[]
  /** write: the file differs; reload: the file is right but Kamailio runs something else. */
  action: SyncAction
}

export interface DispatcherSyncPlan {
  setId: number
  prefixes: {asterisk: string; maintenance: string}
  destinations: WantedDestination[]
  /** Skipped registrations and weight-rule notes. */
  warnings: string[]
  hosts: SyncHostPlan[]
}

export interface SyncHostResult extends SyncHostPlan {
  written: boolean
  reloaded: boolean
  /** The runtime list matched the wanted set after the change (or already did). */
  verified: boolean
}

export interface DispatcherSyncResult extends Omit<DispatcherSyncPlan, 'hosts'> {
  dryRun: boolean
  hosts: SyncHostResult[]
  /** Hosts that were (or, with --dry-run, would be) changed. */
  changed: string[]
  failed: string[]
  /** Every host's file and runtime list match the registrations. */
  inStep: boolean
}

export interface SyncProgress {
  update(host: string, text: string): void
  succeed(host: string, text?: string): void
  fail(host: string, text?: string): void
  skip(host: string, text?: string): void
}

export interface DispatcherSyncOptions {
  /** Kamailio nodes to sync (default: every node with the kamailio role). */
  nodes?: ResolvedNode[]
  progress?: SyncProgress
  /** How long to keep retrying a reload that Kamailio refuses as "Ongoing reload". Default 8 s. */
  reloadRetryMs?: number
  signal?: AbortSignal
  /** An open etcd handle (the one holding the cluster lock); default: open one for the read. */
  etcd?: EtcdHandle
  /** Push a list with no destination in the set (every box out of rotation). Default: refuse. */
  allowEmpty?: boolean
}

/** The etcd handle for a run, and the cluster lock when the run changes something. */
export interface SyncSession {
  etcd: EtcdHandle
  /** Release the lock (if taken) and close the handle. Idempotent. */
  close(): Promise<void>
}

/**
 * Open etcd for a sync run and, unless `lock` is false (a dry run), take the cluster lock first, so
 * that the plan the operator confirms is not raced by another hactl run (issue 9).
 */
export async function openSyncSession(
  config: HactlConfig,
  pool: SshPool,
  opts: {lock: boolean; command: string; waitLockMs?: number; onWarning?: (m: string) => void},
): Promise<SyncSession> {
  const {openClusterEtcd} = await import('./node-shared.js')
  const etcd = await openClusterEtcd(config, pool)
  let lock: {release(): Promise<void>} | undefined
  try {
    if (opts.lock) {
      const {takeClusterLock} = await import('./node-shared.js')
      lock = await takeClusterLock(config, etcd, opts.command, opts.onWarning, opts.waitLockMs ?? 0)
    }
  } catch (error) {
    await etcd.close().catch(() => undefined)
    throw error
  }
  let closed: Promise<void> | undefined
  return {
    etcd,
    close: () =>
      (closed ??= (async () => {
        try {
          await lock?.release()
        } catch (error) {
          opts.onWarning?.(`could not release the cluster lock: ${(error as Error).message}`)
        }
        await etcd.close().catch(() => undefined)
      })()),
  }
}

const MARK = '@@hactl-sync:'

/** The one script that reads a Kamailio host's facts: the list file (base64, exact bytes) and the runtime list. */
export function buildReadScript(config: HactlConfig): string {
  const f = config.kamailio.listFile
  return [
    sh`if [ -e ${f} ]; then echo ${`${MARK}file present`}; base64 <${f} | tr -d '\\n'; echo; else echo ${`${MARK}file absent`}; fi`,
    `echo ${shellQuote(`${MARK}list`)}`,
    `( ${config.kamailio.cli} dispatcher.list ) </dev/null 2>&1`,
    `echo "${MARK}rc $?"`,
  ].join('\n')
}

export interface HostFacts {
  exists: boolean
  file: string
  list: string
  listCode: number
}

export function parseReadScript(stdout: string): HostFacts {
  const lines = stdout.split('\n')
  const fileAt = lines.findIndex((l) => l.startsWith(`${MARK}file `))
  const listAt = lines.indexOf(`${MARK}list`)
  const rcAt = lines.findIndex((l) => l.startsWith(`${MARK}rc `))
  if (fileAt === -1 || listAt === -1 || rcAt === -1) throw new Error('the read script was cut short')
  const exists = lines[fileAt] === `${MARK}file present`
  const file = exists ? Buffer.from((lines[fileAt + 1] ?? '').trim(), 'base64').toString('utf8') : ''
  return {
    exists,
    file,
    list: lines.slice(listAt + 1, rcAt).join('\n'),
    listCode: Number(lines[rcAt]!.slice(`${MARK}rc `.length)),
  }
}

/**
 * Write `text` (sent on stdin) over the list file atomically: a temp file beside it with the old
 * file's mode and owner, then `mv`. A list file that is a mount point cannot be renamed over: it
 * is then rewritten in place.
 */
export function buildWriteScript(listFile: string): string {
  return [
    sh`f=${listFile}`,
    `tmp=$(mktemp "$(dirname -- "$f")/.$(basename -- "$f").hactl.XXXXXX") || exit 1`,
    `if ! cat >"$tmp"; then rm -f "$tmp"; exit 1; fi`,
    `if [ -e "$f" ]; then chmod --reference="$f" "$tmp" 2>/dev/null; chown --reference="$f" "$tmp" 2>/dev/null; else chmod 644 "$tmp"; fi`,
    `if mv -f "$tmp" "$f" 2>/dev/null; then exit 0; fi`,
    `if cat "$tmp" >"$f"; then rm -f "$tmp"; echo "${MARK}in-place"; exit 0; fi`,
    `rm -f "$tmp"; exit 1`,
  ].join('\n')
}

/** Reload, then list, in one round trip. */
export function buildReloadScript(config: HactlConfig): string {
  return [
    `( ${config.kamailio.cli} dispatcher.reload ) </dev/null 2>&1`,
    `echo "${MARK}reload-rc $?"`,
    `( ${config.kamailio.cli} dispatcher.list ) </dev/null 2>&1`,
    `echo "${MARK}rc $?"`,
  ].join('\n')
}

export interface ReloadFacts {
  reload: string
  reloadCode: number | null
  list: string
  listCode: number | null
}

/** Split the reload script's output into the reload's answer and the list that followed. */
export function parseReloadScript(stdout: string): ReloadFacts {
  const lines = stdout.split('\n')
  const reloadAt = lines.findIndex((l) => l.startsWith(`${MARK}reload-rc `))
  const rcAt = lines.findIndex((l) => l.startsWith(`${MARK}rc `))
  const code = (line: string | undefined) => {
    const n = Number(line?.split(' ').pop())
    return line === undefined || !Number.isInteger(n) ? null : n
  }
  if (reloadAt === -1) return {reload: stdout, reloadCode: null, list: '', listCode: null}
  return {
    reload: lines.slice(0, reloadAt).join('\n'),
    reloadCode: code(lines[reloadAt]),
    list: lines.slice(reloadAt + 1, rcAt === -1 ? undefined : rcAt).join('\n'),
    listCode: rcAt === -1 ? null : code(lines[rcAt]),
  }
}

/**
 * How a Kamailio's runtime set differs from the wanted destinations: missing or extra URIs, other
 * weights, a box in maintenance that is not disabled. A box that is disabled at runtime but not in
 * maintenance is not a difference: someone disabled it on purpose (`dispatcher.set_state d`), and a
 * reload would undo that.
 */
export function runtimeDifferences(
  targets: readonly DispatcherTarget[],
  wanted: readonly WantedDestination[],
): string[] {
  const key = (host: string, port: number) => `${host.replace(/^\[(.*)\]$/, '$1').toLowerCase()}:${port}`
  const have = new Map(targets.map((t) => [key(t.host, t.port), t]))
  const want = new Map(wanted.map((w) => [key(w.host, w.port), w]))
  const out: string[] = []
  for (const [k, w] of want) {
    const t = have.get(k)
    if (!t) {
      out.push(`${w.uri} (${w.name}) is missing`)
      continue
    }
    const weight = typeof t.attrs.weight === 'number' ? t.attrs.weight : Number(t.attrs.weight ?? 0)
    if (weight !== w.weight)
      out.push(`${w.uri} (${w.name}) has weight ${weight || 'none'}, wanted ${w.weight}`)
    if (w.disabled && t.state !== 'disabled')
      out.push(`${w.uri} (${w.name}) is ${t.flags}, wanted disabled (in maintenance)`)
  }
  for (const [k, t] of have) if (!want.has(k)) out.push(`${t.uri} is not registered`)
  return out
}

function targetsOfSet(
  listText: string,
  setId: number,
  parse: (t: string) => {sets: {id: number; targets: DispatcherTarget[]}[]},
): DispatcherTarget[] {
  return parse(listText).sets.find((s) => s.id === setId)?.targets ?? []
}

/** Read the registrations and every Kamailio host; work out what each needs. Changes nothing. */
export async function planDispatcherSync(
  config: HactlConfig,
  pool: SshPool,
  opts: DispatcherSyncOptions = {},
): Promise<DispatcherSyncPlan> {
  const nodes = opts.nodes ?? config.nodes.filter((n) => n.roles.includes('kamailio'))
  if (nodes.length === 0) {
    throw new HactlError('no Kamailio nodes: no node in hactl.yaml has the kamailio role', {
      suggestions: ['add roles: [kamailio] to the Kamailio hosts in hactl.yaml'],
    })
  }
  const [{mergeOtherSets}, {diffLines}, {parseDispatcherList}] = await Promise.all([
    import('../agent/agent-loop.js'),
    import('../dispatcher/render.js'),
    import('../facts/kamailio.js'),
  ])
  const prefixes = {asterisk: config.etcd.prefixes.asterisk, maintenance: config.etcd.prefixes.maintenance}
  const setId = config.kamailio.setId
  for (const n of nodes) opts.progress?.update(n.name, 'reading the registrations from etcd')
  const rendered = await readAndRender(config, pool, setId, opts.etcd)
  if (rendered.destinations.length === 0 && !opts.allowEmpty) {
    // An empty etcd (a rediscover run with --no-restore, agents not running yet) must not take
    // every box out of rotation by accident.
    for (const n of nodes) opts.progress?.fail(n.name, 'not read: no registrations')
    throw new HactlError(
      `etcd has no Asterisk registration under ${prefixes.asterisk}: refusing to render an empty set ${setId}, which would take every box out of rotation; nothing was changed`,
      {
        suggestions: [
          'check that the announce agents run on the Asterisk boxes: hactl status',
          'to empty the set on purpose: hactl dispatcher sync --allow-empty',
        ],
      },
    )
  }

  const hosts = await Promise.all(
    nodes.map(async (node): Promise<SyncHostPlan> => {
      const base = {node: node.name, host: node.host, listFile: config.kamailio.listFile}
      try {
        opts.progress?.update(node.name, `reading ${config.kamailio.listFile} and dispatcher.list`)
        const r = await pool.run(node, buildReadScript(config), {check: false})
        const facts = parseReadScript(r.stdout)
        const current = facts.file
        const wanted = mergeOtherSets(facts.exists ? current : undefined, rendered.text, setId)
        const diff = diffLines(facts.exists ? current : '', wanted, {
          oldLabel: `${node.name}:${config.kamailio.listFile}`,
          newLabel: 'rendered from etcd',
        })
        const fileDiffers = !facts.exists || current !== wanted
        let differences: string[]
        try {
          differences = runtimeDifferences(
            targetsOfSet(facts.list, setId, parseDispatcherList),
            rendered.destinations,
          )
        } catch (error) {
          differences = [`cannot read the runtime list: ${(error as Error).message.split('\n')[0] ?? ''}`]
        }
        const action: SyncAction = fileDiffers ? 'write' : differences.length > 0 ? 'reload' : 'none'
        opts.progress?.succeed(
          node.name,
          action === 'none'
            ? 'in step'
            : action === 'write'
              ? 'file differs'
              : 'runtime differs from the file',
        )
        return {
          ...base,
          ok: true,
          exists: facts.exists,
          current,
          wanted,
          diff: fileDiffers && diff === '' ? '(whitespace or line endings only)\n' : diff,
          runtimeDifferences: differences,
          action,
        }
      } catch (error) {
        opts.progress?.fail(node.name, (error as Error).message.split('\n')[0])
        return {...base, ok: false, error: errorInfo(error), action: 'none'}
      }
    }),
  )
  return {setId, prefixes, destinations: rendered.destinations, warnings: rendered.warnings, hosts}
}

async function readAndRender(
  config: HactlConfig,
  pool: SshPool,
  setId: number,
  given?: EtcdHandle,
): Promise<{text: string; destinations: WantedDestination[]; warnings: string[]}> {
  const {readRegistrationSnapshot} = await import('../etcd/registrations.js')
  const {renderSnapshot} = await import('../agent/dispatcher-agent.js')
  const handle = given ?? (await (await import('./node-shared.js')).openClusterEtcd(config, pool))
  try {
    const snap = await readRegistrationSnapshot(handle, [
      config.etcd.prefixes.asterisk,
      config.etcd.prefixes.maintenance,
    ])
    const rendered = await renderSnapshot(snap, setId)
    const invalid = [...snap.registrations.invalid, ...snap.marks.invalid].map(
      (i) => `ignored ${i.key}: ${i.error}`,
    )
    return {
      text: rendered.text,
      destinations: rendered.destinations.map((d) => ({
        name: d.name,
        uri: d.uri,
        host: d.ip,
        port: d.port,
        weight: d.weight,
        disabled: d.maintenance !== undefined,
      })),
      warnings: [...rendered.warnings, ...invalid],
    }
  } finally {
    if (!given) await handle.close()
  }
}

/** Apply a plan: write, reload and verify every host whose action is not `none`. */
export async function applyDispatcherSync(
  config: HactlConfig,
  pool: SshPool,
  plan: DispatcherSyncPlan,
  opts: DispatcherSyncOptions = {},
): Promise<DispatcherSyncResult> {
  const {parseDispatcherList, classifyKamcmdAnswer} = await import('../facts/kamailio.js')
  const retryMs = opts.reloadRetryMs ?? 8000
  const nodesByName = new Map(config.nodes.map((n) => [n.name, n]))
  const hosts = await Promise.all(
    plan.hosts.map(async (h): Promise<SyncHostResult> => {
      const result: SyncHostResult = {
        ...h,
        written: false,
        reloaded: false,
        verified: h.ok && h.action === 'none',
      }
      const node = nodesByName.get(h.node)
      if (!h.ok || h.action === 'none' || !node) {
        if (h.ok && h.action === 'none') opts.progress?.skip(h.node, 'already in step')
        return result
      }
      try {
        if (opts.signal?.aborted) throw new HactlError('interrupted before this host was changed')
        if (h.action === 'write') {
          opts.progress?.update(h.node, `writing ${h.listFile}`)
          await pool.run(node, buildWriteScript(h.listFile), {stdin: h.wanted ?? ''})
          result.written = true
        }
        const deadline = Date.now() + retryMs
        let answerText = ''
        let listText = ''
        for (let attempt = 1; ; attempt++) {
          opts.progress?.update(
            h.node,
            attempt === 1 ? 'reloading' : `reloading (Kamailio busy, attempt ${attempt})`,
          )
          const r = await pool.run(node, buildReloadScript(config), {check: false})
          const parsed = parseReloadScript(r.stdout)
          answerText = parsed.reload
          listText = parsed.list
          const answer = classifyKamcmdAnswer(parsed.reload, parsed.reloadCode)
          if (answer.kind === 'ok') break
          if (answer.kind === 'ongoing-reload' && Date.now() < deadline) {
            await sleep(1000, opts.signal)
            continue
          }
          throw new HactlError(
            `${h.node}: kamcmd dispatcher.reload failed: ${'message' in answer ? answer.message : answerText.trim()}`,
            {
              suggestions:
                answer.kind === 'ongoing-reload'
                  ? [
                      'something else keeps reloading this Kamailio (a dispatcher agent?); try again in a few seconds',
                    ]
                  : [
                      `check the file and Kamailio's log: hactl exec ${h.node} -- ${config.kamailio.cli} dispatcher.reload`,
                    ],
            },
          )
        }
        result.reloaded = true
        opts.progress?.update(h.node, 'verifying with kamcmd dispatcher.list')
        const targets = targetsOfSet(listText, plan.setId, parseDispatcherList)
        // runtimeDifferences keeps what the plan found; what is left after the reload is the error.
        const differences = runtimeDifferences(targets, plan.destinations)
        if (differences.length > 0) {
          throw new HactlError(
            `${h.node}: after the reload, dispatcher.list still differs: ${differences.join('; ')}`,
            {
              suggestions: [
                `see it: hactl dispatcher show`,
                `check that kamailio's list_file is ${h.listFile}`,
              ],
            },
          )
        }
        result.verified = true
        opts.progress?.succeed(h.node, `${result.written ? 'written, ' : ''}reloaded, verified`)
      } catch (error) {
        result.ok = false
        result.error = errorInfo(error)
        opts.progress?.fail(h.node, (error as Error).message.split('\n')[0])
      }
      return result
    }),
  )
  return summarize(plan, hosts, false)
}

/** The result of a dry run: the plan, nothing applied. */
export function dryRunResult(plan: DispatcherSyncPlan): DispatcherSyncResult {
  return summarize(
    plan,
    plan.hosts.map((h) => ({...h, written: false, reloaded: false, verified: h.ok && h.action === 'none'})),
    true,
  )
}

function summarize(plan: DispatcherSyncPlan, hosts: SyncHostResult[], dryRun: boolean): DispatcherSyncResult {
  const changed = hosts
    .filter((h) => (dryRun ? h.action !== 'none' : h.written || h.reloaded))
    .map((h) => h.node)
  const failed = hosts.filter((h) => !h.ok).map((h) => h.node)
  return {...plan, dryRun, hosts, changed, failed, inStep: hosts.every((h) => h.ok && h.verified)}
}

/** A host's error in one line, without the host name that HostError messages start with. */
export function hostErrorLine(h: {node: string; error?: {message: string}}, fallback = 'failed'): string {
  const first = h.error?.message.split('\n')[0]
  return first ? withoutHost(h.node, first) : fallback
}

/** The error a sync result calls for: none, partial (some hosts failed), or total. */
export function syncOutcomeError(result: DispatcherSyncResult): HactlError | undefined {
  if (result.failed.length === 0) return undefined
  const failedHosts = result.hosts.filter((h) => !h.ok)
  const detail = failedHosts
    .map((h) => `${h.node}: ${hostErrorLine(h)}`)
    .join('; ')
  if (failedHosts.length < result.hosts.length) {
    return new PartialFailureError(`dispatcher sync failed on ${result.failed.join(', ')}: ${detail}`, [
      'fix the host, then run again: hactl dispatcher sync',
    ])
  }
  return new HactlError(`dispatcher sync failed on every host: ${detail}`, {
    suggestions: ['hactl status', 'hactl dispatcher show'],
  })
}

function errorInfo(error: unknown): {kind: string; message: string} {
  if (error instanceof HostError) return {kind: error.kind, message: error.message}
  if (error instanceof HactlError)
    return {kind: (error as {kind?: string}).kind ?? error.name, message: error.message}
  return {kind: 'error', message: error instanceof Error ? error.message : String(error)}
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms)
    signal?.addEventListener(
      'abort',
      () => {
        clearTimeout(t)
        resolve()
      },
      {once: true},
    )
  })
}

/** The history entry of an applied sync (issue 9): one result per Kamailio host. Never throws. */
export async function recordSyncHistory(
  config: HactlConfig,
  etcd: EtcdHandle | undefined,
  result: DispatcherSyncResult,
  run: {argv: string[]; started: number; exitCode: number; onWarning?: (m: string) => void},
): Promise<void> {
  const {recordRunHistory} = await import('./node-shared.js')
  await recordRunHistory(
    config,
    etcd,
    {
      argv: run.argv,
      plan: result.hosts.map((h) => `${h.node}: ${h.ok ? h.action : `not read (${h.error?.message.split('\n')[0] ?? 'failed'})`}`),
      started: run.started,
      exitCode: run.exitCode,
      results: result.hosts.map((h) => ({
        node: h.node,
        ok: h.ok,
        detail: h.ok
          ? [h.written ? 'written' : '', h.reloaded ? 'reloaded' : '', h.verified ? 'verified' : ''].filter(Boolean).join(', ') || 'in step'
          : (h.error?.message.split('\n')[0] ?? 'failed'),
      })),
    },
    run.onWarning,
  ).catch((e: unknown) => run.onWarning?.(`history not written: ${(e as Error).message}`))
}
