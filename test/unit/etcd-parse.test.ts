import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import path from 'node:path'
import {describe, test} from 'node:test'
import {pathToFileURL} from 'node:url'
import type {IKeyValue} from 'etcd3'
import {
  cleanGrpcMessage,
  EtcdRequestError,
  EtcdUnreachableError,
  hexId,
  parseEndpoint,
  translateEtcdError,
  withTimeout,
} from '../../src/lib/etcd/client.js'
import {describeHolder} from '../../src/lib/etcd/lock.js'
import {parseMarks} from '../../src/lib/etcd/maintenance.js'
import {parseRegistrations, prefixRangeEnd} from '../../src/lib/etcd/registrations.js'
import {ConfigError} from '../../src/lib/errors.js'

const repo = path.resolve(import.meta.dirname, '../..')

function kv(key: string, value: string, lease = '0'): IKeyValue {
  return {
    key: Buffer.from(key),
    value: Buffer.from(value),
    lease,
    create_revision: '1',
    mod_revision: '1',
    version: '1',
  }
}

describe('etcd parsers', () => {
  test('hexId renders uint64 decimal strings like etcdctl', () => {
    assert.equal(hexId('18446744073709551615'), 'ffffffffffffffff')
    assert.equal(hexId('9372538179322589801'), '8211f1d0f64f3269')
    assert.equal(hexId('0'), '0')
    assert.equal(hexId('not a number'), 'not a number')
  })

  test('parseMarks: valid marks, broken values and key/value mismatches', () => {
    const since = '2025-01-01T12:00:00.000Z'
    const marks = parseMarks(
      {
        '/m/ast2': JSON.stringify({node: 'ast2', state: 'draining', by: 'a@b', since, reason: 'disk'}),
        '/m/ast1': JSON.stringify({node: 'ast1', state: 'drained', by: 'a@b', since, extra: 'ignored'}),
        '/m/ast3': '[]',
        '/m/ast4': JSON.stringify({node: 'ast4', state: 'drained', by: 'a@b', since: 'yesterday'}),
      },
      '/m/',
    )
    assert.deepEqual(
      marks.map((m) => [m.node, m.state]),
      [
        ['ast1', 'drained'],
        ['ast2', 'draining'],
      ],
    )
    assert.equal((marks[0] as Record<string, unknown>).extra, undefined, 'unknown fields dropped')
    assert.deepEqual(
      marks.invalid.map((i) => i.name),
      ['ast3', 'ast4'],
    )
    assert.match(marks.invalid[1]!.error, /since: expected an ISO time/)
  })

  test('parseRegistrations: default port, weight, lease in hex, invalid entries', () => {
    const regs = parseRegistrations(
      [
        kv(
          '/a/ast2',
          JSON.stringify({ip: '10.0.0.2', port: 5080, weight: 25}),
          BigInt('0x694d7e2c1f5a1006').toString(),
        ),
        kv('/a/ast1', JSON.stringify({ip: '10.0.0.1'})),
        kv('/a/ast3', JSON.stringify({ip: 'example.com'})),
        kv('/a/AST4', JSON.stringify({ip: '10.0.0.4'})),
        kv('/a/ast5', JSON.stringify({ip: '::1', weight: 0})),
        kv('/a/ast6', JSON.stringify({ip: 'fd00::6'})),
      ],
      '/a',
    )
    assert.deepEqual(
      [...regs],
      [
        {name: 'ast1', key: '/a/ast1', ip: '10.0.0.1', port: 5060},
        {name: 'ast2', key: '/a/ast2', ip: '10.0.0.2', port: 5080, weight: 25, lease: '694d7e2c1f5a1006'},
        {name: 'ast6', key: '/a/ast6', ip: 'fd00::6', port: 5060},
      ],
    )
    assert.deepEqual(
      regs.invalid.map((i) => i.name),
      ['ast3', 'AST4', 'ast5'],
    )
  })

  test('prefixRangeEnd', () => {
    assert.equal(prefixRangeEnd('/asterisk/').toString(), '/asterisk0')
    assert.deepEqual([...prefixRangeEnd('a\u00ff')], [0x61, 0xc3, 0xc0])
  })

  test('describeHolder', () => {
    const since = new Date()
    since.setHours(12, 3, 4, 0)
    assert.equal(
      describeHolder({
        user: 'alice',
        host: 'laptop',
        command: 'hactl node drain ast3',
        pid: 1,
        since: since.toISOString(),
      }),
      'locked by alice@laptop since 12:03:04 running "hactl node drain ast3"',
    )
    const old = new Date(2024, 4, 1, 9, 8, 7)
    assert.match(
      describeHolder({user: 'a', host: 'h', command: 'c', pid: 1, since: old.toISOString()}),
      /since 2024-05-01 09:08:07 /,
    )
    assert.match(describeHolder(undefined, 'garbage'), /unknown holder .*garbage/)
  })
})

