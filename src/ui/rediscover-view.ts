import {formatMs} from '../lib/errors.js'
import {
  HOST_PHASES,
  PHASE_TITLES,
  type RediscoverEvent,
  type RediscoverPhase,
  type RediscoverPlan,
  type RediscoverResult,
} from '../lib/ops/rediscover.js'
import {renderTable} from './table.js'

/**
 * What `hactl cluster rediscover` shows: the plan, the progress tree (a parent row per phase, a
 * child row per host) and the summary. Rendering only; the work is in lib/ops/rediscover.ts.
 */

export interface Style {
  bold(s: string): string
  dim(s: string): string
  red(s: string): string
  yellow(s: string): string
  green(s: string): string
}

export const plainStyle: Style = {
  bold: (s) => s,
  dim: (s) => s,
  red: (s) => s,
  yellow: (s) => s,
  green: (s) => s,
}

export async function chalkStyle(color: boolean): Promise<Style> {
  if (!color) return plainStyle
  const {default: chalk} = await import('chalk')
  return {
    bold: (s) => chalk.bold(s),
    dim: (s) => chalk.dim(s),
    red: (s) => chalk.red(s),
    yellow: (s) => chalk.yellow(s),
    green: (s) => chalk.green(s),
  }
}

export async function renderPlan(plan: RediscoverPlan, style: Style = plainStyle): Promise<string> {
  const out: string[] = []
  out.push(
    style.bold(
      `Rediscover etcd for cluster ${plan.cluster}: ${plan.hosts.length} host${plan.hosts.length === 1 ? '' : 's'}, a new cluster of ${plan.size} member${plan.size === 1 ? '' : 's'}`,
    ),
  )
  const e = plan.etcd
  out.push(
    e.answering
      ? `  etcd now: answers, cluster ${e.clusterId ?? '?'}, ${e.healthy}/${e.total} healthy${e.leader ? `, leader ${e.leader.name || e.leader.id}` : ', NO leader'}`
      : `  etcd now: does not answer${e.error ? ` (${e.error})` : ''}`,
  )
  out.push(
    `  discovery now: ${plan.oldDiscoveryUrls.length === 0 ? '(none configured)' : plan.oldDiscoveryUrls.join(', ')}`,
  )
  out.push(`  new token from: ${plan.sourceText}`)
  out.push('')
  const rows = plan.hosts.map((h) => [
    h.name,
    h.host,
    h.bootId.slice(0, 8),
    h.service,
    h.remove.map((p) => (h.present.includes(p) ? p : `${p} (absent)`)).join(' '),
    'yes',
  ])
  const table = await renderTable(
    ['HOST', 'ADDRESS', 'BOOT ID', plan.etcdService.toUpperCase(), 'REMOVE', 'REBOOT'],
    rows,
  )
  out.push(...table.split('\n').map((l) => `  ${l}`))
  out.push('')
  out.push(style.bold('Plan:'))
  plan.steps.forEach((s, i) => out.push(`  ${i + 1}. ${s}`))
  out.push(`  ${plan.lock.take ? 'Lock' : style.yellow('Lock')}: ${plan.lock.note}`)
  if (plan.warnings.length > 0) {
    out.push('')
    for (const w of plan.warnings) out.push(style.yellow(`Warning: ${w}`))
  }
  return out.join('\n')
}

