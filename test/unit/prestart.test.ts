import assert from 'node:assert/strict'
import {describe, test} from 'node:test'
import {parseEarlyArgs} from '../../src/prestart.js'

describe('the early start reads only the command lines it fully understands', () => {
  test('the commands it starts early, with their flags', () => {
    const s = parseEarlyArgs(['status'])
    assert.equal(s?.command, 'status')
    assert.deepEqual(s?.positionals, [])
    const d = parseEarlyArgs(['node', 'drain', 'ast4', '--yes', '-c', '/x/hactl.yaml', '--timeout=90s'])
    assert.equal(d?.command, 'node drain')
    assert.deepEqual(d?.positionals, ['ast4'])
    assert.equal(d?.values.get('--config'), '/x/hactl.yaml')
    assert.equal(d?.values.get('--timeout'), '90s')
    assert.ok(d?.bools.has('--yes'))
    assert.equal(parseEarlyArgs(['node', 'undrain', 'ast3,ast4', '--json'])?.command, 'node undrain')
    assert.equal(parseEarlyArgs(['cluster', 'rediscover', '--yes', '-v'])?.command, 'cluster rediscover')
    const w = parseEarlyArgs(['status', 'asterisk', '--watch', '5'])
    assert.deepEqual(w?.positionals, ['asterisk'])
    assert.equal(w?.values.get('--interval'), '5')
    // exec: the node specs before --; the remote command after it is not read (only connections open early).
    const e = parseEarlyArgs(['exec', 'ast1,ast3', 'kamailio', '--timeout', '2m', '--', 'ls', '-la', '--json', '-c', 'x'])
    assert.equal(e?.command, 'exec')
    assert.deepEqual(e?.positionals, ['ast1,ast3', 'kamailio'])
    assert.equal(e?.values.get('--timeout'), '2m')
    assert.equal(e?.values.get('--config'), undefined)
    assert.ok(!e?.bools.has('--json'))
    assert.deepEqual(parseEarlyArgs(['exec', '--json', 'all', '--', 'true'])?.positionals, ['all'])
  })

  test('anything else is left to oclif', () => {
    for (const argv of [
      [],
      ['exec', 'all', 'true'],
      ['exec', 'all', '--'],
      ['exec', 'all', '--', ' '],
      ['exec', 'all', '--bogus', '--', 'true'],
      ['exec', 'all', '--timeout', 'soon', '--', 'true'],
      ['node', 'add', 'ast5'],
      ['status', '--help'],
      ['status', '-h'],
      ['status', '-vy'],
      ['status', '--no-such-flag'],
      ['status', '--watch', '--json'],
      ['status', '--interval', '0'],
      ['status', '--concurrency', 'many'],
      ['status', '--config'],
      ['status', '-c', '--verbose'],
      ['status', '-c', 'a.yaml', '-c', 'b.yaml'],
      ['status', '--', 'ast1'],
      ['node', 'drain', 'ast4', '--timeout', 'soon'],
      ['node', 'drain', 'ast4', '--reason', 'x'.repeat(1025)],
      ['node', 'drain', 'ast4', '--verbose=true'],
      ['cluster', 'rediscover', 'extra'],
      ['cluster', 'rediscover', '--size', '3'],
      ['cluster', 'rediscover', '--discovery', 'http://10.0.0.2:8087/x'],
    ]) {
      assert.equal(parseEarlyArgs(argv), undefined, argv.join(' '))
    }
  })
})
