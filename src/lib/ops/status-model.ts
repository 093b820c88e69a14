import {shellQuote} from '../ssh/quote.js'
import type {ClusterStatus, DispatcherEntry, EtcdSummary, NodeStatus, Problem} from './status-schema.js'

export type {ClusterStatus, DispatcherEntry, EtcdSummary, NodeStatus, Problem} from './status-schema.js'

/**
 * A box is in service when Asterisk runs, it is not in maintenance, and every Kamailio that
 * answered routes to it.
 */
export function isInService(n: NodeStatus): boolean {
  if (!n.roles.includes('asterisk')) return false
  if (n.asterisk?.state !== 'running') return false
  if (n.maintenance) return false
  const entries = Object.values(n.dispatcher ?? {})
  if (entries.length === 0) return false
  return entries.every((e) => e.state === 'active' || e.state === 'unknown') && entries.some((e) => e.state === 'active')
}

const SEVERITY_ORDER = {critical: 0, warning: 1} as const

/** The problem rules: each problem says what is wrong and the command that fixes or explains it. */
export function findProblems(
  nodes: NodeStatus[],
  etcd: EtcdSummary,
  opts: {
    hasEtcdRole: boolean
    kamailioNodes: string[]
    etcdService?: string
    bin?: string
    /** ssh.knownHosts as configured: the file the host key fixes must edit. */
    knownHosts?: string
  },
): Problem[] {
  const bin = opts.bin ?? 'hactl'
  // The name a host has in known_hosts ([host]:port off port 22), and the file hactl reads.
  const keyName = (n: NodeStatus) => (n.port === 22 ? n.host : shellQuote(`[${n.host}]:${n.port}`))
  // Quoted for the shell, but a leading ~/ left outside the quotes for the shell to expand.
  const knownHosts = opts.knownHosts ? shellQuote(opts.knownHosts).replace(/^'~\//, "~/'") : undefined
  const keyFile = knownHosts ? ` -f ${knownHosts}` : ''
  const svc = opts.etcdService ?? 'etcd2'
  const problems: Problem[] = []
  const add = (p: Problem) => problems.push(p)

  if (opts.hasEtcdRole) {
    if (!etcd.reachable) {
      add({
        severity: 'critical',
        kind: 'etcd-unreachable',
        message: `etcd does not answer${etcd.error ? `: ${etcd.error}` : ''}`,
        fix: `${bin} exec etcd -- systemctl status ${svc}; if the cluster is lost: ${bin} cluster rediscover`,
      })
    } else {
      if (!etcd.leader) {
        add({severity: 'critical', kind: 'etcd-no-leader', message: 'etcd has no leader', fix: `${bin} cluster rediscover --dry-run`})
      }
      for (const a of etcd.alarms) {
        add({severity: 'critical', kind: 'etcd-alarm', message: `etcd alarm: ${a}`, fix: 'etcdctl alarm list; etcdctl defrag; etcdctl alarm disarm'})
      }
    }
  }

  for (const n of nodes) {
    if (!n.ssh.ok) {
      const kind = n.ssh.error?.kind
      if (kind === 'host-key-mismatch') {
        add({severity: 'critical', kind: 'host-key-mismatch', node: n.name, message: `${n.name}: ${n.ssh.error?.message ?? 'host key mismatch'}`, fix: `ssh-keygen${keyFile} -R ${keyName(n)} (only if the host was reinstalled on purpose)`})
      } else if (kind === 'host-key-unknown') {
        add({severity: 'critical', kind: 'host-key-unknown', node: n.name, message: `${n.name}: unknown host key`, fix: `ssh-keyscan${n.port === 22 ? '' : ` -p ${n.port}`} ${n.host} >> ${knownHosts ?? '~/.ssh/known_hosts'} after checking the fingerprint`})
      } else if (kind === 'unreachable' || kind === 'timeout') {
        add({severity: 'critical', kind: 'host-unreachable', node: n.name, message: `${n.name} (${n.host}) is unreachable: ${n.ssh.error?.message ?? ''}`.trim(), fix: `ssh -p ${n.port} ${n.host}`})
      } else {
        add({severity: 'critical', kind: 'ssh-failed', node: n.name, message: `${n.name}: ${n.ssh.error?.message ?? 'ssh failed'}`, fix: `${bin} exec ${n.name} -- true --verbose`})
      }
    }
    if (n.etcd && n.roles.includes('etcd') && etcd.reachable && (n.etcd.member === 'unhealthy' || n.etcd.member === 'not-a-member')) {
      add({
        severity: 'critical',
        kind: 'etcd-member-down',
        node: n.name,
        message: n.etcd.member === 'unhealthy' ? `etcd member ${n.name} is down` : `${n.name} is not an etcd member`,
        fix: n.etcd.member === 'unhealthy' ? `${bin} exec ${n.name} -- systemctl restart ${svc}` : `${bin} node add ${n.name} --roles etcd (or ${bin} cluster rediscover)`,
      })
    }
    if (n.kamailio?.state === 'down' && n.ssh.ok) {
      add({
        severity: 'critical',
        kind: 'kamailio-down',
        node: n.name,
        message: `Kamailio on ${n.name} does not answer kamcmd${n.kamailio.detail ? `: ${n.kamailio.detail}` : ''}`,
        fix: `${bin} exec ${n.name} -- systemctl restart kamailio`,
      })
    }
    if (n.roles.includes('asterisk') && n.ssh.ok) {
      const a = n.asterisk
      if (a?.state === 'stopped' && n.maintenance?.state !== 'drained') {
        add({severity: 'critical', kind: 'asterisk-down', node: n.name, message: `Asterisk is not running on ${n.name}${n.maintenance ? ' (draining)' : ''}`, fix: `${bin} node undrain ${n.name}`})
      }
      if (a?.state === 'shutdown-pending' && !n.maintenance) {
        add({severity: 'warning', kind: 'shutdown-unmarked', node: n.name, message: `Asterisk on ${n.name} has a shutdown pending but no drain was recorded`, fix: `${bin} node drain ${n.name} (or ${bin} node undrain ${n.name} to abort it)`})
      }
      if (n.maintenance?.state === 'drained') {
        const activeIn = Object.entries(n.dispatcher ?? {}).filter(([, e]) => e.state === 'active').map(([k]) => k)
        if ((a?.activeCalls ?? 0) > 0 || activeIn.length > 0) {
          add({
            severity: 'warning',
            kind: 'drained-takes-calls',
            node: n.name,
            message: `${n.name} is marked drained but ${activeIn.length > 0 ? `is active on ${activeIn.join(', ')}` : ''}${activeIn.length > 0 && (a?.activeCalls ?? 0) > 0 ? ' and ' : ''}${(a?.activeCalls ?? 0) > 0 ? `has ${a?.activeCalls} active call(s)` : ''}`,
            fix: `${bin} node drain ${n.name}`,
          })
        }
      }
      const entries = Object.entries(n.dispatcher ?? {}).filter(([, e]) => e.state !== 'unknown')
      if (!n.maintenance && entries.length > 0) {
        const missing = entries.filter(([, e]) => e.state === 'absent').map(([k]) => k)
        const states = new Set(entries.filter(([, e]) => e.state !== 'absent').map(([, e]) => e.state))
        if (missing.length > 0) {
          add({severity: 'warning', kind: 'dispatcher-missing', node: n.name, message: `${n.name} is not in the dispatcher list of ${missing.join(', ')}`, fix: `${bin} dispatcher sync`})
        }
        if (states.size > 1 || (states.size === 1 && !states.has('active') && a?.state === 'running')) {
          const desc = entries.map(([k, e]) => `${k} ${e.flags ?? 'absent'}`).join(', ')
          add({severity: 'warning', kind: 'dispatcher-disagree', node: n.name, message: `${n.name} is not active on every Kamailio (${desc})`, fix: `${bin} node undrain ${n.name}`})
        }
      }
    }
  }
  return problems.sort((a, b) => SEVERITY_ORDER[a.severity] - SEVERITY_ORDER[b.severity])
}
