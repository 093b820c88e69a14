import {cleanCliText, FactParseError} from './parse-error.js'

/**
 * Facts read from Kamailio's dispatcher module through `kamcmd`, and the `dispatcher.list` file
 * format. Pure parsers; the fixtures in test/fixtures/kamailio/ were captured from Kamailio 5.6.3
 * (see the README there for how). What the captures showed, beyond the module docs:
 *
 * - `kamcmd` exits 0 on an RPC fault and prints it on stdout as `error: CODE - MESSAGE`; it exits
 *   255 only when it cannot reach the control socket (the message is then on stderr).
 * - Sets come out newest first and destinations in Kamailio's internal order: priority descending,
 *   equal priorities in reverse file order. Callers must not rely on either.
 * - `FLAGS` shows one state letter even when several state bits are set, checked in the order
 *   I, D, T, A: a destination with bits 1|4 (inactive + disabled) prints `IX`.
 * - `ATTRS` is printed only when the line had attributes, `LATENCY` only with
 *   `ds_ping_latency_stats` on; unset string attributes print as `<null string>`.
 */

// ---------------------------------------------------------------------------------------------
// kamcmd's tree output

/** One `KEY: value` or `KEY: {...}` item of kamcmd's structured output. */
export type KamcmdNode = {key: string; value: string} | {key: string; children: KamcmdNode[]}

const ERROR_RE = /^error: (-?\d+) - (.*)$/
const NULL_STRING = '<null string>'
/** Attributes that stay strings even when they look like numbers (`duid=7`). */
const STRING_ATTRS = new Set(['body', 'duid', 'socket', 'sockname', 'obproxy'])

/**
 * Parse kamcmd's indented tree (`{`, `KEY: {`, `KEY: value`, `}`) into nodes, keeping repeated keys
 * (`SET`, `DEST`) in order. Indentation is ignored: the braces carry the structure.
 */
export function parseKamcmdTree(text: string, fact = 'kamcmd'): KamcmdNode[] {
  const root: KamcmdNode[] = []
  const stack: KamcmdNode[][] = [root]
  let sawOpen = false
  for (const [i, raw] of cleanCliText(text).split('\n').entries()) {
    const line = raw.trim()
    if (line === '') continue
    const top = stack.at(-1)!
    if (line === '{') {
      // The anonymous outer struct: its members go straight into the result.
      if (sawOpen) throw new FactParseError(fact, `line ${i + 1}: unexpected "{"`, text)
      sawOpen = true
      continue
    }
    if (line === '}') {
      if (stack.length === 1) {
        if (!sawOpen) throw new FactParseError(fact, `line ${i + 1}: unbalanced "}"`, text)
        continue
      }
      stack.pop()
      continue
    }
    const m = /^([A-Za-z0-9_.-]+):(?: (.*))?$/.exec(line)
    if (!m) throw new FactParseError(fact, `line ${i + 1}: expected "KEY: value", got "${line}"`, text)
    const key = m[1]!
    const value = m[2] ?? ''
    if (value === '{') {
      const children: KamcmdNode[] = []
      top.push({key, children})
      stack.push(children)
    } else {
      top.push({key, value})
    }
  }
  if (stack.length !== 1) throw new FactParseError(fact, 'unbalanced braces (output cut short?)', text)
  return root
}

function childrenOf(nodes: KamcmdNode[], key: string): KamcmdNode[][] {
  return nodes
    .filter((n): n is {key: string; children: KamcmdNode[]} => n.key === key && 'children' in n)
    .map((n) => n.children)
}

function valueOf(nodes: KamcmdNode[], key: string): string | undefined {
  for (const n of nodes) if (n.key === key && 'value' in n) return n.value
  return undefined
}

// ---------------------------------------------------------------------------------------------
// kamcmd dispatcher.list

export type DispatcherState = 'active' | 'inactive' | 'trying' | 'disabled'

const STATE_LETTERS: Record<string, DispatcherState> = {
  A: 'active',
  I: 'inactive',
  T: 'trying',
  D: 'disabled',
}

/** The attributes Kamailio parsed from the line's ATTRS column, lower-cased keys. */
export interface DispatcherAttrs {
  /** The raw attribute string from the file (`weight=25;duid=ast1`). */
  body?: string
  duid?: string
  maxload?: number
  /** 0 means "not set" to Kamailio (and disables weighting for the set if the first has 0). */
  weight?: number
  rweight?: number
  socket?: string
  sockname?: string
  obproxy?: string
  [key: string]: string | number | undefined
}

