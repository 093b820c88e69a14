import {formatMs, InterruptedError} from '../lib/errors.js'
import type {StepEvent} from '../lib/ops/drain.js'
import {formatBytes, formatOffset} from '../lib/ops/host-facts.js'
import type {HostKeyInfo, NodeAddPlan, NodeAddResult} from '../lib/ops/node-add.js'
import type {NodeRemovePlan, NodeRemoveResult} from '../lib/ops/node-remove.js'
import type {NodeOpEvent} from '../lib/ops/node-shared.js'

/**
 * Human side of `hactl node add|remove`: the plan (stderr), the questions (host key, plan), the
 * step rows (stderr; a listr2 tree on a terminal, plain lines elsewhere, rollback lines after),
 * and the summary (stdout).
 */

type Chalk = import('chalk').ChalkInstance

async function chalkFor(color: boolean): Promise<Chalk> {
  const mod = await import('chalk')
  return color ? mod.default : new mod.Chalk({level: 0})
}

/** The last step a node add or remove reached: the lines a second Ctrl-C prints as it quits. */
export function nodeStepTracker(name: string, bin: string): {onEvent(e: NodeOpEvent): void; lines(): string[]} {
  let reached = 'nothing changed yet'
  return {
    onEvent(e) {
      if (e.type === 'start') reached = `"${e.title}" running (may be half done)`
      else if (e.type === 'done') reached = `step ${e.step} done`
      else if (e.type === 'fail') reached = `step ${e.step} failed: ${e.detail}`
    },
    lines: () => [`${name}: ${reached}`, `check with: ${bin} status`],
  }
}

export async function renderAddPlan(plan: NodeAddPlan, opts: {color: boolean; dryRun?: boolean}): Promise<string> {
  const c = await chalkFor(opts.color)
  const n = plan.node
  const h = plan.host
  const lines = [c.bold(`Plan: add ${n.name} (${n.host}, roles ${n.roles.join(', ')}${n.weight === undefined ? '' : `, weight ${n.weight}`})${opts.dryRun ? ' (dry run: nothing will change)' : ''}`)]
  lines.push(`  ${c.bold('host')}      ${h.hostname || '?'}, ${h.os || '?'}${h.kernel ? ` (${h.kernel})` : ''}`)
  lines.push(`  ${c.bold('host key')}  ${plan.hostKey.type} ${plan.hostKey.fingerprint}${plan.hostKey.known ? ' (known)' : ' (new)'}`)
  lines.push(
    `  ${c.bold('facts')}     ${h.diskFreeBytes === undefined ? 'free disk unknown' : `${formatBytes(h.diskFreeBytes)} free at ${h.diskPath ?? '?'}`}; clock ${h.clockOffsetMs === undefined ? 'unknown' : formatOffset(h.clockOffsetMs)}; facts in ${h.rttMs}ms`,
  )
  if (plan.etcd) lines.push(`  ${c.bold('etcd')}      ${plan.etcd.check.ok ? plan.etcd.check.message : c.red(plan.etcd.check.message)}`)
  if (plan.kamailio.length > 0) {
    lines.push(`  ${c.bold('kamailio')}  ${plan.kamailio.map((k) => `${k.node} ${k.ok ? (k.flags ?? 'absent') : c.red('unreachable')}`).join(', ')}`)
  }
  if (plan.agent) lines.push(`  ${c.bold('agent')}     ${plan.agent.argv.join(' ')} agent announce (${plan.agent.how})`)
  for (const m of plan.missing) lines.push(`  ${c.red('missing')}   ${m.what}: ${m.fix}`)
  for (const b of plan.blockers) lines.push(`  ${c.red('cannot add:')} ${b}`)
  for (const w of plan.warnings) lines.push(`  ${c.yellow('warning:')} ${w}`)
  if (plan.blockers.length === 0) plan.steps.forEach((s, i) => lines.push(`    ${i + 1}. ${s.title}`))
  return `${lines.join('\n')}\n`
}

