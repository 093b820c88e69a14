import assert from 'node:assert/strict'
import {spawn} from 'node:child_process'
import path from 'node:path'
import {after, before, describe, test} from 'node:test'
import {pathToFileURL} from 'node:url'
import {openEtcd, type EtcdHandle} from '../../src/lib/etcd/client.js'
import {acquireClusterLock, ClusterLockedError, lockHolder, type LockHolder} from '../../src/lib/etcd/lock.js'
import {eventually, startEtcd, type EtcdCluster} from '../helpers/etcd.js'

const repo = path.resolve(import.meta.dirname, '../..')
const KEY = '/hactl/lock'

function holder(user: string, command: string, since = new Date()): LockHolder {
  return {user, host: 'laptop', command, pid: 4242, since: since.toISOString()}
}

describe('cluster lock', () => {
  let cluster: EtcdCluster
  let handle: EtcdHandle

  before(async () => {
    cluster = await startEtcd({members: 1, name: 'lock'})
    handle = await openEtcd(cluster.config({timeout: '2s'}))
  })
  after(async () => {
    await handle?.close()
    await cluster?.destroy()
  })

  test('a second operator is refused with the holder named; after release the lock can be taken', async () => {
    const since = new Date()
    since.setHours(12, 3, 4, 0)
    const alice = await acquireClusterLock(handle, {
      key: KEY,
      holder: holder('alice', 'hactl node drain ast3', since),
    })
    assert.match(alice.leaseId, /^[0-9a-f]+$/)
    const stored = JSON.parse((await handle.client.get(KEY).string())!)
    assert.equal(stored.user, 'alice')
    assert.equal(stored.command, 'hactl node drain ast3')

    const err = await acquireClusterLock(handle, {
      key: KEY,
      holder: holder('bob', 'hactl node drain ast1'),
    }).then(
      () => assert.fail('bob must be refused'),
      (e: unknown) => e,
    )
    assert.ok(err instanceof ClusterLockedError, String(err))
    assert.equal(err.exitCode, 1)
    assert.match(err.message, /locked by alice@laptop since 12:03:04 running "hactl node drain ast3"/)
    assert.equal(err.holder?.user, 'alice')
    assert.ok(
      err.suggestions.some((s) => s.includes('--wait-lock 5m')),
      err.suggestions.join('\n'),
    )
    // bob's refused attempt gives its lease back, and alice still holds the key
    assert.equal(JSON.parse((await handle.client.get(KEY).string())!).user, 'alice')
    const leases = await handle.client.leaseClient.leaseLeases()
    assert.deepEqual(
      leases.leases.map((l) => BigInt(l.ID).toString(16)),
      [alice.leaseId],
    )

    await alice.release()
    await alice.release() // idempotent
    assert.equal(await handle.client.get(KEY).string(), null, 'release removes the key at once')
    const bob = await acquireClusterLock(handle, {key: KEY, holder: holder('bob', 'hactl node drain ast1')})
    assert.equal(JSON.parse((await handle.client.get(KEY).string())!).user, 'bob')
    await bob.release()
  })

  test('waitMs: waits until the holder releases', async () => {
    const alice = await acquireClusterLock(handle, {
      key: KEY,
      holder: holder('alice', 'hactl cluster rediscover'),
    })
    const waits: Array<LockHolder | undefined> = []
    const t0 = Date.now()
    const bobP = acquireClusterLock(handle, {
      key: KEY,
      holder: holder('bob', 'hactl node undrain ast3'),
      waitMs: 10_000,
      onWait: (h) => waits.push(h),
    })
    await new Promise((r) => setTimeout(r, 700))
    await alice.release()
    const bob = await bobP
    const took = Date.now() - t0
    assert.ok(took >= 600 && took < 3000, `took ${took} ms`)
    assert.equal(waits.length, 1)
    assert.equal(waits[0]?.user, 'alice')
    assert.equal(JSON.parse((await handle.client.get(KEY).string())!).user, 'bob')
    await bob.release()
  })

  test('waitMs runs out: refused, saying how long it waited', async () => {
    const alice = await acquireClusterLock(handle, {
      key: KEY,
      holder: holder('alice', 'hactl node drain ast2'),
    })
    try {
      const t0 = Date.now()
      await assert.rejects(
        acquireClusterLock(handle, {key: KEY, holder: holder('bob', 'x'), waitMs: 800}),
        (e: unknown) => {
          assert.ok(e instanceof ClusterLockedError)
          assert.match(e.message, /still locked after waiting 800ms \(--wait-lock\): locked by alice@laptop/)
          return true
        },
      )
      assert.ok(Date.now() - t0 >= 750)
    } finally {
      await alice.release()
    }
  })

  test('a crashed holder (SIGKILL): its lock expires with its lease, and a waiter gets it', async () => {
    // Given another process that holds the lock with a 2 s lease
    const code = `
      const {parseConfig} = await import(${JSON.stringify(pathToFileURL(path.join(repo, 'src/lib/config/load.ts')).href)})
      const {openEtcd} = await import(${JSON.stringify(pathToFileURL(path.join(repo, 'src/lib/etcd/client.ts')).href)})
      const {acquireClusterLock, lockHolder} = await import(${JSON.stringify(pathToFileURL(path.join(repo, 'src/lib/etcd/lock.ts')).href)})
      const config = parseConfig(process.env.HACTL_TEST_CONFIG, 'child.yaml')
      const handle = await openEtcd(config)
      await acquireClusterLock(handle, {key: ${JSON.stringify(KEY)}, holder: lockHolder('hactl node drain ast4'), ttlSeconds: 2})
      process.stdout.write('locked\\n')
      setInterval(() => {}, 1000)
    `
    const yaml = `cluster: test\netcd:\n  endpoints: [${JSON.stringify(cluster.endpoints[0])}]\nnodes:\n  ast1: {host: 127.0.0.1, roles: [asterisk]}\n`
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
      cwd: repo,
      env: {...process.env, HACTL_TEST_CONFIG: yaml},
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    let errOut = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    child.stderr.on('data', (d: Buffer) => (errOut += d.toString()))
    try {
      await eventually(() => out.includes('locked'), {
        timeoutMs: 15_000,
        what: `the child to lock (stderr: ${errOut})`,
      })
      // Then another operator is refused, naming the child's command and pid's user
      await assert.rejects(
        acquireClusterLock(handle, {key: KEY, holder: lockHolder('hactl status')}),
        /running "hactl node drain ast4"/,
      )
      // When the child dies without releasing
      const exited = new Promise((r) => child.once('exit', r))
      child.kill('SIGKILL')
      await exited
      const t0 = Date.now()
      assert.notEqual(await handle.client.get(KEY).string(), null, 'the key outlives the process for a while')
      // Then a waiter gets the lock once the lease has run out
      const mine = await acquireClusterLock(handle, {
        key: KEY,
        holder: holder('bob', 'hactl node undrain ast4'),
        waitMs: 10_000,
      })
      const took = Date.now() - t0
      assert.ok(took >= 500 && took < 6000, `took ${took} ms`)
      assert.equal(JSON.parse((await handle.client.get(KEY).string())!).user, 'bob')
      await mine.release()
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    }
  })

  test('closing the handle releases a held lock', async () => {
    const other = await openEtcd(cluster.config({timeout: '2s'}))
    await acquireClusterLock(other, {key: KEY, holder: holder('carol', 'hactl node add ast5')})
    assert.notEqual(await handle.client.get(KEY).string(), null)
    await other.close()
    assert.equal(await handle.client.get(KEY).string(), null)
  })

  test('etcd down: the error says etcd is unreachable (the caller then runs without a lock)', async () => {
    const member = cluster.members[0]!
    await cluster.stop(member, 'SIGKILL')
    try {
      const t0 = Date.now()
      await assert.rejects(
        acquireClusterLock(handle, {key: KEY, holder: holder('dave', 'hactl cluster rediscover')}),
        (e: unknown) => {
          assert.match((e as Error).message, /^etcd unreachable at http:\/\/127\.0\.0\.1:\d+: /)
          return true
        },
      )
      assert.ok(Date.now() - t0 < 2500)
    } finally {
      await cluster.start(member)
    }
  })
})
