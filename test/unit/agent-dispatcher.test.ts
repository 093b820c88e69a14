import assert from 'node:assert/strict'
import {execFileSync} from 'node:child_process'
import {chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {after, describe, test} from 'node:test'
import {agentConfig, announceLogLine} from '../../src/lib/agent/announce.js'
import {describeSnapshot} from '../../src/lib/agent/dispatcher-agent.js'
import {readTextIfExists, runLocalCommand, writeFileAtomic} from '../../src/lib/agent/local-io.js'
import {parseConfig} from '../../src/lib/config/load.js'
import {parseDispatcherList} from '../../src/lib/facts/kamailio.js'
import {compareDispatcherViews} from '../../src/lib/ops/dispatcher-show.js'
import {
  buildReadScript,
  buildReloadScript,
  buildWriteScript,
  parseReadScript,
  parseReloadScript,
  runtimeDifferences,
  type WantedDestination,
} from '../../src/lib/ops/dispatcher-sync.js'
import {parseEndpoints} from '../../src/ui/agent-cli.js'

const fixtures = path.resolve(import.meta.dirname, '../fixtures/kamailio')
const fixture = (name: string) => readFileSync(path.join(fixtures, name), 'utf8')
const dirs: string[] = []
const tmp = () => {
  const d = mkdtempSync(path.join(tmpdir(), 'hactl-agent-'))
  dirs.push(d)
  return d
}
after(() => {
  for (const d of dirs) rmSync(d, {recursive: true, force: true})
})

/** Run a script the way SshPool does (`sh -c`), locally, with stdin. */
function sh(script: string, stdin = ''): string {
  return execFileSync('/bin/sh', ['-c', script], {input: stdin, encoding: 'utf8'})
}

describe('the list file on the Kamailio host (agent side)', () => {
  test('writeFileAtomic replaces the file, keeps its mode, and leaves no temp file', async () => {
    // Given a list file with mode 640
    const dir = tmp()
    const file = path.join(dir, 'dispatcher.list')
    writeFileSync(file, 'old\n')
    chmodSync(file, 0o640)
    // When it is replaced
    const r = await writeFileAtomic(file, '1 sip:10.0.0.21:5060 0 0 weight=100\n')
    // Then the new text is there, by rename, with the old mode, and nothing else in the directory
    assert.deepEqual(r, {atomic: true})
    assert.equal(readFileSync(file, 'utf8'), '1 sip:10.0.0.21:5060 0 0 weight=100\n')
    assert.equal(statSync(file).mode & 0o777, 0o640)
    assert.deepEqual(readdirSync(dir), ['dispatcher.list'])
  })

  test('writeFileAtomic creates a missing file 644, and readTextIfExists tells missing from empty', async () => {
    const dir = tmp()
    const file = path.join(dir, 'dispatcher.list')
    assert.equal(await readTextIfExists(file), undefined)
    await writeFileAtomic(file, '')
    assert.equal(await readTextIfExists(file), '')
    assert.equal(statSync(file).mode & 0o777, 0o644)
  })

  test('writeFileAtomic fails cleanly when the directory is missing', async () => {
    await assert.rejects(writeFileAtomic(path.join(tmp(), 'nope', 'dispatcher.list'), 'x'), /ENOENT/)
  })

  test('runLocalCommand collects stdout and stderr and the exit status; a hung command is killed', async () => {
    assert.deepEqual(await runLocalCommand('echo Ok.; echo "error: 500 - Ongoing reload" >&2; exit 3'), {
      code: 3,
      output: 'Ok.\nerror: 500 - Ongoing reload\n',
    })
    const hung = await runLocalCommand('sleep 5', 200)
    assert.equal(hung.code, null)
    assert.match(hung.output, /no answer within 200 ms; killed/)
  })
})

describe('dispatcher sync scripts, run in a real shell', () => {
  // A kamcmd stand-in: dispatcher.list prints a captured answer, dispatcher.reload the answer in $ANSWER.
  function stubConfig(dir: string, listFile: string, reloadAnswer = 'reload-ok.txt') {
    const stub = path.join(dir, 'kamcmd')
    writeFileSync(
      stub,
      `#!/bin/sh\ncase "$1" in\n  dispatcher.list) cat ${path.join(fixtures, 'list-probed.txt')} ;;\n  dispatcher.reload) cat ${path.join(fixtures, reloadAnswer)} ;;\nesac\n`,
    )
    chmodSync(stub, 0o755)
    return parseConfig(
      `cluster: t\nkamailio: {cli: ${JSON.stringify(stub)}, listFile: ${JSON.stringify(listFile)}}\nnodes:\n  kam1: {host: 10.0.0.11, roles: [kamailio]}\n`,
      'hactl.yaml',
    )
  }

  test('the read script returns the exact file bytes and the runtime list', () => {
    const dir = tmp()
    const file = path.join(dir, "dispatcher list's")
    // No trailing newline, a quote in the path: both must survive
    writeFileSync(file, '# x\n1 sip:10.0.0.21:5060 0 0')
    const facts = parseReadScript(sh(buildReadScript(stubConfig(dir, file))))
    assert.equal(facts.exists, true)
    assert.equal(facts.file, '# x\n1 sip:10.0.0.21:5060 0 0')
    assert.equal(facts.listCode, 0)
    assert.equal(parseDispatcherList(facts.list).sets.length, 2)
    rmSync(file)
    const missing = parseReadScript(sh(buildReadScript(stubConfig(dir, file))))
    assert.deepEqual([missing.exists, missing.file], [false, ''])
    assert.throws(() => parseReadScript('cut short'), /cut short/)
  })

  test('the write script replaces the file from stdin, keeping its mode', () => {
    const dir = tmp()
    const file = path.join(dir, 'dispatcher.list')
    writeFileSync(file, 'old\n')
    chmodSync(file, 0o600)
    const text = "# it's\n1 sip:10.0.0.21:5060 0 0 weight=100\n"
    sh(buildWriteScript(file), text)
    assert.equal(readFileSync(file, 'utf8'), text)
    assert.equal(statSync(file).mode & 0o777, 0o600)
    assert.deepEqual(readdirSync(dir), ['dispatcher.list'])
    // A new file gets 644
    const fresh = path.join(dir, 'new.list')
    sh(buildWriteScript(fresh), 'x\n')
    assert.equal(statSync(fresh).mode & 0o777, 0o644)
  })

  test('the reload script splits the reload answer from the list that follows', () => {
    const dir = tmp()
    const ok = parseReloadScript(sh(buildReloadScript(stubConfig(dir, '/x'))))
    assert.equal(ok.reload.trim(), 'Ok. Dispatcher successfully reloaded.')
    assert.equal(ok.reloadCode, 0)
    assert.equal(parseDispatcherList(ok.list).sets.length, 2)
    const busy = parseReloadScript(sh(buildReloadScript(stubConfig(dir, '/x', 'reload-ongoing.txt'))))
    assert.equal(busy.reload.trim(), 'error: 500 - Ongoing reload')
  })

  test('runtime differences: missing, extra, other weight, a drained box not disabled', () => {
    const targets = parseDispatcherList(fixture('list-probed.txt')).sets.find((s) => s.id === 1)!.targets
    const want = (host: string, weight: number, disabled = false, name = host): WantedDestination => ({
      name,
      uri: `sip:${host}:5060`,
      host,
      port: 5060,
      weight,
      disabled,
    })
    // list-probed set 1: 127.0.0.1:25961 AP w50, 127.0.0.21:5060 IP w25, 127.0.0.22:5060 w25
    const same = [
      {...want('127.0.0.1', 50), port: 25961, uri: 'sip:127.0.0.1:25961'},
      want('127.0.0.21', 25),
      want('127.0.0.22', 25),
    ]
    assert.deepEqual(runtimeDifferences(targets, same), [])
    assert.deepEqual(
      runtimeDifferences(targets, [
        same[0]!,
        want('127.0.0.21', 30, true, 'ast1'),
        want('127.0.0.99', 1, false, 'ast9'),
      ]),
      [
        'sip:127.0.0.21:5060 (ast1) has weight 25, wanted 30',
        'sip:127.0.0.21:5060 (ast1) is IP, wanted disabled (in maintenance)',
        'sip:127.0.0.99:5060 (ast9) is missing',
        'sip:127.0.0.22:5060 is not registered',
      ],
    )
  })
})

describe('dispatcher show', () => {
  const list = parseDispatcherList(fixture('list-probed.txt'))

  test('hosts with the same list agree', () => {
    const r = compareDispatcherViews(
      new Map([
        ['kam1', list],
        ['kam2', list],
      ]),
      {nodes: [{name: 'ast1', host: '127.0.0.21'}]},
    )
    assert.equal(r.agree, true)
    assert.deepEqual(
      r.rows.map((x) => [x.setId, x.uri, x.node ?? '', x.agree]),
      [
        [1, 'sip:127.0.0.1:25961', '', true],
        [1, 'sip:127.0.0.21:5060', 'ast1', true],
        [1, 'sip:127.0.0.22:5060', '', true],
        [2, 'sip:127.0.0.31:5060', '', true],
      ],
    )
    assert.deepEqual(r.rows[1]?.views.kam1, {flags: 'IP', state: 'inactive', priority: 5, weight: 25})
  })

  test('a missing destination, other flags or an unreachable host are disagreements', () => {
    // Given kam2 sees ast1 active and lacks 127.0.0.22
    const other = parseDispatcherList(
      fixture('list-probed.txt')
        .replace(/(URI: sip:127\.0\.0\.21:5060\n\s*FLAGS: )IP/, '$1AP')
        .replace(/\t\t\t\tDEST: \{\n\t\t\t\t\tURI: sip:127\.0\.0\.22:5060[\s\S]*?\n\t\t\t\t\}\n/, ''),
    )
    const r = compareDispatcherViews(
      new Map([
        ['kam1', list],
        ['kam2', other],
      ]),
      {setId: 1},
    )
    assert.equal(r.agree, false)
    assert.deepEqual(
      r.rows.map((x) => [x.uri, x.differences]),
      [
        ['sip:127.0.0.1:25961', []],
        ['sip:127.0.0.21:5060', ['flags: kam1 IP, kam2 AP']],
        ['sip:127.0.0.22:5060', ['missing on kam2']],
      ],
    )
    assert.equal(r.rows[2]?.views.kam2, null)
    // A host that could not be asked makes the whole view not agreeing, rows aside
    const down = compareDispatcherViews(
      new Map([
        ['kam1', list],
        ['kam2', null],
      ]),
      {setId: 2},
    )
    assert.deepEqual([down.agree, down.rows.map((x) => x.agree)], [false, [true]])
  })
})

describe('agent helpers', () => {
  const box = {name: 'ast5', ip: '10.77.0.25', port: 5060}

  test('one log line per announce event', () => {
    assert.deepEqual(
      announceLogLine(
        {type: 'registered', message: '', key: '/asterisk/ast5', leaseId: '694d', ttlSeconds: 15},
        box,
      ),
      ['registered', 'ast5 10.77.0.25:5060 lease 694d ttl 15s key /asterisk/ast5'],
    )
    assert.deepEqual(
      announceLogLine({type: 'retry', message: '', error: 'etcd unreachable', inMs: 500}, box),
      ['register-failed', 'ast5 10.77.0.25:5060: etcd unreachable; retrying in 500 ms'],
    )
    assert.deepEqual(announceLogLine({type: 'stopped', message: '', revoked: true}, box), [
      'revoked',
      'ast5 10.77.0.25:5060: lease revoked, left the rotation',
    ])
    assert.deepEqual(
      announceLogLine({type: 'lease-lost', message: '', error: 'expired'}, {...box, ip: 'fd00::5'}),
      ['lease-lost', 'ast5 [fd00::5]:5060: expired; registering again'],
    )
  })

  test('without hactl.yaml the agents run on defaults and the given endpoints', () => {
    const c = agentConfig(['http://10.77.0.21:2379', 'https://etcd.example:2379'])
    assert.deepEqual(c.etcd.endpoints, ['http://10.77.0.21:2379', 'https://etcd.example:2379'])
    assert.equal(c.etcd.prefixes.asterisk, '/asterisk/')
    assert.equal(c.etcd.via, 'direct')
    assert.throws(() => agentConfig(['10.77.0.21:2379 junk']), /not an etcd client URL/)
  })

  test('--endpoints takes commas or spaces and refuses what is not a URL', () => {
    assert.deepEqual(parseEndpoints('http://a:2379, http://b:2379'), ['http://a:2379', 'http://b:2379'])
    assert.equal(parseEndpoints(undefined), undefined)
    assert.equal(parseEndpoints(' , '), undefined)
    assert.throws(() => parseEndpoints('a:2379'), /not an etcd client URL/)
  })

  test('the state line names the boxes and the marks', () => {
    const regs = Object.assign([{name: 'ast1'}, {name: 'ast2'}], {invalid: []})
    const marks = Object.assign([{node: 'ast2', state: 'draining'}], {invalid: []})
    assert.equal(
      describeSnapshot({registrations: regs, marks} as unknown as Parameters<typeof describeSnapshot>[0]),
      '2 box(es): ast1 ast2; maintenance: ast2 (draining)',
    )
  })
})
