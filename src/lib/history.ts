import {randomBytes} from 'node:crypto'
import {appendFile, mkdir, readFile, rename, stat, writeFile} from 'node:fs/promises'
import {homedir, hostname, userInfo} from 'node:os'
import path from 'node:path'
import type {EtcdHandle} from './etcd/client.js'
import type {HistoryEntry} from './history-schema.js'

/**
 * Audit history (issue 9): every mutating run appends one JSON line to a local file in the user's
 * state directory and, where etcd answers, one key to a bounded list in etcd.
 */

export type {HistoryEntry} from './history-schema.js'

export const DEFAULT_HISTORY_KEEP = 100
/** Past this size the local file is cut to its last LOCAL_KEEP_LINES lines. */
const LOCAL_MAX_BYTES = 4 * 1024 * 1024
const LOCAL_KEEP_LINES = 5000

export function localIdentity(): {user: string; host: string} {
  let user: string | undefined
  try {
    user = userInfo().username
  } catch {
    // No passwd entry (some containers): fall back to the environment.
  }
  return {user: user || process.env.USER || process.env.LOGNAME || 'unknown', host: hostname() || 'unknown'}
}

/** `${XDG_STATE_HOME:-~/.local/state}/hactl` */
export function defaultStateDir(env: NodeJS.ProcessEnv = process.env, home = homedir()): string {
  const xdg = env.XDG_STATE_HOME
  // The XDG spec says to ignore a relative path.
  const base = xdg && path.isAbsolute(xdg) ? xdg : path.join(home, '.local', 'state')
  return path.join(base, 'hactl')
}

export function historyFile(stateDir = defaultStateDir()): string {
  return path.join(stateDir, 'history.jsonl')
}

/** A sortable ID: zero-padded milliseconds since the epoch, then random hex. Also the etcd key suffix. */
export function newHistoryId(at: Date = new Date()): string {
  return `${String(at.getTime()).padStart(15, '0')}-${randomBytes(4).toString('hex')}`
}

/** An entry for a run that starts now; fill in the outcome with finishHistoryEntry. */
export function startHistoryEntry(input: {
  cluster: string
  argv: string[]
  plan?: string[]
  at?: Date
}): HistoryEntry {
  const at = input.at ?? new Date()
  const id = localIdentity()
  return {
    id: newHistoryId(at),
    when: at.toISOString(),
    who: id.user,
    host: id.host,
    cluster: input.cluster,
    argv: input.argv,
    ...(input.plan ? {plan: input.plan} : {}),
    ok: false,
    exitCode: 1,
    durationMs: 0,
  }
}

export function finishHistoryEntry(
  entry: HistoryEntry,
  outcome: {exitCode: number; results?: HistoryEntry['results']; plan?: string[]; now?: Date},
): HistoryEntry {
  const now = outcome.now ?? new Date()
  return {
    ...entry,
    ...(outcome.plan ? {plan: outcome.plan} : {}),
    ...(outcome.results ? {results: outcome.results} : {}),
    ok: outcome.exitCode === 0,
    exitCode: outcome.exitCode,
    durationMs: Math.max(0, now.getTime() - Date.parse(entry.when)),
  }
}

export interface AppendHistoryOptions {
  /** The hactl state directory; default `${XDG_STATE_HOME:-~/.local/state}/hactl`. */
  stateDir?: string
  etcd?: {handle: EtcdHandle; prefix: string; keep?: number}
}

export interface AppendHistoryResult {
  file: string
  /** Set when the local file could not be written. */
  fileError?: string
  /** Absent when no etcd was given. */
  etcd?: {key: string; trimmed: number} | {error: string}
}

/**
 * Record one run. Never throws: history must not change a command's outcome, so failures come
 * back in the result for the caller to warn about.
 */
export async function appendHistory(
  entry: HistoryEntry,
  opts: AppendHistoryOptions = {},
): Promise<AppendHistoryResult> {
  const dir = opts.stateDir ?? defaultStateDir()
  const file = historyFile(dir)
  const line = `${JSON.stringify(entry)}\n`
  const result: AppendHistoryResult = {file}
  const local = (async () => {
    try {
      await mkdir(dir, {recursive: true, mode: 0o700})
      await appendFile(file, line, {mode: 0o600})
      await capLocalFile(file)
    } catch (error) {
      result.fileError = (error as Error).message
    }
  })()
  const remote = (async () => {
    if (!opts.etcd) return
    const {handle, prefix} = opts.etcd
    const keep = opts.etcd.keep ?? DEFAULT_HISTORY_KEEP
    const p = prefix.endsWith('/') ? prefix : `${prefix}/`
    const key = p + entry.id
    try {
      await handle.call('writing the history entry', (c) => c.put(key).value(line.trimEnd()).exec())
      const trimmed = await trimEtcdHistory(handle, p, keep)
      result.etcd = {key, trimmed}
    } catch (error) {
      result.etcd = {error: (error as Error).message}
    }
  })()
  await Promise.all([local, remote])
  return result
}

