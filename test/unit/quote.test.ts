import assert from 'node:assert/strict'
import {execFileSync} from 'node:child_process'
import {existsSync} from 'node:fs'
import {describe, test} from 'node:test'
import fc from 'fast-check'
import {becomeCommand, raw, sh, shellQuote} from '../../src/lib/ssh/quote.js'

/** Strings a shell argument can hold: anything but NUL, with shell syntax well represented. */
const nastyString = fc
  .string({
    unit: fc.oneof(
      {weight: 3, arbitrary: fc.string({unit: 'binary', minLength: 1, maxLength: 1})},
      {
        weight: 2,
        arbitrary: fc.constantFrom(
          "'",
          '"',
          '\\',
          '$',
          '`',
          '$(',
          ')',
          '${',
          '}',
          '\n',
          '\r',
          '\t',
          ' ',
          '*',
          '?',
          '[',
          '~',
          '=',
          '!',
          '#',
          ';',
          '&',
          '|',
          '<',
          '>',
          '%',
          '-',
          "'\\''",
          '\u00e9',
          '\u{1F600}',
          '\u00a0',
        ),
      },
    ),
    maxLength: 40,
  })
  .filter((s) => !s.includes('\0'))

describe('shellQuote', () => {
  test('leaves plain words bare so logged commands stay readable', () => {
    assert.equal(shellQuote('etcd2'), 'etcd2')
    assert.equal(shellQuote('/var/lib/etcd/member'), '/var/lib/etcd/member')
    assert.equal(shellQuote('http://10.0.0.1:2379'), 'http://10.0.0.1:2379')
  })

  test('quotes everything a shell would interpret', () => {
    assert.equal(shellQuote(''), "''")
    assert.equal(shellQuote('a b'), "'a b'")
    assert.equal(shellQuote("it's"), `'it'\\''s'`)
    assert.equal(shellQuote('$(reboot)'), "'$(reboot)'")
    assert.equal(shellQuote('`id`'), "'`id`'")
    assert.equal(shellQuote('~root'), "'~root'")
    assert.equal(shellQuote('=ls'), "'=ls'")
    assert.equal(shellQuote('a\nb'), "'a\nb'")
  })

  test('refuses NUL, which no shell argument can carry', () => {
    assert.throws(() => shellQuote('a\0b'), /NUL/)
  })

  test('refuses non-strings (a bug in the caller, not something to stringify)', () => {
    assert.throws(() => shellQuote(undefined as unknown as string), TypeError)
  })

  for (const shell of ['/bin/sh', '/bin/bash', '/bin/dash'].filter((s) => existsSync(s))) {
    test(`any string survives ${shell} byte for byte (200 runs)`, () => {
      fc.assert(
        fc.property(nastyString, (s) => {
          const out = execFileSync(shell, ['-c', `printf %s ${shellQuote(s)}`])
          assert.equal(out.toString('utf8'), s)
        }),
        {numRuns: 200},
      )
    })
  }
})

describe('sh template', () => {
  test('quotes every interpolated value and keeps the literal parts', () => {
    const dir = "/tmp/it's here"
    assert.equal(sh`rm -rf ${dir}/member`, `rm -rf '/tmp/it'\\''s here'/member`)
  })

  test('arrays become several words, numbers stay numbers', () => {
    assert.equal(sh`ls ${['a b', 'c']} -n ${3}`, "ls 'a b' c -n 3")
  })

  test('raw() fragments pass through unquoted', () => {
    const inner = sh`cat ${'/etc/x y'}`
    assert.equal(sh`${raw(inner)} | wc -l`, "cat '/etc/x y' | wc -l")
  })

  test('undefined, null and objects are refused', () => {
    assert.throws(() => sh`echo ${undefined as unknown as string}`, TypeError)
    assert.throws(() => sh`echo ${null as unknown as string}`, TypeError)
    assert.throws(() => sh`echo ${{} as unknown as string}`, TypeError)
    assert.throws(() => sh`echo ${Number.NaN}`, TypeError)
  })

  test('the result runs in a real shell with the values intact', () => {
    fc.assert(
      fc.property(nastyString, nastyString, (a, b) => {
        const out = execFileSync('/bin/sh', ['-c', sh`printf '%s|%s' ${a} ${b}`])
        assert.equal(out.toString('utf8'), `${a}|${b}`)
      }),
      {numRuns: 100},
    )
  })
})

describe('becomeCommand', () => {
  test('wraps in sudo -n sh -c for a non-root user', () => {
    assert.equal(
      becomeCommand("systemctl stop 'etcd2'", 'core', true),
      `sudo -n sh -c 'systemctl stop '\\''etcd2'\\'''`,
    )
  })

  test('leaves the command alone for root or without become', () => {
    assert.equal(becomeCommand('systemctl stop etcd2', 'root', true), 'systemctl stop etcd2')
    assert.equal(becomeCommand('systemctl stop etcd2', 'core', false), 'systemctl stop etcd2')
  })

  test('the wrapped command means the same to the inner shell', () => {
    // Given a command full of shell syntax, when it is wrapped and the sudo word dropped,
    // then sh -c runs exactly the original.
    const cmd = `printf '%s\\n' "$((1+2))" 'a'"b" \`echo c\``
    const wrapped = becomeCommand(cmd, 'core', true)
    assert.ok(wrapped.startsWith('sudo -n '))
    const direct = execFileSync('/bin/sh', ['-c', cmd]).toString()
    const viaWrap = execFileSync('/bin/sh', ['-c', wrapped.slice('sudo -n '.length)]).toString()
    assert.equal(viaWrap, direct)
    assert.equal(direct, '3\nab\nc\n')
  })
})