export async function renderSummary(r: RediscoverResult, style: Style = plainStyle): Promise<string> {
  const out: string[] = []
  out.push(
    style.green(style.bold(`Rediscovered etcd for cluster ${r.plan.cluster} in ${formatMs(r.durationMs)}`)),
  )
  out.push(`  old discovery URL: ${r.oldDiscoveryUrls.join(', ') || '(none)'}`)
  out.push(`  new discovery URL: ${r.newDiscoveryUrl ?? '?'}`)
  out.push(`  cluster id: ${r.oldClusterId ?? '(unknown)'} -> ${r.newClusterId ?? '?'}`)
  const members = r.members ?? []
  const healthy = members.filter((m) => m.healthy).length
  out.push(
    `  members: ${healthy}/${r.plan.size} healthy${r.leader ? `, leader ${r.leader.name || r.leader.id} (${r.leader.id})` : ''}`,
  )
  if (members.length > 0) {
    const table = await renderTable(
      ['MEMBER ID', 'NAME', 'STATE'],
      members.map((m) => [
        m.id,
        m.name,
        `${m.healthy ? 'healthy' : 'unhealthy'}${m.isLeader ? ', leader' : ''}`,
      ]),
    )
    out.push(...table.split('\n').map((l) => `    ${l}`))
  }
  if (r.hosts && r.hosts.length > 0)
    out.push(
      `  boot ids: ${r.hosts.map((h) => `${h.name} ${h.oldBootId.slice(0, 8)} -> ${h.newBootId.slice(0, 8)}`).join(', ')}`,
    )
  out.push(
    r.backup
      ? `  backup: ${r.backup.snapshotPath} (${r.backup.snapshotBytes} bytes), ${r.backup.keysPath} (${r.backup.keys} keys${r.backup.skippedLeased ? `, ${r.backup.skippedLeased} with a lease left out` : ''})`
      : `  backup: none (${r.backupSkipped ?? 'skipped'})`,
  )
  out.push(
    r.restore
      ? `  keys restored: ${r.restore.restored}${r.restore.skippedExisting ? ` (${r.restore.skippedExisting} already there, kept)` : ''}`
      : `  keys restored: none (${r.restoreSkipped ?? 'skipped'})`,
  )
  if (r.phases.length > 0)
    out.push(style.dim(`  phases: ${r.phases.map((p) => `${p.phase} ${formatMs(p.durationMs)}`).join(', ')}`))
  for (const w of r.warnings) out.push(style.yellow(`Warning: ${w}`))
  return out.join('\n')
}

// --- Progress --------------------------------------------------------------------------------

export const PREFLIGHT_PHASES: readonly RediscoverPhase[] = ['preflight']
export const APPLY_PHASES: readonly RediscoverPhase[] = [
  'backup',
  'token',
  'prepare',
  'wait-ssh',
  'wait-etcd',
  'restore',
]

export interface RediscoverProgress {
  onEvent(e: RediscoverEvent): void
  /** Finish the current tree (rows not finished show as skipped) and wait until it is drawn. */
  end(): Promise<void>
}

export interface ProgressOptions {
  hosts: readonly string[]
  stream?: NodeJS.WriteStream
  /** Tree (true) or plain lines (false); default: whether the stream is a terminal. */
  tty?: boolean
  enabled?: boolean
}

/**
 * The progress display. A group of phases (preflight; then the apply phases) gets its own tree,
 * started by its first event and ended by `end()`. On a terminal: a listr2 tree on stderr. Else:
 * one plain line per change.
 */
export function createRediscoverProgress(opts: ProgressOptions): RediscoverProgress {
  const stream = opts.stream ?? process.stderr
  if (opts.enabled === false) return {onEvent() {}, async end() {}}
  const tty = opts.tty ?? Boolean(stream.isTTY)
  return tty ? new TreeProgress(opts.hosts, stream) : new PlainProgress(stream)
}

export class PlainProgress implements RediscoverProgress {
  private readonly started = new Map<string, number>()
  private lastMembers = ''

  constructor(private readonly stream: NodeJS.WritableStream) {}

