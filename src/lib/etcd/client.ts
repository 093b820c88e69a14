import {readFileSync} from 'node:fs'
import {createRequire} from 'node:module'
import type {AddressInfo, Server, Socket} from 'node:net'
import type {Duplex} from 'node:stream'
import type {Etcd3, IOptions} from 'etcd3'
import {etcdEndpoints, expandHome} from '../config/file.js'
import type {HactlConfig} from '../config/load.js'
import {ConfigError, formatMs, HactlError} from '../errors.js'

/** Opens a byte stream to host:port from somewhere else: the SSH pool's `forwardOut`. */
export type EtcdTunnel = (host: string, port: number) => Promise<Duplex>

export interface OpenEtcdOptions {
  /** Reach etcd through this tunnel (for `etcd.via: ssh`): one local TCP forwarder per endpoint. */
  tunnel?: EtcdTunnel
  /** Client URLs to use instead of `etcdEndpoints(config)`. */
  endpoints?: string[]
}

export interface MemberClient {
  client: Etcd3
  close(): Promise<void>
}

export interface EtcdHandle {
  client: Etcd3
  /** The client URLs as configured (what the operator knows), not the local forwarders. */
  endpoints: string[]
  /** What the client connects to: `endpoints`, or the local forwarders of the tunnel. */
  localEndpoints: string[]
  /** `etcd.timeout` in milliseconds. */
  timeoutMs: number
  via: 'direct' | 'ssh'
  /**
   * Run one etcd request under `etcd.timeout`; every failure comes out as a HactlError
   * (`EtcdUnreachableError` when etcd does not answer). `what` says what hactl was doing.
   */
  call<T>(what: string, fn: (client: Etcd3) => Promise<T>, opts?: {timeoutMs?: number}): Promise<T>
  /**
   * A short-lived client that talks to this one client URL only (through the tunnel when there
   * is one), without retries on other members: for per-member questions such as status.
   */
  memberClient(url: string): Promise<MemberClient>
  /** Run fn when the handle closes (leases and watchers that must not keep the process alive). */
  onClose(fn: () => Promise<void> | void): () => void
  close(): Promise<void>
}

/** etcd did not answer (down, unreachable, or too slow for `etcd.timeout`). Exit 1. */
export class EtcdUnreachableError extends HactlError {
  readonly kind = 'etcd-unreachable'
  readonly endpoints: string[]
  /** Set when the request ran into `etcd.timeout`. */
  readonly timeoutName?: string

  constructor(
    endpoints: string[],
    detail: string,
    opts: {timedOut?: boolean; timeoutMs?: number; via?: 'direct' | 'ssh'; cause?: unknown} = {},
  ) {
    const suggestions = ['see which members answer: hactl status']
    if (opts.timedOut)
      suggestions.push(
        `raise etcd.timeout in hactl.yaml${opts.timeoutMs === undefined ? '' : ` (now ${formatMs(opts.timeoutMs)})`} if etcd is just slow`,
      )
    if (opts.via !== 'ssh')
      suggestions.push(
        'if etcd is not reachable from this machine, tunnel it through SSH: set etcd.via: ssh in hactl.yaml',
      )
    super(
      `etcd unreachable at ${endpoints.join(', ') || '(no endpoints)'}${opts.via === 'ssh' ? ' (via ssh)' : ''}: ${detail}`,
      {
        suggestions,
        cause: opts.cause,
      },
    )
    if (opts.timedOut) this.timeoutName = 'etcd.timeout'
    this.endpoints = endpoints
  }
}

/** etcd answered but refused: wrong credentials, permission denied, or a request it rejects. Exit 1. */
export class EtcdRequestError extends HactlError {
  readonly kind: 'etcd-auth' | 'etcd-permission' | 'etcd-tls' | 'etcd-error'

  constructor(kind: EtcdRequestError['kind'], message: string, suggestions: string[] = [], cause?: unknown) {
    super(message, {suggestions, cause})
    this.kind = kind
  }
}

type Etcd3Module = typeof import('etcd3')
/** Set once openEtcd has loaded etcd3, so translateEtcdError can tell its error classes apart. */
let loadedModule: Etcd3Module | undefined

/**
 * etcd3 is CommonJS: `require` it. `import()` would also run Node's export scanner over etcd3 and
 * every module it re-exports, ~20 ms of CPU on each run for names hactl never looks up that way.
 */
