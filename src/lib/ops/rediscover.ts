import {mkdir, readFile, rename, rm, writeFile} from 'node:fs/promises'
import path from 'node:path'
import type {HactlConfig, ResolvedNode} from '../config/load.js'
import {ExitCode, formatMs, HactlError, HostError, InterruptedError, UserError} from '../errors.js'
import type {BackupResult, KeysDump} from '../etcd/backup.js'
import type {EtcdHandle} from '../etcd/client.js'
import {readDiscoveryUrl, writeDiscoveryUrl} from '../etcd/discovery-config.js'
import {
  assertUnusedUrl,
  describeDiscoverySource,
  hactlStateDir,
  normalizeDiscoveryUrl,
  resolveDiscoverySource,
  type DiscoverySource,
  type DiscoveryUrlFacts,
  type UsedUrl,
} from '../etcd/discovery-service.js'
import type {EtcdClusterHealth} from '../etcd/health.js'
import {remoteWipeScript, wipePaths} from '../etcd/paths.js'
import type {SshPool} from '../ssh/pool.js'
import {sh, shellQuote} from '../ssh/quote.js'
import {buildPreflightScript, parsePreflightOutput, PREFLIGHT_RUN} from './rediscover-probe.js'

export {buildPreflightScript, parsePreflightOutput} from './rediscover-probe.js'

/**
 * `hactl cluster rediscover` (issue 6): rebuild the etcd cluster from scratch with a new discovery
 * token. Facts (one SSH round trip per etcd host, plus etcd health) → a pure, printable plan →
 * apply in phases (backup, token, stop, wipe, write, reboot, wait for hosts, wait for etcd,
 * restore), each on every host at once. Nothing on a host changes before the stop phase; from
 * there on, every failure says what state each host is in, and a re-run completes the job.
 */

// --- Types ---------------------------------------------------------------------------------

export interface RediscoverInputs {
  /** Cluster size registered with the token (default: the number of etcd hosts). */
  size?: number
  /** --discovery URL: use this URL instead of getting a token. */
  discovery?: string
  /** --discovery-service URL (default: etcd.discovery.service). */
  discoveryService?: string
  /** Put the dumped keys back after the new cluster is healthy (false: --no-restore). */
  restore: boolean
}

/** Everything checked before any host is contacted. */
export interface ValidatedInputs {
  nodes: ResolvedNode[]
  size: number
  source: DiscoverySource
  /** Absolute paths to remove on every host, validated to lie inside etcd.dataDir. */
  wipe: string[]
  restore: boolean
}

export interface HostFacts {
  name: string
  host: string
  bootId: string
  /** `systemctl is-active` of the etcd unit: active, inactive, failed, ... */
  service: string
  discoveryFileExists: boolean
  /** The discovery file as read (empty when missing). Not part of the plan: it may hold secrets. */
  discoveryText: string
  discoveryUrl: string | null
  /** Wipe paths that exist on the host now. */
  present: string[]
}

export interface EtcdFacts {
  /** The member list answered. */
  answering: boolean
  clusterId?: string
  healthy: number
  total: number
  leader?: {id: string; name: string}
  members: Array<{id: string; name: string; healthy: boolean; isLeader: boolean}>
  error?: string
}

/** A rediscovery that started changing hosts and did not finish (written at the point of no return). */
export interface PendingRediscovery {
  cluster: string
  startedAt: string
  newUrl: string
  keysPath?: string
  snapshotPath?: string
}

export interface RediscoverFacts {
  cluster: string
  hosts: HostFacts[]
  etcd: EtcdFacts
  used: UsedUrl[]
  usedFile: string
  pending?: PendingRediscovery
  /** For --discovery: what the URL's backend says (size, registered members), or why it could not be read. */
  given?: {facts?: DiscoveryUrlFacts; error?: string}
}

export interface PlanHost {
  name: string
  host: string
  bootId: string
  service: string
  oldUrl: string | null
  /** Paths the wipe removes (absolute). */
  remove: string[]
  /** Those of them that exist now. */
  present: string[]
}

export interface RediscoverPlan {
  cluster: string
  size: number
  etcdService: string
  dataDir: string
  discoveryFile: string
  discoveryFormat: 'cloud-config' | 'env'
  hosts: PlanHost[]
  oldDiscoveryUrls: string[]
  source: DiscoverySource
  sourceText: string
  etcd: EtcdFacts
  backup: {take: true; dir: string} | {take: false; reason: string}
  restore: {enabled: true; pending?: string} | {enabled: false; reason: string}
  lock: {take: boolean; note: string}
  warnings: string[]
  /** The plan as lines (also what the history records). */
  steps: string[]
}

export type RediscoverPhase =
  'preflight' | 'backup' | 'token' | 'prepare' | 'wait-ssh' | 'wait-etcd' | 'restore'

export const PHASE_TITLES: Record<RediscoverPhase, string> = {
  preflight: 'Preflight (read-only)',
  backup: 'Save the etcd data',
  token: 'New discovery token',
  prepare: 'Stop etcd, remove its data, write the new URL, reboot',
  'wait-ssh': 'Wait for the hosts (new boot id, etcd active)',
  'wait-etcd': 'Wait for a healthy etcd cluster',
  restore: 'Put the keys back',
}

/** Phases that have one row per host. */
export const HOST_PHASES: ReadonlySet<RediscoverPhase> = new Set(['preflight', 'prepare', 'wait-ssh'])

export type RediscoverEvent =
  | {type: 'phase'; phase: RediscoverPhase; state: 'start' | 'done' | 'failed' | 'skipped'; detail?: string}
  | {
      type: 'host'
      phase: RediscoverPhase
      host: string
      state: 'start' | 'update' | 'done' | 'failed' | 'skipped'
      detail?: string
    }
  | {type: 'members'; healthy: number; size: number; total: number}

export interface RediscoverOptions extends RediscoverInputs {
  dryRun?: boolean
  /** Asked after the plan is known (the CLI prompts); false aborts with nothing changed. */
  confirm?: (plan: RediscoverPlan) => Promise<boolean>
  /** Called with the plan before confirmation (the CLI prints it). */
  onPlan?: (plan: RediscoverPlan) => void | Promise<void>
  onEvent?: (event: RediscoverEvent) => void
  /** Ctrl-C. Before the stop phase: a clean abort; after: the current phase ends, then a report. */
  signal?: AbortSignal
  rebootTimeoutMs?: number
  healthTimeoutMs?: number
  tokenTimeoutMs?: number
  pollMs?: number
  /** hactl state directory (default $XDG_STATE_HOME/hactl). Backups, used URLs, pending record. */
  stateDir?: string
  /** For messages: the program name. */
  bin?: string
  /** For the history entry: the command line after the program name. */
  argv?: string[]
  /** Wait this long for another run's cluster lock (`--wait-lock`); default: refuse at once. */
  waitLockMs?: number
  /** Non-fatal news while planning (waiting for the lock). */
  onWarning?: (message: string) => void
  /** For tests. */
  fetchImpl?: typeof fetch
  /** The preflight's etcd pass, when it was started already (hactl's early start: `preflightEtcdFacts`). */
  preflightEtcd?: Promise<PreflightEtcd>
}

export interface RediscoverResult {
  status: 'dry-run' | 'declined' | 'done'
  plan: RediscoverPlan
  oldDiscoveryUrls: string[]
  newDiscoveryUrl?: string
  oldClusterId?: string
  newClusterId?: string
  members?: Array<{id: string; name: string; healthy: boolean; isLeader: boolean}>
  leader?: {id: string; name: string}
  hosts?: Array<{name: string; host: string; oldBootId: string; newBootId: string}>
  backup?: BackupResult
  backupSkipped?: string
  restore?: {restored: number; skippedExisting: number; from: string[]}
  restoreSkipped?: string
  lock: {held: boolean; note: string}
  warnings: string[]
  durationMs: number
  phases: Array<{phase: RediscoverPhase; durationMs: number}>
}

/** Where each host stands when a rediscovery stops half way. */
export type HostStage =
  | 'untouched'
  | 'unknown'
  | 'etcd stopped'
  | 'data wiped'
  | 'new URL written'
  | 'reboot issued'
  | 'rebooted'
  | 'etcd active'

