import {InterruptedError} from './errors.js'

/**
 * Ctrl-C and SIGTERM for a command that changes the cluster (issue 9): the first signal aborts an
 * AbortSignal (the operation stops starting new steps, lets running remote commands finish or time
 * out, releases the lock and returns the state it left, and the command exits 130); a second one
 * leaves at once, still printing what is known.
 *
 * Library code: it never exits by itself. The command passes `exit` (process.exit) and `write`
 * (stderr), and `describe` for the state known at the moment of the second signal.
 */
export interface InterruptWatch {
  /** Aborted on the first SIGINT/SIGTERM, with an InterruptedError naming the signal as reason. */
  readonly signal: AbortSignal
  /** The signals received so far. */
  readonly received: readonly NodeJS.Signals[]
  /** Stop listening (the command's cleanup). Idempotent. */
  dispose(): void
}

export interface WatchInterruptsOptions {
  /** Lines describing what is known now (each host's state), printed on the second signal. */
  describe?: () => string[]
  /** Where the messages go (process.stderr.write). */
  write: (text: string) => void
  /** Leave the process (process.exit); called with 130 on the second signal. */
  exit: (code: number) => void
  /** What the first signal's message says happens next. */
  firstMessage?: string
  /** Signals to watch; default SIGINT and SIGTERM. */
  signals?: NodeJS.Signals[]
  /** The process to listen on (a test passes an EventEmitter). */
  target?: Pick<NodeJS.Process, 'on' | 'removeListener'>
}

export const INTERRUPTED_EXIT = 130

export function watchInterrupts(opts: WatchInterruptsOptions): InterruptWatch {
  const controller = new AbortController()
  const received: NodeJS.Signals[] = []
  const target = opts.target ?? process
  const signals = opts.signals ?? ['SIGINT', 'SIGTERM']
  const handler = (sig: NodeJS.Signals) => {
    received.push(sig)
    if (received.length === 1) {
      opts.write(
        `\n${sig === 'SIGINT' ? 'Interrupted' : `Got ${sig}`}: ${opts.firstMessage ?? 'stopping after the steps running now (Ctrl-C again to quit at once)'}...\n`,
      )
      controller.abort(new InterruptedError(`interrupted (${sig})`))
      return
    }
    let known: string[] = []
    try {
      known = opts.describe?.() ?? []
    } catch (error) {
      known = [`(the state could not be described: ${(error as Error).message})`]
    }
    opts.write(
      `\nQuit at once (${sig} again).${known.length > 0 ? ' Known state:' : ''}\n${known.map((l) => `  ${l}\n`).join('')}`,
    )
    dispose()
    opts.exit(INTERRUPTED_EXIT)
  }
  const listeners = signals.map((s) => [s, () => handler(s)] as const)
  for (const [s, l] of listeners) target.on(s, l)
  let disposed = false
  function dispose(): void {
    if (disposed) return
    disposed = true
    for (const [s, l] of listeners) target.removeListener(s, l)
  }
  return {
    signal: controller.signal,
    get received() {
      return received
    },
    dispose,
  }
}
