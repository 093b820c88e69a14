import {
  chmodSync,
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  realpathSync,
  statSync,
  writeFileSync,
} from 'node:fs'
import {randomBytes} from 'node:crypto'
import path from 'node:path'
import {shellQuote} from '../ssh/quote.js'
import type {LabPlan, PlannedHost} from './plan.js'
import {labScriptsDir, PLACEHOLDERS_FILE} from './paths.js'

/** How the supervisor runs a service (see lab/supervisor.mjs commandFor()). */
export interface UnitDef {
  kind: 'coreos-etcd' | 'etcd-backend' | 'discovery' | 'asterisk' | 'kamailio'
  description: string
  aliases?: string[]
  restart?: 'on-failure' | 'no'
  restartSec?: number
  startTimeoutMs?: number
}

/** HOSTDIR/host.json: what a host's supervisor knows about its host. */
export interface HostJson {
  lab: string
  name: string
  kind: PlannedHost['kind']
  ip: string
  prefix: number
  node: string
  labScripts: string
  rebootDelayMs: number
  rebootStopTimeoutMs: number
  stopTimeoutMs: number
  units: Record<string, UnitDef>
}

export function unitsFor(host: PlannedHost): {units: Record<string, UnitDef>; enabled: string[]} {
  const etcd2: UnitDef = {
    kind: 'coreos-etcd',
    description: 'etcd2',
    aliases: ['etcd'],
    restart: 'on-failure',
    restartSec: 5,
    // Type=notify, as on CoreOS: `systemctl start etcd2` returns once the member serves.
    startTimeoutMs: 90_000,
  }
  const asterisk: UnitDef = {kind: 'asterisk', description: 'Asterisk PBX', startTimeoutMs: 10_000}
  switch (host.kind) {
    case 'discovery':
      return {
        units: {
          'discovery-etcd': {
            kind: 'etcd-backend',
            description: 'etcd (backend of the discovery service)',
            startTimeoutMs: 30_000,
          },
          discovery: {kind: 'discovery', description: 'etcd discovery service', startTimeoutMs: 10_000},
        },
        enabled: ['discovery-etcd', 'discovery'],
      }
    case 'kamailio':
      return {
        units: {
          kamailio: {
            kind: 'kamailio',
            description: 'Kamailio - the Open Source SIP Server',
            startTimeoutMs: 10_000,
          },
        },
        enabled: ['kamailio'],
      }
    case 'asterisk':
      return {units: {etcd2, asterisk}, enabled: host.etcd ? ['asterisk', 'etcd2'] : ['asterisk']}
    case 'spare':
      return {units: {etcd2, asterisk}, enabled: []}
  }
}

/** The cloud-config of a CoreOS host; etcd hosts of the first cluster get the discovery URL. */
export function userData(host: PlannedHost, discoveryUrl?: string): string {
  const lines = [
    '#cloud-config',
    `hostname: ${host.name}`,
    'coreos:',
    '  etcd2:',
    `    name: ${host.name}`,
    ...(discoveryUrl ? [`    discovery: ${discoveryUrl}`] : []),
    `    advertise-client-urls: http://${host.ip}:2379`,
    `    initial-advertise-peer-urls: http://${host.ip}:2380`,
    `    listen-client-urls: http://${host.ip}:2379,http://127.0.0.1:2379`,
    `    listen-peer-urls: http://${host.ip}:2380`,
  ]
  if (discoveryUrl) lines.push('  units:', '    - name: etcd2.service', '      command: start')
  return `${lines.join('\n')}\n`
}

export function sshdConfig(host: PlannedHost, dir: string, authorizedKeys: string): string {
  return `# sshd of lab host ${host.name} (written by hactl lab up)
ListenAddress ${host.ip}:22
HostKey ${dir}/ssh/ssh_host_ed25519_key
PidFile none
AuthorizedKeysFile ${authorizedKeys}
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
UseDNS no
PrintMotd no
PrintLastLog no
MaxSessions 10
MaxStartups 100:30:200
LoginGraceTime 30
AcceptEnv LANG LC_*
Subsystem sftp /usr/lib/openssh/sftp-server
`
}

export function dispatcherList(asteriskIps: string[]): string {
  return `# dispatcher.list of the hactl lab: SETID URI FLAGS PRIORITY ATTRS\n${asteriskIps.map((ip) => `1 sip:${ip}:5060 0 0`).join('\n')}\n`
}

export function kamailioCfg(ip: string, pingIntervalS = 2): string {
  const tmpl = readFileSync(path.join(labScriptsDir(), 'kamailio.cfg.tmpl'), 'utf8')
  return tmpl.replaceAll('{{IP}}', ip).replaceAll('{{PING_INTERVAL}}', String(pingIntervalS))
}

