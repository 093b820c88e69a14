import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'
import {BaseCommand} from '../../base-command.js'
import {waitLockFlag} from '../../ui/flags.js'
import {HactlError, UserError} from '../../lib/errors.js'
import type {NodeRemoveResult} from '../../lib/ops/node-remove.js'
import type {StepProgress} from '../../ui/node-view.js'

export default class NodeRemove extends BaseCommand<typeof NodeRemove> {
  static override interruptible = true

  static override summary = 'Take a node out of the cluster for good: drain, etcd member, services, inventory.'

  static override description = `In order, each step only where it applies:
1. Drain it if it is an Asterisk box not yet drained (as hactl node drain, capacity guard included: a refusal stops here).
2. etcd member: the quorum guard refuses when removing it would leave etcd without a healthy majority, or shrink it below 3 voting members unless --force (never a member of a 2-member cluster); then the member is removed by ID, before its etcd stops.
3. Stop and disable etcd on the host and remove its etcd data; stop the announce agent (pid file); stop and disable Asterisk.
4. Delete its registration and maintenance mark in etcd; remove it from each Kamailio's dispatcher list (file, and dispatcher.remove at runtime).
5. Remove it from hactl.yaml (comments kept).
The plan is printed and confirmed first (--yes skips the question); --dry-run stops after the plan. A step that fails stops the run and says what is done and what is left; running the command again finishes it.

--force also removes a host that does not answer (nothing on it is stopped).

Exit status: 0 removed; 1 refused or failed; 2 usage error, or a confirmation nobody can give; 130 interrupted (Ctrl-C: no step starts after the one running; run it again to finish; a second Ctrl-C quits at once).`

  static override examples = [
    '<%= config.bin %> <%= command.id %> ast5',
    '<%= config.bin %> <%= command.id %> ast5 --dry-run',
    '<%= config.bin %> <%= command.id %> ast3 --force --yes',
  ]

  static override args = {
    name: Args.string({description: 'The node to remove.', required: true}),
  }

  static override flags = {
    force: Flags.boolean({summary: 'Shrink etcd below 3 voting members, and remove a host that does not answer.'}),
    timeout: Flags.custom<number>({
      summary: 'How long the drain waits for the calls to end (default: asterisk.drainTimeout).',
      helpValue: 'DURATION',
      parse: async (input) => (await import('../../ui/drain-view.js')).parseTimeoutFlag(input),
    })(),
    'dry-run': Flags.boolean({summary: 'Print the plan and change nothing.'}),
    'wait-lock': waitLockFlag(),
  }

  public async run(): Promise<NodeRemoveResult> {
    const config = await this.hactlConfig()
    const json = this.jsonEnabled()
    const dryRun = this.flags['dry-run']
    const bin = this.config.bin
    if (!dryRun && !this.flags.yes && !this.interactive) {
      throw new UserError('node remove asks for a confirmation, and there is no terminal to ask on', [
        `confirm on the command line: ${bin} node remove ${this.argv.join(' ')} --yes`,
        `or see the plan first: ${bin} node remove ${this.argv.join(' ')} --dry-run`,
      ])
    }
    const pool = await this.sshPool()
    if (this.interactive) {
      const {askPassphrase} = await import('../../ui/passphrase.js')
      pool.setPassphrasePrompt(askPassphrase)
    }
    const view = await import('../../ui/node-view.js')
    const {removeNodeFromCluster} = await import('../../lib/ops/node-remove.js')
    const color = this.flags.color && !process.env.NO_COLOR
    const warn = (m: string) => process.stderr.write(`Warning: ${m}\n`)
    const tracker = view.nodeStepTracker(this.args.name, bin)
    const signal = this.watchInterrupts({
      firstMessage: 'stopping after the step running now (Ctrl-C again to quit at once)',
      describe: () => tracker.lines(),
    })
    let progress: StepProgress | undefined
    let result: NodeRemoveResult
    try {
      result = await removeNodeFromCluster(
        {config, pool, bin, argv: ['node', 'remove', ...this.argv]},
        {
          name: this.args.name,
          force: this.flags.force,
          dryRun,
          signal,
          ...(this.flags['wait-lock'] === undefined ? {} : {waitLockMs: this.flags['wait-lock']}),
          ...(this.flags.timeout === undefined ? {} : {drainTimeoutMs: this.flags.timeout}),
        },
        {
          onPlan: async (plan) => {
            if (!json) process.stderr.write(await view.renderRemovePlan(plan, {color, dryRun}))
            if (dryRun || plan.blockers.length > 0) return true
            if (!this.flags.yes && !(await view.confirmPlan(`Remove ${plan.node.name} from the cluster?`))) return false
            progress = await view.startStepProgress(plan.steps, {enabled: !json, color})
            return true
          },
          onEvent: (e) => {
            tracker.onEvent(e)
            progress?.onEvent(e)
          },
          onDrainEvent: (e) => progress?.onDrainEvent(e),
          onWarning: warn,
        },
      )
    } finally {
      await progress?.finish()
    }
    if (result.cancelled) throw new HactlError('not confirmed: nothing was changed')
    if (!json && !dryRun) process.stdout.write(await view.renderRemoveSummary(result, {color}))
    return result
  }
}