/** Delete all but the newest `keep` entries under prefix; returns how many went. */
export async function trimEtcdHistory(handle: EtcdHandle, prefix: string, keep: number): Promise<number> {
  const keys = await handle.call('listing the history', (c) =>
    c.getAll().prefix(prefix).sort('Key', 'Ascend').keys(),
  )
  if (keys.length <= keep) return 0
  // Keys sort by time (zero-padded), so everything before the first key to keep is older.
  const firstKept = keys[keys.length - keep]
  if (firstKept === undefined) return 0
  const res = await handle.call('trimming the history', (c) =>
    c.delete().inRange({start: prefix, end: firstKept}).exec(),
  )
  return Number(res.deleted)
}

export interface ReadHistoryResult {
  file: string
  /** Newest first. */
  entries: HistoryEntry[]
  /** Lines that are not entries (a crash mid-write, a hand edit). */
  invalidLines: number
}

/** The local history, newest first. A missing file is an empty history. */
export async function readHistory(
  opts: {limit?: number; stateDir?: string} = {},
): Promise<ReadHistoryResult> {
  const file = historyFile(opts.stateDir ?? defaultStateDir())
  let text = ''
  try {
    text = await readFile(file, 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
  }
  const {entries, invalid} = await parseHistoryLines(text.split('\n'))
  entries.reverse()
  return {
    file,
    entries: opts.limit === undefined ? entries : entries.slice(0, opts.limit),
    invalidLines: invalid,
  }
}

/** The history kept in etcd (every operator's runs), newest first. */
export async function readEtcdHistory(
  handle: EtcdHandle,
  prefix: string,
  limit = DEFAULT_HISTORY_KEEP,
): Promise<ReadHistoryResult & {file: ''}> {
  const p = prefix.endsWith('/') ? prefix : `${prefix}/`
  const kvs = await handle.call('reading the history', (c) =>
    c.getAll().prefix(p).sort('Key', 'Descend').limit(limit).strings(),
  )
  const {entries, invalid} = await parseHistoryLines(Object.values(kvs))
  entries.sort((a, b) => (a.id < b.id ? 1 : a.id > b.id ? -1 : 0))
  return {file: '', entries, invalidLines: invalid}
}

/** Entries from JSON lines; the schema (and zod) loads only here: writing a run needs neither. */
async function parseHistoryLines(lines: string[]): Promise<{entries: HistoryEntry[]; invalid: number}> {
  const {historyEntrySchema} = await import('./history-schema.js')
  const entries: HistoryEntry[] = []
  let invalid = 0
  for (const line of lines) {
    if (line.trim() === '') continue
    try {
      const res = historyEntrySchema.safeParse(JSON.parse(line))
      if (res.success) entries.push(res.data)
      else invalid++
    } catch {
      invalid++
    }
  }
  return {entries, invalid}
}

async function capLocalFile(file: string): Promise<void> {
  const st = await stat(file)
  if (st.size <= LOCAL_MAX_BYTES) return
  const lines = (await readFile(file, 'utf8')).split('\n').filter((l) => l !== '')
  const tmp = `${file}.${process.pid}.tmp`
  await writeFile(tmp, `${lines.slice(-LOCAL_KEEP_LINES).join('\n')}\n`, {mode: 0o600})
  await rename(tmp, file)
}

/** Cells for a history table: when (local time), who, command, result, duration. */
export function historyRow(
  e: HistoryEntry,
  bin = 'hactl',
): {when: string; who: string; command: string; result: string; duration: string} {
  const failed = e.results?.filter((r) => !r.ok).length ?? 0
  const total = e.results?.length ?? 0
  const result = e.ok
    ? 'ok'
    : failed > 0 && failed < total
      ? `partial (${total - failed}/${total} ok, exit ${e.exitCode})`
      : `failed (exit ${e.exitCode})`
  return {
    when: localTime(e.when),
    who: `${e.who}@${e.host}`,
    command: [bin, ...e.argv.map(displayArg)].join(' '),
    result,
    duration: formatDuration(e.durationMs),
  }
}

function displayArg(a: string): string {
  return /^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`).replace(/\n/g, '\\n')}'`
}

function localTime(iso: string): string {
  const d = new Date(iso)
  if (Number.isNaN(d.getTime())) return iso
  const p = (n: number) => String(n).padStart(2, '0')
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`
}

function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`
  const s = ms / 1000
  if (s < 60) return `${s.toFixed(1)}s`
  const m = Math.floor(s / 60)
  const rest = Math.round(s % 60)
  return rest === 0 ? `${m}m` : `${m}m${rest}s`
}
