/**
 * Human output of `hactl dispatcher sync` and `hactl dispatcher show`.
 */
import type {DispatcherShowResult} from '../lib/ops/dispatcher-show.js'
import {hostErrorLine, type DispatcherSyncPlan, type DispatcherSyncResult} from '../lib/ops/dispatcher-sync.js'
import {renderTable} from './table.js'

interface Style {
  red(s: string): string
  green(s: string): string
  yellow(s: string): string
  dim(s: string): string
  bold(s: string): string
  cyan(s: string): string
}

const plain: Style = {
  red: (s) => s,
  green: (s) => s,
  yellow: (s) => s,
  dim: (s) => s,
  bold: (s) => s,
  cyan: (s) => s,
}

async function styleFor(color: boolean): Promise<Style> {
  if (!color) return plain
  const {default: chalk} = await import('chalk')
  return chalk
}

function colorDiff(diff: string, s: Style): string {
  return diff
    .split('\n')
    .map((l) =>
      l.startsWith('+++') || l.startsWith('---')
        ? s.bold(l)
        : l.startsWith('@@')
          ? s.cyan(l)
          : l.startsWith('+')
            ? s.green(l)
            : l.startsWith('-')
              ? s.red(l)
              : l,
    )
    .join('\n')
}

/** What will be done: the rendered set, then per host the diff or why it is left alone. */
export async function renderSyncPlan(plan: DispatcherSyncPlan, opts: {color: boolean}): Promise<string> {
  const s = await styleFor(opts.color)
  const out: string[] = []
  const boxes = plan.destinations.map(
    (d) => `${d.name} ${d.uri} weight ${d.weight}${d.disabled ? ' (disabled: in maintenance)' : ''}`,
  )
  out.push(
    `Registrations in etcd (${plan.prefixes.asterisk}): ${plan.destinations.length} destination(s) for set ${plan.setId}`,
  )
  for (const b of boxes) out.push(`  ${b}`)
  for (const w of plan.warnings) out.push(s.yellow(`  warning: ${w}`))
  out.push('')
  for (const h of plan.hosts) {
    if (!h.ok) {
      out.push(`${s.bold(h.node)}: ${s.red('cannot be read')}: ${hostErrorLine(h, '')}`)
    } else if (h.action === 'none') {
      out.push(`${s.bold(h.node)}: ${s.green('in step')} (${h.listFile} and the runtime list)`)
    } else if (h.action === 'reload') {
      out.push(`${s.bold(h.node)}: ${h.listFile} is in step, but the runtime list differs; will reload:`)
      for (const d of h.runtimeDifferences ?? []) out.push(`  ${d}`)
    } else {
      out.push(
        `${s.bold(h.node)}: ${h.exists ? `${h.listFile} differs` : `${h.listFile} does not exist`}; will write and reload:`,
      )
      out.push(colorDiff((h.diff ?? '').replace(/\n$/, ''), s))
    }
  }
  return `${out.join('\n')}\n`
}

export async function renderSyncSummary(
  result: DispatcherSyncResult,
  opts: {color: boolean},
): Promise<string> {
  const s = await styleFor(opts.color)
  if (result.dryRun) {
    const n = result.changed.length
    return `${s.dim('Dry run: nothing was changed.')} ${n === 0 ? 'Every Kamailio is in step.' : `${n} host(s) would change: ${result.changed.join(', ')}.`}\n`
  }
  const lines: string[] = []
  for (const h of result.hosts) {
    if (!h.ok) lines.push(`${s.red('✖')} ${h.node}: ${hostErrorLine(h)}`)
    else if (!h.written && !h.reloaded) lines.push(`${s.green('✔')} ${h.node}: already in step`)
    else
      lines.push(
        `${s.green('✔')} ${h.node}: ${h.written ? 'written, ' : ''}reloaded, verified (${result.destinations.length} destination(s))`,
      )
  }
  if (result.changed.length === 0 && result.failed.length === 0)
    lines.push('Nothing to do: every Kamailio is in step with etcd.')
  return `${lines.join('\n')}\n`
}

/** One row per destination, one column per Kamailio; `≠` marks the rows where they disagree. */
export async function renderShow(result: DispatcherShowResult, opts: {color: boolean}): Promise<string> {
  const s = await styleFor(opts.color)
  const hosts = result.hosts.map((h) => h.name)
  const head = [
    '',
    'SET',
    'DESTINATION',
    'NODE',
    ...hosts.map((h) => `${h.toUpperCase()} (flags prio weight)`),
  ]
  const rows = result.rows.map((r) => [
    r.agree ? '' : s.red('≠'),
    r.setId,
    r.uri,
    r.node ?? '',
    ...result.hosts.map((h) => {
      if (!h.ok) return s.dim('?')
      const v = r.views[h.name]
      if (!v) return s.red('absent')
      const text = `${v.flags} ${v.priority} ${v.weight ?? '-'}`
      return v.state === 'active' ? text : v.state === 'disabled' ? s.yellow(text) : s.red(text)
    }),
  ])
  const out: string[] = []
  out.push(
    rows.length === 0 ? 'No destinations on any Kamailio that answered.' : await renderTable(head, rows),
  )
  for (const h of result.hosts)
    if (!h.ok) out.push(s.red(`${h.name}: cannot be asked: ${h.error?.message ?? ''}`))
  const disagreements = result.rows.filter((r) => !r.agree)
  if (disagreements.length > 0) {
    out.push('')
    out.push(s.red(`The Kamailio hosts disagree on ${disagreements.length} destination(s):`))
    for (const r of disagreements)
      out.push(`  ≠ ${r.uri}${r.node ? ` (${r.node})` : ''}: ${r.differences.join('; ')}`)
    out.push(s.dim('Make them agree with etcd: hactl dispatcher sync'))
  } else if (result.agree) {
    out.push(s.dim(`All ${result.hosts.length} Kamailio host(s) agree.`))
  }
  return `${out.join('\n')}\n`
}
