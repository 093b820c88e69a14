import {mkdtemp, readFile, rename, rm, stat, writeFile} from 'node:fs/promises'
import {lookup} from 'node:dns/promises'
import {isIP} from 'node:net'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {isMap, isScalar, parseDocument, type Document} from 'yaml'
import {addNode, removeNode} from '../config/edit.js'
import {etcdEndpoints, expandHome, parseConfig, type HactlConfig, type ResolvedNode} from '../config/load.js'
import {ROLES, type NodeInput, type Role} from '../config/schema.js'
import type {EtcdHandle} from '../etcd/client.js'
import type {EtcdClusterHealth} from '../etcd/health.js'
import {ExitCode, formatMs, HactlError, HostError, HostKeyMismatchError, InterruptedError, UserError} from '../errors.js'
import type {SshPool, SshPoolOptions} from '../ssh/pool.js'
import {sh} from '../ssh/quote.js'
import {hostRequirements, probeHostFacts, type HostFacts, type HostFactsRequest, type Requirement} from './host-facts.js'
import {
  agentFiles,
  appendListLine,
  commandLine,
  destinationLine,
  firstLine,
  kamcmdRetrying,
  openClusterEtcd,
  parseAgentStart,
  parseAgentStop,
  readKamailioViews,
  recordNodeHistory,
  removeListDestination,
  sleep,
  startAgentScript,
  StepRunner,
  stopAgentScript,
  takeClusterLock,
  UndoStack,
  waitUntilActive,
  writeListFile,
  type KamailioView,
  type NodeOpEvent,
  type StepRecord,
  type UndoOutcome,
} from './node-shared.js'
import {checkMemberAddition, type AdditionCheck, type QuorumMember} from './quorum.js'

/**
 * `hactl node add`: grow the cluster by one host, as facts → plan → apply with an undo stack.
 *
 * 1. Trust the host: connect once through a pool whose known_hosts is a temporary copy of the
 *    configured one (so nothing is written yet); a known key is checked, an unknown one is trusted
 *    only when it matches `--host-key-fingerprint` or the operator confirms it. A changed key of a
 *    known host fails as everywhere (HostKeyMismatchError).
 * 2. Facts (one round trip, `host-facts.ts`), etcd health, registrations, each Kamailio's list.
 * 3. Plan; `onPlan` prints and confirms it.
 * 4. Apply, each step pushing its undo: known_hosts, hactl.yaml (comment-preserving edit), etcd
 *    (member add as learner, the host's etcd configured with the existing cluster and
 *    `initial-cluster-state: existing`, discovery removed, start, promote once in sync), Asterisk
 *    (start, the announce agent in the background with a pid file, the box added to each
 *    Kamailio's list file and runtime list, wait until active everywhere). A failure unwinds
 *    the stack and reports what could not be undone.
 */

export interface NodeAddRequest {
  name: string
  host: string
  port?: number
  user?: string
  roles: Role[]
  weight?: number
  /** `SHA256:...`: trust the host key non-interactively when it matches. */
  hostKeyFingerprint?: string
  dryRun?: boolean
  /** How to run hactl on the host (default: `hactl`, else this machine's hactl if the host sees its path). */
  agentCommand?: string[]
  /** etcd learner catch-up and promotion (default 60 s). */
  promoteTimeoutMs?: number
  /** How long to wait for every Kamailio to list the box active (default 60 s). */
  activeTimeoutMs?: number
  /** Ctrl-C: no step starts after it; what was done is rolled back; exit 130. */
  signal?: AbortSignal
  /** `--wait-lock`: wait this long for another run's cluster lock instead of refusing. */
  waitLockMs?: number
}

export interface NodeAddContext {
  config: HactlConfig
  /** The run's pool (existing nodes: Kamailio, etcd tunnel). */
  pool: SshPool
  /** Options for the pool hactl opens to the new host. */
  poolOptions?: SshPoolOptions
  bin?: string
  /** argv after the program name, for the lock holder and the history. */
  argv?: string[]
}

export interface HostKeyInfo {
  host: string
  port: number
  type: string
  fingerprint: string
  /** Already in known_hosts for this host. */
  known: boolean
  knownHostsFile: string
}

export interface NodeAddHooks {
  /** Ask the operator to trust an unknown key. Absent: nobody can be asked. */
  confirmHostKey?(info: HostKeyInfo): Promise<boolean>
  /** The plan, before anything changes. Return false to cancel (nothing changed). */
  onPlan?(plan: NodeAddPlan): Promise<boolean | void> | boolean | void
  onEvent?(e: NodeOpEvent): void
  onWarning?(message: string): void
}

export type NodeAddStepId =
  | 'known-hosts'
  | 'inventory'
  | 'etcd-member'
  | 'etcd-config'
  | 'etcd-start'
  | 'etcd-promote'
  | 'asterisk-start'
  | 'agent-start'
  | 'dispatcher'
  | 'wait-active'

export interface NodeAddStep {
  id: NodeAddStepId
  title: string
}

export interface NodeAddPlan {
  node: {name: string; host: string; port: number; user: string; roles: Role[]; weight?: number}
  hostKey: HostKeyInfo
  host: HostFacts
  missing: Requirement[]
  /** Reasons the add cannot go ahead (nothing will change). */
  blockers: string[]
  suggestions: string[]
  warnings: string[]
  steps: NodeAddStep[]
  etcd?: {check: AdditionCheck; members: number; peerUrl: string; initialCluster: string}
  /** The address Kamailio sends SIP to, and the dispatcher URI. */
  sip?: {ip: string; uri: string}
  kamailio: Array<{node: string; ok: boolean; error?: string; inFile: boolean; flags: string | null}>
  agent?: {argv: string[]; how: string}
}

export interface NodeAddResult {
  node: string
  host: string
  roles: Role[]
  dryRun: boolean
  ok: boolean
  plan: NodeAddPlan
  steps: StepRecord[]
  durationMs: number
  etcd?: {memberId: string; voting: number; healthy: number}
  dispatcher?: Record<string, string>
  agentPid?: number
  rolledBack?: UndoOutcome[]
  cancelled?: boolean
}

/** A node add that failed after changing something: what was done, undone, and left. */
export class NodeAddError extends HactlError {
  readonly kind = 'node-add-failed'
  constructor(
    message: string,
    readonly result: NodeAddResult,
    suggestions: string[],
    exitCode?: number,
  ) {
    super(message, {suggestions, ...(exitCode === undefined ? {} : {exitCode})})
  }
}

/** The host offered another key than `--host-key-fingerprint` names. Exit 1, nothing changed. */
export class HostKeyRefusedError extends HostError {
  constructor(host: string, message: string, suggestions: string[]) {
    super('host-key-mismatch', host, message, {suggestions})
  }
}

// ---------------------------------------------------------------------------------------------
// Input