function loadEtcd3(): Etcd3Module {
  loadedModule ??= createRequire(import.meta.url)('etcd3') as Etcd3Module
  return loadedModule
}
type FaultPolicy = NonNullable<NonNullable<IOptions['faultHandling']>['global']>
type WatchBackoff = NonNullable<NonNullable<IOptions['faultHandling']>['watchBackoff']>

interface Forwarder {
  url: string
  localUrl: string
  close(): Promise<void>
}

/**
 * Open an etcd v3 client for the cluster in `config`. Nothing is sent yet: the first request
 * tells whether etcd answers (use `handle.call` to get typed errors and `etcd.timeout`).
 */
export async function openEtcd(config: HactlConfig, opts: OpenEtcdOptions = {}): Promise<EtcdHandle> {
  const endpoints = opts.endpoints ?? etcdEndpoints(config)
  if (endpoints.length === 0) {
    throw new ConfigError(
      `${config.file}: no etcd endpoints: no node has the etcd role and etcd.endpoints is empty`,
      {
        suggestions: ['add the etcd role to the nodes that run etcd, or list etcd.endpoints in hactl.yaml'],
      },
    )
  }
  for (const e of endpoints) parseEndpoint(e)
  if (config.etcd.via === 'ssh' && !opts.tunnel) {
    throw new HactlError(
      'etcd.via is ssh, but no SSH tunnel was given to openEtcd (a bug in the calling command)',
    )
  }
  const via: 'direct' | 'ssh' = opts.tunnel ? 'ssh' : 'direct'
  const timeoutMs = config.etcd.timeout
  const credentials = readTlsFiles(config)
  const secure = Boolean(credentials) || endpoints.some((e) => e.startsWith('https:'))

  const mod = loadEtcd3()

  const forwarders = new Map<string, Forwarder>()
  const tunnelErrors = new Map<string, string>()
  const closers = new Set<() => Promise<void> | void>()
  let closed = false

  async function localUrlFor(url: string): Promise<string> {
    if (!opts.tunnel) return url
    let fw = forwarders.get(url)
    if (!fw) {
      fw = await startForwarder(url, opts.tunnel, timeoutMs, (e) => tunnelErrors.set(url, e.message))
      if (closed) {
        await fw.close()
        throw new HactlError('the etcd handle is closed')
      }
      forwarders.set(url, fw)
    }
    return fw.localUrl
  }

  /** serverName: the host the TLS certificate must name (the real member, not the forwarder). */
  const baseOptions = (hosts: string[], attemptMs: number, serverName: string | undefined): IOptions => {
    const grpcOptions: Record<string, string | number> = {
      // Fail fast and retry soon: an operator is waiting, and agents must notice etcd coming back.
      'grpc.initial_reconnect_backoff_ms': 200,
      'grpc.max_reconnect_backoff_ms': 2000,
      // channelz keeps a trace of every call for grpc's debugging tools, which hactl never
      // attaches: ~20 ms of CPU in a status run.
      'grpc.enable_channelz': 0,
    }
    // Through a tunnel the client connects to 127.0.0.1 but must verify the certificate of the
    // real member. grpc takes one name per client: the multi-member client uses the first
    // endpoint's (certificates must name it, e.g. one certificate with every member's name).
    if (opts.tunnel && secure && serverName) grpcOptions['grpc.ssl_target_name_override'] = serverName
    return {
      hosts,
      dialTimeout: timeoutMs,
      grpcOptions,
      ...(credentials ? {credentials} : {}),
      ...(config.etcd.auth
        ? {auth: {username: config.etcd.auth.username, password: config.etcd.auth.password}}
        : {}),
      // Unary calls get a deadline; streams (watch, lease keep-alive) live as long as they must.
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : {deadline: Date.now() + attemptMs}),
    }
  }

  const localHosts = await Promise.all(endpoints.map((e) => localUrlFor(e)))
  const client = new mod.Etcd3({
    // Half of etcd.timeout per attempt leaves time to retry on another member when one hangs.
    ...baseOptions(
      localHosts,
      Math.max(Math.min(1000, timeoutMs), Math.floor(timeoutMs / 2)),
      endpoints[0] === undefined ? undefined : parseEndpoint(endpoints[0]).host,
    ),
    faultHandling: {
      host: () => shortCircuitBreaker(mod),
      watchBackoff: backoff(200, 5000),
    },
  })

  const handle: EtcdHandle = {
    client,
    endpoints,
    localEndpoints: localHosts,
    timeoutMs,
    via,
    async call(what, fn, callOpts = {}) {
      const ms = callOpts.timeoutMs ?? timeoutMs
      return withTimeout(
        Promise.resolve().then(() => fn(client)),
        ms,
        () =>
          new EtcdUnreachableError(
            endpoints,
            `no answer within ${formatMs(ms)} (etcd.timeout) while ${what}${tunnelDetail(tunnelErrors)}`,
            {timedOut: true, timeoutMs: ms, via},
          ),
      ).catch((error: unknown) => {
        throw translateEtcdError(error, {endpoints, what, via, timeoutMs: ms, config, tunnelErrors, mod})
      })
    },
    async memberClient(url) {
      parseEndpoint(url)
      const local = await localUrlFor(url)
      const c = new mod.Etcd3({
        ...baseOptions([local], timeoutMs, parseEndpoint(url).host),
        faultHandling: {host: () => noopPolicy(), global: noopPolicy()},
      })
      return {
        client: c,
        async close() {
          c.close()
        },
      }
    },
    onClose(fn) {
      closers.add(fn)
      return () => closers.delete(fn)
    },
    async close() {
      if (closed) return
      closed = true
      // Best effort, in parallel: closing must not hide the outcome of the run, nor wait for
      // one etcd.timeout per open lease when etcd is gone.
      const fns = [...closers]
      closers.clear()
      await Promise.allSettled(fns.map(async (fn) => fn()))
      client.close()
      await Promise.all([...forwarders.values()].map((f) => f.close()))
      forwarders.clear()
    },
  }
  return handle
}

