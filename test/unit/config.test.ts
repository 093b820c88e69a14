import assert from 'node:assert/strict'
import {mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {after, describe, test} from 'node:test'
import fc from 'fast-check'
import {ConfigError, ExitCode} from '../../src/lib/errors.js'
import {
  configCandidates,
  etcdEndpoints,
  findConfigFile,
  loadConfig,
  MAX_CONFIG_BYTES,
  parseConfig,
} from '../../src/lib/config/load.js'
import {formatDuration, parseDuration} from '../../src/lib/config/schema.js'
import {configWarnings, summarizeConfig} from '../../src/lib/config/validate.js'

const repo = path.resolve(import.meta.dirname, '../..')
const fixtures = path.join(repo, 'test/fixtures/config')
const tmp = mkdtempSync(path.join(tmpdir(), 'hactl-config-test-'))
after(() => rmSync(tmp, {recursive: true, force: true}))

const NODES =
  'nodes:\n  ast1: {host: 10.0.0.21, roles: [asterisk, etcd]}\n  kam1: {host: 10.0.0.11, roles: [kamailio]}\n'
const MINIMAL = `cluster: t\n${NODES}`

/** The ConfigError parseConfig throws for `text`; fails the test when it parses. */
function errorOf(text: string, file = 'hactl.yaml'): ConfigError {
  try {
    parseConfig(text, file)
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`)
    return error
  }
  assert.fail(`expected ${file} to be refused:\n${text}`)
}

describe('the corpus of broken configs (test/fixtures/config/bad)', () => {
  const dir = path.join(fixtures, 'bad')
  const expected = JSON.parse(readFileSync(path.join(dir, 'expected.json'), 'utf8')) as Record<
    string,
    {message: string; hint?: string}
  >
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.yaml'))
    .sort()

  test('has at least 30 cases, each with its expected message, and no stale expectations', () => {
    assert.ok(files.length >= 30, `only ${files.length} broken configs`)
    assert.deepEqual(Object.keys(expected).sort(), files)
  })

  for (const file of files) {
    test(file, () => {
      // Given a broken config
      const text = readFileSync(path.join(dir, file), 'utf8')
      // When it is parsed
      const err = errorOf(text, file)
      // Then the message names file:line:col and says what is wrong, with the expected hint
      const want = expected[file]!
      assert.match(
        want.message,
        new RegExp(`^${file.replace(/\./g, '\\.')}:\\d+:\\d+: `),
        'expected.json must give file:line:col',
      )
      assert.equal(err.message, want.message)
      assert.equal(err.exitCode, ExitCode.usage)
      assert.equal(err.position?.file, file)
      assert.ok(!err.message.includes('\n'), 'one line')
      if (want.hint)
        assert.ok(
          err.suggestions.some((s) => s.includes(want.hint!)),
          `hint ${JSON.stringify(want.hint)} in ${JSON.stringify(err.suggestions)}`,
        )
    })
  }
})

describe('good configs (test/fixtures/config/good)', () => {
  const dir = path.join(fixtures, 'good')
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.yaml'))
    .sort()

  test('there are good configs', () => assert.ok(files.length >= 5))

  for (const file of files) {
    test(`${file} parses`, () => {
      const config = parseConfig(readFileSync(path.join(dir, file), 'utf8'), file)
      assert.ok(config.nodes.length > 0)
      assert.equal(config.file, file)
    })
  }

  test('lab.yaml (the architecture example) resolves durations, ports and users', () => {
    const c = parseConfig(readFileSync(path.join(dir, 'lab.yaml'), 'utf8'), 'lab.yaml')
    assert.equal(c.cluster, 'lab')
    assert.equal(c.ssh.connectTimeout, 5000)
    assert.equal(c.ssh.commandTimeout, 30_000)
    assert.equal(c.ssh.strictHostKeyChecking, 'yes')
    assert.deepEqual(c.etcd.wipe, ['member'])
    assert.equal(c.etcd.discovery.service, 'http://10.77.0.2:8087')
    assert.equal(c.asterisk.drainTimeout, 30 * 60_000)
    assert.deepEqual(c.nodes, [
      {name: 'ast1', host: '10.77.0.21', port: 22, user: 'root', roles: ['asterisk', 'etcd']},
      {name: 'kam1', host: '10.77.0.11', port: 22, user: 'root', roles: ['kamailio']},
    ])
    assert.deepEqual(etcdEndpoints(c), ['http://10.77.0.21:2379'])
  })

  test('mixed.yaml: per-node overrides, IPv6, fractional seconds, duplicate roles collapse', () => {
    const c = parseConfig(readFileSync(path.join(dir, 'mixed.yaml'), 'utf8'), 'mixed.yaml')
    assert.equal(c.ssh.connectTimeout, 1500)
    assert.equal(c.etcd.timeout, 750)
    assert.equal(c.asterisk.drainTimeout, 3_600_000)
    const byName = Object.fromEntries(c.nodes.map((n) => [n.name, n]))
    assert.deepEqual(byName['ast-1'], {
      name: 'ast-1',
      host: '2001:db8::21',
      port: 2222,
      user: 'core',
      roles: ['asterisk'],
      weight: 25,
    })
    assert.deepEqual(byName['ast-2'], {
      name: 'ast-2',
      host: '[2001:db8::22]',
      port: 22,
      user: 'root',
      roles: ['asterisk', 'homer'],
    })
    assert.deepEqual(byName['ast-3']!.roles, ['asterisk'])
    assert.equal(c.etcd.auth?.password, 's3cret: with colon')
    assert.deepEqual(etcdEndpoints(c), ['https://etcd1.example.net:2379', 'https://etcd2.example.net:2379'])
  })

  test('anchors.yaml: x-* keys hold anchors, << merges them', () => {
    const c = parseConfig(readFileSync(path.join(dir, 'anchors.yaml'), 'utf8'), 'anchors.yaml')
    assert.deepEqual(
      c.nodes.map((n) => [n.name, n.port, n.roles.join('+'), n.weight ?? '-']),
      [
        ['ast1', 2222, 'asterisk+etcd', '-'],
        ['ast2', 2222, 'asterisk+etcd', 25],
        ['ast3', 2222, 'asterisk+etcd', '-'],
        ['kam1', 22, 'kamailio', '-'],
      ],
    )
  })

  test('derived etcd endpoints use https with TLS and bracket IPv6 hosts', () => {
    const c = parseConfig(
      'cluster: t\netcd:\n  tls: {ca: /ca.pem}\n  clientPort: 4001\nnodes:\n  e1: {host: "fd00::1", roles: [etcd]}\n  e2: {host: e2.example, roles: [etcd]}\n  a1: {host: a1, roles: [asterisk]}\n',
      'h.yaml',
    )
    assert.deepEqual(etcdEndpoints(c), ['https://[fd00::1]:4001', 'https://e2.example:4001'])
  })
})

describe('docs/config.md', () => {
  const docs = readFileSync(path.join(repo, 'docs/config.md'), 'utf8')

  test('the full example is test/fixtures/config/good/full.yaml, and it parses', () => {
    const block = /## Full example\n[\s\S]*?```yaml\n([\s\S]*?)```/.exec(docs)
    assert.ok(block, 'docs/config.md has a "## Full example" with a yaml block')
    assert.equal(
      block[1],
      readFileSync(path.join(fixtures, 'good/full.yaml'), 'utf8'),
      'copy the example to good/full.yaml',
    )
    const c = parseConfig(block[1]!, 'docs/config.md')
    assert.equal(c.nodes.length, 6)
  })

  test('documents every key of the schema', async () => {
    const {configJsonSchema} = await import('../../src/lib/config/json-schema.js')
    const keys = new Set<string>()
    const walk = (node: unknown) => {
      if (!node || typeof node !== 'object') return
      const n = node as {properties?: Record<string, unknown>; additionalProperties?: unknown}
      for (const [k, v] of Object.entries(n.properties ?? {})) {
        keys.add(k)
        walk(v)
      }
      walk(n.additionalProperties)
    }
    walk(configJsonSchema())
    const missing = [...keys].filter((k) => !docs.includes(`\`${k}\``) && !docs.includes(`.${k}\``))
    assert.deepEqual(missing, [], 'add these keys to the reference in docs/config.md')
  })
})