/** `asterisk,etcd` → roles, each once. UserError for an unknown role or an empty list. */
export function parseRoles(text: string): Role[] {
  const words = text
    .split(',')
    .map((w) => w.trim().toLowerCase())
    .filter((w) => w !== '')
  if (words.length === 0) throw new UserError('--roles is empty: give one or more of asterisk, etcd, kamailio, homer')
  const out: Role[] = []
  for (const w of words) {
    if (!(ROLES as readonly string[]).includes(w)) {
      throw new UserError(`unknown role "${w}" in --roles: the roles are ${ROLES.join(', ')}`, ['for example: --roles asterisk,etcd'])
    }
    if (!out.includes(w as Role)) out.push(w as Role)
  }
  return out
}

const FINGERPRINT_RE = /^SHA256:[A-Za-z0-9+/]{43}=?$/

/** `SHA256:<43 base64 characters>` (padding dropped, as ssh prints it). UserError otherwise. */
export function normalizeFingerprint(fp: string): string {
  const t = fp.trim()
  if (!FINGERPRINT_RE.test(t)) {
    throw new UserError(`--host-key-fingerprint "${fp}" is not a SHA256 fingerprint such as SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s`, [
      'print it on the host: ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub',
    ])
  }
  return t.replace(/=$/, '')
}

export interface ValidatedAdd {
  input: NodeInput
  /** The node as it will be in hactl.yaml. */
  node: ResolvedNode
  /** hactl.yaml before and after. */
  text: string
  newText: string
  newConfig: HactlConfig
  fingerprint?: string
}

/**
 * Check the request against the inventory without touching the network: name, host, port, user,
 * roles, weight; a name or host:port that exists already. UserError (exit 2) for each.
 */
export function validateNodeAdd(config: HactlConfig, text: string, req: NodeAddRequest): ValidatedAdd {
  if (req.roles.length === 0) throw new UserError('a node needs at least one role: --roles asterisk,etcd')
  if (req.weight !== undefined && !req.roles.includes('asterisk')) {
    throw new UserError(`--weight applies to Asterisk boxes only; ${req.name} has roles ${req.roles.join(', ')}`, ['add the asterisk role, or drop --weight'])
  }
  const fingerprint = req.hostKeyFingerprint === undefined ? undefined : normalizeFingerprint(req.hostKeyFingerprint)
  const input: NodeInput = {
    host: req.host,
    ...(req.port === undefined ? {} : {port: req.port}),
    ...(req.user === undefined ? {} : {user: req.user}),
    roles: [...req.roles],
    ...(req.weight === undefined ? {} : {weight: req.weight}),
  }
  const newText = addNode(text, req.name, input, config.file)
  const newConfig = {...parseConfig(newText, config.file), file: config.file}
  const node = newConfig.nodes.find((n) => n.name === req.name)
  if (!node) throw new HactlError(`bug: ${req.name} is not in the edited hactl.yaml`)
  return {input, node, text, newText, newConfig, ...(fingerprint ? {fingerprint} : {})}
}

// ---------------------------------------------------------------------------------------------
// etcd member configuration (pure)

export interface EtcdMemberSettings {
  name: string
  /** `name=peerURL,...` of every member, the new one included. */
  initialCluster: string
  peerUrl: string
  clientUrl: string
}

/**
 * The host's etcd configuration for joining a running cluster: name, initial-cluster (the existing
 * members and the new one), initial-cluster-state existing, the advertised peer URL; client and
 * listen URLs added when missing; discovery removed (a token is for bootstrap only).
 *
 * `cloud-config` (CoreOS user_data): keys under the mapping that holds the discovery key
 * (`coreos.etcd2` by default), edited through the YAML document so comments stay. `env` (an
 * environment file or a systemd drop-in): `ETCD_*=` lines.
 */
export function configureEtcdMember(
  text: string,
  loc: {format: 'cloud-config' | 'env'; key?: string | undefined},
  s: EtcdMemberSettings,
): string {
  const wanted: Array<[string, string, 'set' | 'default']> = [
    ['name', s.name, 'set'],
    ['initial-cluster', s.initialCluster, 'set'],
    ['initial-cluster-state', 'existing', 'set'],
    ['initial-advertise-peer-urls', s.peerUrl, 'set'],
    ['advertise-client-urls', s.clientUrl, 'default'],
    ['listen-peer-urls', s.peerUrl, 'default'],
    ['listen-client-urls', `${s.clientUrl},${s.clientUrl.replace(/\/\/[^:/]+|\/\/\[[^\]]+\]/, '//127.0.0.1')}`, 'default'],
  ]
  return loc.format === 'cloud-config' ? cloudConfigMember(text, loc.key ?? 'coreos.etcd2.discovery', wanted) : envMember(text, loc.key ?? 'ETCD_DISCOVERY', wanted)
}

function cloudConfigMember(text: string, discoveryKey: string, wanted: Array<[string, string, 'set' | 'default']>): string {
  const keyPath = discoveryKey.split('.')
  const section = keyPath.slice(0, -1)
  const discoveryName = keyPath.at(-1)!
  if (text.trim() !== '' && !text.startsWith('#cloud-config')) {
    throw new HactlError(`not a cloud-config file: the first line is ${JSON.stringify(text.split('\n', 1)[0] ?? '')}`, {
      suggestions: ['check etcd.discovery.format and etcd.discovery.file in hactl.yaml'],
    })
  }
  const doc: Document = parseDocument(text.trim() === '' ? '#cloud-config\n{}\n' : text)
  if (doc.errors.length > 0) throw new HactlError(`the host's cloud-config is not valid YAML: ${doc.errors[0]!.message}`)
  for (let i = 1; i <= section.length; i++) {
    const p = section.slice(0, i)
    const n = doc.getIn(p, true)
    if (n === undefined || n === null || (isScalar(n) && n.value === null)) doc.setIn(p, doc.createNode({}))
    else if (!isMap(n)) throw new HactlError(`${p.join('.')} in the host's cloud-config is not a mapping`)
  }
  if (section.length === 0 && !isMap(doc.contents)) doc.contents = doc.createNode({}) as typeof doc.contents
  for (const k of [discoveryName, 'discovery-srv', 'discovery-proxy', 'discovery-fallback']) doc.deleteIn([...section, k])
  for (const [k, v, how] of wanted) {
    if (how === 'default' && doc.hasIn([...section, k])) continue
    doc.setIn([...section, k], v)
  }
  let out = doc.toString({lineWidth: 0})
  if (!out.startsWith('#cloud-config')) out = `#cloud-config\n${out}`
  return out
}