export interface HostState {
  name: string
  stage: HostStage
  /** What failed on this host, if anything. */
  error?: string
}

/** Some etcd host cannot take part (unreachable, or its files are not as expected): nothing was changed. Exit 1. */
export class RediscoverPreflightError extends HactlError {
  readonly kind = 'preflight-failed'
  readonly hosts: Array<{name: string; problem: string}>

  constructor(message: string, hosts: Array<{name: string; problem: string}>, suggestions: string[]) {
    super(message, {suggestions})
    this.hosts = hosts
  }
}

/** The rediscovery stopped after it started changing hosts. Exit 1 (130 when interrupted). */
export class RediscoverIncompleteError extends HactlError {
  readonly kind = 'rediscover-incomplete'
  readonly hosts: HostState[]

  constructor(
    reason: string,
    hosts: HostState[],
    opts: {exitCode?: number; bin?: string; backup?: string; cause?: unknown},
  ) {
    const lines = hosts.map(
      (h) => `  ${h.name}: ${describeStage(h.stage)}${h.error ? `; FAILED: ${h.error}` : ''}`,
    )
    super(`rediscovery incomplete: ${reason}\n${lines.join('\n')}`, {
      exitCode: opts.exitCode ?? ExitCode.failure,
      cause: opts.cause,
      suggestions: [
        `run \`${opts.bin ?? 'hactl'} cluster rediscover\` again to complete it: it gets a new token and redoes every host (it works with etcd down${opts.backup ? `, and puts back the keys saved in ${opts.backup}` : ''})`,
      ],
    })
    this.hosts = hosts
  }
}

export function describeStage(stage: HostStage): string {
  switch (stage) {
    case 'untouched':
      return 'not changed (etcd as before)'
    case 'unknown':
      return 'unknown: the SSH session was cut before the host said how far it got (it may be rebooting)'
    case 'etcd stopped':
      return 'etcd stopped, data still there'
    case 'data wiped':
      return 'etcd stopped, data removed, old discovery URL still configured'
    case 'new URL written':
      return 'etcd stopped, data removed, new discovery URL written, not rebooted'
    case 'reboot issued':
      return 'reboot issued, not back yet'
    case 'rebooted':
      return 'rebooted (new boot id), etcd not active yet'
    case 'etcd active':
      return 'rebooted, etcd active'
  }
}

// --- Inputs ----------------------------------------------------------------------------------

/** Check flags and config before anything runs anywhere. Throws UserError/ConfigError (exit 2). */
export function validateRediscoverInputs(config: HactlConfig, inputs: RediscoverInputs): ValidatedInputs {
  const nodes = config.nodes.filter((n) => n.roles.includes('etcd'))
  if (nodes.length === 0) {
    throw new UserError(`${config.file}: no node has the etcd role: there is no etcd cluster to rediscover`, [
      'add the etcd role to the nodes that run etcd',
    ])
  }
  const size = inputs.size ?? nodes.length
  if (!Number.isInteger(size) || size < 1)
    throw new UserError(`--size must be a positive integer, got ${inputs.size}`)
  if (size > nodes.length) {
    throw new UserError(
      `--size ${size} is more than the ${nodes.length} etcd hosts in ${config.file}: the cluster would wait for members that never come`,
      [`use --size ${nodes.length} or less, or add the missing hosts with the etcd role`],
    )
  }
  for (const [flag, value] of [['--discovery', inputs.discovery], ['--discovery-service', inputs.discoveryService]] as const) {
    // A URL parser drops newlines and tabs silently; a URL with them is a pasting mistake at best.
    // eslint-disable-next-line no-control-regex
    if (value !== undefined && /[\u0000-\u001f\u007f\s]/.test(value))
      throw new UserError(`${flag} ${JSON.stringify(value)} is not a URL: it contains white space or control characters`, [
        `give the URL alone, e.g. ${flag} http://10.0.0.1:2379/v2/keys/discovery/TOKEN`,
      ])
  }
  const source = resolveDiscoverySource({
    ...(inputs.discovery === undefined ? {} : {discovery: inputs.discovery}),
    ...(inputs.discoveryService === undefined ? {} : {discoveryService: inputs.discoveryService}),
    configService: config.etcd.discovery.service,
  })
  const wipe = wipePaths(config.etcd.dataDir, config.etcd.wipe)
  return {nodes, size, source, wipe, restore: inputs.restore}
}

// --- Facts -----------------------------------------------------------------------------------

/** The paths section: which wipe paths exist, and why one cannot be wiped (it resolves outside the data dir). */
export function parsePathsSection(output: string): {present: string[]; problems: string[]} {
  const present: string[] = []
  const problems: string[] = []
  let data = ''
  for (const line of output.split('\n')) {
    const f = line.split('\t')
    if (f[0] === 'data') data = f[1] ?? ''
    else if ((f[0] === 'present' || f[0] === 'absent') && f[1]) {
      if (f[0] === 'present') present.push(f[1])
      const resolved = f[2] ?? ''
      if (!data || data === '/' || !resolved.startsWith(`${data}/`))
        problems.push(
          `${f[1]} resolves to ${resolved || '?'}, outside the data dir ${data || '?'}: refusing to wipe it`,
        )
    }
  }
  return {present, problems}
}

/** Host facts from the preflight output; a string is the reason the host cannot take part. */
export function hostFactsFrom(config: HactlConfig, node: ResolvedNode, stdout: string): HostFacts | string {
  const s = parsePreflightOutput(stdout)
  const boot = s.boot_id
  if (!boot || boot.code !== 0 || !/^[0-9a-f-]{16,}$/i.test(boot.output.trim()))
    return `cannot read the boot id: ${firstLine(boot?.output ?? 'no answer')}`
  const disc = s.discovery
  if (!disc) return 'the discovery file check did not finish'
  const exists = disc.code !== 3
  if (exists && disc.code !== 0) return `cannot read ${config.etcd.discovery.file}: ${firstLine(disc.output)}`
  if (!exists && config.etcd.discovery.format === 'cloud-config') {
    return `${config.etcd.discovery.file} does not exist: this host has no cloud-config to put the discovery URL in`
  }
  const text = exists ? Buffer.from(disc.output.replace(/\s+/g, ''), 'base64').toString('utf8') : ''
  const fmt = {format: config.etcd.discovery.format, key: config.etcd.discovery.key}
  let url: string | null
  try {
    url = readDiscoveryUrl(text, fmt) ?? null
    // Rewrite it once here, so a file that cannot be rewritten stops the run before any host changes.
    writeDiscoveryUrl(text, 'http://127.0.0.1:1/v2/keys/discovery/preflight', fmt)
  } catch (error) {
    return `cannot edit ${config.etcd.discovery.file}: ${firstLine((error as Error).message)}`
  }
  const paths = s.paths
  if (!paths || paths.code !== 0)
    return `cannot check the data paths: ${firstLine(paths?.output ?? 'no answer')}`
  const checked = parsePathsSection(paths.output)
  if (checked.problems.length > 0) return checked.problems.join('; ')
  const svc = s.service
  return {
    name: node.name,
    host: node.host,
    bootId: boot.output.trim(),
    service: svc ? lastLine(svc.output) || (svc.code === 0 ? 'active' : 'inactive') : 'unknown',
    discoveryFileExists: exists,
    discoveryText: text,
    discoveryUrl: url,
    present: checked.present,
  }
}

interface PreflightResult {
  facts: RediscoverFacts
  /** Left open for the lock and the backup when etcd answers. */
  handle?: EtcdHandle
}

