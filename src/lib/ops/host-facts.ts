import type {Role} from '../config/schema.js'
import type {ResolvedNode} from '../config/load.js'
import {HactlError} from '../errors.js'
import type {SshPool} from '../ssh/pool.js'
import {sh, shellQuote} from '../ssh/quote.js'

/**
 * Facts about a host that `hactl node add` is about to join to the cluster, in one SSH round trip:
 * host name, OS, free disk where etcd keeps its data, the commands and systemd units its roles
 * need, whether etcd or Asterisk already run there, leftover etcd data, and the clock offset
 * against this machine. `hostRequirements` turns them into what is missing (with what to install)
 * and warnings. The script and its parser are pure and tested on captured output.
 */

export interface HostFactsRequest {
  roles: readonly Role[]
  /** etcd.dataDir. */
  dataDir: string
  /** etcd.service. */
  etcdService: string
  /** asterisk.service. */
  asteriskService: string
  /** asterisk.cli: its first word is the program that must exist (`asterisk`, `docker`). */
  asteriskCli: string
  /** An explicit agent command (`--agent-command`); its first word must exist on the host. */
  agentCommand?: string[]
  /**
   * The hactl this machine runs (node binary and bin/run.js): when `hactl` is not installed on the
   * host but these paths exist there (a shared filesystem, as in the lab), the agent runs from them.
   */
  localHactl?: {node: string; runJs: string}
}

export interface HostFacts {
  hostname: string
  os: string
  kernel: string
  /** The existing directory df was asked about (dataDir or its nearest existing parent). */
  diskPath?: string
  diskFreeBytes?: number
  /** Command name → its path on the host, or null when missing. */
  commands: Record<string, string | null>
  /** systemd unit → LoadState (`loaded`, `not-found`, ...). */
  units: Record<string, string>
  /** systemd unit → `systemctl is-active` answer. */
  active: Record<string, string>
  /** `dataDir/member` exists: etcd data from an earlier life of this host. */
  etcdDataPresent: boolean
  /** The host's clock minus this machine's (ms), measured at the middle of the round trip. */
  clockOffsetMs?: number
  /** Round trip of the facts command (ms), the script's own run time included. */
  rttMs: number
  /** How the announce agent would run there (undefined: it cannot). */
  agent?: {argv: string[]; how: 'flag' | 'installed' | 'shared-path'}
  /** uid of the login user (`id -u`). */
  uid?: number
}

export interface Requirement {
  what: string
  /** What to install or change, one line. */
  fix: string
}

const M = '@@hactl-facts'

/** Commands the roles need, by role. */
export function requiredCommands(req: HostFactsRequest): string[] {
  const out = new Set<string>(['systemctl'])
  if (req.roles.includes('etcd')) {
    out.add('etcd')
    out.add('etcd2')
  }
  if (req.roles.includes('asterisk')) {
    const cliProgram = req.asteriskCli.trim().split(/\s+/)[0]
    if (cliProgram) out.add(cliProgram)
    out.add('setsid')
    out.add('hactl')
    const agentProgram = req.agentCommand?.[0]
    if (agentProgram) out.add(agentProgram)
  }
  return [...out]
}

function requiredUnits(req: HostFactsRequest): string[] {
  const out: string[] = []
  if (req.roles.includes('etcd')) out.push(req.etcdService)
  if (req.roles.includes('asterisk')) out.push(req.asteriskService)
  return out
}

/** The facts script: POSIX sh, every value quoted, one `@@hactl-facts KEY VALUE` line per fact. */
export function buildHostFactsScript(req: HostFactsRequest): string {
  // The clock is read first and last: the script's own run time is then known, and only the
  // network's share of the round trip is split in two.
  const clock = (k: string) => `t=$(date +%s%N 2>/dev/null); case $t in *N|"") t=$(( $(date +%s) * 1000000000 ));; esac; echo "$M ${k} $t"`
  const lines = [
    `M=${shellQuote(M)}`,
    clock('clock0'),
    'echo "$M uid $(id -u 2>/dev/null)"',
    'echo "$M hostname $(hostname 2>/dev/null || cat /etc/hostname 2>/dev/null)"',
    'os=$( (. /etc/os-release 2>/dev/null && echo "${PRETTY_NAME:-}") ); echo "$M os ${os:-$(uname -s 2>/dev/null)}"',
    'echo "$M kernel $(uname -r 2>/dev/null)"',
    sh`d=${req.dataDir}`,
    'while [ ! -e "$d" ] && [ "$d" != / ]; do d=$(dirname -- "$d"); done',
    'echo "$M diskpath $d"',
    'set -- $(df -Pk -- "$d" 2>/dev/null | tail -n 1); echo "$M diskfree_kb ${4:-}"',
    sh`if [ -e ${`${req.dataDir.replace(/\/+$/, '')}/member`} ]; then echo "$M etcddata yes"; else echo "$M etcddata no"; fi`,
  ]
  for (const c of requiredCommands(req)) {
    lines.push(sh`p=$(command -v ${c} 2>/dev/null) && echo "$M cmd "${c}" $p" || echo "$M cmd "${c}`)
  }
  for (const u of requiredUnits(req)) {
    lines.push(sh`echo "$M unit "${u}" $(systemctl show -p LoadState ${u} 2>/dev/null | sed -n 's/^LoadState=//p')"`)
    lines.push(sh`echo "$M active "${u}" $(systemctl is-active ${u} 2>/dev/null)"`)
  }
  if (req.roles.includes('asterisk') && req.localHactl) {
    lines.push(
      sh`if [ -x ${req.localHactl.node} ] && [ -f ${req.localHactl.runJs} ]; then echo "$M localhactl yes"; else echo "$M localhactl no"; fi`,
    )
  }
  lines.push(clock('clock1'))
  return lines.join('\n')
}

