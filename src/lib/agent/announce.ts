import type {HactlConfig} from '../config/load.js'
import {asteriskSchema, etcdSchema, kamailioSchema, sshSchema} from '../config/schema.js'
import {ConfigError} from '../errors.js'
import type {EtcdHandle} from '../etcd/client.js'
import type {AnnounceEvent} from '../etcd/registrations.js'
import type {AgentLog} from './log.js'

/**
 * `hactl agent announce`: the long-running process on an Asterisk host that keeps the box in etcd
 * under a lease, so Kamailio's dispatcher agents take it into rotation, and revokes the lease on a
 * clean stop so the box leaves the rotation at once (a crash leaves it after the TTL).
 */

export interface AgentEtcdOptions {
  /** hactl.yaml when there is one; the agents also run on hosts that have none. */
  config?: HactlConfig
  /** Client URLs (`--endpoints`); override the config's. */
  endpoints?: string[]
}

export interface AnnounceAgentOptions extends AgentEtcdOptions {
  /** Registration prefix; default `etcd.prefixes.asterisk` (`/asterisk/`). */
  prefix?: string
  name: string
  ip: string
  port?: number
  weight?: number
  ttlSeconds?: number
  log: AgentLog
  /** Aborted on SIGTERM/SIGINT: the agent revokes its lease and returns. */
  signal: AbortSignal
  /** Called once the box is registered the first time (tests, readiness). */
  onRegistered?: (leaseId: string) => void
}

export interface AnnounceAgentResult {
  key: string
  /** Whether the lease was revoked on the way out (false: it expires after the TTL). */
  revoked: boolean
}

/**
 * The config the agents run with when there is no hactl.yaml: every default, and the endpoints
 * given on the command line.
 */
export function agentConfig(endpoints: string[]): HactlConfig {
  const etcd = etcdSchema.safeParse({endpoints})
  if (!etcd.success) {
    const bad = endpoints.find((e) => !/^https?:\/\/[^\s/]+(\/)?$/.test(e)) ?? endpoints.join(',')
    throw new ConfigError(`not an etcd client URL: ${JSON.stringify(bad)}`, {
      suggestions: ['pass --endpoints http://10.0.0.21:2379,http://10.0.0.22:2379'],
    })
  }
  return {
    cluster: 'agent',
    file: '(command line)',
    ssh: sshSchema.parse({}),
    etcd: etcd.data,
    asterisk: asteriskSchema.parse({}),
    kamailio: kamailioSchema.parse({}),
    concurrency: 50,
    nodes: [],
  }
}

/** Open the etcd client an agent uses: `--endpoints` when given, else the config's. */
export async function openAgentEtcd(opts: AgentEtcdOptions): Promise<EtcdHandle> {
  const {openEtcd} = await import('../etcd/client.js')
  const endpoints = opts.endpoints && opts.endpoints.length > 0 ? opts.endpoints : undefined
  if (!opts.config && !endpoints) {
    throw new ConfigError(
      'no etcd endpoints: pass --endpoints (or HACTL_ETCD_ENDPOINTS), or a hactl.yaml with --config',
    )
  }
  const config = opts.config ?? agentConfig(endpoints ?? [])
  if (config.etcd.via === 'ssh' && !endpoints) {
    // An agent runs next to etcd, not behind an SSH jump: it needs a direct client URL.
    throw new ConfigError(`${config.file}: etcd.via is ssh; an agent needs direct etcd endpoints`, {
      suggestions: ['pass --endpoints http://ETCD-HOST:2379 (or set HACTL_ETCD_ENDPOINTS)'],
    })
  }
  const direct: HactlConfig =
    config.etcd.via === 'ssh' ? {...config, etcd: {...config.etcd, via: 'direct'}} : config
  return openEtcd(direct, endpoints ? {endpoints} : {})
}

/** The agent's log line for one registration event. */
export function announceLogLine(
  e: AnnounceEvent,
  box: {name: string; ip: string; port: number},
): [event: string, detail: string] {
  const who = `${box.name} ${box.ip.includes(':') ? `[${box.ip}]` : box.ip}:${box.port}`
  switch (e.type) {
    case 'registered':
      return ['registered', `${who} lease ${e.leaseId} ttl ${e.ttlSeconds}s key ${e.key}`]
    case 'keepalive-failed':
      return ['keepalive-failed', `${who}: ${e.error}; retrying`]
    case 'keepalive-restored':
      return ['keepalive-ok', who]
    case 'lease-lost':
      return ['lease-lost', `${who}: ${e.error}; registering again`]
    case 'retry':
      return ['register-failed', `${who}: ${e.error}; retrying in ${e.inMs} ms`]
    case 'stopped':
      return e.revoked
        ? ['revoked', `${who}: lease revoked, left the rotation`]
        : ['stopped', `${who}: ${e.message}`]
    default:
      return ['event', (e as {message?: string}).message ?? '']
  }
}

/**
 * Register the box and keep it registered until `signal` aborts, then revoke the lease. Resolves
 * after the revoke (or its timeout); throws only for bad options or a config without endpoints.
 */
export async function runAnnounceAgent(opts: AnnounceAgentOptions): Promise<AnnounceAgentResult> {
  const {announce, DEFAULT_REGISTRATION_TTL, DEFAULT_SIP_PORT} = await import('../etcd/registrations.js')
  const prefix = opts.prefix ?? opts.config?.etcd.prefixes.asterisk ?? '/asterisk/'
  const port = opts.port ?? DEFAULT_SIP_PORT
  const ttl = opts.ttlSeconds ?? DEFAULT_REGISTRATION_TTL
  const box = {name: opts.name, ip: opts.ip, port}
  if (opts.signal.aborted) return {key: `${prefix}${opts.name}`, revoked: false}
  const handle = await openAgentEtcd(opts)
  let revoked = false
  try {
    opts.log(
      'starting',
      `announce ${opts.name} ${opts.ip}:${port}${opts.weight === undefined ? '' : ` weight ${opts.weight}`} ttl ${ttl}s under ${prefix} via ${handle.endpoints.join(',')}`,
    )
    let first = true
    const a = announce(handle, {
      prefix,
      name: opts.name,
      ip: opts.ip,
      port,
      ...(opts.weight === undefined ? {} : {weight: opts.weight}),
      ttlSeconds: ttl,
      onEvent: (e) => {
        if (e.type === 'stopped') revoked = e.revoked
        const [event, detail] = announceLogLine(e, box)
        opts.log(event, detail)
        if (e.type === 'registered' && first) {
          first = false
          opts.onRegistered?.(e.leaseId)
        }
      },
    })
    await new Promise<void>((resolve) => {
      if (opts.signal.aborted) resolve()
      else opts.signal.addEventListener('abort', () => resolve(), {once: true})
    })
    opts.log('stopping', `${reasonOf(opts.signal)}: revoking the lease of ${opts.name}`)
    await a.stop()
    return {key: a.key, revoked}
  } finally {
    await handle.close()
  }
}

function reasonOf(signal: AbortSignal): string {
  const r: unknown = signal.reason
  if (typeof r === 'string') return r
  if (r instanceof Error && r.name !== 'AbortError') return r.message
  return 'stop requested'
}
