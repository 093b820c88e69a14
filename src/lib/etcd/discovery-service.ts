import {randomBytes} from 'node:crypto'
import {mkdir, readFile, rename, writeFile} from 'node:fs/promises'
import {homedir} from 'node:os'
import path from 'node:path'
import {formatMs, HactlError, UserError} from '../errors.js'
import {defaultStateDir} from '../history.js'

/**
 * Where a rediscovery gets its new etcd v2 discovery URL, and the memory of the URLs a cluster has
 * already used (a token is for one bootstrap only: a member that wiped its data cannot register
 * again with the same token).
 */

/** A public-style discovery service (`GET <service>/new?size=N` answers the URL). */
export interface ServiceSource {
  kind: 'service'
  /** The service base URL, e.g. https://discovery.etcd.io. */
  url: string
}

/** An etcd v2 API used as the discovery backend: hactl makes the token itself. */
export interface EtcdBackendSource {
  kind: 'etcd'
  /** The key prefix URL tokens go under, e.g. http://10.0.0.5:2379/v2/keys/discovery. */
  url: string
}

/** A discovery URL the operator made and gave with --discovery. */
export interface GivenSource {
  kind: 'given'
  url: string
}

export type DiscoverySource = ServiceSource | EtcdBackendSource | GivenSource

export const DEFAULT_TOKEN_TIMEOUT_MS = 10_000

/** Parse an http(s) URL given by the operator; anything else is a usage error. */
export function parseHttpUrl(value: string, what: string): URL {
  let url: URL
  try {
    url = new URL(value)
  } catch {
    throw new UserError(`${what}: not a URL: ${JSON.stringify(value)}`, [
      `give a full URL, e.g. ${what} http://10.0.0.5:2379/v2/keys/discovery/TOKEN`,
    ])
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new UserError(`${what}: only http and https URLs are supported, got ${JSON.stringify(value)}`)
  }
  if (url.username || url.password) {
    throw new UserError(
      `${what}: a URL with credentials would be written into every host's config; give one without user:password`,
    )
  }
  if (url.search || url.hash) {
    throw new UserError(
      `${what}: a query string or fragment is not part of a discovery URL: ${JSON.stringify(value)}`,
    )
  }
  return url
}

/** The form used to compare URLs: parsed, no trailing slash. */
export function normalizeDiscoveryUrl(value: string): string {
  try {
    return new URL(value).href.replace(/\/+$/, '')
  } catch {
    return value.trim().replace(/\/+$/, '')
  }
}

const ETCD_KEYS_RE = /^\/v2\/keys(\/.*)?$/

/**
 * Decide where the new token comes from: the operator's --discovery URL, or the discovery service
 * (--discovery-service, else etcd.discovery.service). A service URL whose path is an etcd v2 keys
 * path (`/v2/keys/...`) is a custom etcd backend; `/v2/keys` alone means `/v2/keys/discovery`.
 */
export function resolveDiscoverySource(opts: {
  discovery?: string
  discoveryService?: string
  configService: string
}): DiscoverySource {
  if (opts.discovery !== undefined && opts.discoveryService !== undefined) {
    throw new UserError('--discovery and --discovery-service cannot be used together', [
      '--discovery gives the URL itself; --discovery-service says where to get a new one',
    ])
  }
  if (opts.discovery !== undefined) {
    const url = parseHttpUrl(opts.discovery, '--discovery')
    if (url.pathname === '/' || url.pathname === '') {
      throw new UserError(`--discovery: ${opts.discovery} has no token in its path`, [
        'a discovery URL looks like https://discovery.etcd.io/TOKEN or http://HOST:2379/v2/keys/discovery/TOKEN',
      ])
    }
    return {kind: 'given', url: normalizeDiscoveryUrl(url.href)}
  }
  const what = opts.discoveryService === undefined ? 'etcd.discovery.service' : '--discovery-service'
  const url = parseHttpUrl(opts.discoveryService ?? opts.configService, what)
  const m = ETCD_KEYS_RE.exec(url.pathname.replace(/\/+$/, ''))
  if (m) {
    const prefix = m[1] && m[1] !== '/' ? m[1].replace(/\/+$/, '') : '/discovery'
    return {kind: 'etcd', url: `${url.origin}/v2/keys${prefix}`}
  }
  return {kind: 'service', url: normalizeDiscoveryUrl(url.href)}
}

