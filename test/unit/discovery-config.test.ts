import assert from 'node:assert/strict'
import {readFileSync} from 'node:fs'
import path from 'node:path'
import {describe, test} from 'node:test'
import {fileURLToPath} from 'node:url'
import {parse} from 'yaml'
import {
  DiscoveryConfigError,
  readDiscoveryUrl,
  writeDiscoveryUrl,
} from '../../src/lib/etcd/discovery-config.js'
import {UserError} from '../../src/lib/errors.js'

const dir = path.join(path.dirname(fileURLToPath(import.meta.url)), '../fixtures/cloud-config')
const fixture = (name: string): string => readFileSync(path.join(dir, name), 'utf8')

const OLD = 'https://discovery.etcd.io/0b5f1a4bd3b0e1f2a3c4d5e6f7a8b9c0'
const NEW = 'http://10.77.0.2:8087/v2/keys/discovery/9d1e6c2a'
const cc = {format: 'cloud-config' as const}
const env = {format: 'env' as const}

/** The lines that differ between two texts of the same length in lines. */
function changedLines(a: string, b: string): [string, string][] {
  const la = a.split('\n')
  const lb = b.split('\n')
  assert.equal(la.length, lb.length, 'line count changed')
  return la.flatMap((l, i) => (l === lb[i] ? [] : [[l, lb[i]!] as [string, string]]))
}

describe('cloud-config', () => {
  test('reads coreos.etcd2.discovery', () => {
    assert.equal(readDiscoveryUrl(fixture('user_data'), cc), OLD)
    assert.equal(
      readDiscoveryUrl(fixture('user_data-quoted'), cc),
      'http://10.77.0.2:8087/v2/keys/discovery/abc',
    )
    assert.equal(readDiscoveryUrl(fixture('user_data-no-discovery'), cc), null)
    assert.equal(readDiscoveryUrl(fixture('user_data-no-etcd2'), cc), null)
  })

  test('rewrites only the value: every other byte stays, the trailing comment too', () => {
    const before = fixture('user_data')
    const after = writeDiscoveryUrl(before, NEW, cc)
    assert.deepEqual(changedLines(before, after), [
      [
        `    discovery: ${OLD}   # replaced by hactl cluster rediscover`,
        `    discovery: ${NEW}   # replaced by hactl cluster rediscover`,
      ],
    ])
    assert.ok(after.startsWith('#cloud-config\n'))
    assert.equal(readDiscoveryUrl(after, cc), NEW)
  })

  test('keeps the quoting style of a quoted value in a flow mapping', () => {
    const after = writeDiscoveryUrl(fixture('user_data-quoted'), NEW, cc)
    assert.equal(after, `#cloud-config\ncoreos:\n  etcd2: {name: ast3, discovery: "${NEW}"}\n`)
  })

  test('adds a missing key at the top of its mapping, other lines untouched', () => {
    const before = fixture('user_data-no-discovery')
    const after = writeDiscoveryUrl(before, NEW, cc)
    const lines = after.split('\n')
    assert.equal(lines[2], `  etcd2:`)
    assert.equal(lines[3], `    discovery: ${NEW}`)
    assert.equal(lines.filter((_, i) => i !== 3).join('\n'), before)
  })

  test('adds the missing parents too, keeping comments and keys', () => {
    const before = fixture('user_data-no-etcd2')
    const after = writeDiscoveryUrl(before, NEW, cc)
    assert.ok(after.startsWith('#cloud-config\n# a host that has never been an etcd member\n'))
    assert.deepEqual(parse(after), {
      coreos: {
        update: {'reboot-strategy': 'off'},
        units: [{name: 'docker.service', command: 'start'}],
        etcd2: {discovery: NEW},
      },
    })
  })

  test('an empty file becomes a cloud-config', () => {
    const after = writeDiscoveryUrl('', NEW, cc)
    assert.ok(after.startsWith('#cloud-config\n'))
    assert.deepEqual(parse(after), {coreos: {etcd2: {discovery: NEW}}})
  })

  test('the key path is configurable', () => {
    const text = '#cloud-config\nhactl:\n  etcd:\n    discovery-url: "x"\n'
    const loc = {format: 'cloud-config' as const, key: 'hactl.etcd.discovery-url'}
    assert.equal(readDiscoveryUrl(text, loc), 'x')
    assert.equal(
      writeDiscoveryUrl(text, NEW, loc),
      `#cloud-config\nhactl:\n  etcd:\n    discovery-url: "${NEW}"\n`,
    )
  })

  test('a top-level key goes below the #cloud-config line', () => {
    const loc = {format: 'cloud-config' as const, key: 'discovery'}
    assert.equal(
      writeDiscoveryUrl('#cloud-config\n# about coreos\ncoreos: {}\n', NEW, loc),
      `#cloud-config\ndiscovery: ${NEW}\n# about coreos\ncoreos: {}\n`,
    )
  })

  test('refuses files that are not cloud-config, and keys that are not scalars', () => {
    assert.throws(() => readDiscoveryUrl('#!/bin/sh\necho hi\n', cc), DiscoveryConfigError)
    assert.throws(() => writeDiscoveryUrl('#!/bin/sh\necho hi\n', NEW, cc), /not a cloud-config file/)
    assert.throws(
      () => writeDiscoveryUrl('#cloud-config\ncoreos:\n  etcd2:\n    discovery: [a]\n', NEW, cc),
      /not a URL/,
    )
    assert.throws(() => readDiscoveryUrl('#cloud-config\ncoreos: [\n', cc), /not valid YAML/)
    assert.throws(() => readDiscoveryUrl('#cloud-config\n', {format: 'cloud-config', key: 'a..b'}), UserError)
  })
})

