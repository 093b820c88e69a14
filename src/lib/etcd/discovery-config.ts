import {isMap, isScalar, parseDocument, stringify, type Document, type Scalar, type YAMLMap} from 'yaml'
import {HactlError, UserError} from '../errors.js'

/**
 * Where an etcd host keeps its discovery URL, read and rewritten as text (the caller moves the
 * text over SSH):
 *
 * - `cloud-config`: CoreOS user_data (`/var/lib/coreos-install/user_data`), YAML that must start
 *   with `#cloud-config`; the URL at a dotted key path, default `coreos.etcd2.discovery`.
 * - `env`: an environment file (`ETCD_DISCOVERY=URL`) or a systemd drop-in
 *   (`Environment="ETCD_DISCOVERY=URL"`, what coreos-cloudinit writes to
 *   `/run/systemd/system/etcd2.service.d/20-cloudinit.conf`); the key is the variable name.
 *
 * Rewriting changes the URL and nothing else: comments, other keys and the layout stay as they
 * were, because an operator diffs these files and CoreOS reads user_data at every boot.
 */

export type DiscoveryFormat = 'cloud-config' | 'env'

export interface DiscoveryLocation {
  format: DiscoveryFormat
  /** cloud-config: a dotted key path (keys cannot contain dots); env: the variable name. */
  key?: string | undefined
}

export const DEFAULT_DISCOVERY_KEY: Record<DiscoveryFormat, string> = {
  'cloud-config': 'coreos.etcd2.discovery',
  env: 'ETCD_DISCOVERY',
}

const CLOUD_CONFIG_HEADER = '#cloud-config'

/** The file does not have the shape its configured format says. Exit 1, with what to check. */
export class DiscoveryConfigError extends HactlError {
  constructor(message: string) {
    super(message, {
      suggestions: ['check etcd.discovery.format, .file and .key in hactl.yaml against the file on the host'],
    })
  }
}

/** The configured discovery URL, or null when the file does not set one. */
export function readDiscoveryUrl(text: string, loc: DiscoveryLocation): string | null {
  return loc.format === 'cloud-config' ? readCloudConfig(text, keyPath(loc)) : readEnv(text, envKey(loc))
}

/** The file with its discovery URL set to `url` (added if it had none). */
export function writeDiscoveryUrl(text: string, url: string, loc: DiscoveryLocation): string {
  checkUrl(url)
  const out =
    loc.format === 'cloud-config'
      ? writeCloudConfig(text, url, keyPath(loc))
      : writeEnv(text, url, envKey(loc))
  // Cheap insurance against a formatting corner case: read back what we wrote.
  const back = readDiscoveryUrl(out, loc)
  if (back !== url)
    throw new HactlError(`bug: rewrote the discovery URL but read back ${JSON.stringify(back)}`)
  return out
}

function checkUrl(url: string): void {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    throw new UserError(`not a URL: ${JSON.stringify(url)}`)
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')
    throw new UserError(`the discovery URL must be http or https: ${url}`)
  // Quotes, whitespace and control characters would need escaping rules that differ between
  // YAML, env files and systemd; a discovery URL never needs them.
  // eslint-disable-next-line no-control-regex
  if (/[\s"'`\\\u0000-\u001F\u007F]/.test(url))
    throw new UserError(
      `the discovery URL contains a quote, space or control character: ${JSON.stringify(url)}`,
    )
}

function keyPath(loc: DiscoveryLocation): string[] {
  const key = loc.key ?? DEFAULT_DISCOVERY_KEY['cloud-config']
  const parts = key.split('.')
  if (parts.some((p) => p === ''))
    throw new UserError(`etcd.discovery.key: "${key}" is not a dotted key path`)
  return parts
}

function envKey(loc: DiscoveryLocation): string {
  const key = loc.key ?? DEFAULT_DISCOVERY_KEY.env
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key))
    throw new UserError(`etcd.discovery.key: "${key}" is not an environment variable name`)
  return key
}

// ---------------------------------------------------------------------------------------------
// cloud-config

function parseCloudConfig(text: string): Document.Parsed {
  if (text.trim() !== '' && !text.startsWith(CLOUD_CONFIG_HEADER)) {
    const first = text.split('\n', 1)[0] ?? ''
    throw new DiscoveryConfigError(
      `not a cloud-config file: the first line is ${JSON.stringify(first)}, not "${CLOUD_CONFIG_HEADER}"`,
    )
  }
  const doc = parseDocument(text)
  if (doc.errors.length > 0)
    throw new DiscoveryConfigError(`cloud-config is not valid YAML: ${doc.errors[0]!.message}`)
  return doc
}

function readCloudConfig(text: string, path: string[]): string | null {
  const doc = parseCloudConfig(text)
  const value = doc.getIn(path)
  if (value === undefined || value === null) return null
  if (typeof value !== 'string') throw new DiscoveryConfigError(`${path.join('.')} is not a string`)
  return value
}