async function gatherFacts(
  config: HactlConfig,
  pool: SshPool,
  v: ValidatedInputs,
  ctx: Ctx,
): Promise<PreflightResult> {
  ctx.emit({type: 'phase', phase: 'preflight', state: 'start'})
  const script = buildPreflightScript(config, v.wipe)
  const hostsP = Promise.all(
    v.nodes.map(async (node) => {
      ctx.emit({type: 'host', phase: 'preflight', host: node.name, state: 'start'})
      try {
        const r = await pool.run(node, script, PREFLIGHT_RUN)
        const f = hostFactsFrom(config, node, r.stdout)
        if (typeof f === 'string') {
          ctx.emit({type: 'host', phase: 'preflight', host: node.name, state: 'failed', detail: f})
          return {node, problem: f}
        }
        ctx.emit({
          type: 'host',
          phase: 'preflight',
          host: node.name,
          state: 'done',
          detail: `boot ${f.bootId.slice(0, 8)}, ${config.etcd.service} ${f.service}`,
        })
        return {node, facts: f}
      } catch (error) {
        const msg =
          error instanceof HostError ? stripHost(error.message, node.name) : (error as Error).message
        ctx.emit({type: 'host', phase: 'preflight', host: node.name, state: 'failed', detail: msg})
        return {node, problem: msg, unreachable: error instanceof HostError}
      }
    }),
  )
  const etcdP = ctx.preflightEtcd ?? preflightEtcdFacts(config, pool, v.nodes)
  const stateDir = ctx.stateDir
  const usedFile = path.join(stateDir, 'discovery-used.json')
  const {readUsedUrls} = await import('../etcd/discovery-service.js')
  let rest: [
    Awaited<typeof hostsP>,
    UsedUrl[],
    PendingRediscovery | undefined,
    {facts?: DiscoveryUrlFacts; error?: string} | undefined,
  ]
  try {
    rest = await Promise.all([
      hostsP,
      readUsedUrls(config.cluster, usedFile),
      readPending(stateDir, config.cluster),
      v.source.kind === 'given' ? inspectGiven(v.source.url, ctx) : Promise.resolve(undefined),
    ])
  } catch (error) {
    await (await etcdP).handle?.close().catch(() => undefined)
    throw error
  }
  const [hosts, used, pending, given] = rest
  const etcd = await etcdP
  const problems = hosts.filter((h) => h.problem !== undefined)
  if (problems.length > 0) {
    await etcd.handle?.close().catch(() => undefined)
    ctx.emit({type: 'phase', phase: 'preflight', state: 'failed'})
    const names = problems.map((p) => p.node.name)
    const unreachable = problems.filter((p) => p.unreachable).map((p) => p.node.name)
    throw new RediscoverPreflightError(
      `cannot rediscover: ${problems.length} of ${v.nodes.length} etcd hosts ${problems.length === 1 ? 'is' : 'are'} not ready (${names.join(', ')}); nothing was changed\n${problems
        .map((p) => `  ${p.node.name}: ${p.problem}`)
        .join('\n')}`,
      problems.map((p) => ({name: p.node.name, problem: p.problem!})),
      [
        ...(unreachable.length > 0
          ? [
              `every etcd host must answer over SSH: bring ${unreachable.join(', ')} back, check with \`${ctx.bin} status\`, then run this again`,
            ]
          : []),
        ...(problems.length > unreachable.length
          ? [`fix the hosts above (etcd.discovery in ${config.file} says which file holds the discovery URL)`]
          : []),
      ],
    )
  }
  ctx.emit({
    type: 'phase',
    phase: 'preflight',
    state: 'done',
    detail: etcd.facts.answering
      ? `etcd answers (${etcd.facts.healthy}/${etcd.facts.total} healthy)`
      : 'etcd does not answer',
  })
  return {
    facts: {
      cluster: config.cluster,
      hosts: hosts.map((h) => h.facts!),
      etcd: etcd.facts,
      used,
      usedFile,
      ...(pending ? {pending} : {}),
      ...(given ? {given} : {}),
    },
    ...(etcd.handle ? {handle: etcd.handle} : {}),
  }
}

/** The etcd half of the preflight; the handle is left open for the lock and the backup. */
export interface PreflightEtcd {
  facts: EtcdFacts
  handle?: EtcdHandle
}

/** The preflight's etcd pass (read-only): health of the members. Never rejects. */
export async function preflightEtcdFacts(
  config: HactlConfig,
  pool: SshPool,
  nodes: ResolvedNode[],
): Promise<PreflightEtcd> {
  let handle: EtcdHandle | undefined
  try {
    handle = await openEtcdFor(config, pool, nodes)
    const {etcdClusterHealth} = await import('../etcd/health.js')
    const health = await etcdClusterHealth(handle)
    return {facts: summarizeHealth(health), handle}
  } catch (error) {
    await handle?.close().catch(() => undefined)
    return {
      facts: {
        answering: false,
        healthy: 0,
        total: 0,
        members: [],
        error: firstLine((error as Error).message),
      },
    }
  }
}

export function summarizeHealth(health: EtcdClusterHealth): EtcdFacts {
  const leader = health.members.find((m) => m.isLeader)
  return {
    answering: true,
    clusterId: health.clusterId,
    healthy: health.healthyCount,
    total: health.total,
    ...(leader ? {leader: {id: leader.id, name: leader.name}} : {}),
    members: health.members.map((m) => ({id: m.id, name: m.name, healthy: m.healthy, isLeader: m.isLeader})),
  }
}

async function openEtcdFor(config: HactlConfig, pool: SshPool, nodes: ResolvedNode[]): Promise<EtcdHandle> {
  const {openEtcd} = await import('../etcd/client.js')
  const via = nodes[0]
  return openEtcd(
    config,
    config.etcd.via === 'ssh' && via ? {tunnel: (h, p) => pool.forwardOut(via, h, p)} : {},
  )
}

async function inspectGiven(url: string, ctx: Ctx): Promise<{facts?: DiscoveryUrlFacts; error?: string}> {
  const {inspectDiscoveryUrl} = await import('../etcd/discovery-service.js')
  try {
    return {
      facts: await inspectDiscoveryUrl(url, {
        timeoutMs: ctx.tokenTimeoutMs,
        ...(ctx.fetchImpl ? {fetchImpl: ctx.fetchImpl} : {}),
      }),
    }
  } catch (error) {
    return {error: firstLine((error as Error).message)}
  }
}

// --- Plan ------------------------------------------------------------------------------------

export interface PlanSettings {
  etcdService: string
  dataDir: string
  discoveryFile: string
  discoveryFormat: 'cloud-config' | 'env'
  backupDir: string
  rebootTimeoutMs: number
  healthTimeoutMs: number
}

export function planSettings(
  config: HactlConfig,
  opts: {stateDir: string; rebootTimeoutMs: number; healthTimeoutMs: number},
): PlanSettings {
  return {
    etcdService: config.etcd.service,
    dataDir: config.etcd.dataDir,
    discoveryFile: config.etcd.discovery.file,
    discoveryFormat: config.etcd.discovery.format,
    backupDir: path.join(opts.stateDir, 'backups'),
    rebootTimeoutMs: opts.rebootTimeoutMs,
    healthTimeoutMs: opts.healthTimeoutMs,
  }
}

/**
 * The plan, from facts alone (pure). Refuses (UserError) a --discovery URL this cluster has used,
 * or one whose backend shows registered members or another size.
 */