/** A human description of a source, for plans and summaries. */
export function describeDiscoverySource(source: DiscoverySource): string {
  switch (source.kind) {
    case 'service':
      return `discovery service ${source.url} (GET /new?size=N)`
    case 'etcd':
      return `etcd v2 discovery backend ${source.url} (PUT <token>/_config/size)`
    case 'given':
      return `the given URL ${source.url}`
  }
}

export interface NewTokenOptions {
  size: number
  timeoutMs?: number
  signal?: AbortSignal
  /** For tests. */
  fetchImpl?: typeof fetch
  /** For tests: the token an etcd backend gets. */
  randomToken?: () => string
}

/** A fresh 128-bit token, like the public service's. */
export function randomToken(): string {
  return randomBytes(16).toString('hex')
}

/**
 * A new discovery URL for a cluster of `size` members. The given source returns its URL unchanged
 * (checks on it are `inspectDiscoveryUrl`'s job). Throws HactlError (exit 1) naming the service
 * when it fails or does not answer in time.
 */
export async function newDiscoveryUrl(source: DiscoverySource, opts: NewTokenOptions): Promise<string> {
  if (!Number.isInteger(opts.size) || opts.size < 1)
    throw new UserError(`--size must be a positive integer, got ${opts.size}`)
  if (source.kind === 'given') return source.url
  const doFetch = opts.fetchImpl ?? fetch
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TOKEN_TIMEOUT_MS
  const hints = [
    'check that this machine reaches it, or point at another: --discovery-service URL (etcd.discovery.service in hactl.yaml)',
    'or make a token yourself and give it: --discovery URL',
  ]
  if (source.kind === 'service') {
    const endpoint = `${source.url}/new?size=${opts.size}`
    const res = await request(
      doFetch,
      endpoint,
      {method: 'GET'},
      timeoutMs,
      opts.signal,
      'discovery service',
      hints,
    )
    const body = res.body.trim()
    if (res.status !== 200) {
      throw new HactlError(
        `discovery service ${endpoint} answered ${res.status}${body ? `: ${firstLine(body)}` : ''}`,
        {suggestions: hints},
      )
    }
    let url: URL
    try {
      url = new URL(body)
    } catch {
      throw new HactlError(
        `discovery service ${endpoint} did not answer a URL: ${JSON.stringify(firstLine(body).slice(0, 200))}`,
        {suggestions: hints},
      )
    }
    if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.pathname === '/') {
      throw new HactlError(`discovery service ${endpoint} answered an unusable URL: ${body.slice(0, 200)}`, {
        suggestions: hints,
      })
    }
    return normalizeDiscoveryUrl(url.href)
  }
  // A custom etcd v2 backend: the token is ours to make; prevExist=false makes a collision (or a
  // reused token) fail instead of resetting another cluster's registration.
  const token = (opts.randomToken ?? randomToken)()
  if (!/^[A-Za-z0-9_-]{8,128}$/.test(token)) throw new Error(`bad token ${token}`)
  const url = `${source.url}/${token}`
  const endpoint = `${url}/_config/size?prevExist=false`
  const res = await request(
    doFetch,
    endpoint,
    {
      method: 'PUT',
      headers: {'content-type': 'application/x-www-form-urlencoded'},
      body: `value=${opts.size}`,
    },
    timeoutMs,
    opts.signal,
    'etcd discovery backend',
    hints,
  )
  const body = res.body
  if (res.status !== 200 && res.status !== 201) {
    throw new HactlError(
      `etcd discovery backend: PUT ${endpoint} answered ${res.status}${body ? `: ${firstLine(body).slice(0, 300)}` : ''}`,
      {
        suggestions: hints,
      },
    )
  }
  return url
}

export interface DiscoveryUrlFacts {
  /** The size registered under `_config/size`, when readable. */
  size?: number
  /** Members already registered with this token. */
  registered: number
}