  onEvent(e: RediscoverEvent): void {
    if (e.type === 'members') {
      const line = `members joined ${e.healthy}/${e.size}`
      if (line === this.lastMembers) return
      this.lastMembers = line
      this.write(`${PHASE_TITLES['wait-etcd']}: ${line}`)
      return
    }
    const title = PHASE_TITLES[e.phase]
    if (e.type === 'phase') {
      if (e.state === 'start') {
        this.started.set(e.phase, Date.now())
        this.write(`${title}...${e.detail ? ` ${e.detail}` : ''}`)
      } else {
        const t0 = this.started.get(e.phase)
        const took = t0 === undefined ? '' : ` (${formatMs(Date.now() - t0)})`
        const word = e.state === 'done' ? 'done' : e.state === 'failed' ? 'FAILED' : 'skipped'
        this.write(`${title}: ${word}${took}${e.detail ? `: ${e.detail}` : ''}`)
      }
      return
    }
    if (e.state === 'start') return
    const word =
      e.state === 'done' ? 'ok' : e.state === 'failed' ? 'FAILED' : e.state === 'skipped' ? 'skipped' : ''
    this.write(`${title} | ${e.host}: ${[word, e.detail].filter(Boolean).join(': ')}`)
  }

  async end(): Promise<void> {}

  private write(line: string): void {
    this.stream.write(`${line}\n`)
  }
}

type Final = {state: 'done' | 'failed' | 'skipped'; detail?: string}

interface Deferred {
  promise: Promise<Final>
  resolve: (f: Final) => void
  settled: boolean
}

function deferred(): Deferred {
  let resolve!: (f: Final) => void
  const d: Deferred = {
    promise: new Promise<Final>((r) => (resolve = r)),
    resolve: (f) => {
      if (d.settled) return
      d.settled = true
      resolve(f)
    },
    settled: false,
  }
  return d
}

interface Row {
  end: Deferred
  title: string
  setTitle?: (t: string) => void
}

interface TaskLike {
  title: string | undefined
  skip(message?: string): void
  newListr(tasks: unknown[], options?: unknown): unknown
}

/** A listr2 tree driven by events: each row's task waits for the event that ends it. */
class TreeProgress implements RediscoverProgress {
  private group?: {phases: readonly RediscoverPhase[]; rows: Map<string, Row>; run: Promise<void>}

  constructor(
    private readonly hosts: readonly string[],
    private readonly stream: NodeJS.WriteStream,
  ) {}

  onEvent(e: RediscoverEvent): void {
    const phase: RediscoverPhase = e.type === 'members' ? 'wait-etcd' : e.phase
    if (!this.group || !this.group.phases.includes(phase)) {
      const phases = PREFLIGHT_PHASES.includes(phase) ? PREFLIGHT_PHASES : APPLY_PHASES
      // A new group starts; the old one (if any) ends as it stands.
      if (this.group) this.finishAll(this.group)
      this.group = this.start(phases)
    }
    const rows = this.group.rows
    if (e.type === 'members') {
      this.title(rows.get('wait-etcd'), `${PHASE_TITLES['wait-etcd']}: members joined ${e.healthy}/${e.size}`)
      return
    }
    if (e.type === 'phase') {
      const row = rows.get(e.phase)
      if (!row) return
      if (e.state === 'start') {
        if (e.detail) this.title(row, `${PHASE_TITLES[e.phase]}: ${e.detail}`)
        return
      }
      if (e.state === 'failed' || e.state === 'skipped') {
        // Host rows still open end with the phase.
        for (const h of this.hosts) rows.get(`${e.phase}/${h}`)?.end.resolve({state: 'skipped'})
      }
      row.end.resolve({state: e.state, ...(e.detail ? {detail: e.detail} : {})})
      return
    }
    const row = rows.get(`${e.phase}/${e.host}`)
    if (!row) return
    if (e.state === 'start' || e.state === 'update') {
      if (e.detail) this.title(row, `${e.host}: ${oneLine(e.detail)}`)
      return
    }
    row.end.resolve({state: e.state, ...(e.detail ? {detail: e.detail} : {})})
  }

  async end(): Promise<void> {
    const g = this.group
    this.group = undefined
    if (!g) return
    this.finishAll(g)
    await g.run
  }

  private finishAll(g: {rows: Map<string, Row>}): void {
    for (const row of g.rows.values()) row.end.resolve({state: 'skipped'})
  }