describe('YAML-level problems made on the fly', () => {
  test('a file over the size limit is refused before parsing', () => {
    const big = `cluster: t\n${NODES}# ${'x'.repeat(MAX_CONFIG_BYTES)}\n`
    const err = errorOf(big, 'big.yaml')
    assert.match(err.message, /^big\.yaml:1:1: the file is 1\.0 MiB; a hactl\.yaml is at most 1 MiB$/)
  })

  test('a binary file is named as such, with the position of the NUL byte', () => {
    assert.equal(
      errorOf('cluster: t\nno\0des: 1\n', 'b.yaml').message,
      'b.yaml:2:3: this is a binary file, not YAML',
    )
  })

  test('invalid UTF-8 (read as U+FFFD) is refused with its position', () => {
    const text = Buffer.concat([
      Buffer.from('cluster: caf'),
      Buffer.from([0xe9]),
      Buffer.from(`\n${NODES}`),
    ]).toString('utf8')
    assert.equal(errorOf(text, 'u.yaml').message, 'u.yaml:1:13: the file is not valid UTF-8')
  })

  test('a byte-order mark and CRLF line ends are fine', () => {
    const c = parseConfig(`\uFEFF${MINIMAL.replace(/\n/g, '\r\n')}`, 'crlf.yaml')
    assert.equal(c.cluster, 't')
    assert.equal(c.nodes.length, 2)
  })

  test('positions count from the BOM-less text and stay right with CRLF', () => {
    const err = errorOf(
      '\uFEFFcluster: t\r\nssh:\r\n  port: "22"\r\n' + NODES.replace(/\n/g, '\r\n'),
      'crlf.yaml',
    )
    assert.match(err.message, /^crlf\.yaml:3:9: ssh\.port: expected a number/)
  })

  test('the first problem in the file is reported, whatever order zod finds them in', () => {
    const err = errorOf(
      'cluster: t\nnodes:\n  ast1: {host: 10.0.0.21, roles: [asterix]}\nssh:\n  port: nope\n',
    )
    assert.match(err.message, /^hactl\.yaml:3:35: nodes\.ast1\.roles\[0\]: "asterix" is not a role/)
  })

  test('several unknown keys: the first one in the file is named, and the others counted', () => {
    const err = errorOf(`cluster: t\nzzz: 1\naaa: 2\n${NODES}`)
    assert.match(
      err.message,
      /^hactl\.yaml:2:1: unknown key "zzz" at the top level \(and 1 more\); allowed: cluster, ssh, etcd, asterisk, kamailio, concurrency, nodes$/,
    )
  })

  test('a misspelt key is reported as unknown, not as the key it was meant to be missing', () => {
    const err = errorOf('cluster: t\nnodes:\n  ast1:\n    roles: [asterisk]\n    hots: h\n')
    assert.match(err.message, /unknown key "hots" in nodes\.ast1/)
    assert.deepEqual(err.suggestions, ['did you mean "host"?'])
  })

  test('wipe paths with a trailing slash are sub-paths; empty segments are not', () => {
    assert.deepEqual(parseConfig(`cluster: t\netcd:\n  wipe: [member/, a/b]\n${NODES}`, 'w.yaml').etcd.wipe, [
      'member/',
      'a/b',
    ])
    assert.match(
      errorOf(`cluster: t\netcd:\n  wipe: [a//b]\n${NODES}`).message,
      /etcd\.wipe entry "a\/\/b" has an empty or "\." segment/,
    )
    assert.match(errorOf(`cluster: t\netcd:\n  wipe: ["~/x"]\n${NODES}`).message, /starts with ~/)
  })

  test('duplicate host detection ignores case and uses the resolved port', () => {
    assert.doesNotThrow(() =>
      parseConfig(
        'cluster: t\nnodes:\n  a: {host: h, roles: [etcd]}\n  b: {host: h, port: 2222, roles: [etcd]}\n',
        'p.yaml',
      ),
    )
    assert.match(
      errorOf('cluster: t\nnodes:\n  a: {host: H, roles: [etcd]}\n  b: {host: h, port: 22, roles: [etcd]}\n')
        .message,
      /nodes a and b have the same host h and port 22/,
    )
  })

  test('an error never carries a stack-like multi-line message', () => {
    for (const text of ['', 'a: [', '\t- x', 'cluster: t\nnodes: 3\n', 'x: *y\n']) {
      assert.ok(!errorOf(text).message.includes('\n'))
    }
  })
})