/** Parse the facts script's output. `sentAt`/`receivedAt`: this machine's clock around the round trip (ms). */
export function parseHostFacts(stdout: string, req: HostFactsRequest, timing: {sentAt: number; receivedAt: number}): HostFacts {
  const facts: HostFacts = {
    hostname: '',
    os: '',
    kernel: '',
    commands: {},
    units: {},
    active: {},
    etcdDataPresent: false,
    rttMs: Math.max(0, timing.receivedAt - timing.sentAt),
  }
  let clock0: number | undefined
  let clock1: number | undefined
  let localHactl = false
  for (const raw of stdout.split('\n')) {
    if (!raw.startsWith(`${M} `)) continue
    const rest = raw.slice(M.length + 1)
    const sp = rest.indexOf(' ')
    const key = sp < 0 ? rest : rest.slice(0, sp)
    const value = sp < 0 ? '' : rest.slice(sp + 1).trim()
    switch (key) {
      case 'uid': {
        const n = Number(value)
        if (value !== '' && Number.isInteger(n)) facts.uid = n
        break
      }
      case 'hostname':
        facts.hostname = value
        break
      case 'os':
        facts.os = value
        break
      case 'kernel':
        facts.kernel = value
        break
      case 'diskpath':
        facts.diskPath = value
        break
      case 'diskfree_kb':
        if (/^\d+$/.test(value)) facts.diskFreeBytes = Number(value) * 1024
        break
      case 'etcddata':
        facts.etcdDataPresent = value === 'yes'
        break
      case 'cmd': {
        const [name, ...p] = value.split(' ')
        if (name) facts.commands[name] = p.length > 0 ? p.join(' ') : null
        break
      }
      case 'unit': {
        const [name, state = ''] = value.split(' ')
        if (name) facts.units[name] = state || 'unknown'
        break
      }
      case 'active': {
        const [name, state = ''] = value.split(' ')
        if (name) facts.active[name] = state || 'unknown'
        break
      }
      case 'localhactl':
        localHactl = value === 'yes'
        break
      case 'clock0':
      case 'clock1':
        if (/^\d+$/.test(value)) {
          const ms = Number(BigInt(value) / 1_000_000n)
          if (key === 'clock0') clock0 = ms
          else clock1 = ms
        }
        break
      default:
        break
    }
  }
  if (clock0 !== undefined && clock1 !== undefined) {
    // The network took (round trip - the script's run time); half of it before clock0.
    const scriptMs = Math.max(0, clock1 - clock0)
    const networkMs = Math.max(0, facts.rttMs - scriptMs)
    facts.clockOffsetMs = Math.round(clock0 - (timing.sentAt + networkMs / 2))
  }
  if (clock1 === undefined && facts.hostname === '') {
    throw new HactlError('the host facts script was cut short (no facts came back)')
  }
  if (req.roles.includes('asterisk')) {
    if (req.agentCommand && req.agentCommand.length > 0) {
      if (facts.commands[req.agentCommand[0]!]) facts.agent = {argv: [...req.agentCommand], how: 'flag'}
    } else if (facts.commands.hactl) {
      facts.agent = {argv: ['hactl'], how: 'installed'}
    } else if (localHactl && req.localHactl) {
      facts.agent = {argv: [req.localHactl.node, req.localHactl.runJs], how: 'shared-path'}
    }
  }
  return facts
}

/** Minimum free space where etcd keeps its data (etcd's default backend quota is 2 GiB). */
export const MIN_FREE_BYTES_ETCD = 1024 ** 3
/** Minimum free space on a host without etcd (logs, Asterisk spool). */
export const MIN_FREE_BYTES = 100 * 1024 ** 2
/** etcd warns at a clock difference of 1 s between members. */
export const MAX_CLOCK_OFFSET_MS = 1000

