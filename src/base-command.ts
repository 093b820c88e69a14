import {Command} from '@oclif/core/command'
import * as Flags from '@oclif/core/flags'
import type {Interfaces} from '@oclif/core'
import type {HactlConfig} from './lib/config/load.js'
import {ExitCode, HactlError, HostError, UserError} from './lib/errors.js'
import {watchInterrupts} from './lib/signals.js'
import type {SshPool} from './lib/ssh/pool.js'
import {adoptEarlyPool, discardEarly, takeEarlyConfig} from './prestart.js'

const MAX_ARGUMENTS = 4096

export type BaseFlags<T extends typeof Command> = Interfaces.InferredFlags<(typeof BaseCommand)['baseFlags'] & T['flags']>
export type BaseArgs<T extends typeof Command> = Interfaces.InferredArgs<T['args']>

/**
 * The one base command: shared flags, config loading (once), the SSH pool's lifetime, and the only
 * place where errors become messages and exit codes.
 *
 * Exit codes: 0 ok; 1 failure (or, for status, degraded); 2 usage or config error; 3 partial failure
 * (some hosts failed, the others succeeded); 130 interrupted.
 */
export abstract class BaseCommand<T extends typeof Command> extends Command {
  static override enableJsonFlag = true

  /** Changes the cluster: Ctrl-C is watched from the start (watchInterrupts). */
  static interruptible = false

  static override baseFlags = {
    config: Flags.string({
      char: 'c',
      summary: 'Path to hactl.yaml.',
      env: 'HACTL_CONFIG',
      helpGroup: 'GLOBAL',
    }),
    verbose: Flags.boolean({char: 'v', summary: 'Print remote commands and debug lines to stderr.', helpGroup: 'GLOBAL'}),
    yes: Flags.boolean({char: 'y', summary: 'Answer yes to confirmation prompts.', helpGroup: 'GLOBAL'}),
    concurrency: Flags.integer({
      summary: 'How many hosts to work on at once (default: config concurrency, 50).',
      min: 1,
      max: 1000,
      helpGroup: 'GLOBAL',
    }),
    color: Flags.boolean({
      summary: 'Colour the output (--no-color, or NO_COLOR set, turns it off).',
      allowNo: true,
      default: true,
      helpGroup: 'GLOBAL',
    }),
  }

  protected flags!: BaseFlags<T>
  protected args!: BaseArgs<T>
  /** Every positional argument, for commands with `strict = false` (node lists). */
  protected positionals: string[] = []
  private configCache?: HactlConfig
  private poolInstance?: SshPool
  private cleanups: Array<() => Promise<void> | void> = []

  public override async init(): Promise<void> {
    // For bin/run.js's early Ctrl-C handler: from here on a command runs.
    ;(globalThis as {hactlCommandStarted?: boolean}).hactlCommandStarted = true
    // oclif's parser is quadratic in the number of arguments; no real command line has thousands.
    if (this.argv.length > MAX_ARGUMENTS) {
      throw new UserError(`too many arguments: ${this.argv.length} (at most ${MAX_ARGUMENTS})`, [
        'select nodes by role (asterisk, kamailio, etcd) or with all instead of naming each one',
      ])
    }
    await super.init()
    const {args, flags, argv} = await this.parse({
      flags: this.ctor.flags,
      baseFlags: (super.ctor as typeof BaseCommand).baseFlags,
      enableJsonFlag: this.ctor.enableJsonFlag,
      args: this.ctor.args,
      strict: this.ctor.strict,
    })
    this.flags = flags as BaseFlags<T>
    this.args = args as BaseArgs<T>
    this.positionals = argv as string[]
    if (!this.flags.color || process.env.NO_COLOR !== undefined) {
      process.env.NO_COLOR = '1'
      process.env.FORCE_COLOR = '0'
    }
    // A command that changes the cluster listens for Ctrl-C from here on, before its first await
    // in run(): an early Ctrl-C then stops it before anything changed, with exit 130.
    if ((this.ctor as unknown as {interruptible?: boolean}).interruptible) this.startInterruptWatch()
  }

