import type {HactlConfig, ResolvedNode} from '../config/load.js'
import {HostError} from '../errors.js'
import {readDiscoveryUrl} from '../etcd/discovery-config.js'
import {classifyAsteriskAnswer, parseChannelsCount} from '../facts/asterisk.js'
import {parseDispatcherList} from '../facts/kamailio.js'
import type {SshPool} from '../ssh/pool.js'
import {buildStatusProbe, parseStatusProbe, STATUS_PROBE_RUN} from './status-probe.js'
import {statusProbeNodes} from './targets.js'
import {
  findProblems,
  isInService,
  type ClusterStatus,
  type DispatcherEntry,
  type EtcdSummary,
  type NodeStatus,
} from './status-model.js'

export interface StatusOptions {
  /** Nodes to show; the Kamailio hosts are probed anyway, for the dispatcher columns. */
  nodes: ResolvedNode[]
  /** Called as each host's facts arrive (for a live progress display). */
  onNode?: (name: string, ok: boolean) => void
  bin?: string
  /** The etcd pass, when it was started already (hactl's early start: `statusEtcdFacts`). */
  etcd?: Promise<EtcdFacts>
}

export interface EtcdFacts {
  summary: EtcdSummary
  /** Member name or client host → role. */
  memberRoles: Map<string, {role: 'leader' | 'follower' | 'learner' | 'unhealthy'; id: string}>
  marks: Map<string, {state: 'draining' | 'drained'; by?: string; since?: string; reason?: string}>
}

/**
 * Gather the whole cluster's state: one SSH round trip per host (all hosts in parallel) and one
 * etcd pass, at the same time. An unreachable or hanging host shows as such after its timeout and
 * never holds up the others.
 */
