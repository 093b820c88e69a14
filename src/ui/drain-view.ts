import {parseFlagDuration} from '../lib/config/rules.js'
import {formatMs, InterruptedError, UserError, withoutHost} from '../lib/errors.js'
import {
  waits,
  type DrainRunOutput,
  type DrainRunPlan,
  type NodeRunResult,
  type PlanStep,
  type StepEvent,
  type StepKind,
} from '../lib/ops/drain.js'

/**
 * Human side of `hactl node drain|undrain`: the plan (stderr), the progress rows (stderr; a listr2
 * tree on a terminal, plain lines otherwise), the questions, and the summary (stdout).
 */

type Chalk = import('chalk').ChalkInstance

async function chalkFor(color: boolean): Promise<Chalk> {
  const mod = await import('chalk')
  return color ? mod.default : new mod.Chalk({level: 0})
}

export async function renderPlan(
  plan: DrainRunPlan,
  opts: {color: boolean; dryRun?: boolean},
): Promise<string> {
  const c = await chalkFor(opts.color)
  const lines: string[] = [
    c.bold(
      `Plan: ${plan.operation} ${plan.nodes.map((n) => n.node).join(', ')}${opts.dryRun ? ' (dry run: nothing will change)' : ''}`,
    ),
  ]
  for (const n of plan.nodes) {
    lines.push(`  ${c.bold(n.node)}  ${c.dim(n.state)}`)
    if (n.action === 'none') lines.push(`    ${c.green('nothing to do:')} ${n.reason}`)
    else if (n.action === 'blocked') lines.push(`    ${c.red(`cannot ${plan.operation}:`)} ${n.reason}`)
    else n.steps.forEach((s, i) => lines.push(`    ${i + 1}. ${s.title}`))
  }
  const applying = plan.nodes.some((n) => n.action === 'apply')
  if (plan.capacity && applying)
    lines.push(
      `  ${c.bold('capacity')}  ${plan.capacity.ok ? plan.capacity.message : c.yellow(plan.capacity.message)}`,
    )
  if (plan.operation === 'drain' && waits(plan)) {
    lines.push(
      `  ${c.bold('timeout')}   ${formatMs(plan.timeoutMs)}; ${plan.force ? c.yellow('then end the remaining calls (--force)') : 'then leave the box out of rotation and report the calls left'}`,
    )
  }
  for (const e of plan.forceEffects) lines.push(`  ${c.yellow('--force will')} ${e}`)
  return `${lines.join('\n')}\n`
}

export async function renderSummary(out: DrainRunOutput, opts: {color: boolean}): Promise<string> {
  const c = await chalkFor(opts.color)
  const r = out.result
  if (!r) return ''
  const lines: string[] = []
  for (const n of r.nodes) {
    const mark = outcomeMark(n, c)
    lines.push(`${mark} ${c.bold(n.node)}: ${withoutHost(n.node, n.message)}`)
    lines.push(`  ${c.dim(stateLine(n))}`)
  }
  lines.push(c.dim(`${r.operation} finished in ${formatMs(r.durationMs)}`))
  return `${lines.join('\n')}\n`
}

/** Where a node stands now: rotation per Kamailio, Asterisk, the mark, and the calls. */
export function stateLine(n: NodeRunResult): string {
  const rotation = Object.entries(n.rotation)
    .map(([k, v]) => `${k} ${v ?? 'absent'}`)
    .join(', ')
  const calls = [
    n.callsDrained === undefined
      ? ''
      : `${n.callsDrained} ${n.callsDrained === 1 ? 'call' : 'calls'} drained`,
    n.callsLeft === undefined ? '' : `${n.callsLeft} left`,
    n.callsCut ? `${n.callsCut} cut` : '',
  ].filter(Boolean)
  return [
    `dispatchers: ${rotation || 'none'}`,
    `asterisk: ${n.asterisk}`,
    `mark: ${n.mark ?? 'none'}`,
    ...(calls.length > 0 ? [calls.join(', ')] : []),
  ].join('; ')
}

function outcomeMark(n: NodeRunResult, c: Chalk): string {
  switch (n.outcome) {
    case 'drained':
    case 'undrained':
      return c.green('✔')
    case 'nothing-to-do':
      return c.green('=')
    case 'timeout':
    case 'interrupted':
      return c.yellow('!')
    default:
      return c.red('✖')
  }
}

// ---------------------------------------------------------------------------------------------
// Progress