export interface DispatcherLatency {
  avg: number
  std: number
  est: number
  max: number
  timeout: number
}

export interface DispatcherTarget {
  uri: string
  host: string
  /** The URI's port, or the scheme's default (5060; 5061 for sips or transport=tls). */
  port: number
  transport?: string
  /** As kamcmd printed it: `AP`, `IP`, `TX`, `DX`... */
  flags: string
  state: DispatcherState
  probing: boolean
  priority: number
  attrs: DispatcherAttrs
  latency?: DispatcherLatency
}

export interface DispatcherSet {
  id: number
  targets: DispatcherTarget[]
}

export interface DispatcherList {
  /** Sorted by set id (Kamailio prints the newest set first, which means nothing). */
  sets: DispatcherSet[]
}

const FACT_LIST = 'kamcmd dispatcher.list'

/**
 * Parse `kamcmd dispatcher.list`. `error: 500 - No Destination Sets` (an empty or missing list) is
 * an empty result; any other RPC error, or text that is not kamcmd's tree, throws `FactParseError`:
 * a Kamailio that cannot be asked must not look like one with no destinations.
 */
export function parseDispatcherList(text: string): DispatcherList {
  const clean = cleanCliText(text).trim()
  const err = ERROR_RE.exec(clean.split('\n')[0] ?? '')
  if (err) {
    if (err[2] === 'No Destination Sets') return {sets: []}
    throw new FactParseError(FACT_LIST, `kamcmd answered error ${err[1]} - ${err[2]}`, text)
  }
  if (!clean.startsWith('{')) throw new FactParseError(FACT_LIST, 'not a kamcmd struct', text)
  const tree = parseKamcmdTree(clean, FACT_LIST)
  const sets: DispatcherSet[] = []
  for (const records of childrenOf(tree, 'RECORDS')) {
    for (const set of childrenOf(records, 'SET')) {
      const id = intField(set, 'ID', text)
      const targets: DispatcherTarget[] = []
      for (const group of childrenOf(set, 'TARGETS')) {
        for (const dest of childrenOf(group, 'DEST')) targets.push(parseDest(dest, text))
      }
      sets.push({id, targets})
    }
  }
  const declared = valueOf(tree, 'NRSETS')
  if (declared !== undefined && Number(declared) !== sets.length) {
    throw new FactParseError(
      FACT_LIST,
      `NRSETS says ${declared}, found ${sets.length} sets (output cut short?)`,
      text,
    )
  }
  sets.sort((a, b) => a.id - b.id)
  return {sets}
}

function parseDest(dest: KamcmdNode[], text: string): DispatcherTarget {
  const uri = valueOf(dest, 'URI')
  if (uri === undefined) throw new FactParseError(FACT_LIST, 'a DEST without URI', text)
  const flags = valueOf(dest, 'FLAGS') ?? ''
  const state = STATE_LETTERS[flags[0] ?? '']
  if (state === undefined || !/^[AITD][PX]$/.test(flags)) {
    throw new FactParseError(FACT_LIST, `unknown FLAGS "${flags}" for ${uri}`, text)
  }
  const sip = parseSipUri(uri)
  if (sip === undefined)
    throw new FactParseError(FACT_LIST, `cannot read host and port from URI "${uri}"`, text)
  const target: DispatcherTarget = {
    uri,
    host: sip.host,
    port: sip.port,
    ...(sip.transport === undefined ? {} : {transport: sip.transport}),
    flags,
    state,
    probing: flags[1] === 'P',
    priority: intField(dest, 'PRIORITY', text, 0),
    attrs: {},
  }
  const [attrs] = childrenOf(dest, 'ATTRS')
  if (attrs) {
    for (const n of attrs) {
      if (!('value' in n) || n.value === NULL_STRING) continue
      const key = n.key.toLowerCase()
      target.attrs[key] = STRING_ATTRS.has(key) || !/^-?\d+$/.test(n.value) ? n.value : Number(n.value)
    }
  }
  const [latency] = childrenOf(dest, 'LATENCY')
  if (latency) {
    const num = (k: string): number => {
      const v = Number(valueOf(latency, k))
      return Number.isFinite(v) ? v : 0
    }
    target.latency = {
      avg: num('AVG'),
      std: num('STD'),
      est: num('EST'),
      max: num('MAX'),
      timeout: num('TIMEOUT'),
    }
  }
  return target
}

