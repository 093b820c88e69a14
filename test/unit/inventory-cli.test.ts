import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import {existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {after, before, describe, test} from 'node:test'

// `hactl inventory import` through the built CLI (npm run build first).
const repo = path.resolve(import.meta.dirname, '../..')
const fixtures = path.join(repo, 'test/fixtures/ansible')
const tmp = mkdtempSync(path.join(tmpdir(), 'hactl-inventory-cli-'))
after(() => rmSync(tmp, {recursive: true, force: true}))

function hactl(args: string[], cwd = tmp) {
  const res = spawnSync(process.execPath, [path.join(repo, 'bin/run.js'), ...args], {
    cwd,
    encoding: 'utf8',
    env: {PATH: process.env.PATH ?? '', HOME: tmp, NO_COLOR: '1'},
    timeout: 30_000,
  })
  return {code: res.status, stdout: res.stdout, stderr: res.stderr}
}

before(() => {
  for (const src of [
    'src/commands/inventory/import.ts',
    'src/lib/inventory/import.ts',
    'src/lib/inventory/ansible.ts',
    'src/lib/inventory/host-pattern.ts',
  ]) {
    const dist = path.join(repo, src.replace(/^src\//, 'dist/').replace(/\.ts$/, '.js'))
    assert.ok(existsSync(dist), `${dist} is missing: run npm run build`)
    assert.ok(
      statSync(dist).mtimeMs >= statSync(path.join(repo, src)).mtimeMs,
      `${dist} is older than ${src}: run npm run build`,
    )
  }
})

describe('hactl inventory import', () => {
  test('writes hactl.yaml from the INI inventory, prints a summary, and config validate accepts it', () => {
    const r = hactl(['inventory', 'import', path.join(fixtures, 'coreos.ini')])
    assert.equal(r.code, 0, r.stderr)
    const lines = r.stdout.split('\n')
    assert.equal(
      lines[0],
      `wrote ${path.join(tmp, 'hactl.yaml')}: cluster coreos, 6 nodes from ${path.join(fixtures, 'coreos.ini')}`,
    )
    assert.match(lines[1]!, /^NODE +HOST +PORT +USER +ROLES$/)
    assert.match(lines[2]!, /^coreos0 +172\.17\.8\.100 +22 +core +kamailio, etcd$/)
    assert.match(r.stdout, /^next: hactl config validate -c .*hactl\.yaml$/m)
    assert.match(r.stderr, /^warning: the etcd section uses the CoreOS etcd2 layout/m)
    const v = hactl(['config', 'validate'])
    assert.equal(v.code, 0, v.stderr)
    assert.equal(
      v.stdout,
      'ok: hactl.yaml (cluster coreos, 6 nodes: coreos0, coreos1, coreos2, coreos3, coreos4, coreos5)\n',
    )
  })

  test('refuses to overwrite without --force (exit 2, one line and a hint), overwrites with it', () => {
    const out = path.join(tmp, 'mine.yaml')
    writeFileSync(out, '# mine\n')
    const r = hactl(['inventory', 'import', path.join(fixtures, 'coreos.yml'), '-o', 'mine.yaml'])
    assert.equal(r.code, 2)
    assert.equal(
      r.stderr,
      'Error: mine.yaml already exists; not overwriting it\nHint: pass --force to replace it, or --output OTHER.yaml to write elsewhere\n',
    )
    assert.equal(readFileSync(out, 'utf8'), '# mine\n')
    const f = hactl([
      'inventory',
      'import',
      path.join(fixtures, 'coreos.yml'),
      '-o',
      'mine.yaml',
      '--force',
      '--cluster',
      'legacy',
    ])
    assert.equal(f.code, 0, f.stderr)
    assert.match(readFileSync(out, 'utf8'), /^cluster: legacy$/m)
  })

  test('--json returns nodes, renames, skipped hosts and warnings', () => {
    const r = hactl([
      'inventory',
      'import',
      path.join(fixtures, 'ranges.ini'),
      '-o',
      'ranges.yaml',
      '--etcd-group',
      'etcd_members',
      '--json',
    ])
    assert.equal(r.code, 0, r.stderr)
    const j = JSON.parse(r.stdout) as {
      output: string
      cluster: string
      nodes: Array<{name: string; roles: string[]}>
      renamed: Array<{from: string; to: string}>
      skipped: Array<{host: string}>
      warnings: string[]
    }
    assert.equal(j.output, path.join(tmp, 'ranges.yaml'))
    assert.equal(j.cluster, 'ranges')
    assert.equal(j.nodes.length, 7)
    assert.deepEqual(
      j.renamed.find((x) => x.from === 'SIP-Proxy-1'),
      {from: 'SIP-Proxy-1', to: 'sip-proxy-1'},
    )
    assert.deepEqual(
      j.skipped.map((s) => s.host),
      ['bastion'],
    )
    assert.ok(j.warnings.length > 0)
  })

  test('--output - prints the YAML to stdout and the summary to stderr', () => {
    const r = hactl([
      'inventory',
      'import',
      path.join(fixtures, 'coreos-dir'),
      '--output',
      '-',
      '--etcd-group',
      'none',
    ])
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /^# hactl\.yaml imported from the Ansible inventory /)
    assert.match(r.stdout, /^  coreos2: \{host: coreos2, roles: \[asterisk\]\}$/m)
    assert.match(r.stderr, /^imported cluster coreos-dir, 6 nodes from /m)
  })

  test('role group flags: an unknown group is exit 2 with the groups listed', () => {
    const r = hactl([
      'inventory',
      'import',
      path.join(fixtures, 'coreos.ini'),
      '-o',
      '-',
      '--asterisk-group',
      'pbx',
    ])
    assert.equal(r.code, 2)
    assert.match(
      r.stderr,
      /^Error: --asterisk-group pbx: the inventory has no group pbx\nHint: its groups: all, ungrouped, coreos, kamailio, asterisk, homer, leader, keepalive_leader, keepalive_follower, keepalive\n$/,
    )
  })

  test('a broken inventory: exit 2 with file:line:col; a missing one: exit 2', () => {
    const bad = path.join(tmp, 'bad.ini')
    writeFileSync(bad, '[asterisk]\nast1\n[asterisk:children]\nmissing\n')
    const r = hactl(['inventory', 'import', bad, '-o', '-'])
    assert.equal(r.code, 2)
    assert.equal(
      r.stderr,
      `Error: ${bad}:4:1: [asterisk:children] lists group missing, which is never declared\nHint: add a [missing] section with its hosts\n`,
    )
    const m = hactl(['inventory', 'import', 'nope.ini'])
    assert.equal(m.code, 2)
    assert.match(m.stderr, /^Error: inventory not found: .*nope\.ini\n/)
    assert.ok(!m.stderr.includes('    at '))
  })
})