/** What is missing for the roles (stops the add) and what merely deserves a warning. Pure. */
export function hostRequirements(facts: HostFacts, req: HostFactsRequest): {missing: Requirement[]; warnings: string[]} {
  const missing: Requirement[] = []
  const warnings: string[] = []
  const has = (c: string) => Boolean(facts.commands[c])
  if (!has('systemctl')) missing.push({what: 'systemctl', fix: 'hactl drives services with systemd: a host with systemd (systemctl) is needed'})
  if (req.roles.includes('etcd')) {
    if (!has('etcd') && !has('etcd2')) missing.push({what: 'etcd', fix: 'install etcd (Debian: apt-get install etcd-server; CoreOS ships etcd2)'})
    if (facts.units[req.etcdService] !== 'loaded') {
      missing.push({what: `the systemd unit ${req.etcdService}.service`, fix: `install etcd's unit as ${req.etcdService}.service, or set etcd.service in hactl.yaml to the unit's name`})
    }
    if (facts.etcdDataPresent) {
      missing.push({
        what: `an empty etcd data directory (${req.dataDir}/member exists: this host was a member before)`,
        fix: `if that data is of no use any more, remove it on the host: rm -rf ${req.dataDir}/member`,
      })
    }
    const state = facts.active[req.etcdService]
    if (state && state !== 'inactive' && state !== 'failed' && state !== 'unknown') {
      missing.push({what: `etcd stopped on the host (${req.etcdService} is ${state})`, fix: `stop it first: systemctl stop ${req.etcdService}`})
    }
  }
  if (req.roles.includes('asterisk')) {
    const cliProgram = req.asteriskCli.trim().split(/\s+/)[0] ?? 'asterisk'
    if (!has(cliProgram)) {
      missing.push(
        cliProgram === 'docker'
          ? {what: 'docker (asterisk.cli runs Asterisk through docker)', fix: 'install docker (Debian: apt-get install docker.io)'}
          : {what: `${cliProgram} (the Asterisk CLI, asterisk.cli)`, fix: `install Asterisk (Debian: apt-get install asterisk), or set asterisk.cli in hactl.yaml`},
      )
    }
    if (facts.units[req.asteriskService] !== 'loaded') {
      missing.push({what: `the systemd unit ${req.asteriskService}.service`, fix: `install Asterisk's unit as ${req.asteriskService}.service, or set asterisk.service in hactl.yaml`})
    }
    if (!has('setsid')) missing.push({what: 'setsid (starts the announce agent)', fix: 'install util-linux'})
    if (!facts.agent) {
      missing.push(
        req.agentCommand && req.agentCommand.length > 0
          ? {what: `${req.agentCommand[0]} (--agent-command)`, fix: 'install it on the host, or pass another --agent-command'}
          : {what: 'hactl (runs the announce agent: hactl agent announce)', fix: 'install hactl on the host (npm install -g hactl), or pass --agent-command "node /path/to/hactl/bin/run.js"'},
      )
    }
  }
  const minFree = req.roles.includes('etcd') ? MIN_FREE_BYTES_ETCD : MIN_FREE_BYTES
  if (facts.diskFreeBytes === undefined) {
    warnings.push(`could not read the free disk space at ${facts.diskPath ?? req.dataDir}`)
  } else if (facts.diskFreeBytes < minFree) {
    missing.push({
      what: `${formatBytes(minFree)} free at ${facts.diskPath ?? req.dataDir} (${formatBytes(facts.diskFreeBytes)} free)`,
      fix: 'free some disk space on the host',
    })
  }
  if (facts.clockOffsetMs !== undefined && Math.abs(facts.clockOffsetMs) > MAX_CLOCK_OFFSET_MS) {
    warnings.push(
      `the host's clock is ${formatOffset(facts.clockOffsetMs)} off this machine's${req.roles.includes('etcd') ? ' (etcd warns about skew over 1s between members)' : ''}; check NTP on both`,
    )
  }
  return {missing, warnings}
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let v = n
  let i = 0
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024
    i++
  }
  return `${i === 0 ? v : v.toFixed(v >= 10 ? 0 : 1)} ${units[i]}`
}

export function formatOffset(ms: number): string {
  const sign = ms < 0 ? '-' : '+'
  const a = Math.abs(ms)
  return a < 1000 ? `${sign}${a}ms` : `${sign}${(a / 1000).toFixed(1)}s`
}

/** Run the facts script on the host (one round trip) and parse it. */
export async function probeHostFacts(pool: SshPool, node: ResolvedNode, req: HostFactsRequest): Promise<HostFacts> {
  const script = buildHostFactsScript(req)
  const sentAt = Date.now()
  const r = await pool.run(node, script, {check: false})
  const receivedAt = Date.now()
  return parseHostFacts(r.stdout, req, {sentAt, receivedAt})
}