export interface DrainProgress {
  onEvent(e: StepEvent): void
  /** Close the display (rows never reported become skipped). */
  finish(): Promise<void>
}

type Final = {state: 'ok' | 'failed' | 'skipped'; text?: string}

interface Row {
  node: string
  step: PlanStep
  title: string
  setTitle?: (t: string) => void
  done?: Final
  finish?: (f: Final) => void
}

/** Rows per node and step; listr2 on a terminal, plain lines elsewhere, nothing when `enabled` is false. */
export async function startDrainProgress(
  plan: DrainRunPlan,
  opts: {stream?: NodeJS.WriteStream; tty?: boolean; enabled?: boolean} = {},
): Promise<DrainProgress> {
  const stream = opts.stream ?? process.stderr
  if (opts.enabled === false) return {onEvent() {}, async finish() {}}
  const rows = new Map<string, Row>()
  const key = (node: string, step: StepKind) => `${node}\u0000${step}`
  for (const n of plan.nodes) {
    if (n.action !== 'apply') continue
    for (const s of n.steps) rows.set(key(n.node, s.kind), {node: n.node, step: s, title: s.title})
  }
  const tty = opts.tty ?? Boolean(stream.isTTY)
  return tty ? listrProgress(plan, rows, key, stream) : plainProgress(rows, key, stream)
}

/**
 * The last step each box reached, for the lines a second Ctrl-C prints as it quits at once (the
 * run's summary is not printed then).
 */
export function drainStateTracker(): {onEvent(e: StepEvent): void; lines(): string[]} {
  const last = new Map<string, string>()
  return {
    onEvent(e) {
      if (e.type === 'start') last.set(e.node, `${e.step} running (may be half done)`)
      else if (e.type === 'progress') last.set(e.node, `${e.step}: ${waitText(e)}`)
      else if (e.type === 'done') last.set(e.node, `${e.step} done`)
      else if (e.type === 'fail') last.set(e.node, `${e.step} failed: ${e.detail}`)
    },
    lines: () =>
      last.size === 0 ? ['nothing changed yet'] : [...last].map(([node, text]) => `${node}: last step ${text}`),
  }
}

function waitText(e: Extract<StepEvent, {type: 'progress'}>): string {
  // Channels only matter when no call is left but a channel is (a ringing or one-legged channel).
  const channels =
    e.callsLeft === 0 && e.channelsLeft > 0
      ? ` (${e.channelsLeft} ${e.channelsLeft === 1 ? 'channel' : 'channels'})`
      : ''
  return `${e.callsLeft} ${e.callsLeft === 1 ? 'call' : 'calls'} left${channels}, ${elapsed(e.elapsedMs)} elapsed`
}

function elapsed(ms: number): string {
  const s = Math.floor(ms / 1000)
  return s < 60 ? `${s}s` : `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`
}

function plainProgress(
  rows: Map<string, Row>,
  key: (n: string, s: StepKind) => string,
  stream: NodeJS.WritableStream,
): DrainProgress {
  const lastProgress = new Map<string, {text: string; at: number}>()
  const line = (node: string, text: string) => stream.write(`${node}: ${text}\n`)
  return {
    onEvent(e) {
      const row = rows.get(key(e.node, e.step))
      const title = row?.title ?? e.step
      if (row?.done) return
      switch (e.type) {
        case 'start':
          line(e.node, `${title} ...`)
          break
        case 'progress': {
          // A log wants a line when the count changes, and a heartbeat every 10 s, not every poll.
          const text = waitText(e)
          const counts = `${e.callsLeft}/${e.channelsLeft}`
          const prev = lastProgress.get(e.node)
          if (!prev || prev.text !== counts || Date.now() - prev.at >= 10_000) {
            lastProgress.set(e.node, {text: counts, at: Date.now()})
            line(e.node, `  ${text}`)
          }
          break
        }
        case 'done':
          if (row) row.done = {state: 'ok'}
          line(e.node, `${title}: ok${e.detail ? ` (${e.detail})` : ''}`)
          break
        case 'skip':
          if (row) row.done = {state: 'skipped'}
          line(e.node, `${title}: skipped (${e.detail})`)
          break
        case 'fail':
          if (row) row.done = {state: 'failed'}
          line(e.node, `${title}: FAILED: ${e.detail}`)
          break
      }
    },
    async finish() {},
  }
}

