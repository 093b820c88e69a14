import * as Flags from '@oclif/core/flags'
import {BaseCommand} from '../../base-command.js'
import {takeEarlyPreflightEtcd} from '../../prestart.js'
import {waitLockFlag} from '../../ui/flags.js'
import {InterruptedError, UserError} from '../../lib/errors.js'
import type {RediscoverPlan, RediscoverResult} from '../../lib/ops/rediscover.js'

/** "90s", "5m", "1h", "500ms", or plain seconds; hactl.yaml's duration syntax (no zod at help time). */
const duration = Flags.custom<number>({
  parse: async (input: string) => {
    const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(input.trim())
    const ms = m
      ? Math.round(Number(m[1]) * ({ms: 1, s: 1000, m: 60_000, h: 3_600_000}[m[2] ?? 's'] ?? 1000))
      : Number.NaN
    if (!(ms > 0)) throw new UserError(`not a duration: ${JSON.stringify(input)} (use e.g. 90s, 5m, 1h)`)
    return ms
  },
})

export default class ClusterRediscover extends BaseCommand<typeof ClusterRediscover> {
  static override interruptible = true

  static override summary = 'Rebuild the etcd cluster from scratch with a new discovery token.'

  static override description = `For an etcd cluster that has lost its way ("fail on join request: Raft Internal Error", members that remember peers they should not). Replaces the "cluster rediscovery" playbook.

1. Preflight, read-only: every etcd host must answer over SSH (one round trip each: boot id, etcd unit state, discovery URL, data paths); etcd health if it answers.
2. The plan is printed; --dry-run stops there. A confirmation is asked (this is destructive) unless --yes; with no terminal and no --yes, the command refuses.
3. If etcd answers: the cluster lock is taken, and a snapshot plus a JSON dump of the keys without a lease are saved under \${XDG_STATE_HOME:-~/.local/state}/hactl/backups/. If it does not, there is no lock and no backup (the plan says so).
4. A new token: GET <service>/new?size=N (--discovery-service, default etcd.discovery.service; a URL with a /v2/keys path is an etcd v2 backend: PUT <token>/_config/size), or --discovery URL. A URL this cluster has used is refused.
5. On every etcd host at once, one SSH session each: kill etcd (its data is removed next, so a graceful stop would only wait for a leadership transfer that cannot happen), remove etcd.wipe under etcd.dataDir, write the new URL into etcd.discovery.file, reboot.
6. Wait for each host to answer with a new boot id, etcd active and the new URL in its file, then for N healthy members with a leader; put the saved keys back (unless --no-restore).

Ctrl-C before step 5 changes nothing. If the run stops after that, it says what state each host is in; running it again completes the rediscovery (with a new token; etcd may be down, and the keys saved by the unfinished run are put back).

Exit status: 0 done; 1 failed (before step 5 nothing was changed; after it, see the host states); 2 usage or config error, or no confirmation possible; 130 interrupted.`

  static override examples = [
    '<%= config.bin %> <%= command.id %> --dry-run',
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --yes --discovery-service http://10.0.0.5:8087',
    '<%= config.bin %> <%= command.id %> --yes --discovery-service http://10.0.0.5:2379/v2/keys/discovery',
    '<%= config.bin %> <%= command.id %> --yes --discovery https://discovery.etcd.io/0123456789abcdef0123456789abcdef',
    '<%= config.bin %> <%= command.id %> --yes --no-restore --json',
  ]

  static override flags = {
    size: Flags.integer({
      summary: 'Members of the new cluster (default: the number of etcd hosts).',
      min: 1,
      max: 99,
    }),
    'discovery-service': Flags.string({
      summary:
        'Where to get the new token: a discovery service (GET /new?size=N) or an etcd v2 URL ending in /v2/keys[/prefix].',
      exclusive: ['discovery'],
      helpValue: 'URL',
    }),
    discovery: Flags.string({
      summary: 'Use this discovery URL instead of getting a token (must be new to this cluster).',
      exclusive: ['discovery-service'],
      helpValue: 'URL',
    }),
    restore: Flags.boolean({
      summary: 'Put the saved keys back once the new cluster is healthy (--no-restore: do not).',
      allowNo: true,
      default: true,
    }),
    'dry-run': Flags.boolean({summary: 'Show the plan and stop; changes nothing.'}),
    'reboot-timeout': duration({
      summary:
        'How long to wait for each host to come back with a new boot id and etcd active (e.g. 90s, 10m).',
      default: 10 * 60_000,
      defaultHelp: async () => '10m',
      helpValue: 'DURATION',
    }),
    'health-timeout': duration({
      summary: 'How long to wait for N healthy members with a leader once the hosts are back.',
      default: 5 * 60_000,
      defaultHelp: async () => '5m',
      helpValue: 'DURATION',
    }),
    'wait-lock': waitLockFlag(),
  }