describe('config lookup: --config, HACTL_CONFIG, ./hactl.yaml, ~/.config/hactl/config.yaml', () => {
  const home = path.join(tmp, 'home')
  const cwd = path.join(tmp, 'cwd')
  mkdirSync(path.join(home, '.config/hactl'), {recursive: true})
  mkdirSync(cwd, {recursive: true})
  const homeFile = path.join(home, '.config/hactl/config.yaml')
  writeFileSync(homeFile, MINIMAL.replace('cluster: t', 'cluster: from-home'))

  test('the candidates, in order', () => {
    assert.deepEqual(configCandidates({cwd, home, env: {}}), [path.join(cwd, 'hactl.yaml'), homeFile])
    assert.deepEqual(configCandidates({cwd, home, env: {HACTL_CONFIG: '~/x.yaml'}}), [
      path.join(home, 'x.yaml'),
    ])
    assert.deepEqual(configCandidates({cwd, home, env: {HACTL_CONFIG: 'env.yaml'}, flag: 'rel/flag.yaml'}), [
      path.join(cwd, 'rel/flag.yaml'),
    ])
  })

  test('falls back to ~/.config/hactl/config.yaml, prefers ./hactl.yaml', () => {
    assert.equal(loadConfig({cwd, home, env: {}}).cluster, 'from-home')
    writeFileSync(path.join(cwd, 'hactl.yaml'), MINIMAL.replace('cluster: t', 'cluster: from-cwd'))
    try {
      const c = loadConfig({cwd, home, env: {}})
      assert.equal(c.cluster, 'from-cwd')
      assert.equal(c.file, path.join(cwd, 'hactl.yaml'), 'config.file is absolute')
    } finally {
      rmSync(path.join(cwd, 'hactl.yaml'))
    }
  })

  test('HACTL_CONFIG beats the files, --config beats HACTL_CONFIG', () => {
    const a = path.join(tmp, 'a.yaml')
    const b = path.join(tmp, 'b.yaml')
    writeFileSync(a, MINIMAL.replace('cluster: t', 'cluster: a'))
    writeFileSync(b, MINIMAL.replace('cluster: t', 'cluster: b'))
    assert.equal(loadConfig({cwd, home, env: {HACTL_CONFIG: a}}).cluster, 'a')
    assert.equal(loadConfig({cwd, home, env: {HACTL_CONFIG: a}, flag: b}).cluster, 'b')
  })

  test('a given file that does not exist is an error, not a fall-back', () => {
    const err = (() => {
      try {
        findConfigFile({cwd, home, env: {HACTL_CONFIG: path.join(tmp, 'nope.yaml')}})
      } catch (error) {
        return error as ConfigError
      }
      return undefined
    })()
    assert.ok(err instanceof ConfigError)
    assert.equal(err.message, `config file not found: ${path.join(tmp, 'nope.yaml')} (from HACTL_CONFIG)`)
    assert.equal(err.exitCode, 2)
  })

  test('nothing anywhere: the message lists where hactl looked and how to get a config', () => {
    const empty = path.join(tmp, 'empty-home')
    mkdirSync(empty, {recursive: true})
    assert.throws(
      () => findConfigFile({cwd, home: empty, env: {}}),
      (e: unknown) =>
        e instanceof ConfigError &&
        e.message ===
          `no hactl.yaml found (looked in ${path.join(cwd, 'hactl.yaml')}, ${path.join(empty, '.config/hactl/config.yaml')})` &&
        e.suggestions.some((s) => s.includes('hactl inventory import')),
    )
  })

  test('errors in a loaded file name it relative to the working directory', () => {
    mkdirSync(path.join(cwd, 'conf'), {recursive: true})
    writeFileSync(path.join(cwd, 'conf/bad.yaml'), 'cluster: t\nnodes: []\n')
    assert.throws(
      () => loadConfig({cwd, home, env: {}, flag: 'conf/bad.yaml'}),
      /^ConfigError: conf\/bad\.yaml:2:8: nodes: expected a mapping, got a list$/,
    )
  })

  test('a directory, or an unreadable file, is a clear error', () => {
    assert.throws(
      () => loadConfig({cwd, home, env: {}, flag: cwd}),
      (e: unknown) => e instanceof ConfigError && e.message === `${cwd} is a directory, not a config file`,
    )
    if (process.getuid?.() !== 0) {
      const f = path.join(tmp, 'secret.yaml')
      writeFileSync(f, MINIMAL, {mode: 0o000})
      assert.throws(
        () => loadConfig({cwd, home, env: {}, flag: f}),
        /cannot read .*secret\.yaml: permission denied/,
      )
    }
  })
})

