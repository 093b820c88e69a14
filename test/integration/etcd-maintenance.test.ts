import assert from 'node:assert/strict'
import {after, before, describe, test} from 'node:test'
import {openEtcd, type EtcdHandle} from '../../src/lib/etcd/client.js'
import {clearMark, getMarks, setMark} from '../../src/lib/etcd/maintenance.js'
import {UserError} from '../../src/lib/errors.js'
import {startEtcd, type EtcdCluster} from '../helpers/etcd.js'

describe('maintenance marks', () => {
  let cluster: EtcdCluster
  let handle: EtcdHandle
  const prefix = '/hactl/maintenance/'

  before(async () => {
    cluster = await startEtcd({members: 1, name: 'marks'})
    handle = await openEtcd(cluster.config())
  })
  after(async () => {
    await handle?.close()
    await cluster?.destroy()
  })

  test('set, read back, overwrite, clear', async () => {
    assert.deepEqual([...(await getMarks(handle, prefix))], [])

    const m = await setMark(handle, prefix, {
      node: 'ast3',
      state: 'draining',
      reason: 'kernel update; "quoted" \n newline',
      command: 'hactl node drain ast3',
    })
    assert.match(m.by, /^.+@.+$/)
    assert.ok(!Number.isNaN(Date.parse(m.since)))
    const raw = await handle.client.get(`${prefix}ast3`).string()
    assert.deepEqual(JSON.parse(raw!), m, 'stored as the JSON of the mark')

    let marks = await getMarks(handle, prefix)
    assert.deepEqual([...marks], [m])
    assert.deepEqual(marks.invalid, [])

    const drained = await setMark(handle, prefix, {
      node: 'ast3',
      state: 'drained',
      since: m.since,
      by: 'alice@laptop',
    })
    assert.equal(drained.since, m.since)
    marks = await getMarks(handle, prefix)
    assert.equal(marks.length, 1)
    assert.equal(marks[0]!.state, 'drained')
    assert.equal(marks[0]!.by, 'alice@laptop')

    assert.equal(await clearMark(handle, prefix, 'ast3'), true)
    assert.equal(await clearMark(handle, prefix, 'ast3'), false)
    assert.deepEqual([...(await getMarks(handle, prefix))], [])
  })

  test('a broken value is reported in .invalid, the good ones still come back', async () => {
    await setMark(handle, prefix, {node: 'ast1', state: 'drained'})
    await handle.client.put(`${prefix}ast2`).value('{not json')
    await handle.client
      .put(`${prefix}ast4`)
      .value(JSON.stringify({node: 'ast4', state: 'sleeping', by: 'x@y', since: new Date().toISOString()}))
    await handle.client
      .put(`${prefix}ast5`)
      .value(JSON.stringify({node: 'ast9', state: 'drained', by: 'x@y', since: new Date().toISOString()}))
    const marks = await getMarks(handle, '/hactl/maintenance') // no trailing slash: same prefix
    assert.deepEqual(
      marks.map((m) => m.node),
      ['ast1'],
    )
    assert.deepEqual(
      marks.invalid.map((i) => [i.name, i.key]),
      [
        ['ast2', `${prefix}ast2`],
        ['ast4', `${prefix}ast4`],
        ['ast5', `${prefix}ast5`],
      ],
    )
    assert.match(marks.invalid[0]!.error, /not JSON/)
    assert.match(marks.invalid[1]!.error, /state/)
    assert.match(marks.invalid[2]!.error, /names node "ast9"/)
    await handle.client.delete().prefix(prefix)
  })

  test('bad input is a UserError and writes nothing', async () => {
    await assert.rejects(setMark(handle, prefix, {node: '../lock', state: 'drained'}), UserError)
    await assert.rejects(
      setMark(handle, prefix, {node: 'ast1', state: 'drained', reason: 'x'.repeat(5000)}),
      UserError,
    )
    await assert.rejects(clearMark(handle, prefix, 'a b'), UserError)
    assert.equal(await handle.client.getAll().prefix('/hactl/').count(), 0)
  })
})