/**
 * Read an etcd v2 discovery URL's state: its size (`GET <url>/_config/size`; etcd hides `_` keys
 * from directory listings, so it is asked for by name) and how many members have registered
 * (`GET <url>`). Used to refuse a --discovery URL that a cluster already bootstrapped with, or one
 * made for another size.
 */
export async function inspectDiscoveryUrl(
  url: string,
  opts: {timeoutMs?: number; signal?: AbortSignal; fetchImpl?: typeof fetch} = {},
): Promise<DiscoveryUrlFacts> {
  const doFetch = opts.fetchImpl ?? fetch
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TOKEN_TIMEOUT_MS
  const [sizeRes, dirRes] = await Promise.all([
    request(doFetch, `${url}/_config/size`, {method: 'GET'}, timeoutMs, opts.signal, 'discovery URL', []),
    request(doFetch, url, {method: 'GET'}, timeoutMs, opts.signal, 'discovery URL', []),
  ])
  if (sizeRes.status === 404) {
    throw new HactlError(
      `discovery URL ${url} has no _config/size (404): it is not a token made for a cluster`,
      {
        suggestions: ['make a token first (PUT <url>/_config/size value=N), or omit --discovery'],
      },
    )
  }
  if (sizeRes.status !== 200)
    throw new HactlError(
      `discovery URL ${url}/_config/size answered ${sizeRes.status}${sizeRes.body ? `: ${firstLine(sizeRes.body).slice(0, 200)}` : ''}`,
    )
  const value = parseEtcdNode(sizeRes.body, url)?.value
  const size = value !== undefined && /^\d+$/.test(value) ? Number(value) : undefined
  let registered = 0
  if (dirRes.status === 200) {
    for (const n of parseEtcdNode(dirRes.body, url)?.nodes ?? []) {
      const name = (n.key ?? '').split('/').pop() ?? ''
      if (name !== '' && !name.startsWith('_')) registered++
    }
  } else if (dirRes.status !== 404) {
    throw new HactlError(
      `discovery URL ${url} answered ${dirRes.status}${dirRes.body ? `: ${firstLine(dirRes.body).slice(0, 200)}` : ''}`,
    )
  }
  return {...(size === undefined ? {} : {size}), registered}
}

interface EtcdV2Node {
  key?: string
  value?: string
  dir?: boolean
  nodes?: EtcdV2Node[]
}

function parseEtcdNode(body: string, url: string): EtcdV2Node | undefined {
  try {
    return (JSON.parse(body) as {node?: EtcdV2Node}).node
  } catch {
    throw new HactlError(`discovery URL ${url} did not answer etcd v2 JSON`)
  }
}

// --- The URLs a cluster has used ------------------------------------------------------------

/** hactl's state directory: $XDG_STATE_HOME/hactl, else ~/.local/state/hactl (history.ts's rule). */
export function hactlStateDir(env: NodeJS.ProcessEnv = process.env): string {
  return defaultStateDir(env, env.HOME || homedir())
}

export function usedUrlsFile(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(hactlStateDir(env), 'discovery-used.json')
}

export interface UsedUrl {
  url: string
  /** ISO time it was first seen or used. */
  at: string
  /** `configured` (read from a host), `new` (a rediscovery wrote it). */
  how: 'configured' | 'new'
}

interface UsedFile {
  version: 1
  clusters: Record<string, UsedUrl[]>
}

async function readUsedFile(file: string): Promise<UsedFile> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return {version: 1, clusters: {}}
    throw new HactlError(`cannot read ${file}: ${(error as Error).message}`)
  }
  try {
    const parsed = JSON.parse(text) as Partial<UsedFile>
    if (parsed && typeof parsed === 'object' && parsed.clusters && typeof parsed.clusters === 'object') {
      return {version: 1, clusters: parsed.clusters}
    }
  } catch {
    // fall through
  }
  throw new HactlError(`${file} is not a discovery-used file hactl wrote`, {
    suggestions: [`move it away and run again: mv ${file} ${file}.bad`],
  })
}

