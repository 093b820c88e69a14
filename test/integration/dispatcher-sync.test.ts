/**
 * `hactl dispatcher sync` and `hactl dispatcher show` on a real lab: registrations in real etcd,
 * lists pushed over SSH to both real Kamailio hosts, reloaded and verified.
 * Needs the built CLI (npm run build) and a lab (scripts/test.mjs brings one up).
 */
import assert from 'node:assert/strict'
import {after, before, describe, test} from 'node:test'
import type {ResolvedNode} from '../../src/lib/config/load.js'
import {renderDispatcherList} from '../../src/lib/dispatcher/render.js'
import {openEtcd, type EtcdHandle} from '../../src/lib/etcd/client.js'
import {setMark} from '../../src/lib/etcd/maintenance.js'
import type {DispatcherShowResult} from '../../src/lib/ops/dispatcher-show.js'
import type {DispatcherSyncResult} from '../../src/lib/ops/dispatcher-sync.js'
import {eventually} from '../helpers/etcd.js'
import {
  cleanupAll,
  clearPrefix,
  cli,
  kamTargets,
  openLab,
  readListFile,
  restoreListFile,
  ssh,
  type Lab,
} from '../helpers/agent-lab.js'

describe('hactl dispatcher sync and show on the lab', () => {
  let lab: Lab
  let release: (() => Promise<void>) | undefined
  let etcd: EtcdHandle
  const originalLists = new Map<string, string>()
  const restoreKeys: Array<() => Promise<void>> = []
  let a: ResolvedNode
  let b: ResolvedNode
  let c: ResolvedNode
  let dropped: ResolvedNode
  let expectedText: string

  const uri = (n: ResolvedNode) => `sip:${n.host}:5060`

  before(async () => {
    const opened = await openLab()
    release = opened.release
    lab = opened
    assert.ok(lab.kams.length >= 2 && lab.asts.length >= 4, 'the lab needs 2 Kamailio and 4 Asterisk hosts')
    ;[a, b, c, dropped] = lab.asts as [ResolvedNode, ResolvedNode, ResolvedNode, ResolvedNode]
    etcd = await openEtcd(lab.config)
    for (const k of lab.kams) originalLists.set(k.name, await readListFile(lab, k))
    const {asterisk, maintenance} = lab.config.etcd.prefixes
    restoreKeys.push(await clearPrefix(etcd, asterisk), await clearPrefix(etcd, maintenance))
    // Given three boxes registered (one with weight 25, one drained) and the fourth not at all
    await etcd.client
      .put(`${asterisk}${a.name}`)
      .value(JSON.stringify({ip: a.host}))
      .exec()
    await etcd.client
      .put(`${asterisk}${b.name}`)
      .value(JSON.stringify({ip: b.host, port: 5060, weight: 25}))
      .exec()
    await etcd.client
      .put(`${asterisk}${c.name}`)
      .value(JSON.stringify({ip: c.host}))
      .exec()
    await setMark(etcd, maintenance, {node: c.name, state: 'drained', reason: 'dispatcher sync test'})
    expectedText = renderDispatcherList(
      [
        {name: a.name, ip: a.host},
        {name: b.name, ip: b.host, weight: 25},
        {name: c.name, ip: c.host},
      ],
      [{node: c.name, state: 'drained'}],
      {setId: lab.config.kamailio.setId},
    ).text
  })

  after(async () => {
    await cleanupAll([
      ...restoreKeys,
      () => etcd?.close(),
      // Other tests expect the lab's own list: set 1 = every Asterisk host, active.
      ...(lab?.kams ?? []).map((k) => () => {
        const text = originalLists.get(k.name)
        return text === undefined ? undefined : restoreListFile(lab, k, text)
      }),
      () => release?.(),
    ])
  })

  test("--dry-run shows each host's diff and changes nothing", async () => {
    const before = await Promise.all(lab.kams.map((k) => kamTargets(lab, k)))
    const r = await cli(lab, ['dispatcher', 'sync', '--dry-run'])
    assert.equal(r.code, 0, r.stderr)
    for (const k of lab.kams)
      assert.match(
        r.stdout,
        new RegExp(`^${k.name}: /etc/kamailio/dispatcher.list differs; will write and reload:`, 'm'),
      )
    assert.match(r.stdout, new RegExp(`^-1 ${uri(dropped)} 0 0$`, 'm'))
    assert.match(r.stdout, new RegExp(`^\\+1 ${uri(b)} 0 0 weight=25$`, 'm'))
    assert.match(r.stdout, new RegExp(`^\\+1 ${uri(a)} 0 0 weight=75$`, 'm'))
    assert.match(r.stdout, new RegExp(`^\\+1 ${uri(c)} 4 0 weight=1$`, 'm'))
    assert.match(r.stdout, /Dry run: nothing was changed/)
    // Then the files and the runtime lists are as they were
    for (const [i, k] of lab.kams.entries()) {
      assert.equal(await readListFile(lab, k), originalLists.get(k.name))
      // Kamailio's own probes may turn AX into AP meanwhile: compare the state letter hactl sets.
      const state = (ts: Awaited<ReturnType<typeof kamTargets>>) => ts.map(({probing: _p, ...t}) => ({...t, flags: t.flags.slice(0, 1)}))
      assert.deepEqual(state(await kamTargets(lab, k)), state(before[i]!))
    }
    // And --json says what would change
    const j = await cli(lab, ['dispatcher', 'sync', '--dry-run', '--json'])
    assert.equal(j.code, 0, j.stderr)
    const res = JSON.parse(j.stdout) as DispatcherSyncResult
    assert.equal(res.dryRun, true)
    assert.deepEqual(
      res.changed,
      lab.kams.map((k) => k.name),
    )
    assert.deepEqual(
      res.hosts.map((h) => h.action),
      lab.kams.map(() => 'write'),
    )
    assert.deepEqual(
      res.destinations.map((d) => [d.name, d.weight, d.disabled]),
      [
        [a.name, 75, false],
        [b.name, 25, false],
        [c.name, 1, true],
      ],
    )
  })

  test('without --yes and without a terminal it refuses and changes nothing', async () => {
    const r = await cli(lab, ['dispatcher', 'sync'])
    assert.equal(r.code, 2, r.stderr)
    assert.match(r.stderr, /--yes/)
    for (const k of lab.kams) assert.equal(await readListFile(lab, k), originalLists.get(k.name))
  })

  test('--yes makes both lists match the registrations, reloads and verifies', async () => {
    const r = await cli(lab, ['dispatcher', 'sync', '--yes', '--json'])
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`)
    const res = JSON.parse(r.stdout) as DispatcherSyncResult
    assert.equal(res.inStep, true)
    for (const h of res.hosts)
      assert.deepEqual([h.node, h.written, h.reloaded, h.verified], [h.node, true, true, true])
    // Then each file is exactly the rendering, and each runtime list holds it
    for (const k of lab.kams) {
      assert.equal(await readListFile(lab, k), expectedText)
      const t = await kamTargets(lab, k)
      const view = Object.fromEntries(t.map((x) => [x.host, [x.flags[0], x.attrs.weight]]))
      assert.deepEqual(view, {[a.host]: ['A', 75], [b.host]: ['A', 25], [c.host]: ['D', 1]})
    }
    // And a second run has nothing to do
    const again = await cli(lab, ['dispatcher', 'sync', '--yes'])
    assert.equal(again.code, 0, again.stderr)
    assert.match(again.stdout, /Nothing to do: every Kamailio is in step/)
    for (const k of lab.kams) assert.match(again.stdout, new RegExp(`^${k.name}: in step`, 'm'))
  })

  test('a Kamailio whose file is right but whose runtime list is not is reloaded', async () => {
    // Given someone put the drained box back by hand on one Kamailio
    const kam = lab.kams[1]!
    await ssh(lab, kam.host, `kamcmd dispatcher.set_state a ${lab.config.kamailio.setId} ${uri(c)}`)
    const r = await cli(lab, ['dispatcher', 'sync', '--yes', '--json'])
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`)
    const res = JSON.parse(r.stdout) as DispatcherSyncResult
    const byName = Object.fromEntries(res.hosts.map((h) => [h.node, h]))
    assert.equal(byName[kam.name]?.action, 'reload')
    assert.match(byName[kam.name]?.runtimeDifferences?.join() ?? '', /wanted disabled/)
    assert.equal(byName[lab.kams[0]!.name]?.action, 'none')
    assert.deepEqual(res.changed, [kam.name])
    // Then it is disabled again
    assert.match((await kamTargets(lab, kam)).find((t) => t.host === c.host)?.flags ?? '', /^D/)
  })

  test('dispatcher show puts the runtime views side by side and marks disagreements', async () => {
    // Right after a reload a destination shows AX until Kamailio's next OPTIONS round marks it
    // probing (AP): the hosts disagree for a moment, and show says so. Wait for them to settle.
    let r = await cli(lab, ['dispatcher', 'show', '--json'])
    await eventually(
      async () => {
        r = await cli(lab, ['dispatcher', 'show', '--json'])
        return r.code === 0
      },
      {timeoutMs: 15_000, intervalMs: 500, what: `the Kamailio hosts to agree: ${r.stdout}`},
    )
    const res = JSON.parse(r.stdout) as DispatcherShowResult
    assert.equal(res.agree, true)
    assert.deepEqual(
      res.hosts.map((h) => [h.name, h.ok]),
      lab.kams.map((k) => [k.name, true]),
    )
    assert.deepEqual(
      res.rows.map((row) => [row.uri, row.node, row.agree]),
      [
        [uri(a), a.name, true],
        [uri(b), b.name, true],
        [uri(c), c.name, true],
      ],
    )
    assert.deepEqual(res.rows[1]?.views[lab.kams[0]!.name], {
      flags: 'AP',
      state: 'active',
      priority: 0,
      weight: 25,
    })

    // When one Kamailio disables a box by hand
    const kam = lab.kams[0]!
    await ssh(lab, kam.host, `kamcmd dispatcher.set_state d ${lab.config.kamailio.setId} ${uri(a)}`)
    const d = await cli(lab, ['dispatcher', 'show', '--json'])
    // Then show exits 1 and names the row and the difference
    assert.equal(d.code, 1, d.stderr)
    const dres = JSON.parse(d.stdout) as DispatcherShowResult
    assert.equal(dres.agree, false)
    const row = dres.rows.find((x) => x.uri === uri(a))
    assert.equal(row?.agree, false)
    assert.match(
      row?.differences.join() ?? '',
      new RegExp(`flags: ${kam.name} D[PX], ${lab.kams[1]!.name} AP`),
    )
    const human = await cli(lab, ['dispatcher', 'show'])
    assert.equal(human.code, 1)
    assert.match(human.stdout, new RegExp(`^≠\\s+1\\s+${uri(a)}\\s+${a.name}\\s+D[PX] 0 75\\s+AP 0 75$`, 'm'))
    assert.match(human.stdout, /disagree on 1 destination/)
  })
})
