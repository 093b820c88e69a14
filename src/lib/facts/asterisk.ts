import {cleanCliText, FactParseError} from './parse-error.js'

/**
 * Facts read from the Asterisk CLI (`asterisk -rx '...'`). Pure parsers; the fixtures they are tested
 * on are in test/fixtures/asterisk/. The formats come from Asterisk's main/cli.c:
 *
 *   "%d active channel%s\n"
 *   "%d active call%s\n"            or   "%d of %d max active call%s (%5.2f%% of capacity)\n"
 *   "%d call%s processed\n"
 *
 * where %s is "" for exactly 1 and "s" otherwise, and %5.2f pads small percentages with a space
 * (`( 2.00% of capacity)`).
 */

export interface ChannelsCount {
  activeChannels: number
  activeCalls: number
  /** Only when Asterisk runs with `maxcalls` set. */
  maxCalls?: number
  /** As Asterisk printed it (two decimals), only with `maxcalls`. */
  capacityPercent?: number
  /** Calls since Asterisk started. */
  callsProcessed: number
}

const CHANNELS_RE = /^(\d+) active channels?$/
const CALLS_RE = /^(\d+) active calls?$/
const MAX_CALLS_RE = /^(\d+) of (\d+) max active calls? \(\s*(\d+(?:\.\d+)?)% of capacity\)$/
const PROCESSED_RE = /^(\d+) calls? processed$/

/**
 * Parse `core show channels count`. Also accepts the full `core show channels` output (the same
 * summary lines follow the table). Throws `FactParseError` when a summary line is missing: a
 * caller that may get a refusal instead (shutdown pending, Asterisk down) classifies the answer
 * with `classifyAsteriskAnswer` first.
 */
export function parseChannelsCount(text: string): ChannelsCount {
  let activeChannels: number | undefined
  let activeCalls: number | undefined
  let maxCalls: number | undefined
  let capacityPercent: number | undefined
  let callsProcessed: number | undefined

  for (const raw of cleanCliText(text).split('\n')) {
    const line = raw.trim()
    let m: RegExpExecArray | null
    if (activeChannels === undefined && (m = CHANNELS_RE.exec(line))) {
      activeChannels = Number(m[1])
    } else if (activeCalls === undefined && (m = MAX_CALLS_RE.exec(line))) {
      activeCalls = Number(m[1])
      maxCalls = Number(m[2])
      capacityPercent = Number(m[3])
    } else if (activeCalls === undefined && (m = CALLS_RE.exec(line))) {
      activeCalls = Number(m[1])
    } else if (callsProcessed === undefined && (m = PROCESSED_RE.exec(line))) {
      callsProcessed = Number(m[1])
    }
  }

  const fact = 'core show channels count'
  if (activeChannels === undefined) throw new FactParseError(fact, 'no "N active channels" line', text)
  if (activeCalls === undefined) throw new FactParseError(fact, 'no "N active calls" line', text)
  if (callsProcessed === undefined) throw new FactParseError(fact, 'no "N calls processed" line', text)
  return {
    activeChannels,
    activeCalls,
    ...(maxCalls === undefined ? {} : {maxCalls}),
    ...(capacityPercent === undefined ? {} : {capacityPercent}),
    callsProcessed,
  }
}

/**
 * What an `asterisk -rx CMD` answer means, before anyone parses it as the command's output.
 * The exit status alone cannot tell: "No such command" exits 0, and so does the refusal while a
 * shutdown is pending; only "Unable to connect" exits 1.
 */
export type AsteriskAnswer =
  | {kind: 'ok'}
  /** `core stop gracefully` (or `when convenient`) is pending: most commands are refused. */
  | {kind: 'shutdown-pending'; command: string; message: string}
  /** No Asterisk daemon behind the control socket. */
  | {kind: 'not-running'; socket?: string; message: string}
  /** The command does not exist in this Asterisk (or its module is not loaded yet). */
  | {kind: 'no-such-command'; command: string; helpCommand?: string; message: string}
  /** A non-zero exit with none of the known messages (no asterisk binary, a killed CLI, ...). */
  | {kind: 'unknown'; exitCode: number | null; message: string}

