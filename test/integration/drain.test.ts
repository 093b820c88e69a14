/**
 * `hactl node drain` and `hactl node undrain` on the lab, through the built CLI: real Kamailio
 * dispatchers (kamcmd over SSH), the Asterisk stand-in with simulated calls and its call log, real
 * etcd for the maintenance marks. Every test leaves ast3 in service (undrain in `after`).
 * Needs the built CLI (npx tsc -p tsconfig.json && npx oclif manifest) and a lab (scripts/test.mjs
 * brings one up; run alone, useLab() brings up its own).
 */
import assert from 'node:assert/strict'
import {mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {after, before, beforeEach, describe, test} from 'node:test'
import {loadConfig, parseConfig, type HactlConfig, type ResolvedNode} from '../../src/lib/config/load.js'
import {openEtcd} from '../../src/lib/etcd/client.js'
import {getMarks, type MaintenanceMark} from '../../src/lib/etcd/maintenance.js'
import {asteriskSocket, requestJson} from '../../src/lib/lab/supervisor.js'
import {drainNodes, undrainNodes, type StepEvent} from '../../src/lib/ops/drain.js'
import {UnreachableError} from '../../src/lib/errors.js'
import type {SshPool} from '../../src/lib/ssh/pool.js'
import {startEtcd, type EtcdCluster} from '../helpers/etcd.js'
import {
  callLog,
  hactl,
  labCli,
  labDispatcher,
  labHost,
  labHosts,
  labSsh,
  useLab,
  waitFor,
  type ExecResult,
} from '../helpers/lab.js'

const NODE = 'ast3'

interface NodeResultJson {
  node: string
  outcome: string
  callsAtStart?: number
  callsDrained?: number
  callsLeft?: number
  callsCut?: number
  rotation: Record<string, string | null>
  asterisk: string
  mark: string | null
}

interface DrainJson {
  plan: {nodes: Array<{node: string; action: string; reason?: string; steps?: Array<{kind: string}>}>}
  result: {nodes: NodeResultJson[]; exitCode: number} | null
}

function parseJson<T>(r: ExecResult): T {
  try {
    return JSON.parse(r.stdout) as T
  } catch {
    throw new Error(`not JSON (exit ${r.code}):\n${r.stdout}\n${r.stderr}`)
  }
}

describe('hactl node drain and undrain on the lab', {timeout: 600_000}, () => {
  let release: (() => Promise<void>) | undefined
  let config: HactlConfig
  let uri: string

  /** ast3's FLAGS on each lab Kamailio, read through its own ctl socket (not through hactl). */
  async function flagsEverywhere(): Promise<Record<string, string | undefined>> {
    const out: Record<string, string | undefined> = {}
    for (const k of labHosts('kamailio')) out[k.name] = (await labDispatcher(k.name))[uri]
    return out
  }

  async function markOf(node: string): Promise<MaintenanceMark | undefined> {
    const etcd = await openEtcd(config)
    try {
      return (await getMarks(etcd, config.etcd.prefixes.maintenance)).find((m) => m.node === node)
    } finally {
      await etcd.close()
    }
  }

  async function unitState(node: string): Promise<string> {
    return (await labSsh(node, 'systemctl is-active asterisk')).stdout.trim()
  }

  /** How each of these calls ended in the host's call log ('open' while it is still up). */
  function outcomes(node: string, ids: string[]): string[] {
    const log = callLog(node)
    return ids.map((id) => log.find((e) => e.call === id && e.event === 'end')?.outcome ?? 'open')
  }

  async function startCalls(count: number, seconds: number): Promise<string[]> {
    const r = await labCli(['calls', NODE, String(count), '--duration', String(seconds), '--json'])
    assert.equal(r.code, 0, `lab calls failed: ${r.stderr}`)
    const ids = parseJson<{started: string[]}>(r).started
    assert.equal(ids.length, count)
    return ids
  }

  /** The callers hang up (a normal end, logged "finished"). */
  async function hangUp(ids: string[]): Promise<void> {
    for (const call of ids) await requestJson(asteriskSocket(labHost(NODE).dir), {op: 'hangup', call}, 5000)
  }

  async function putBack(): Promise<void> {
    const r = await hactl(['node', 'undrain', NODE, '--json'], {timeoutMs: 120_000})
    assert.equal(r.code, 0, `undrain failed:\n${r.stdout}\n${r.stderr}`)
  }

  before(async () => {
    const lab = await useLab()
    release = lab.release
    config = loadConfig({flag: lab.configPath})
    uri = `sip:${labHost(NODE).ip}:5060`
    // Given ast3 in service, whatever an earlier run left
    await putBack()
    // A reload by an earlier test leaves a box AX until Kamailio's next OPTIONS round marks it AP.
    await waitFor(async () => Object.values(await flagsEverywhere()).every((f) => f === 'AP'), {
      timeoutMs: 15_000,
      what: 'ast3 AP on every Kamailio',
    }).catch(() => undefined)
    assert.deepEqual(Object.values(await flagsEverywhere()), ['AP', 'AP'])
  })

  after(async () => {
    try {
      // Calls a failed test left up would slow every later drain of ast3.
      await requestJson(asteriskSocket(labHost(NODE).dir), {op: 'hangup', all: true}, 5000).catch(
        () => undefined,
      )
      await putBack()
    } finally {
      await release?.()
    }
  })

  test('with 3 calls up, drain waits for them, then ast3 is disabled on every Kamailio, Asterisk stopped, and all 3 calls finished', async () => {
    // Given three calls up on ast3 (long ones: their callers hang up below, so the test does not
    // depend on how fast this machine starts hactl)
    const ids = await startCalls(3, 600)

    // When the drain runs
    const reason = 'kernel update — "ünïcode" $(touch /tmp/pwned) `id`'
    const drain = hactl(['node', 'drain', NODE, '--yes', '--reason', reason, '--json'], {timeoutMs: 180_000})

    // Then it takes ast3 out of rotation and waits: the calls stay up, Asterisk keeps running
    await waitFor(
      async () =>
        Object.values(await flagsEverywhere()).every((f) => f === 'DX') &&
        (await markOf(NODE))?.state === 'draining',
      {
        timeoutMs: 90_000,
        what: 'ast3 to be out of rotation and marked draining',
      },
    )
    assert.deepEqual(outcomes(NODE, ids), ['open', 'open', 'open'])
    assert.equal(await unitState(NODE), 'active')

    // When the callers hang up
    await hangUp(ids)

    // Then the drain finishes: Asterisk stopped, out of rotation everywhere, marked drained, no call cut
    const r = await drain
    assert.equal(r.code, 0, `drain failed:\n${r.stdout}\n${r.stderr}`)
    const n = parseJson<DrainJson>(r).result?.nodes[0]
    assert.equal(n?.outcome, 'drained')
    assert.equal(n?.callsAtStart, 3)
    assert.equal(n?.callsDrained, 3)
    assert.equal(n?.callsCut, undefined)
    assert.deepEqual(await flagsEverywhere(), {kam1: 'DX', kam2: 'DX'})
    assert.equal(await unitState(NODE), 'inactive')
    assert.deepEqual(outcomes(NODE, ids), ['finished', 'finished', 'finished'], 'no call was cut')
    const mark = await markOf(NODE)
    assert.equal(mark?.state, 'drained')
    assert.equal(mark?.reason, reason, 'the reason is stored as data')
    assert.equal((await labSsh(NODE, 'test -e /tmp/pwned && echo yes || echo no')).stdout.trim(), 'no')

    // And a second drain has nothing to do, and says so
    const again = await hactl(['node', 'drain', NODE])
    assert.equal(again.code, 0, again.stderr)
    assert.match(again.stdout, /nothing to do: ast3 is already drained/)
  })

  test('undrain starts Asterisk, restores AP on every Kamailio and clears the mark', async () => {
    // Given ast3 drained by the test before
    assert.equal((await markOf(NODE))?.state, 'drained')

    // When
    const r = await hactl(['node', 'undrain', NODE, '--json'], {timeoutMs: 120_000})

    // Then
    assert.equal(r.code, 0, `undrain failed:\n${r.stdout}\n${r.stderr}`)
    assert.equal(parseJson<DrainJson>(r).result?.nodes[0]?.outcome, 'undrained')
    assert.deepEqual(await flagsEverywhere(), {kam1: 'AP', kam2: 'AP'})
    assert.equal(await markOf(NODE), undefined)
    assert.equal(await unitState(NODE), 'active')
    const again = await hactl(['node', 'undrain', NODE])
    assert.equal(again.code, 0, again.stderr)
    assert.match(again.stdout, /nothing to do: ast3 is already in service/)
  })

  test("the issue's check: 3 calls of 5 s, drain --yes, every call finished", async () => {
    // Given `hactl lab calls ast3 3 --duration 5`
    const ids = await startCalls(3, 5)

    // When
    const r = await hactl(['node', 'drain', NODE, '--yes'], {timeoutMs: 120_000})

    // Then
    assert.equal(r.code, 0, `drain failed:\n${r.stdout}\n${r.stderr}`)
    assert.match(r.stdout, /ast3: drained in .*, [0-3] calls? ended normally/)
    assert.deepEqual(await flagsEverywhere(), {kam1: 'DX', kam2: 'DX'})
    assert.equal(await unitState(NODE), 'inactive')
    assert.deepEqual(outcomes(NODE, ids), ['finished', 'finished', 'finished'])
    await putBack()
  })

  test('draining below minInService is refused and nothing changes', async () => {
    // Given a copy of the lab's config that wants all 4 Asterisk boxes in service
    const dir = mkdtempSync(path.join(tmpdir(), 'hactl-drain-'))
    try {
      const file = path.join(dir, 'hactl.yaml')
      const text = readFileSync(config.file, 'utf8')
      assert.match(text, /minInService: 1/)
      writeFileSync(file, text.replace(/minInService: 1/, 'minInService: 4'))

      // When
      const r = await hactl(['node', 'drain', NODE, '--yes', '--json'], {env: {HACTL_CONFIG: file}})

      // Then
      assert.equal(r.code, 1, r.stdout)
      const err = parseJson<{error: {kind: string; message: string; suggestions: string[]}}>(r).error
      assert.equal(err.kind, 'CapacityError')
      assert.match(
        err.message,
        /would leave 3 Asterisk boxes in service \(ast1, ast2, ast4\), fewer than minInService \(4\); 4 Asterisk boxes are in service \(ast1, ast2, ast3, ast4\)/,
      )
      assert.ok(err.suggestions.some((s) => s.includes('--force')))
      assert.deepEqual(await flagsEverywhere(), {kam1: 'AP', kam2: 'AP'})
      assert.equal(await markOf(NODE), undefined)
      assert.equal(await unitState(NODE), 'active')
    } finally {
      rmSync(dir, {recursive: true, force: true})
    }
  })

  test('an unreachable Kamailio stops the drain before anything changes', async () => {
    // Given kam2's sshd down
    const fault = await labCli(['fault', 'kam2', 'sshd-down'])
    assert.equal(fault.code, 0, fault.stderr)
    try {
      // When
      const r = await hactl(['node', 'drain', NODE, '--yes'], {timeoutMs: 60_000})

      // Then
      assert.equal(r.code, 1, r.stderr)
      assert.match(r.stderr, /cannot drain ast3; nothing was changed: kam2 does not answer/)
    } finally {
      await labCli(['heal', 'kam2'])
    }
    assert.deepEqual(await flagsEverywhere(), {kam1: 'AP', kam2: 'AP'})
    assert.equal(await markOf(NODE), undefined)
  })

  test('--timeout with long calls exits non-zero and leaves the box out of rotation with its calls intact', async () => {
    // Given two calls of 10 minutes on ast3
    const ids = await startCalls(2, 600)

    // When
    const r = await hactl(['node', 'drain', NODE, '--timeout', '2s', '--json'], {timeoutMs: 60_000})

    // Then
    assert.equal(r.code, 1, `expected exit 1:\n${r.stdout}\n${r.stderr}`)
    const n = parseJson<DrainJson>(r).result?.nodes[0]
    assert.equal(n?.outcome, 'timeout')
    assert.equal(n?.callsLeft, 2)
    assert.equal(n?.mark, 'draining')
    assert.deepEqual(await flagsEverywhere(), {kam1: 'DX', kam2: 'DX'})
    assert.equal((await markOf(NODE))?.state, 'draining')
    assert.equal(await unitState(NODE), 'active')
    assert.deepEqual(outcomes(NODE, ids), ['open', 'open'])

    // And a second drain keeps waiting (still 2 calls), then times out the same way
    const again = parseJson<DrainJson>(
      await hactl(['node', 'drain', NODE, '--timeout', '1s', '--json'], {timeoutMs: 60_000}),
    )
    assert.deepEqual(
      again.plan.nodes[0]?.steps?.map((st) => st.kind),
      ['wait-calls', 'stop', 'mark-drained'],
    )
    assert.equal(again.result?.nodes[0]?.outcome, 'timeout')

    // And undrain puts it back without touching the calls, which end normally when the callers hang up
    await putBack()
    assert.deepEqual(await flagsEverywhere(), {kam1: 'AP', kam2: 'AP'})
    assert.equal(await markOf(NODE), undefined)
    assert.deepEqual(outcomes(NODE, ids), ['open', 'open'])
    await hangUp(ids)
    await waitFor(() => outcomes(NODE, ids).every((o) => o !== 'open'), {
      timeoutMs: 10_000,
      what: 'the two calls to end',
    })
    assert.deepEqual(outcomes(NODE, ids), ['finished', 'finished'])
  })
})

/**
 * The apply paths that the lab cannot produce on demand (a Kamailio failing between preflight and
 * the change, --force, Ctrl-C), against a throwaway etcd and a scripted SSH pool that answers like
 * Asterisk and Kamailio do.
 */
describe('drain apply paths with a scripted cluster and a throwaway etcd', () => {
  let cluster: EtcdCluster
  let config: HactlConfig
  let stateDir: string
  const savedXdg = process.env.XDG_STATE_HOME

  before(async () => {
    cluster = await startEtcd({members: 1, name: 'drain'})
    stateDir = mkdtempSync(path.join(tmpdir(), 'hactl-drain-state-'))
    process.env.XDG_STATE_HOME = stateDir
    config = parseConfig(
      `cluster: scripted
etcd: {endpoints: [${cluster.endpoints.join(', ')}]}
asterisk: {pollInterval: 50ms}
nodes:
  ast1: {host: 10.9.0.21, roles: [asterisk]}
  ast2: {host: 10.9.0.22, roles: [asterisk]}
  kam1: {host: 10.9.0.11, roles: [kamailio]}
  kam2: {host: 10.9.0.12, roles: [kamailio]}
`,
      'scripted.yaml',
    )
  })

  after(async () => {
    if (savedXdg === undefined) delete process.env.XDG_STATE_HOME
    else process.env.XDG_STATE_HOME = savedXdg
    rmSync(stateDir, {recursive: true, force: true})
    await cluster?.destroy()
  })

  // Each test starts with no maintenance marks: the capacity guard sees every box in service.
  beforeEach(async () => {
    const etcd = await openEtcd(config)
    try {
      await etcd.client.delete().prefix(config.etcd.prefixes.maintenance).exec()
    } finally {
      await etcd.close()
    }
  })

  async function marks(): Promise<MaintenanceMark[]> {
    const etcd = await openEtcd(config)
    try {
      return [...(await getMarks(etcd, config.etcd.prefixes.maintenance))]
    } finally {
      await etcd.close()
    }
  }

  test('a Kamailio that fails set_state after preflight: the others are put back, the mark removed, Asterisk untouched', async () => {
    // Given ast2 in service with 1 call, and kam2 refusing the state change
    const sim = new ScriptedCluster(config, {calls: {ast2: [1]}, failSetState: ['kam2']})

    // When
    const events: StepEvent[] = []
    const out = await drainNodes(
      {config, pool: sim.pool},
      {nodes: [sim.node('ast2')], timeoutMs: 5000},
      {onEvent: (e) => events.push(e)},
    )

    // Then
    const n = out.result?.nodes[0]
    assert.equal(n?.outcome, 'failed')
    assert.match(
      n?.message ?? '',
      /could not take ast2 out of rotation on kam2: .*State Update Failed.*; rolled back/,
    )
    assert.equal(out.result?.exitCode, 1)
    assert.deepEqual(sim.flags('ast2'), {kam1: 'AP', kam2: 'AP'})
    assert.deepEqual(await marks(), [])
    assert.ok(!sim.commands.some((c) => c.includes('core stop')), 'Asterisk was not stopped')
    assert.deepEqual(
      events.filter((e) => e.type !== 'progress').map((e) => `${e.type}:${e.step}`),
      [
        'start:mark-draining',
        'done:mark-draining',
        'start:disable',
        'fail:disable',
        'skip:wait-calls',
        'skip:stop',
        'skip:mark-drained',
      ],
    )
  })

  test('calls that end: progress per poll, then stop, drained, mark kept from the start of the drain', async () => {
    const sim = new ScriptedCluster(config, {calls: {ast2: [2, 2, 1, 0]}})
    const progress: number[] = []
    let waitStarted = 0
    const out = await drainNodes(
      {config, pool: sim.pool},
      {nodes: [sim.node('ast2')], timeoutMs: 10_000, reason: 'disk'},
      {
        onEvent: (e) => {
          if (e.type === 'progress') progress.push(e.callsLeft)
          if (e.type === 'start' && e.step === 'wait-calls') waitStarted = Date.now()
        },
      },
    )
    const n = out.result?.nodes[0]
    assert.equal(n?.outcome, 'drained', n?.message)
    assert.equal(n?.callsAtStart, 2)
    assert.equal(n?.callsDrained, 2)
    assert.deepEqual(progress, [2, 1, 0])
    assert.deepEqual(sim.flags('ast2'), {kam1: 'DX', kam2: 'DX'})
    assert.equal(sim.asterisk.get('ast2')?.running, false)
    const [m] = await marks()
    assert.equal(m?.state, 'drained')
    assert.equal(m?.reason, 'disk')
    assert.ok(Date.parse(m?.since ?? '') <= waitStarted, 'since is when the drain began, not when it ended')
  })

  test('--force after the timeout: core stop now ends the calls left and says how many', async () => {
    const sim = new ScriptedCluster(config, {calls: {ast1: [3]}})
    const out = await drainNodes(
      {config, pool: sim.pool},
      {nodes: [sim.node('ast1')], timeoutMs: 200, force: true},
    )
    const n = out.result?.nodes[0]
    assert.equal(n?.outcome, 'drained', n?.message)
    assert.equal(n?.callsCut, 3)
    assert.ok(sim.commands.some((c) => c.includes("'core stop now'")))
    assert.ok(!sim.commands.some((c) => c.includes("'core stop gracefully'")))
  })

  test('the box lost while waiting: failed, with where it was left (out of rotation, marked draining)', async () => {
    // Given ast1 answering its first 3 commands (facts, then two polls), then unreachable
    const sim = new ScriptedCluster(config, {
      calls: {ast1: [1]},
      unreachableAfter: {node: 'ast1', commands: 3},
    })
    const events: StepEvent[] = []
    const out = await drainNodes(
      {config, pool: sim.pool},
      {nodes: [sim.node('ast1')], timeoutMs: 60_000},
      {onEvent: (e) => events.push(e)},
    )
    const n = out.result?.nodes[0]
    assert.equal(n?.outcome, 'failed')
    assert.match(
      n?.message ?? '',
      /ast1: unreachable: the connection was lost; ast1 is out of rotation on kam1, kam2, marked draining, Asterisk running/,
    )
    assert.equal(n?.error?.kind, 'unreachable')
    assert.equal(out.result?.exitCode, 1)
    assert.deepEqual(
      events
        .filter((e) => e.type !== 'progress')
        .map((e) => `${e.type}:${e.step}`)
        .slice(-3),
      ['fail:wait-calls', 'skip:stop', 'skip:mark-drained'],
    )
    // Put it back for the next test
    await undrainNodes(
      {config, pool: new ScriptedCluster(config).pool},
      {nodes: [sim.node('ast1')], timeoutMs: 5000},
    )
  })

  test('Ctrl-C while waiting: out of rotation, marked draining, nothing stopped, outcome interrupted (exit 130)', async () => {
    const sim = new ScriptedCluster(config, {calls: {ast1: [2]}})
    const ac = new AbortController()
    const out = await drainNodes(
      {config, pool: sim.pool},
      {nodes: [sim.node('ast1')], timeoutMs: 60_000, signal: ac.signal},
      {
        onEvent: (e) => e.type === 'progress' && ac.abort(),
      },
    )
    const n = out.result?.nodes[0]
    assert.equal(n?.outcome, 'interrupted')
    assert.equal(n?.callsLeft, 2)
    assert.equal(out.result?.exitCode, 130)
    assert.deepEqual(sim.flags('ast1'), {kam1: 'DX', kam2: 'DX'})
    assert.equal((await marks()).find((m) => m.node === 'ast1')?.state, 'draining')
    assert.ok(!sim.commands.some((c) => c.includes('core stop')))

    // And "put it back" (undrain) restores rotation and clears the mark, calls untouched
    const back = await undrainNodes({config, pool: sim.pool}, {nodes: [sim.node('ast1')], timeoutMs: 5000})
    assert.equal(back.result?.nodes[0]?.outcome, 'undrained')
    assert.deepEqual(sim.flags('ast1'), {kam1: 'AP', kam2: 'AP'})
    assert.equal(
      (await marks()).find((m) => m.node === 'ast1'),
      undefined,
    )
    assert.equal(sim.asterisk.get('ast1')?.calls[0], 2)
  })
})

/**
 * Answers hactl's remote commands the way Asterisk (`asterisk -rx`, systemctl) and Kamailio
 * (`kamcmd`) do, from an in-memory model. `calls` per node: the active calls seen by successive
 * polls (the last value repeats).
 */
class ScriptedCluster {
  readonly commands: string[] = []
  readonly asterisk = new Map<string, {running: boolean; pending: boolean; calls: number[]}>()
  private readonly dispatcher = new Map<string, Map<string, string>>()
  readonly pool: SshPool

  constructor(
    private readonly config: HactlConfig,
    opts: {
      calls?: Record<string, number[]>
      failSetState?: string[]
      unreachableAfter?: {node: string; commands: number}
    } = {},
  ) {
    for (const n of config.nodes.filter((x) => x.roles.includes('asterisk'))) {
      this.asterisk.set(n.name, {running: true, pending: false, calls: [...(opts.calls?.[n.name] ?? [0])]})
    }
    for (const k of config.nodes.filter((x) => x.roles.includes('kamailio'))) {
      this.dispatcher.set(
        k.name,
        new Map(
          config.nodes.filter((x) => x.roles.includes('asterisk')).map((a) => [`sip:${a.host}:5060`, 'AP']),
        ),
      )
    }
    const fail = new Set(opts.failSetState ?? [])
    this.pool = {
      run: async (node: ResolvedNode, cmd: string) => {
        this.commands.push(`${node.name}: ${cmd}`)
        const drop = opts.unreachableAfter
        if (
          drop?.node === node.name &&
          this.commands.filter((c) => c.startsWith(`${node.name}: `)).length > drop.commands
        ) {
          throw new UnreachableError(node.name, 'the connection was lost')
        }
        return {stdout: this.answer(node, cmd, fail.has(node.name)), stderr: '', code: 0, durationMs: 1}
      },
      connect: async () => undefined,
    } as unknown as SshPool
  }

  node(name: string): ResolvedNode {
    return this.config.nodes.find((n) => n.name === name)!
  }

  flags(name: string): Record<string, string | undefined> {
    const uri = `sip:${this.node(name).host}:5060`
    return Object.fromEntries([...this.dispatcher].map(([k, d]) => [k, d.get(uri)]))
  }

  private count(name: string, consume: boolean): string {
    const a = this.asterisk.get(name)!
    if (!a.running)
      return 'Unable to connect to remote asterisk (does /var/run/asterisk/asterisk.ctl exist?)\n'
    if (a.pending) return "Command 'core show channels count' cannot be run during shutdown\n"
    const n = a.calls[0]!
    if (consume && a.calls.length > 1) a.calls.shift()
    return `${n * 2} active channels\n${n} active call${n === 1 ? '' : 's'}\n7 calls processed\n`
  }

  private unitProbe(name: string): string {
    const a = this.asterisk.get(name)!
    if (!a.running) return 'inactive\n@@hactl-asterisk@@\n'
    return `active\n@@hactl-asterisk@@\n${this.count(name, false)}@@hactl-asterisk@@rc 0\n`
  }

  private list(kam: string): string {
    const dests = [...this.dispatcher.get(kam)!].map(
      ([uri, flags]) =>
        `\t\t\t\tDEST: {\n\t\t\t\t\tURI: ${uri}\n\t\t\t\t\tFLAGS: ${flags}\n\t\t\t\t\tPRIORITY: 0\n\t\t\t\t}\n`,
    )
    return `{\n\tNRSETS: 1\n\tRECORDS: {\n\t\tSET: {\n\t\t\tID: 1\n\t\t\tTARGETS: {\n${dests.join('')}\t\t\t}\n\t\t}\n\t}\n}\n`
  }

  private answer(node: ResolvedNode, cmd: string, failSetState: boolean): string {
    const a = this.asterisk.get(node.name)
    if (node.roles.includes('kamailio')) {
      const set = /dispatcher\.set_state (\S+) 1 (\S+)/.exec(cmd)
      if (set) {
        const [, state, uri] = set as unknown as [string, string, string]
        const flags = `${state[0]!.toUpperCase()}${state.includes('p') ? 'P' : 'X'}`
        if (!failSetState) this.dispatcher.get(node.name)!.set(uri, flags)
        return `${failSetState ? 'error: 500 - State Update Failed' : 'Ok. Dispatcher state updated.'}\n@@hactl-kam@@rc 0\n${this.list(node.name)}`
      }
      if (cmd.includes('dispatcher.list')) return this.list(node.name)
    }
    if (a) {
      if (cmd.includes("'core stop gracefully'") || cmd.includes("'core stop now'")) {
        if (cmd.includes("'core stop now'") || a.calls[0] === 0) a.running = false
        else a.pending = true
        return `@@hactl-stop@@rc 0\n${this.unitProbe(node.name)}`
      }
      if (cmd.includes('systemctl is-active')) return this.unitProbe(node.name)
      if (cmd.includes("'core abort shutdown'")) {
        a.pending = false
        return ''
      }
      if (cmd.startsWith('systemctl start')) {
        a.running = true
        return ''
      }
      if (cmd.includes("'core show channels count'")) return this.count(node.name, true)
    }
    throw new Error(`the scripted cluster does not know: ${node.name}: ${cmd}`)
  }
}