export function planRediscover(facts: RediscoverFacts, v: ValidatedInputs, s: PlanSettings): RediscoverPlan {
  const warnings: string[] = []
  const configured = facts.hosts.map((h) => ({host: h.name, url: h.discoveryUrl}))
  if (v.source.kind === 'given') {
    assertUnusedUrl(v.source.url, {
      cluster: facts.cluster,
      used: facts.used,
      configured,
      file: facts.usedFile,
    })
    const g = facts.given
    if (g?.facts && g.facts.registered > 0) {
      throw new UserError(
        `--discovery ${v.source.url} already has ${g.facts.registered} registered member(s): a token is never reused`,
        ['omit --discovery to get a new token from the discovery service'],
      )
    }
    if (g?.facts?.size !== undefined && g.facts.size !== v.size) {
      throw new UserError(`--discovery ${v.source.url} is for a cluster of ${g.facts.size}, not ${v.size}`, [
        `use --size ${g.facts.size}, or make a token for ${v.size}`,
      ])
    }
    if (g?.error)
      warnings.push(`could not check the given discovery URL from here (${g.error}); the hosts must reach it`)
  }
  if (v.size < facts.hosts.length) {
    warnings.push(
      `--size ${v.size} is less than the ${facts.hosts.length} etcd hosts: the extra hosts' etcd will not be members (a proxy at best)`,
    )
  }
  const oldDiscoveryUrls = [
    ...new Set(
      facts.hosts
        .map((h) => h.discoveryUrl)
        .filter((u): u is string => u !== null)
        .map(normalizeDiscoveryUrl),
    ),
  ]
  if (oldDiscoveryUrls.length > 1)
    warnings.push(
      `the hosts disagree on the discovery URL (${oldDiscoveryUrls.length} different ones): a rediscovery was probably interrupted`,
    )
  if (facts.pending)
    warnings.push(
      `an earlier rediscovery started ${facts.pending.startedAt} did not finish; this run completes it`,
    )

  const backup: RediscoverPlan['backup'] = facts.etcd.answering
    ? {take: true, dir: s.backupDir}
    : {
        take: false,
        reason: `etcd does not answer${facts.etcd.error ? ` (${facts.etcd.error})` : ''}: no backup possible`,
      }
  let restore: RediscoverPlan['restore']
  if (!v.restore) restore = {enabled: false, reason: '--no-restore'}
  else if (facts.pending?.keysPath) restore = {enabled: true, pending: facts.pending.keysPath}
  else if (!backup.take) restore = {enabled: false, reason: 'nothing to restore: no backup'}
  else restore = {enabled: true}
  const lock = facts.etcd.answering
    ? {take: true, note: 'the cluster lock is held until etcd is stopped (it is wiped with the data)'}
    : {
        take: false,
        note: 'etcd does not answer, so this runs WITHOUT the cluster lock: make sure nobody else changes this cluster now',
      }

  const names = facts.hosts.map((h) => h.name).join(', ')
  const steps: string[] = []
  steps.push(
    backup.take
      ? `save an etcd snapshot and the keys without a lease to ${s.backupDir}/${facts.cluster}-<time>.{db,keys.json}`
      : `no backup: ${backup.reason}`,
  )
  steps.push(
    v.source.kind === 'given'
      ? `use the given discovery URL ${v.source.url} (size ${v.size})`
      : `get a new discovery token for ${v.size} members from ${describeDiscoverySource(v.source)}`,
  )
  steps.push(
    `on ${names} at once, one SSH session each: stop ${s.etcdService} (killed: its data is removed next), remove ${v.wipe.join(' ')}, write the new URL into ${s.discoveryFile} (${s.discoveryFormat}), reboot`,
  )
  steps.push(
    `wait for every host to come back with a new boot id and ${s.etcdService} active (up to ${formatMs(s.rebootTimeoutMs)}), then for ${v.size} healthy members with a leader (up to ${formatMs(s.healthTimeoutMs)})`,
  )
  steps.push(
    restore.enabled
      ? `put back the saved keys that the new cluster does not have${restore.pending ? ` (and those saved by the unfinished run, ${restore.pending})` : ''}`
      : `do not put keys back (${restore.reason})`,
  )

  return {
    cluster: facts.cluster,
    size: v.size,
    etcdService: s.etcdService,
    dataDir: s.dataDir,
    discoveryFile: s.discoveryFile,
    discoveryFormat: s.discoveryFormat,
    hosts: facts.hosts.map((h) => ({
      name: h.name,
      host: h.host,
      bootId: h.bootId,
      service: h.service,
      oldUrl: h.discoveryUrl,
      remove: v.wipe,
      present: h.present,
    })),
    oldDiscoveryUrls,
    source: v.source,
    sourceText: describeDiscoverySource(v.source),
    etcd: facts.etcd,
    backup,
    restore,
    lock,
    warnings,
    steps,
  }
}

// --- Remote commands -------------------------------------------------------------------------

/**
 * Stop etcd at once. Its data is removed next, so a graceful stop only waits (~7 s) for a
 * leadership transfer that cannot happen when every member stops together. The stop is queued
 * first (`--no-block`: the unit is on its way down, so Restart= does not bring it back), then the
 * process is killed: `systemctl kill -s KILL` (the whole cgroup), or, where systemctl has no
 * `kill` (the lab), SIGKILL to the unit's main process group. Then wait (shell builtins only, no
 * more systemctl round trips) until the main process is gone.
 */
export function stopEtcdCommand(service: string): string {
  return [
    sh`pid=$(systemctl show -p MainPID ${service} 2>/dev/null | sed -n 's/^MainPID=//p')`,
    sh`systemctl stop --no-block ${service} || exit 1`,
    sh`systemctl kill -s KILL ${service} >/dev/null 2>&1 || { case $pid in ''|0) ;; *) kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null ;; esac; }`,
    `case $pid in ''|0) ;; *) n=0; while kill -0 "$pid" 2>/dev/null; do n=$((n+1)); if [ "$n" -ge 1000 ]; then echo "etcd (pid $pid) still runs 10s after SIGKILL" >&2; exit 1; fi; sleep 0.01; done ;; esac`,
  ].join('\n')
}

/**
 * Replace the discovery file atomically with the content on stdin: a temporary file beside it,
 * same mode and owner, then `mv`. Refuses (exit 3) when the file changed since the preflight read
 * it, so a concurrent edit is never overwritten.
 */
export function writeDiscoveryCommand(file: string, expected: {exists: boolean; sha256: string}): string {
  const dir = path.posix.dirname(file)
  const check = expected.exists
    ? sh`[ -e ${file} ] && [ "$(sha256sum < ${file} | cut -c1-64)" = ${expected.sha256} ] || { echo ${`${file} changed since the preflight read it`} >&2; exit 3; }`
    : sh`[ ! -e ${file} ] || { echo ${`${file} appeared since the preflight`} >&2; exit 3; }`
  return [
    'set -e',
    check,
    sh`mkdir -p ${dir}`,
    sh`tmp=$(mktemp ${`${dir}/.hactl-discovery.XXXXXX`})`,
    `trap 'rm -f "$tmp"' EXIT`,
    'cat > "$tmp"',
    expected.exists
      ? sh`chmod --reference=${file} "$tmp" 2>/dev/null || true; chown --reference=${file} "$tmp" 2>/dev/null || true`
      : 'chmod 644 "$tmp"',
    sh`mv -f "$tmp" ${file}`,
    'trap - EXIT',
  ].join('\n')
}

const STEP = '@@hactl-step:'

/**
 * Stop, wipe, write and reboot in one SSH session (a session is a round trip and, on some hosts, a
 * login shell's start-up): each step runs only if the one before succeeded, and a marker line
 * after each says how far the host got. Only the write reads stdin (the new file). `reboot`
 * returns before the system goes down (systemd queues the job), so the markers arrive; if the
 * session is cut anyway, the boot id and the file read after the reboot tell what happened.
 */
export function prepareHostCommand(
  config: HactlConfig,
  wipe: string[],
  expected: {exists: boolean; sha256: string},
): string {
  return [
    `( ${stopEtcdCommand(config.etcd.service)}
) </dev/null || exit 10`,
    `echo ${STEP}stopped`,
    `( ${remoteWipeScript(wipe, config.etcd.dataDir)}
) </dev/null || exit 11`,
    `echo ${STEP}wiped`,
    `( ${writeDiscoveryCommand(config.etcd.discovery.file, expected)}
) || exit 12`,
    `echo ${STEP}written`,
    `${REBOOT_COMMAND} </dev/null || exit 13`,
    `echo ${STEP}rebooting`,
  ].join('\n')
}

/** How far a prepare script got, and what it said on the way (the wipe's removed/absent lines). */
export function parsePrepareOutput(stdout: string): {stage: HostStage; lines: string[]} {
  let stage: HostStage = 'untouched'
  const lines: string[] = []
  for (const line of stdout.split('\n')) {
    if (line === `${STEP}stopped`) stage = 'etcd stopped'
    else if (line === `${STEP}wiped`) stage = 'data wiped'
    else if (line === `${STEP}written`) stage = 'new URL written'
    else if (line === `${STEP}rebooting`) stage = 'reboot issued'
    else if (line.trim() !== '') lines.push(line.trim())
  }
  return {stage, lines}
}

const PREPARE_STEP_FAILED: Record<number, string> = {
  10: 'stopping etcd',
  11: 'removing the data paths',
  12: 'writing the discovery file',
  13: 'reboot',
}

export const REBOOT_COMMAND = 'reboot'

/**
 * What a prepare session's result means. The session may be cut by the reboot: once the URL was
 * written, a cut session (no exit status) means the reboot was issued; before any marker, nobody
 * knows how far the host got.
 */
