import {UserError} from '../errors.js'
import type {Role} from '../config/schema.js'

/** What a lab host is for. `discovery` is the etcd discovery service; spares are not in hactl.yaml. */
export type LabHostKind = 'discovery' | 'kamailio' | 'asterisk' | 'spare'

export interface PlannedHost {
  name: string
  kind: LabHostKind
  ip: string
  /** Offset of the address in the subnet (also names the host's veth). */
  offset: number
  /** Runs an etcd member of the cluster from the first boot. */
  etcd: boolean
  /** Roles in hactl.yaml (empty for the discovery host and spares). */
  roles: Role[]
  /** Network namespace: <lab>-<host>. */
  ns: string
  /** Root-namespace end of the host's veth pair (<= 15 characters). */
  veth: string
  /** MAC address of the host's eth0 (02:00 + the IPv4 address: fixed, so neighbours can be static). */
  mac: string
}

export interface LabPlan {
  name: string
  subnet: string
  network: string
  prefix: number
  bridge: string
  bridgeIp: string
  bridgeMac: string
  hosts: PlannedHost[]
}

export interface LabSize {
  name: string
  asterisk: number
  kamailio: number
  etcd: number
  spare: number
  subnet: string
}

export const LAB_DEFAULTS = {
  name: 'hactl',
  asterisk: 4,
  kamailio: 2,
  etcd: 3,
  spare: 0,
  subnet: '10.77.0.0/24',
} as const

/** Lab names become parts of namespace and interface names (at most 15 characters): keep them short. */
export const LAB_NAME_RE = /^[a-z][a-z0-9]{0,8}$/

export function assertLabName(name: string): void {
  if (!LAB_NAME_RE.test(name)) {
    throw new UserError(
      `invalid lab name "${name}": use 1-9 lower-case letters and digits, starting with a letter`,
      ['for example: --name hactl'],
    )
  }
}

export function ipToInt(ip: string): number {
  const parts = ip.split('.').map(Number)
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255))
    throw new Error(`not an IPv4 address: ${ip}`)
  return ((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) >>> 0
}

/** 02:00:a:b:c:d for a.b.c.d: a locally administered MAC, unique on a lab bridge. */
export function macFor(ip: string): string {
  return ['02', '00', ...ip.split('.').map((p) => Number(p).toString(16).padStart(2, '0'))].join(':')
}

export function intToIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.')
}

export interface Subnet {
  network: number
  prefix: number
  size: number
}

export function parseSubnet(cidr: string): Subnet {
  const m = /^(\d{1,3}(?:\.\d{1,3}){3})\/(\d{1,2})$/.exec(cidr.trim())
  let network: number
  try {
    if (!m) throw new Error('format')
    network = ipToInt(m[1]!)
  } catch {
    throw new UserError(`invalid subnet "${cidr}": expected an IPv4 network such as 10.77.0.0/24`)
  }
  const prefix = Number(m[2])
  if (prefix < 16 || prefix > 26) {
    throw new UserError(`subnet ${cidr}: the prefix must be between /16 and /26`, [
      'for example: --subnet 10.77.0.0/24',
    ])
  }
  const size = 2 ** (32 - prefix)
  const mask = (0xffffffff << (32 - prefix)) >>> 0
  if ((network & mask) >>> 0 !== network) {
    throw new UserError(`subnet ${cidr} has host bits set`, [
      `use the network address: --subnet ${intToIp((network & mask) >>> 0)}/${prefix}`,
    ])
  }
  return {network, prefix, size}
}

/**
 * The lab's layout: bridge .1, discovery .2, kam1.. from .11, ast1.. from .21, spare1.. from .240
 * (or right after the last Asterisk host when that does not fit). etcd runs on ast1..astK.
 */
export function planLab(size: LabSize): LabPlan {
  assertLabName(size.name)
  const {asterisk, kamailio, etcd, spare} = size
  for (const [flag, v, min] of [
    ['--asterisk', asterisk, 1],
    ['--kamailio', kamailio, 0],
    ['--etcd', etcd, 1],
    ['--spare', spare, 0],
  ] as const) {
    if (!Number.isInteger(v) || v < min)
      throw new UserError(`${flag} must be a whole number >= ${min} (got ${v})`)
  }
  if (kamailio > 10)
    throw new UserError(`--kamailio ${kamailio}: at most 10 Kamailio hosts (addresses .11 to .20)`)
  if (etcd > asterisk) {
    throw new UserError(
      `--etcd ${etcd} is more than --asterisk ${asterisk}: etcd runs on the first Asterisk hosts`,
      [`use --etcd ${Math.min(asterisk, 3)} or --asterisk ${etcd}`],
    )
  }
  const subnet = parseSubnet(size.subnet)
  const last = subnet.size - 2 // the broadcast address is size - 1
  const astEnd = 21 + asterisk - 1
  const spareStart = astEnd < 240 && 240 + spare - 1 <= last ? 240 : astEnd + 1
  const maxOffset = spare > 0 ? spareStart + spare - 1 : astEnd
  if (maxOffset > last) {
    const need = 32 - Math.ceil(Math.log2(maxOffset + 2))
    throw new UserError(`${asterisk} Asterisk and ${spare} spare hosts do not fit in ${size.subnet}`, [
      `use a larger subnet, for example --subnet ${intToIp(subnet.network)}/${Math.max(16, need)}`,
    ])
  }
  const at = (offset: number) => intToIp(subnet.network + offset)
  const veth = (offset: number) => `${size.name}-${offset}`
  const hosts: PlannedHost[] = []
  const add = (name: string, kind: LabHostKind, offset: number, isEtcd: boolean, roles: Role[]) => {
    hosts.push({
      name,
      kind,
      ip: at(offset),
      offset,
      etcd: isEtcd,
      roles,
      ns: `${size.name}-${name}`,
      veth: veth(offset),
      mac: macFor(at(offset)),
    })
  }
  add('disc', 'discovery', 2, false, [])
  for (let i = 1; i <= kamailio; i++) add(`kam${i}`, 'kamailio', 10 + i, false, ['kamailio'])
  for (let i = 1; i <= asterisk; i++)
    add(`ast${i}`, 'asterisk', 20 + i, i <= etcd, i <= etcd ? ['asterisk', 'etcd'] : ['asterisk'])
  for (let i = 1; i <= spare; i++) add(`spare${i}`, 'spare', spareStart + i - 1, false, [])
  const bridge = `${size.name}-br`
  for (const n of [bridge, ...hosts.map((h) => h.veth)]) {
    if (n.length > 15)
      throw new UserError(`interface name ${n} is longer than 15 characters`, ['use a shorter --name'])
  }
  return {
    name: size.name,
    subnet: `${intToIp(subnet.network)}/${subnet.prefix}`,
    network: intToIp(subnet.network),
    prefix: subnet.prefix,
    bridge,
    bridgeIp: at(1),
    bridgeMac: macFor(at(1)),
    hosts,
  }
}

/** Whether two IPv4 networks overlap. */
export function overlaps(a: Subnet, b: Subnet): boolean {
  const aEnd = a.network + a.size - 1
  const bEnd = b.network + b.size - 1
  return a.network <= bEnd && b.network <= aEnd
}