function wrapper(dir: string, script: string, kind: 'asterisk' | 'systemctl'): string {
  const node = shellQuote(process.execPath)
  const mjs = shellQuote(path.join(labScriptsDir(), script))
  // systemctl.mjs is a multi-call program: it is told the name it was invoked as.
  const argv0 = kind === 'systemctl' ? ' "$0"' : ''
  // fast-client.pl answers the hot client forms (`asterisk -rx`, `systemctl VERB`) in a few ms, as
  // the real C programs do, and execs the Node program for everything else; without Perl, Node.
  return `#!/bin/sh
# hactl lab: ${script} for this host (bind-mounted over the real command inside the host)
export HACTL_LAB_HOST_DIR=${shellQuote(dir)}
[ -x /usr/bin/perl ] && [ -z "$HACTL_LAB_NO_FAST_CLIENT" ] && exec /usr/bin/perl ${shellQuote(path.join(labScriptsDir(), 'fast-client.pl'))} ${node} ${mjs} ${kind}${argv0} "$@"
exec ${node} ${mjs}${argv0} "$@"
`
}

/**
 * Paths the lab binds over inside each host. systemctl's multi-call names (reboot, shutdown, ...)
 * are symlinks to it on Debian 12; where one is a separate file, it gets the same program.
 */
export function commandTargets(): {systemctl: string[]; asterisk: string} {
  const targets = new Set<string>()
  for (const p of [
    '/usr/bin/systemctl',
    '/bin/systemctl',
    '/usr/sbin/reboot',
    '/sbin/reboot',
    '/sbin/shutdown',
    '/usr/sbin/shutdown',
    '/usr/sbin/poweroff',
    '/usr/sbin/halt',
  ]) {
    try {
      const real = realpathSync(p)
      if (statSync(real).isFile()) targets.add(real)
    } catch {
      // not there on this machine
    }
  }
  if (targets.size === 0) targets.add('/usr/bin/systemctl')
  return {systemctl: [...targets], asterisk: '/usr/sbin/asterisk'}
}

/** Create mount points that do not exist on this machine, and remember them for the last `lab down`. */
export function ensureMountpoints(points: Array<{path: string; type: 'dir' | 'file'}>): void {
  const created: Array<{path: string; type: 'dir' | 'file'}> = readPlaceholders()
  for (const p of points) {
    if (existsSync(p.path) || isSymlink(p.path)) continue
    if (p.type === 'dir') mkdirSync(p.path, {recursive: true, mode: 0o755})
    else {
      mkdirSync(path.dirname(p.path), {recursive: true})
      writeFileSync(p.path, '', {mode: 0o644})
    }
    if (!created.some((c) => c.path === p.path)) created.push(p)
  }
  mkdirSync(path.dirname(PLACEHOLDERS_FILE), {recursive: true})
  writeFileSync(PLACEHOLDERS_FILE, `${JSON.stringify(created, null, 2)}\n`)
}

export function readPlaceholders(): Array<{path: string; type: 'dir' | 'file'}> {
  try {
    return JSON.parse(readFileSync(PLACEHOLDERS_FILE, 'utf8')) as Array<{path: string; type: 'dir' | 'file'}>
  } catch {
    return []
  }
}

function isSymlink(p: string): boolean {
  try {
    return lstatSync(p).isSymbolicLink()
  } catch {
    return false
  }
}

