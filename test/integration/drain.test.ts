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
import {after, before, describe, test} from 'node:test'
import {loadConfig, type HactlConfig} from '../../src/lib/config/load.js'
import {openEtcd} from '../../src/lib/etcd/client.js'
import {getMarks, type MaintenanceMark} from '../../src/lib/etcd/maintenance.js'
import {asteriskSocket, requestJson} from '../../src/lib/lab/supervisor.js'
import {callLog, hactl, labCli, labDispatcher, labHost, labHosts, labSsh, useLab, waitFor, type ExecResult} from '../helpers/lab.js'

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
    assert.deepEqual(Object.values(await flagsEverywhere()), ['AP', 'AP'])
  })

  after(async () => {
    try {
      // Calls a failed test left up would slow every later drain of ast3.
      await requestJson(asteriskSocket(labHost(NODE).dir), {op: 'hangup', all: true}, 5000).catch(() => undefined)
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
    await waitFor(async () => Object.values(await flagsEverywhere()).every((f) => f === 'DX') && (await markOf(NODE))?.state === 'draining', {
      timeoutMs: 90_000,
      what: 'ast3 to be out of rotation and marked draining',
    })
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

  test('the issue\'s check: 3 calls of 5 s, drain --yes, every call finished', async () => {
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
      assert.match(err.message, /would leave 3 Asterisk boxes in service \(ast1, ast2, ast4\), fewer than minInService \(4\); 4 Asterisk boxes are in service \(ast1, ast2, ast3, ast4\)/)
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
    const again = parseJson<DrainJson>(await hactl(['node', 'drain', NODE, '--timeout', '1s', '--json'], {timeoutMs: 60_000}))
    assert.deepEqual(again.plan.nodes[0]?.steps?.map((st) => st.kind), ['wait-calls', 'stop', 'mark-drained'])
    assert.equal(again.result?.nodes[0]?.outcome, 'timeout')

    // And undrain puts it back without touching the calls, which end normally when the callers hang up
    await putBack()
    assert.deepEqual(await flagsEverywhere(), {kam1: 'AP', kam2: 'AP'})
    assert.equal(await markOf(NODE), undefined)
    assert.deepEqual(outcomes(NODE, ids), ['open', 'open'])
    await hangUp(ids)
    await waitFor(() => outcomes(NODE, ids).every((o) => o !== 'open'), {timeoutMs: 10_000, what: 'the two calls to end'})
    assert.deepEqual(outcomes(NODE, ids), ['finished', 'finished'])
  })
})
