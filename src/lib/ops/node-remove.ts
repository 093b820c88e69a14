import {lookup} from 'node:dns/promises'
import {readFile} from 'node:fs/promises'
import {isIP} from 'node:net'
import {removeNode} from '../config/edit.js'
import {etcdEndpoints} from '../config/file.js'
import type {HactlConfig, ResolvedNode} from '../config/load.js'
import type {EtcdHandle} from '../etcd/client.js'
import type {EtcdClusterHealth, EtcdMemberHealth} from '../etcd/health.js'
import {ExitCode, formatMs, HactlError, HostError, InterruptedError, UserError} from '../errors.js'
import type {SshPool} from '../ssh/pool.js'
import {sh} from '../ssh/quote.js'
import type {CapacityCheck} from './capacity.js'
import type {DrainRunPlan, NodePlan, StepEvent} from './drain.js'
import {writeFileAtomic} from './node-add.js'
import {
  agentStatusScript,
  commandLine,
  firstLine,
  kamcmdRetrying,
  openClusterEtcd,
  parseAgentStop,
  readKamailioViews,
  recordNodeHistory,
  removeListDestination,
  StepRunner,
  stopAgentScript,
  takeClusterLock,
  writeListFile,
  type KamailioView,
  type NodeOpEvent,
  type StepRecord,
} from './node-shared.js'
import {checkMemberRemoval, type RemovalCheck} from './quorum.js'

/**
 * `hactl node remove`: take a node out of the cluster for good, as facts → plan → apply.
 *
 * Order: drain it if it is an Asterisk box that is not drained yet (the drain command's own logic,
 * capacity guard included; the drain takes and releases the cluster lock itself); then, under the
 * cluster lock: the quorum guard again on fresh health, remove its etcd member by ID (before its
 * etcd stops, so the cluster never counts a stopped voter), stop and disable etcd there and remove
 * its data, stop the announce agent (pid file), stop and disable Asterisk, delete its registration
 * and maintenance mark, remove it from each Kamailio's list (file and runtime), remove it from
 * hactl.yaml (comments kept). Every step checks what is there first, so a run that failed half way
 * is finished by running it again.
 */

export interface NodeRemoveRequest {
  name: string
  /** Shrink etcd below 3 voting members; remove a host that does not answer. */
  force?: boolean
  dryRun?: boolean
  /** How long the drain waits for the calls to end (default asterisk.drainTimeout). */
  drainTimeoutMs?: number
  /** Ctrl-C: the drain step stops as drain does; no later step starts; exit 130. */
  signal?: AbortSignal
  /** `--wait-lock`: wait this long for another run's cluster lock instead of refusing. */
  waitLockMs?: number
}

export interface NodeRemoveContext {
  config: HactlConfig
  pool: SshPool
  bin?: string
  argv?: string[]
}

export interface NodeRemoveHooks {
  onPlan?(plan: NodeRemovePlan): Promise<boolean | void> | boolean | void
  onEvent?(e: NodeOpEvent): void
  /** The drain's own step events, while the drain step runs. */
  onDrainEvent?(e: StepEvent): void
  onWarning?(message: string): void
}

export type NodeRemoveStepId = 'drain' | 'etcd-remove' | 'etcd-stop' | 'agent-stop' | 'asterisk-stop' | 'registration' | 'dispatcher' | 'inventory'

export interface NodeRemoveStep {
  id: NodeRemoveStepId
  title: string
  /** Sub-steps shown under the step (the drain's plan). */
  details?: string[]
}

export interface NodeRemovePlan {
  node: {name: string; host: string; roles: string[]}
  reachable: boolean
  reachError?: string
  steps: NodeRemoveStep[]
  blockers: string[]
  suggestions: string[]
  warnings: string[]
  etcd?: {memberId: string; memberName: string; isLearner: boolean; quorum: RemovalCheck}
  capacity?: CapacityCheck
  sip?: {ip: string; uri: string}
  kamailio: Array<{node: string; ok: boolean; error?: string; inFile: boolean; flags: string | null}>
}

