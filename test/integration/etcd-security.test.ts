import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import {connect} from 'node:net'
import type {Duplex} from 'node:stream'
import {after, before, describe, test} from 'node:test'
import {EtcdRequestError, openEtcd} from '../../src/lib/etcd/client.js'
import {etcdClusterHealth} from '../../src/lib/etcd/health.js'
import {ConfigError} from '../../src/lib/errors.js'
import {startEtcd, type EtcdCluster} from '../helpers/etcd.js'

describe('etcd with TLS and client certificates', () => {
  let cluster: EtcdCluster

  before(async () => {
    cluster = await startEtcd({members: 1, name: 'tls', tls: true})
  })
  after(async () => {
    await cluster?.destroy()
  })

  test('ca, cert and key from the config: requests and health work over https', async () => {
    assert.match(cluster.endpoints[0]!, /^https:/)
    const handle = await openEtcd(cluster.config())
    try {
      await handle.call('writing', (c) => c.put('/tls/k').value('v').exec())
      assert.equal(await handle.call('reading', (c) => c.get('/tls/k').string()), 'v')
      const h = await etcdClusterHealth(handle)
      assert.equal(h.healthyCount, 1)
    } finally {
      await handle.close()
    }
  })

  test('without a client certificate etcd refuses: a HactlError, not a crash', async () => {
    const handle = await openEtcd(cluster.config({tls: 'ca-only', timeout: '1500ms'}))
    try {
      await assert.rejects(
        handle.call('reading', (c) => c.get('/tls/k').string()),
        (e: unknown) => {
          assert.ok(e instanceof EtcdRequestError, String(e))
          assert.equal(e.kind, 'etcd-tls')
          assert.match(
            e.message,
            /^TLS with etcd at https:\/\/127\.0\.0\.1:\d+ failed: TLS alert "bad certificate"/,
          )
          assert.ok(e.suggestions.some((x) => x.includes('etcd.tls.cert')))
          return true
        },
      )
    } finally {
      await handle.close()
    }
  })

  test('a missing certificate file is a config error naming the key', async () => {
    const config = cluster.config()
    config.etcd.tls = {...config.etcd.tls, ca: '/nonexistent/ca.crt'}
    await assert.rejects(
      openEtcd(config),
      (e: unknown) => e instanceof ConfigError && /etcd\.tls\.ca \/nonexistent\/ca\.crt/.test(e.message),
    )
  })

  test('through a tunnel, the certificate is checked against the configured host name', async () => {
    const member = cluster.members[0]!
    const calls: string[] = []
    const tunnel = (host: string, port: number): Promise<Duplex> => {
      calls.push(`${host}:${port}`)
      const target = host.endsWith('.invalid') ? member.clientPort : port
      return new Promise((resolve, reject) => {
        const s = connect(target, '127.0.0.1')
        s.once('connect', () => resolve(s))
        s.once('error', reject)
      })
    }
    // The server certificate names etcd-a.invalid (and 127.0.0.1); the client connects to a
    // local forwarder, so only the name override makes verification pass.
    const handle = await openEtcd(
      cluster.config({endpoints: ['https://etcd-a.invalid:2379'], extraEtcdYaml: 'via: ssh'}),
      {tunnel},
    )
    try {
      assert.equal(await handle.call('reading', (c) => c.get('/tls/k').string()), 'v')
      assert.ok(calls.includes('etcd-a.invalid:2379'))
    } finally {
      await handle.close()
    }
    // A name the certificate does not carry fails verification, though the forwarder is 127.0.0.1
    // (which the certificate does carry): the check really is against the configured name.
    const wrong = await openEtcd(
      cluster.config({
        endpoints: ['https://etcd-b.invalid:2379'],
        timeout: '1500ms',
        extraEtcdYaml: 'via: ssh',
      }),
      {tunnel},
    )
    try {
      await assert.rejects(
        wrong.call('reading', (c) => c.get('/tls/k').string()),
        (e: unknown) => {
          assert.ok(e instanceof EtcdRequestError, String(e))
          assert.equal(e.kind, 'etcd-tls')
          assert.match(e.message, /etcd-b\.invalid/)
          return true
        },
      )
    } finally {
      await wrong.close()
    }
  })
})

describe('etcd with authentication', () => {
  let cluster: EtcdCluster

  before(async () => {
    cluster = await startEtcd({members: 1, name: 'auth'})
    const ctl = (...args: string[]) => {
      const r = spawnSync('/usr/bin/etcdctl', ['--endpoints', cluster.endpoints[0]!, ...args], {
        encoding: 'utf8',
        env: {PATH: process.env.PATH, ETCDCTL_API: '3'},
      })
      if (r.status !== 0) throw new Error(`etcdctl ${args.join(' ')}: ${r.stderr}`)
    }
    ctl('user', 'add', 'root:s3cret')
    ctl('auth', 'enable')
  })
  after(async () => {
    await cluster?.destroy()
  })

  test('username and password from the config', async () => {
    const handle = await openEtcd(cluster.config({extraEtcdYaml: 'auth: {username: root, password: s3cret}'}))
    try {
      await handle.call('writing', (c) => c.put('/auth/k').value('v').exec())
      assert.equal(await handle.call('reading', (c) => c.get('/auth/k').string()), 'v')
      assert.equal((await etcdClusterHealth(handle)).healthyCount, 1)
    } finally {
      await handle.close()
    }
  })

  test('a wrong password: an error naming etcd.auth', async () => {
    const handle = await openEtcd(cluster.config({extraEtcdYaml: 'auth: {username: root, password: wrong}'}))
    try {
      await assert.rejects(
        handle.call('reading', (c) => c.get('/auth/k').string()),
        (e: unknown) => {
          assert.ok(e instanceof EtcdRequestError, String(e))
          assert.equal(e.kind, 'etcd-auth')
          assert.match(e.message, /refused the credentials of user "root" \(etcd\.auth\)/)
          return true
        },
      )
    } finally {
      await handle.close()
    }
  })

  test('no credentials: the hint says to set etcd.auth', async () => {
    const handle = await openEtcd(cluster.config())
    try {
      await assert.rejects(
        handle.call('reading', (c) => c.get('/auth/k').string()),
        (e: unknown) => {
          assert.ok(e instanceof EtcdRequestError, String(e))
          assert.ok(
            e.suggestions.some((s) => s.includes('set etcd.auth')),
            e.message,
          )
          return true
        },
      )
    } finally {
      await handle.close()
    }
  })
})
