import assert from 'node:assert/strict'
import {createHash} from 'node:crypto'
import {mkdtempSync, readdirSync, readFileSync, rmSync, statSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {after, before, describe, test} from 'node:test'
import {backupEtcd, backupStamp, dumpKeys, readKeysDump, restoreKeys} from '../../src/lib/etcd/backup.js'
import {openEtcd, type EtcdHandle} from '../../src/lib/etcd/client.js'
import {startEtcd, type EtcdCluster} from '../helpers/etcd.js'

/** Backup and restore against real etcd processes on 127.0.0.1 (what a rediscovery relies on). */
describe('etcd backup and restore', () => {
  let source: EtcdCluster
  let target: EtcdCluster
  let src: EtcdHandle
  let dst: EtcdHandle
  let dir = ''

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'hactl-backup-'))
    ;[source, target] = await Promise.all([
      startEtcd({members: 1, name: 'bsrc'}),
      startEtcd({members: 1, name: 'bdst'}),
    ])
    src = await openEtcd(source.config())
    dst = await openEtcd(target.config())
  })
  after(async () => {
    await src?.close()
    await dst?.close()
    await source?.destroy()
    await target?.destroy()
    rmSync(dir, {recursive: true, force: true})
  })

  test('keys without a lease are dumped and put back; leased keys are not; newer keys win', async () => {
    // Given: plain keys (text and binary), a leased key, and more than one page of keys.
    await src.client.put('/asterisk/ast1/ip').value('10.77.0.21')
    await src.client.put('/asterisk/ast1/weight').value('50')
    await src.client.put('/hactl/history/000001').value('{"ok":true}')
    await src.client.put(Buffer.from([0xff, 0x00, 0x01])).value(Buffer.from([0xc3, 0x28]))
    for (let i = 0; i < 25; i++) await src.client.put(`/bulk/${String(i).padStart(3, '0')}`).value(`v${i}`)
    const lease = src.client.lease(30)
    await lease.put('/hactl/lock').value('held')

    // When: a backup is taken (small pages, to cross page boundaries).
    const dump = await dumpKeys(src, {cluster: 'lab', pageSize: 7})
    assert.equal(dump.keys.length, 29)
    assert.equal(dump.skippedLeased, 1)
    assert.ok(!dump.keys.some((k) => k.key === '/hactl/lock'))
    const bin = dump.keys.find((k) => k.encoding === 'base64')
    assert.deepEqual(bin, {
      key: Buffer.from([0xff, 0x00, 0x01]).toString('base64'),
      value: Buffer.from([0xc3, 0x28]).toString('base64'),
      encoding: 'base64',
    })

    const now = new Date('2024-05-01T10:15:02.123Z')
    const b = await backupEtcd(src, {cluster: 'lab', dir, now})
    await lease.revoke()
    assert.equal(path.basename(b.keysPath), `lab-${backupStamp(now)}.keys.json`)
    assert.equal(path.basename(b.keysPath), 'lab-2024-05-01T101502Z.keys.json')
    assert.equal(path.basename(b.snapshotPath), 'lab-2024-05-01T101502Z.db')
    assert.equal(b.keys, 29)
    assert.ok(b.snapshotVerified)
    // The snapshot is etcd's database followed by its SHA-256.
    const snap = readFileSync(b.snapshotPath)
    assert.equal(snap.length, b.snapshotBytes)
    assert.deepEqual(
      createHash('sha256')
        .update(snap.subarray(0, snap.length - 32))
        .digest(),
      snap.subarray(snap.length - 32),
    )
    assert.equal(statSync(b.keysPath).mode & 0o777, 0o600)
    // A second backup in the same second does not overwrite the first.
    const b2 = await backupEtcd(src, {cluster: 'lab', dir, now})
    assert.notEqual(b2.keysPath, b.keysPath)
    assert.ok(!readdirSync(dir).some((f) => f.endsWith('.part')))

    // Given: the new cluster already has a newer value for one key (an agent came back first).
    await dst.client.put('/asterisk/ast1/weight').value('75')

    // When: restored into the other cluster.
    const r = await restoreKeys(dst, await readKeysDump(b.keysPath), {batch: 10})

    // Then: everything back, except the key that was written since, and nothing leased.
    assert.deepEqual(r, {restored: 28, skippedExisting: 1})
    assert.equal(await dst.client.get('/asterisk/ast1/ip').string(), '10.77.0.21')
    assert.equal(await dst.client.get('/asterisk/ast1/weight').string(), '75')
    assert.equal(await dst.client.get('/hactl/lock').string(), null)
    assert.deepEqual(
      await dst.client.get(Buffer.from([0xff, 0x00, 0x01])).buffer(),
      Buffer.from([0xc3, 0x28]),
    )
    assert.equal(await dst.client.getAll().prefix('/bulk/').count(), 25)

    // Restoring again changes nothing.
    assert.deepEqual(await restoreKeys(dst, await readKeysDump(b.keysPath)), {
      restored: 0,
      skippedExisting: 29,
    })
  })

  test('a dump file that is not ours is refused', async () => {
    const f = path.join(dir, 'junk.json')
    const {writeFileSync} = await import('node:fs')
    writeFileSync(f, '{"version":2}')
    await assert.rejects(readKeysDump(f), /not a keys dump/)
  })

  test('no etcd: the backup fails and leaves no files behind', async () => {
    const empty = mkdtempSync(path.join(tmpdir(), 'hactl-backup-none-'))
    try {
      const dead = await openEtcd(source.config({endpoints: ['http://127.0.0.1:1'], timeout: '500ms'}))
      try {
        await assert.rejects(backupEtcd(dead, {cluster: 'lab', dir: empty}))
      } finally {
        await dead.close()
      }
      assert.deepEqual(readdirSync(empty), [])
    } finally {
      rmSync(empty, {recursive: true, force: true})
    }
  })
})
