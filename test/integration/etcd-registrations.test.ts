import assert from 'node:assert/strict'
import {after, before, describe, test} from 'node:test'
import {openEtcd, type EtcdHandle} from '../../src/lib/etcd/client.js'
import {setMark} from '../../src/lib/etcd/maintenance.js'
import {
  announce,
  listRegistrations,
  watchRegistrations,
  type AnnounceEvent,
  type RegistrationSnapshot,
  type WatchEvent,
} from '../../src/lib/etcd/registrations.js'
import {UserError} from '../../src/lib/errors.js'
import {eventually, startEtcd, type EtcdCluster} from '../helpers/etcd.js'

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

describe('registrations with leases', () => {
  let cluster: EtcdCluster
  let handle: EtcdHandle

  before(async () => {
    cluster = await startEtcd({members: 1, name: 'reg'})
    handle = await openEtcd(cluster.config({timeout: '2s'}))
  })
  after(async () => {
    await handle?.close()
    await cluster?.destroy()
  })

  test('announce writes the key under a lease and keeps it past the TTL; stop() removes it at once', async () => {
    const prefix = '/t1/asterisk/'
    const events: AnnounceEvent[] = []
    const a = announce(handle, {
      prefix,
      name: 'ast9',
      ip: '10.77.0.29',
      port: 5070,
      weight: 25,
      ttlSeconds: 2,
      onEvent: (e) => events.push(e),
    })
    await a.whenRegistered(5000)
    assert.equal(a.registered, true)
    let regs = await listRegistrations(handle, prefix)
    assert.deepEqual(
      [...regs],
      [{name: 'ast9', key: `${prefix}ast9`, ip: '10.77.0.29', port: 5070, weight: 25, lease: a.leaseId}],
    )
    assert.equal(JSON.parse((await handle.client.get(`${prefix}ast9`).string())!).ip, '10.77.0.29')

    // The keep-alive holds it well past 2 × TTL.
    await sleep(5000)
    regs = await listRegistrations(handle, prefix)
    assert.equal(regs.length, 1, 'still registered after 5 s with a 2 s TTL')

    await a.stop()
    regs = await listRegistrations(handle, prefix)
    assert.equal(regs.length, 0, 'gone at once after stop()')
    assert.deepEqual(
      events.map((e) => e.type),
      ['registered', 'stopped'],
    )
    const stopped = events.at(-1)
    assert.ok(stopped?.type === 'stopped' && stopped.revoked)
    await a.stop() // idempotent
  })

  test('a crash (keep-alives stop, no revoke): the key stays until the TTL runs out, then goes', async () => {
    const prefix = '/t2/asterisk/'
    const a = announce(handle, {prefix, name: 'ast8', ip: '10.77.0.28', ttlSeconds: 2})
    await a.whenRegistered(5000)
    a.abandon()
    const t0 = Date.now()
    assert.equal((await listRegistrations(handle, prefix)).length, 1, 'still there right after the crash')
    await eventually(async () => (await listRegistrations(handle, prefix)).length === 0, {
      timeoutMs: 6000,
      what: 'the key to expire',
    })
    const took = Date.now() - t0
    assert.ok(took >= 1000, `expired after ${took} ms: by the lease, not at once`)
  })

  test('etcd down longer than 2 × TTL, then back with its data: a new lease and the key again', async () => {
    const prefix = '/t3/asterisk/'
    const events: AnnounceEvent[] = []
    const a = announce(handle, {
      prefix,
      name: 'ast7',
      ip: '10.77.0.27',
      ttlSeconds: 2,
      onEvent: (e) => events.push(e),
    })
    try {
      await a.whenRegistered(5000)
      const firstLease = a.leaseId
      const member = cluster.members[0]!
      await cluster.stop(member, 'SIGKILL')
      await sleep(5000)
      assert.equal(a.registered, false, 'the registration knows its lease is lost')
      await cluster.start(member)
      await eventually(() => a.registered && a.leaseId !== firstLease, {
        timeoutMs: 15_000,
        what: 're-registration',
      })
      const regs = await listRegistrations(handle, prefix)
      assert.equal(regs.length, 1)
      assert.equal(regs[0]!.lease, a.leaseId)
      const types = events.map((e) => e.type)
      assert.ok(types.includes('lease-lost'), types.join(','))
      assert.equal(types.filter((t) => t === 'registered').length, 2, types.join(','))
      // The old lease expiring (restored by etcd, no longer kept alive) takes nothing with it.
      await sleep(3500)
      assert.equal((await listRegistrations(handle, prefix)).length, 1)
    } finally {
      await a.stop()
    }
  })

  test('etcd restarted with its data wiped (a rediscovery): registered again', async () => {
    const prefix = '/t4/asterisk/'
    const events: AnnounceEvent[] = []
    const a = announce(handle, {
      prefix,
      name: 'ast6',
      ip: '10.77.0.26',
      ttlSeconds: 2,
      onEvent: (e) => events.push(e),
    })
    try {
      await a.whenRegistered(5000)
      const member = cluster.members[0]!
      await cluster.stop(member, 'SIGKILL')
      await cluster.start(member, {wipe: true})
      await eventually(async () => (await listRegistrations(handle, prefix).catch(() => [])).length === 1, {
        timeoutMs: 15_000,
        what: 're-registration in the new cluster',
      })
      assert.ok(
        events.some((e) => e.type === 'lease-lost'),
        events.map((e) => e.message).join('\n'),
      )
    } finally {
      await a.stop()
    }
    assert.equal((await listRegistrations(handle, prefix)).length, 0)
  })

  test('bad names, addresses and TTLs are refused before anything is written', () => {
    assert.throws(() => announce(handle, {prefix: '/x/', name: 'AST 1', ip: '10.0.0.1'}), UserError)
    assert.throws(() => announce(handle, {prefix: '/x/', name: 'ast1', ip: '10.0.0.1; rm -rf /'}), UserError)
    assert.throws(
      () => announce(handle, {prefix: '/x/', name: 'ast1', ip: '10.0.0.1', weight: 101}),
      UserError,
    )
    assert.throws(
      () => announce(handle, {prefix: '/x/', name: 'ast1', ip: '10.0.0.1', ttlSeconds: 0}),
      UserError,
    )
  })

  test('listRegistrations: defaults, hand-written keys without lease, broken values reported', async () => {
    const prefix = '/t5/asterisk/'
    await handle.client.put(`${prefix}ast1`).value(JSON.stringify({ip: '10.0.0.1'}))
    await handle.client.put(`${prefix}ast2`).value('garbage')
    await handle.client.put(`${prefix}ast3/ip`).value('10.0.0.3')
    const regs = await listRegistrations(handle, prefix)
    assert.deepEqual([...regs], [{name: 'ast1', key: `${prefix}ast1`, ip: '10.0.0.1', port: 5060}])
    assert.deepEqual(
      regs.invalid.map((i) => i.name),
      ['ast2', 'ast3/ip'],
    )
    assert.match(regs.invalid[1]!.error, /nested/)
  })
})

