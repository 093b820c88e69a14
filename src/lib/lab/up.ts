import {spawn} from 'node:child_process'
import {closeSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync} from 'node:fs'
import path from 'node:path'
import type {Role} from '../config/schema.js'
import {HactlError, InterruptedError, UserError} from '../errors.js'
import {knownHostsText, renderLabConfig} from './config.js'
import {labDown} from './down.js'
import {ensureMountpoints, neededMountpoints, userData, writeHostFiles} from './files.js'
import {configPath, hostDir, labDir, labScriptsDir, statePath} from './paths.js'
import {
  type LabSize,
  type PlannedHost,
  LAB_DEFAULTS,
  overlaps,
  parseSubnet,
  planLab,
  type LabPlan,
} from './plan.js'
import {readState, writeState, type LabHostState, type LabState} from './state.js'
import {supervisorInfo} from './supervisor.js'
import {
  assertLabPrerequisites,
  httpGet,
  linkExists,
  listNetns,
  mapLimit,
  readBanner,
  run,
  runOk,
  sleep,
} from './system.js'
import {dispatcherFlags} from './dispatcher.js'

export interface LabUpOptions extends Partial<LabSize> {
  /** How long a rebooting host stays down (default 1000 ms). */
  rebootDelayMs?: number
  /** Give up waiting for the hosts after this long (default: 60 s + 0.5 s per host). */
  readyTimeoutMs?: number
  /** Leave a lab that failed to come up in place (to read its logs) instead of removing it. */
  keepOnFailure?: boolean
  /** Progress lines (the command writes them to stderr). */
  log?: (line: string) => void
  signal?: AbortSignal
}

export interface LabHostSummary {
  name: string
  kind: PlannedHost['kind']
  ip: string
  roles: Role[]
  etcd: boolean
  ns: string
}

export interface LabUpResult {
  name: string
  dir: string
  configPath: string
  identityFile: string
  knownHosts: string
  subnet: string
  bridge: string
  discoveryService: string
  discoveryUrl: string
  etcdMembers: string[]
  hosts: LabHostSummary[]
  durationMs: number
  /** The line to paste: export HACTL_CONFIG=... */
  exportLine: string
}