  /** hactl.yaml, loaded once per run (by the early start, or through the config cache). */
  protected async hactlConfig(): Promise<HactlConfig> {
    if (!this.configCache) {
      const {findConfigFile} = await import('./lib/config/file.js')
      const {loadConfigCached} = await import('./lib/config/cache.js')
      let early: HactlConfig | undefined
      try {
        early = takeEarlyConfig(findConfigFile({flag: this.flags.config}))
      } catch {
        // No such file: loadConfigCached says so.
      }
      this.configCache = early ?? (await loadConfigCached({flag: this.flags.config}))
    }
    return this.configCache
  }

  /** The run's SSH pool: one connection per host, closed when the command ends. */
  protected async sshPool(): Promise<SshPool> {
    if (!this.poolInstance) {
      const config = await this.hactlConfig()
      const concurrency = this.flags.concurrency ?? config.concurrency
      const verbose = Boolean(this.flags.verbose)
      // The connections the early start opened, when they were opened with these settings.
      const early = await adoptEarlyPool(config, {concurrency, verbose})
      if (early) {
        this.poolInstance = early
        return early
      }
      const {SshPool} = await import('./lib/ssh/pool.js')
      const interactive = Boolean(process.stdin.isTTY && process.stderr.isTTY)
      // An encrypted key's passphrase is asked on a terminal, for every command that uses SSH.
      const askPassphrase = interactive ? (await import('./ui/passphrase.js')).askPassphrase : undefined
      this.poolInstance = new SshPool(config, {
        concurrency,
        log: verbose ? (line: string) => process.stderr.write(`[ssh] ${line}\n`) : undefined,
        interactive,
        ...(askPassphrase ? {askPassphrase} : {}),
      })
    }
    return this.poolInstance
  }

  /** Register something to close when the command ends, whatever happens. */
  protected onCleanup(fn: () => Promise<void> | void): void {
    this.cleanups.push(fn)
  }

  /**
   * SIGINT/SIGTERM for a command that changes the cluster (issue 9): the first one aborts the
   * returned signal (the operation stops starting new steps, lets running remote commands finish or
   * time out, releases the lock and reports each host's state; exit 130); the second one leaves at
   * once, printing `describe()`'s lines.
   */
  protected watchInterrupts(opts: {describe?: () => string[]; firstMessage?: string} = {}): AbortSignal {
    if (opts.describe) this.interruptNotes.describe = opts.describe
    if (opts.firstMessage) this.interruptNotes.firstMessage = opts.firstMessage
    return this.startInterruptWatch()
  }

  /** What the watch prints; the command fills it in once it knows (watchInterrupts). */
  private readonly interruptNotes: {describe?: () => string[]; firstMessage?: string} = {}
  private interruptSignal?: AbortSignal

  private startInterruptWatch(): AbortSignal {
    if (this.interruptSignal) return this.interruptSignal
    const notes = this.interruptNotes
    const watch = watchInterrupts({
      write: (text) => process.stderr.write(text),
      exit: (code) => process.exit(code),
      describe: () => notes.describe?.() ?? ['nothing changed yet'],
      get firstMessage() {
        return notes.firstMessage
      },
    })
    // Not disposed with the cleanup: a second Ctrl-C while the command closes its connections must
    // still quit with 130 and the known state, not die by the signal.
    this.interruptSignal = watch.signal
    return watch.signal
  }

  protected debugLine(line: string): void {
    if (this.flags?.verbose) process.stderr.write(`${line}\n`)
  }

  /** Whether the user can be asked a question. */
  protected get interactive(): boolean {
    return Boolean(process.stdin.isTTY && process.stderr.isTTY) && !this.jsonEnabled()
  }

