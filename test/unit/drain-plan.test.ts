import assert from 'node:assert/strict'
import {readFileSync} from 'node:fs'
import path from 'node:path'
import {describe, test} from 'node:test'
import {fileURLToPath} from 'node:url'
import {
  asteriskCliCommand,
  interpretChannelsCount,
  parseUnitAndCli,
  stopAsteriskGracefully,
  waitForCallsToEnd,
} from '../../src/lib/asterisk.js'
import {parseConfig, type ResolvedNode} from '../../src/lib/config/load.js'
import type {MaintenanceMark} from '../../src/lib/etcd/maintenance.js'
import {destinationUri, kamcmd, matchesWanted, stateArgOf, viewsFromList} from '../../src/lib/kamailio.js'
import {
  buildRunPlan,
  isInService,
  planDrain,
  planLines,
  planUndrain,
  preflightError,
  type DrainFacts,
  type DrainNodeFacts,
  type KamailioFacts,
  type NodePlan,
} from '../../src/lib/ops/drain.js'
import type {SshPool} from '../../src/lib/ssh/pool.js'

const here = path.dirname(fileURLToPath(import.meta.url))
const fixture = (dir: string, name: string): string =>
  readFileSync(path.join(here, '../fixtures', dir, name), 'utf8')

const config = parseConfig(
  `cluster: t
nodes:
  ast1: {host: 127.0.0.21, roles: [asterisk, etcd]}
  ast2: {host: 127.0.0.22, roles: [asterisk]}
  ast3: {host: 127.0.0.23, roles: [asterisk]}
  kam1: {host: 127.0.0.11, roles: [kamailio]}
  kam2: {host: 127.0.0.12, roles: [kamailio]}
`,
  'hactl.yaml',
)
const node = (name: string): ResolvedNode => config.nodes.find((n) => n.name === name)!

const kams: KamailioFacts[] = [
  {name: 'kam1', reachable: true},
  {name: 'kam2', reachable: true},
]
const AP = {flags: 'AP', state: 'active'} as const
const DX = {flags: 'DX', state: 'disabled'} as const
const ABSENT = {flags: null, state: 'absent'} as const

function mark(state: 'draining' | 'drained', extra: Partial<MaintenanceMark> = {}): MaintenanceMark {
  return {node: 'ast3', state, by: 'ops@laptop', since: '2024-05-01T10:00:00.000Z', ...extra}
}

function facts(overrides: Partial<DrainNodeFacts> = {}): DrainNodeFacts {
  return {
    name: 'ast3',
    reachable: true,
    asterisk: {state: 'running', activeCalls: 3, activeChannels: 6},
    dispatcher: {kam1: AP, kam2: AP},
    ...overrides,
  }
}

function kinds(p: NodePlan): string[] {
  assert.equal(p.action, 'apply', `expected steps, got ${p.action}: ${'reason' in p ? p.reason : ''}`)
  return p.action === 'apply' ? p.steps.map((s) => s.kind) : []
}