export async function gatherStatus(config: HactlConfig, pool: SshPool, opts: StatusOptions): Promise<ClusterStatus> {
  const started = Date.now()
  const kamailioNodes = config.nodes.filter((n) => n.roles.includes('kamailio'))
  const probeNodes = statusProbeNodes(config, opts.nodes)
  const hasEtcdRole = hasEtcd(config)

  const [probes, etcd] = await Promise.all([
    Promise.all(
      probeNodes.map(async (node) => {
        const r = await probeNode(config, pool, node)
        opts.onNode?.(node.name, r.ok)
        return [node.name, r] as const
      }),
    ),
    opts.etcd ?? statusEtcdFacts(config, pool),
  ])
  const byName = new Map(probes)
  // The gathering began with the first probe, which hactl's early start may have sent before this
  // function ran.
  const began = Math.min(started, ...probes.map(([, p]) => (p.ok ? p.askedAt : started)))

  // Each Kamailio's view of each destination, keyed by host:port.
  const kamViews = new Map<string, Map<string, DispatcherEntry> | null>()
  const kamFacts = new Map<string, NonNullable<NodeStatus['kamailio']>>()
  for (const k of kamailioNodes) {
    const p = byName.get(k.name)
    const sec = p?.ok ? p.sections.dispatcher : undefined
    if (!sec) {
      kamViews.set(k.name, null)
      continue
    }
    let parsed: ReturnType<typeof parseDispatcherList>
    try {
      parsed = parseDispatcherList(sec.output)
    } catch {
      // kamcmd could not reach Kamailio (or printed something else): unknown, not "no destinations".
      kamViews.set(k.name, null)
      kamFacts.set(k.name, {state: 'down', detail: firstLine(sec.output)})
      continue
    }
    kamFacts.set(k.name, {state: 'running', destinations: parsed.sets.reduce((a, x) => a + x.targets.length, 0)})
    const view = new Map<string, DispatcherEntry>()
    for (const set of parsed.sets) {
      if (set.id !== config.kamailio.setId) continue
      for (const t of set.targets) {
        view.set(`${t.host}:${t.port}`, {flags: t.flags, state: t.state})
      }
    }
    kamViews.set(k.name, view)
  }

  const nodes: NodeStatus[] = opts.nodes.map((node) => {
    const p = byName.get(node.name)!
    const st: NodeStatus = {name: node.name, host: node.host, port: node.port, roles: [...node.roles], ssh: {ok: p.ok}}
    if (!p.ok) {
      st.ssh.error = p.error
    } else {
      st.ssh.rttMs = p.rttMs
      const boot = p.sections.boot_id
      if (boot && boot.code === 0) st.bootId = boot.output.trim()
      const up = p.sections.uptime
      if (up && up.code === 0) {
        const secs = Number(up.output.trim().split(/\s+/)[0])
        if (Number.isFinite(secs)) st.uptimeSeconds = Math.floor(secs)
      }
    }
    if (node.roles.includes('etcd')) {
      const member = etcd.memberRoles.get(node.name) ?? etcd.memberRoles.get(node.host)
      st.etcd = {
        member: !etcd.summary.reachable ? 'unknown' : member ? member.role : 'not-a-member',
        ...(member ? {memberId: member.id} : {}),
      }
      const svc = p.ok ? p.sections.etcd_service : undefined
      if (svc) st.etcd.service = svc.output.trim().split('\n').pop() || (svc.code === 0 ? 'active' : 'inactive')
      const disc = p.ok ? p.sections.discovery : undefined
      if (disc && disc.code === 0) {
        const url = safeReadDiscovery(disc.output, config)
        if (url) st.etcd.discoveryUrl = url
      }
    }
    if (node.roles.includes('kamailio')) st.kamailio = kamFacts.get(node.name) ?? {state: 'unknown'}
    if (node.roles.includes('asterisk')) {
      st.asterisk = p.ok ? asteriskFacts(p.sections.asterisk) : {state: 'unknown'}
      const dispatcher: Record<string, DispatcherEntry> = {}
      for (const k of kamailioNodes) {
        const view = kamViews.get(k.name)
        dispatcher[k.name] = view === null || view === undefined
          ? {flags: null, state: 'unknown'}
          : view.get(`${node.host}:${config.asterisk.sipPort}`) ?? {flags: null, state: 'absent'}
      }
      st.dispatcher = dispatcher
    }
    const mark = etcd.marks.get(node.name)
    if (mark) st.maintenance = mark
    if (node.roles.includes('asterisk')) st.inService = isInService(st)
    return st
  })

  // The in-service count is about the whole cluster, even when only some nodes are shown.
  const asteriskShown = nodes.filter((n) => n.roles.includes('asterisk'))
  const inServiceNodes = asteriskShown.filter((n) => n.inService).map((n) => n.name)
  const discoveryUrls = [...new Set(nodes.map((n) => n.etcd?.discoveryUrl).filter((u): u is string => Boolean(u)))]
  const problems = findProblems(nodes, etcd.summary, {
    hasEtcdRole,
    kamailioNodes: kamailioNodes.map((k) => k.name),
    etcdService: config.etcd.service,
    bin: opts.bin,
    knownHosts: config.ssh.knownHosts,
  })
  return {
    cluster: config.cluster,
    generatedAt: new Date(began).toISOString(),
    durationMs: Date.now() - began,
    healthy: problems.length === 0,
    etcd: etcd.summary,
    discoveryUrls,
    asterisk: {inService: inServiceNodes.length, total: asteriskShown.length, inServiceNodes},
    nodes,
    problems,
  }
}

type Probe =
  | {ok: true; rttMs: number; askedAt: number; sections: ReturnType<typeof parseStatusProbe>}
  | {ok: false; error: {kind: string; message: string}}

async function probeNode(config: HactlConfig, pool: SshPool, node: ResolvedNode): Promise<Probe> {
  const started = Date.now()
  try {
    const r = await pool.run(node, buildStatusProbe(config, node), STATUS_PROBE_RUN)
    // From asking to the answer, also when hactl's early start asked before this function ran.
    return {
      ok: true,
      rttMs: r.elapsedMs ?? Date.now() - started,
      askedAt: r.askedAt ?? started,
      sections: parseStatusProbe(r.stdout),
    }
  } catch (error) {
    if (error instanceof HostError) return {ok: false, error: {kind: error.kind, message: error.message}}
    return {ok: false, error: {kind: 'error', message: (error as Error).message}}
  }
}

