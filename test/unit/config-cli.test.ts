import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import {existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {after, before, describe, test} from 'node:test'

// The built CLI (npm run build first): exit codes, stdout/stderr split, one-line errors.
const repo = path.resolve(import.meta.dirname, '../..')
const fixtures = path.join(repo, 'test/fixtures/config')
const tmp = mkdtempSync(path.join(tmpdir(), 'hactl-config-cli-'))
after(() => rmSync(tmp, {recursive: true, force: true}))

function hactl(args: string[], opts: {cwd?: string; env?: Record<string, string>} = {}) {
  const res = spawnSync(process.execPath, [path.join(repo, 'bin/run.js'), ...args], {
    cwd: opts.cwd ?? tmp,
    encoding: 'utf8',
    // A home without ~/.config/hactl, no inherited HACTL_CONFIG, no colours.
    env: {PATH: process.env.PATH ?? '', HOME: tmp, NO_COLOR: '1', ...opts.env},
    timeout: 30_000,
  })
  return {code: res.status, stdout: res.stdout, stderr: res.stderr}
}

before(() => {
  for (const src of [
    'src/commands/config/validate.ts',
    'src/commands/config/show.ts',
    'src/commands/config/schema.ts',
    'src/lib/config/load.ts',
    'src/lib/config/schema.ts',
    'src/lib/config/problems.ts',
  ]) {
    const dist = path.join(repo, src.replace(/^src\//, 'dist/').replace(/\.ts$/, '.js'))
    assert.ok(existsSync(dist), `${dist} is missing: run npm run build`)
    assert.ok(
      statSync(dist).mtimeMs >= statSync(path.join(repo, src)).mtimeMs,
      `${dist} is older than ${src}: run npm run build`,
    )
  }
})

describe('hactl config validate', () => {
  test('a good file: exit 0 and one ok line on stdout', () => {
    const r = hactl(['config', 'validate', '-c', path.join(fixtures, 'good/lab.yaml')], {cwd: fixtures})
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout, 'ok: good/lab.yaml (cluster lab, 2 nodes: ast1, kam1)\n')
    for (const line of r.stderr.split('\n').filter(Boolean)) assert.match(line, /^warning: /)
  })

  test('FILE as an argument, and HACTL_CONFIG', () => {
    assert.equal(
      hactl(['config', 'validate', 'good/minimal.yaml'], {cwd: fixtures}).stdout,
      'ok: good/minimal.yaml (cluster tiny, 1 node: ast1)\n',
    )
    const r = hactl(['config', 'validate'], {cwd: fixtures, env: {HACTL_CONFIG: 'good/coreos.yaml'}})
    assert.equal(
      r.stdout,
      'ok: good/coreos.yaml (cluster coreos, 6 nodes: coreos0, coreos1, coreos2, coreos3, coreos4, coreos5)\n',
    )
  })

  test('--json returns the summary', () => {
    const r = hactl(['config', 'validate', '--json', '-c', path.join(fixtures, 'good/mixed.yaml')])
    assert.equal(r.code, 0, r.stderr)
    const s = JSON.parse(r.stdout) as {
      ok: boolean
      cluster: string
      nodes: Array<{name: string}>
      roles: Record<string, string[]>
      warnings: string[]
    }
    assert.equal(s.ok, true)
    assert.equal(s.cluster, 'mixed.prod-2')
    assert.deepEqual(s.roles.homer, ['ast-2'])
    assert.ok(Array.isArray(s.warnings))
    assert.equal(r.stderr, '', 'warnings are in the JSON, not on stderr')
  })

  // Errors: exit 2, "Error: FILE:LINE:COL: message", an optional "Hint:" line, nothing else.
  const expected = JSON.parse(readFileSync(path.join(fixtures, 'bad/expected.json'), 'utf8')) as Record<
    string,
    {message: string; hint?: string}
  >
  for (const file of [
    'tabs.yaml',
    'duplicate-node.yaml',
    'duplicate-host.yaml',
    'unknown-node-key.yaml',
    'port-string.yaml',
    'wipe-dotdot.yaml',
    'datadir-root.yaml',
    'empty.yaml',
    'syntax-quote.yaml',
    'top-list.yaml',
    'missing-cluster.yaml',
  ]) {
    test(`bad/${file}: exit 2, one clear line (and a hint), no stack trace`, () => {
      const r = hactl(['config', 'validate', '-c', file], {cwd: path.join(fixtures, 'bad')})
      const want = expected[file]!
      assert.equal(r.code, 2, r.stderr)
      assert.equal(r.stdout, '')
      assert.equal(r.stderr, `Error: ${want.message}\n${want.hint ? `Hint: ${want.hint}\n` : ''}`)
    })
  }

  test('--json errors are JSON on stdout with exit 2', () => {
    const r = hactl(['config', 'validate', '--json', '-c', 'tabs.yaml'], {cwd: path.join(fixtures, 'bad')})
    assert.equal(r.code, 2)
    const e = JSON.parse(r.stdout) as {error: {kind: string; message: string; exitCode: number}}
    assert.equal(e.error.kind, 'ConfigError')
    assert.equal(e.error.message, expected['tabs.yaml']!.message)
    assert.equal(e.error.exitCode, 2)
  })

  test('no config anywhere: exit 2 with where it looked and what to do', () => {
    const empty = path.join(tmp, 'nowhere')
    mkdirSync(empty, {recursive: true})
    const r = hactl(['config', 'validate'], {cwd: empty})
    assert.equal(r.code, 2)
    assert.match(
      r.stderr,
      /^Error: no hactl\.yaml found \(looked in .*nowhere\/hactl\.yaml, .*\.config\/hactl\/config\.yaml\)\nHint: .*hactl inventory import/,
    )
    assert.ok(!r.stderr.includes('    at '))
  })

  test('a huge file: exit 2 without reading it into the parser', () => {
    const f = path.join(tmp, 'huge.yaml')
    writeFileSync(f, `cluster: t\n# ${'x'.repeat(3 * 1024 * 1024)}\n`)
    const r = hactl(['config', 'validate', '-c', f])
    assert.equal(r.code, 2)
    assert.equal(
      r.stderr.split('\n')[0],
      `Error: ${f}:1:1: the file is 3.0 MiB; a hactl.yaml is at most 1 MiB`,
    )
  })
})

describe('hactl config show', () => {
  test('prints the resolved YAML with the password masked', () => {
    const r = hactl(['config', 'show', '-c', path.join(fixtures, 'good/mixed.yaml')])
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /^    password: "\*\*\*\*\*\*\*\*"$/m)
    assert.ok(!r.stdout.includes('s3cret'))
    assert.match(
      r.stdout,
      /^  kam-1: \{host: kam1\.example\.net, port: 2222, user: core, roles: \[kamailio\]\}$/m,
    )
  })

  test('--json returns the object', () => {
    const r = hactl(['config', 'show', '--json', '-c', path.join(fixtures, 'good/mixed.yaml')])
    assert.equal(r.code, 0, r.stderr)
    const c = JSON.parse(r.stdout) as {
      etcd: {auth: {password: string}; timeout: string}
      nodes: Record<string, unknown>
    }
    assert.equal(c.etcd.auth.password, '********')
    assert.equal(c.etcd.timeout, '750ms')
    assert.deepEqual(Object.keys(c.nodes), ['ast-1', 'ast-2', 'ast-3', 'kam-1', 'etcd1'])
  })

  test('an invalid config: exit 2', () => {
    const r = hactl(['config', 'show', '-c', path.join(fixtures, 'bad/bad-role.yaml')])
    assert.equal(r.code, 2)
    assert.match(r.stderr, /^Error: .*bad-role\.yaml:3:45: nodes\.ast1\.roles\[1\]: "etdc" is not a role/)
  })
})

describe('hactl config schema', () => {
  test('prints schema/hactl.schema.json, with or without --json, and needs no config', () => {
    const file = readFileSync(path.join(repo, 'schema/hactl.schema.json'), 'utf8')
    const r = hactl(['config', 'schema'])
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout, file)
    const j = hactl(['config', 'schema', '--json'])
    assert.equal(j.code, 0, j.stderr)
    assert.deepEqual(JSON.parse(j.stdout), JSON.parse(file))
  })
})
