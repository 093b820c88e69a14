import assert from 'node:assert/strict'
import {readFileSync} from 'node:fs'
import path from 'node:path'
import {describe, test} from 'node:test'
import {fileURLToPath} from 'node:url'
import {
  classifyAsteriskAnswer,
  parseChannelsCount,
  parseCoreShowVersion,
} from '../../src/lib/facts/asterisk.js'
import {FactParseError} from '../../src/lib/facts/parse-error.js'

const dir = path.join(path.dirname(fileURLToPath(import.meta.url)), '../fixtures/asterisk')
const fixture = (name: string): string => readFileSync(path.join(dir, name), 'utf8')

describe('parseChannelsCount', () => {
  test('idle box, plural forms for 0', () => {
    assert.deepEqual(parseChannelsCount(fixture('channels-count-idle.txt')), {
      activeChannels: 0,
      activeCalls: 0,
      callsProcessed: 0,
    })
  })

  test('singular forms when N is 1', () => {
    assert.deepEqual(parseChannelsCount(fixture('channels-count-singular.txt')), {
      activeChannels: 1,
      activeCalls: 1,
      callsProcessed: 1,
    })
  })

  test('busy box', () => {
    assert.deepEqual(parseChannelsCount(fixture('channels-count-busy.txt')), {
      activeChannels: 6,
      activeCalls: 3,
      callsProcessed: 128,
    })
  })

  test('maxcalls form, singular call and a space-padded percentage', () => {
    assert.deepEqual(parseChannelsCount(fixture('channels-count-maxcalls-singular.txt')), {
      activeChannels: 2,
      activeCalls: 1,
      maxCalls: 50,
      capacityPercent: 2,
      callsProcessed: 17,
    })
  })

  test('maxcalls form at full capacity', () => {
    assert.deepEqual(parseChannelsCount(fixture('channels-count-maxcalls-full.txt')), {
      activeChannels: 8,
      activeCalls: 4,
      maxCalls: 4,
      capacityPercent: 100,
      callsProcessed: 9,
    })
  })

  test('maxcalls form, idle, and a fractional percentage', () => {
    assert.deepEqual(parseChannelsCount(fixture('channels-count-maxcalls-idle.txt')), {
      activeChannels: 0,
      activeCalls: 0,
      maxCalls: 10,
      capacityPercent: 0,
      callsProcessed: 0,
    })
    const partial = parseChannelsCount(fixture('channels-count-maxcalls-partial.txt'))
    assert.equal(partial.capacityPercent, 66.67)
    assert.equal(partial.callsProcessed, 1)
  })

  test('the summary after a full `core show channels` table, with CRLF and colours', () => {
    const text =
      'Channel              Location             State   Application(Data)\r\n' +
      'PJSIP/alice-00000001 s@default:1          Up      Playback(demo-congrats)\r\n' +
      '\u001B[1;32m1 active channel\u001B[0m\r\n1 active call\r\n12 calls processed\r\n'
    assert.deepEqual(parseChannelsCount(text), {activeChannels: 1, activeCalls: 1, callsProcessed: 12})
  })

  test('refusals and garbage throw FactParseError with the text', () => {
    for (const name of ['shutdown-pending.txt', 'not-running.txt', 'no-such-command.txt']) {
      assert.throws(
        () => parseChannelsCount(fixture(name)),
        (e: unknown) => e instanceof FactParseError && e.excerpt.length > 0,
        name,
      )
    }
    assert.throws(() => parseChannelsCount(''), FactParseError)
    // Two lines of three: cut short.
    assert.throws(() => parseChannelsCount('1 active channel\n1 active call\n'), /calls processed/)
  })
})

describe('classifyAsteriskAnswer', () => {
  test('a normal answer is ok', () => {
    assert.deepEqual(classifyAsteriskAnswer(fixture('channels-count-busy.txt'), 0), {kind: 'ok'})
  })

  test('shutdown pending, with the refused command', () => {
    assert.deepEqual(classifyAsteriskAnswer(fixture('shutdown-pending.txt'), 0), {
      kind: 'shutdown-pending',
      command: 'core show channels count',
      message: "Command 'core show channels count' cannot be run during shutdown",
    })
  })

  test('not running (exit 1), with the socket path', () => {
    const a = classifyAsteriskAnswer(fixture('not-running.txt'), 1)
    assert.equal(a.kind, 'not-running')
    assert.equal(a.kind === 'not-running' ? a.socket : undefined, '/var/run/asterisk/asterisk.ctl')
  })

  test('no such command, although asterisk -rx exits 0', () => {
    assert.deepEqual(classifyAsteriskAnswer(fixture('no-such-command.txt'), 0), {
      kind: 'no-such-command',
      command: 'core shutdown gracefully',
      helpCommand: 'core show help core shutdown',
      message:
        "No such command 'core shutdown gracefully' (type 'core show help core shutdown' for other possible commands)",
    })
  })

  test('no such command without the help hint (modules still loading)', () => {
    const a = classifyAsteriskAnswer("No such command 'core show channels count'\n", 0)
    assert.equal(a.kind, 'no-such-command')
    assert.equal(a.kind === 'no-such-command' ? a.command : '', 'core show channels count')
  })

  test('an unknown failure keeps the exit status and first line', () => {
    assert.deepEqual(classifyAsteriskAnswer('sh: 1: asterisk: not found\n', 127), {
      kind: 'unknown',
      exitCode: 127,
      message: 'sh: 1: asterisk: not found (exit status 127)',
    })
    assert.deepEqual(classifyAsteriskAnswer('', null), {kind: 'unknown', exitCode: null, message: 'killed'})
  })

  test('the message wins over the exit status', () => {
    // A wrapper (docker exec, sudo) may change the status; the text is what Asterisk said.
    assert.equal(classifyAsteriskAnswer(fixture('shutdown-pending.txt'), 1).kind, 'shutdown-pending')
    assert.equal(classifyAsteriskAnswer(fixture('not-running.txt'), 0).kind, 'not-running')
  })
})

describe('parseCoreShowVersion', () => {
  test('a release', () => {
    assert.deepEqual(parseCoreShowVersion(fixture('core-show-version.txt')), {
      version: '20.5.2',
      major: 20,
      minor: 5,
      patch: 2,
      certified: false,
      builtBy: 'root',
      buildHost: 'buildhost',
      arch: 'x86_64',
      os: 'Linux',
      buildDate: '2024-01-10 12:00:00 UTC',
    })
  })

  test('a certified release', () => {
    const v = parseCoreShowVersion(fixture('core-show-version-certified.txt'))
    assert.equal(v.version, 'certified/18.9-cert8')
    assert.equal(v.certified, true)
    assert.equal(v.major, 18)
    assert.equal(v.minor, 9)
    assert.equal(v.patch, undefined)
  })

  test('a git build has no numbers', () => {
    const v = parseCoreShowVersion(fixture('core-show-version-git.txt'))
    assert.equal(v.version, 'GIT-master-1a2b3c4')
    assert.equal(v.major, undefined)
    assert.equal(v.arch, 'aarch64')
  })

  test('refuses what is not a version', () => {
    assert.throws(() => parseCoreShowVersion(fixture('not-running.txt')), FactParseError)
  })
})