export async function renderRemovePlan(plan: NodeRemovePlan, opts: {color: boolean; dryRun?: boolean}): Promise<string> {
  const c = await chalkFor(opts.color)
  const n = plan.node
  const lines = [c.bold(`Plan: remove ${n.name} (${n.host}, roles ${n.roles.join(', ')})${opts.dryRun ? ' (dry run: nothing will change)' : ''}`)]
  if (!plan.reachable) lines.push(`  ${c.yellow('host')}      does not answer: ${plan.reachError ?? ''}`)
  if (plan.etcd) lines.push(`  ${c.bold('quorum')}    ${plan.etcd.quorum.ok ? plan.etcd.quorum.message : c.red(plan.etcd.quorum.message)}`)
  if (plan.capacity) lines.push(`  ${c.bold('capacity')}  ${plan.capacity.ok ? plan.capacity.message : c.red(plan.capacity.message)}`)
  if (plan.kamailio.length > 0 && plan.sip) {
    lines.push(`  ${c.bold('kamailio')}  ${plan.kamailio.map((k) => `${k.node} ${k.ok ? (k.flags ?? 'absent') : c.red('unreachable')}`).join(', ')}`)
  }
  for (const b of plan.blockers) lines.push(`  ${c.red('cannot remove:')} ${b}`)
  for (const w of plan.warnings) lines.push(`  ${c.yellow('warning:')} ${w}`)
  if (plan.blockers.length === 0) {
    plan.steps.forEach((s, i) => {
      lines.push(`    ${i + 1}. ${s.title}`)
      for (const d of s.details ?? []) lines.push(`       - ${c.dim(d)}`)
    })
  }
  return `${lines.join('\n')}\n`
}

async function confirm(message: string, defaultValue: boolean): Promise<boolean> {
  const {confirm: ask} = await import('@inquirer/prompts')
  try {
    return await ask({message, default: defaultValue}, {output: process.stderr})
  } catch (error) {
    if ((error as Error).name === 'ExitPromptError') throw new InterruptedError('interrupted at the question; nothing was changed')
    throw error
  }
}

/** Show an unknown host key and ask whether to trust it (default no). */
export async function askTrustHostKey(info: HostKeyInfo): Promise<boolean> {
  const where = info.port === 22 ? info.host : `[${info.host}]:${info.port}`
  process.stderr.write(
    `The host ${where} is not in ${info.knownHostsFile}.\n  key type:    ${info.type}\n  fingerprint: ${info.fingerprint}\nCompare it with the host's own (on its console: ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub).\n`,
  )
  return confirm(`Trust this key and add ${where} to ${info.knownHostsFile}?`, false)
}

export async function confirmPlan(message: string): Promise<boolean> {
  return confirm(message, false)
}

// ---------------------------------------------------------------------------------------------
// Progress

export interface StepProgress {
  onEvent(e: NodeOpEvent): void
  /** The drain's own events, shown on the drain row. */
  onDrainEvent(e: StepEvent): void
  /** Close the display; rollback lines follow it. */
  finish(): Promise<void>
}

type Final = {state: 'ok' | 'failed' | 'skipped'; text?: string}

interface Row {
  id: string
  title: string
  setTitle?: (t: string) => void
  done?: Final
  finish?: (f: Final) => void
}

function drainText(e: StepEvent): string | undefined {
  switch (e.type) {
    case 'start':
      return `drain: ${e.step}`
    case 'progress':
      return `drain: ${e.callsLeft} ${e.callsLeft === 1 ? 'call' : 'calls'} left`
    case 'done':
      return `drain: ${e.step} done${e.detail ? ` (${e.detail})` : ''}`
    case 'fail':
      return `drain: ${e.step} failed: ${e.detail}`
    default:
      return undefined
  }
}