async function listrProgress(
  plan: DrainRunPlan,
  rows: Map<string, Row>,
  key: (n: string, s: StepKind) => string,
  stream: NodeJS.WriteStream,
): Promise<DrainProgress> {
  const {Listr, DefaultRenderer, ListrLogger, ProcessOutput} = await import('listr2')
  // Our tree goes to stderr: a renderer that does not insist on a terminal stdout lets
  // `hactl node drain ast3 > summary.txt` keep the live rows.
  class StderrRenderer extends DefaultRenderer {
    static override nonTTY = true
  }
  const finishRow = (row: Row, f: Final) => {
    if (row.done) return
    row.done = f
    row.finish?.(f)
  }
  // One row per step; the task just waits for the lib's events about that step.
  const runRow = async (
    row: Row,
    task: {title: string | undefined; skip: (m?: string) => void},
  ): Promise<void> => {
    row.setTitle = (t) => {
      task.title = t
    }
    const f = row.done ?? (await new Promise<Final>((resolve) => (row.finish = resolve)))
    if (f.state === 'ok') task.title = f.text ? `${row.title} (${f.text})` : row.title
    else if (f.state === 'skipped') task.skip(`${row.title}: skipped${f.text ? ` (${f.text})` : ''}`)
    else {
      task.title = row.title
      throw new Error(f.text ?? `${row.title}: failed`)
    }
  }
  const nodes = plan.nodes.filter((n) => n.action === 'apply')
  const listr = new Listr(
    nodes.map((n) => ({
      title: n.node,
      task: (_ctx, task) =>
        task.newListr(
          [...rows.values()]
            .filter((r) => r.node === n.node)
            .map((r) => ({title: r.title, task: (_c, t) => runRow(r, t)})),
          {concurrent: false, exitOnError: false},
        ),
    })),
    {
      concurrent: true,
      exitOnError: false,
      registerSignalListeners: false,
      collectErrors: false,
      renderer: StderrRenderer,
      rendererOptions: {
        logger: new ListrLogger({processOutput: new ProcessOutput(stream, process.stdout)}),
        collapseSubtasks: false,
        collapseErrors: false,
        showErrorMessage: true,
      },
    },
  )
  const shown = listr.run().catch(() => undefined)
  return {
    onEvent(e) {
      const row = rows.get(key(e.node, e.step))
      if (!row || row.done) return
      switch (e.type) {
        case 'start':
          break
        case 'progress':
          row.setTitle?.(`${row.title}: ${waitText(e)}`)
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
    async finish() {
      for (const row of rows.values()) finishRow(row, {state: 'skipped'})
      await shown
    },
  }
}

// ---------------------------------------------------------------------------------------------
// Questions

/** Confirm what --force will do. Ctrl-C at the prompt stops the run (nothing changed yet). */
export async function confirmForce(plan: DrainRunPlan): Promise<boolean> {
  const {confirm} = await import('@inquirer/prompts')
  try {
    return await confirm(
      {
        message: `Drain ${plan.nodes
          .filter((n) => n.action === 'apply')
          .map((n) => n.node)
          .join(', ')} with --force? It will ${plan.forceEffects.join('; and ')}.`,
        default: false,
      },
      {output: process.stderr},
    )
  } catch (error) {
    if ((error as Error).name === 'ExitPromptError')
      throw new InterruptedError('interrupted at the confirmation; nothing was changed')
    throw error
  }
}

/** After Ctrl-C: keep the boxes out of rotation (default) or put them back. */
export async function askAfterInterrupt(nodes: string[]): Promise<'keep' | 'put-back'> {
  const {select} = await import('@inquirer/prompts')
  try {
    return await select<'keep' | 'put-back'>(
      {
        message: `Drain of ${nodes.join(', ')} interrupted. What now?`,
        choices: [
          {
            name: `Keep ${nodes.join(', ')} out of rotation (marked draining; run drain again to finish)`,
            value: 'keep',
          },
          {name: `Put ${nodes.join(', ')} back in rotation (undrain)`, value: 'put-back'},
        ],
        default: 'keep',
      },
      {output: process.stderr},
    )
  } catch {
    // A second Ctrl-C at the question: the safe answer, which changes nothing.
    return 'keep'
  }
}

/** `--timeout 90s`, `30m`, `1h`, or plain seconds. */
export function parseTimeoutFlag(text: string, flag = '--timeout'): number {
  const ms = parseFlagDuration(text)
  if (ms !== undefined) return ms
  throw new UserError(`${flag} ${text} is not a duration`, ['use a duration such as 90s, 30m or 1h'])
}
