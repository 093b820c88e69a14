import assert from 'node:assert/strict'
import {execFileSync} from 'node:child_process'
import {readFileSync, writeFileSync} from 'node:fs'
import path from 'node:path'
import {after, before, describe, test} from 'node:test'
import {
  appendKnownHost,
  checkHostKey,
  fingerprint,
  hostMatches,
  keyTypeOf,
  knownHostsName,
  knownKeyTypes,
  parseKnownHosts,
  readKnownHosts,
} from '../../src/lib/ssh/known-hosts.js'
import {type KeyPair, keygen, makeTempDir, sshKeygenFingerprint} from '../helpers/sshd.js'

const blob = (k: KeyPair): Buffer => Buffer.from(k.blob, 'base64')

describe('known_hosts', () => {
  const tmp = makeTempDir('hactl-kh-')
  let ed: KeyPair
  let ecdsa: KeyPair
  let rsa: KeyPair
  let other: KeyPair

  before(() => {
    // Given real host keys as ssh-keygen writes them.
    ed = keygen(path.join(tmp.dir, 'ed'), {type: 'ed25519'})
    ecdsa = keygen(path.join(tmp.dir, 'ecdsa'), {type: 'ecdsa'})
    rsa = keygen(path.join(tmp.dir, 'rsa'), {type: 'rsa'})
    other = keygen(path.join(tmp.dir, 'other'), {type: 'ed25519'})
  })
  after(() => tmp.remove())

  test('fingerprints match ssh-keygen -l', () => {
    for (const k of [ed, ecdsa, rsa]) {
      assert.equal(fingerprint(blob(k)), sshKeygenFingerprint(`${k.file}.pub`))
      assert.equal(keyTypeOf(blob(k)), k.type)
    }
  })

  test('lookup names: bare host on 22, [host]:port otherwise, lower-cased', () => {
    assert.equal(knownHostsName('10.0.0.1', 22), '10.0.0.1')
    assert.equal(knownHostsName('Ast1.Example', 2222), '[ast1.example]:2222')
  })

  test('plain entries: comma lists, [host]:port, several keys per host', () => {
    const text = [
      '# a comment',
      '',
      `ast1,10.0.0.21 ${ed.type} ${ed.blob}`,
      `10.0.0.21 ${ecdsa.type} ${ecdsa.blob} root@ast1`,
      `[127.0.0.1]:22221 ${rsa.type} ${rsa.blob}`,
    ].join('\n')
    const entries = parseKnownHosts(text, 'kh')
    assert.equal(entries.length, 3)
    assert.deepEqual(checkHostKey(entries, 'ast1', blob(ed)), {status: 'known', entry: entries[0]})
    assert.equal(checkHostKey(entries, '10.0.0.21', blob(ed)).status, 'known')
    assert.equal(checkHostKey(entries, '10.0.0.21', blob(ecdsa)).status, 'known')
    assert.equal(checkHostKey(entries, '[127.0.0.1]:22221', blob(rsa)).status, 'known')
    // The same address on port 22 is another host as far as known_hosts goes.
    assert.equal(checkHostKey(entries, '127.0.0.1', blob(rsa)).status, 'unknown')
    assert.deepEqual(knownKeyTypes(entries, '10.0.0.21'), ['ssh-ed25519', 'ecdsa-sha2-nistp256'])
  })

  test('hashed entries written by ssh-keygen -H', () => {
    // Given a plain file hashed in place by ssh-keygen.
    const file = path.join(tmp.dir, 'hashed_known_hosts')
    writeFileSync(
      file,
      `ast1.example.com ${ed.type} ${ed.blob}\n[10.0.0.5]:2222 ${ecdsa.type} ${ecdsa.blob}\n`,
    )
    execFileSync('ssh-keygen', ['-H', '-f', file], {stdio: 'ignore'})
    const text = readFileSync(file, 'utf8')
    assert.match(text, /^\|1\|/m)
    assert.doesNotMatch(text, /ast1\.example\.com/)
    const entries = parseKnownHosts(text, file)
    assert.equal(entries.length, 2)
    assert.ok(entries.every((e) => e.hashed))
    // Then the names still match (case-insensitively), and other names do not.
    assert.equal(checkHostKey(entries, 'ast1.example.com', blob(ed)).status, 'known')
    assert.equal(checkHostKey(entries, knownHostsName('AST1.example.com', 22), blob(ed)).status, 'known')
    assert.equal(checkHostKey(entries, '[10.0.0.5]:2222', blob(ecdsa)).status, 'known')
    assert.equal(checkHostKey(entries, '10.0.0.5', blob(ecdsa)).status, 'unknown')
    assert.equal(checkHostKey(entries, 'ast2.example.com', blob(ed)).status, 'unknown')
  })

  test('a different key for a known host is a mismatch that names the line and both fingerprints', () => {
    const text = `# header\nast1 ${ed.type} ${ed.blob}\n`
    const entries = parseKnownHosts(text, '/x/known_hosts')
    const verdict = checkHostKey(entries, 'ast1', blob(other))
    assert.equal(verdict.status, 'mismatch')
    assert.ok(verdict.status === 'mismatch')
    assert.equal(verdict.expected[0]!.line, 2)
    assert.equal(verdict.expected[0]!.file, '/x/known_hosts')
    assert.equal(verdict.expected[0]!.fingerprint, sshKeygenFingerprint(`${ed.file}.pub`))
    assert.notEqual(fingerprint(blob(other)), verdict.expected[0]!.fingerprint)
  })

  test('a key of another type than the known ones is a mismatch, not a new host', () => {
    const entries = parseKnownHosts(`ast1 ${ed.type} ${ed.blob}\n`, 'kh')
    const verdict = checkHostKey(entries, 'ast1', blob(rsa))
    assert.equal(verdict.status, 'mismatch')
  })

  test('@revoked keys are refused even when another line trusts them', () => {
    const text = [
      `ast1 ${ed.type} ${ed.blob}`,
      `@revoked * ${ed.type} ${ed.blob}`,
      `ast1 ${ecdsa.type} ${ecdsa.blob}`,
    ].join('\n')
    const entries = parseKnownHosts(text, 'kh')
    const verdict = checkHostKey(entries, 'ast1', blob(ed))
    assert.equal(verdict.status, 'revoked')
    assert.ok(verdict.status === 'revoked')
    assert.equal(verdict.entry.line, 2)
    assert.equal(checkHostKey(entries, 'ast1', blob(ecdsa)).status, 'known')
    // Revoked keys are not "known types" to ask the server for.
    assert.deepEqual(knownKeyTypes(entries, 'ast1'), ['ssh-ed25519', 'ecdsa-sha2-nistp256'])
  })

  test('@cert-authority lines are ignored', () => {
    const entries = parseKnownHosts(`@cert-authority *.example.com ${ed.type} ${ed.blob}\n`, 'kh')
    assert.equal(entries.length, 0)
    assert.equal(checkHostKey(entries, 'ast1.example.com', blob(ed)).status, 'unknown')
  })

  test('wildcards and negation in plain patterns', () => {
    const entries = parseKnownHosts(`*.example.com,!bad.example.com ${ed.type} ${ed.blob}\n`, 'kh')
    assert.ok(hostMatches(entries[0]!, 'ast1.example.com'))
    assert.ok(!hostMatches(entries[0]!, 'bad.example.com'))
    assert.ok(!hostMatches(entries[0]!, 'example.org'))
    const q = parseKnownHosts(`ast? ${ed.type} ${ed.blob}\n`, 'kh')
    assert.ok(hostMatches(q[0]!, 'ast1'))
    assert.ok(!hostMatches(q[0]!, 'ast12'))
  })

  test('malformed lines are skipped, CRLF tolerated', () => {
    const text = [
      'garbage',
      `ast1 ${ed.type} not-base64!`,
      `ast1 ssh-rsa ${ed.blob}`, // type field disagrees with the blob
      `|1|bad|hash ${ed.type} ${ed.blob}`,
      `ast2 ${ed.type} ${ed.blob}\r`,
    ].join('\n')
    const entries = parseKnownHosts(text, 'kh')
    assert.equal(entries.length, 1)
    assert.equal(entries[0]!.line, 5)
    assert.equal(checkHostKey(entries, 'ast2', blob(ed)).status, 'known')
  })

  test('appendKnownHost adds a line ssh itself accepts, with the right line number', async () => {
    const file = path.join(tmp.dir, 'sub', 'known_hosts')
    const first = await appendKnownHost(file, '[127.0.0.1]:22221', blob(ed))
    assert.equal(first.line, 1)
    // Parallel appends from several connections must not interleave.
    const more = await Promise.all([
      appendKnownHost(file, 'ast1', blob(ecdsa)),
      appendKnownHost(file, 'ast2', blob(rsa)),
    ])
    assert.deepEqual(more.map((e) => e.line).sort(), [2, 3])
    const entries = await readKnownHosts(file)
    assert.equal(entries.length, 3)
    assert.equal(checkHostKey(entries, '[127.0.0.1]:22221', blob(ed)).status, 'known')
    // ssh-keygen -F finds the host in the file we wrote.
    const found = execFileSync('ssh-keygen', ['-F', '[127.0.0.1]:22221', '-f', file], {encoding: 'utf8'})
    assert.match(found, new RegExp(ed.blob.replace(/[+/]/g, '\\$&')))
  })

  test('a file without a final newline gets one before the appended line', async () => {
    const file = path.join(tmp.dir, 'no_newline')
    writeFileSync(file, `ast1 ${ed.type} ${ed.blob}`)
    const e = await appendKnownHost(file, 'ast2', blob(ecdsa))
    assert.equal(e.line, 2)
    assert.equal((await readKnownHosts(file)).length, 2)
  })

  test('a missing file reads as empty', async () => {
    assert.deepEqual(await readKnownHosts(path.join(tmp.dir, 'nope')), [])
  })
})