export type AsteriskAnswerKind = AsteriskAnswer['kind']

const SHUTDOWN_RE = /Command '(.*)' cannot be run during shutdown/
const NOT_RUNNING_RE = /Unable to connect to remote asterisk(?: \(does (.+?) exist\?\))?/
const NO_SUCH_COMMAND_RE = /No such command '(.*?)'(?: \(type '(.*)' for other possible commands\))?\s*$/m

/**
 * Classify an `asterisk -rx` answer. `text` is what the command printed (stdout and stderr
 * together: "Unable to connect" goes to stderr), `exitCode` its status (`null` when it was killed).
 * The known messages win over the exit status; then a non-zero status is `unknown`; otherwise `ok`.
 */
export function classifyAsteriskAnswer(text: string, exitCode: number | null): AsteriskAnswer {
  const clean = cleanCliText(text)
  let m: RegExpExecArray | null
  if ((m = SHUTDOWN_RE.exec(clean))) {
    return {kind: 'shutdown-pending', command: m[1] ?? '', message: m[0]}
  }
  if ((m = NOT_RUNNING_RE.exec(clean))) {
    return {kind: 'not-running', ...(m[1] ? {socket: m[1]} : {}), message: m[0]}
  }
  if ((m = NO_SUCH_COMMAND_RE.exec(clean))) {
    return {
      kind: 'no-such-command',
      command: m[1] ?? '',
      ...(m[2] === undefined ? {} : {helpCommand: m[2]}),
      message: m[0].trim(),
    }
  }
  if (exitCode !== 0) {
    const firstLine =
      clean
        .split('\n')
        .find((l) => l.trim() !== '')
        ?.trim() ?? ''
    const status = exitCode === null ? 'killed' : `exit status ${exitCode}`
    return {kind: 'unknown', exitCode, message: firstLine ? `${firstLine} (${status})` : status}
  }
  return {kind: 'ok'}
}

export interface AsteriskVersion {
  /** As printed: `20.5.2`, `certified/18.9-cert8`, `16.28.0~dfsg-0+deb10u4`, `GIT-master-1a2b3c`. */
  version: string
  /** Numeric parts when the version has them (a git build has none). */
  major?: number
  minor?: number
  patch?: number
  certified: boolean
  builtBy?: string
  buildHost?: string
  arch?: string
  os?: string
  buildDate?: string
}

const VERSION_RE = /^Asterisk (\S+) built by (.+?) @ (\S+) on a (\S+) running (\S+) on (.+)$/
const VERSION_SHORT_RE = /^Asterisk (\S+)/

/**
 * Parse `core show version`:
 * `Asterisk 20.5.2 built by root @ build on a x86_64 running Linux on 2024-01-10 12:00:00 UTC`.
 */
export function parseCoreShowVersion(text: string): AsteriskVersion {
  const line = cleanCliText(text)
    .split('\n')
    .map((l) => l.trim())
    .find((l) => VERSION_SHORT_RE.test(l))
  if (line === undefined) throw new FactParseError('core show version', 'no "Asterisk VERSION" line', text)
  const full = VERSION_RE.exec(line)
  const version = full?.[1] ?? VERSION_SHORT_RE.exec(line)?.[1] ?? ''
  const certified = version.startsWith('certified/') || /-cert\d/.test(version)
  const numbers = /^(?:certified\/)?(\d+)\.(\d+)(?:\.(\d+))?/.exec(version)
  return {
    version,
    ...(numbers?.[1] === undefined ? {} : {major: Number(numbers[1])}),
    ...(numbers?.[2] === undefined ? {} : {minor: Number(numbers[2])}),
    ...(numbers?.[3] === undefined ? {} : {patch: Number(numbers[3])}),
    certified,
    ...(full ? {builtBy: full[2], buildHost: full[3], arch: full[4], os: full[5], buildDate: full[6]} : {}),
  }
}