/** Bring a lab up: namespaces, bridge, per-host supervisors, etcd through discovery, Kamailio, Asterisk. */
export async function labUp(options: LabUpOptions = {}): Promise<LabUpResult> {
  const t0 = Date.now()
  const log = options.log ?? (() => {})
  const size: LabSize = {
    name: options.name ?? LAB_DEFAULTS.name,
    asterisk: options.asterisk ?? LAB_DEFAULTS.asterisk,
    kamailio: options.kamailio ?? LAB_DEFAULTS.kamailio,
    etcd: options.etcd ?? Math.min(LAB_DEFAULTS.etcd, options.asterisk ?? LAB_DEFAULTS.asterisk),
    spare: options.spare ?? LAB_DEFAULTS.spare,
    subnet: options.subnet ?? LAB_DEFAULTS.subnet,
  }
  const plan = planLab(size)
  assertLabPrerequisites('lab up')
  await assertNotUp(plan)
  await assertSubnetFree(plan)

  const dir = labDir(plan.name)
  const state: LabState = {
    version: 1,
    name: plan.name,
    status: 'starting',
    createdAt: new Date().toISOString(),
    subnet: plan.subnet,
    prefix: plan.prefix,
    bridge: plan.bridge,
    bridgeIp: plan.bridgeIp,
    dir,
    configPath: configPath(plan.name),
    rebootDelayMs: options.rebootDelayMs ?? 1000,
    discoveryService: `http://${plan.hosts.find((h) => h.kind === 'discovery')!.ip}:8087`,
    hosts: plan.hosts.map((h) => ({...h, dir: hostDir(plan.name, h.name)})),
  }
  mkdirSync(path.join(dir, 'hosts'), {recursive: true, mode: 0o755})
  // From here on `hactl lab down` can undo everything, even if this process dies.
  writeState(state)
  const checkAbort = () => {
    if (options.signal?.aborted) throw new InterruptedError('lab up interrupted')
  }
  try {
    log(`lab ${plan.name}: ${plan.hosts.length} hosts on ${plan.subnet} (bridge ${plan.bridge})`)
    await writeFiles(plan, state)
    checkAbort()
    await setupNetwork(plan)
    ensureMountpoints(neededMountpoints())
    checkAbort()

    const disc = state.hosts.find((h) => h.kind === 'discovery')!
    startHost(state, disc)
    await waitUntil(
      async () => (await httpGet(`${state.discoveryService}/health`, 1000)).status === 200,
      30_000,
      'the discovery service',
      options.signal,
    )
    const etcdHosts = state.hosts.filter((h) => h.etcd)
    const res = await httpGet(`${state.discoveryService}/new?size=${etcdHosts.length}`)
    if (res.status !== 200 || !res.body.startsWith('http://')) {
      throw new HactlError(`the lab's discovery service answered ${res.status}: ${res.body.trim()}`)
    }
    state.discoveryUrl = res.body.trim()
    for (const h of etcdHosts)
      writeFileSync(path.join(h.dir, 'coreos-install', 'user_data'), userData(h, state.discoveryUrl))
    log(`etcd discovery: ${state.discoveryUrl}`)

    for (const h of state.hosts) if (h !== disc) startHost(state, h)
    writeState(state)
    log('hosts started; waiting for sshd, etcd, Kamailio and Asterisk')
    const readyTimeout = options.readyTimeoutMs ?? 60_000 + 500 * state.hosts.length
    const members = await waitReady(state, readyTimeout, log, options.signal)

    writeFileSync(path.join(dir, 'known_hosts'), knownHostsText(state))
    writeFileSync(state.configPath, await renderLabConfig(state))
    state.status = 'up'
    writeState(state)
    return {
      name: state.name,
      dir,
      configPath: state.configPath,
      identityFile: path.join(dir, 'id_ed25519'),
      knownHosts: path.join(dir, 'known_hosts'),
      subnet: state.subnet,
      bridge: state.bridge,
      discoveryService: state.discoveryService,
      discoveryUrl: state.discoveryUrl,
      etcdMembers: members,
      hosts: state.hosts.map((h) => ({
        name: h.name,
        kind: h.kind,
        ip: h.ip,
        roles: h.roles,
        etcd: h.etcd,
        ns: h.ns,
      })),
      durationMs: Date.now() - t0,
      exportLine: `export HACTL_CONFIG=${state.configPath}`,
    }
  } catch (error) {
    if (options.keepOnFailure) {
      log(
        `lab up failed; the lab is left in place for inspection (${dir}); remove it with: hactl lab down --name ${plan.name}`,
      )
      throw error
    }
    log('lab up failed; removing what it made')
    await labDown({name: plan.name}).catch(() => undefined)
    if (error instanceof HactlError) {
      throw new HactlError(error.message, {
        exitCode: error.exitCode,
        suggestions: [
          ...error.suggestions,
          `to keep a failed lab for its logs: hactl lab up --name ${plan.name} --keep-on-failure`,
        ],
        cause: error,
      })
    }
    throw error
  }
}

async function assertNotUp(plan: LabPlan): Promise<void> {
  const hint = plan.name === 'hactl' ? 'hactl lab down' : `hactl lab down --name ${plan.name}`
  if (existsSync(statePath(plan.name)) || readState(plan.name)) {
    throw new UserError(`lab "${plan.name}" is already up (${labDir(plan.name)})`, [
      `remove it first: ${hint}`,
      'or start a second lab beside it: hactl lab up --name NAME --subnet 10.NN.0.0/24',
    ])
  }
  const stale = (await listNetns()).filter((n) => n.startsWith(`${plan.name}-`))
  if (stale.length > 0 || (await linkExists(plan.bridge))) {
    throw new UserError(
      `lab "${plan.name}" left namespaces or links behind (${[...stale, plan.bridge].slice(0, 4).join(', ')}...)`,
      [`clean up: ${hint}`],
    )
  }
}

/** Refuse a subnet that this machine already routes: the lab must not hide or steal real traffic. */
async function assertSubnetFree(plan: LabPlan): Promise<void> {
  const mine = parseSubnet(plan.subnet)
  const r = await run('ip', ['-j', '-4', 'route', 'show', 'table', 'all'])
  let routes: Array<{dst?: string; dev?: string}> = []
  try {
    routes = JSON.parse(r.stdout || '[]') as typeof routes
  } catch {
    routes = []
  }
  for (const route of routes) {
    const dst = route.dst
    if (!dst || dst === 'default') continue
    const cidr = dst.includes('/') ? dst : `${dst}/32`
    let other
    try {
      other = parseSubnetLoose(cidr)
    } catch {
      continue
    }
    if (other.network >>> 24 === 127) continue
    if (overlaps(mine, other)) {
      throw new UserError(
        `subnet ${plan.subnet} overlaps ${cidr} (dev ${route.dev ?? '?'}), which this machine already uses`,
        ['pick a free one, for example: --subnet 10.79.0.0/24'],
      )
    }
  }
}