export function interpretPrepare(r: {stdout: string; stderr: string; code: number | null; signal?: string}): {
  stage: HostStage
  removed: string[]
  error?: string
} {
  const got = parsePrepareOutput(r.stdout)
  const removed = got.lines.filter((l) => l.startsWith('removed ')).map((l) => l.slice(8))
  if (r.code === 0 && got.stage === 'reboot issued') return {stage: got.stage, removed}
  if (r.code === null && (got.stage === 'new URL written' || got.stage === 'reboot issued'))
    return {stage: 'reboot issued', removed}
  if (r.code === null && got.stage === 'untouched')
    return {stage: 'unknown', removed, error: 'the SSH session was cut before the host reported anything'}
  const step =
    PREPARE_STEP_FAILED[r.code ?? -1] ??
    `the script (${r.code === null ? `session cut${r.signal ? `, ${r.signal}` : ''}` : `exit ${r.code}`})`
  const why = r.stderr.trim() ? `: ${lastLine(r.stderr)}` : ''
  return {stage: got.stage, removed, error: `${step} failed${why}`}
}

/**
 * Boot id, then (on a new boot only) wait on the host until the etcd unit is active, for up to
 * `maxMs`: one session instead of a poll per round trip. Prints the boot id, the last state and
 * (with `discoveryFile`) that file in base64.
 */
export function waitProbeCommand(service: string, oldBootId = '', maxMs = 0, discoveryFile?: string): string {
  const rounds = Math.max(0, Math.floor(maxMs / 100))
  return [
    'b=$(cat /proc/sys/kernel/random/boot_id)',
    'echo "$b"',
    sh`[ "$b" = ${oldBootId} ] && exit 0`,
    'n=0',
    sh`while :; do s=$(systemctl is-active ${service} 2>/dev/null); case $s in active) break ;; esac; n=$((n+1)); [ "$n" -gt ${rounds} ] && break; sleep 0.1; done`,
    'echo "${s:-unknown}"',
    // The discovery file as the new boot sees it: proof the new URL was written.
    ...(discoveryFile ? [sh`base64 < ${discoveryFile} 2>/dev/null || true`] : []),
  ].join('\n')
}

// --- Apply -----------------------------------------------------------------------------------

interface Ctx {
  emit: (e: RediscoverEvent) => void
  preflightEtcd?: Promise<PreflightEtcd>
  signal?: AbortSignal
  pollMs: number
  stateDir: string
  bin: string
  tokenTimeoutMs: number
  fetchImpl?: typeof fetch
}

/**
 * The whole command: validate, preflight, plan, (dry run | confirm), apply. Returns the result or
 * throws a HactlError (RediscoverIncompleteError once hosts were changed).
 */
export async function rediscoverCluster(
  config: HactlConfig,
  pool: SshPool,
  opts: RediscoverOptions,
): Promise<RediscoverResult> {
  const started = Date.now()
  const stateDir = opts.stateDir ?? hactlStateDir()
  const ctx: Ctx = {
    emit: opts.onEvent ?? (() => {}),
    ...(opts.signal ? {signal: opts.signal} : {}),
    pollMs: opts.pollMs ?? 100,
    stateDir,
    bin: opts.bin ?? 'hactl',
    tokenTimeoutMs: opts.tokenTimeoutMs ?? 10_000,
    ...(opts.fetchImpl ? {fetchImpl: opts.fetchImpl} : {}),
    ...(opts.preflightEtcd ? {preflightEtcd: opts.preflightEtcd} : {}),
  }
  const rebootTimeoutMs = opts.rebootTimeoutMs ?? 10 * 60_000
  const healthTimeoutMs = opts.healthTimeoutMs ?? 5 * 60_000
  let v: ValidatedInputs
  try {
    v = validateRediscoverInputs(config, opts)
  } catch (error) {
    // An etcd pass started for this run keeps its client open for the lock: close it.
    void opts.preflightEtcd?.then((r) => r.handle?.close().catch(() => undefined))
    throw error
  }
  const settings = planSettings(config, {stateDir, rebootTimeoutMs, healthTimeoutMs})

  const cleanAbort = () =>
    new InterruptedError('interrupted before anything was changed; nothing was changed')
  const pre = await untilAborted(gatherFacts(config, pool, v, ctx), opts.signal, cleanAbort, async (r) => {
    await r.handle?.close().catch(() => undefined)
  })
  let handle = pre.handle
  let lock: {release(): Promise<void>} | undefined
  const lockNote = {held: false, note: ''}
  try {
    const plan = planRediscover(pre.facts, v, settings)
    lockNote.note = plan.lock.note
    // The lock first, so the plan the operator confirms is not raced by another hactl run.
    if (plan.lock.take && handle && !opts.dryRun) {
      const {commandLine, takeClusterLock} = await import('./node-shared.js')
      try {
        lock = await takeClusterLock(
          config,
          handle,
          commandLine(ctx.bin, opts.argv ?? ['cluster', 'rediscover']),
          opts.onWarning,
          opts.waitLockMs ?? 0,
        )
        lockNote.held = true
      } catch (error) {
        const {ClusterLockedError} = await import('../etcd/lock.js')
        if (error instanceof ClusterLockedError) throw error
        lockNote.note = `could not take the cluster lock (${firstLine((error as Error).message)}): running without it`
        plan.lock = {take: false, note: lockNote.note}
        plan.warnings.push(lockNote.note)
      }
    }
    await opts.onPlan?.(plan)
    const base = {
      plan,
      oldDiscoveryUrls: plan.oldDiscoveryUrls,
      ...(pre.facts.etcd.clusterId ? {oldClusterId: pre.facts.etcd.clusterId} : {}),
      lock: lockNote,
      warnings: plan.warnings,
      phases: [],
    }
    if (opts.dryRun) return {status: 'dry-run', ...base, durationMs: Date.now() - started}
    if (opts.confirm) {
      const ok = await untilAborted(opts.confirm(plan), opts.signal, cleanAbort)
      if (!ok) return {status: 'declined', ...base, durationMs: Date.now() - started}
    }
    if (opts.signal?.aborted) throw cleanAbort()
    const applied = await recordFailure(
      plan,
      opts.argv ?? ['cluster', 'rediscover'],
      started,
      stateDir,
      applyPlan(config, pool, plan, pre.facts, v, {
        ctx,
        handle,
        releaseLock: async () => {
          const l = lock
          lock = undefined
          await l?.release().catch(() => undefined)
        },
        closeHandle: async () => {
          const h = handle
          handle = undefined
          await h?.close().catch(() => undefined)
        },
        rebootTimeoutMs,
        healthTimeoutMs,
        argv: opts.argv ?? ['cluster', 'rediscover'],
        started,
      }),
    )
    return {...base, ...applied, status: 'done', durationMs: Date.now() - started}
  } finally {
    await lock?.release().catch(() => undefined)
    await handle?.close().catch(() => undefined)
  }
}

/** A failed apply still gets its history entry (local only: etcd may be half way). */
async function recordFailure<T>(
  plan: RediscoverPlan,
  argv: string[],
  started: number,
  stateDir: string,
  p: Promise<T>,
): Promise<T> {
  try {
    return await p
  } catch (error) {
    const exitCode = error instanceof HactlError ? error.exitCode : ExitCode.failure
    const results =
      error instanceof RediscoverIncompleteError
        ? error.hosts.map((h) => ({
            node: h.name,
            ok: false,
            detail: `${describeStage(h.stage)}${h.error ? `; ${h.error}` : ''}`,
          }))
        : plan.hosts.map((h) => ({
            node: h.name,
            ok: false,
            detail: `not changed: ${firstLine((error as Error).message)}`,
          }))
    const {appendHistory, finishHistoryEntry, startHistoryEntry} = await import('../history.js')
    await appendHistory(
      finishHistoryEntry(
        startHistoryEntry({cluster: plan.cluster, argv, plan: plan.steps, at: new Date(started)}),
        {exitCode, results},
      ),
      {stateDir},
    )
    throw error
  }
}

interface ApplyEnv {
  ctx: Ctx
  handle: EtcdHandle | undefined
  releaseLock: () => Promise<void>
  closeHandle: () => Promise<void>
  rebootTimeoutMs: number
  healthTimeoutMs: number
  argv: string[]
  started: number
}

