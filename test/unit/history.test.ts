import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import {appendFileSync, mkdtempSync, readFileSync, rmSync, statSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {after, before, describe, test} from 'node:test'
import {
  appendHistory,
  defaultStateDir,
  finishHistoryEntry,
  historyFile,
  historyRow,
  newHistoryId,
  readHistory,
  startHistoryEntry,
  type HistoryEntry,
} from '../../src/lib/history.js'

const repo = path.resolve(import.meta.dirname, '../..')

function entry(i: number, over: Partial<HistoryEntry> = {}): HistoryEntry {
  const at = new Date(Date.UTC(2025, 0, 1, 12, 0, i))
  return {
    id: newHistoryId(at),
    when: at.toISOString(),
    who: 'alice',
    host: 'laptop',
    cluster: 'lab',
    argv: ['node', 'drain', `ast${i}`],
    ok: true,
    exitCode: 0,
    durationMs: 1500 + i,
    ...over,
  }
}

describe('local history', () => {
  let dir: string
  before(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'hactl-history-'))
  })
  after(() => {
    rmSync(dir, {recursive: true, force: true})
  })

  test('the state dir follows XDG_STATE_HOME, else ~/.local/state; a relative XDG path is ignored', () => {
    assert.equal(defaultStateDir({XDG_STATE_HOME: '/x/state'}, '/home/a'), '/x/state/hactl')
    assert.equal(defaultStateDir({}, '/home/a'), '/home/a/.local/state/hactl')
    assert.equal(defaultStateDir({XDG_STATE_HOME: 'rel/state'}, '/home/a'), '/home/a/.local/state/hactl')
    assert.equal(historyFile('/x/state/hactl'), '/x/state/hactl/history.jsonl')
  })

  test('append creates the directories and writes one JSON line per run; read gives newest first', async () => {
    const stateDir = path.join(dir, 'a', 'b', 'hactl')
    for (let i = 1; i <= 3; i++) {
      const res = await appendHistory(entry(i), {stateDir})
      assert.equal(res.file, path.join(stateDir, 'history.jsonl'))
      assert.equal(res.fileError, undefined)
      assert.equal(res.etcd, undefined)
    }
    const lines = readFileSync(path.join(stateDir, 'history.jsonl'), 'utf8').trimEnd().split('\n')
    assert.equal(lines.length, 3)
    assert.equal(JSON.parse(lines[0]!).argv[2], 'ast1')
    assert.equal(statSync(path.join(stateDir, 'history.jsonl')).mode & 0o777, 0o600)

    const all = await readHistory({stateDir})
    assert.deepEqual(
      all.entries.map((e) => e.argv[2]),
      ['ast3', 'ast2', 'ast1'],
    )
    const two = await readHistory({stateDir, limit: 2})
    assert.deepEqual(
      two.entries.map((e) => e.argv[2]),
      ['ast3', 'ast2'],
    )
    assert.equal(two.invalidLines, 0)
  })

  test('broken lines are counted and skipped; a missing file is an empty history', async () => {
    const stateDir = path.join(dir, 'broken')
    await appendHistory(entry(1), {stateDir})
    appendFileSync(path.join(stateDir, 'history.jsonl'), '{"half": \n\nnot json\n')
    await appendHistory(entry(2), {stateDir})
    const res = await readHistory({stateDir})
    assert.equal(res.entries.length, 2)
    assert.equal(res.invalidLines, 2)
    const none = await readHistory({stateDir: path.join(dir, 'nothing-here')})
    assert.deepEqual(none.entries, [])
  })

  test('an unwritable state dir is reported, not thrown', async () => {
    // Given a state dir path that runs through a regular file
    const file = path.join(dir, 'a-file')
    appendFileSync(file, 'x')
    const res = await appendHistory(entry(1), {stateDir: path.join(file, 'hactl')})
    assert.match(res.fileError ?? '', /ENOTDIR|EEXIST/)
  })

  test('start/finish fill in who, when, outcome and duration', () => {
    const at = new Date('2025-03-01T10:00:00Z')
    const e = startHistoryEntry({
      cluster: 'lab',
      argv: ['node', 'drain', 'ast3'],
      plan: ['disable ast3 on kam1'],
      at,
    })
    assert.match(e.id, /^\d{15}-[0-9a-f]{8}$/)
    assert.equal(e.when, at.toISOString())
    assert.ok(e.who.length > 0 && e.host.length > 0)
    const done = finishHistoryEntry(e, {
      exitCode: 3,
      results: [
        {node: 'kam1', ok: true, detail: 'disabled'},
        {node: 'kam2', ok: false, detail: 'unreachable'},
      ],
      now: new Date(at.getTime() + 65_000),
    })
    assert.equal(done.ok, false)
    assert.equal(done.exitCode, 3)
    assert.equal(done.durationMs, 65_000)
    const row = historyRow(done)
    assert.equal(row.command, 'hactl node drain ast3')
    assert.equal(row.result, 'partial (1/2 ok, exit 3)')
    assert.equal(row.duration, '1m5s')
    assert.match(row.who, /@/)
    assert.equal(
      historyRow({...done, argv: ['node', 'drain', 'ast3', '--reason', "it's broken"]}).command,
      `hactl node drain ast3 --reason 'it'\\''s broken'`,
    )
  })

  test('IDs sort by time', () => {
    const a = newHistoryId(new Date(999))
    const b = newHistoryId(new Date(1_700_000_000_000))
    assert.ok(a < b)
  })
})

describe('hactl history', () => {
  let dir: string
  before(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'hactl-history-cmd-'))
  })
  after(() => {
    rmSync(dir, {recursive: true, force: true})
  })

  // HACTL_CONFIG points nowhere: the command must not need a hactl.yaml.
  const run = (...args: string[]) =>
    spawnSync(process.execPath, ['--import', 'tsx', path.join(repo, 'bin/dev.js'), 'history', ...args], {
      cwd: repo,
      env: {...process.env, XDG_STATE_HOME: dir, HACTL_CONFIG: path.join(dir, 'missing.yaml'), NO_COLOR: '1'},
      encoding: 'utf8',
    })

  test('empty history', () => {
    const r = run()
    assert.equal(r.status, 0, r.stderr)
    assert.match(r.stdout, /No history yet/)
  })

  test('a table newest first, --limit, and --json', async () => {
    const stateDir = path.join(dir, 'hactl')
    await appendHistory(entry(1), {stateDir})
    await appendHistory(entry(2, {ok: false, exitCode: 1}), {stateDir})
    const r = run('--limit', '1')
    assert.equal(r.status, 0, r.stderr)
    const lines = r.stdout.trimEnd().split('\n')
    assert.match(lines[0]!, /^WHEN\s+WHO\s+COMMAND\s+RESULT\s+DURATION$/)
    assert.equal(lines.length, 2)
    assert.match(lines[1]!, /alice@laptop\s+hactl node drain ast2\s+failed \(exit 1\)\s+1\.5s/)

    const j = run('--json')
    assert.equal(j.status, 0, j.stderr)
    const data = JSON.parse(j.stdout) as {file: string; entries: HistoryEntry[]}
    assert.equal(data.file, path.join(stateDir, 'history.jsonl'))
    assert.deepEqual(
      data.entries.map((e) => e.argv[2]),
      ['ast2', 'ast1'],
    )
  })

  test('a bad --limit is a usage error (exit 2)', () => {
    const r = run('--limit', '0')
    assert.equal(r.status, 2, r.stderr)
  })
})
