import assert from 'node:assert/strict'
import {connect} from 'node:net'
import type {Duplex} from 'node:stream'
import {after, before, describe, test} from 'node:test'
import {EtcdUnreachableError, openEtcd} from '../../src/lib/etcd/client.js'
import {etcdClusterHealth} from '../../src/lib/etcd/health.js'
import {startEtcd, type EtcdCluster} from '../helpers/etcd.js'

/**
 * `etcd.via: ssh`: the SSH pool's forwardOut is emulated with net.connect. The configured
 * endpoint is a name that does not resolve, so only the tunnel can reach etcd.
 */
describe('etcd through a tunnel (etcd.via: ssh)', () => {
  let cluster: EtcdCluster

  before(async () => {
    cluster = await startEtcd({members: 1, name: 'tunnel'})
  })
  after(async () => {
    await cluster?.destroy()
  })

  function fakeForwardOut(calls: Array<[string, number]>) {
    const member = cluster.members[0]!
    return (host: string, port: number): Promise<Duplex> => {
      calls.push([host, port])
      // What the remote end of the SSH connection would do: connect to host:port from there.
      const target = host === 'etcd-a.invalid' ? {host: '127.0.0.1', port: member.clientPort} : {host, port}
      return new Promise((resolve, reject) => {
        const s = connect(target.port, target.host)
        s.once('connect', () => resolve(s))
        s.once('error', reject)
      })
    }
  }

  test('requests go through local forwarders to tunnel(host, port); close() shuts them', async () => {
    const calls: Array<[string, number]> = []
    const config = cluster.config({endpoints: ['http://etcd-a.invalid:2379'], extraEtcdYaml: 'via: ssh'})
    const handle = await openEtcd(config, {tunnel: fakeForwardOut(calls)})
    assert.equal(handle.via, 'ssh')
    assert.deepEqual(handle.endpoints, ['http://etcd-a.invalid:2379'])
    await handle.call('writing', (c) => c.put('/tunnel/k').value('through ssh').exec())
    assert.equal(await handle.call('reading', (c) => c.get('/tunnel/k').string()), 'through ssh')
    assert.ok(
      calls.some(([h, p]) => h === 'etcd-a.invalid' && p === 2379),
      JSON.stringify(calls),
    )

    // Health asks each member at its own client URL: also through the tunnel.
    const h = await etcdClusterHealth(handle)
    assert.equal(h.healthyCount, 1)
    const member = cluster.members[0]!
    assert.ok(
      calls.some(([host, port]) => host === '127.0.0.1' && port === member.clientPort),
      JSON.stringify(calls),
    )

    // The forwarders listen on 127.0.0.1; after close() nothing listens there any more.
    assert.match(handle.localEndpoints[0] ?? '', /^http:\/\/127\.0\.0\.1:\d+$/)
    const localPort = Number(new URL(handle.localEndpoints[0]!).port)
    await handle.close()
    await assert.rejects(
      new Promise((resolve, reject) => {
        const s = connect(localPort, '127.0.0.1')
        s.once('connect', () => {
          s.destroy()
          resolve(undefined)
        })
        s.once('error', reject)
      }),
      /ECONNREFUSED/,
    )
  })

  test('a failing tunnel: EtcdUnreachableError that says "via ssh" and carries the tunnel error', async () => {
    const config = cluster.config({
      endpoints: ['http://etcd-a.invalid:2379'],
      timeout: '1500ms',
      extraEtcdYaml: 'via: ssh',
    })
    const handle = await openEtcd(config, {
      tunnel: async () =>
        Promise.reject(new Error('ssh ast1: channel open failure: administratively prohibited')),
    })
    try {
      const err = await handle
        .call('reading', (c) => c.get('/x').string())
        .then(
          () => assert.fail('expected an error'),
          (e: unknown) => e,
        )
      assert.ok(err instanceof EtcdUnreachableError, String(err))
      assert.match(err.message, /^etcd unreachable at http:\/\/etcd-a\.invalid:2379 \(via ssh\): /)
      assert.match(err.message, /SSH tunnel to http:\/\/etcd-a\.invalid:2379: ssh ast1: channel open failure/)
      assert.ok(
        !err.suggestions.some((s) => s.includes('set etcd.via: ssh')),
        'no advice to do what is already done',
      )
    } finally {
      await handle.close()
    }
  })
})