/** The discovery URLs this cluster has used, as remembered on this machine. */
export async function readUsedUrls(cluster: string, file = usedUrlsFile()): Promise<UsedUrl[]> {
  const data = await readUsedFile(file)
  return data.clusters[cluster] ?? []
}

/** Remember URLs as used by a cluster (idempotent; written atomically). */
export async function recordUsedUrls(
  cluster: string,
  urls: string[],
  how: UsedUrl['how'],
  file = usedUrlsFile(),
  now = new Date(),
): Promise<void> {
  const data = await readUsedFile(file)
  const list = data.clusters[cluster] ?? []
  const have = new Set(list.map((u) => normalizeDiscoveryUrl(u.url)))
  let changed = false
  for (const u of urls) {
    const n = normalizeDiscoveryUrl(u)
    if (have.has(n)) continue
    have.add(n)
    list.push({url: n, at: now.toISOString(), how})
    changed = true
  }
  if (!changed) return
  data.clusters[cluster] = list
  await mkdir(path.dirname(file), {recursive: true, mode: 0o700})
  const tmp = `${file}.${process.pid}.tmp`
  await writeFile(tmp, `${JSON.stringify(data, null, 2)}\n`, {mode: 0o600})
  await rename(tmp, file)
}

/**
 * Why `url` may not be used by this cluster, or undefined when it may: it is remembered as used, or
 * some host has it configured now.
 */
export function usedUrlReason(
  url: string,
  opts: {used: UsedUrl[]; configured: Array<{host: string; url: string | null}>},
): string | undefined {
  const n = normalizeDiscoveryUrl(url)
  const hosts = opts.configured
    .filter((c) => c.url !== null && normalizeDiscoveryUrl(c.url) === n)
    .map((c) => c.host)
  if (hosts.length > 0) return `it is the URL configured now on ${hosts.join(', ')}`
  const seen = opts.used.find((u) => normalizeDiscoveryUrl(u.url) === n)
  if (seen)
    return `this cluster already used it (${seen.how === 'new' ? 'written by a rediscovery' : 'seen configured'} ${seen.at})`
  return undefined
}

/** Refuse a URL this cluster has used (UserError, exit 2). */
export function assertUnusedUrl(
  url: string,
  opts: {
    cluster: string
    used: UsedUrl[]
    configured: Array<{host: string; url: string | null}>
    file?: string
  },
): void {
  const reason = usedUrlReason(url, opts)
  if (reason === undefined) return
  throw new UserError(
    `discovery URL ${url} cannot be used: ${reason}; a token is never reused (members that wiped their data cannot register again)`,
    [
      'omit --discovery to get a new token from the discovery service',
      ...(opts.file ? [`the used URLs are remembered in ${opts.file}`] : []),
    ],
  )
}

// --- helpers ---------------------------------------------------------------------------------

async function request(
  doFetch: typeof fetch,
  url: string,
  init: RequestInit,
  timeoutMs: number,
  signal: AbortSignal | undefined,
  what: string,
  hints: string[],
): Promise<{status: number; body: string}> {
  const timeout = AbortSignal.timeout(timeoutMs)
  const combined = signal ? AbortSignal.any([signal, timeout]) : timeout
  try {
    const res = await doFetch(url, {...init, signal: combined, redirect: 'follow'})
    const text = await res.text()
    // A discovery answer is tiny; a huge body is not one.
    return {status: res.status, body: text.length > 64 * 1024 ? text.slice(0, 64 * 1024) : text}
  } catch (error) {
    if (signal?.aborted) throw signal.reason instanceof Error ? signal.reason : new HactlError('interrupted')
    if (timeout.aborted) {
      throw new HactlError(`${what} ${url} did not answer within ${formatMs(timeoutMs)}`, {
        suggestions: hints,
      })
    }
    const cause = (error as {cause?: {code?: string; message?: string}}).cause
    const detail = cause?.code ?? cause?.message ?? (error as Error).message
    throw new HactlError(`cannot reach ${what} ${url}: ${detail}`, {suggestions: hints, cause: error})
  }
}

function firstLine(s: string): string {
  return (s.split('\n').find((l) => l.trim() !== '') ?? '').trim()
}