function writeCloudConfig(text: string, url: string, path: string[]): string {
  const doc = parseCloudConfig(text)
  const node = doc.getIn(path, true)

  // The key exists with a one-line value: replace just those characters, so every other byte of
  // the file (comments, blank lines, indentation, quoting elsewhere) stays as it was.
  if (
    isScalar(node) &&
    node.range &&
    (node.type === 'PLAIN' || node.type === 'QUOTE_DOUBLE' || node.type === 'QUOTE_SINGLE')
  ) {
    const [start, end] = node.range
    return text.slice(0, start) + scalarText(url, node.type) + text.slice(end)
  }
  if (node !== undefined && node !== null && !isScalar(node)) {
    throw new DiscoveryConfigError(
      `${path.join('.')} is a ${isMap(node) ? 'mapping' : 'sequence'}, not a URL`,
    )
  }

  // The key is missing but its parent mapping is there: insert one line at the top of it.
  const parent = path.length === 1 ? doc.contents : doc.getIn(path.slice(0, -1), true)
  const inserted = node === undefined ? insertLine(text, parent, path.at(-1)!, url) : undefined
  if (inserted !== undefined) return inserted

  // Anything else (no parents, a flow mapping, an empty file): the Document API, which keeps
  // comments and keys but may re-indent sequences.
  if (doc.contents === null) doc.contents = doc.createNode({}) as unknown as typeof doc.contents
  if (!isMap(doc.contents)) throw new DiscoveryConfigError('cloud-config is not a mapping')
  ensureMaps(doc, path.slice(0, -1))
  doc.setIn(path, url)
  let out = doc.toString({lineWidth: 0})
  if (!out.startsWith(CLOUD_CONFIG_HEADER)) out = `${CLOUD_CONFIG_HEADER}\n${out}`
  return out
}

function ensureMaps(doc: Document.Parsed, path: string[]): void {
  for (let i = 1; i <= path.length; i++) {
    const node = doc.getIn(path.slice(0, i), true)
    if (node === undefined || node === null || (isScalar(node) && node.value === null))
      doc.setIn(path.slice(0, i), doc.createNode({}))
    else if (!isMap(node)) throw new DiscoveryConfigError(`${path.slice(0, i).join('.')} is not a mapping`)
  }
}

/** Insert `key: value` above the first key of a block mapping; undefined when that is not safe. */
function insertLine(text: string, parent: unknown, key: string, url: string): string | undefined {
  if (!isMap(parent) || (parent as YAMLMap).flow) return undefined
  const first = (parent as YAMLMap).items[0]?.key
  if (!isScalar(first) || !first.range) return undefined
  const start = first.range[0]
  let lineStart = text.lastIndexOf('\n', start - 1) + 1
  const indent = text.slice(lineStart, start)
  if (!/^[ ]*$/.test(indent)) return undefined // e.g. the first key follows "- " in a sequence item
  // Above the comment lines that belong to the first key, so they stay with it.
  for (;;) {
    if (lineStart === 0) break
    const prevStart = text.lastIndexOf('\n', lineStart - 2) + 1
    const prev = text.slice(prevStart, lineStart - 1)
    if (!prev.startsWith(`${indent}#`) || (prevStart === 0 && prev.startsWith(CLOUD_CONFIG_HEADER))) break
    lineStart = prevStart
  }
  const keyText = /^[A-Za-z0-9_-]+$/.test(key) ? key : JSON.stringify(key)
  return `${text.slice(0, lineStart)}${indent}${keyText}: ${scalarText(url, 'PLAIN')}\n${text.slice(lineStart)}`
}

function scalarText(value: string, type: Scalar.Type | undefined): string {
  if (type === 'QUOTE_DOUBLE') return JSON.stringify(value)
  if (type === 'QUOTE_SINGLE') return `'${value.replaceAll("'", "''")}'`
  return stringify(value, {lineWidth: 0}).trimEnd()
}

// ---------------------------------------------------------------------------------------------
// env file / systemd drop-in

interface EnvHit {
  line: number
  style: 'env' | 'systemd'
  value: string
}

/** Every assignment of `key`, in file order (the last one wins for both systemd and sh). */
function findEnv(lines: string[], key: string): EnvHit[] {
  const hits: EnvHit[] = []
  lines.forEach((raw, i) => {
    const line = raw.trim()
    if (line.startsWith('#') || line.startsWith(';')) return
    const sys = /^Environment\s*=\s*(.*)$/.exec(line)
    if (sys) {
      for (const word of systemdWords(sys[1]!)) {
        if (word.startsWith(`${key}=`))
          hits.push({line: i, style: 'systemd', value: word.slice(key.length + 1).replaceAll('%%', '%')})
      }
      return
    }
    const env = new RegExp(`^(?:export\\s+)?${key}=(.*)$`).exec(line)
    if (env) hits.push({line: i, style: 'env', value: unquoteEnv(env[1]!)})
  })
  return hits
}

