import assert from 'node:assert/strict'
import {createServer, type AddressInfo} from 'node:net'
import {after, before, describe, test} from 'node:test'
import {EtcdUnreachableError, openEtcd, type EtcdHandle} from '../../src/lib/etcd/client.js'
import {etcdClusterHealth} from '../../src/lib/etcd/health.js'
import {HactlError} from '../../src/lib/errors.js'
import {eventually, startEtcd, type EtcdCluster} from '../helpers/etcd.js'

/** A 127.0.0.1 port with nothing listening on it. */
async function deadPort(): Promise<number> {
  const s = createServer()
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()))
  const {port} = s.address() as AddressInfo
  await new Promise<void>((r) => s.close(() => r()))
  return port
}

describe('etcd client and cluster health (3 members)', () => {
  let cluster: EtcdCluster
  let handle: EtcdHandle

  before(async () => {
    cluster = await startEtcd({members: 3, name: 'health'})
    handle = await openEtcd(cluster.config({timeout: '2s'}))
  })

  after(async () => {
    await handle?.close()
    await cluster?.destroy()
  })

  test('a healthy cluster: every member healthy, one leader, facts in etcdctl form', async () => {
    const h = await etcdClusterHealth(handle)
    assert.equal(h.total, 3)
    assert.equal(h.healthyCount, 3)
    assert.match(h.clusterId, /^[0-9a-f]+$/)
    const leaders = h.members.filter((m) => m.isLeader)
    assert.equal(leaders.length, 1)
    assert.equal(h.leaderId, leaders[0]!.id)
    assert.deepEqual(h.members.map((m) => m.name).sort(), ['m1', 'm2', 'm3'])
    for (const m of h.members) {
      assert.match(m.id, /^[0-9a-f]+$/, 'member IDs in hex like etcdctl')
      assert.equal(m.healthy, true)
      assert.equal(m.error, undefined)
      assert.equal(m.isLearner, false)
      assert.match(m.version ?? '', /^3\.4\./)
      assert.ok((m.raftTerm ?? 0) >= 1)
      assert.ok((m.raftIndex ?? 0) >= 1)
      assert.ok((m.dbSize ?? 0) > 0)
      const member = cluster.members.find((x) => x.name === m.name)!
      assert.deepEqual(m.clientURLs, [member.clientUrl])
      assert.deepEqual(m.peerURLs, [member.peerUrl])
    }
    assert.deepEqual(h.alarms, [])
  })

  test('a put and a get go through handle.call', async () => {
    await handle.call('writing a test key', (c) => c.put('/test/k').value('v').exec())
    assert.equal(await handle.call('reading a test key', (c) => c.get('/test/k').string()), 'v')
  })

  test('a hanging member (SIGSTOP) shows unhealthy after etcd.timeout; the others stay right', async () => {
    // Given a follower that accepts connections but never answers
    const before = await etcdClusterHealth(handle)
    const follower = cluster.members.find((m) => m.name === before.members.find((x) => !x.isLeader)!.name)!
    cluster.freeze(follower)
    try {
      // When the health is read
      const t0 = Date.now()
      const h = await etcdClusterHealth(handle)
      const took = Date.now() - t0
      // Then it returns within the per-member timeout (plus one member-list attempt), and only
      // the frozen member is unhealthy
      assert.ok(took < 2 * 2000 + 500, `took ${took} ms`)
      const frozen = h.members.find((m) => m.name === follower.name)!
      assert.equal(frozen.healthy, false)
      assert.match(frozen.error ?? '', /no answer within 2s \(etcd\.timeout\)/)
      assert.equal(h.healthyCount, 2)
      for (const m of h.members.filter((x) => x.name !== follower.name)) {
        assert.equal(m.healthy, true, `${m.name}: ${m.error}`)
        assert.ok(m.raftTerm !== undefined)
      }
      assert.ok(h.leaderId)
    } finally {
      cluster.thaw(follower)
    }
    await cluster.waitHealthy()
  })

  test('a killed member shows unhealthy with its error, fast; the others are fine', async () => {
    const before = await etcdClusterHealth(handle)
    const victimName = before.members.find((x) => !x.isLeader)!.name
    const victim = cluster.members.find((m) => m.name === victimName)!
    await cluster.stop(victim, 'SIGKILL')
    const t0 = Date.now()
    const h = await etcdClusterHealth(handle)
    const took = Date.now() - t0
    assert.ok(took < 2000, `took ${took} ms`)
    const dead = h.members.find((m) => m.name === victimName)!
    assert.equal(dead.healthy, false)
    assert.match(dead.error ?? '', /ECONNREFUSED/)
    assert.equal(dead.raftTerm, undefined)
    assert.equal(h.total, 3)
    assert.equal(h.healthyCount, 2)
    assert.equal(h.members.filter((m) => m.isLeader).length, 1)
    assert.equal(h.leaderId, before.leaderId)
    // and the cluster still takes writes through the same handle
    await handle.call('writing with one member down', (c) => c.put('/test/k2').value('v2').exec())
    await cluster.start(victim)
    const again = await eventually(
      async () => {
        const x = await etcdClusterHealth(handle)
        return x.healthyCount === 3 ? x : undefined
      },
      {what: 'the member to come back'},
    )
    assert.equal(again.members.find((m) => m.name === victimName)!.healthy, true)
  })

  test('quorum lost: the last member answers but has no leader, so nothing is healthy', async () => {
    const [a, b, c] = cluster.members
    await cluster.stop(a!, 'SIGKILL')
    await cluster.stop(b!, 'SIGKILL')
    const h = await eventually(
      async () => {
        const x = await etcdClusterHealth(handle)
        return x.members.find((m) => m.name === c!.name)?.error === 'no leader' ? x : undefined
      },
      {timeoutMs: 10_000, what: 'the survivor to lose its leader'},
    )
    assert.equal(h.healthyCount, 0)
    assert.equal(h.leaderId, undefined)
    assert.equal(h.members.filter((m) => m.isLeader).length, 0)
    const survivor = h.members.find((m) => m.name === c!.name)!
    assert.ok(survivor.raftTerm !== undefined, 'the survivor still reports its raft facts')
    // The others come back for the next tests (none follow, but the cluster is left sane).
    await Promise.all([cluster.start(a!, {wait: false}), cluster.start(b!, {wait: false})])
    await cluster.waitHealthy()
  })
})