describe('watchRegistrations', () => {
  let cluster: EtcdCluster
  let handle: EtcdHandle

  before(async () => {
    cluster = await startEtcd({members: 1, name: 'watch'})
    handle = await openEtcd(cluster.config({timeout: '2s'}))
  })
  after(async () => {
    await handle?.close()
    await cluster?.destroy()
  })

  test('hands over the whole state on every change, and keeps going across etcd restarts', async () => {
    const asterisk = '/w/asterisk/'
    const maintenance = '/w/maintenance/'
    const seen: Array<{snap: RegistrationSnapshot; reason: string}> = []
    const events: WatchEvent[] = []
    const watch = await watchRegistrations(handle, {
      prefixes: [asterisk, maintenance],
      onChange: (snap, reason) => void seen.push({snap, reason}),
      onEvent: (e) => events.push(e),
    })
    const latest = () => seen.at(-1)?.snap
    const names = () => latest()?.registrations.map((r) => r.name) ?? []
    try {
      // Given an empty etcd: one initial snapshot
      await eventually(() => seen.length === 1, {what: 'the initial snapshot'})
      assert.equal(seen[0]!.reason, 'initial')
      assert.deepEqual(names(), [])

      // A box announces itself
      const a = announce(handle, {prefix: asterisk, name: 'ast1', ip: '10.0.0.1', ttlSeconds: 2})
      await eventually(() => names().includes('ast1'), {what: 'ast1 in a snapshot'})
      assert.equal(seen.at(-1)!.reason, 'change')

      // A maintenance mark shows up with the registrations
      await setMark(handle, maintenance, {node: 'ast1', state: 'drained'})
      await eventually(() => latest()?.marks.some((m) => m.node === 'ast1' && m.state === 'drained'), {
        what: 'the mark',
      })
      assert.deepEqual(names(), ['ast1'])

      // A broken value is reported, not fatal
      await handle.client.put(`${asterisk}ast2`).value('nope')
      await eventually(() => latest()?.registrations.invalid.some((i) => i.name === 'ast2'), {
        what: 'the broken value',
      })

      // A clean stop removes the box
      await a.stop()
      await eventually(() => !names().includes('ast1'), {what: 'ast1 gone'})

      // etcd restarts (data kept): the watch comes back and sees new changes
      const member = cluster.members[0]!
      await cluster.stop(member, 'SIGKILL')
      await sleep(500)
      await cluster.start(member)
      await eventually(
        async () =>
          await handle.client
            .put(`${asterisk}ast3`)
            .value(JSON.stringify({ip: '10.0.0.3'}))
            .then(() => true),
        {timeoutMs: 10_000},
      )
      await eventually(() => names().includes('ast3'), {timeoutMs: 10_000, what: 'ast3 after the restart'})

      // etcd restarted with its data wiped: revisions start over, the watch still follows
      await cluster.stop(member, 'SIGKILL')
      await cluster.start(member, {wipe: true})
      await eventually(() => names().length === 0 && latest()?.marks.length === 0, {
        timeoutMs: 10_000,
        what: 'the empty state of the new cluster',
      })
      await eventually(
        async () =>
          await handle.client
            .put(`${asterisk}ast4`)
            .value(JSON.stringify({ip: '10.0.0.4'}))
            .then(() => true),
        {timeoutMs: 10_000},
      )
      await eventually(() => names().includes('ast4'), {timeoutMs: 10_000, what: 'ast4 in the new cluster'})

      assert.ok(
        events.some((e) => e.type === 'disconnected'),
        events.map((e) => e.message).join('\n'),
      )
      assert.ok(
        events.filter((e) => e.type === 'connected').length >= 2,
        events.map((e) => e.message).join('\n'),
      )

      // No two snapshots in a row are the same: unchanged re-reads are not handed over
      const state = (s: RegistrationSnapshot) =>
        JSON.stringify([[...s.registrations], s.registrations.invalid, [...s.marks], s.marks.invalid])
      for (let i = 1; i < seen.length; i++) assert.notEqual(state(seen[i]!.snap), state(seen[i - 1]!.snap))
    } finally {
      await watch.stop()
    }
    // After stop(), nothing more arrives
    const count = seen.length
    await handle.client.put(`${asterisk}ast5`).value(JSON.stringify({ip: '10.0.0.5'}))
    await sleep(300)
    assert.equal(seen.length, count)
  })
})