describe('env file and systemd drop-in', () => {
  test('reads the effective assignment', () => {
    assert.equal(readDiscoveryUrl(fixture('20-cloudinit.conf'), env), OLD)
    // The commented-out line does not count; quotes are removed.
    assert.equal(readDiscoveryUrl(fixture('etcd.env'), env), 'http://10.77.0.2:8087/v2/keys/discovery/4f0c')
    assert.equal(readDiscoveryUrl('A=1\n', env), null)
    // Later assignments win, as in systemd and sh.
    assert.equal(
      readDiscoveryUrl('ETCD_DISCOVERY=http://a/1\nexport ETCD_DISCOVERY=http://b/2 # comment\n', env),
      'http://b/2',
    )
    assert.equal(
      readDiscoveryUrl('[Service]\nEnvironment=ETCD_NAME=x "ETCD_DISCOVERY=http://h/100%%"\n', env),
      'http://h/100%',
    )
  })

  test('rewrites the drop-in line, keeping the others', () => {
    const before = fixture('20-cloudinit.conf')
    const after = writeDiscoveryUrl(before, NEW, env)
    assert.deepEqual(changedLines(before, after), [
      [`Environment="ETCD_DISCOVERY=${OLD}"`, `Environment="ETCD_DISCOVERY=${NEW}"`],
    ])
  })

  test('rewrites the env line, keeping its quotes and the commented-out line', () => {
    const before = fixture('etcd.env')
    const after = writeDiscoveryUrl(before, NEW, env)
    assert.deepEqual(changedLines(before, after), [
      ['ETCD_DISCOVERY="http://10.77.0.2:8087/v2/keys/discovery/4f0c"', `ETCD_DISCOVERY="${NEW}"`],
    ])
  })

  test('rewrites every assignment, one of several on an Environment= line, and escapes % for systemd', () => {
    const text =
      '[Service]\nEnvironment=ETCD_NAME=x "ETCD_DISCOVERY=http://a/1" \'Y=2\'\nEnvironment="ETCD_DISCOVERY=http://b/2"\n'
    const url = 'http://h/a%20b'
    assert.equal(
      writeDiscoveryUrl(text, url, env),
      `[Service]\nEnvironment=ETCD_NAME=x "ETCD_DISCOVERY=http://h/a%%20b" 'Y=2'\nEnvironment="ETCD_DISCOVERY=http://h/a%%20b"\n`,
    )
    assert.equal(
      writeDiscoveryUrl('export ETCD_DISCOVERY=http://a/1 # old\n', NEW, env),
      `export ETCD_DISCOVERY=${NEW} # old\n`,
    )
  })

  test('adds the line when missing', () => {
    assert.equal(writeDiscoveryUrl('ETCD_NAME=ast1\n', NEW, env), `ETCD_NAME=ast1\nETCD_DISCOVERY=${NEW}\n`)
    assert.equal(writeDiscoveryUrl('ETCD_NAME=ast1', NEW, env), `ETCD_NAME=ast1\nETCD_DISCOVERY=${NEW}\n`)
    assert.equal(writeDiscoveryUrl('', NEW, env), `ETCD_DISCOVERY=${NEW}\n`)
    assert.equal(
      writeDiscoveryUrl(
        '[Unit]\nAfter=x\n\n[Service]\nEnvironment="ETCD_NAME=ast1"\n\n[Install]\nWantedBy=y\n',
        NEW,
        env,
      ),
      `[Unit]\nAfter=x\n\n[Service]\nEnvironment="ETCD_NAME=ast1"\nEnvironment="ETCD_DISCOVERY=${NEW}"\n\n[Install]\nWantedBy=y\n`,
    )
    assert.equal(
      writeDiscoveryUrl('[Unit]\nAfter=x\n', NEW, env),
      `[Unit]\nAfter=x\n[Service]\nEnvironment="ETCD_DISCOVERY=${NEW}"\n`,
    )
  })

  test('a custom variable name', () => {
    const loc = {format: 'env' as const, key: 'DISCOVERY'}
    assert.equal(
      writeDiscoveryUrl('DISCOVERY=http://a/1\nETCD_DISCOVERY=keep\n', NEW, loc),
      `DISCOVERY=${NEW}\nETCD_DISCOVERY=keep\n`,
    )
    assert.throws(() => readDiscoveryUrl('', {format: 'env', key: 'A B'}), UserError)
  })
})

describe('URL checks', () => {
  test('refuses what is not an http(s) URL or would need escaping', () => {
    for (const bad of [
      'not a url',
      'ftp://x/y',
      'http://x/"y',
      "http://x/'y",
      'http://x/a\nETCD_X=1',
      'http://x/`id`',
    ]) {
      assert.throws(() => writeDiscoveryUrl('', bad, env), UserError, bad)
      assert.throws(() => writeDiscoveryUrl('#cloud-config\n', bad, cc), UserError, bad)
    }
  })
})
