/**
 * The agents' log format: one line per event, `TIMESTAMP EVENT DETAIL`, with the timestamp in UTC to
 * the second (`2026-11-26T12:00:00Z registered ast5 10.77.0.25:5060 lease 694d...`). journald and
 * `docker logs` add their own time; ours stays so a log copied out of either still reads in order.
 */
export type AgentLog = (event: string, detail?: string) => void

export function agentLogLine(at: Date, event: string, detail = ''): string {
  const ts = at.toISOString().replace(/\.\d{3}Z$/, 'Z')
  return detail ? `${ts} ${event} ${detail}` : `${ts} ${event}`
}

/** A logger writing one line per event through `write` (stdout in the commands). */
export function lineLogger(write: (line: string) => void, now: () => Date = () => new Date()): AgentLog {
  return (event, detail) => write(`${agentLogLine(now(), event, detail)}\n`)
}

/** The message of anything thrown, on one line, for a log line. */
export function errorText(error: unknown): string {
  const msg = error instanceof Error ? error.message : String(error)
  return msg.replace(/\s*\n\s*/g, ' | ').trim()
}