type Applied = Pick<
  RediscoverResult,
  | 'newDiscoveryUrl'
  | 'newClusterId'
  | 'members'
  | 'leader'
  | 'hosts'
  | 'backup'
  | 'backupSkipped'
  | 'restore'
  | 'restoreSkipped'
  | 'phases'
  | 'warnings'
>

async function applyPlan(
  config: HactlConfig,
  pool: SshPool,
  plan: RediscoverPlan,
  facts: RediscoverFacts,
  v: ValidatedInputs,
  env: ApplyEnv,
): Promise<Applied> {
  const {ctx} = env
  const phases: Applied['phases'] = []
  const warnings = [...plan.warnings]
  const timed = async <T>(phase: RediscoverPhase, fn: () => Promise<T>): Promise<T> => {
    const t0 = Date.now()
    try {
      return await fn()
    } finally {
      phases.push({phase, durationMs: Date.now() - t0})
    }
  }
  const cleanAbort = () =>
    new InterruptedError('interrupted before any host was changed; nothing was changed on the hosts')

  // 1. Backup and new token, at the same time (both are local or remote-service only: an
  //    interrupt or failure here changes nothing on the hosts).
  let backupSkipped: string | undefined
  const backupP: Promise<BackupResult | undefined> =
    plan.backup.take && env.handle
      ? timed('backup', async () => {
          const h = env.handle!
          ctx.emit({type: 'phase', phase: 'backup', state: 'start'})
          try {
            const {backupEtcd} = await import('../etcd/backup.js')
            const r = await backupEtcd(h, {
              cluster: plan.cluster,
              dir: path.join(ctx.stateDir, 'backups'),
              ...(ctx.signal ? {signal: ctx.signal} : {}),
            })
            ctx.emit({
              type: 'phase',
              phase: 'backup',
              state: 'done',
              detail: `${r.keys} keys, snapshot ${r.snapshotBytes} bytes: ${r.snapshotPath}`,
            })
            return r
          } catch (error) {
            if (ctx.signal?.aborted) throw cleanAbort()
            if (v.restore) {
              ctx.emit({
                type: 'phase',
                phase: 'backup',
                state: 'failed',
                detail: firstLine((error as Error).message),
              })
              throw new HactlError(
                `could not save the etcd data: ${firstLine((error as Error).message)}; nothing was changed`,
                {
                  suggestions: [`to rediscover anyway and lose the keyspace, run again with --no-restore`],
                  cause: error,
                },
              )
            }
            backupSkipped = `the backup failed (${firstLine((error as Error).message)}); going on because of --no-restore`
            warnings.push(backupSkipped)
            ctx.emit({type: 'phase', phase: 'backup', state: 'failed', detail: backupSkipped})
            return undefined
          }
        })
      : Promise.resolve(undefined)
  if (!(plan.backup.take && env.handle)) {
    backupSkipped = plan.backup.take ? 'etcd stopped answering' : plan.backup.reason
    ctx.emit({type: 'phase', phase: 'backup', state: 'skipped', detail: backupSkipped})
  }

  // Remember the old URLs and the new one before any host sees it.
  const {
    newDiscoveryUrl,
    recordUsedUrls,
    assertUnusedUrl: refuseUsed,
  } = await import('../etcd/discovery-service.js')
  const tokenP = timed('token', async () => {
    await recordUsedUrls(plan.cluster, plan.oldDiscoveryUrls, 'configured', facts.usedFile)
    ctx.emit({type: 'phase', phase: 'token', state: 'start'})
    try {
      const url = await newDiscoveryUrl(plan.source, {
        size: plan.size,
        timeoutMs: ctx.tokenTimeoutMs,
        ...(ctx.signal ? {signal: ctx.signal} : {}),
        ...(ctx.fetchImpl ? {fetchImpl: ctx.fetchImpl} : {}),
      })
      if (plan.source.kind !== 'given') {
        // A service that hands out a token this cluster already used would make members fail to join.
        refuseUsed(url, {
          cluster: plan.cluster,
          used: facts.used,
          configured: facts.hosts.map((h) => ({host: h.name, url: h.discoveryUrl})),
        })
      }
      await recordUsedUrls(plan.cluster, [url], 'new', facts.usedFile)
      ctx.emit({type: 'phase', phase: 'token', state: 'done', detail: url})
      return url
    } catch (error) {
      ctx.emit({type: 'phase', phase: 'token', state: 'failed', detail: firstLine((error as Error).message)})
      if (ctx.signal?.aborted) throw cleanAbort()
      if (error instanceof HactlError)
        throw new HactlError(`${error.message}; nothing was changed on the hosts`, {
          exitCode: error.exitCode,
          suggestions: error.suggestions,
          cause: error,
        })
      throw error
    }
  })
  const [backupR, tokenR] = await Promise.allSettled([backupP, tokenP])
  if (backupR.status === 'rejected') throw backupR.reason
  if (tokenR.status === 'rejected') throw tokenR.reason
  const backup = backupR.value
  const newUrl = tokenR.value
  if (ctx.signal?.aborted) throw cleanAbort()

  // The point of no return. The lock dies with etcd anyway; give it back cleanly first.
  await env.releaseLock()
  await env.closeHandle()
  const pending: PendingRediscovery = {
    cluster: plan.cluster,
    startedAt: new Date().toISOString(),
    newUrl,
    ...(backup
      ? {keysPath: backup.keysPath, snapshotPath: backup.snapshotPath}
      : facts.pending?.keysPath
        ? {
            keysPath: facts.pending.keysPath,
            ...(facts.pending.snapshotPath ? {snapshotPath: facts.pending.snapshotPath} : {}),
          }
        : {}),
  }
  await writePending(ctx.stateDir, pending)

  const states = new Map<string, HostState>(
    facts.hosts.map((h) => [h.name, {name: h.name, stage: 'untouched'}]),
  )
  const nodes = new Map(v.nodes.map((n) => [n.name, n]))
  const backupHint = pending.keysPath
  const incomplete = (reason: string, cause?: unknown, exitCode?: number) =>
    new RediscoverIncompleteError(reason, [...states.values()], {
      bin: ctx.bin,
      ...(backupHint ? {backup: backupHint} : {}),
      ...(exitCode === undefined ? {} : {exitCode}),
      cause,
    })
  const interrupted = (phase: RediscoverPhase) =>
    incomplete(`interrupted during "${PHASE_TITLES[phase]}"`, undefined, ExitCode.interrupted)

  const onEveryHost = async (
    phase: RediscoverPhase,
    fn: (h: HostFacts, node: ResolvedNode) => Promise<{stage?: HostStage; detail?: string}>,
  ) =>
    timed(phase, async () => {
      ctx.emit({type: 'phase', phase, state: 'start'})
      const results = await Promise.allSettled(
        facts.hosts.map(async (h) => {
          const node = nodes.get(h.name)!
          ctx.emit({type: 'host', phase, host: h.name, state: 'start'})
          try {
            const r = await fn(h, node)
            if (r.stage) states.get(h.name)!.stage = r.stage
            ctx.emit({
              type: 'host',
              phase,
              host: h.name,
              state: 'done',
              ...(r.detail ? {detail: r.detail} : {}),
            })
          } catch (error) {
            const msg =
              error instanceof HostError
                ? stripHost(error.message, h.name)
                : firstLine((error as Error).message)
            if (!(error instanceof InterruptedError))
              states.get(h.name)!.error = `${PHASE_TITLES[phase].toLowerCase()}: ${msg}`
            ctx.emit({type: 'host', phase, host: h.name, state: 'failed', detail: msg})
            throw error
          }
        }),
      )
      const failed = results.filter((r) => r.status === 'rejected')
      if (failed.length > 0) {
        ctx.emit({type: 'phase', phase, state: 'failed'})
        const first = (failed[0] as PromiseRejectedResult).reason
        if (ctx.signal?.aborted && first instanceof InterruptedError) throw interrupted(phase)
        throw incomplete(
          `${PHASE_TITLES[phase].toLowerCase()} failed on ${failed.length} of ${facts.hosts.length} hosts`,
          first,
        )
      }
      ctx.emit({type: 'phase', phase, state: 'done'})
      if (ctx.signal?.aborted) throw interrupted(phase)
    })

  const fmt = {format: config.etcd.discovery.format, key: config.etcd.discovery.key}
  const {createHash} = await import('node:crypto')

  await onEveryHost('prepare', async (h, node) => {
    const next = writeDiscoveryUrl(h.discoveryText, newUrl, fmt)
    const sha256 = createHash('sha256').update(h.discoveryText).digest('hex')
    let r: {stdout: string; stderr: string; code: number | null; signal?: string}
    try {
      r = await pool.run(node, prepareHostCommand(config, v.wipe, {exists: h.discoveryFileExists, sha256}), {
        stdin: next,
        check: false,
        timeoutMs: 60_000,
      })
    } catch (error) {
      // No answer at all (the connection died, or the command timed out): how far it got is unknown.
      if (error instanceof HostError && (error.kind === 'unreachable' || error.kind === 'timeout'))
        r = {stdout: '', stderr: error.message, code: null}
      else throw error
    } finally {
      // The next step (waiting for the new boot) opens a new connection; closing this one can take
      // a while on a host going down, so it is not awaited.
      void pool.drop(node).catch(() => undefined)
    }
    const got = interpretPrepare(r)
    states.get(h.name)!.stage = got.stage
    if (got.error) throw new HactlError(got.error)
    return {
      stage: got.stage,
      detail: `${config.etcd.service} killed; ${got.removed.length > 0 ? `removed ${got.removed.join(' ')}` : 'nothing to remove'}; new URL written; reboot issued`,
    }
  })

  // Wait for the hosts: new boot id (the same one means it did not reboot) and etcd active.
  const newBoot = new Map<string, string>()
  await onEveryHost('wait-ssh', async (h, node) => {
    const back = await waitForReboot(pool, node, h.bootId, config.etcd.service, {
      discoveryFile: config.etcd.discovery.file,
      timeoutMs: env.rebootTimeoutMs,
      pollMs: ctx.pollMs,
      ...(ctx.signal ? {signal: ctx.signal} : {}),
      onState: (stage, detail) => {
        states.get(h.name)!.stage = stage
        ctx.emit({type: 'host', phase: 'wait-ssh', host: h.name, state: 'update', detail})
      },
    })
    const id = back.bootId
    newBoot.set(h.name, id)
    states.get(h.name)!.stage = 'etcd active'
    // The file as the new boot sees it must carry the new URL (and etcd read it at start).
    let seen: string | null = null
    try {
      seen = back.discoveryText === undefined ? null : readDiscoveryUrl(back.discoveryText, fmt)
    } catch {
      seen = null
    }
    if (seen === null || normalizeDiscoveryUrl(seen) !== normalizeDiscoveryUrl(newUrl)) {
      throw new HactlError(
        `back with ${config.etcd.service} active, but ${config.etcd.discovery.file} has ${seen ?? 'no discovery URL'}, not the new ${newUrl}`,
      )
    }
    return {
      stage: 'etcd active',
      detail: `boot ${id.slice(0, 8)}, ${config.etcd.service} active, new URL in place`,
    }
  })

  if (ctx.signal?.aborted) throw interrupted('wait-ssh')
  // Wait for etcd: N healthy members, one leader, and not the old cluster.
  const health = await timed('wait-etcd', async () => {
    ctx.emit({type: 'phase', phase: 'wait-etcd', state: 'start', detail: `members joined 0/${plan.size}`})
    try {
      const h = await waitForHealthy(config, pool, v.nodes, {
        size: plan.size,
        ...(facts.etcd.clusterId ? {oldClusterId: facts.etcd.clusterId} : {}),
        timeoutMs: env.healthTimeoutMs,
        pollMs: ctx.pollMs,
        ...(ctx.signal ? {signal: ctx.signal} : {}),
        onProgress: (healthy, total) => ctx.emit({type: 'members', healthy, total, size: plan.size}),
      })
      ctx.emit({
        type: 'phase',
        phase: 'wait-etcd',
        state: 'done',
        detail: `members joined ${h.healthyCount}/${plan.size}, cluster ${h.clusterId}`,
      })
      return h
    } catch (error) {
      ctx.emit({
        type: 'phase',
        phase: 'wait-etcd',
        state: 'failed',
        detail: firstLine((error as Error).message),
      })
      if (error instanceof InterruptedError) throw interrupted('wait-etcd')
      throw incomplete(firstLine((error as Error).message), error)
    }
  })
  // Ctrl-C stops before the next step: the restore runs again (from the pending dump) on the next run.
  if (ctx.signal?.aborted) throw interrupted('wait-etcd')

  // Restore, history, and the end of the pending record: all against the new cluster.
  let restore: Applied['restore']
  let restoreSkipped: string | undefined
  const dumps: string[] = []
  if (plan.restore.enabled) {
    if (backup) dumps.push(backup.keysPath)
    if (plan.restore.pending && !dumps.includes(plan.restore.pending)) dumps.push(plan.restore.pending)
  } else {
    restoreSkipped = plan.restore.reason
  }
  const h2 = await openEtcdFor(config, pool, v.nodes)
  try {
    if (dumps.length > 0) {
      restore = await timed('restore', async () => {
        ctx.emit({type: 'phase', phase: 'restore', state: 'start'})
        try {
          const {readKeysDump, restoreKeys} = await import('../etcd/backup.js')
          let restored = 0
          let skippedExisting = 0
          // This run's dump first: for a key in both, the newer value wins (restore skips existing keys).
          for (const file of dumps) {
            const dump: KeysDump = await readKeysDump(file)
            const r = await restoreKeys(h2, dump)
            restored += r.restored
            skippedExisting += r.skippedExisting
          }
          ctx.emit({
            type: 'phase',
            phase: 'restore',
            state: 'done',
            detail: `${restored} keys put back${skippedExisting ? `, ${skippedExisting} already there` : ''}`,
          })
          return {restored, skippedExisting, from: dumps}
        } catch (error) {
          ctx.emit({
            type: 'phase',
            phase: 'restore',
            state: 'failed',
            detail: firstLine((error as Error).message),
          })
          throw new HactlError(
            `the new etcd cluster is healthy, but putting the keys back failed: ${firstLine((error as Error).message)}`,
            {
              cause: error,
              suggestions: [
                `the keys are saved in ${dumps.join(' and ')}; run \`${ctx.bin} cluster rediscover\` again to redo the rediscovery and the restore`,
              ],
            },
          )
        }
      })
    } else {
      ctx.emit({
        type: 'phase',
        phase: 'restore',
        state: 'skipped',
        detail: restoreSkipped ?? 'nothing to restore',
      })
      restoreSkipped ??= 'nothing to restore'
    }
    await removePending(ctx.stateDir, plan.cluster)
    const {appendHistory, finishHistoryEntry, startHistoryEntry} = await import('../history.js')
    const entry = finishHistoryEntry(
      startHistoryEntry({cluster: plan.cluster, argv: env.argv, plan: plan.steps, at: new Date(env.started)}),
      {
        exitCode: 0,
        results: facts.hosts.map((h) => ({
          node: h.name,
          ok: true,
          detail: `rebooted (boot ${newBoot.get(h.name)?.slice(0, 8) ?? '?'}), etcd active`,
        })),
      },
    )
    const hist = await appendHistory(entry, {
      stateDir: ctx.stateDir,
      etcd: {handle: h2, prefix: config.etcd.prefixes.history},
    })
    if (hist.fileError) warnings.push(`could not write the history file ${hist.file}: ${hist.fileError}`)
    if (hist.etcd && 'error' in hist.etcd)
      warnings.push(`could not write the history entry to etcd: ${hist.etcd.error}`)
  } finally {
    await h2.close().catch(() => undefined)
  }

  const leader = health.members.find((m) => m.isLeader)
  return {
    newDiscoveryUrl: newUrl,
    newClusterId: health.clusterId,
    members: health.members.map((m) => ({id: m.id, name: m.name, healthy: m.healthy, isLeader: m.isLeader})),
    ...(leader ? {leader: {id: leader.id, name: leader.name}} : {}),
    hosts: facts.hosts.map((h) => ({
      name: h.name,
      host: h.host,
      oldBootId: h.bootId,
      newBootId: newBoot.get(h.name) ?? '',
    })),
    ...(backup ? {backup} : {}),
    ...(backupSkipped ? {backupSkipped} : {}),
    ...(restore ? {restore} : {}),
    ...(restoreSkipped ? {restoreSkipped} : {}),
    phases,
    warnings,
  }
}

