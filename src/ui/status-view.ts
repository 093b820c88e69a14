import type {ClusterStatus, NodeStatus} from '../lib/ops/status-model.js'

/** Human rendering of `hactl status`: a cluster line, a row per node, then the problems. */
export async function renderStatus(s: ClusterStatus, opts: {color: boolean}): Promise<string> {
  const chalkModule = await import('chalk')
  const {default: Table} = await import('cli-table3')
  const c = opts.color ? chalkModule.default : new chalkModule.Chalk({level: 0})
  const kamNames = [...new Set(s.nodes.flatMap((n) => Object.keys(n.dispatcher ?? {})))]

  const e = s.etcd
  const etcdLine = e.reachable
    ? `${e.healthy === e.total ? c.green(`${e.healthy}/${e.total} healthy`) : c.yellow(`${e.healthy}/${e.total} healthy`)}` +
      `, leader ${e.leader ?? c.red('none')}` +
      (e.raftTerm === undefined ? '' : `, term ${e.raftTerm}`) +
      (e.raftIndex === undefined ? '' : `, index ${e.raftIndex}`) +
      (e.version ? `, v${e.version}` : '') +
      (e.dbSize === undefined ? '' : `, db ${formatBytes(e.dbSize)}`) +
      (e.alarms.length > 0 ? c.red(`, alarms: ${e.alarms.join('; ')}`) : ', no alarms')
    : e.total === 0 && !e.error
      ? c.dim('not configured')
      : c.red(`unreachable${e.error ? ` (${e.error})` : ''}`)
  const lines: string[] = []
  lines.push(`${c.bold('Cluster')} ${s.cluster}   ${s.healthy ? c.green('healthy') : c.red('degraded')}`)
  lines.push(`${c.bold('etcd')}      ${etcdLine}`)
  if (s.discoveryUrls.length > 0) lines.push(`${c.bold('discovery')} ${s.discoveryUrls.join(c.yellow(' | '))}`)
  if (s.asterisk.total > 0) {
    const ratio = `${s.asterisk.inService}/${s.asterisk.total}`
    lines.push(`${c.bold('asterisk')}  ${s.asterisk.inService === s.asterisk.total ? c.green(ratio) : c.yellow(ratio)} in service`)
  }
  lines.push('')

  const head = ['NODE', 'HOST', 'ROLES', 'SSH', 'UP', 'ETCD', 'SERVICE', 'CALLS', ...kamNames.map((k) => k.toUpperCase()), 'MAINTENANCE']
  const table = new Table({
    head: head.map((h) => c.bold(h)),
    chars: {top: '', 'top-mid': '', 'top-left': '', 'top-right': '', bottom: '', 'bottom-mid': '', 'bottom-left': '', 'bottom-right': '', left: '', 'left-mid': '', mid: '', 'mid-mid': '', right: '', 'right-mid': '', middle: '  '},
    style: {head: [], border: [], 'padding-left': 0, 'padding-right': 0},
  })
  for (const n of s.nodes) {
    table.push([
      n.name,
      n.port === 22 ? n.host : `${n.host}:${n.port}`,
      n.roles.join(','),
      n.ssh.ok ? c.green(`ok ${n.ssh.rttMs ?? ''}ms`) : c.red(shortError(n)),
      n.uptimeSeconds === undefined ? c.dim('-') : formatUptime(n.uptimeSeconds),
      etcdCell(n, c),
      asteriskCell(n, c),
      n.asterisk?.activeCalls === undefined ? c.dim('-') : `${n.asterisk.activeCalls}/${n.asterisk.callsProcessed ?? '?'}`,
      ...kamNames.map((k) => dispatcherCell(n, k, c)),
      maintenanceCell(n, c),
    ])
  }
  lines.push(table.toString())
  if (s.problems.length > 0) {
    lines.push('')
    lines.push(c.bold(`Problems (${s.problems.length})`))
    for (const p of s.problems) {
      const tag = p.severity === 'critical' ? c.red('✖') : c.yellow('!')
      lines.push(`${tag} ${p.message}`)
      lines.push(`  ${c.dim('fix:')} ${p.fix}`)
    }
  }
  lines.push('')
  lines.push(c.dim(`gathered in ${s.durationMs} ms at ${s.generatedAt}`))
  return lines.join('\n')
}

type Colors = import('chalk').ChalkInstance

function shortError(n: NodeStatus): string {
  const kind = n.ssh.error?.kind ?? 'error'
  return kind
}

function etcdCell(n: NodeStatus, c: Colors): string {
  if (!n.etcd) return c.dim('-')
  const m = n.etcd.member
  if (m === 'leader') return c.green('leader')
  if (m === 'follower') return c.green('follower')
  if (m === 'learner') return c.yellow('learner')
  if (m === 'unknown') return c.dim('?')
  return c.red(m)
}

function asteriskCell(n: NodeStatus, c: Colors): string {
  if (!n.asterisk && n.kamailio) {
    if (n.kamailio.state === 'running') return c.green(`kamailio ${n.kamailio.destinations ?? 0} dst`)
    return n.kamailio.state === 'down' ? c.red('kamailio down') : c.dim('?')
  }
  if (!n.asterisk) return c.dim('-')
  switch (n.asterisk.state) {
    case 'running':
      return c.green('running')
    case 'stopped':
      return n.maintenance?.state === 'drained' ? c.dim('stopped') : c.red('stopped')
    case 'shutdown-pending':
      return c.yellow('stopping')
    default:
      return c.dim('?')
  }
}

function dispatcherCell(n: NodeStatus, kam: string, c: Colors): string {
  const e = n.dispatcher?.[kam]
  if (!e) return c.dim('-')
  if (e.state === 'unknown') return c.dim('?')
  if (e.state === 'absent') return c.red('absent')
  const f = e.flags ?? '?'
  if (e.state === 'active') return c.green(f)
  if (e.state === 'disabled') return n.maintenance ? c.dim(f) : c.yellow(f)
  return c.yellow(f)
}

function maintenanceCell(n: NodeStatus, c: Colors): string {
  const m = n.maintenance
  if (!m) return c.dim('-')
  const since = m.since ? ` since ${m.since.replace('T', ' ').replace(/\.\d+Z$/, 'Z')}` : ''
  return c.yellow(`${m.state}${m.by ? ` by ${m.by}` : ''}${since}${m.reason ? ` (${m.reason})` : ''}`)
}

function formatUptime(s: number): string {
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m`
  if (s < 86400) return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`
  return `${Math.floor(s / 86400)}d${Math.floor((s % 86400) / 3600)}h`
}

function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`
  return `${(n / 1024 / 1024).toFixed(1)} MiB`
}