export interface NodeRemoveResult {
  node: string
  dryRun: boolean
  ok: boolean
  plan: NodeRemovePlan
  steps: StepRecord[]
  durationMs: number
  cancelled?: boolean
}

export class NodeRemoveError extends HactlError {
  readonly kind = 'node-remove-failed'
  constructor(
    message: string,
    readonly result: NodeRemoveResult,
    suggestions: string[],
    exitCode?: number,
  ) {
    super(message, {suggestions, ...(exitCode === undefined ? {} : {exitCode})})
  }
}

// ---------------------------------------------------------------------------------------------
// Facts and plan

export interface TargetFacts {
  reachable: boolean
  error?: string
  /** `systemctl is-active` of etcd.service and asterisk.service. */
  etcdUnit?: string
  asteriskUnit?: string
  /** The announce agent of the pid file, when one runs. */
  agentPid?: number
}

export interface NodeRemoveFacts {
  node: ResolvedNode
  configFile: string
  target: TargetFacts
  etcd?: {members: EtcdMemberHealth[]; member?: EtcdMemberHealth; serviceName: string}
  /** The drain's plan for the node (asterisk role), with its capacity guard. */
  drain?: {plan: DrainRunPlan; node: NodePlan; preflight?: string; preflightHints?: string[]}
  registration?: {ip: string; lease?: string} | null
  mark?: {state: string} | null
  sipIp?: string
  sipPort: number
  kamailio: KamailioView[]
}

/** The etcd member that is this node: by name, else by the host of a peer URL. */
export function memberOfNode(members: readonly EtcdMemberHealth[], node: {name: string; host: string}): EtcdMemberHealth | undefined {
  const host = node.host.replace(/^\[(.*)\]$/, '$1').toLowerCase()
  const hostOf = (u: string) => {
    try {
      return new URL(u).hostname.replace(/^\[(.*)\]$/, '$1').toLowerCase()
    } catch {
      return ''
    }
  }
  return members.find((m) => m.name === node.name) ?? members.find((m) => m.peerURLs.some((u) => hostOf(u) === host))
}

/** The etcd client URLs without the node's own (it is about to leave; ask the others). */
export function endpointsWithout(config: HactlConfig, node: ResolvedNode): string[] {
  const all = etcdEndpoints(config)
  const host = node.host.replace(/^\[(.*)\]$/, '$1').toLowerCase()
  const rest = all.filter((u) => {
    try {
      return new URL(u).hostname.replace(/^\[(.*)\]$/, '$1').toLowerCase() !== host
    } catch {
      return true
    }
  })
  return rest.length > 0 ? rest : all
}

