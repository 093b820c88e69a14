import {existsSync} from 'node:fs'
import type {Role} from '../config/schema.js'
import {dispatcherFlags} from './dispatcher.js'
import type {LabHostKind} from './plan.js'
import {requireState} from './state.js'
import {supervisorInfo} from './supervisor.js'
import {httpGet, listNetns, mapLimit, pidAlive, readBanner} from './system.js'

export interface LabHostStatus {
  name: string
  kind: LabHostKind
  ip: string
  roles: Role[]
  /** The supervisor answers (the host is "powered"). */
  up: boolean
  state?: string
  bootId?: string
  bootCount?: number
  sshd: 'up' | 'stopped' | 'hung' | 'unreachable'
  units: Record<string, {state: string; enabled: boolean}>
  faults: string[]
  problems: string[]
}

export interface LabStatusResult {
  name: string
  dir: string
  configPath: string
  subnet: string
  hosts: LabHostStatus[]
  etcd: {expected: number; healthy: number; members: string[]}
  /** Kamailio host → dispatcher URI → FLAGS. */
  dispatcher: Record<string, Record<string, string>>
  healthy: boolean
  problems: string[]
}

/** What every lab host is doing: supervisor, sshd, services, faults, etcd health, dispatcher flags. */
export async function labStatus(opts: {name: string}): Promise<LabStatusResult> {
  const state = requireState(opts.name)
  const namespaces = new Set(await listNetns())
  const hosts = await mapLimit(state.hosts, 16, async (h): Promise<LabHostStatus> => {
    const problems: string[] = []
    if (!namespaces.has(h.ns)) problems.push(`namespace ${h.ns} is missing`)
    const info = await supervisorInfo(h.dir, 3000)
    if (!info) {
      problems.push(
        h.supervisorPid && pidAlive(h.supervisorPid) ? 'supervisor does not answer' : 'supervisor is gone',
      )
      return {
        name: h.name,
        kind: h.kind,
        ip: h.ip,
        roles: h.roles,
        up: false,
        sshd: 'unreachable',
        units: {},
        faults: [],
        problems,
      }
    }
    let sshd: LabHostStatus['sshd'] =
      info.sshd.state === 'hung' ? 'hung' : info.sshd.state === 'stopped' ? 'stopped' : 'up'
    if (sshd === 'up' && !(await readBanner(h.ip, 22, 1500)).startsWith('SSH-2.0-')) sshd = 'unreachable'
    if (sshd !== 'up') problems.push(`sshd ${sshd}`)
    const units = Object.fromEntries(
      Object.entries(info.units).map(([n, u]) => [n, {state: u.state, enabled: u.enabled}]),
    )
    for (const [n, u] of Object.entries(units))
      if (u.enabled && u.state !== 'active') problems.push(`${n} ${u.state}`)
    if (info.state !== 'up') problems.push(`host ${info.state}`)
    if (info.faults.length > 0) problems.push(`faults: ${info.faults.join(', ')}`)
    return {
      name: h.name,
      kind: h.kind,
      ip: h.ip,
      roles: h.roles,
      up: true,
      state: info.state,
      bootId: info.bootId,
      bootCount: info.bootCount,
      sshd,
      units,
      faults: info.faults,
      problems,
    }
  })

  const etcdHosts = state.hosts.filter((h) => h.etcd)
  const health = await Promise.all(
    etcdHosts.map(async (h) =>
      (await httpGet(`http://${h.ip}:2379/health`, 2000)).body.includes('"health":"true"'),
    ),
  )
  let members: string[] = []
  for (const h of etcdHosts) {
    const r = await httpGet(`http://${h.ip}:2379/v2/members`, 2000)
    if (r.status !== 200) continue
    try {
      members = ((JSON.parse(r.body) as {members?: Array<{name?: string}>}).members ?? [])
        .map((m) => m.name ?? '')
        .sort()
      break
    } catch {
      // try the next member
    }
  }
  const etcd = {expected: etcdHosts.length, healthy: health.filter(Boolean).length, members}

  const dispatcher: Record<string, Record<string, string>> = {}
  for (const k of state.hosts.filter((h) => h.kind === 'kamailio'))
    dispatcher[k.name] = await dispatcherFlags(k.dir)

  const problems = hosts.flatMap((h) => h.problems.map((p) => `${h.name}: ${p}`))
  if (etcd.healthy < etcd.expected) problems.push(`etcd: ${etcd.healthy}/${etcd.expected} members healthy`)
  const asteriskUris = state.hosts.filter((h) => h.kind === 'asterisk').map((h) => `sip:${h.ip}:5060`)
  for (const [k, flags] of Object.entries(dispatcher)) {
    const notActive = asteriskUris.filter((u) => flags[u] !== 'AP')
    if (notActive.length > 0)
      problems.push(`${k}: dispatcher ${notActive.map((u) => `${u} ${flags[u] ?? 'missing'}`).join(', ')}`)
  }
  return {
    name: state.name,
    dir: state.dir,
    configPath: existsSync(state.configPath) ? state.configPath : '',
    subnet: state.subnet,
    hosts,
    etcd,
    dispatcher,
    healthy: problems.length === 0,
    problems,
  }
}