/**
 * Turn whatever etcd3/grpc threw into a HactlError that names the endpoints and what hactl was doing.
 * Exported for callers that use `handle.client` directly.
 */
export function translateEtcdError(
  error: unknown,
  ctx: {
    endpoints: string[]
    what: string
    via?: 'direct' | 'ssh'
    timeoutMs?: number
    config?: HactlConfig
    tunnelErrors?: Map<string, string>
    mod?: Etcd3Module
  },
): HactlError {
  if (error instanceof HactlError) return error
  const err = error instanceof Error ? error : new Error(String(error))
  const msg = cleanGrpcMessage(err.message)
  const m = ctx.mod ?? loadedModule
  const user = ctx.config?.etcd.auth?.username
  if (m && err instanceof m.EtcdAuthenticationFailedError) {
    return new EtcdRequestError(
      'etcd-auth',
      `etcd refused the credentials of user "${user ?? '?'}" (etcd.auth) while ${ctx.what}`,
      ['check etcd.auth.username and etcd.auth.password in hactl.yaml'],
      err,
    )
  }
  if ((m && err instanceof m.EtcdPermissionDeniedError) || /permission denied/i.test(msg)) {
    return new EtcdRequestError(
      'etcd-permission',
      `etcd denied ${ctx.what}: permission denied${user ? ` for user "${user}"` : ''}`,
      [
        user
          ? `grant the user's role access to the hactl prefixes: etcdctl role grant-permission ...`
          : 'etcd has auth enabled: set etcd.auth (username, password) in hactl.yaml',
      ],
      err,
    )
  }
  if ((m && err instanceof m.GRPCUnauthenticatedError) || /user name is empty|auth.*required/i.test(msg)) {
    return new EtcdRequestError(
      'etcd-auth',
      `etcd wants credentials for ${ctx.what}: ${msg}`,
      ['etcd has auth enabled: set etcd.auth (username, password) in hactl.yaml'],
      err,
    )
  }
  if (/SSL routines|certificate|altnames|self[- ]signed|wrong version number/i.test(err.message)) {
    const alert = /alert ([a-z ]+?)(?::|$)/i.exec(err.message)?.[1]
    const detail = alert ? `TLS alert "${alert}" from the server` : msg
    return new EtcdRequestError(
      'etcd-tls',
      `TLS with etcd at ${ctx.endpoints.join(', ')} failed: ${detail} (while ${ctx.what})`,
      [
        alert && /certificate/.test(alert)
          ? 'etcd wants a client certificate it trusts: set etcd.tls.cert and etcd.tls.key in hactl.yaml'
          : 'check etcd.tls.ca (the CA that signed the etcd server certificates) and the endpoint host names in hactl.yaml',
      ],
      err,
    )
  }
  if ((m && err instanceof m.GRPCDeadlineExceededError) || /DEADLINE_EXCEEDED/.test(err.message)) {
    const within = ctx.timeoutMs === undefined ? msg : `no answer within ${formatMs(ctx.timeoutMs)}`
    return new EtcdUnreachableError(
      ctx.endpoints,
      `${within} (etcd.timeout) while ${ctx.what}${ctx.tunnelErrors ? tunnelDetail(ctx.tunnelErrors) : ''}`,
      {
        timedOut: true,
        ...(ctx.timeoutMs === undefined ? {} : {timeoutMs: ctx.timeoutMs}),
        via: ctx.via,
        cause: err,
      },
    )
  }
  const unreachable =
    (m &&
      (err instanceof m.GRPCUnavailableError ||
        err instanceof m.GRPCDeadlineExceededError ||
        err instanceof m.GRPCCancelledError ||
        err instanceof m.ClientClosedError)) ||
    err.name === 'BrokenCircuitError' ||
    /UNAVAILABLE|DEADLINE_EXCEEDED|ECONNREFUSED|EHOSTUNREACH|ENETUNREACH|ETIMEDOUT|No connection established|Deadline exceeded|circuit/i.test(
      err.message,
    )
  if (unreachable) {
    return new EtcdUnreachableError(
      ctx.endpoints,
      `${msg}${ctx.tunnelErrors ? tunnelDetail(ctx.tunnelErrors) : ''} (while ${ctx.what})`,
      {via: ctx.via, cause: err},
    )
  }
  if (/no leader|leader changed|too many requests|timed out/i.test(msg)) {
    return new EtcdUnreachableError(
      ctx.endpoints,
      `${msg} (while ${ctx.what}); the cluster may have lost quorum`,
      {via: ctx.via, cause: err},
    )
  }
  return new EtcdRequestError('etcd-error', `etcd: ${ctx.what} failed: ${msg}`, [], err)
}

