import type {IStatusResponse} from 'etcd3'
import {formatMs} from '../errors.js'
import {cleanGrpcMessage, hexId, withTimeout, type EtcdHandle} from './client.js'

export interface EtcdMemberHealth {
  /** Member ID in hex, as etcdctl prints it. */
  id: string
  /** Empty while a member was added but has not started. */
  name: string
  peerURLs: string[]
  clientURLs: string[]
  isLearner: boolean
  /** Answered status in time, knows a leader, and reports no errors. */
  healthy: boolean
  isLeader: boolean
  /** The client URL that was asked. */
  endpoint?: string
  raftTerm?: number
  raftIndex?: number
  version?: string
  /** Backend database size in bytes. */
  dbSize?: number
  error?: string
}

export interface EtcdClusterHealth {
  /** Cluster ID in hex. */
  clusterId: string
  members: EtcdMemberHealth[]
  /** Leader ID in hex, as the healthy members see it. */
  leaderId?: string
  healthyCount: number
  total: number
  alarms: Array<{memberId: string; alarm: string}>
  /** Set when the alarm list could not be read (the rest of the result still holds). */
  alarmsError?: string
}

/**
 * One pass over the etcd cluster: member list (from any member), then, in parallel, every
 * member's own status (asked at its own client URL, each bounded by etcd.timeout) and the alarm
 * list. A member that is down or hangs shows as unhealthy with its error; it never holds up the
 * others. Throws EtcdUnreachableError only when no member answers the member list.
 */
export async function etcdClusterHealth(
  handle: EtcdHandle,
  opts: {timeoutMs?: number} = {},
): Promise<EtcdClusterHealth> {
  const timeoutMs = opts.timeoutMs ?? handle.timeoutMs
  const list = await handle.call('listing etcd members', (c) => c.cluster.memberList({}), {timeoutMs})

  const alarmsP = handle
    .call('reading etcd alarms', (c) => c.maintenance.alarm({action: 'Get', memberID: 0, alarm: 'None'}), {
      timeoutMs,
    })
    .then(
      (res) => ({
        alarms: (res.alarms ?? []).map((a) => ({memberId: hexId(a.memberID), alarm: String(a.alarm)})),
      }),
      (error: unknown) => ({
        alarms: [] as EtcdClusterHealth['alarms'],
        alarmsError: (error as Error).message,
      }),
    )

  const statuses = await Promise.all(
    list.members.map(async (m) => {
      const url = pickClientUrl(m.clientURLs, handle.endpoints)
      if (!url) return {url, error: 'not started (no client URL yet)'}
      try {
        const status = await withTimeout(
          askStatus(handle, url),
          timeoutMs,
          () => new Error(`no answer within ${formatMs(timeoutMs)} (etcd.timeout)`),
        )
        return {url, status}
      } catch (error) {
        return {url, error: shortError(error)}
      }
    }),
  )

  // The leader as the answering members see it; the most common answer wins.
  const votes = new Map<string, number>()
  for (const s of statuses) {
    const leader = s.status?.leader
    if (leader && leader !== '0') votes.set(leader, (votes.get(leader) ?? 0) + 1)
  }
  const leaderDec = [...votes.entries()].sort((a, b) => b[1] - a[1])[0]?.[0]

  const members: EtcdMemberHealth[] = list.members.map((m, i) => {
    const s = statuses[i]!
    const base: EtcdMemberHealth = {
      id: hexId(m.ID),
      name: m.name,
      peerURLs: m.peerURLs ?? [],
      clientURLs: m.clientURLs ?? [],
      isLearner: Boolean(m.isLearner),
      healthy: false,
      isLeader: leaderDec !== undefined && leaderDec === m.ID,
      ...(s.url ? {endpoint: s.url} : {}),
    }
    if (!s.status) return {...base, error: s.error ?? 'unknown error'}
    const st = s.status
    const facts = {
      raftTerm: Number(st.raftTerm),
      raftIndex: Number(st.raftIndex),
      version: st.version,
      dbSize: Number(st.dbSize),
    }
    let error: string | undefined
    if (st.header?.member_id && st.header.member_id !== m.ID)
      error = `${s.url} answered as member ${hexId(st.header.member_id)}, not ${hexId(m.ID)}`
    else if (!st.leader || st.leader === '0') error = 'no leader'
    else if (st.errors && st.errors.length > 0) error = st.errors.join('; ')
    return {...base, ...facts, healthy: error === undefined, ...(error ? {error} : {})}
  })

  const alarms = await alarmsP
  const healthyCount = members.filter((m) => m.healthy).length
  return {
    clusterId: hexId(list.header.cluster_id),
    members,
    ...(leaderDec ? {leaderId: hexId(leaderDec)} : {}),
    healthyCount,
    total: members.length,
    ...alarms,
  }
}

async function askStatus(handle: EtcdHandle, url: string): Promise<IStatusResponse> {
  const mc = await handle.memberClient(url)
  try {
    return await mc.client.maintenance.status({})
  } finally {
    await mc.close()
  }
}

/** A configured endpoint first (known to be reachable from here), then a non-loopback URL. */
function pickClientUrl(urls: string[] | undefined, configured: string[]): string | undefined {
  if (!urls || urls.length === 0) return undefined
  const norm = (u: string) => u.replace(/\/+$/, '')
  const known = new Set(configured.map(norm))
  return (
    urls.find((u) => known.has(norm(u))) ??
    urls.find((u) => !/\/\/(localhost|127\.|\[::1\])/.test(u)) ??
    urls[0]
  )
}

function shortError(error: unknown): string {
  return cleanGrpcMessage(error instanceof Error ? error.message : String(error))
}