  private title(row: Row | undefined, t: string): void {
    if (!row) return
    row.title = t
    row.setTitle?.(t)
  }

  private start(phases: readonly RediscoverPhase[]): {
    phases: readonly RediscoverPhase[]
    rows: Map<string, Row>
    run: Promise<void>
  } {
    const rows = new Map<string, Row>()
    for (const p of phases) {
      rows.set(p, {end: deferred(), title: PHASE_TITLES[p]})
      if (HOST_PHASES.has(p)) for (const h of this.hosts) rows.set(`${p}/${h}`, {end: deferred(), title: h})
    }
    const stream = this.stream
    const hosts = this.hosts
    const run = (async () => {
      const {Listr, DefaultRenderer, ListrLogger, ProcessOutput} = await import('listr2')
      // listr2 draws its tree only when stdout is a terminal; ours is on stderr.
      class StderrRenderer extends DefaultRenderer {
        static override nonTTY = true
      }
      const bind = (row: Row, task: TaskLike) => {
        row.setTitle = (t) => {
          task.title = t
        }
        task.title = row.title
      }
      const finishRow = async (row: Row, task: TaskLike, label: string, waitFor?: Promise<unknown>) => {
        const f = await row.end.promise
        if (f.state === 'done') {
          if (f.detail) task.title = `${label}: ${oneLine(f.detail)}`
          return
        }
        if (f.state === 'skipped') {
          task.skip(f.detail ? `${label}: ${oneLine(f.detail)}` : `${label}: skipped`)
          return
        }
        // A failed host throws once its phase has ended, so every host row gets its final state.
        if (waitFor) await waitFor
        throw new Error(f.detail ? `${label}: ${oneLine(f.detail)}` : `${label}: failed`)
      }
      const listr = new Listr(
        phases.map((p) => {
          const prow = rows.get(p)!
          return {
            title: PHASE_TITLES[p],
            task: (_ctx: unknown, task: TaskLike) => {
              bind(prow, task)
              if (!HOST_PHASES.has(p)) return finishRow(prow, task, PHASE_TITLES[p])
              const hostTasks = hosts.map((h) => {
                const hrow = rows.get(`${p}/${h}`)!
                return {
                  title: h,
                  task: (_c: unknown, t: TaskLike) => {
                    bind(hrow, t)
                    return finishRow(hrow, t, h, prow.end.promise)
                  },
                }
              })
              // A last, untitled row ends the phase: failed or skipped phases show as such.
              // An untitled row that ends with the phase: it shows the phase's detail or skip. A
              // failed phase fails through its failed host rows (an error here would print twice).
              const phaseEnd = {
                task: async () => {
                  const f = await prow.end.promise
                  if (f.state === 'done' && f.detail) task.title = `${PHASE_TITLES[p]}: ${oneLine(f.detail)}`
                  else if (f.state === 'skipped')
                    task.skip(
                      f.detail ? `${PHASE_TITLES[p]}: ${oneLine(f.detail)}` : `${PHASE_TITLES[p]}: skipped`,
                    )
                },
              }
              return task.newListr([...hostTasks, phaseEnd], {concurrent: true, exitOnError: true})
            },
          }
          // Our TaskLike is the part of listr2's task wrapper used here.
        }) as never,
        {
          concurrent: false,
          exitOnError: false,
          registerSignalListeners: false,
          collectErrors: false,
          renderer: StderrRenderer,
          rendererOptions: {
            logger: new ListrLogger({processOutput: new ProcessOutput(stream, process.stdout)}),
            collapseSubtasks: false,
            collapseErrors: false,
            collapseSkips: false,
            showErrorMessage: true,
          },
        },
      )
      await listr.run().catch(() => undefined)
    })()
    return {phases, rows, run}
  }
}

function oneLine(text: string): string {
  const first = (text.split('\n').find((l) => l.trim() !== '') ?? '').trim()
  return first.length > 160 ? `${first.slice(0, 157)}...` : first
}
