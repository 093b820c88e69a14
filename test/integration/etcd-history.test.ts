import assert from 'node:assert/strict'
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {after, before, describe, test} from 'node:test'
import {openEtcd, type EtcdHandle} from '../../src/lib/etcd/client.js'
import {
  appendHistory,
  readEtcdHistory,
  readHistory,
  startHistoryEntry,
  finishHistoryEntry,
} from '../../src/lib/history.js'
import {startEtcd, type EtcdCluster} from '../helpers/etcd.js'

describe('history in etcd', () => {
  let cluster: EtcdCluster
  let handle: EtcdHandle
  let stateDir: string
  const prefix = '/hactl/history/'

  before(async () => {
    cluster = await startEtcd({members: 1, name: 'history'})
    handle = await openEtcd(cluster.config({timeout: '2s'}))
    stateDir = mkdtempSync(path.join(tmpdir(), 'hactl-history-etcd-'))
  })
  after(async () => {
    await handle?.close()
    await cluster?.destroy()
    if (stateDir) rmSync(stateDir, {recursive: true, force: true})
  })

  test('each run goes to the local file and to etcd, which keeps only the newest N', async () => {
    const ids: string[] = []
    for (let i = 1; i <= 5; i++) {
      const e = finishHistoryEntry(
        startHistoryEntry({cluster: 'lab', argv: ['node', 'drain', `ast${i}`], at: new Date(Date.now() + i)}),
        {exitCode: 0},
      )
      ids.push(e.id)
      const res = await appendHistory(e, {stateDir, etcd: {handle, prefix, keep: 3}})
      assert.equal(res.fileError, undefined)
      assert.ok(res.etcd && 'key' in res.etcd, JSON.stringify(res.etcd))
      assert.equal(res.etcd.key, `${prefix}${e.id}`)
      assert.equal(res.etcd.trimmed, i > 3 ? 1 : 0)
    }
    const keys = await handle.client.getAll().prefix(prefix).keys()
    assert.deepEqual(
      keys.sort(),
      ids.slice(2).map((id) => prefix + id),
    )

    const remote = await readEtcdHistory(handle, prefix)
    assert.deepEqual(
      remote.entries.map((e) => e.argv[2]),
      ['ast5', 'ast4', 'ast3'],
    )
    const local = await readHistory({stateDir})
    assert.equal(local.entries.length, 5, 'the local file keeps everything')
    assert.equal(local.entries[0]!.argv[2], 'ast5')
  })

  test('etcd down: the local line is still written and the etcd error is reported, not thrown', async () => {
    const member = cluster.members[0]!
    await cluster.stop(member, 'SIGKILL')
    try {
      const e = startHistoryEntry({cluster: 'lab', argv: ['cluster', 'rediscover']})
      const t0 = Date.now()
      const res = await appendHistory(e, {stateDir, etcd: {handle, prefix, keep: 3}})
      assert.ok(Date.now() - t0 < 2500)
      assert.equal(res.fileError, undefined)
      assert.ok(res.etcd && 'error' in res.etcd)
      assert.match(res.etcd.error, /etcd unreachable/)
      assert.equal((await readHistory({stateDir, limit: 1})).entries[0]!.id, e.id)
    } finally {
      await cluster.start(member)
    }
  })
})