function envMember(text: string, discoveryVar: string, wanted: Array<[string, string, 'set' | 'default']>): string {
  const lines = text === '' ? [] : text.replace(/\n$/, '').split('\n')
  const dropIn = lines.some((l) => /^\s*\[[^\]]+\]\s*$/.test(l) || /^\s*Environment\s*=/.test(l))
  const assigns = (line: string): string | undefined => {
    const t = line.trim()
    if (t.startsWith('#') || t.startsWith(';')) return undefined
    const sys = /^Environment\s*=\s*["']?([A-Za-z_][A-Za-z0-9_]*)=/.exec(t)
    if (sys) {
      // One assignment per Environment= line is all hactl rewrites safely.
      if (/^Environment\s*=\s*(?:"[^"]*"|'[^']*'|\S+)\s+\S/.test(t)) {
        throw new HactlError(`cannot edit ${JSON.stringify(t)} safely: several assignments on one Environment= line`, {
          suggestions: ['put one variable per Environment= line in the drop-in'],
        })
      }
      return sys[1]
    }
    return /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=/.exec(t)?.[1]
  }
  const varOf = (k: string) => `ETCD_${k.toUpperCase().replace(/-/g, '_')}`
  const render = (name: string, value: string) => (dropIn ? `Environment="${name}=${value.replaceAll('%', '%%')}"` : `${name}=${value}`)
  const drop = new Set([discoveryVar, 'ETCD_DISCOVERY_SRV', 'ETCD_DISCOVERY_PROXY', 'ETCD_DISCOVERY_FALLBACK'])
  const present = new Set(lines.map(assigns).filter((x): x is string => x !== undefined))
  const setVars = new Map(wanted.filter(([k, , how]) => how === 'set' || !present.has(varOf(k))).map(([k, v]) => [varOf(k), v]))
  const out: string[] = []
  const written = new Set<string>()
  for (const l of lines) {
    const v = assigns(l)
    if (v !== undefined && drop.has(v)) continue
    if (v !== undefined && setVars.has(v)) {
      if (!written.has(v)) out.push(render(v, setVars.get(v)!))
      written.add(v)
      continue
    }
    out.push(l)
  }
  const rest = [...setVars.entries()].filter(([v]) => !written.has(v)).map(([v, value]) => render(v, value))
  if (dropIn && rest.length > 0) {
    const service = out.findIndex((l) => l.trim() === '[Service]')
    if (service < 0) out.push('[Service]', ...rest)
    else {
      let at = service + 1
      for (let i = service + 1; i < out.length && !/^\s*\[/.test(out[i]!); i++) if (out[i]!.trim() !== '') at = i + 1
      out.splice(at, 0, ...rest)
    }
  } else out.push(...rest)
  return `${out.join('\n')}\n`
}

/** The peer URL of a new member: the scheme and port the other members use (http, 2380 by default). */
export function peerUrlFor(host: string, existingPeerUrls: readonly string[]): string {
  let scheme = 'http:'
  let port = '2380'
  for (const u of existingPeerUrls) {
    try {
      const url = new URL(u)
      scheme = url.protocol
      port = url.port || port
      break
    } catch {
      // not a URL: keep the defaults
    }
  }
  return `${scheme}//${bracket(host)}:${port}`
}

export function clientUrlFor(config: HactlConfig, host: string): string {
  return `${config.etcd.tls ? 'https' : 'http'}://${bracket(host)}:${config.etcd.clientPort}`
}

function bracket(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host
}

/** `name=peer,...` for the existing members and the new one (by its member ID). */
export function initialClusterOf(members: ReadonlyArray<{ID?: string; id?: string; name: string; peerURLs?: string[]}>, newMember: {id?: string; name: string; peerUrl: string}): string {
  const parts: string[] = []
  let sawNew = false
  for (const m of members) {
    const id = m.ID ?? m.id
    const isNew = (newMember.id !== undefined && id === newMember.id) || (m.peerURLs ?? []).includes(newMember.peerUrl)
    if (isNew) sawNew = true
    const name = isNew ? newMember.name : m.name
    if (!name) continue
    for (const p of isNew ? [newMember.peerUrl] : (m.peerURLs ?? [])) parts.push(`${name}=${p}`)
  }
  if (!sawNew) parts.push(`${newMember.name}=${newMember.peerUrl}`)
  return parts.join(',')
}

// ---------------------------------------------------------------------------------------------
// Plan (pure)

export interface NodeAddFacts {
  node: ResolvedNode
  hostKey: HostKeyInfo
  host: HostFacts
  requirements: {missing: Requirement[]; warnings: string[]}
  configFile: string
  etcd?: {
    members: Array<QuorumMember & {peerURLs: string[]}>
    hasLeader: boolean
    serviceName: string
    discoveryFile: string
  }
  /** The address for SIP and the registration (node.host, resolved when it is a name). */
  sipIp?: string
  sipPort: number
  setId: number
  registration?: {ip: string; port: number} | null
  mark?: {state: string; by: string; since: string} | null
  kamailio: KamailioView[]
  agent?: {argv: string[]; how: string}
  tlsOrAuth?: boolean
}

export function planNodeAdd(f: NodeAddFacts, opts: {bin?: string} = {}): NodeAddPlan {
  const bin = opts.bin ?? 'hactl'
  const n = f.node
  const blockers: string[] = []
  const suggestions: string[] = []
  const warnings = [...f.requirements.warnings]
  const steps: NodeAddStep[] = []
  const roles = n.roles
  if (f.requirements.missing.length > 0) {
    blockers.push(`${n.name} lacks what its roles need: ${f.requirements.missing.map((m) => m.what).join('; ')}`)
    suggestions.push(...f.requirements.missing.map((m) => m.fix))
  }
  if (!f.hostKey.known) steps.push({id: 'known-hosts', title: `trust ${f.hostKey.host}'s ${f.hostKey.type} key ${f.hostKey.fingerprint}: add it to ${f.hostKey.knownHostsFile}`})
  steps.push({
    id: 'inventory',
    title: `add ${n.name} to ${f.configFile} (host ${n.host}${n.port === 22 ? '' : `, port ${n.port}`}, roles ${roles.join(', ')}${n.weight === undefined ? '' : `, weight ${n.weight}`})`,
  })

  let etcdPlan: NodeAddPlan['etcd']
  if (roles.includes('etcd') && f.etcd) {
    const check = checkMemberAddition(f.etcd.members, {hasLeader: f.etcd.hasLeader})
    if (!check.ok) {
      blockers.push(check.message)
      suggestions.push(`see the members: ${bin} status`)
    }
    const peerUrl = peerUrlFor(n.host, f.etcd.members.flatMap((m) => m.peerURLs))
    const hostKeyOf = (u: string) => {
      try {
        return new URL(u).hostname.replace(/^\[(.*)\]$/, '$1').toLowerCase()
      } catch {
        return ''
      }
    }
    const clash = f.etcd.members.find((m) => m.name === n.name || m.peerURLs.some((u) => hostKeyOf(u) === n.host.replace(/^\[(.*)\]$/, '$1').toLowerCase()))
    if (clash) {
      blockers.push(`etcd has a member ${clash.name || clash.id} with ${clash.name === n.name ? 'the name' : 'the host'} of ${n.name} already`)
      suggestions.push(`if it is a leftover, remove it first: etcdctl member remove ${clash.id}`)
    }
    const initialCluster = initialClusterOf(f.etcd.members, {name: n.name, peerUrl})
    etcdPlan = {check, members: f.etcd.members.length, peerUrl, initialCluster}
    steps.push({id: 'etcd-member', title: `add ${n.name} to etcd as a learner (peer URL ${peerUrl})`})
    steps.push({
      id: 'etcd-config',
      title: `configure etcd on ${n.name} in ${f.etcd.discoveryFile}: the ${f.etcd.members.length} members plus ${n.name}, initial-cluster-state existing, no discovery`,
    })
    steps.push({id: 'etcd-start', title: `enable and start ${f.etcd.serviceName} on ${n.name}`})
    steps.push({id: 'etcd-promote', title: `wait until ${n.name} has caught up, promote it to a voting member`})
  }

  let sip: NodeAddPlan['sip']
  if (roles.includes('asterisk')) {
    const ip = f.sipIp
    if (!ip) {
      blockers.push(`cannot resolve ${n.host} to an IP address for the registration and the dispatcher list`)
      suggestions.push('use the IP address as --host')
    } else {
      sip = {ip, uri: `sip:${bracket(ip)}:${f.sipPort}`}
    }
    if (f.registration) {
      blockers.push(`${n.name} is registered in etcd already (ip ${f.registration.ip}:${f.registration.port}): another box announces this name`)
      suggestions.push('pick another name, or stop the agent that announces it')
    }
    if (f.mark) {
      blockers.push(`etcd has a maintenance mark for ${n.name} (${f.mark.state} by ${f.mark.by} since ${f.mark.since}), left from an earlier box of that name`)
      suggestions.push(`pick another name, or delete the mark: etcdctl del ${'/hactl/maintenance/'}${n.name}`)
    }
    const down = f.kamailio.filter((k) => !k.ok)
    if (down.length > 0) {
      blockers.push(`${down.map((k) => `${k.node} does not answer (${k.error ?? ''})`).join('; ')}: the box could not be put in rotation there`)
      suggestions.push(`check the Kamailio hosts: ${bin} status ${down.map((k) => k.node).join(' ')}`)
    }
    if (f.kamailio.length === 0) warnings.push('no node has the kamailio role: the box goes in no dispatcher list')
    if (f.tlsOrAuth) warnings.push('etcd uses TLS or auth: the announce agent gets --endpoints only; give it a hactl.yaml on the host if it cannot register')
    steps.push({id: 'asterisk-start', title: `enable and start Asterisk (${'asterisk'}) on ${n.name}, wait until its CLI answers`})
    steps.push({
      id: 'agent-start',
      title: `start the announce agent on ${n.name} (${f.agent ? f.agent.argv.map((a) => path.basename(a)).join(' ') : 'hactl'} agent announce, pid in ${agentFiles(n.name).pidFile}), wait for its registration`,
    })
    if (f.kamailio.length > 0 && sip) {
      const toAdd = f.kamailio.filter((k) => !k.inFile || !k.runtime).map((k) => k.node)
      steps.push({
        id: 'dispatcher',
        title:
          toAdd.length > 0
            ? `add ${sip.uri} to the dispatcher list of ${toAdd.join(', ')} (list file, and dispatcher.add at runtime)`
            : `${sip.uri} is in every dispatcher list already`,
      })
      steps.push({id: 'wait-active', title: `wait until ${f.kamailio.map((k) => k.node).join(', ')} list ${n.name} as active`})
    }
  }

  return {
    node: {name: n.name, host: n.host, port: n.port, user: n.user, roles: [...roles], ...(n.weight === undefined ? {} : {weight: n.weight})},
    hostKey: f.hostKey,
    host: f.host,
    missing: f.requirements.missing,
    blockers,
    suggestions: [...new Set(suggestions)],
    warnings,
    steps,
    ...(etcdPlan ? {etcd: etcdPlan} : {}),
    ...(sip ? {sip} : {}),
    kamailio: f.kamailio.map((k) => ({node: k.node, ok: k.ok, ...(k.error ? {error: k.error} : {}), inFile: k.inFile, flags: k.runtime?.flags ?? null})),
    ...(f.agent ? {agent: f.agent} : {}),
  }
}

/** The plan as lines, for the history. */
export function addPlanLines(plan: NodeAddPlan): string[] {
  return [
    `${plan.node.name} (${plan.node.host}): ${plan.host.hostname || '?'}, ${plan.host.os || '?'}`,
    ...plan.blockers.map((b) => `  cannot add: ${b}`),
    ...plan.steps.map((s, i) => `  ${i + 1}. ${s.title}`),
  ]
}

// ---------------------------------------------------------------------------------------------
// The host key

export interface HostKeyProbe {
  info: HostKeyInfo
  /** The known_hosts line to append (when the key is new). */
  name: string
  key: Buffer
  /** A pool for the new host whose known_hosts (a temporary copy) holds the key. */
  pool: SshPool
  close(): Promise<void>
}

/**
 * Connect to the new host with a temporary copy of known_hosts (`accept-new`), so its key can be
 * shown and checked before anything is written. A key that contradicts known_hosts is refused by
 * the pool as everywhere (HostKeyMismatchError).
 */
export async function probeHostKey(config: HactlConfig, node: ResolvedNode, poolOptions: SshPoolOptions = {}): Promise<HostKeyProbe> {
  const [{SshPool}, kh] = await Promise.all([import('../ssh/pool.js'), import('../ssh/known-hosts.js')])
  const realFile = expandHome(config.ssh.knownHosts)
  const dir = await mkdtemp(path.join(tmpdir(), 'hactl-node-add-'))
  const tmpFile = path.join(dir, 'known_hosts')
  let original = ''
  try {
    original = await readFile(realFile, 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
  }
  await writeFile(tmpFile, original, {mode: 0o600})
  const probeConfig: HactlConfig = {...config, ssh: {...config.ssh, knownHosts: tmpFile, strictHostKeyChecking: 'accept-new'}}
  const pool = new SshPool(probeConfig, {...poolOptions, concurrency: 4})
  const close = async () => {
    await pool.close().catch(() => undefined)
    await rm(dir, {recursive: true, force: true}).catch(() => undefined)
  }
  try {
    await pool.connect(node)
    const offered = await pool.hostKeyOf(node)
    const after = await readFile(tmpFile, 'utf8')
    let name: string
    let key: Buffer
    let known: boolean
    if (after.length > original.length && after.startsWith(original)) {
      const entry = kh.parseKnownHosts(after.slice(original.length), tmpFile).find((e) => e.fingerprint === offered.fingerprint)
      if (!entry) throw new HactlError(`bug: the probe did not record ${node.host}'s key`)
      name = entry.hostField
      key = entry.key
      known = false
    } else {
      const entry = kh.parseKnownHosts(original, realFile).find((e) => e.fingerprint === offered.fingerprint && !e.revoked)
      if (!entry) throw new HactlError(`bug: ${node.host}'s key is neither known nor recorded`)
      name = kh.knownHostsName(node.host, node.port)
      key = entry.key
      known = true
    }
    return {info: {host: node.host, port: node.port, type: offered.type, fingerprint: offered.fingerprint, known, knownHostsFile: realFile}, name, key, pool, close}
  } catch (error) {
    await close()
    throw inRealKnownHosts(error, tmpFile, realFile)
  }
}

/**
 * The probe's errors name its temporary copy of known_hosts; the operator must see (and fix) the
 * real file. The copy has the same bytes, so line numbers hold.
 */
function inRealKnownHosts(error: unknown, tmpFile: string, realFile: string): unknown {
  if (!(error instanceof HostError) || !`${error.message}\n${error.suggestions.join('\n')}`.includes(tmpFile)) return error
  if (error instanceof HostKeyMismatchError) {
    return new HostKeyMismatchError(error.host, {expected: error.expected, actual: error.actual, file: realFile, line: error.line})
  }
  return new HostError(error.kind, error.host, error.message.replaceAll(tmpFile, realFile), {
    suggestions: error.suggestions.map((x) => x.replaceAll(tmpFile, realFile)),
    exitCode: error.exitCode,
    cause: error,
  })
}

/** Decide whether to trust the probed key; throws when it is not trusted (nothing changed). */
export async function decideHostKey(probe: HostKeyInfo, opts: {fingerprint?: string; confirm?: (info: HostKeyInfo) => Promise<boolean>; bin?: string; argv?: string[]}): Promise<'known' | 'flag' | 'confirmed'> {
  const where = probe.port === 22 ? probe.host : `${probe.host}:${probe.port}`
  if (opts.fingerprint !== undefined) {
    if (opts.fingerprint !== probe.fingerprint) {
      throw new HostKeyRefusedError(
        where,
        `${where} offered the ${probe.type} key ${probe.fingerprint}, not ${opts.fingerprint} (--host-key-fingerprint); refusing it, nothing was changed`,
        ['check the fingerprint on the host itself (its console): ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub', 'a different key may mean the wrong host, or someone in between'],
      )
    }
    return probe.known ? 'known' : 'flag'
  }
  if (probe.known) return 'known'
  if (!opts.confirm) {
    throw new UserError(
      `${where}: unknown host key ${probe.type} ${probe.fingerprint}, and no terminal to confirm it on; nothing was changed`,
      [
        `check the fingerprint on the host itself (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub); if it matches, run again with --host-key-fingerprint ${probe.fingerprint}`,
      ],
    )
  }
  if (!(await opts.confirm(probe))) throw new HactlError(`${where}'s host key was not trusted; nothing was changed`)
  return 'confirmed'
}

/** Remove one known_hosts line (the one hactl appended), leaving every other byte. */
async function removeKnownHostsLine(file: string, line: string): Promise<void> {
  const text = await readFile(file, 'utf8')
  const lines = text.split('\n')
  const i = lines.lastIndexOf(line)
  if (i < 0) return
  lines.splice(i, 1)
  await writeFileAtomic(file, lines.join('\n'))
}

/** Write through a temporary file in the same directory, keeping the file's mode. */
export async function writeFileAtomic(file: string, text: string): Promise<void> {
  let mode = 0o600
  try {
    mode = (await stat(file)).mode & 0o777
  } catch {
    // new file
  }
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.hactl-${process.pid}-${Date.now()}`)
  await writeFile(tmp, text, {mode})
  try {
    await rename(tmp, file)
  } catch (error) {
    await rm(tmp, {force: true}).catch(() => undefined)
    throw error
  }
}

// ---------------------------------------------------------------------------------------------
// Remote files

const FM = '@@hactl-file'

function readFileScript(file: string): string {
  return sh`if [ -e ${file} ]; then echo ${`${FM} present`}; base64 <${file} | tr -d '\\n'; echo; else echo ${`${FM} absent`}; fi`
}

function parseReadFile(stdout: string): {exists: boolean; text: string} {
  const lines = stdout.split('\n')
  const at = lines.findIndex((l) => l.startsWith(`${FM} `))
  if (at < 0) throw new HactlError('reading a file on the host: no answer')
  if (lines[at] !== `${FM} present`) return {exists: false, text: ''}
  return {exists: true, text: Buffer.from((lines[at + 1] ?? '').trim(), 'base64').toString('utf8')}
}

async function readRemoteFile(pool: SshPool, node: ResolvedNode, file: string): Promise<{exists: boolean; text: string}> {
  const r = await pool.run(node, readFileScript(file))
  return parseReadFile(r.stdout)
}

async function writeRemoteFile(pool: SshPool, node: ResolvedNode, file: string, text: string): Promise<void> {
  const {buildWriteScript} = await import('./dispatcher-sync.js')
  await pool.run(node, sh`mkdir -p "$(dirname -- ${file})"` + '\n' + buildWriteScript(file), {stdin: text})
}

// ---------------------------------------------------------------------------------------------
// Apply

function localHactl(): {node: string; runJs: string} {
  return {node: process.execPath, runJs: fileURLToPath(new URL('../../../bin/run.js', import.meta.url))}
}

function memberFromHealth(h: EtcdClusterHealth): Array<QuorumMember & {peerURLs: string[]}> {
  return h.members.map((m) => ({id: m.id, name: m.name, healthy: m.healthy, isLearner: m.isLearner, peerURLs: m.peerURLs}))
}

/** Add a node: see the module comment. Throws NodeAddError after a failed apply (rolled back). */
export async function addNodeToCluster(ctx: NodeAddContext, req: NodeAddRequest, hooks: NodeAddHooks = {}): Promise<NodeAddResult> {
  const started = Date.now()
  const {config, pool} = ctx
  const bin = ctx.bin ?? 'hactl'
  const argv = ctx.argv ?? ['node', 'add', req.name, '--host', req.host]
  const warn = (m: string) => hooks.onWarning?.(m)
  const text = await readFile(config.file, 'utf8')
  const v = validateNodeAdd(config, text, req)
  const node = v.node

  // 1. Trust the host.
  const probe = await probeHostKey(config, node, ctx.poolOptions)
  let etcd: EtcdHandle | undefined
  let lock: {release(): Promise<void>} | undefined
  try {
    await decideHostKey(probe.info, {
      ...(v.fingerprint ? {fingerprint: v.fingerprint} : {}),
      ...(hooks.confirmHostKey ? {confirm: hooks.confirmHostKey} : {}),
      bin,
      argv,
    })
    const hostPool = probe.pool

    // 2. Facts.
    const factsReq: HostFactsRequest = {
      roles: node.roles,
      dataDir: config.etcd.dataDir,
      etcdService: config.etcd.service,
      asteriskService: config.asterisk.service,
      asteriskCli: config.asterisk.cli,
      ...(req.agentCommand && req.agentCommand.length > 0 ? {agentCommand: req.agentCommand} : {}),
      localHactl: localHactl(),
    }
    // etcd holds the lock and the history even when the new node has nothing to do with it.
    const needsEtcd = node.roles.includes('etcd') || node.roles.includes('asterisk') || etcdEndpoints(config).length > 0
    etcd = needsEtcd ? await openClusterEtcd(config, pool) : undefined
    if (etcd && !req.dryRun) lock = await takeClusterLock(config, etcd, commandLine(bin, argv), warn, req.waitLockMs)
    const kams = config.nodes.filter((n) => n.roles.includes('kamailio'))
    let sipIp: string | undefined
    if (node.roles.includes('asterisk')) {
      sipIp = isIP(node.host.replace(/^\[(.*)\]$/, '$1')) ? node.host.replace(/^\[(.*)\]$/, '$1') : await lookup(node.host).then((a) => a.address, () => undefined)
    }
    const [host, health, regs, marks, kamViews] = await Promise.all([
      probeHostFacts(hostPool, node, factsReq),
      node.roles.includes('etcd') && etcd ? (await import('../etcd/health.js')).etcdClusterHealth(etcd) : Promise.resolve(undefined),
      node.roles.includes('asterisk') && etcd ? (await import('../etcd/registrations.js')).listRegistrations(etcd, config.etcd.prefixes.asterisk) : Promise.resolve(undefined),
      node.roles.includes('asterisk') && etcd ? (await import('../etcd/marks.js')).getMarks(etcd, config.etcd.prefixes.maintenance) : Promise.resolve(undefined),
      node.roles.includes('asterisk') && sipIp ? readKamailioViews(config, pool, kams, sipIp, config.asterisk.sipPort) : Promise.resolve([] as KamailioView[]),
    ])
    const requirements = hostRequirements(host, factsReq)
    const reg = regs?.find((r) => r.name === node.name)
    const mark = marks?.find((m) => m.node === node.name)
    const plan = planNodeAdd(
      {
        node,
        hostKey: probe.info,
        host,
        requirements,
        configFile: config.file,
        ...(health
          ? {etcd: {members: memberFromHealth(health), hasLeader: health.leaderId !== undefined, serviceName: config.etcd.service, discoveryFile: config.etcd.discovery.file}}
          : {}),
        ...(sipIp ? {sipIp} : {}),
        sipPort: config.asterisk.sipPort,
        setId: config.kamailio.setId,
        registration: reg ? {ip: reg.ip, port: reg.port} : null,
        mark: mark ? {state: mark.state, by: mark.by, since: mark.since} : null,
        kamailio: kamViews,
        ...(host.agent ? {agent: host.agent} : {}),
        tlsOrAuth: Boolean(config.etcd.tls || config.etcd.auth),
      },
      {bin},
    )
    const base: NodeAddResult = {node: node.name, host: node.host, roles: node.roles, dryRun: Boolean(req.dryRun), ok: false, plan, steps: [], durationMs: 0}
    if (plan.blockers.length > 0) {
      // Shown as the plan, then refused: nothing was changed.
      await hooks.onPlan?.(plan)
      throw new HactlError(`cannot add ${node.name}; nothing was changed: ${plan.blockers.join('; ')}`, {suggestions: plan.suggestions})
    }
    if (req.dryRun) {
      await hooks.onPlan?.(plan)
      return {...base, ok: true, durationMs: Date.now() - started}
    }
    const go = await hooks.onPlan?.(plan)
    if (go === false) return {...base, cancelled: true, durationMs: Date.now() - started}
    if (req.signal?.aborted) throw new InterruptedError(`node add ${node.name} interrupted before anything changed`)

    // 4. Apply.
    const runner = new StepRunner(plan.steps, hooks.onEvent, req.signal)
    const undo = new UndoStack()
    const result: NodeAddResult = {...base, steps: runner.records}
    try {
      await applyAdd({ctx, req, v, plan, probe, hostPool, etcd, runner, undo, result})
      result.ok = true
    } catch (error) {
      runner.skipRest('not run: an earlier step failed')
      const rolledBack = await undo.unwind((o) => hooks.onEvent?.({type: 'undo', title: o.title, ok: o.ok, ...(o.error ? {error: o.error} : {})}))
      result.rolledBack = rolledBack
      result.durationMs = Date.now() - started
      const failedUndo = rolledBack.filter((o) => !o.ok)
      const failedStep = runner.records.find((r) => r.status === 'failed')
      const interrupted = error instanceof InterruptedError
      const msg =
        (interrupted
          ? `node add ${node.name} ${firstLine(error)}; `
          : `node add ${node.name} failed at "${failedStep?.title ?? '?'}": ${firstLine(error)}; `) +
        (failedUndo.length === 0
          ? rolledBack.length > 0
            ? 'rolled back: everything done was undone'
            : 'nothing had been changed'
          : `rolled back, except: ${failedUndo.map((o) => `${o.title} (${o.error ?? 'failed'})`).join('; ')}; these are left to undo by hand`)
      const exitCode = interrupted ? ExitCode.interrupted : ExitCode.failure
      await recordNodeHistory(config, etcd, {argv, plan: addPlanLines(plan), started, exitCode, node: node.name, ok: false, detail: msg}, warn).catch(() => undefined)
      throw new NodeAddError(
        msg,
        result,
        [
          ...(error instanceof HactlError ? error.suggestions : []),
          ...(failedUndo.length > 0 ? [`see what is left: ${bin} status`] : [interrupted ? `run the same command again to add it` : `fix the cause, then run the same command again`]),
        ],
        exitCode,
      )
    }
    result.durationMs = Date.now() - started
    await recordNodeHistory(config, etcd, {argv, plan: addPlanLines(plan), started, exitCode: 0, node: node.name, ok: true, detail: `added in ${formatMs(result.durationMs)}`}, warn).catch((e: unknown) => warn(`history not written: ${firstLine(e)}`))
    return result
  } finally {
    if (lock) await lock.release().catch((e: unknown) => warn(`could not release the cluster lock: ${firstLine(e)}`))
    await etcd?.close().catch(() => undefined)
    await probe.close()
  }
}

interface ApplyState {
  ctx: NodeAddContext
  req: NodeAddRequest
  v: ValidatedAdd
  plan: NodeAddPlan
  probe: HostKeyProbe
  hostPool: SshPool
  etcd: EtcdHandle | undefined
  runner: StepRunner
  undo: UndoStack
  result: NodeAddResult
}

async function applyAdd(s: ApplyState): Promise<void> {
  const {ctx, v, plan, probe, hostPool, runner, undo, result} = s
  const {config, pool} = ctx
  const node = v.node
  const has = (id: NodeAddStepId) => plan.steps.some((st) => st.id === id)

  if (has('known-hosts')) {
    await runner.run('known-hosts', async () => {
      const {appendKnownHost, formatKnownHostsLine} = await import('../ssh/known-hosts.js')
      const entry = await appendKnownHost(probe.info.knownHostsFile, probe.name, probe.key)
      const line = formatKnownHostsLine(probe.name, probe.key)
      undo.push(`remove ${probe.name}'s key from ${probe.info.knownHostsFile}`, () => removeKnownHostsLine(probe.info.knownHostsFile, line))
      return `${probe.info.knownHostsFile}:${entry.line}`
    })
  }

  await runner.run('inventory', async () => {
    const file = config.file
    const current = await readFile(file, 'utf8')
    // Someone edited the file since it was read: apply the same change to what is there now.
    const target = current === v.text ? v.newText : addNode(current, node.name, v.input, file)
    await writeFileAtomic(file, target)
    undo.push(`remove ${node.name} from ${file}`, async () => {
      const now = await readFile(file, 'utf8')
      await writeFileAtomic(file, now === target ? current : removeNode(now, node.name, file))
    })
    return file
  })

  if (node.roles.includes('etcd') && plan.etcd && s.etcd) {
    const etcd = s.etcd
    let memberId = ''
    let initialCluster = plan.etcd.initialCluster
    await runner.run('etcd-member', async () => {
      // etcd refuses a member change ("etcdserver: unhealthy cluster") until every member has been
      // connected for 5 s, e.g. just after another member came back: nothing was added, try again.
      const until = Date.now() + 15_000
      let res
      for (;;) {
        try {
          res = await etcd.call(`adding ${node.name} to etcd as a learner`, (c) => c.cluster.memberAdd({peerURLs: [plan.etcd!.peerUrl], isLearner: true}))
          break
        } catch (error) {
          if (!/unhealthy cluster/.test((error as Error).message) || Date.now() > until) throw error
          await sleep(1000)
        }
      }
      memberId = res.member.ID
      initialCluster = initialClusterOf(res.members, {id: memberId, name: node.name, peerUrl: plan.etcd!.peerUrl})
      undo.push(`remove etcd member ${node.name} (${hexOf(memberId)})`, async () => {
        await etcd.call(`removing the etcd member ${node.name}`, (c) => c.cluster.memberRemove({ID: memberId}))
      })
      return `member ${hexOf(memberId)}, learner`
    })
    await runner.run('etcd-config', async () => {
      const file = config.etcd.discovery.file
      const before = await readRemoteFile(hostPool, node, file)
      const text = configureEtcdMember(before.text, {format: config.etcd.discovery.format, key: config.etcd.discovery.key}, {
        name: node.name,
        initialCluster,
        peerUrl: plan.etcd!.peerUrl,
        clientUrl: clientUrlFor(config, node.host),
      })
      await writeRemoteFile(hostPool, node, file, text)
      undo.push(`restore ${file} on ${node.name}`, async () => {
        if (before.exists) await writeRemoteFile(hostPool, node, file, before.text)
        else await hostPool.run(node, sh`rm -f ${file}`)
      })
      return file
    })
    await runner.run('etcd-start', async (update) => {
      const svc = config.etcd.service
      undo.push(`stop and disable ${svc} on ${node.name}, remove its data`, async () => {
        const {remoteWipeScript, wipePaths} = await import('../etcd/paths.js')
        await hostPool.run(node, sh`systemctl stop ${svc}; systemctl disable ${svc} >/dev/null 2>&1; true`, {timeoutMs: 60_000})
        await hostPool.run(node, remoteWipeScript(wipePaths(config.etcd.dataDir, ['member']), config.etcd.dataDir))
      })
      update(`systemctl enable --now ${svc}`)
      // daemon-reload first: with etcd.discovery.format env the settings may live in a drop-in.
      await hostPool.run(node, sh`systemctl daemon-reload >/dev/null 2>&1; systemctl enable ${svc} >/dev/null 2>&1; systemctl start ${svc}`, {
        timeoutMs: 120_000,
        timeoutName: 'the etcd start timeout (120s)',
      })
      return `${svc} active`
    })
    await runner.run('etcd-promote', async (update) => {
      const deadline = Date.now() + (s.req.promoteTimeoutMs ?? 60_000)
      for (let attempt = 1; ; attempt++) {
        try {
          await etcd.call(`promoting ${node.name}`, (c) => c.cluster.memberPromote({ID: memberId}))
          break
        } catch (error) {
          const msg = (error as Error).message
          if (/can only promote a learner member which is in sync with leader|not ready|too many requests/i.test(msg) && Date.now() < deadline) {
            update(`catching up with the leader (attempt ${attempt})`)
            await sleep(500)
            continue
          }
          // A promote that succeeded but whose answer was lost: the member is a voter now.
          if (/can only promote a learner member/i.test(msg)) {
            const list = await etcd.call('listing etcd members', (c) => c.cluster.memberList({}))
            if (list.members.some((m) => m.ID === memberId && !m.isLearner)) break
          }
          throw error
        }
      }
      update('checking the cluster health')
      const {etcdClusterHealth} = await import('../etcd/health.js')
      const until = Date.now() + 20_000
      for (;;) {
        const h = await etcdClusterHealth(etcd)
        const me = h.members.find((m) => m.id === hexOf(memberId))
        if (me && !me.isLearner && me.healthy && h.healthyCount === h.total) {
          result.etcd = {memberId: me.id, voting: h.members.filter((m) => !m.isLearner).length, healthy: h.healthyCount}
          return `voting member; ${h.healthyCount} of ${h.total} members healthy`
        }
        if (Date.now() > until) {
          throw new HactlError(`${node.name} was promoted, but etcd is not healthy yet: ${h.members.map((m) => `${m.name || m.id} ${m.healthy ? 'healthy' : (m.error ?? 'unhealthy')}`).join(', ')}`)
        }
        await sleep(500)
      }
    })
  }

  if (node.roles.includes('asterisk') && plan.sip) {
    const sip = plan.sip
    await runner.run('asterisk-start', async () => {
      const {startAsterisk} = await import('../asterisk.js')
      const svc = config.asterisk.service
      const was = (await hostPool.run(node, sh`systemctl is-active ${svc}`, {check: false})).stdout.trim()
      await hostPool.run(node, sh`systemctl enable ${svc} >/dev/null 2>&1; true`)
      undo.push(`stop and disable ${svc} on ${node.name}`, async () => {
        await hostPool.run(node, `${was === 'active' ? '' : sh`systemctl stop ${svc}; `}${sh`systemctl disable ${svc} >/dev/null 2>&1; true`}`, {timeoutMs: 60_000})
      })
      const r = await startAsterisk({config, pool: hostPool}, node, {deadline: Date.now() + 60_000, pollMs: 200})
      if (r.outcome !== 'started') throw new HactlError(`Asterisk on ${node.name} did not answer within 60s after systemctl start`, {suggestions: [`ssh to the host: systemctl status ${svc}`]})
      return was === 'active' ? 'was running already' : `answers after ${formatMs(r.durationMs)}`
    })
    await runner.run('agent-start', async (update) => {
      const agentArgv = plan.agent?.argv ?? ['hactl']
      const newEndpoints = etcdEndpoints(v.newConfig)
      const args = [
        'agent',
        'announce',
        '--name',
        node.name,
        '--ip',
        sip.ip,
        '--port',
        String(config.asterisk.sipPort),
        '--prefix',
        config.etcd.prefixes.asterisk,
        '--endpoints',
        newEndpoints.join(','),
        ...(node.weight === undefined ? [] : ['--weight', String(node.weight)]),
      ]
      // Pushed first: a start that times out may still have started the agent; the stop script
      // is harmless when none runs.
      undo.push(`stop the announce agent on ${node.name}`, async () => {
        const out = parseAgentStop((await hostPool.run(node, stopAgentScript(node.name))).stdout)
        if (out.outcome === 'unknown') throw new HactlError('the agent stop script gave no answer')
        if (s.etcd) await s.etcd.call(`deleting the registration of ${node.name}`, (c) => c.delete().key(`${withSlash(config.etcd.prefixes.asterisk)}${node.name}`).exec())
      })
      const r = await hostPool.run(node, startAgentScript(agentArgv, args, node.name))
      const st = parseAgentStart(r.stdout)
      if (st.outcome === 'died' || st.outcome === 'unknown') {
        throw new HactlError(`the announce agent on ${node.name} did not start${st.log ? `: ${st.log.split('\n').slice(-3).join(' | ')}` : ''}`, {
          suggestions: [`its log on the host: ${agentFiles(node.name).logFile}`],
        })
      }
      if (st.pid !== undefined) result.agentPid = st.pid
      update(`pid ${st.pid ?? '?'}; waiting for the registration`)
      if (!s.etcd) return `pid ${st.pid ?? '?'}`
      const {listRegistrations} = await import('../etcd/registrations.js')
      const deadline = Date.now() + 20_000
      for (;;) {
        const regs = await listRegistrations(s.etcd, config.etcd.prefixes.asterisk)
        const mine = regs.find((x) => x.name === node.name)
        if (mine && mine.ip === sip.ip) return `pid ${st.pid ?? '?'}, registered ${mine.key} (lease ${mine.lease ?? 'none'})`
        if (Date.now() > deadline) {
          const alive = (await hostPool.run(node, sh`kill -0 ${String(st.pid ?? 0)} 2>/dev/null && echo alive || echo gone`, {check: false})).stdout.trim()
          const tail = (await hostPool.run(node, sh`tail -n 3 ${agentFiles(node.name).logFile}`, {check: false})).stdout.trim()
          throw new HactlError(`${node.name} did not register within 20s (agent ${alive})${tail ? `: ${tail.split('\n').join(' | ')}` : ''}`, {
            suggestions: [`its log on the host: ${agentFiles(node.name).logFile}`],
          })
        }
        await sleep(300)
      }
    })
    if (has('dispatcher')) {
      await runner.run('dispatcher', async (update) => {
        const {parseSipUri} = await import('../facts/kamailio.js')
        const kams = config.nodes.filter((n) => n.roles.includes('kamailio'))
        const setId = config.kamailio.setId
        const views = await readKamailioViews(config, pool, kams, sip.ip, config.asterisk.sipPort)
        // Every Kamailio at once; each change pushes its own undo as soon as it is made.
        const outcomes = await Promise.allSettled(
          kams.map(async (k) => {
            const view = views.find((x) => x.node === k.name)
            if (!view?.ok) throw new HactlError(`${k.name} does not answer: ${view?.error ?? 'unknown error'}`)
            if (!view.inFile) {
              update(`${k.name}: writing ${config.kamailio.listFile}`)
              const before = view.fileText
              const after = appendListLine(before, destinationLine(setId, sip.uri, node.weight))
              await writeListFile(config, pool, k, after)
              undo.push(`remove ${sip.uri} from ${k.name}:${config.kamailio.listFile}`, async () => {
                const now = (await readKamailioViews(config, pool, [k], sip.ip, config.asterisk.sipPort))[0]
                if (!now?.ok) throw new HactlError(`${k.name} does not answer`)
                if (!now.inFile) return
                await writeListFile(config, pool, k, now.fileText === after ? before : removeListDestination(now.fileText, setId, sip.ip, config.asterisk.sipPort, parseSipUri).text)
              })
            }
            if (!view.runtime) {
              update(`${k.name}: kamcmd dispatcher.add`)
              // Added inactive and probing: it turns active only once Asterisk answers OPTIONS.
              await kamcmdRetrying(config, pool, k, ['dispatcher.add', setId, sip.uri, 9, 0, ...(node.weight === undefined ? [] : [`weight=${node.weight}`])])
              undo.push(`remove ${sip.uri} from ${k.name}'s runtime list`, async () => {
                const now = (await readKamailioViews(config, pool, [k], sip.ip, config.asterisk.sipPort))[0]
                if (now?.ok && !now.runtime) return
                await kamcmdRetrying(config, pool, k, ['dispatcher.remove', setId, sip.uri])
              })
            }
            return k.name
          }),
        )
        const failed = outcomes.flatMap((o) => (o.status === 'rejected' ? [firstLine(o.reason)] : []))
        if (failed.length > 0) throw new HactlError(failed.join('; '))
        const done = outcomes.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []))
        return done.join(', ')
      })
      await runner.run('wait-active', async (update) => {
        const kams = config.nodes.filter((n) => n.roles.includes('kamailio'))
        const flags = await waitUntilActive(config, pool, kams, sip.ip, config.asterisk.sipPort, {
          timeoutMs: s.req.activeTimeoutMs ?? 60_000,
          onProgress: (f) => update(Object.entries(f).map(([k, x]) => `${k} ${x ?? 'absent'}`).join(', ')),
        })
        result.dispatcher = flags
        return Object.entries(flags).map(([k, x]) => `${k} ${x}`).join(', ')
      })
    }
  }
}

function hexOf(id: string): string {
  try {
    return BigInt(id).toString(16)
  } catch {
    return id
  }
}

function withSlash(p: string): string {
  return p.endsWith('/') ? p : `${p}/`
}
