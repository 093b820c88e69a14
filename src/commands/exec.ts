import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'
import {BaseCommand} from '../base-command.js'
import {UserError, withoutHost} from '../lib/errors.js'
import type {ExecHostResult, ExecOutcome} from '../lib/ops/exec.js'

export default class Exec extends BaseCommand<typeof Exec> {
  static override interruptible = true

  static override summary = 'Run a shell command on nodes in parallel.'

  static override description = `Runs COMMAND with the login shell of the SSH user on every selected node at once (at most --concurrency hosts at a time), then prints each host's output and exit status and a summary. COMMAND is everything after "--", passed to the remote shell as is, like ssh HOST COMMAND or ansible -a: quote it for that shell. With ssh.become in hactl.yaml it runs through sudo -n for a non-root user.

Nodes are node names, comma lists (ast1,ast3), roles (asterisk, kamailio, etcd, homer) or all.

Ctrl-C: hosts not started yet are not run, the commands running finish (or time out), the results are printed, exit status 130; a second Ctrl-C quits at once.

Exit status: 0 when the command exited 0 on every host; 3 when it failed on some hosts and succeeded on others; 1 when it failed everywhere; 2 for usage or config errors; 130 interrupted.`

  static override usage = '<%= command.id %> NODES... [--timeout DURATION] [--json] -- COMMAND'

  static override examples = [
    '<%= config.bin %> <%= command.id %> all -- uptime',
    '<%= config.bin %> <%= command.id %> asterisk -- asterisk -rx "core show channels count"',
    '<%= config.bin %> <%= command.id %> ast1,ast3 --timeout 2m -- journalctl -u asterisk -n 50',
    '<%= config.bin %> <%= command.id %> kamailio --json -- kamcmd dispatcher.list',
  ]

  static override strict = false

  static override args = {
    nodes: Args.string({
      description: 'Nodes, comma lists, roles or all; then -- and the command.',
      required: false,
    }),
  }

  static override flags = {
    timeout: Flags.string({
      summary:
        'Give up on a host whose command runs longer than this (e.g. 90s, 5m; default: ssh.commandTimeout).',
      helpValue: 'DURATION',
    }),
  }

  public async run(): Promise<ExecOutcome> {
    const {specs, command} = this.splitArgv()
    const config = await this.hactlConfig()
    const {selectNodes} = await import('../lib/select.js')
    const nodes = selectNodes(config, specs)
    const timeoutMs = this.flags.timeout === undefined ? undefined : await parseTimeout(this.flags.timeout)

    const pool = await this.sshPool()
    const {execOnNodes, execExitCode} = await import('../lib/ops/exec.js')
    const {withHostProgress} = await import('../ui/progress.js')
    const json = this.jsonEnabled()
    // Ctrl-C: hosts not started are not run, running commands finish or time out; a second one quits.
    const state = new Map<string, string>()
    const signal = this.watchInterrupts({
      firstMessage: 'no new host starts; waiting for the commands running now (Ctrl-C again to quit at once)',
      describe: () => nodes.map((n) => `${n.name}: ${state.get(n.name) ?? 'not started'}`),
    })
    const outcome = await withHostProgress(
      nodes.map((n) => n.name),
      async (progress) => {
        if (process.stdin.isTTY && process.stderr.isTTY) {
          const {askPassphrase} = await import('../ui/passphrase.js')
          pool.setPassphrasePrompt((file, attempt) => progress.pause(() => askPassphrase(file, attempt)))
        }
        return execOnNodes(pool, nodes, command, {
          ...(timeoutMs === undefined ? {} : {timeoutMs, timeoutName: '--timeout'}),
          signal,
          // The connections the early start opened count in the summary's time.
          startedAt: pool.createdAt,
          onUpdate: (u) => {
            state.set(u.node, u.state === 'done' ? (u.result.ok ? 'exit 0' : describeFailure(u.result)) : u.state)
            if (u.state !== 'done') progress.update(u.node, u.state)
            else if (u.result.ok) progress.succeed(u.node, `exit 0 in ${seconds(u.result.durationMs)}`)
            else progress.fail(u.node, describeFailure(u.result))
          },
        })
      },
      // A --json run in a pipeline keeps stderr quiet; on a terminal the tree still helps.
      {enabled: !json || Boolean(process.stderr.isTTY)},
    )

    if (!json) process.stdout.write(await renderOutcome(outcome))
    process.exitCode = execExitCode(outcome.summary)
    return outcome
  }

