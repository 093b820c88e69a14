import assert from 'node:assert/strict'
import {mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import http, {type IncomingMessage, type Server, type ServerResponse} from 'node:http'
import type {AddressInfo} from 'node:net'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {after, before, beforeEach, describe, test} from 'node:test'
import {ExitCode, HactlError, UserError} from '../../src/lib/errors.js'
import {
  assertUnusedUrl,
  hactlStateDir,
  inspectDiscoveryUrl,
  newDiscoveryUrl,
  normalizeDiscoveryUrl,
  parseHttpUrl,
  readUsedUrls,
  recordUsedUrls,
  resolveDiscoverySource,
  usedUrlReason,
} from '../../src/lib/etcd/discovery-service.js'

interface Seen {
  method: string
  url: string
  body: string
  contentType: string | undefined
}

/** A local HTTP server on 127.0.0.1 whose answers each test sets. */
function fakeServer() {
  const seen: Seen[] = []
  let handler: (req: IncomingMessage, body: string, res: ServerResponse) => void = (_req, _body, res) => {
    res.writeHead(404)
    res.end()
  }
  const server: Server = http.createServer((req, res) => {
    let body = ''
    req.on('data', (d: Buffer) => (body += d.toString()))
    req.on('end', () => {
      seen.push({
        method: req.method ?? '',
        url: req.url ?? '',
        body,
        contentType: req.headers['content-type'],
      })
      handler(req, body, res)
    })
  })
  return {
    seen,
    server,
    on(fn: typeof handler) {
      handler = fn
    },
    async listen(): Promise<string> {
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()))
      return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    },
    async close() {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

describe('discovery URLs given on the command line', () => {
  test('http and https URLs are accepted, anything else is a usage error (exit 2)', () => {
    assert.equal(parseHttpUrl('http://10.0.0.5:8087', '--discovery-service').host, '10.0.0.5:8087')
    for (const bad of [
      'ftp://x/y',
      'not a url',
      '10.0.0.5:8087',
      'file:///etc/passwd',
      'http://u:p@h/x',
      'http://h/x?size=3',
    ]) {
      assert.throws(
        () => parseHttpUrl(bad, '--discovery'),
        (e: unknown) =>
          e instanceof UserError && e.exitCode === ExitCode.usage && e.message.startsWith('--discovery'),
        bad,
      )
    }
  })

  test('the source: --discovery, a discovery service, or an etcd v2 backend', () => {
    const cfg = 'https://discovery.etcd.io'
    assert.deepEqual(resolveDiscoverySource({configService: cfg}), {
      kind: 'service',
      url: 'https://discovery.etcd.io',
    })
    assert.deepEqual(
      resolveDiscoverySource({configService: cfg, discoveryService: 'http://10.77.0.2:8087/'}),
      {kind: 'service', url: 'http://10.77.0.2:8087'},
    )
    assert.deepEqual(
      resolveDiscoverySource({configService: cfg, discoveryService: 'http://10.0.0.9:2379/v2/keys'}),
      {
        kind: 'etcd',
        url: 'http://10.0.0.9:2379/v2/keys/discovery',
      },
    )
    assert.deepEqual(resolveDiscoverySource({configService: 'http://10.0.0.9:2379/v2/keys/tokens/'}), {
      kind: 'etcd',
      url: 'http://10.0.0.9:2379/v2/keys/tokens',
    })
    assert.deepEqual(
      resolveDiscoverySource({configService: cfg, discovery: 'https://discovery.etcd.io/abc/'}),
      {kind: 'given', url: 'https://discovery.etcd.io/abc'},
    )
    assert.throws(
      () => resolveDiscoverySource({configService: cfg, discovery: 'https://discovery.etcd.io/'}),
      UserError,
    )
    assert.throws(
      () =>
        resolveDiscoverySource({configService: cfg, discovery: 'http://a/x', discoveryService: 'http://b'}),
      UserError,
    )
    assert.throws(
      () => resolveDiscoverySource({configService: cfg, discoveryService: 'gopher://b'}),
      /--discovery-service/,
    )
  })
})

describe('new tokens (against a local HTTP server)', () => {
  const srv = fakeServer()
  let base = ''
  before(async () => {
    base = await srv.listen()
  })
  after(async () => {
    await srv.close()
  })
  beforeEach(() => {
    srv.seen.length = 0
  })

  test('a discovery service: GET /new?size=N answers the URL', async () => {
    srv.on((_req, _body, res) => {
      res.writeHead(200, {'content-type': 'text/plain'})
      res.end('http://10.77.0.2:2379/v2/keys/discovery/0123456789abcdef\n')
    })
    const url = await newDiscoveryUrl({kind: 'service', url: base}, {size: 5})
    assert.equal(url, 'http://10.77.0.2:2379/v2/keys/discovery/0123456789abcdef')
    assert.deepEqual(
      srv.seen.map((s) => [s.method, s.url]),
      [['GET', '/new?size=5']],
    )
  })

  test('a service that fails, answers junk, or does not answer in time: a HactlError naming it', async () => {
    srv.on((_req, _body, res) => {
      res.writeHead(503)
      res.end('over capacity')
    })
    await assert.rejects(newDiscoveryUrl({kind: 'service', url: base}, {size: 3}), (e: unknown) => {
      assert.ok(e instanceof HactlError)
      assert.equal(e.exitCode, 1)
      assert.match(e.message, /answered 503: over capacity/)
      assert.ok(e.suggestions.some((s) => s.includes('--discovery-service')))
      return true
    })
    srv.on((_req, _body, res) => {
      res.writeHead(200)
      res.end('<html>hello</html>')
    })
    await assert.rejects(newDiscoveryUrl({kind: 'service', url: base}, {size: 3}), /did not answer a URL/)
    srv.on(() => {
      // never answer
    })
    const t0 = Date.now()
    await assert.rejects(
      newDiscoveryUrl({kind: 'service', url: base}, {size: 3, timeoutMs: 300}),
      /did not answer within 300ms/,
    )
    assert.ok(Date.now() - t0 < 3000)
  })

  test('an unreachable service: "cannot reach"', async () => {
    const dead = fakeServer()
    const deadBase = await dead.listen()
    await dead.close()
    await assert.rejects(
      newDiscoveryUrl({kind: 'service', url: deadBase}, {size: 3}),
      /cannot reach discovery service .*ECONNREFUSED/,
    )
  })

  test('an etcd v2 backend: PUT <prefix>/<token>/_config/size with prevExist=false', async () => {
    srv.on((_req, _body, res) => {
      res.writeHead(201, {'content-type': 'application/json'})
      res.end('{"action":"create","node":{"key":"/discovery/tok/_config/size","value":"3"}}')
    })
    const url = await newDiscoveryUrl(
      {kind: 'etcd', url: `${base}/v2/keys/discovery`},
      {size: 3, randomToken: () => 'feedfacefeedface'},
    )
    assert.equal(url, `${base}/v2/keys/discovery/feedfacefeedface`)
    assert.equal(srv.seen.length, 1)
    assert.equal(srv.seen[0]!.method, 'PUT')
    assert.equal(srv.seen[0]!.url, '/v2/keys/discovery/feedfacefeedface/_config/size?prevExist=false')
    assert.equal(srv.seen[0]!.body, 'value=3')
    assert.equal(srv.seen[0]!.contentType, 'application/x-www-form-urlencoded')

    // The token exists already: refused, never reused.
    srv.on((_req, _body, res) => {
      res.writeHead(412, {'content-type': 'application/json'})
      res.end('{"errorCode":105,"message":"Key already exists"}')
    })
    await assert.rejects(
      newDiscoveryUrl({kind: 'etcd', url: `${base}/v2/keys/discovery`}, {size: 3}),
      /answered 412: .*Key already exists/,
    )
  })

  test('random tokens are 32 hex digits and differ', async () => {
    const urls = new Set<string>()
    srv.on((_req, _body, res) => {
      res.writeHead(201)
      res.end('{}')
    })
    for (let i = 0; i < 5; i++)
      urls.add(await newDiscoveryUrl({kind: 'etcd', url: `${base}/v2/keys/discovery`}, {size: 1}))
    assert.equal(urls.size, 5)
    for (const u of urls) assert.match(u, /\/discovery\/[0-9a-f]{32}$/)
  })

  test('a given URL is returned as is, without a request', async () => {
    assert.equal(
      await newDiscoveryUrl({kind: 'given', url: 'http://h/v2/keys/discovery/x'}, {size: 3}),
      'http://h/v2/keys/discovery/x',
    )
    assert.equal(srv.seen.length, 0)
  })

  test('inspecting a discovery URL: size (asked by name: etcd hides _config) and registered members', async () => {
    // Given: answers as etcd v2 gives them (captured from the lab's discovery etcd).
    srv.on((req, _body, res) => {
      const known = req.url === '/v2/keys/discovery/tok/_config/size' || req.url === '/v2/keys/discovery/tok'
      res.writeHead(known ? 200 : 404, {'content-type': 'application/json'})
      if (req.url === '/v2/keys/discovery/tok/_config/size') {
        res.end(
          '{"action":"get","node":{"key":"/discovery/tok/_config/size","value":"5","modifiedIndex":100,"createdIndex":100}}',
        )
      } else if (req.url === '/v2/keys/discovery/tok') {
        res.end(
          '{"action":"get","node":{"key":"/discovery/tok","dir":true,"nodes":[{"key":"/discovery/tok/931c76175ed65b04","value":"ast3=http://10.82.0.23:2380","modifiedIndex":101,"createdIndex":101},{"key":"/discovery/tok/9af4849c6cbdb2f3","value":"ast2=http://10.82.0.22:2380","modifiedIndex":102,"createdIndex":102}],"modifiedIndex":100,"createdIndex":100}}',
        )
      } else {
        res.end('{"errorCode":100,"message":"Key not found"}')
      }
    })
    assert.deepEqual(await inspectDiscoveryUrl(`${base}/v2/keys/discovery/tok`), {size: 5, registered: 2})
    await assert.rejects(
      inspectDiscoveryUrl(`${base}/v2/keys/discovery/other`),
      /has no _config\/size \(404\)/,
    )
    // A fresh token: the size, nobody registered (the directory listing hides _config).
    srv.on((req, _body, res) => {
      res.writeHead(200, {'content-type': 'application/json'})
      res.end(
        req.url!.endsWith('/_config/size')
          ? '{"action":"get","node":{"key":"/discovery/new/_config/size","value":"3"}}'
          : '{"action":"get","node":{"key":"/discovery/new","dir":true,"modifiedIndex":9,"createdIndex":9}}',
      )
    })
    assert.deepEqual(await inspectDiscoveryUrl(`${base}/v2/keys/discovery/new`), {size: 3, registered: 0})
  })
})

describe('URLs this cluster has used', () => {
  let dir = ''
  before(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'hactl-used-'))
  })
  after(() => {
    rmSync(dir, {recursive: true, force: true})
  })

  test('the state dir follows XDG_STATE_HOME, else ~/.local/state', () => {
    assert.equal(hactlStateDir({XDG_STATE_HOME: '/x/state', HOME: '/home/a'}), '/x/state/hactl')
    assert.equal(hactlStateDir({HOME: '/home/a'}), '/home/a/.local/state/hactl')
    assert.equal(hactlStateDir({XDG_STATE_HOME: 'relative', HOME: '/home/a'}), '/home/a/.local/state/hactl')
  })

  test('recorded per cluster, idempotent, and refused afterwards', async () => {
    const file = path.join(dir, 'sub', 'discovery-used.json')
    assert.deepEqual(await readUsedUrls('lab', file), [])
    await recordUsedUrls(
      'lab',
      ['http://d:2379/v2/keys/discovery/aaa/', 'http://d:2379/v2/keys/discovery/aaa'],
      'configured',
      file,
    )
    await recordUsedUrls('lab', ['http://d:2379/v2/keys/discovery/bbb'], 'new', file)
    await recordUsedUrls('other', ['http://d:2379/v2/keys/discovery/ccc'], 'new', file)
    const used = await readUsedUrls('lab', file)
    assert.deepEqual(
      used.map((u) => [u.url, u.how]),
      [
        ['http://d:2379/v2/keys/discovery/aaa', 'configured'],
        ['http://d:2379/v2/keys/discovery/bbb', 'new'],
      ],
    )
    assert.equal(JSON.parse(readFileSync(file, 'utf8')).clusters.other.length, 1)

    // Used before (trailing slash or not): refused with exit 2 and a hint.
    assert.throws(
      () =>
        assertUnusedUrl('http://d:2379/v2/keys/discovery/bbb/', {cluster: 'lab', used, configured: [], file}),
      (e: unknown) =>
        e instanceof UserError &&
        /already used it/.test(e.message) &&
        e.suggestions.some((s) => s.includes(file)),
    )
    // Configured on a host now: refused, naming the host.
    assert.match(
      usedUrlReason('http://d:2379/v2/keys/discovery/zzz', {
        used,
        configured: [
          {host: 'ast2', url: 'http://d:2379/v2/keys/discovery/zzz'},
          {host: 'ast3', url: null},
        ],
      }) ?? '',
      /configured now on ast2/,
    )
    // Another cluster's URL and a new one are fine.
    assert.doesNotThrow(() =>
      assertUnusedUrl('http://d:2379/v2/keys/discovery/ccc', {cluster: 'lab', used, configured: []}),
    )
    assert.equal(normalizeDiscoveryUrl('HTTP://D:2379/v2/keys/x/'), 'http://d:2379/v2/keys/x')
  })

  test('a file that is not ours is an error, not silently replaced', async () => {
    const file = path.join(dir, 'bad.json')
    writeFileSync(file, '[1,2,3]')
    await assert.rejects(readUsedUrls('lab', file), /not a discovery-used file/)
  })
})