function readEnv(text: string, key: string): string | null {
  const hits = findEnv(text.replace(/\r/g, '').split('\n'), key)
  return hits.at(-1)?.value ?? null
}

function writeEnv(text: string, url: string, key: string): string {
  const lines = text.split('\n')
  const hits = findEnv(
    lines.map((l) => l.replace(/\r$/, '')),
    key,
  )
  if (hits.length > 0) {
    // Rewrite every assignment, so no stale URL is left for a later edit to resurrect.
    for (const hit of hits) {
      const old = lines[hit.line]!
      lines[hit.line] =
        hit.style === 'systemd' ? rewriteSystemdLine(old, key, url) : rewriteEnvLine(old, key, url)
    }
    return lines.join('\n')
  }

  // Missing: a drop-in gets an Environment= line in its [Service] section, an env file a KEY=URL line.
  const isDropIn = lines.some((l) => /^\s*\[[^\]]+\]\s*$/.test(l) || /^\s*Environment\s*=/.test(l))
  if (!isDropIn) return appendLine(text, `${key}=${url}`)
  const entry = `Environment="${key}=${url.replaceAll('%', '%%')}"`
  const service = lines.findIndex((l) => l.trim() === '[Service]')
  if (service < 0) return appendLine(text, `[Service]\n${entry}`)
  let at = service + 1
  // After the section's last non-blank line, before the next section.
  for (let i = service + 1; i < lines.length && !/^\s*\[/.test(lines[i]!); i++)
    if (lines[i]!.trim() !== '') at = i + 1
  lines.splice(at, 0, entry)
  return lines.join('\n')
}

function appendLine(text: string, line: string): string {
  if (text === '') return `${line}\n`
  return text.endsWith('\n') ? `${text}${line}\n` : `${text}\n${line}\n`
}

function rewriteEnvLine(line: string, key: string, url: string): string {
  const m = new RegExp(`^(\\s*(?:export\\s+)?${key}=)(.*?)(\\r?)$`).exec(line)!
  const old = m[2]!
  const quote = old.startsWith('"') ? '"' : old.startsWith("'") ? "'" : ''
  // Keep whatever follows the value (a "# comment"): after the closing quote, or after the first
  // blank of an unquoted value.
  const end = quote ? old.indexOf(quote, 1) + 1 : old.search(/\s|$/)
  const rest = quote && end === 0 ? '' : old.slice(end)
  return `${m[1]}${quote}${url}${quote}${rest}${m[3]}`
}

/** Replace the value of `key` inside one `Environment=` line, keeping its other assignments. */
function rewriteSystemdLine(line: string, key: string, url: string): string {
  const value = url.replaceAll('%', '%%')
  const cr = line.endsWith('\r') ? '\r' : ''
  const m = /^(\s*Environment\s*=\s*)(.*?)\r?$/.exec(line)!
  const words = splitSystemdRaw(m[2]!).map((w) => {
    const unq = systemdWords(w)[0] ?? ''
    if (!unq.startsWith(`${key}=`)) return w
    if (w.startsWith("'")) return `'${key}=${value}'`
    return w.startsWith('"') ? `"${key}=${value}"` : `${key}=${value}`
  })
  return `${m[1]}${words.join(' ')}${cr}`
}

/** Split a systemd value into raw words (quotes kept), for rewriting one of them. */
function splitSystemdRaw(s: string): string[] {
  const out: string[] = []
  let i = 0
  while (i < s.length) {
    while (i < s.length && /\s/.test(s[i]!)) i++
    if (i >= s.length) break
    const start = i
    while (i < s.length && !/\s/.test(s[i]!)) {
      const q = s[i]
      if (q === '"' || q === "'") {
        i++
        while (i < s.length && s[i] !== q) i += s[i] === '\\' ? 2 : 1
      }
      i++
    }
    out.push(s.slice(start, i))
  }
  return out
}

/** systemd's word splitting for Environment=: whitespace-separated, "..." or '...' quoted. */
function systemdWords(s: string): string[] {
  return splitSystemdRaw(s).map((w) => {
    let out = ''
    for (let i = 0; i < w.length; i++) {
      const c = w[i]!
      if (c === '"' || c === "'") {
        i++
        while (i < w.length && w[i] !== c) {
          if (w[i] === '\\' && c === '"' && i + 1 < w.length) i++
          out += w[i]
          i++
        }
      } else {
        out += c
      }
    }
    return out
  })
}

function unquoteEnv(v: string): string {
  const s = v.trim()
  const q = s[0]
  if (q === '"' || q === "'") {
    const end = s.indexOf(q, 1)
    if (end > 0) return s.slice(1, end)
  }
  // Unquoted, the value ends at the first blank (what follows is a "# comment" or garbage; a
  // discovery URL has no blanks).
  return s.split(/\s/, 1)[0] ?? ''
}