function asteriskFacts(sec: {output: string; code: number} | undefined): NonNullable<NodeStatus['asterisk']> {
  if (!sec) return {state: 'unknown', detail: 'no answer from the asterisk CLI'}
  const answer = classifyAsteriskAnswer(sec.output, sec.code)
  if (answer.kind === 'not-running') return {state: 'stopped'}
  if (answer.kind === 'shutdown-pending') return {state: 'shutdown-pending'}
  if (answer.kind !== 'ok') return {state: 'unknown', detail: sec.output.split('\n')[0] ?? ''}
  try {
    const c = parseChannelsCount(sec.output)
    return {
      state: 'running',
      activeCalls: c.activeCalls,
      activeChannels: c.activeChannels,
      callsProcessed: c.callsProcessed,
      ...(c.maxCalls === undefined ? {} : {maxCalls: c.maxCalls}),
    }
  } catch {
    return {state: 'unknown', detail: sec.output.split('\n')[0] ?? ''}
  }
}

function safeReadDiscovery(text: string, config: HactlConfig): string | undefined {
  try {
    return readDiscoveryUrl(text, {format: config.etcd.discovery.format, key: config.etcd.discovery.key}) ?? undefined
  } catch {
    return undefined
  }
}

function hasEtcd(config: HactlConfig): boolean {
  return config.nodes.some((n) => n.roles.includes('etcd')) || config.etcd.endpoints.length > 0
}

/** status's etcd pass (health, member roles, maintenance marks); never rejects. */
export function statusEtcdFacts(config: HactlConfig, pool: SshPool): Promise<EtcdFacts> {
  return hasEtcd(config) ? gatherEtcd(config, pool) : Promise.resolve(emptyEtcd())
}

function emptyEtcd(): EtcdFacts {
  return {summary: {reachable: false, healthy: 0, total: 0, alarms: []}, memberRoles: new Map(), marks: new Map()}
}

async function gatherEtcd(config: HactlConfig, pool: SshPool): Promise<EtcdFacts> {
  const facts = emptyEtcd()
  let handle: import('../etcd/client.js').EtcdHandle | undefined
  try {
    const {openClusterEtcd} = await import('./node-shared.js')
    const {etcdClusterHealth} = await import('../etcd/health.js')
    const {getMarks} = await import('../etcd/marks.js')
    handle = await openClusterEtcd(config, pool)
    const [health, marks] = await Promise.all([
      etcdClusterHealth(handle),
      getMarks(handle, config.etcd.prefixes.maintenance).catch(() => []),
    ])
    const leader = health.members.find((m) => m.isLeader)
    const src = leader ?? health.members.find((m) => m.healthy)
    facts.summary = {
      reachable: health.healthyCount > 0,
      ...(health.clusterId ? {clusterId: health.clusterId} : {}),
      healthy: health.healthyCount,
      total: health.total,
      ...(leader ? {leader: leader.name || leader.id} : {}),
      ...(src?.raftTerm === undefined ? {} : {raftTerm: src.raftTerm}),
      ...(src?.raftIndex === undefined ? {} : {raftIndex: src.raftIndex}),
      ...(src?.version === undefined ? {} : {version: src.version}),
      ...(src?.dbSize === undefined ? {} : {dbSize: src.dbSize}),
      alarms: health.alarms.map((a) => `${a.alarm} on ${a.memberId}`),
    }
    for (const m of health.members) {
      const role = !m.healthy ? 'unhealthy' : m.isLearner ? 'learner' : m.isLeader ? 'leader' : 'follower'
      const entry = {role, id: m.id} as const
      if (m.name) facts.memberRoles.set(m.name, entry)
      for (const u of m.clientURLs) {
        try {
          facts.memberRoles.set(new URL(u).hostname, entry)
        } catch {
          // A malformed client URL only loses the host → member mapping.
        }
      }
    }
    for (const mark of marks) {
      facts.marks.set(mark.node, {
        state: mark.state,
        ...(mark.by ? {by: mark.by} : {}),
        ...(mark.since ? {since: mark.since} : {}),
        ...(mark.reason ? {reason: mark.reason} : {}),
      })
    }
  } catch (error) {
    facts.summary = {reachable: false, error: (error as Error).message.split('\n')[0], healthy: 0, total: 0, alarms: []}
  } finally {
    await handle?.close().catch(() => undefined)
  }
  return facts
}

function firstLine(s: string): string {
  return (s.split('\n').find((l) => l.trim() !== '') ?? '').trim().slice(0, 200)
}