describe('planDrain: one plan per starting state', () => {
  test('in service: mark, out of rotation everywhere, wait, stop, mark drained', () => {
    const p = planDrain(facts(), kams)
    assert.deepEqual(kinds(p), ['mark-draining', 'disable', 'wait-calls', 'stop', 'mark-drained'])
    assert.equal(p.action === 'apply' && p.steps[1]?.kamailio?.join(','), 'kam1,kam2')
    assert.match(p.action === 'apply' ? (p.steps[2]?.title ?? '') : '', /wait for 3 calls on ast3 to end/)
  })

  test('draining (a run stopped by --timeout or Ctrl-C): keeps the mark, keeps waiting', () => {
    const p = planDrain(
      facts({
        dispatcher: {kam1: DX, kam2: DX},
        mark: mark('draining'),
        asterisk: {state: 'running', activeCalls: 2, activeChannels: 4},
      }),
      kams,
    )
    assert.deepEqual(kinds(p), ['wait-calls', 'stop', 'mark-drained'])
  })

  test('draining but back in rotation on one Kamailio (someone reloaded it): disables only that one', () => {
    const p = planDrain(facts({dispatcher: {kam1: DX, kam2: AP}, mark: mark('draining')}), kams)
    assert.deepEqual(kinds(p), ['disable', 'wait-calls', 'stop', 'mark-drained'])
    assert.deepEqual(p.action === 'apply' ? p.steps[0]?.kamailio : [], ['kam2'])
  })

  test('drained: nothing to do, and says so', () => {
    const p = planDrain(
      facts({asterisk: {state: 'stopped'}, dispatcher: {kam1: DX, kam2: DX}, mark: mark('drained')}),
      kams,
    )
    assert.equal(p.action, 'none')
    assert.match(
      p.action === 'none' ? p.reason : '',
      /ast3 is already drained \(since 2024-05-01T10:00:00.000Z, by ops@laptop\)/,
    )
  })

  test('marked drained but active on a Kamailio again: drains that one and re-marks', () => {
    const p = planDrain(
      facts({asterisk: {state: 'stopped'}, dispatcher: {kam1: AP, kam2: DX}, mark: mark('drained')}),
      kams,
    )
    assert.deepEqual(kinds(p), ['mark-draining', 'disable', 'mark-drained'])
  })

  test('shutdown pending (core stop gracefully already sent): out of rotation, then wait for Asterisk to exit', () => {
    const p = planDrain(facts({asterisk: {state: 'shutdown-pending'}}), kams)
    assert.deepEqual(kinds(p), ['mark-draining', 'disable', 'wait-exit', 'mark-drained'])
  })

  test('Asterisk down: out of rotation and marked, nothing to wait for or stop', () => {
    const p = planDrain(facts({asterisk: {state: 'stopped'}}), kams)
    assert.deepEqual(kinds(p), ['mark-draining', 'disable', 'mark-drained'])
  })

  test('Asterisk down, out of rotation, not marked: only the mark', () => {
    const p = planDrain(facts({asterisk: {state: 'stopped'}, dispatcher: {kam1: DX, kam2: DX}}), kams)
    assert.deepEqual(kinds(p), ['mark-draining', 'mark-drained'])
  })

  test('a destination missing from one Kamailio list is already out of rotation there', () => {
    const p = planDrain(facts({dispatcher: {kam1: AP, kam2: ABSENT}}), kams)
    assert.deepEqual(p.action === 'apply' ? p.steps[1]?.kamailio : [], ['kam1'])
    assert.match(p.action === 'apply' ? (p.steps[1]?.title ?? '') : '', /not in kam2's list/)
  })

  test('idle box: the wait step only checks', () => {
    const p = planDrain(facts({asterisk: {state: 'running', activeCalls: 0, activeChannels: 0}}), kams)
    assert.match(p.action === 'apply' ? (p.steps[2]?.title ?? '') : '', /check that ast3 has no calls/)
  })

  test('preflight: an unreachable Kamailio blocks the drain (half out of rotation is worse than none)', () => {
    const p = planDrain(facts({dispatcher: {kam1: AP, kam2: null}}), [
      kams[0]!,
      {name: 'kam2', reachable: false, error: 'kam2: unreachable: connect ECONNREFUSED'},
    ])
    assert.equal(p.action, 'blocked')
    assert.match(
      p.action === 'blocked' ? p.reason : '',
      /kam2 does not answer .*a box half out of rotation is worse than none/,
    )
  })

  test('preflight: the hint of the SSH error (a changed host key) comes first, then status', () => {
    const keygen = 'if the host was reinstalled on purpose, remove the old key: ssh-keygen -f /k -R 10.0.0.23'
    const p = planDrain(facts({reachable: false, error: '10.0.0.23: host key mismatch', hints: [keygen]}), kams)
    assert.deepEqual(p.action === 'blocked' ? p.suggestions : [], [keygen, 'hactl status ast3'])
    const k = planDrain(facts({dispatcher: {kam1: AP, kam2: null}}), [
      kams[0]!,
      {name: 'kam2', reachable: false, error: 'host key mismatch', hints: ['ssh-keygen -f /k -R 10.0.0.12']},
    ])
    assert.deepEqual(k.action === 'blocked' ? k.suggestions : [], [
      'ssh-keygen -f /k -R 10.0.0.12',
      'check the Kamailio hosts: hactl status kam2',
    ])
  })

  test('preflight: an unreachable box or an Asterisk CLI that makes no sense blocks it', () => {
    assert.equal(planDrain(facts({reachable: false, error: 'timeout'}), kams).action, 'blocked')
    const p = planDrain(facts({asterisk: {state: 'unknown', detail: 'sh: 1: asterisk: not found'}}), kams)
    assert.equal(p.action, 'blocked')
    assert.match(p.action === 'blocked' ? p.reason : '', /asterisk: not found/)
  })
})

describe('planUndrain', () => {
  test('drained: start Asterisk, back in rotation everywhere, clear the mark', () => {
    const p = planUndrain(
      facts({asterisk: {state: 'stopped'}, dispatcher: {kam1: DX, kam2: DX}, mark: mark('drained')}),
      kams,
    )
    assert.deepEqual(kinds(p), ['start', 'enable', 'clear-mark'])
  })

  test('draining with calls up (timeout or Ctrl-C): back in rotation and unmarked, Asterisk left alone', () => {
    const p = planUndrain(facts({dispatcher: {kam1: DX, kam2: DX}, mark: mark('draining')}), kams)
    assert.deepEqual(kinds(p), ['enable', 'clear-mark'])
  })

  test('shutdown pending: core abort shutdown first', () => {
    const p = planUndrain(
      facts({
        asterisk: {state: 'shutdown-pending'},
        dispatcher: {kam1: DX, kam2: DX},
        mark: mark('draining'),
      }),
      kams,
    )
    assert.deepEqual(kinds(p), ['abort-shutdown', 'enable', 'clear-mark'])
  })

  test('in service: nothing to do, and says so', () => {
    const p = planUndrain(facts(), kams)
    assert.equal(p.action, 'none')
    assert.match(p.action === 'none' ? p.reason : '', /already in service/)
  })

  test('inactive on one Kamailio (failed probes): only that one is set', () => {
    const p = planUndrain(facts({dispatcher: {kam1: AP, kam2: {flags: 'IP', state: 'inactive'}}}), kams)
    assert.deepEqual(kinds(p), ['enable'])
    assert.deepEqual(p.action === 'apply' ? p.steps[0]?.kamailio : [], ['kam2'])
  })

  test('not in a Kamailio list: cannot be put back there', () => {
    const p = planUndrain(facts({dispatcher: {kam1: DX, kam2: ABSENT}, mark: mark('drained')}), kams)
    assert.equal(p.action, 'blocked')
    assert.match(p.action === 'blocked' ? p.suggestions.join() : '', /dispatcher sync/)
  })
})

describe('the run plan: capacity guard and preflight', () => {
  function cluster(...boxes: DrainNodeFacts[]): DrainFacts {
    return {asterisk: boxes, kamailio: kams}
  }
  const inService = (name: string): DrainNodeFacts =>
    facts({name, asterisk: {state: 'running', activeCalls: 0, activeChannels: 0}})
  const drained = (name: string): DrainNodeFacts =>
    facts({
      name,
      asterisk: {state: 'stopped'},
      dispatcher: {kam1: DX, kam2: DX},
      mark: {...mark('drained'), node: name},
    })
  const base = {operation: 'drain' as const, minInService: 1, force: false, timeoutMs: 30 * 60_000}

  test('in service means running, unmarked and active on every Kamailio', () => {
    assert.equal(isInService(inService('ast1')), true)
    assert.equal(isInService(facts({dispatcher: {kam1: AP, kam2: {flags: 'IP', state: 'inactive'}}})), false)
    assert.equal(isInService(facts({mark: mark('draining')})), false)
    assert.equal(isInService(facts({asterisk: {state: 'shutdown-pending'}})), false)
    assert.equal(isInService(facts({dispatcher: {kam1: AP, kam2: null}})), false)
  })

  test('draining the last box in service is refused before anything changes', () => {
    const plan = buildRunPlan(cluster(inService('ast1'), drained('ast2'), drained('ast3')), {
      ...base,
      targets: ['ast1'],
    })
    const err = preflightError(plan)
    assert.ok(err)
    assert.match(
      err.message,
      /refusing to drain: draining ast1 would leave 0 Asterisk boxes in service.*1 Asterisk box is in service \(ast1\); nothing was changed/,
    )
    assert.ok(err.suggestions.some((s) => s.includes('--force')))
    assert.equal(err.exitCode, 1)
  })

  test('--force overrides the guard, and says so for the confirmation', () => {
    const plan = buildRunPlan(cluster(inService('ast1'), drained('ast2')), {
      ...base,
      targets: ['ast1'],
      force: true,
    })
    assert.equal(preflightError(plan), undefined)
    assert.ok(plan.forceEffects.some((e) => /override the capacity guard/.test(e)))
    assert.ok(
      plan.forceEffects.some((e) => /end the calls still up on ast1 after 30m \(core stop now\)/.test(e)),
    )
  })

  test('without --force there is nothing to confirm', () => {
    const plan = buildRunPlan(cluster(inService('ast1'), inService('ast2')), {...base, targets: ['ast1']})
    assert.deepEqual(plan.forceEffects, [])
    assert.equal(preflightError(plan), undefined)
  })

  test('several targets count together; a drained target does not count', () => {
    const all = cluster(inService('ast1'), inService('ast2'), drained('ast3'))
    assert.ok(preflightError(buildRunPlan(all, {...base, targets: ['ast1', 'ast2']})))
    assert.equal(preflightError(buildRunPlan(all, {...base, targets: ['ast2', 'ast3']})), undefined)
  })

  test('one blocked node stops the whole run and names it', () => {
    const plan = buildRunPlan(
      cluster(inService('ast1'), inService('ast2'), facts({reachable: false, error: 'no route to host'})),
      {...base, targets: ['ast2', 'ast3']},
    )
    const err = preflightError(plan)
    assert.ok(err)
    assert.match(
      err.message,
      /cannot drain ast3; nothing was changed: ast3 does not answer: no route to host/,
    )
  })

  test('the plan prints one line per step, the capacity and the timeout', () => {
    const plan = buildRunPlan(cluster(inService('ast1'), facts()), {...base, targets: ['ast3']})
    const lines = planLines(plan)
    assert.match(lines[0]!, /^ast3: Asterisk running, 3 calls; kam1 AP, kam2 AP; not marked$/)
    assert.match(lines[1]!, /1\. mark ast3 draining in etcd/)
    assert.ok(
      lines.some((l) =>
        /^capacity: 2 Asterisk boxes are in service \(ast1, ast3\); 1 will stay in service \(ast1\)/.test(l),
      ),
    )
    assert.ok(lines.some((l) => /^timeout: 30m, then leave the box out of rotation and report$/.test(l)))
  })

  test('undrain has no capacity guard', () => {
    const plan = buildRunPlan(cluster(drained('ast3')), {...base, operation: 'undrain', targets: ['ast3']})
    assert.equal(plan.capacity, undefined)
    assert.equal(preflightError(plan), undefined)
  })
})

describe('Asterisk answers', () => {
  test('every answer of core show channels count becomes a state', () => {
    assert.deepEqual(interpretChannelsCount(fixture('asterisk', 'channels-count-busy.txt'), 0), {
      state: 'running',
      activeCalls: 3,
      activeChannels: 6,
      callsProcessed: 128,
    })
    assert.deepEqual(interpretChannelsCount(fixture('asterisk', 'channels-count-idle.txt'), 0), {
      state: 'running',
      activeCalls: 0,
      activeChannels: 0,
      callsProcessed: 0,
    })
    assert.equal(
      interpretChannelsCount(fixture('asterisk', 'channels-count-maxcalls-partial.txt'), 0).state,
      'running',
    )
    assert.deepEqual(interpretChannelsCount(fixture('asterisk', 'shutdown-pending.txt'), 0), {
      state: 'shutdown-pending',
    })
    assert.deepEqual(interpretChannelsCount(fixture('asterisk', 'not-running.txt'), 1), {state: 'stopped'})
    const odd = interpretChannelsCount(fixture('asterisk', 'no-such-command.txt'), 0)
    assert.equal(odd.state, 'unknown')
    assert.equal(interpretChannelsCount('sh: 1: asterisk: not found', 127).state, 'unknown')
    assert.equal(interpretChannelsCount('garbage', 0).state, 'unknown')
  })

  test('the unit state and the CLI come back from one round trip', () => {
    const out = `active\n@@hactl-asterisk@@\n${fixture('asterisk', 'shutdown-pending.txt')}@@hactl-asterisk@@rc 0\n`
    assert.deepEqual(parseUnitAndCli(out), {unit: 'active', asterisk: {state: 'shutdown-pending'}})
    const gone = `inactive\n@@hactl-asterisk@@\n${fixture('asterisk', 'not-running.txt')}@@hactl-asterisk@@rc 1\n`
    assert.deepEqual(parseUnitAndCli(gone), {unit: 'inactive', asterisk: {state: 'stopped'}})
    assert.deepEqual(parseUnitAndCli('failed\n@@hactl-asterisk@@\n'), {
      unit: 'failed',
      asterisk: {state: 'stopped'},
    })
    assert.equal(parseUnitAndCli('').asterisk.state, 'unknown')
  })

  test('the unit+CLI probe runs in a real shell and asks the CLI only while the unit is up', async () => {
    // Given stand-ins for systemctl and asterisk on PATH that print what the real ones print
    const {execFileSync} = await import('node:child_process')
    const {mkdtempSync, writeFileSync, rmSync} = await import('node:fs')
    const {tmpdir} = await import('node:os')
    const dir = mkdtempSync(path.join(tmpdir(), 'hactl-probe-'))
    try {
      const probe = async (unit: string): Promise<{out: string; asked: boolean}> => {
        writeFileSync(path.join(dir, 'systemctl'), `#!/bin/sh\necho ${unit}\n[ ${unit} = active ]\n`, {
          mode: 0o755,
        })
        writeFileSync(
          path.join(dir, 'asterisk'),
          `#!/bin/sh\ntouch ${dir}/asked\nprintf '0 active channels\\n0 active calls\\n4 calls processed\\n'\n`,
          {mode: 0o755},
        )
        rmSync(path.join(dir, 'asked'), {force: true})
        let cmd = ''
        const {pool} = scriptedPool((c) => {
          cmd = c
          return ''
        })
        const {probeUnitAndCli} = await import('../../src/lib/asterisk.js')
        await probeUnitAndCli({config, pool}, node('ast3'))
        const out = execFileSync('sh', ['-c', cmd], {
          env: {...process.env, PATH: `${dir}:${process.env.PATH}`},
          encoding: 'utf8',
        })
        const {existsSync} = await import('node:fs')
        return {out, asked: existsSync(path.join(dir, 'asked'))}
      }
      const up = await probe('active')
      assert.deepEqual(parseUnitAndCli(up.out), {
        unit: 'active',
        asterisk: {state: 'running', activeCalls: 0, activeChannels: 0, callsProcessed: 4},
      })
      assert.equal(up.asked, true)
      const down = await probe('inactive')
      assert.deepEqual(parseUnitAndCli(down.out), {unit: 'inactive', asterisk: {state: 'stopped'}})
      assert.equal(down.asked, false)
    } finally {
      rmSync(dir, {recursive: true, force: true})
    }
  })

  test('the CLI command is quoted as one argument after the configured prefix', () => {
    assert.equal(
      asteriskCliCommand(config, 'core stop gracefully'),
      "( asterisk -rx 'core stop gracefully' ) </dev/null 2>&1",
    )
    assert.equal(
      asteriskCliCommand(config, "x'; rm -rf /"),
      "( asterisk -rx 'x'\\''; rm -rf /' ) </dev/null 2>&1",
    )
  })
})

describe('Kamailio views', () => {
  test('each node found by host and sipPort in the configured set', () => {
    const views = viewsFromList(config, 'kam1', fixture('kamailio', 'list-set-state.txt'), [
      node('ast1'),
      node('ast2'),
      node('ast3'),
    ])
    assert.deepEqual(views.get('ast1'), {flags: 'DX', state: 'disabled'})
    assert.deepEqual(views.get('ast2'), {flags: 'AX', state: 'active'})
    assert.deepEqual(views.get('ast3'), {flags: null, state: 'absent'})
  })

  test('an empty dispatcher makes every node absent; any other error throws with the Kamailio name', () => {
    const views = viewsFromList(config, 'kam1', fixture('kamailio', 'list-empty.txt'), [node('ast1')])
    assert.deepEqual(views.get('ast1'), {flags: null, state: 'absent'})
    assert.throws(
      () =>
        viewsFromList(config, 'kam2', fixture('kamailio', 'kamcmd-down-refused.stderr.txt'), [node('ast1')]),
      /kam2: kamcmd dispatcher.list failed: .*Connection refused/,
    )
  })

  test('read-back verification and rollback states', () => {
    assert.equal(matchesWanted(DX, 'd'), true)
    assert.equal(matchesWanted({flags: 'IP', state: 'inactive'}, 'd'), false)
    assert.equal(matchesWanted(AP, 'ap'), true)
    assert.equal(matchesWanted({flags: 'AX', state: 'active'}, 'ap'), false)
    assert.equal(stateArgOf(AP), 'ap')
    assert.equal(stateArgOf({flags: 'AX', state: 'active'}), 'a')
    assert.equal(stateArgOf({flags: 'IP', state: 'inactive'}), 'ip')
    assert.equal(stateArgOf(ABSENT), undefined)
  })

  test('destination URIs and kamcmd commands', () => {
    assert.equal(destinationUri(config, node('ast3')), 'sip:127.0.0.23:5060')
    assert.equal(destinationUri(config, {...node('ast3'), host: 'fd00::23'}), 'sip:[fd00::23]:5060')
    assert.equal(
      kamcmd(config, ['dispatcher.set_state', 'd', 1, 'sip:127.0.0.23:5060']),
      '( kamcmd dispatcher.set_state d 1 sip:127.0.0.23:5060 ) </dev/null 2>&1',
    )
  })
})

/** A pool that answers each command from a script: the wait loops are tested without hosts. */
function scriptedPool(answer: (cmd: string, call: number) => string | {stdout: string; code: number}): {
  pool: SshPool
  commands: string[]
} {
  const commands: string[] = []
  const pool = {
    async run(_node: ResolvedNode, cmd: string) {
      commands.push(cmd)
      const a = answer(cmd, commands.length)
      const r = typeof a === 'string' ? {stdout: a, code: 0} : a
      return {stdout: r.stdout, stderr: '', code: r.code, durationMs: 1}
    },
  } as unknown as SshPool
  return {pool, commands}
}

const count = (calls: number) =>
  `${calls * 2} active channels\n${calls} active call${calls === 1 ? '' : 's'}\n9 calls processed\n`

describe('waiting without hosts', () => {
  test('an idle box costs one round trip and no sleep', async () => {
    const {pool, commands} = scriptedPool(() => count(0))
    const started = Date.now()
    const w = await waitForCallsToEnd({config, pool}, node('ast3'), {
      deadline: Date.now() + 60_000,
      pollMs: 1000,
    })
    assert.equal(w.outcome, 'idle')
    assert.equal(commands.length, 1)
    assert.ok(Date.now() - started < 500)
  })

  test('calls that end are counted down, with progress for each poll', async () => {
    const left = [3, 2, 2, 0]
    const {pool} = scriptedPool((_c, i) => count(left[Math.min(i - 1, left.length - 1)]!))
    const seen: number[] = []
    const w = await waitForCallsToEnd({config, pool}, node('ast3'), {
      deadline: Date.now() + 60_000,
      pollMs: 5,
      onProgress: (p) => seen.push(p.callsLeft),
    })
    assert.deepEqual(w, {outcome: 'idle', callsAtStart: 3, waitedMs: w.waitedMs})
    assert.deepEqual(seen, [3, 2, 2, 0])
  })

  test('the timeout returns the calls left instead of throwing', async () => {
    const {pool} = scriptedPool(() => count(2))
    const w = await waitForCallsToEnd({config, pool}, node('ast3'), {deadline: Date.now() + 60, pollMs: 10})
    assert.equal(w.outcome, 'timeout')
    assert.equal(w.outcome === 'timeout' && w.callsLeft, 2)
  })

  test('an abort (Ctrl-C) ends the wait at once, with the calls left', async () => {
    const {pool} = scriptedPool(() => count(1))
    const ac = new AbortController()
    setTimeout(() => ac.abort(), 50)
    const started = Date.now()
    const w = await waitForCallsToEnd({config, pool}, node('ast3'), {
      deadline: Date.now() + 60_000,
      pollMs: 10_000,
      signal: ac.signal,
    })
    assert.equal(w.outcome, 'interrupted')
    assert.equal(w.outcome === 'interrupted' && w.callsLeft, 1)
    assert.ok(Date.now() - started < 2000, 'the sleep is cut short')
  })

  test('graceful stop of an idle box: the stop and the unit check are one round trip', async () => {
    const {pool, commands} = scriptedPool((cmd) => {
      assert.match(cmd, /asterisk -rx 'core stop gracefully'.*systemctl is-active/s)
      return '@@hactl-stop@@rc 0\ninactive\n@@hactl-asterisk@@\n'
    })
    const s = await stopAsteriskGracefully({config, pool}, node('ast3'), {
      deadline: Date.now() + 5000,
      pollMs: 10,
    })
    assert.equal(s.outcome, 'stopped')
    assert.equal(commands.length, 1)
  })

  test('graceful stop: polls until the unit goes inactive, without systemctl stop when Asterisk exits by itself', async () => {
    let polls = 0
    const {pool, commands} = scriptedPool((cmd) => {
      if (cmd.includes("'core stop gracefully'"))
        return `@@hactl-stop@@rc 0\nactive\n@@hactl-asterisk@@\n${fixture('asterisk', 'shutdown-pending.txt')}@@hactl-asterisk@@rc 0\n`
      polls += 1
      return polls < 3
        ? `deactivating\n@@hactl-asterisk@@\n${fixture('asterisk', 'shutdown-pending.txt')}@@hactl-asterisk@@rc 0\n`
        : 'inactive\n@@hactl-asterisk@@\n'
    })
    const s = await stopAsteriskGracefully({config, pool}, node('ast3'), {
      deadline: Date.now() + 5000,
      pollMs: 10,
    })
    assert.equal(s.outcome, 'stopped')
    assert.equal(polls, 3)
    assert.ok(
      !commands.some((c) => c.startsWith('systemctl stop')),
      'no systemctl stop when Asterisk exited by itself',
    )
  })

  test('Asterisk that does not know the stop command is an error, not a wait', async () => {
    const {pool} = scriptedPool(
      () =>
        `${fixture('asterisk', 'no-such-command.txt')}@@hactl-stop@@rc 0\nactive\n@@hactl-asterisk@@\n${count(0)}@@hactl-asterisk@@rc 0\n`,
    )
    await assert.rejects(
      stopAsteriskGracefully({config, pool}, node('ast3'), {deadline: Date.now() + 5000, pollMs: 10}),
      /does not know "core stop gracefully"/,
    )
  })

  test('graceful stop when systemd restarts Asterisk: the fresh, idle process is stopped with the unit', async () => {
    let unitStopped = false
    const {pool, commands} = scriptedPool((cmd) => {
      if (cmd.includes("'core stop gracefully'")) return ''
      if (cmd.startsWith('systemctl stop')) {
        unitStopped = true
        return ''
      }
      if (unitStopped) return 'inactive\n@@hactl-asterisk@@\n'
      return `activating\n@@hactl-asterisk@@\n${fixture('asterisk', 'not-running.txt')}@@hactl-asterisk@@rc 1\n`
    })
    const s = await stopAsteriskGracefully({config, pool}, node('ast3'), {
      deadline: Date.now() + 5000,
      pollMs: 10,
    })
    assert.equal(s.outcome, 'stopped')
    assert.equal(commands.filter((c) => c.startsWith('systemctl stop')).length, 1)
  })

  test('graceful stop never stops the unit while a call is up; it times out and reports', async () => {
    const {pool, commands} = scriptedPool((cmd) => {
      if (cmd.includes("'core stop gracefully'")) return ''
      return `active\n@@hactl-asterisk@@\n${count(1)}@@hactl-asterisk@@rc 0\n`
    })
    const s = await stopAsteriskGracefully({config, pool}, node('ast3'), {
      deadline: Date.now() + 80,
      pollMs: 10,
    })
    assert.equal(s.outcome, 'timeout')
    assert.ok(!commands.some((c) => c.startsWith('systemctl stop')))
  })
})