function intField(nodes: KamcmdNode[], key: string, text: string, fallback?: number): number {
  const v = valueOf(nodes, key)
  if (v === undefined && fallback !== undefined) return fallback
  if (v === undefined || !/^-?\d+$/.test(v))
    throw new FactParseError(FACT_LIST, `${key} is "${v ?? ''}", expected a number`, text)
  return Number(v)
}

export interface SipUri {
  scheme: 'sip' | 'sips'
  user?: string
  host: string
  port: number
  /** Whether the URI had a port (otherwise `port` is the default). */
  explicitPort: boolean
  transport?: string
}

/** Host and port of a dispatcher URI (`sip:10.0.0.1:5060;transport=udp`, `sip:[::1]`, `sips:h`). */
export function parseSipUri(uri: string): SipUri | undefined {
  const m = /^(sips?):(.*)$/i.exec(uri.trim())
  if (!m) return undefined
  const scheme = m[1]!.toLowerCase() as 'sip' | 'sips'
  const [hostPart = '', ...params] = m[2]!.split('?')[0]!.split(';')
  const at = hostPart.lastIndexOf('@')
  const user = at >= 0 ? hostPart.slice(0, at) : undefined
  const hostPort = at >= 0 ? hostPart.slice(at + 1) : hostPart
  const hp = /^(\[[0-9A-Fa-f:.]+\]|[^:[\]]+)(?::(\d{1,5}))?$/.exec(hostPort)
  if (!hp) return undefined
  const transport = params
    .map((p) => p.split('='))
    .find(([k]) => k?.toLowerCase() === 'transport')?.[1]
    ?.toLowerCase()
  const defaultPort = scheme === 'sips' || transport === 'tls' ? 5061 : 5060
  const port = hp[2] === undefined ? defaultPort : Number(hp[2])
  if (port < 1 || port > 65535) return undefined
  return {
    scheme,
    ...(user === undefined ? {} : {user}),
    host: hp[1]!.startsWith('[') ? hp[1]!.slice(1, -1) : hp[1]!,
    port,
    explicitPort: hp[2] !== undefined,
    ...(transport === undefined ? {} : {transport}),
  }
}

// ---------------------------------------------------------------------------------------------
// Any kamcmd answer (reload, set_state, ...)

export type KamcmdAnswer =
  | {kind: 'ok'; text: string}
  /** `dispatcher.reload` within `reload_delta` (5 s, whole seconds) of the previous one. */
  | {kind: 'ongoing-reload'; message: string}
  /** Any other RPC fault, e.g. `500 - State Update Failed` (no such set/URI), `500 - Reload Failed`. */
  | {kind: 'rpc-error'; code: number; message: string}
  /** kamcmd could not reach the control socket: Kamailio is down (or ctl is elsewhere). */
  | {kind: 'not-running'; message: string}
  | {kind: 'unknown'; exitCode: number | null; message: string}

/**
 * Classify a kamcmd answer. `text` is stdout and stderr together, `exitCode` kamcmd's status
 * (`null` if killed). Needed because kamcmd exits 0 on an RPC fault.
 */
export function classifyKamcmdAnswer(text: string, exitCode: number | null): KamcmdAnswer {
  const clean = cleanCliText(text)
  const lines = clean.split('\n').map((l) => l.trim())
  for (const line of lines) {
    const m = ERROR_RE.exec(line)
    if (!m) continue
    const message = m[2]!
    if (message === 'Ongoing reload') return {kind: 'ongoing-reload', message: line}
    return {kind: 'rpc-error', code: Number(m[1]), message}
  }
  const connect = lines.find((l) => /^ERROR: connect\w*: /.test(l))
  if (connect !== undefined) return {kind: 'not-running', message: connect}
  if (exitCode !== 0) {
    const first = lines.find((l) => l !== '') ?? ''
    const status = exitCode === null ? 'killed' : `exit status ${exitCode}`
    return {kind: 'unknown', exitCode, message: first ? `${first} (${status})` : status}
  }
  return {kind: 'ok', text: clean}
}

// ---------------------------------------------------------------------------------------------
// The dispatcher.list file

