import {createHash, createHmac, timingSafeEqual} from 'node:crypto'
import {appendFile, mkdir, readFile} from 'node:fs/promises'
import path from 'node:path'
import {HostError} from '../errors.js'

/**
 * OpenSSH known_hosts, as sshd(8) "SSH_KNOWN_HOSTS FILE FORMAT" describes it: plain host patterns
 * (comma lists, `*`/`?` wildcards, `!negation`), hashed `|1|salt|hash` names, `[host]:port` for
 * ports other than 22, several keys per host, `@revoked` keys. `@cert-authority` lines are skipped:
 * hactl does not verify host certificates, so trusting a CA line would trust nothing it can check.
 */

export interface KnownHostEntry {
  file: string
  /** 1-based line number, for messages that point at the line to fix. */
  line: number
  revoked: boolean
  /** The host field as written (patterns or a hashed name). */
  hostField: string
  hashed?: {salt: Buffer; hash: Buffer}
  patterns?: string[]
  /** Key type from the key blob itself (the text field can lie). */
  keyType: string
  key: Buffer
  fingerprint: string
}

/** The name OpenSSH looks up: `host` on port 22, `[host]:port` otherwise; lower-cased. */
export function knownHostsName(host: string, port: number): string {
  const h = host.toLowerCase().replace(/^\[(.*)\]$/, '$1')
  return port === 22 ? h : `[${h}]:${port}`
}

/** `SHA256:<base64 without padding>`, as `ssh-keygen -l` and ssh print it. */
export function fingerprint(key: Buffer): string {
  return `SHA256:${createHash('sha256').update(key).digest('base64').replace(/=+$/, '')}`
}

/** The algorithm name at the start of an SSH public key blob (`ssh-ed25519`, ...). */
export function keyTypeOf(key: Buffer): string {
  if (key.length < 4) throw new Error('not an SSH public key: too short')
  const len = key.readUInt32BE(0)
  if (len === 0 || len > 64 || 4 + len > key.length) throw new Error('not an SSH public key: bad type field')
  const type = key.subarray(4, 4 + len).toString('latin1')
  if (!/^[\x21-\x7e]+$/.test(type)) throw new Error('not an SSH public key: bad type field')
  return type
}

/** Parse a known_hosts text. Malformed lines are skipped, as ssh skips them. */
export function parseKnownHosts(text: string, file: string): KnownHostEntry[] {
  const entries: KnownHostEntry[] = []
  const lines = text.split('\n')
  for (const [i, rawLine] of lines.entries()) {
    const entry = parseLine(rawLine, file, i + 1)
    if (entry) entries.push(entry)
  }
  return entries
}

function parseLine(rawLine: string, file: string, line: number): KnownHostEntry | undefined {
  const text = rawLine.replace(/\r$/, '').trim()
  if (text === '' || text.startsWith('#')) return undefined
  const fields = text.split(/[ \t]+/)
  let revoked = false
  if (fields[0]?.startsWith('@')) {
    const marker = fields.shift()
    if (marker === '@revoked') revoked = true
    else return undefined // @cert-authority, or a marker this version of OpenSSH would not know either
  }
  const [hostField, typeField, keyField] = fields
  if (!hostField || !typeField || !keyField) return undefined
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(keyField)) return undefined
  const key = Buffer.from(keyField, 'base64')
  let keyType: string
  try {
    keyType = keyTypeOf(key)
  } catch {
    return undefined
  }
  if (keyType !== typeField) return undefined
  const entry: KnownHostEntry = {file, line, revoked, hostField, keyType, key, fingerprint: fingerprint(key)}
  if (hostField.startsWith('|1|')) {
    const [, , salt, hash] = hostField.split('|')
    if (!salt || !hash) return undefined
    entry.hashed = {salt: Buffer.from(salt, 'base64'), hash: Buffer.from(hash, 'base64')}
    if (entry.hashed.salt.length !== 20 || entry.hashed.hash.length !== 20) return undefined
  } else {
    entry.patterns = hostField.split(',').filter((p) => p !== '')
  }
  return entry
}

/** Whether an entry's host field names `name` (a `knownHostsName`). */
export function hostMatches(entry: KnownHostEntry, name: string): boolean {
  const lower = name.toLowerCase()
  if (entry.hashed) {
    const mac = createHmac('sha1', entry.hashed.salt).update(lower).digest()
    return timingSafeEqual(mac, entry.hashed.hash)
  }
  let matched = false
  for (const p of entry.patterns ?? []) {
    const negated = p.startsWith('!')
    if (globMatch(negated ? p.slice(1) : p, lower)) {
      // A negated pattern that matches excludes the host, whatever the other patterns say.
      if (negated) return false
      matched = true
    }
  }
  return matched
}