function parseSubnetLoose(cidr: string): {network: number; prefix: number; size: number} {
  const [ip, p] = cidr.split('/')
  const prefix = Number(p)
  const parts = ip!.split('.').map(Number)
  const n = ((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) >>> 0
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0
  return {network: (n & mask) >>> 0, prefix, size: 2 ** (32 - prefix)}
}

async function writeFiles(plan: LabPlan, state: LabState): Promise<void> {
  const dir = state.dir
  const key = path.join(dir, 'id_ed25519')
  await runOk('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `hactl-lab-${plan.name}`, '-f', key])
  const authorizedKeys = path.join(dir, 'authorized_keys')
  writeFileSync(authorizedKeys, readFileSync(`${key}.pub`, 'utf8'), {mode: 0o600})
  const asteriskIps = plan.hosts.filter((h) => h.kind === 'asterisk').map((h) => h.ip)
  await mapLimit(state.hosts, 8, async (h) => {
    writeHostFiles({
      plan,
      host: h,
      dir: h.dir,
      authorizedKeys,
      rebootDelayMs: state.rebootDelayMs,
      asteriskIps,
    })
    await runOk('ssh-keygen', [
      '-q',
      '-t',
      'ed25519',
      '-N',
      '',
      '-C',
      `root@${h.name}`,
      '-f',
      path.join(h.dir, 'ssh', 'ssh_host_ed25519_key'),
    ])
  })
}

async function setupNetwork(plan: LabPlan): Promise<void> {
  const create = [`link add ${plan.bridge} type bridge`, `link set ${plan.bridge} address ${plan.bridgeMac}`]
  for (const h of plan.hosts) {
    create.push(
      `netns add ${h.ns}`,
      `link add ${h.veth} type veth peer name eth0 address ${h.mac} netns ${h.ns}`,
      `link set ${h.veth} master ${plan.bridge}`,
    )
  }
  await runOk('ip', ['-batch', '-'], {input: `${create.join('\n')}\n`})
  // The lab speaks IPv4 only: no IPv6 link-local chatter on its links.
  for (const ifname of [plan.bridge, ...plan.hosts.map((h) => h.veth)]) {
    try {
      writeFileSync(`/proc/sys/net/ipv6/conf/${ifname}/disable_ipv6`, '1')
    } catch {
      // IPv6 disabled on this kernel
    }
  }
  // Bridged lab traffic does not need the host's packet filter (where br_netfilter is loaded).
  const noFilter = ['nf_call_iptables', '0', 'nf_call_ip6tables', '0', 'nf_call_arptables', '0']
  await run('ip', ['link', 'set', plan.bridge, 'type', 'bridge', ...noFilter])
  // Static neighbours, no ARP: the kernel's neighbour table is shared by all namespaces and
  // overflows (gc_thresh3, 1024 by default) with a few hundred hosts; permanent entries do not count.
  const up = [
    `addr add ${plan.bridgeIp}/${plan.prefix} dev ${plan.bridge}`,
    `link set ${plan.bridge} up`,
    ...plan.hosts.map((h) => `link set ${h.veth} up`),
    ...plan.hosts.map((h) => `neigh replace ${h.ip} lladdr ${h.mac} dev ${plan.bridge} nud permanent`),
  ]
  await runOk('ip', ['-batch', '-'], {input: `${up.join('\n')}\n`})
}

/** Start a host: its first process enters the namespaces and becomes the supervisor (same pid). */
export function startHost(state: LabState, host: LabHostState): void {
  const fd = openSync(path.join(host.dir, 'supervisor.log'), 'a')
  try {
    const child = spawn(
      'ip',
      [
        'netns',
        'exec',
        host.ns,
        'unshare',
        '--mount',
        '--uts',
        '--propagation',
        'private',
        '/bin/sh',
        path.join(labScriptsDir(), 'host-init.sh'),
        host.dir,
      ],
      {
        detached: true,
        stdio: ['ignore', fd, fd],
        env: {PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8'},
      },
    )
    child.unref()
    host.supervisorPid = child.pid
  } finally {
    closeSync(fd)
  }
}

async function waitUntil(
  check: () => Promise<boolean>,
  timeoutMs: number,
  what: string,
  signal?: AbortSignal,
): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (signal?.aborted) throw new InterruptedError('lab up interrupted')
    if (await check()) return
    await sleep(100)
  }
  throw new HactlError(`${what} did not come up within ${Math.round(timeoutMs / 1000)} s`)
}

/**
 * Wait until every host is up: supervisor booted, sshd answering with a banner, enabled services
 * active (etcd: healthy), all etcd members published, and every Kamailio sees every Asterisk as AP.
 * Returns the etcd member names.
 */
async function waitReady(
  state: LabState,
  timeoutMs: number,
  log: (l: string) => void,
  signal?: AbortSignal,
): Promise<string[]> {
  const deadline = Date.now() + timeoutMs
  const pending = new Map(state.hosts.map((h) => [h.name, 'not started'] as [string, string]))
  const asteriskUris = state.hosts.filter((h) => h.kind === 'asterisk').map((h) => `sip:${h.ip}:5060`)
  const etcdHosts = state.hosts.filter((h) => h.etcd)
  let members: string[] = []
  let etcdOk = false
  const kamOk = new Set<string>()
  let lastReport = Date.now()
  while (true) {
    if (signal?.aborted) throw new InterruptedError('lab up interrupted')
    await mapLimit([...pending.keys()], 16, async (name) => {
      const h = state.hosts.find((x) => x.name === name)!
      const info = await supervisorInfo(h.dir, 2000)
      if (!info) return void pending.set(name, 'supervisor not answering')
      if (info.state !== 'up') return void pending.set(name, `supervisor ${info.state}`)
      const notActive = Object.entries(info.units).filter(([, u]) => u.enabled && u.state !== 'active')
      if (notActive.length > 0)
        return void pending.set(name, notActive.map(([n, u]) => `${n} ${u.state}`).join(', '))
      const banner = await readBanner(h.ip, 22, 1000)
      if (!banner.startsWith('SSH-2.0-')) return void pending.set(name, 'sshd not answering')
      pending.delete(name)
    })
    if (pending.size === 0 && !etcdOk && etcdHosts.length > 0) {
      const r = await httpGet(`http://${etcdHosts[0]!.ip}:2379/v2/members`)
      try {
        const list =
          (JSON.parse(r.body) as {members?: Array<{name?: string; clientURLs?: string[]}>}).members ?? []
        const published = list.filter((m) => m.name && (m.clientURLs ?? []).length > 0)
        members = published.map((m) => m.name!).sort()
        etcdOk = published.length === etcdHosts.length
      } catch {
        etcdOk = false
      }
    }
    if (pending.size === 0) {
      for (const k of state.hosts.filter((h) => h.kind === 'kamailio' && !kamOk.has(h.name))) {
        const flags = await dispatcherFlags(k.dir)
        if (asteriskUris.every((u) => flags[u] === 'AP')) kamOk.add(k.name)
      }
    }
    const kamTotal = state.hosts.filter((h) => h.kind === 'kamailio').length
    if (pending.size === 0 && (etcdOk || etcdHosts.length === 0) && kamOk.size === kamTotal) return members
    if (Date.now() > deadline) {
      const problems = [
        ...[...pending].map(([n, why]) => `${n}: ${why}`),
        ...(etcdOk ? [] : [`etcd: ${members.length}/${etcdHosts.length} members published`]),
        ...state.hosts
          .filter((h) => h.kind === 'kamailio' && !kamOk.has(h.name))
          .map((h) => `${h.name}: not every Asterisk host is AP in dispatcher.list`),
      ]
      const tails = [...pending.keys()]
        .slice(0, 3)
        .map((n) => logTail(state, n))
        .filter(Boolean)
      throw new HactlError(
        `the lab did not come up within ${Math.round(timeoutMs / 1000)} s:\n  ${problems.slice(0, 20).join('\n  ')}${tails.length > 0 ? `\n${tails.join('\n')}` : ''}`,
      )
    }
    if (Date.now() - lastReport > 5000) {
      lastReport = Date.now()
      log(
        `waiting for ${pending.size > 0 ? `${pending.size} host(s): ${[...pending.keys()].slice(0, 6).join(', ')}` : 'etcd and Kamailio'}`,
      )
    }
    await sleep(200)
  }
}

function logTail(state: LabState, name: string): string {
  const h = state.hosts.find((x) => x.name === name)
  if (!h) return ''
  const parts: string[] = []
  for (const f of [
    'supervisor.log',
    'log/etcd2.log',
    'log/sshd.log',
    'log/asterisk.log',
    'log/kamailio.log',
  ]) {
    try {
      const text = readFileSync(path.join(h.dir, f), 'utf8').trim().split('\n').slice(-5).join('\n    ')
      if (text) parts.push(`  ${name} ${f}:\n    ${text}`)
    } catch {
      // no such log
    }
  }
  return parts.join('\n')
}