/**
 * Poll a rebooting host until it answers over SSH with a boot id other than `oldBootId` and the
 * etcd unit active. Returns the new boot id.
 */
export async function waitForReboot(
  pool: Pick<SshPool, 'run' | 'drop'>,
  node: ResolvedNode,
  oldBootId: string,
  service: string,
  opts: {
    timeoutMs: number
    pollMs: number
    discoveryFile?: string
    signal?: AbortSignal
    onState?: (stage: HostStage, detail: string) => void
    now?: () => number
  },
): Promise<{bootId: string; discoveryText?: string}> {
  const now = opts.now ?? Date.now
  const deadline = now() + opts.timeoutMs
  let sawOld = false
  let lastError = ''
  let lastDetail = ''
  const report = (stage: HostStage, detail: string) => {
    if (detail === lastDetail) return
    lastDetail = detail
    opts.onState?.(stage, detail)
  }
  for (;;) {
    if (opts.signal?.aborted) throw new InterruptedError()
    const left = deadline - now()
    if (left <= 0) {
      if (sawOld && !lastError)
        throw new HactlError(
          `still up with the same boot id ${oldBootId.slice(0, 8)} after ${formatMs(opts.timeoutMs)}: it did not reboot`,
        )
      throw new HactlError(
        `not back after ${formatMs(opts.timeoutMs)} (--reboot-timeout)${lastError ? `: ${lastError}` : ''}`,
      )
    }
    try {
      const waitMs = Math.max(0, Math.min(30_000, left - 2000))
      const r = await pool.run(node, waitProbeCommand(service, oldBootId, waitMs, opts.discoveryFile), {
        check: false,
        timeoutMs: Math.max(1000, Math.min(waitMs + 5000, left)),
        timeoutName: '--reboot-timeout',
      })
      const [boot = '', state = '', ...rest] = r.stdout.split('\n').map((l) => l.trim())
      lastError = ''
      if (!boot) {
        lastError = 'no boot id in the answer'
      } else if (boot === oldBootId) {
        // The old system still answers (sshd not down yet): that connection dies with it.
        sawOld = true
        report('reboot issued', 'old system still up')
        void pool.drop(node).catch(() => undefined)
      } else if (state === 'active') {
        return opts.discoveryFile === undefined
          ? {bootId: boot}
          : {bootId: boot, discoveryText: Buffer.from(rest.join(''), 'base64').toString('utf8')}
      } else {
        report('rebooted', `back (boot ${boot.slice(0, 8)}), ${service} ${state || 'not active'}`)
      }
    } catch (error) {
      if (!(error instanceof HostError)) throw error
      lastError = stripHost(error.message, node.name)
      report('reboot issued', 'waiting for SSH')
      void pool.drop(node).catch(() => undefined)
    }
    await sleep(Math.min(opts.pollMs, Math.max(0, deadline - now())), opts.signal)
  }
}