export function planNodeRemove(f: NodeRemoveFacts, opts: {force?: boolean; bin?: string} = {}): NodeRemovePlan {
  const bin = opts.bin ?? 'hactl'
  const force = Boolean(opts.force)
  const n = f.node
  const steps: NodeRemoveStep[] = []
  const blockers: string[] = []
  const suggestions: string[] = []
  const warnings: string[] = []
  const reachable = f.target.reachable
  if (!reachable) {
    const msg = `${n.name} does not answer (${f.target.error ?? 'unreachable'}): nothing on it can be stopped`
    if (force) warnings.push(`${msg}; --force: it is removed from etcd, the dispatchers and hactl.yaml, and whatever runs on it is left as it is`)
    else {
      blockers.push(msg)
      suggestions.push(`if the host is gone for good, remove it anyway (its services are left as they are): ${bin} node remove ${n.name} --force`)
    }
  }

  // Drain first: an Asterisk box that takes calls leaves the rotation before anything else.
  if (f.drain && reachable) {
    const np = f.drain.node
    if (np.action === 'apply') {
      steps.push({id: 'drain', title: `drain ${n.name} (as hactl node drain: ${np.state})`, details: np.steps.map((s) => s.title)})
      if (f.drain.plan.capacity && !f.drain.plan.capacity.ok) {
        blockers.push(`the capacity guard refuses to drain ${n.name}: ${f.drain.plan.capacity.message}`)
        suggestions.push(`drain it yourself first, past the guard if you must: ${bin} node drain ${n.name} --force; then run node remove again`)
      }
    } else if (np.action === 'blocked') {
      blockers.push(`cannot drain ${n.name}: ${np.reason}`)
      suggestions.push(...np.suggestions)
    }
  }

  let etcdPlan: NodeRemovePlan['etcd']
  const member = f.etcd?.member
  if (f.etcd && member) {
    const quorum = checkMemberRemoval(
      f.etcd.members.map((m) => ({id: m.id, name: m.name, healthy: m.healthy, isLearner: m.isLearner})),
      member.id,
      {force},
    )
    etcdPlan = {memberId: member.id, memberName: member.name, isLearner: member.isLearner, quorum}
    if (!quorum.ok) {
      blockers.push(`quorum guard: ${quorum.message}`)
      if (quorum.needsForce) suggestions.push(`if you mean it, shrink etcd anyway: ${bin} node remove ${n.name} --force`)
      else suggestions.push(`add a member first (${bin} node add NAME --host HOST --roles etcd), or see the members: ${bin} status`)
    } else if (quorum.needsForce) {
      warnings.push(`--force: ${quorum.message}`)
    }
    steps.push({id: 'etcd-remove', title: `remove etcd member ${member.name || n.name} (${member.id}${member.isLearner ? ', learner' : ''}); ${quorum.message}`})
  } else if (n.roles.includes('etcd') && f.etcd) {
    warnings.push(`${n.name} has the etcd role but is not an etcd member (already removed?)`)
  }
  if (reachable && (member || (n.roles.includes('etcd') && f.target.etcdUnit && f.target.etcdUnit !== 'inactive' && f.target.etcdUnit !== 'unknown'))) {
    const svc = f.etcd?.serviceName ?? 'etcd'
    steps.push({id: 'etcd-stop', title: `stop and disable ${svc} on ${n.name}, remove its etcd data (it can never rejoin with it)`})
  }

  if (n.roles.includes('asterisk')) {
    if (reachable && f.target.agentPid !== undefined) {
      steps.push({id: 'agent-stop', title: `stop the announce agent on ${n.name} (pid ${f.target.agentPid})`})
    } else if (reachable && f.registration?.lease) {
      warnings.push(
        `${n.name} is registered with a lease, but no agent started by hactl runs there: stop the agent that announces it, or it registers again`,
      )
    }
    if (reachable) steps.push({id: 'asterisk-stop', title: `stop and disable Asterisk on ${n.name}`})
  }
  // The drain leaves a mark, and an agent's revoke may not come through: clean up both.
  if (f.registration || f.mark || (n.roles.includes('asterisk') && f.etcd !== undefined)) {
    steps.push({id: 'registration', title: `delete what is left of ${n.name} in etcd (registration, maintenance mark)`})
  }
  const sip = f.sipIp ? {ip: f.sipIp, uri: `sip:${f.sipIp.includes(':') ? `[${f.sipIp}]` : f.sipIp}:${f.sipPort}`} : undefined
  const listed = f.kamailio.filter((k) => k.ok && (k.inFile || k.runtime))
  const down = f.kamailio.filter((k) => !k.ok)
  if (sip && listed.length > 0) {
    steps.push({id: 'dispatcher', title: `remove ${sip.uri} from the dispatcher list of ${listed.map((k) => k.node).join(', ')} (list file, and dispatcher.remove at runtime)`})
  }
  if (down.length > 0 && n.roles.includes('asterisk')) {
    const msg = `${down.map((k) => `${k.node} does not answer (${k.error ?? ''})`).join('; ')}: ${n.name} may stay in its dispatcher list`
    if (force) warnings.push(msg)
    else {
      blockers.push(msg)
      suggestions.push(`check the Kamailio hosts (${bin} status), or remove anyway with --force and clean that list later: ${bin} dispatcher sync`)
    }
  }
  steps.push({id: 'inventory', title: `remove ${n.name} from ${f.configFile} (comments kept)`})

  return {
    node: {name: n.name, host: n.host, roles: [...n.roles]},
    reachable,
    ...(f.target.error ? {reachError: f.target.error} : {}),
    steps,
    blockers,
    suggestions: [...new Set(suggestions)],
    warnings,
    ...(etcdPlan ? {etcd: etcdPlan} : {}),
    ...(f.drain?.plan.capacity ? {capacity: f.drain.plan.capacity} : {}),
    ...(sip ? {sip} : {}),
    kamailio: f.kamailio.map((k) => ({node: k.node, ok: k.ok, ...(k.error ? {error: k.error} : {}), inFile: k.inFile, flags: k.runtime?.flags ?? null})),
  }
}