/**
 * grpc's messages made readable:
 * "14 UNAVAILABLE: No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:2379. Resolution note: "
 * → "connect ECONNREFUSED 127.0.0.1:2379"; "4 DEADLINE_EXCEEDED: Deadline exceeded after 1.000s,name resolution: ..."
 * → "no answer within 1s".
 */
export function cleanGrpcMessage(message: string): string {
  let m = message
    .replace(/^\w*Error: /, '')
    .replace(/ \(\d{4}-\d\d-\d\dT[^)]*\)/g, '')
    .replace(/ Please report this error at https:\/\/github\.com\/microsoft\/etcd3$/, '')
    .split('\n')[0]!
    .trim()
  const deadline = /DEADLINE_EXCEEDED: Deadline exceeded after (\d+(?:\.\d+)?)s/.exec(m)
  if (deadline) return `no answer within ${formatMs(Math.round(Number(deadline[1]) * 1000))}`
  const last = /Last error: (?:Error: )?(.*?)\.?(?: Resolution note:.*)?$/.exec(m)
  if (last?.[1]) return last[1].trim()
  m = m.replace(/^\d+ [A-Z_]+: /, '')
  return m
}

function tunnelDetail(errors: Map<string, string>): string {
  const last = [...errors.entries()].at(-1)
  return last ? `; SSH tunnel to ${last[0]}: ${last[1]}` : ''
}

/** Reject with onTimeout() when p does not settle within ms. */
export async function withTimeout<T>(p: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(onTimeout()), ms)
      }),
    ])
  } finally {
    if (timer) clearTimeout(timer)
  }
}

export function parseEndpoint(url: string): {protocol: 'http:' | 'https:'; host: string; port: number} {
  let u: URL
  try {
    u = new URL(url)
  } catch {
    throw new ConfigError(`not an etcd client URL: ${JSON.stringify(url)}`, {
      suggestions: ['use URLs such as http://10.0.0.1:2379'],
    })
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new ConfigError(`etcd client URL ${url}: expected http:// or https://`)
  }
  const host = u.hostname.replace(/^\[(.*)\]$/, '$1')
  const port = u.port ? Number(u.port) : u.protocol === 'https:' ? 443 : 80
  return {protocol: u.protocol, host, port}
}