describe('durations', () => {
  test('parse units and bare seconds', () => {
    assert.equal(parseDuration('500ms'), 500)
    assert.equal(parseDuration('5s'), 5000)
    assert.equal(parseDuration('2m'), 120_000)
    assert.equal(parseDuration('1h'), 3_600_000)
    assert.equal(parseDuration('1.5s'), 1500)
    assert.equal(parseDuration(2), 2000)
    assert.throws(() => parseDuration('5 s'))
  })

  test('formatDuration gives a string that parses back to the same milliseconds', () => {
    fc.assert(
      fc.property(fc.integer({min: 1, max: 10 * 86_400_000}), (ms) => {
        const s = formatDuration(ms)
        assert.match(s, /^\d+(ms|s|m|h)$/)
        assert.equal(parseDuration(s), ms)
      }),
    )
    assert.equal(formatDuration(30 * 60_000), '30m')
    assert.equal(formatDuration(1500), '1500ms')
  })
})

describe('warnings (config validate)', () => {
  const home = path.join(tmp, 'warn-home')
  mkdirSync(path.join(home, '.ssh'), {recursive: true})
  writeFileSync(path.join(home, '.ssh/known_hosts'), '')
  writeFileSync(path.join(home, '.ssh/id'), '')

  test('a sound config has none', () => {
    const c = parseConfig(
      'cluster: t\nssh: {identityFiles: [~/.ssh/id]}\nnodes:\n  ast1: {host: a1, roles: [asterisk, etcd]}\n  ast2: {host: a2, roles: [asterisk, etcd]}\n  kam1: {host: k1, roles: [kamailio, etcd]}\n',
      't.yaml',
    )
    assert.deepEqual(configWarnings(c, {home}), [])
  })

  test('things that parse but will bite', () => {
    const c = parseConfig(
      'cluster: t\nssh: {user: core, identityFiles: [~/.ssh/missing]}\netcd: {auth: {username: u, password: p}, via: ssh}\nnodes:\n  ast1: {host: a1, roles: [asterisk]}\n',
      't.yaml',
    )
    const w = configWarnings(c, {home})
    for (const part of [
      'no etcd: etcd.endpoints is empty and no node has the etcd role',
      'no node has the kamailio role',
      'asterisk.minInService is 1 and there is 1 asterisk node: every drain will be refused',
      'ssh user core is not root and ssh.become is false',
      'etcd.auth is set without TLS',
      'etcd.via is ssh but no node has the etcd role',
      'ssh.identityFiles: ~/.ssh/missing does not exist on this machine',
    ]) {
      assert.ok(
        w.some((x) => x.includes(part)),
        `warning "${part}" in:\n${w.join('\n')}`,
      )
    }
  })

  test('the summary has roles, endpoints and a display path', () => {
    const c = {...parseConfig(MINIMAL, 'x.yaml'), file: path.join(tmp, 'sub/hactl.yaml')}
    const s = summarizeConfig(c, {cwd: tmp, home})
    assert.equal(s.file, 'sub/hactl.yaml')
    assert.deepEqual(s.roles, {asterisk: ['ast1'], kamailio: ['kam1'], etcd: ['ast1'], homer: []})
    assert.deepEqual(s.etcdEndpoints, ['http://10.0.0.21:2379'])
  })
})