  /** Node specs come before `--`, the command after it, word for word. */
  private splitArgv(): {specs: string[]; command: string} {
    const i = this.argv.indexOf('--')
    if (i === -1) {
      throw new UserError('put -- between the nodes and the command', [
        `${this.config.bin} exec all -- uptime`,
      ])
    }
    const words = this.argv.slice(i + 1)
    const command = words.join(' ')
    if (command.trim() === '')
      throw new UserError('no command after --', [`${this.config.bin} exec all -- uptime`])
    // The parser hands back the words after -- as positionals too; take them off (one occurrence
    // each, from the end) to keep only the node specs.
    const specs = [...this.positionals].filter((p) => p !== '--')
    for (const w of words) {
      const at = specs.lastIndexOf(w)
      if (at !== -1) specs.splice(at, 1)
    }
    return {specs, command}
  }
}

async function parseTimeout(text: string): Promise<number> {
  const {parseDuration} = await import('../lib/config/schema.js')
  try {
    const ms = parseDuration(/^\d+(\.\d+)?$/.test(text) ? Number(text) : text)
    if (ms > 0) return ms
  } catch {
    // Reported below with the accepted forms.
  }
  throw new UserError(`--timeout ${text} is not a duration`, ['use a duration such as 500ms, 30s, 5m or 1h'])
}

function seconds(ms: number): string {
  return ms < 1000 ? `${ms}ms` : `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)}s`
}

function describeFailure(r: ExecHostResult): string {
  if (r.error) return withoutHost(r.node, r.error.message)
  if (r.signal) return `killed by signal ${r.signal}`
  return `exit ${r.code ?? 'unknown'} in ${seconds(r.durationMs)}`
}

async function renderOutcome(outcome: ExecOutcome): Promise<string> {
  const {default: chalk} = await import('chalk')
  const {renderTable} = await import('../ui/table.js')
  let out = ''
  for (const r of outcome.results) {
    const status = r.ok ? chalk.green(`exit 0`) : chalk.red(describeFailure(r))
    out += `${chalk.bold(`=== ${r.node}`)} ${chalk.dim(`(${r.host})`)} ${status}${r.ok ? chalk.dim(` in ${seconds(r.durationMs)}`) : ''}\n`
    if (r.stdout) out += r.stdout.endsWith('\n') ? r.stdout : `${r.stdout}\n`
    if (r.stderr) {
      const text = r.stderr.endsWith('\n') ? r.stderr : `${r.stderr}\n`
      out += chalk.yellow(text)
    }
    for (const s of r.error?.suggestions ?? []) out += `${chalk.dim('Hint:')} ${s}\n`
  }
  const {total, ok, failed, durationMs} = outcome.summary
  if (total > 1) {
    out += `\n${await renderTable(
      ['NODE', 'HOST', 'RESULT', 'TIME'],
      outcome.results.map((r) => [r.node, r.host, r.ok ? 'ok' : describeFailure(r), seconds(r.durationMs)]),
    )}\n`
  }
  let line = `${total} host${total === 1 ? '' : 's'}: ${ok} ok, ${failed} failed (${seconds(durationMs)})`
  let colour = failed === 0 ? chalk.green : chalk.red
  if (outcome.summary.interrupted) {
    // Ctrl-C: say what it stopped, also when every host had started already (nothing was cut).
    const notRun = outcome.results.filter((r) => r.error?.kind === 'interrupted').length
    line += notRun > 0 ? `; interrupted: ${notRun} not run` : '; interrupted after every host had started'
    colour = chalk.yellow
  }
  out += `${colour(line)}\n`
  return out
}