  protected override async catch(err: Error & {exitCode?: number; oclif?: {exit?: number}}): Promise<unknown> {
    // oclif's own parse errors (unknown flag, missing arg) are usage errors: exit 2 with one line.
    const oclifExit = err.oclif?.exit
    if (oclifExit !== undefined && !(err instanceof HactlError)) {
      if (oclifExit === 0) throw err
      const message = usageMessage(err.message, Object.keys(this.ctor.args ?? {}))
      const id = (this.id ?? '').replaceAll(':', ' ')
      const hint = `${this.config.bin}${id ? ` ${id}` : ''} --help`
      if (this.jsonEnabled()) {
        this.logJson({error: {kind: 'usage', message, suggestions: [hint], exitCode: ExitCode.usage}})
      } else {
        process.stderr.write(`Error: ${message}\nHint: ${hint}\n`)
      }
      process.exitCode = ExitCode.usage
      return
    }
    const exitCode = err instanceof HactlError ? err.exitCode : ExitCode.failure
    const suggestions = err instanceof HactlError ? err.suggestions : []
    // A usage or config error is one line (a flag parser's error arrives wrapped in oclif's lines).
    if (exitCode === ExitCode.usage) err.message = usageMessage(err.message)
    if (this.jsonEnabled()) {
      this.logJson({
        error: {
          kind: err instanceof HostError ? err.kind : err instanceof HactlError ? err.name : 'internal',
          message: err.message,
          ...(err instanceof HostError ? {host: err.host} : {}),
          suggestions,
          exitCode,
        },
      })
    } else {
      const {default: chalk} = await import('chalk')
      process.stderr.write(`${chalk.red('Error:')} ${err.message}\n`)
      for (const s of suggestions) process.stderr.write(`${chalk.dim('Hint:')} ${s}\n`)
      if (!(err instanceof HactlError)) {
        // A bug, not a user error: keep the detail behind --verbose.
        if (this.flags?.verbose) process.stderr.write(`${err.stack ?? ''}\n`)
        else process.stderr.write('Hint: this is a bug in hactl; run again with --verbose for the stack trace\n')
      }
    }
    process.exitCode = exitCode
    return undefined
  }

  protected override async finally(err: Error | undefined): Promise<unknown> {
    for (const fn of this.cleanups.reverse()) {
      try {
        await fn()
      } catch {
        // Closing is best effort; the command's own outcome is what matters.
      }
    }
    if (this.poolInstance) await this.poolInstance.close()
    await discardEarly()
    return super.finally(err)
  }
}

/**
 * oclif's parse errors are several lines ("The following errors occurred:" then one line per
 * problem, "See more help with --help"): keep the problems, on one line.
 */
export function usageMessage(raw: string, argNames: string[] = []): string {
  const lines = raw
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !/^The following errors occurred:?$/.test(l) && !/^See more help with/.test(l))
  const missing = lines.findIndex((l) => /^Missing \d+ required args?:?$/.test(l))
  if (missing !== -1) {
    // The lines after it are "NAME  description": name the args only.
    const names = lines
      .slice(missing + 1)
      .map((l) => l.split(/\s+/)[0] ?? '')
      .filter((name) => argNames.length === 0 || argNames.includes(name))
    return `${lines[missing]!.replace(/:?$/, ':')} ${names.join(', ')}`
  }
  // "Parsing --timeout" then the parser's own message: one line that still names the flag.
  const parsing = lines.length > 1 ? /^Parsing (--\S+)$/.exec(lines[0]!) : null
  if (parsing) {
    lines.shift()
    if (!lines[0]!.includes(parsing[1]!)) lines[0] = `${parsing[1]}: ${lines[0]}`
  }
  const details = lines.map((l) => l.replace(/^[-•] /, ''))
  return (details.length > 0 ? details.join('; ') : raw.trim()).replace(/\s+/g, ' ').slice(0, 500)
}

function firstLine(s: string): string {
  return (s.split('\n').find((l) => l.trim() !== '') ?? s).trim()
}