export function removePlanLines(plan: NodeRemovePlan): string[] {
  return [
    `${plan.node.name} (${plan.node.host}): roles ${plan.node.roles.join(', ')}${plan.reachable ? '' : ', unreachable'}`,
    ...plan.blockers.map((b) => `  cannot remove: ${b}`),
    ...plan.steps.map((s, i) => `  ${i + 1}. ${s.title}`),
  ]
}

// ---------------------------------------------------------------------------------------------
// Gathering

const TM = '@@hactl-target'

function targetScript(config: HactlConfig, name: string): string {
  return [
    sh`echo ${`${TM} etcd`} "$(systemctl is-active ${config.etcd.service} 2>/dev/null)"`,
    sh`echo ${`${TM} asterisk`} "$(systemctl is-active ${config.asterisk.service} 2>/dev/null)"`,
    agentStatusScript(name),
  ].join('\n')
}

export function parseTargetFacts(stdout: string): TargetFacts {
  const get = (k: string) => new RegExp(`^${TM} ${k} ?(.*)$`, 'm').exec(stdout)?.[1]?.trim() || 'unknown'
  const agent = /^@@hactl-agent running (\d+)$/m.exec(stdout)
  return {reachable: true, etcdUnit: get('etcd'), asteriskUnit: get('asterisk'), ...(agent ? {agentPid: Number(agent[1])} : {})}
}

async function gatherRemoveFacts(ctx: NodeRemoveContext, etcd: EtcdHandle | undefined, node: ResolvedNode, req: NodeRemoveRequest): Promise<NodeRemoveFacts> {
  const {config, pool} = ctx
  const kams = config.nodes.filter((n) => n.roles.includes('kamailio'))
  const bare = node.host.replace(/^\[(.*)\]$/, '$1')
  const sipIp = isIP(bare) ? bare : await lookup(node.host).then((a) => a.address, () => undefined)
  const target = pool.run(node, targetScript(config, node.name), {check: false}).then(
    (r) => parseTargetFacts(r.stdout),
    (error: unknown): TargetFacts => {
      if (error instanceof HostError) return {reachable: false, error: firstLine(error)}
      throw error
    },
  )
  const health: Promise<EtcdClusterHealth | undefined> = etcd ? import('../etcd/health.js').then((m) => m.etcdClusterHealth(etcd)) : Promise.resolve(undefined)
  const regs = etcd ? import('../etcd/registrations.js').then((m) => m.listRegistrations(etcd, config.etcd.prefixes.asterisk)) : Promise.resolve(undefined)
  const marks = etcd ? import('../etcd/marks.js').then((m) => m.getMarks(etcd, config.etcd.prefixes.maintenance)) : Promise.resolve(undefined)
  const views = sipIp ? readKamailioViews(config, pool, kams, sipIp, config.asterisk.sipPort) : Promise.resolve([] as KamailioView[])
  let drain: NodeRemoveFacts['drain']
  if (node.roles.includes('asterisk') && etcd) {
    const d = await import('./drain.js')
    const dctx = {config, pool, bin: ctx.bin ?? 'hactl'}
    const facts = await d.gatherDrainFacts(dctx, etcd, {minInService: config.asterisk.minInService, targets: [node]})
    const plan = d.buildRunPlan(facts, {
      operation: 'drain',
      targets: [node.name],
      minInService: config.asterisk.minInService,
      force: false,
      timeoutMs: req.drainTimeoutMs ?? config.asterisk.drainTimeout,
      bin: ctx.bin ?? 'hactl',
    })
    const np = plan.nodes[0]
    if (np) drain = {plan, node: np}
  }
  const [t, h, r, m, k] = await Promise.all([target, health, regs, marks, views])
  const reg = r?.find((x) => x.name === node.name)
  const mark = m?.find((x) => x.node === node.name)
  return {
    node,
    configFile: config.file,
    target: t,
    ...(h ? {etcd: {members: h.members, ...(memberOfNode(h.members, node) ? {member: memberOfNode(h.members, node)!} : {}), serviceName: config.etcd.service}} : {}),
    ...(drain ? {drain} : {}),
    registration: reg ? {ip: reg.ip, ...(reg.lease ? {lease: reg.lease} : {})} : null,
    mark: mark ? {state: mark.state} : null,
    ...(sipIp ? {sipIp} : {}),
    sipPort: config.asterisk.sipPort,
    kamailio: k,
  }
}