  public async run(): Promise<RediscoverResult> {
    const config = await this.hactlConfig()
    const pool = await this.sshPool()
    const {rediscoverCluster, validateRediscoverInputs} = await import('../../lib/ops/rediscover.js')
    const inputs = {
      ...(this.flags.size === undefined ? {} : {size: this.flags.size}),
      ...(this.flags.discovery === undefined ? {} : {discovery: this.flags.discovery}),
      ...(this.flags['discovery-service'] === undefined
        ? {}
        : {discoveryService: this.flags['discovery-service']}),
      restore: this.flags.restore,
    }
    // Usage errors (bad URL, --size, wipe paths, no way to confirm) before anything runs anywhere.
    const nodes = validateRediscoverInputs(config, inputs).nodes
    if (!this.flags.yes && !this.flags['dry-run'] && !this.interactive) {
      throw new UserError('rediscovery wipes etcd and reboots its hosts, so it needs a confirmation, and there is no terminal to ask on', [
        `see the plan first: ${this.config.bin} cluster rediscover --dry-run`,
        `then confirm on the command line: ${this.config.bin} cluster rediscover --yes`,
      ])
    }
    const view = await import('../../ui/rediscover-view.js')
    const color = this.flags.color && !process.env.NO_COLOR
    const style = await view.chalkStyle(color)
    const progress = view.createRediscoverProgress({hosts: nodes.map((n) => n.name)})

    // The last phase each host reached: printed when a second Ctrl-C quits at once.
    const reached = new Map<string, string>()
    const signal = this.watchInterrupts({
      firstMessage: 'stopping after the current step (Ctrl-C again to quit at once)',
      describe: () => [
        ...[...reached].map(([host, text]) => `${host}: ${text}`),
        `the hosts may be half way: run \`${this.config.bin} cluster rediscover\` again to complete the rediscovery`,
      ],
    })

    let result: RediscoverResult
    try {
      // The preflight may take the etcd pass hactl's early start began (src/prestart.ts).
      const preflightEtcd = takeEarlyPreflightEtcd(config)
      result = await rediscoverCluster(config, pool, {
        ...inputs,
        ...(preflightEtcd ? {preflightEtcd} : {}),
        dryRun: this.flags['dry-run'],
        rebootTimeoutMs: this.flags['reboot-timeout'],
        healthTimeoutMs: this.flags['health-timeout'],
        signal,
        ...(this.flags['wait-lock'] === undefined ? {} : {waitLockMs: this.flags['wait-lock']}),
        onWarning: (m) => process.stderr.write(`Warning: ${m}\n`),
        bin: this.config.bin,
        argv: ['cluster', 'rediscover', ...this.argv],
        onEvent: (e) => {
          if (e.type === 'host') reached.set(e.host, `${e.phase} ${e.state}${e.detail ? ` (${e.detail})` : ''}`)
          progress.onEvent(e)
        },
        onPlan: async (plan) => {
          await progress.end()
          if (!this.jsonEnabled()) process.stdout.write(`${await view.renderPlan(plan, style)}\n\n`)
        },
        ...(this.flags['dry-run'] ? {} : {confirm: (plan: RediscoverPlan) => this.confirm(plan)}),
      })
    } finally {
      await progress.end()
    }

    if (!this.jsonEnabled()) {
      if (result.status === 'dry-run') process.stdout.write('Dry run: nothing was changed.\n')
      else if (result.status === 'declined') process.stderr.write('Not confirmed: nothing was changed.\n')
      else process.stdout.write(`${await view.renderSummary(result, style)}\n`)
    }
    if (result.status === 'declined') process.exitCode = 1
    return result
  }

  private async confirm(plan: RediscoverPlan): Promise<boolean> {
    if (this.flags.yes) return true
    if (!this.interactive) {
      throw new UserError(
        'refusing to rediscover without a confirmation, and there is no terminal to ask (or --json is set)',
        [
          `add --yes to confirm: ${this.config.bin} cluster rediscover --yes`,
          `see the plan first: ${this.config.bin} cluster rediscover --dry-run`,
        ],
      )
    }
    const {confirm} = await import('@inquirer/prompts')
    try {
      return await confirm(
        {
          message: `Wipe etcd on ${plan.hosts.map((h) => h.name).join(', ')} and reboot them? The keyspace is rebuilt from scratch.`,
          default: false,
        },
        {output: process.stderr},
      )
    } catch (error) {
      if ((error as Error).name === 'ExitPromptError' || (error as Error).name === 'AbortPromptError') {
        throw new InterruptedError('interrupted at the prompt; nothing was changed')
      }
      throw error
    }
  }
}