function readTlsFiles(config: HactlConfig): IOptions['credentials'] | undefined {
  const tls = config.etcd.tls
  if (!tls || (!tls.ca && !tls.cert && !tls.key)) return undefined
  if (Boolean(tls.cert) !== Boolean(tls.key)) {
    throw new ConfigError(`${config.file}: etcd.tls needs both cert and key (or neither)`)
  }
  const read = (name: string, file: string | undefined): Buffer | undefined => {
    if (!file) return undefined
    try {
      return readFileSync(expandHome(file))
    } catch (error) {
      throw new ConfigError(
        `${config.file}: cannot read etcd.tls.${name} ${file}: ${(error as Error).message}`,
      )
    }
  }
  const ca = read('ca', tls.ca)
  const key = read('key', tls.key)
  const cert = read('cert', tls.cert)
  return {
    // grpc takes null for "the system's roots"; etcd3's type says Buffer.
    rootCertificate: ca ?? (null as unknown as Buffer),
    ...(key ? {privateKey: key} : {}),
    ...(cert ? {certChain: cert} : {}),
  }
}

/**
 * A local TCP server on 127.0.0.1:0 whose connections are piped to tunnel(host, port).
 * grpc connects to it as if it were the member.
 */
async function startForwarder(
  url: string,
  tunnel: EtcdTunnel,
  timeoutMs: number,
  onError: (e: Error) => void,
): Promise<Forwarder> {
  const net = await import('node:net')
  const {protocol, host, port} = parseEndpoint(url)
  const sockets = new Set<Socket>()
  const remotes = new Set<Duplex>()
  const server: Server = net.createServer((sock) => {
    sockets.add(sock)
    sock.on('error', () => undefined)
    sock.on('close', () => sockets.delete(sock))
    let settled = false
    const timer = setTimeout(() => {
      if (settled) return
      settled = true
      onError(new Error(`no channel within ${formatMs(timeoutMs)}`))
      sock.destroy()
    }, timeoutMs)
    tunnel(host, port).then(
      (remote) => {
        clearTimeout(timer)
        if (settled || sock.destroyed) {
          remote.destroy()
          return
        }
        settled = true
        remotes.add(remote)
        remote.on('error', (e: Error) => {
          onError(e)
          sock.destroy()
        })
        remote.on('close', () => {
          remotes.delete(remote)
          sock.destroy()
        })
        sock.on('close', () => remote.destroy())
        sock.pipe(remote)
        remote.pipe(sock)
      },
      (error: unknown) => {
        clearTimeout(timer)
        settled = true
        onError(error instanceof Error ? error : new Error(String(error)))
        sock.destroy()
      },
    )
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject)
      resolve()
    })
  })
  server.unref()
  const localPort = (server.address() as AddressInfo).port
  return {
    url,
    localUrl: `${protocol}//127.0.0.1:${localPort}`,
    async close() {
      for (const s of sockets) s.destroy()
      for (const r of remotes) r.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

/**
 * Per-member circuit breaker: after 3 failures in a row, skip the member for 1 s (etcd3's default
 * skips it for 5 s, which makes an agent slow to notice that etcd is back).
 */
function shortCircuitBreaker(mod: Etcd3Module): FaultPolicy {
  let failures = 0
  let openUntil = 0
  let lastError: unknown
  const policy = {
    async execute<T>(fn: (ctx: {signal: AbortSignal}) => PromiseLike<T> | T): Promise<T> {
      if (Date.now() < openUntil) throw lastError
      try {
        const result = await fn({signal: new AbortController().signal})
        failures = 0
        return result
      } catch (error) {
        if (error instanceof Error && mod.isRecoverableError(error)) {
          lastError = error
          failures += 1
          if (failures >= 3) {
            failures = 0
            openUntil = Date.now() + 1000
          }
        }
        throw error
      }
    },
  }
  return policy as unknown as FaultPolicy
}

function noopPolicy(): FaultPolicy {
  return {
    execute: async <T>(fn: (ctx: {signal: AbortSignal}) => PromiseLike<T> | T) =>
      fn({signal: new AbortController().signal}),
  } as unknown as FaultPolicy
}

/** Exponential backoff for watch reconnects, minMs doubling up to maxMs. */
function backoff(minMs: number, maxMs: number): WatchBackoff {
  interface Step {
    duration: number
    next(): Step
  }
  const at = (d: number): Step => ({duration: d, next: () => at(Math.min(maxMs, d * 2))})
  return {duration: minMs, next: () => at(minMs)} as unknown as WatchBackoff
}

/** Render an etcd uint64 ID (decimal string) as etcdctl does: lower-case hex. */
export function hexId(id: string | number | bigint): string {
  try {
    return BigInt(id).toString(16)
  } catch {
    return String(id)
  }
}