// ---------------------------------------------------------------------------------------------
// Apply

/** Remove a node: see the module comment. Throws NodeRemoveError when a step fails (what is left is in the message). */
export async function removeNodeFromCluster(ctx: NodeRemoveContext, req: NodeRemoveRequest, hooks: NodeRemoveHooks = {}): Promise<NodeRemoveResult> {
  const started = Date.now()
  const {config, pool} = ctx
  const bin = ctx.bin ?? 'hactl'
  const argv = ctx.argv ?? ['node', 'remove', req.name]
  const warn = (m: string) => hooks.onWarning?.(m)
  const node = config.nodes.find((n) => n.name === req.name)
  if (!node) {
    throw new UserError(`no node named ${req.name} in ${config.file}`, [`the nodes: ${config.nodes.map((n) => n.name).join(', ')}`])
  }
  // Refuses the last node before anything is asked.
  removeNode(await readFile(config.file, 'utf8'), node.name, config.file)

  const hasEtcd = etcdEndpoints(config).length > 0
  const etcd = hasEtcd ? await openClusterEtcd(config, pool, endpointsWithout(config, node)) : undefined
  let lock: {release(): Promise<void>} | undefined
  try {
    const facts = await gatherRemoveFacts(ctx, etcd, node, req)
    const plan = planNodeRemove(facts, {force: req.force, bin})
    const base: NodeRemoveResult = {node: node.name, dryRun: Boolean(req.dryRun), ok: false, plan, steps: [], durationMs: 0}
    if (plan.blockers.length > 0) {
      await hooks.onPlan?.(plan)
      throw new HactlError(`refusing to remove ${node.name}; nothing was changed: ${plan.blockers.join('; ')}`, {suggestions: plan.suggestions})
    }
    if (req.dryRun) {
      await hooks.onPlan?.(plan)
      return {...base, ok: true, durationMs: Date.now() - started}
    }
    const go = await hooks.onPlan?.(plan)
    if (go === false) return {...base, cancelled: true, durationMs: Date.now() - started}

    if (req.signal?.aborted) throw new InterruptedError(`node remove ${node.name} interrupted before anything changed`)
    const runner = new StepRunner(plan.steps, hooks.onEvent, req.signal)
    const result: NodeRemoveResult = {...base, steps: runner.records}
    const has = (id: NodeRemoveStepId) => plan.steps.some((s) => s.id === id)
    try {
      if (has('drain')) {
        await runner.run('drain', async () => {
          const {drainNodes} = await import('./drain.js')
          const out = await drainNodes(
            {config, pool, bin, argv: ['node', 'drain', node.name]},
            {
              nodes: [node],
              timeoutMs: req.drainTimeoutMs ?? config.asterisk.drainTimeout,
              ...(req.signal ? {signal: req.signal} : {}),
              ...(req.waitLockMs === undefined ? {} : {waitLockMs: req.waitLockMs}),
            },
            {...(hooks.onDrainEvent ? {onEvent: hooks.onDrainEvent} : {}), onWarning: warn},
          )
          const r = out.result?.nodes[0]
          if (r?.outcome === 'interrupted') throw new InterruptedError(`interrupted while draining: ${r.message}`)
          if (!r || (r.outcome !== 'drained' && r.outcome !== 'nothing-to-do')) {
            throw new HactlError(`the drain of ${node.name} did not finish: ${r?.message ?? 'no result'}`, {suggestions: r?.error?.suggestions ?? []})
          }
          return r.message
        })
      }
      if (etcd) lock = await takeClusterLock(config, etcd, commandLine(bin, argv), warn, req.waitLockMs)

      if (has('etcd-remove') && plan.etcd && etcd) {
        await runner.run('etcd-remove', async () => {
          // Again on fresh health, under the lock: the drain took minutes, the cluster may have changed.
          const {etcdClusterHealth} = await import('../etcd/health.js')
          const h = await etcdClusterHealth(etcd)
          const member = h.members.find((m) => m.id === plan.etcd!.memberId)
          if (!member) return 'not a member any more'
          const q = checkMemberRemoval(h.members.map((m) => ({id: m.id, name: m.name, healthy: m.healthy, isLearner: m.isLearner})), member.id, {force: req.force})
          if (!q.ok) throw new HactlError(`quorum guard (checked again): ${q.message}`, {suggestions: q.needsForce ? [`${bin} node remove ${node.name} --force`] : [`${bin} status`]})
          await etcd.call(`removing the etcd member ${member.name || member.id}`, (c) => c.cluster.memberRemove({ID: BigInt(`0x${member.id}`).toString()}))
          return `member ${member.id} removed; ${q.message}`
        })
      }
      if (has('etcd-stop')) {
        await runner.run('etcd-stop', async () => {
          const {remoteWipeScript, wipePaths} = await import('../etcd/paths.js')
          const svc = config.etcd.service
          await pool.run(node, sh`systemctl stop ${svc}; systemctl disable ${svc} >/dev/null 2>&1; true`, {timeoutMs: 60_000})
          const r = await pool.run(node, remoteWipeScript(wipePaths(config.etcd.dataDir, ['member']), config.etcd.dataDir))
          return `${svc} stopped; ${r.stdout.trim().split('\n').join(', ')}`
        })
      }
      if (has('agent-stop')) {
        await runner.run('agent-stop', async () => {
          const r = parseAgentStop((await pool.run(node, stopAgentScript(node.name))).stdout)
          if (r.outcome === 'unknown') throw new HactlError('the agent stop script gave no answer')
          return r.outcome === 'stopped' || r.outcome === 'killed' ? `${r.outcome} pid ${r.pid ?? '?'}` : r.outcome === 'foreign' ? `pid ${r.pid ?? '?'} is no announce agent; left alone` : 'was not running'
        })
      }
      if (has('asterisk-stop')) {
        await runner.run('asterisk-stop', async () => {
          const svc = config.asterisk.service
          await pool.run(node, sh`systemctl stop ${svc}; systemctl disable ${svc} >/dev/null 2>&1; true`, {timeoutMs: 60_000})
          return `${svc} stopped and disabled`
        })
      }
      if (has('registration') && etcd) {
        await runner.run('registration', async () => {
          const {clearMark} = await import('../etcd/marks.js')
          const key = `${config.etcd.prefixes.asterisk.endsWith('/') ? config.etcd.prefixes.asterisk : `${config.etcd.prefixes.asterisk}/`}${node.name}`
          const del = await etcd.call(`deleting the registration of ${node.name}`, (c) => c.delete().key(key).exec())
          const cleared = await clearMark(etcd, config.etcd.prefixes.maintenance, node.name)
          return [Number(del.deleted) > 0 ? `deleted ${key}` : '', cleared ? 'cleared the mark' : ''].filter(Boolean).join('; ') || 'nothing left to delete'
        })
      }
      if (has('dispatcher') && plan.sip) {
        const sip = plan.sip
        await runner.run('dispatcher', async (update) => {
          const {parseSipUri} = await import('../facts/kamailio.js')
          const kams = config.nodes.filter((n) => n.roles.includes('kamailio'))
          const setId = config.kamailio.setId
          const views = await readKamailioViews(config, pool, kams, sip.ip, config.asterisk.sipPort)
          const outcomes = await Promise.allSettled(
            kams.map(async (k) => {
              const v = views.find((x) => x.node === k.name)
              if (!v?.ok) {
                if (req.force) return undefined
                throw new HactlError(`${k.name} does not answer: ${v?.error ?? 'unknown error'}`)
              }
              if (v.inFile) {
                update(`${k.name}: writing ${config.kamailio.listFile}`)
                await writeListFile(config, pool, k, removeListDestination(v.fileText, setId, sip.ip, config.asterisk.sipPort, parseSipUri).text)
              }
              if (v.runtime) {
                update(`${k.name}: kamcmd dispatcher.remove`)
                await kamcmdRetrying(config, pool, k, ['dispatcher.remove', setId, sip.uri])
              }
              return k.name
            }),
          )
          const failed = outcomes.flatMap((o) => (o.status === 'rejected' ? [firstLine(o.reason)] : []))
          if (failed.length > 0) throw new HactlError(failed.join('; '))
          const done = outcomes.flatMap((o) => (o.status === 'fulfilled' && o.value ? [o.value] : []))
          const after = await readKamailioViews(config, pool, kams, sip.ip, config.asterisk.sipPort)
          const still = after.filter((x) => x.ok && (x.inFile || x.runtime))
          if (still.length > 0) throw new HactlError(`${sip.uri} is still listed on ${still.map((x) => x.node).join(', ')}`)
          return `removed from ${done.join(', ')}`
        })
      }
      await runner.run('inventory', async () => {
        const text = await readFile(config.file, 'utf8')
        await writeFileAtomic(config.file, removeNode(text, node.name, config.file))
        return config.file
      })
    } catch (error) {
      runner.skipRest('not run: an earlier step failed')
      result.durationMs = Date.now() - started
      const done = runner.records.filter((r) => r.status === 'done').map((r) => r.title)
      const left = runner.records.filter((r) => r.status !== 'done').map((r) => r.title)
      const failed = runner.records.find((r) => r.status === 'failed')
      const interrupted = error instanceof InterruptedError
      const msg = `node remove ${node.name} ${interrupted ? firstLine(error) : `failed at "${failed?.title ?? '?'}": ${firstLine(error)}`}; done: ${done.length > 0 ? done.join('; ') : 'nothing'}; left: ${left.join('; ')}`
      const exitCode = interrupted ? ExitCode.interrupted : ExitCode.failure
      await recordNodeHistory(config, etcd, {argv, plan: removePlanLines(plan), started, exitCode, node: node.name, ok: false, detail: msg}, warn).catch(() => undefined)
      throw new NodeRemoveError(
        msg,
        result,
        [
          ...(error instanceof HactlError && !interrupted ? error.suggestions : []),
          `${interrupted ? 'finish' : 'fix the cause, then finish'} the removal (done steps are skipped): ${bin} node remove ${node.name}${req.force ? ' --force' : ''}`,
        ],
        exitCode,
      )
    }
    result.ok = true
    result.durationMs = Date.now() - started
    await recordNodeHistory(config, etcd, {argv, plan: removePlanLines(plan), started, exitCode: 0, node: node.name, ok: true, detail: `removed in ${formatMs(result.durationMs)}`}, warn).catch((e: unknown) => warn(`history not written: ${firstLine(e)}`))
    return result
  } finally {
    if (lock) await lock.release().catch((e: unknown) => warn(`could not release the cluster lock: ${firstLine(e)}`))
    await etcd?.close().catch(() => undefined)
  }
}
