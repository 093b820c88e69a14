import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {after, describe, test} from 'node:test'
import {remoteWipeScript, WIPE_REFUSED_EXIT, wipePaths} from '../../src/lib/etcd/paths.js'
import {UserError} from '../../src/lib/errors.js'

describe('wipePaths', () => {
  test('sub-paths become absolute paths inside the data dir', () => {
    assert.deepEqual(wipePaths('/var/lib/etcd', ['member']), ['/var/lib/etcd/member'])
    assert.deepEqual(wipePaths('/var/lib/etcd/', ['log', 'conf/', './conf', 'a/../snap']), [
      '/var/lib/etcd/log',
      '/var/lib/etcd/conf',
      '/var/lib/etcd/snap',
    ])
    assert.deepEqual(wipePaths('/var/lib/etcd2', ['member/wal']), ['/var/lib/etcd2/member/wal'])
  })

  test('refuses anything not strictly inside', () => {
    for (const sub of [
      '',
      ' ',
      '.',
      './',
      '/',
      '/etc',
      '..',
      '../etcd2',
      'member/../..',
      'a/../../b',
      'x\ny',
      'x\u0000',
    ]) {
      assert.throws(() => wipePaths('/var/lib/etcd', [sub]), UserError, JSON.stringify(sub))
    }
  })

  test('refuses a relative or root data dir', () => {
    assert.throws(() => wipePaths('var/lib/etcd', ['member']), /absolute/)
    assert.throws(() => wipePaths('/', ['member']), /"\/"/)
    assert.throws(() => wipePaths('//', ['etc']), UserError)
  })
})

describe('remoteWipeScript', () => {
  test('refuses paths that skipped wipePaths', () => {
    assert.throws(() => remoteWipeScript(['/etc'], '/var/lib/etcd'), UserError)
    assert.throws(() => remoteWipeScript(['/var/lib/etcd'], '/var/lib/etcd'), UserError)
    assert.throws(() => remoteWipeScript(['/var/lib/etcd/../x'], '/var/lib/etcd'), UserError)
    assert.throws(() => remoteWipeScript([], '/var/lib/etcd'), UserError)
  })

  test('quotes every path', () => {
    const script = remoteWipeScript(["/var/lib/etcd/it's $(reboot)"], '/var/lib/etcd')
    assert.match(script, /hactl_check '\/var\/lib\/etcd\/it'\\''s \$\(reboot\)'/)
  })

  // The script for real, with sh, in a temp dir.
  const roots: string[] = []
  after(() => {
    for (const r of roots) rmSync(r, {recursive: true, force: true})
  })

  function scene() {
    const root = mkdtempSync(path.join(tmpdir(), 'hactl-wipe-'))
    roots.push(root)
    const data = path.join(root, 'etcd')
    const outside = path.join(root, 'outside')
    mkdirSync(path.join(data, 'member', 'snap'), {recursive: true})
    writeFileSync(path.join(data, 'member', 'snap', 'db'), 'data')
    writeFileSync(path.join(data, 'keep'), 'keep')
    mkdirSync(outside)
    writeFileSync(path.join(outside, 'precious'), 'precious')
    return {root, data, outside}
  }

  function run(script: string) {
    const r = spawnSync('sh', ['-c', script], {encoding: 'utf8'})
    return {code: r.status, stdout: r.stdout, stderr: r.stderr}
  }

  test('removes the paths inside, reports absent ones, leaves the rest', () => {
    const {data} = scene()
    const r = run(remoteWipeScript(wipePaths(data, ['member', 'log']), data))
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout, `removed ${data}/member\nabsent ${data}/log\n`)
    assert.equal(existsSync(path.join(data, 'member')), false)
    assert.equal(readFileSync(path.join(data, 'keep'), 'utf8'), 'keep')
  })

  test('a symlink pointing outside the data dir: refused, nothing removed', () => {
    // Given member/ inside, and "evil" → a directory outside
    const {data, outside} = scene()
    symlinkSync(outside, path.join(data, 'evil'))
    // When both are to be wiped
    const r = run(remoteWipeScript(wipePaths(data, ['member', 'evil']), data))
    // Then the script refuses with exit 3 and removes neither
    assert.equal(r.code, WIPE_REFUSED_EXIT)
    assert.match(r.stderr, /refusing to wipe .*\/evil: it resolves to .*\/outside, outside the data dir/)
    assert.equal(r.stdout, '')
    assert.ok(existsSync(path.join(data, 'member', 'snap', 'db')))
    assert.ok(lstatSync(path.join(data, 'evil')).isSymbolicLink())
    assert.equal(readFileSync(path.join(outside, 'precious'), 'utf8'), 'precious')
  })

  test('a symlinked directory along the path: refused', () => {
    const {data, outside} = scene()
    mkdirSync(path.join(outside, 'member'))
    symlinkSync(outside, path.join(data, 'sub'))
    const r = run(remoteWipeScript(wipePaths(data, ['sub/member']), data))
    assert.equal(r.code, WIPE_REFUSED_EXIT)
    assert.ok(existsSync(path.join(outside, 'member')))
  })

  test('a symlink outside whose target is back inside: refused (the link itself lives outside)', () => {
    const {data, outside} = scene()
    symlinkSync(path.join(data, 'member'), path.join(outside, 'link'))
    symlinkSync(outside, path.join(data, 'sub'))
    const r = run(remoteWipeScript(wipePaths(data, ['sub/link']), data))
    assert.equal(r.code, WIPE_REFUSED_EXIT)
    assert.match(r.stderr, /its directory resolves to/)
    assert.ok(lstatSync(path.join(outside, 'link')).isSymbolicLink())
    assert.ok(existsSync(path.join(data, 'member', 'snap', 'db')))
  })

  test('a symlink to the data dir itself, or to /: refused', () => {
    const {data} = scene()
    symlinkSync(data, path.join(data, 'self'))
    symlinkSync('/', path.join(data, 'root'))
    for (const sub of ['self', 'root']) {
      const r = run(remoteWipeScript(wipePaths(data, [sub]), data))
      assert.equal(r.code, WIPE_REFUSED_EXIT, sub)
    }
    assert.ok(existsSync(path.join(data, 'member', 'snap', 'db')))
  })

  test('a symlink inside pointing inside: the data and the link are removed', () => {
    const {data} = scene()
    symlinkSync(path.join(data, 'member'), path.join(data, 'current'))
    const r = run(remoteWipeScript(wipePaths(data, ['current']), data))
    assert.equal(r.code, 0, r.stderr)
    assert.equal(existsSync(path.join(data, 'member')), false)
    assert.throws(() => lstatSync(path.join(data, 'current')))
    assert.ok(existsSync(path.join(data, 'keep')))
  })

  test('the data dir itself behind a symlink (as /var/lib/etcd → /data/etcd): works', () => {
    const {root, data} = scene()
    const alias = path.join(root, 'alias')
    symlinkSync(data, alias)
    const r = run(remoteWipeScript(wipePaths(alias, ['member']), alias))
    assert.equal(r.code, 0, r.stderr)
    assert.equal(existsSync(path.join(data, 'member')), false)
  })

  test('paths with spaces and quotes', () => {
    const {data} = scene()
    const odd = 'it\'s a "dir" $(x)'
    mkdirSync(path.join(data, odd))
    const r = run(remoteWipeScript(wipePaths(data, [odd]), data))
    assert.equal(r.code, 0, r.stderr)
    assert.equal(existsSync(path.join(data, odd)), false)
    assert.ok(existsSync(path.join(data, 'member')))
  })
})