describe('etcd errors', () => {
  test('nothing listening: EtcdUnreachableError naming the endpoint, with hints, quickly', async () => {
    const port = await deadPort()
    const single = await startEtcd({members: 1, name: 'dummy'})
    try {
      const handle = await openEtcd(single.config({endpoints: [`http://127.0.0.1:${port}`], timeout: '2s'}))
      try {
        const t0 = Date.now()
        const err = await handle
          .call('reading a key', (c) => c.get('/x').string())
          .then(
            () => assert.fail('expected an error'),
            (e: unknown) => e,
          )
        assert.ok(Date.now() - t0 < 2500)
        assert.ok(err instanceof EtcdUnreachableError, String(err))
        assert.ok(err instanceof HactlError)
        assert.equal(err.exitCode, 1)
        assert.match(
          err.message,
          new RegExp(`^etcd unreachable at http://127\\.0\\.0\\.1:${port}: .*ECONNREFUSED`),
        )
        assert.match(err.message, /while reading a key/)
        assert.ok(err.suggestions.some((s) => s.includes('etcd.via: ssh')))
        // health throws the same typed error when no member answers the member list
        await assert.rejects(etcdClusterHealth(handle), EtcdUnreachableError)
      } finally {
        await handle.close()
      }
    } finally {
      await single.destroy()
    }
  })

  test('a hanging etcd: the error names etcd.timeout, after about etcd.timeout', async () => {
    const single = await startEtcd({members: 1, name: 'hang'})
    try {
      const handle = await openEtcd(single.config({timeout: '1500ms'}))
      try {
        single.freeze(single.members[0]!)
        const t0 = Date.now()
        const err = await handle
          .call('reading maintenance marks', (c) => c.get('/x').string())
          .then(
            () => assert.fail('expected an error'),
            (e: unknown) => e,
          )
        const took = Date.now() - t0
        assert.ok(took >= 700 && took < 2500, `took ${took} ms`)
        assert.ok(err instanceof EtcdUnreachableError, String(err))
        assert.equal(err.timeoutName, 'etcd.timeout')
        assert.match(err.message, /no answer within .* \(etcd\.timeout\) while reading maintenance marks/)
        assert.ok(err.suggestions.some((s) => s.includes('raise etcd.timeout')))
      } finally {
        single.thaw(single.members[0]!)
        await handle.close()
      }
    } finally {
      await single.destroy()
    }
  })

  test('etcd.via ssh without a tunnel is refused', async () => {
    const single = await startEtcd({members: 1, name: 'via'})
    try {
      await assert.rejects(
        openEtcd(single.config({extraEtcdYaml: 'via: ssh'})),
        /etcd\.via is ssh, but no SSH tunnel/,
      )
    } finally {
      await single.destroy()
    }
  })
})