function globMatch(pattern: string, text: string): boolean {
  const re = pattern
    .toLowerCase()
    .split('')
    .map((c) => (c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[\\^$.|+()[\]{}]/g, '\\$&')))
    .join('')
  return new RegExp(`^${re}$`, 's').test(text)
}

export type HostKeyVerdict =
  | {status: 'known'; entry: KnownHostEntry}
  | {status: 'revoked'; entry: KnownHostEntry}
  | {status: 'mismatch'; expected: KnownHostEntry[]}
  | {status: 'unknown'}

/**
 * Check the key a server offered against the entries for `name`. A revoked key is refused even
 * when another line lists it as valid. A host with known keys that offers a different one is a
 * mismatch, even of another key type: the client asks for the known types first (see
 * `knownKeyTypes`), so a server that offers another type is not the one we know. (OpenSSH would
 * call that "new" and, under accept-new, add it; an attacker could pick a fresh key type.)
 */
export function checkHostKey(entries: KnownHostEntry[], name: string, key: Buffer): HostKeyVerdict {
  const forHost = entries.filter((e) => hostMatches(e, name))
  const revoked = forHost.find((e) => e.revoked && e.key.equals(key))
  if (revoked) return {status: 'revoked', entry: revoked}
  const valid = forHost.filter((e) => !e.revoked)
  const match = valid.find((e) => e.key.equals(key))
  if (match) return {status: 'known', entry: match}
  if (valid.length === 0) return {status: 'unknown'}
  let offeredType: string | undefined
  try {
    offeredType = keyTypeOf(key)
  } catch {
    offeredType = undefined
  }
  const sameType = valid.filter((e) => e.keyType === offeredType)
  return {status: 'mismatch', expected: sameType.length > 0 ? sameType : valid}
}

/** Key types known for `name`, in file order: the host key algorithms to ask the server for first. */
export function knownKeyTypes(entries: KnownHostEntry[], name: string): string[] {
  const types: string[] = []
  for (const e of entries)
    if (!e.revoked && hostMatches(e, name) && !types.includes(e.keyType)) types.push(e.keyType)
  return types
}

/** Read a known_hosts file; a missing file is an empty one. */
export async function readKnownHosts(file: string): Promise<KnownHostEntry[]> {
  try {
    return parseKnownHosts(await readFile(file, 'utf8'), file)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw error
  }
}

export function formatKnownHostsLine(name: string, key: Buffer): string {
  return `${name} ${keyTypeOf(key)} ${key.toString('base64')}`
}

// Appends from parallel connections in this process go one after another, so lines never interleave
// and each sees the line count the previous one left.
const appendQueues = new Map<string, Promise<unknown>>()

/** Append `name keytype key` to the file (created 0600 in a 0700 directory if missing). */
export async function appendKnownHost(file: string, name: string, key: Buffer): Promise<KnownHostEntry> {
  const previous = appendQueues.get(file) ?? Promise.resolve()
  const next = previous.catch(() => undefined).then(() => appendNow(file, name, key))
  appendQueues.set(file, next)
  return next
}

async function appendNow(file: string, name: string, key: Buffer): Promise<KnownHostEntry> {
  await mkdir(path.dirname(file), {recursive: true, mode: 0o700})
  let existing = ''
  try {
    existing = await readFile(file, 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
  }
  const prefix = existing === '' || existing.endsWith('\n') ? '' : '\n'
  const text = `${prefix}${formatKnownHostsLine(name, key)}\n`
  // One write with O_APPEND: another process appending at the same time cannot split the line.
  await appendFile(file, text, {mode: 0o600, flag: 'a'})
  const line = existing === '' ? 1 : existing.replace(/\n$/, '').split('\n').length + 1
  return {
    file,
    line,
    revoked: false,
    hostField: name,
    patterns: [name],
    keyType: keyTypeOf(key),
    key,
    fingerprint: fingerprint(key),
  }
}

/** The server offered a key that known_hosts marks `@revoked`. */
export class RevokedHostKeyError extends HostError {
  readonly fingerprint: string
  readonly file: string
  readonly line: number

  constructor(host: string, opts: {fingerprint: string; keyType: string; file: string; line: number}) {
    super(
      'host-key-revoked',
      host,
      `${host}: the server offered ${opts.keyType} ${opts.fingerprint}, which ${opts.file}:${opts.line} marks @revoked`,
      {
        suggestions: [
          'do not connect: the host may be compromised; give it a new host key and update known_hosts',
        ],
      },
    )
    this.fingerprint = opts.fingerprint
    this.file = opts.file
    this.line = opts.line
  }
}
