import {readFileSync} from 'node:fs'
import path from 'node:path'
import {HactlError, UserError} from '../errors.js'
import {findHost, requireState} from './state.js'
import {asteriskSocket, requestJson} from './supervisor.js'

export interface LabCallsOptions {
  name: string
  node: string
  count: number
  durationMs: number
}

export interface LabCallsResult {
  node: string
  /** Ids of the calls that started (each ends with a "finished" or "cut" line in the call log). */
  started: string[]
  /** Calls refused because a graceful shutdown is pending. */
  refused: number
  durationMs: number
  /** The host's /var/log/asterisk/calls.jsonl, seen from this machine. */
  callLog: string
}

/** One line of a lab host's /var/log/asterisk/calls.jsonl. */
export interface CallLogEntry {
  time: string
  host: string
  event: 'start' | 'end' | 'refused'
  call?: string
  via?: 'lab' | 'sip'
  outcome?: 'finished' | 'cut' | 'refused'
  reason?: string
  durationMs?: number
  plannedMs?: number
}

export function callLogPath(hostDir: string): string {
  return path.join(hostDir, 'log', 'asterisk', 'calls.jsonl')
}

/** Start simulated calls on a lab Asterisk host (through the stand-in's control socket). */
export async function labCalls(opts: LabCallsOptions): Promise<LabCallsResult> {
  if (!Number.isInteger(opts.count) || opts.count < 1)
    throw new UserError(`COUNT must be a whole number >= 1 (got ${opts.count})`)
  if (!(opts.durationMs >= 0)) throw new UserError('--duration must be >= 0')
  const state = requireState(opts.name)
  const host = findHost(state, opts.node, ['asterisk', 'spare'])
  let reply: {ok: boolean; started?: string[]; refused?: number; error?: string}
  try {
    reply = await requestJson(
      asteriskSocket(host.dir),
      {op: 'calls', count: opts.count, durationMs: opts.durationMs},
      10_000,
    )
  } catch {
    throw new HactlError(`Asterisk is not running on ${host.name}`, {
      suggestions: [
        `start it: ssh root@${host.ip} systemctl start asterisk   (or: hactl lab heal ${host.name})`,
      ],
    })
  }
  if (!reply.ok)
    throw new HactlError(`${host.name}: ${reply.error ?? 'the Asterisk stand-in refused the request'}`)
  return {
    node: host.name,
    started: reply.started ?? [],
    refused: reply.refused ?? 0,
    durationMs: opts.durationMs,
    callLog: callLogPath(host.dir),
  }
}

export function readCallLog(file: string): CallLogEntry[] {
  let text = ''
  try {
    text = readFileSync(file, 'utf8')
  } catch {
    return []
  }
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as CallLogEntry)
}

export interface CallSummary {
  started: number
  finished: number
  cut: number
  refused: number
  /** Started and not ended (still up, or lost to a SIGKILL). */
  open: number
}

export function summarizeCalls(entries: CallLogEntry[]): CallSummary {
  const s: CallSummary = {started: 0, finished: 0, cut: 0, refused: 0, open: 0}
  for (const e of entries) {
    if (e.event === 'start') s.started++
    else if (e.event === 'refused') s.refused++
    else if (e.outcome === 'finished') s.finished++
    else if (e.outcome === 'cut') s.cut++
  }
  s.open = s.started - s.finished - s.cut
  return s
}