/** One destination line: `SETID URI FLAGS PRIORITY ATTRS`. */
export interface DispatcherFileEntry {
  setId: number
  uri: string
  /** Bits: 1 inactive, 2 trying, 4 disabled, 8 probing. */
  flags: number
  priority: number
  /** `key=value;key=value`, or '' for none. */
  attrs: string
}

/** The flag bits of the file's FLAGS column. */
export const DispatcherFlag = {inactive: 1, trying: 2, disabled: 4, probing: 8} as const

const FACT_FILE = 'dispatcher.list'

/**
 * Parse a `dispatcher.list` file. Stricter than Kamailio, which skips (or misreads: `x sip:...` is
 * set 0) what it cannot parse and still answers "Ok" to the reload: here a bad line throws with
 * its line number. Comment lines (`#`) and blank lines are skipped; a `#` after the URI starts a
 * comment, as in Kamailio.
 */
export function parseDispatcherFile(text: string): DispatcherFileEntry[] {
  const entries: DispatcherFileEntry[] = []
  for (const [i, raw] of text.replace(/\r/g, '').split('\n').entries()) {
    const line = raw.trim()
    if (line === '' || line.startsWith('#')) continue
    const hash = line.indexOf('#')
    const fields = (hash >= 0 ? line.slice(0, hash) : line).trim().split(/[ \t]+/)
    const [setId, uri, flags = '0', priority = '0', attrs = '', ...rest] = fields
    const where = `line ${i + 1}`
    if (!/^\d+$/.test(setId ?? ''))
      throw new FactParseError(FACT_FILE, `${where}: set id "${setId ?? ''}" is not a number`, line)
    if (uri === undefined || parseSipUri(uri) === undefined)
      throw new FactParseError(FACT_FILE, `${where}: "${uri ?? ''}" is not a sip: URI`, line)
    if (!/^\d+$/.test(flags))
      throw new FactParseError(FACT_FILE, `${where}: flags "${flags}" is not a number`, line)
    if (!/^\d+$/.test(priority))
      throw new FactParseError(FACT_FILE, `${where}: priority "${priority}" is not a number`, line)
    if (rest.length > 0)
      throw new FactParseError(
        FACT_FILE,
        `${where}: unexpected "${rest.join(' ')}" after the attributes`,
        line,
      )
    entries.push({setId: Number(setId), uri, flags: Number(flags), priority: Number(priority), attrs})
  }
  return entries
}

/**
 * Render `dispatcher.list` lines (with optional `# ` header lines). Throws on a value Kamailio
 * would misread (whitespace or `#` in a URI or the attributes, a negative number): these come
 * from etcd registrations, and a bad one must not corrupt the whole file.
 */
export function renderDispatcherFile(
  entries: readonly DispatcherFileEntry[],
  opts: {header?: readonly string[]} = {},
): string {
  const lines: string[] = []
  for (const h of opts.header ?? []) {
    if (/[\r\n]/.test(h))
      throw new Error(`dispatcher.list header line contains a newline: ${JSON.stringify(h)}`)
    lines.push(h === '' ? '#' : `# ${h}`)
  }
  for (const e of entries) {
    for (const [k, v] of [
      ['setId', e.setId],
      ['flags', e.flags],
      ['priority', e.priority],
    ] as const) {
      if (!Number.isSafeInteger(v) || v < 0)
        throw new Error(`dispatcher.list: ${k} must be a non-negative integer, got ${v}`)
    }
    if (parseSipUri(e.uri) === undefined || /[\s#]/.test(e.uri))
      throw new Error(`dispatcher.list: bad URI ${JSON.stringify(e.uri)}`)
    if (/[\s#]/.test(e.attrs))
      throw new Error(
        `dispatcher.list: attributes must not contain whitespace or "#": ${JSON.stringify(e.attrs)}`,
      )
    lines.push(`${e.setId} ${e.uri} ${e.flags} ${e.priority}${e.attrs ? ` ${e.attrs}` : ''}`)
  }
  return lines.length === 0 ? '' : `${lines.join('\n')}\n`
}

/** `weight=25;duid=ast1` → `{weight: '25', duid: 'ast1'}` (keys lower-cased, as Kamailio matches them). */
export function parseDispatcherAttrs(attrs: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const part of attrs.split(';')) {
    if (part === '') continue
    const eq = part.indexOf('=')
    if (eq < 0) out[part.toLowerCase()] = ''
    else out[part.slice(0, eq).toLowerCase()] = part.slice(eq + 1)
  }
  return out
}
