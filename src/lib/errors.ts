/**
 * Typed errors. Library code throws these; the base command is the only place that turns them into
 * a message and an exit code. Nothing here prints or exits.
 */

/** Documented exit codes (README "Exit codes"). */
export const ExitCode = {
  ok: 0,
  failure: 1,
  usage: 2,
  partial: 3,
  interrupted: 130,
} as const

export class HactlError extends Error {
  /** Process exit code for this error. */
  readonly exitCode: number
  /** Next steps for the operator: exact commands or flags to try. */
  readonly suggestions: string[]

  constructor(message: string, opts: {exitCode?: number; suggestions?: string[]; cause?: unknown} = {}) {
    super(message, opts.cause === undefined ? undefined : {cause: opts.cause})
    this.name = new.target.name
    this.exitCode = opts.exitCode ?? ExitCode.failure
    this.suggestions = opts.suggestions ?? []
  }
}

/** Something the operator can fix: a wrong flag, node name, or argument. Exit 2. */
export class UserError extends HactlError {
  constructor(message: string, suggestions: string[] = []) {
    super(message, {exitCode: ExitCode.usage, suggestions})
  }
}

export interface SourcePosition {
  file: string
  line: number
  column: number
}

/** hactl.yaml (or another input file) is missing or invalid. Exit 2. */
export class ConfigError extends HactlError {
  readonly position?: SourcePosition

  constructor(message: string, opts: {position?: SourcePosition; suggestions?: string[]} = {}) {
    const where = opts.position ? `${opts.position.file}:${opts.position.line}:${opts.position.column}: ` : ''
    super(`${where}${message}`, {exitCode: ExitCode.usage, suggestions: opts.suggestions})
    this.position = opts.position
  }
}

/** Base of every error that concerns one host. */
export class HostError extends HactlError {
  readonly host: string
  /** Short machine-readable kind, used in --json output and in status problems. */
  readonly kind: string

  constructor(
    kind: string,
    host: string,
    message: string,
    opts: {suggestions?: string[]; cause?: unknown; exitCode?: number} = {},
  ) {
    super(message, {exitCode: opts.exitCode ?? ExitCode.failure, suggestions: opts.suggestions, cause: opts.cause})
    this.kind = kind
    this.host = host
  }
}

export class UnreachableError extends HostError {
  constructor(host: string, detail: string, cause?: unknown) {
    super('unreachable', host, `${host}: unreachable: ${detail}`, {
      cause,
      suggestions: [`check that the host is up and sshd listens: ssh ${host}`],
    })
  }
}

export class AuthError extends HostError {
  constructor(host: string, detail: string, suggestions: string[] = []) {
    super('auth-failed', host, `${host}: authentication failed: ${detail}`, {
      suggestions: suggestions.length > 0 ? suggestions : ['check ssh.user and ssh.identityFiles in hactl.yaml, or load the key into ssh-agent'],
    })
  }
}

export class HostKeyMismatchError extends HostError {
  readonly expected: string[]
  readonly actual: string
  readonly file: string
  readonly line: number

  constructor(host: string, opts: {expected: string[]; actual: string; file: string; line: number}) {
    super(
      'host-key-mismatch',
      host,
      `${host}: host key mismatch: the server offered ${opts.actual}, ${opts.file}:${opts.line} expects ${opts.expected.join(' or ')}`,
      {
        suggestions: [
          `if the host was reinstalled on purpose, remove the old key: ssh-keygen -f ${opts.file} -R ${host.includes(':') ? `'[${host.split(':')[0]}]:${host.split(':')[1]}'` : host}`,
        ],
      },
    )
    this.expected = opts.expected
    this.actual = opts.actual
    this.file = opts.file
    this.line = opts.line
  }
}

export class UnknownHostKeyError extends HostError {
  readonly fingerprint: string
  readonly keyType: string
  readonly file: string

  constructor(host: string, opts: {fingerprint: string; keyType: string; file: string}) {
    super('host-key-unknown', host, `${host}: unknown host key ${opts.keyType} ${opts.fingerprint} (not in ${opts.file})`, {
      suggestions: [
        `verify the fingerprint, then trust it: set ssh.strictHostKeyChecking: accept-new in hactl.yaml, or ssh-keyscan the host into ${opts.file}`,
      ],
    })
    this.fingerprint = opts.fingerprint
    this.keyType = opts.keyType
    this.file = opts.file
  }
}

export class TimeoutError extends HostError {
  readonly timeoutName: string
  readonly ms: number

  constructor(host: string, what: string, timeoutName: string, ms: number) {
    super('timeout', host, `${host}: ${what} timed out after ${formatMs(ms)} (${timeoutName})`, {
      suggestions: [`raise ${timeoutName} in hactl.yaml if the host is just slow`],
    })
    this.timeoutName = timeoutName
    this.ms = ms
  }
}

export class RemoteCommandError extends HostError {
  readonly command: string
  readonly exitStatus: number | null
  readonly stderrTail: string

  constructor(host: string, command: string, exitStatus: number | null, stderr: string) {
    const tail = lastLines(stderr, 5)
    super(
      'command-failed',
      host,
      `${host}: command failed with exit status ${exitStatus ?? 'unknown'}: ${command}${tail ? `\n${tail}` : ''}`,
    )
    this.command = command
    this.exitStatus = exitStatus
    this.stderrTail = tail
  }
}

/** Some hosts failed, others succeeded. Exit 3. */
export class PartialFailureError extends HactlError {
  constructor(message: string, suggestions: string[] = []) {
    super(message, {exitCode: ExitCode.partial, suggestions})
  }
}

/** The operator pressed Ctrl-C or the process got SIGTERM. Exit 130. */
export class InterruptedError extends HactlError {
  constructor(message = 'interrupted', suggestions: string[] = []) {
    super(message, {exitCode: ExitCode.interrupted, suggestions})
  }
}

/** A host's message without the `name: ` that HostError messages start with (for a row already labelled with the name). */
export function withoutHost(name: string, message: string): string {
  return message.startsWith(`${name}: `) ? message.slice(name.length + 2) : message
}

export function lastLines(text: string, n: number): string {
  const lines = text.replace(/\s+$/, '').split('\n')
  return lines.slice(-n).join('\n').trim()
}

export function formatMs(ms: number): string {
  if (ms < 1000) return `${ms}ms`
  const s = ms / 1000
  if (s < 60) return `${Number.isInteger(s) ? s : s.toFixed(1)}s`
  const m = Math.floor(s / 60)
  const rest = Math.round(s % 60)
  return rest === 0 ? `${m}m` : `${m}m${rest}s`
}