/** One row per step; listr2 on a terminal, plain lines elsewhere, nothing when `enabled` is false. */
export async function startStepProgress(
  steps: ReadonlyArray<{id: string; title: string}>,
  opts: {stream?: NodeJS.WriteStream; tty?: boolean; enabled?: boolean; color?: boolean} = {},
): Promise<StepProgress> {
  const stream = opts.stream ?? process.stderr
  if (opts.enabled === false) return {onEvent() {}, onDrainEvent() {}, async finish() {}}
  const rows = new Map<string, Row>(steps.map((s) => [s.id, {id: s.id, title: s.title}]))
  const tty = opts.tty ?? Boolean(stream.isTTY)
  const undoLines: string[] = []
  const c = await chalkFor(opts.color ?? true)
  const undoLine = (e: Extract<NodeOpEvent, {type: 'undo'}>) =>
    `  ${e.ok ? c.green('undone') : c.red('NOT undone')}: ${e.title}${e.error ? ` (${e.error})` : ''}`
  if (!tty) {
    const line = (text: string) => stream.write(`${text}\n`)
    let undoHeader = false
    let lastDrain = ''
    return {
      onEvent(e) {
        const title = 'step' in e ? (rows.get(e.step)?.title ?? e.step) : ''
        switch (e.type) {
          case 'start':
            line(`${title} ...`)
            break
          case 'update':
            line(`  ${e.text}`)
            break
          case 'done':
            line(`${title}: ok${e.detail ? ` (${e.detail})` : ''}`)
            break
          case 'skip':
            line(`${title}: skipped (${e.detail})`)
            break
          case 'fail':
            line(`${title}: FAILED: ${e.detail}`)
            break
          case 'undo':
            if (!undoHeader) line('Rolling back:')
            undoHeader = true
            line(undoLine(e))
            break
        }
      },
      onDrainEvent(e) {
        const t = drainText(e)
        // The call count repeats every poll: a log wants it when it changes.
        if (t && t !== lastDrain) line(`  ${t}`)
        if (t) lastDrain = t
      },
      async finish() {},
    }
  }

  const {Listr, DefaultRenderer, ListrLogger, ProcessOutput} = await import('listr2')
  class StderrRenderer extends DefaultRenderer {
    static override nonTTY = true
  }
  const finishRow = (row: Row, f: Final) => {
    if (row.done) return
    row.done = f
    row.finish?.(f)
  }
  const listr = new Listr(
    [...rows.values()].map((row) => ({
      title: row.title,
      task: async (_ctx: unknown, task: {title: string | undefined; skip: (m?: string) => void}) => {
        row.setTitle = (t) => {
          task.title = t
        }
        const f = row.done ?? (await new Promise<Final>((resolve) => (row.finish = resolve)))
        if (f.state === 'ok') task.title = f.text ? `${row.title} (${f.text})` : row.title
        else if (f.state === 'skipped') task.skip(`${row.title}: skipped${f.text ? ` (${f.text})` : ''}`)
        else throw new Error(`${row.title}: ${f.text ?? 'failed'}`)
      },
    })),
    {
      concurrent: false,
      exitOnError: false,
      registerSignalListeners: false,
      collectErrors: false,
      renderer: StderrRenderer,
      rendererOptions: {
        logger: new ListrLogger({processOutput: new ProcessOutput(stream, process.stdout)}),
        collapseErrors: false,
        showErrorMessage: true,
      },
    },
  )
  const shown = listr.run().catch(() => undefined)
  return {
    onEvent(e) {
      if (e.type === 'undo') {
        undoLines.push(undoLine(e))
        return
      }
      const row = rows.get(e.step)
      if (!row || row.done) return
      switch (e.type) {
        case 'start':
          break
        case 'update':
          row.setTitle?.(`${row.title}: ${e.text}`)
          break
        case 'done':
          finishRow(row, {state: 'ok', ...(e.detail ? {text: e.detail} : {})})
          break
        case 'skip':
          finishRow(row, {state: 'skipped', text: e.detail})
          break
        case 'fail':
          finishRow(row, {state: 'failed', text: e.detail})
          break
      }
    },
    onDrainEvent(e) {
      const row = rows.get('drain')
      const t = drainText(e)
      if (row && !row.done && t) row.setTitle?.(`${row.title}: ${t}`)
    },
    async finish() {
      for (const row of rows.values()) finishRow(row, {state: 'skipped'})
      await shown
      if (undoLines.length > 0) stream.write(`Rolling back:\n${undoLines.join('\n')}\n`)
    },
  }
}

// ---------------------------------------------------------------------------------------------
// Summaries (stdout)

export async function renderAddSummary(r: NodeAddResult, opts: {color: boolean}): Promise<string> {
  const c = await chalkFor(opts.color)
  const lines = [`${c.green('✔')} ${c.bold(r.node)} added (${r.host}, roles ${r.roles.join(', ')}) in ${formatMs(r.durationMs)}`]
  if (r.etcd) lines.push(`  etcd: member ${r.etcd.memberId}, ${r.etcd.voting} voting members, ${r.etcd.healthy} healthy`)
  if (r.agentPid !== undefined) lines.push(`  announce agent: pid ${r.agentPid}`)
  if (r.dispatcher) lines.push(`  dispatchers: ${Object.entries(r.dispatcher).map(([k, f]) => `${k} ${f}`).join(', ')}`)
  for (const s of r.steps) lines.push(c.dim(`  ${s.status === 'done' ? '✔' : '-'} ${s.title}${s.detail ? `: ${s.detail}` : ''}${s.durationMs === undefined ? '' : ` (${formatMs(s.durationMs)})`}`))
  return `${lines.join('\n')}\n`
}

export async function renderRemoveSummary(r: NodeRemoveResult, opts: {color: boolean}): Promise<string> {
  const c = await chalkFor(opts.color)
  const lines = [`${c.green('✔')} ${c.bold(r.node)} removed in ${formatMs(r.durationMs)}`]
  for (const s of r.steps) lines.push(c.dim(`  ${s.status === 'done' ? '✔' : '-'} ${s.title}${s.detail ? `: ${s.detail}` : ''}${s.durationMs === undefined ? '' : ` (${formatMs(s.durationMs)})`}`))
  return `${lines.join('\n')}\n`
}