/** Write a host's directory: host.json, host.env, mounts, its private directories and configs. */
export function writeHostFiles(opts: {
  plan: LabPlan
  host: PlannedHost
  dir: string
  authorizedKeys: string
  rebootDelayMs: number
  asteriskIps: string[]
}): void {
  const {plan, host, dir} = opts
  for (const d of [
    'ssh',
    'bin',
    'etcd',
    'coreos-install',
    'kamailio',
    'run',
    'log',
    'etc',
    'boot',
    'root',
    'tmp',
  ]) {
    mkdirSync(path.join(dir, d), {recursive: true, mode: d === 'etcd' || d === 'root' ? 0o700 : 0o755})
  }
  // A host is its own machine: its own /tmp, and a /root with Debian's default dotfiles (not this
  // machine's, whose shell setup would run in every SSH session on every host).
  chmodSync(path.join(dir, 'tmp'), 0o1777)
  for (const f of ['bashrc', 'profile']) {
    const src = `/usr/share/base-files/dot.${f}`
    if (existsSync(src)) copyFileSync(src, path.join(dir, 'root', `.${f}`))
  }
  const {units, enabled} = unitsFor(host)
  const hostJson: HostJson = {
    lab: plan.name,
    name: host.name,
    kind: host.kind,
    ip: host.ip,
    prefix: plan.prefix,
    node: process.execPath,
    labScripts: labScriptsDir(),
    rebootDelayMs: opts.rebootDelayMs,
    rebootStopTimeoutMs: 5000,
    stopTimeoutMs: 15_000,
    units,
  }
  writeFileSync(path.join(dir, 'host.json'), `${JSON.stringify(hostJson, null, 2)}\n`)
  writeFileSync(path.join(dir, 'enabled.json'), `${JSON.stringify(enabled.sort())}\n`)
  writeFileSync(path.join(dir, 'faults.json'), '[]\n')
  writeFileSync(
    path.join(dir, 'host.env'),
    [
      `HOST_NAME=${shellQuote(host.name)}`,
      `HOST_IP=${shellQuote(host.ip)}`,
      `HOST_PREFIX=${plan.prefix}`,
      `HOST_NODE=${shellQuote(process.execPath)}`,
      `HOST_LAB_SCRIPTS=${shellQuote(labScriptsDir())}`,
      `HOST_REPO=${shellQuote(path.dirname(labScriptsDir()))}`,
      '',
    ].join('\n'),
  )
  writeFileSync(path.join(dir, 'ssh', 'sshd_config'), sshdConfig(host, dir, opts.authorizedKeys))
  writeFileSync(path.join(dir, 'bin', 'systemctl'), wrapper(dir, 'systemctl.mjs', 'systemctl'), {mode: 0o755})
  writeFileSync(path.join(dir, 'bin', 'asterisk'), wrapper(dir, 'asterisk.mjs', 'asterisk'), {mode: 0o755})
  writeFileSync(path.join(dir, 'etc', 'hostname'), `${host.name}\n`)
  writeFileSync(path.join(dir, 'etc', 'machine-id'), `${randomBytes(16).toString('hex')}\n`)
  if (host.kind === 'kamailio') {
    writeFileSync(path.join(dir, 'kamailio', 'kamailio.cfg'), kamailioCfg(host.ip))
    writeFileSync(path.join(dir, 'kamailio', 'dispatcher.list'), dispatcherList(opts.asteriskIps))
  }
  if (host.kind === 'asterisk' || host.kind === 'spare')
    writeFileSync(path.join(dir, 'coreos-install', 'user_data'), userData(host))
  const targets = commandTargets()
  const mounts: Array<[string, string]> = [
    [path.join(dir, 'run'), '/run'],
    [path.join(dir, 'log'), '/var/log'],
    [path.join(dir, 'root'), '/root'],
    [path.join(dir, 'tmp'), '/tmp'],
    [path.join(dir, 'etcd'), '/var/lib/etcd'],
    [path.join(dir, 'coreos-install'), '/var/lib/coreos-install'],
    [path.join(dir, 'kamailio'), '/etc/kamailio'],
    [path.join(dir, 'etc', 'hostname'), '/etc/hostname'],
    ...(existsSync('/etc/machine-id')
      ? ([[path.join(dir, 'etc', 'machine-id'), '/etc/machine-id']] as Array<[string, string]>)
      : []),
    ...targets.systemctl.map((t): [string, string] => [path.join(dir, 'bin', 'systemctl'), t]),
    [path.join(dir, 'bin', 'asterisk'), targets.asterisk],
  ]
  writeFileSync(path.join(dir, 'mounts'), `${mounts.map(([s, d]) => `${s}\t${d}`).join('\n')}\n`)
  // Every other host of the lab and the bridge as permanent neighbours (see setupNetwork() in up.ts).
  const neigh = [
    `neigh replace ${plan.bridgeIp} lladdr ${plan.bridgeMac} dev eth0 nud permanent`,
    ...plan.hosts
      .filter((h) => h.name !== host.name)
      .map((h) => `neigh replace ${h.ip} lladdr ${h.mac} dev eth0 nud permanent`),
  ]
  writeFileSync(path.join(dir, 'neigh'), `${neigh.join('\n')}\n`)
}

/** The mount points every host needs on this machine. */
export function neededMountpoints(): Array<{path: string; type: 'dir' | 'file'}> {
  const t = commandTargets()
  return [
    {path: '/var/lib/etcd', type: 'dir'},
    {path: '/var/lib/coreos-install', type: 'dir'},
    {path: '/etc/kamailio', type: 'dir'},
    {path: '/etc/hostname', type: 'file'},
    ...t.systemctl.map((p) => ({path: p, type: 'file' as const})),
    {path: t.asterisk, type: 'file'},
  ]
}
