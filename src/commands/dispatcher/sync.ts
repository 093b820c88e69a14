import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'
import {BaseCommand} from '../../base-command.js'
import {waitLockFlag} from '../../ui/flags.js'
import {InterruptedError, UserError} from '../../lib/errors.js'
import type {DispatcherSyncPlan, DispatcherSyncResult} from '../../lib/ops/dispatcher-sync.js'

export default class DispatcherSync extends BaseCommand<typeof DispatcherSync> {
  static override interruptible = true

  static override summary = 'Render dispatcher.list from etcd and push it to every Kamailio over SSH.'

  static override description = `Does what the dispatcher agent (hactl agent dispatcher) does, once, from here: reads the
registrations and maintenance marks from etcd and renders set kamailio.setId of dispatcher.list
(weight rule, disabled flag for boxes in maintenance; other sets in the file are kept). Then, per
Kamailio host: reads kamailio.listFile and kamcmd dispatcher.list, and prints the diff.

--dry-run stops there. Otherwise, after a confirmation (--yes; without a terminal --yes is required),
each changed file is written (content on stdin, temp file, mv), Kamailio reloaded (retried on
"Ongoing reload") and the runtime list verified with kamcmd dispatcher.list. A host whose file is
right but whose runtime list is not is only reloaded; a host in step is left alone.

Exit status: 0 every host in step; 1 failed everywhere; 2 usage or config error, or no
confirmation possible; 3 some hosts failed.`

  static override examples = [
    '<%= config.bin %> <%= command.id %> --dry-run',
    '<%= config.bin %> <%= command.id %> --yes',
    '<%= config.bin %> <%= command.id %> kam1 --yes --json',
  ]

  static override strict = false

  static override args = {
    nodes: Args.string({
      description: 'Kamailio hosts to sync (default: every node with the kamailio role).',
      required: false,
    }),
  }

  static override flags = {
    'dry-run': Flags.boolean({summary: 'Show the diffs and change nothing.'}),
    'allow-empty': Flags.boolean({
      summary: 'Write the set even when etcd has no registration (takes every box out of rotation).',
    }),
    'wait-lock': waitLockFlag(),
  }

  public async run(): Promise<DispatcherSyncResult> {
    const config = await this.hactlConfig()
    const {selectNodes} = await import('../../lib/select.js')
    const nodes = this.positionals.length > 0 ? selectNodes(config, this.positionals) : undefined
    const notKam = nodes?.filter((n) => !n.roles.includes('kamailio')) ?? []
    if (notKam.length > 0) {
      throw new UserError(`not a Kamailio host: ${notKam.map((n) => n.name).join(', ')}`, [
        `name Kamailio hosts, or the role: ${this.config.bin} dispatcher sync kamailio`,
      ])
    }
    const pool = await this.sshPool()
    const ops = await import('../../lib/ops/dispatcher-sync.js')
    const view = await import('../../ui/dispatcher-view.js')
    const {withHostProgress} = await import('../../ui/progress.js')
    const json = this.jsonEnabled()
    const color = this.flags.color && !process.env.NO_COLOR
    const hosts = (nodes ?? config.nodes.filter((n) => n.roles.includes('kamailio'))).map((n) => n.name)

    // Ctrl-C: hosts not started yet are left alone, running writes finish; a second one quits at once.
    const reached = new Map<string, string>()
    const signal = this.watchInterrupts({
      describe: () => [
        ...hosts.map((h) => `${h}: ${reached.get(h) ?? 'not changed'}`),
        `check with: ${this.config.bin} dispatcher show`,
      ],
    })
    const dryRun = this.flags['dry-run']
    const started = Date.now()
    const {commandLine} = await import('../../lib/ops/node-shared.js')
    // The lock before the plan, so the diff the operator confirms is not raced by another run.
    const session = await ops.openSyncSession(config, pool, {
      lock: !dryRun,
      command: commandLine(this.config.bin, ['dispatcher', 'sync', ...this.argv]),
      ...(this.flags['wait-lock'] === undefined ? {} : {waitLockMs: this.flags['wait-lock']}),
      onWarning: (m) => process.stderr.write(`Warning: ${m}\n`),
    })
    this.onCleanup(() => session.close())
    const plan = await withHostProgress(
      hosts,
      (progress) =>
        ops.planDispatcherSync(config, pool, {
          ...(nodes ? {nodes} : {}),
          progress,
          etcd: session.etcd,
          allowEmpty: this.flags['allow-empty'],
        }),
      {enabled: !json},
    )
    if (!json) process.stdout.write(`${await view.renderSyncPlan(plan, {color})}\n`)
    if (signal.aborted) throw new InterruptedError(`interrupted before any host was changed: ${hosts.join(', ')} left as they were`)

    let result: DispatcherSyncResult
    const todo = plan.hosts.filter((h) => h.ok && h.action !== 'none')
    if (dryRun || todo.length === 0) {
      result = ops.dryRunResult(plan)
      if (!dryRun) result.dryRun = false
    } else {
      await this.confirm(
        plan,
        todo.map((h) => h.node),
      )
      if (signal.aborted) throw new InterruptedError(`interrupted before any host was changed: ${hosts.join(', ')} left as they were`)
      result = await withHostProgress(
        todo.map((h) => h.node),
        (progress) =>
          ops.applyDispatcherSync(config, pool, plan, {
            progress: {
              ...progress,
              update: (h, t) => {
                reached.set(h, `${t} (may be half done)`)
                progress.update(h, t)
              },
              succeed: (h, t) => {
                reached.set(h, t ?? 'done')
                progress.succeed(h, t)
              },
            },
            signal,
          }),
        {enabled: !json},
      )
    }
    const interrupted = signal.aborted
    const error = interrupted
      ? new InterruptedError(
          `dispatcher sync interrupted: ${result.changed.length > 0 ? `changed ${result.changed.join(', ')}` : 'no host changed'}; ${todo.filter((h) => !result.changed.includes(h.node)).map((h) => h.node).join(', ') || 'no host'} left as they were`,
          [`finish it: ${this.config.bin} dispatcher sync`],
        )
      : ops.syncOutcomeError(result)
    if (!dryRun && todo.length > 0) {
      await ops.recordSyncHistory(config, session.etcd, result, {
        argv: ['dispatcher', 'sync', ...this.argv],
        started,
        exitCode: error?.exitCode ?? 0,
        onWarning: (m) => process.stderr.write(`Warning: ${m}\n`),
      })
    }
    await session.close()
    if (!json) process.stdout.write(await view.renderSyncSummary(result, {color}))
    if (!error) return result
    if (json) {
      process.exitCode = error.exitCode
      return result
    }
    throw error
  }

  private async confirm(plan: DispatcherSyncPlan, names: string[]): Promise<void> {
    if (this.flags.yes) return
    if (!this.interactive) {
      throw new UserError(
        `refusing to change dispatcher.list on ${names.join(', ')} without a confirmation, and there is no terminal to ask (or --json is set)`,
        [
          `confirm on the command line: ${this.config.bin} dispatcher sync --yes`,
          `see the diffs only: ${this.config.bin} dispatcher sync --dry-run`,
        ],
      )
    }
    const {confirm} = await import('@inquirer/prompts')
    const ok = await confirm(
      {
        message: `Write and reload dispatcher.list (set ${plan.setId}) on ${names.join(', ')}?`,
        default: false,
      },
      {output: process.stderr},
    )
    if (!ok) throw new UserError('not confirmed: nothing was changed')
  }
}