describe('etcd errors', () => {
  test('grpc messages made readable', () => {
    assert.equal(
      cleanGrpcMessage(
        '14 UNAVAILABLE: No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:2379. Resolution note: ',
      ),
      'connect ECONNREFUSED 127.0.0.1:2379',
    )
    assert.equal(
      cleanGrpcMessage(
        '4 DEADLINE_EXCEEDED: Deadline exceeded after 1.000s,name resolution: 0.002s,Waiting for LB pick',
      ),
      'no answer within 1s',
    )
    assert.equal(
      cleanGrpcMessage('EtcdError: etcdserver: mvcc: required revision has been compacted'),
      'etcdserver: mvcc: required revision has been compacted',
    )
  })

  test('translateEtcdError: unreachable, timeout, permission, other', () => {
    const endpoints = ['http://10.0.0.1:2379', 'http://10.0.0.2:2379']
    const u = translateEtcdError(
      new Error('14 UNAVAILABLE: No connection established. Last error: connect EHOSTUNREACH 10.0.0.1:2379'),
      {endpoints, what: 'reading marks'},
    )
    assert.ok(u instanceof EtcdUnreachableError)
    assert.equal(
      u.message,
      'etcd unreachable at http://10.0.0.1:2379, http://10.0.0.2:2379: connect EHOSTUNREACH 10.0.0.1:2379 (while reading marks)',
    )
    assert.equal(u.exitCode, 1)
    assert.ok(u.suggestions.some((s) => s.includes('etcd.via: ssh')))

    const t = translateEtcdError(new Error('4 DEADLINE_EXCEEDED: Deadline exceeded after 2.5s'), {
      endpoints,
      what: 'taking the lock',
      timeoutMs: 5000,
      via: 'ssh',
    })
    assert.ok(t instanceof EtcdUnreachableError)
    assert.equal(t.timeoutName, 'etcd.timeout')
    assert.match(t.message, /\(via ssh\): no answer within 5s \(etcd\.timeout\) while taking the lock$/)
    assert.ok(
      t.suggestions.some((s) => s === 'raise etcd.timeout in hactl.yaml (now 5s) if etcd is just slow'),
    )
    assert.ok(!t.suggestions.some((s) => s.includes('etcd.via')))

    const p = translateEtcdError(new Error('etcdserver: permission denied'), {
      endpoints,
      what: 'writing the lock',
    })
    assert.ok(p instanceof EtcdRequestError)
    assert.equal(p.kind, 'etcd-permission')

    const o = translateEtcdError(new Error('etcdserver: request is too large'), {
      endpoints,
      what: 'writing history',
    })
    assert.ok(o instanceof EtcdRequestError)
    assert.equal(o.message, 'etcd: writing history failed: etcdserver: request is too large')
  })

  test('parseEndpoint', () => {
    assert.deepEqual(parseEndpoint('http://10.0.0.1:2379'), {protocol: 'http:', host: '10.0.0.1', port: 2379})
    assert.deepEqual(parseEndpoint('https://[fd00::1]:2379'), {
      protocol: 'https:',
      host: 'fd00::1',
      port: 2379,
    })
    assert.throws(() => parseEndpoint('10.0.0.1:2379'), ConfigError)
    assert.throws(() => parseEndpoint('ftp://x'), ConfigError)
  })

  test('withTimeout', async () => {
    assert.equal(await withTimeout(Promise.resolve(1), 50, () => new Error('late')), 1)
    await assert.rejects(
      withTimeout(new Promise(() => undefined), 30, () => new Error('late')),
      /late/,
    )
  })
})

describe('lazy loading', () => {
  test('importing the etcd library modules does not load etcd3; opening a client does', () => {
    const mods = ['client', 'health', 'maintenance', 'registrations', 'lock'].map(
      (m) => pathToFileURL(path.join(repo, `src/lib/etcd/${m}.ts`)).href,
    )
    const code = `
      import {createRequire} from 'node:module'
      const loaded = () => Object.keys(createRequire(import.meta.url).cache).some((k) => k.includes('/node_modules/etcd3/'))
      const mods = ${JSON.stringify(mods)}
      for (const m of mods) await import(m)
      await import(${JSON.stringify(pathToFileURL(path.join(repo, 'src/lib/history.ts')).href)})
      const before = loaded()
      const {openEtcd} = await import(mods[0])
      const {parseConfig} = await import(${JSON.stringify(pathToFileURL(path.join(repo, 'src/lib/config/load.ts')).href)})
      const h = await openEtcd(parseConfig('cluster: t\\netcd: {endpoints: [http://127.0.0.1:1]}\\nnodes: {a: {host: 127.0.0.1, roles: [etcd]}}\\n', 'x.yaml'))
      const afterOpen = loaded()
      await h.close()
      console.log(JSON.stringify({before, afterOpen}))
    `
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
      cwd: repo,
      encoding: 'utf8',
    })
    assert.equal(r.status, 0, r.stderr)
    assert.deepEqual(JSON.parse(r.stdout.trim().split('\n').at(-1)!), {before: false, afterOpen: true})
  })
})