async function waitForHealthy(
  config: HactlConfig,
  pool: SshPool,
  nodes: ResolvedNode[],
  opts: {
    size: number
    oldClusterId?: string
    timeoutMs: number
    pollMs: number
    signal?: AbortSignal
    onProgress: (healthy: number, total: number) => void
  },
): Promise<EtcdClusterHealth> {
  const {etcdClusterHealth} = await import('../etcd/health.js')
  const deadline = Date.now() + opts.timeoutMs
  let last: EtcdClusterHealth | undefined
  let lastError = ''
  let reported = -1
  for (;;) {
    if (opts.signal?.aborted) throw new InterruptedError()
    // A fresh client per attempt: a client that saw every member down backs off longer than we poll.
    const handle = await openEtcdFor(config, pool, nodes)
    try {
      const perTry = Math.max(500, Math.min(2000, deadline - Date.now()))
      const h = await etcdClusterHealth(handle, {timeoutMs: perTry})
      last = h
      lastError = ''
      if (opts.oldClusterId && h.clusterId === opts.oldClusterId) {
        throw new HactlError(
          `etcd answers with the OLD cluster id ${h.clusterId}: the data was not removed (check etcd.dataDir and etcd.wipe in ${config.file})`,
        )
      }
      if (h.healthyCount !== reported) {
        reported = h.healthyCount
        opts.onProgress(h.healthyCount, h.total)
      }
      if (h.healthyCount >= opts.size && h.leaderId) return h
    } catch (error) {
      if (error instanceof HactlError && /OLD cluster id/.test(error.message)) throw error
      lastError = firstLine((error as Error).message)
    } finally {
      await handle.close().catch(() => undefined)
    }
    if (Date.now() >= deadline) {
      const state = last
        ? `${last.healthyCount}/${opts.size} members healthy${last.leaderId ? '' : ', no leader'}`
        : `no answer${lastError ? ` (${lastError})` : ''}`
      throw new HactlError(
        `etcd did not become healthy within ${formatMs(opts.timeoutMs)} (--health-timeout): ${state}`,
        {
          suggestions: [`look at etcd on the hosts: journalctl -u ${config.etcd.service}`],
        },
      )
    }
    await sleep(Math.min(opts.pollMs, Math.max(0, deadline - Date.now())), opts.signal)
  }
}

// --- Pending record --------------------------------------------------------------------------

export function pendingFile(stateDir: string, cluster: string): string {
  return path.join(stateDir, `rediscover-${cluster}.pending.json`)
}

export async function readPending(
  stateDir: string,
  cluster: string,
): Promise<PendingRediscovery | undefined> {
  try {
    const p = JSON.parse(
      await readFile(pendingFile(stateDir, cluster), 'utf8'),
    ) as Partial<PendingRediscovery>
    if (p && p.cluster === cluster && typeof p.startedAt === 'string' && typeof p.newUrl === 'string')
      return p as PendingRediscovery
  } catch {
    // Missing or unreadable: no pending rediscovery.
  }
  return undefined
}

async function writePending(stateDir: string, p: PendingRediscovery): Promise<void> {
  await mkdir(stateDir, {recursive: true, mode: 0o700})
  const file = pendingFile(stateDir, p.cluster)
  await writeFile(`${file}.tmp`, `${JSON.stringify(p, null, 2)}\n`, {mode: 0o600})
  await rename(`${file}.tmp`, file)
}

async function removePending(stateDir: string, cluster: string): Promise<void> {
  await rm(pendingFile(stateDir, cluster), {force: true})
}

// --- helpers ---------------------------------------------------------------------------------

/** Await p, but reject with onAbort() as soon as the signal fires (p's late result is cleaned up). */
async function untilAborted<T>(
  p: Promise<T>,
  signal: AbortSignal | undefined,
  onAbort: () => Error,
  cleanup?: (late: T) => Promise<void>,
): Promise<T> {
  if (!signal) return p
  if (signal.aborted) {
    p.then(
      (late) => cleanup?.(late),
      () => undefined,
    )
    throw onAbort()
  }
  let listener: (() => void) | undefined
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        listener = () => {
          p.then(
            (late) => cleanup?.(late),
            () => undefined,
          )
          reject(onAbort())
        }
        signal.addEventListener('abort', listener, {once: true})
      }),
    ])
  } finally {
    if (listener) signal.removeEventListener('abort', listener)
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve()
    const t = setTimeout(done, ms)
    function done() {
      clearTimeout(t)
      signal?.removeEventListener('abort', done)
      resolve()
    }
    signal?.addEventListener('abort', done, {once: true})
  })
}

function firstLine(s: string): string {
  return (s.split('\n').find((l) => l.trim() !== '') ?? '').trim()
}

function lastLine(s: string): string {
  return (s.trim().split('\n').pop() ?? '').trim()
}

/** "ast2: unreachable: ..." → "unreachable: ..." when shown under the host's own name. */
function stripHost(message: string, host: string): string {
  const m = firstLine(message)
  return m.startsWith(`${host}: `) ? m.slice(host.length + 2) : m
}
