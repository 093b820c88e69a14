import type {ResolvedNode} from '../config/load.js'
import {ExitCode, HostError, InterruptedError} from '../errors.js'
import type {SshPool} from '../ssh/pool.js'

export interface ExecHostResult {
  node: string
  host: string
  /** Exit status 0 and no error. */
  ok: boolean
  code: number | null
  signal?: string
  stdout: string
  stderr: string
  durationMs: number
  /** Why the command could not run to the end (unreachable, auth, host key, timeout). */
  error?: {kind: string; message: string; suggestions: string[]}
}

export interface ExecSummary {
  total: number
  ok: number
  failed: number
  durationMs: number
  /** Ctrl-C came: hosts not started by then were not run (their error kind is `interrupted`). */
  interrupted?: boolean
}

export interface ExecOutcome {
  results: ExecHostResult[]
  summary: ExecSummary
}

export type ExecUpdate =
  {node: string; state: 'connecting' | 'running'} | {node: string; state: 'done'; result: ExecHostResult}

export interface ExecOptions {
  onUpdate?: (update: ExecUpdate) => void
  /** Default: ssh.commandTimeout. */
  timeoutMs?: number
  timeoutName?: string
  /** Ctrl-C: hosts not started yet are not run; running commands finish or time out. */
  signal?: AbortSignal
  /**
   * Where the summary's time starts (performance.now()); default now. The command passes when its
   * pool was made: the early start may have opened the connections before this function ran.
   */
  startedAt?: number
}

/**
 * Run one shell command on every node at once (the pool bounds how many hosts at a time). A host
 * that fails, hangs or cannot be reached is reported in its result and never holds up the others;
 * this function itself only rejects on a bug.
 */
export async function execOnNodes(
  pool: Pick<SshPool, 'connect' | 'run'>,
  nodes: readonly ResolvedNode[],
  command: string,
  opts: ExecOptions = {},
): Promise<ExecOutcome> {
  const started = opts.startedAt ?? performance.now()
  const results = await Promise.all(nodes.map((node) => execOne(pool, node, command, opts)))
  const ok = results.filter((r) => r.ok).length
  return {
    results,
    summary: {
      total: results.length,
      ok,
      failed: results.length - ok,
      durationMs: Math.round(performance.now() - started),
      ...(opts.signal?.aborted ? {interrupted: true} : {}),
    },
  }
}

class NotRun extends Error {}

async function execOne(
  pool: Pick<SshPool, 'connect' | 'run'>,
  node: ResolvedNode,
  command: string,
  opts: ExecOptions,
): Promise<ExecHostResult> {
  const started = performance.now()
  let result: ExecHostResult
  try {
    if (opts.signal?.aborted) throw new NotRun()
    opts.onUpdate?.({node: node.name, state: 'connecting'})
    await pool.connect(node)
    // The pool lets a bounded number of hosts in at a time: one still waiting has not started.
    if (opts.signal?.aborted) throw new NotRun()
    opts.onUpdate?.({node: node.name, state: 'running'})
    const r = await pool.run(node, command, {
      check: false,
      ...(opts.signal ? {signal: opts.signal} : {}),
      ...(opts.timeoutMs === undefined ? {} : {timeoutMs: opts.timeoutMs}),
      ...(opts.timeoutName === undefined ? {} : {timeoutName: opts.timeoutName}),
    })
    result = {
      node: node.name,
      host: node.host,
      ok: r.code === 0,
      code: r.code,
      ...(r.signal === undefined ? {} : {signal: r.signal}),
      stdout: r.stdout,
      stderr: r.stderr,
      durationMs: r.durationMs,
    }
  } catch (error) {
    const err = error as Error
    result = {
      node: node.name,
      host: node.host,
      ok: false,
      code: null,
      stdout: '',
      stderr: '',
      durationMs: Math.round(performance.now() - started),
      error:
        err instanceof NotRun || (err instanceof InterruptedError && opts.signal?.aborted)
          ? {kind: 'interrupted', message: `${node.name}: not run (interrupted)`, suggestions: []}
          : {
              kind: err instanceof HostError ? err.kind : 'internal',
              message: err.message,
              suggestions: err instanceof HostError ? err.suggestions : [],
            },
    }
  }
  opts.onUpdate?.({node: node.name, state: 'done', result})
  return result
}

/** 130 after Ctrl-C; else 0 when every host succeeded, 3 (partial) when some did, 1 when none did. */
export function execExitCode(summary: ExecSummary): number {
  if (summary.interrupted) return ExitCode.interrupted
  if (summary.failed === 0) return ExitCode.ok
  return summary.ok > 0 ? ExitCode.partial : ExitCode.failure
}
