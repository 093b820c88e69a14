import assert from 'node:assert/strict'
import {mkdirSync, writeFileSync} from 'node:fs'
import path from 'node:path'
import {after, describe, test} from 'node:test'
import {loadSshConfig, parseProxyJump, parseSshConfig, resolveTarget} from '../../src/lib/ssh/ssh-config.js'
import {makeTempDir} from '../helpers/sshd.js'

const SSH_DEFAULTS = {port: 22, user: 'root', identityFiles: [] as string[]}
const env = {home: '/home/op', localUser: 'op', authSock: ''}

describe('ssh_config lookup', () => {
  const text = `
# global settings come last in OpenSSH style; the first value wins
Host bastion
  HostName 203.0.113.7
  User jump
  Port 2200

Host 10.77.0.*
  User core
  IdentityFile ~/.ssh/lab_ed25519
  ProxyJump bastion

Host ast1
  hostname 10.77.0.21
  PORT 2222

Host *
  IdentityFile ~/.ssh/id_%u_%h
  User nobody
`

  test('first obtained value wins, keywords are case-insensitive, IdentityFile accumulates', async () => {
    const cfg = await parseSshConfig(text)
    const v = cfg.lookup('10.77.0.21')
    assert.equal(v.user, 'core')
    assert.equal(v.proxyJump, 'bastion')
    assert.deepEqual(v.identityFiles, ['~/.ssh/lab_ed25519', '~/.ssh/id_%u_%h'])
    const a = cfg.lookup('ast1')
    assert.equal(a.hostName, '10.77.0.21')
    assert.equal(a.port, 2222)
    assert.equal(a.user, 'nobody')
  })

  test('a host nothing matches gets only the catch-all', async () => {
    const v = (await parseSshConfig(text)).lookup('db9')
    assert.equal(v.hostName, undefined)
    assert.equal(v.user, 'nobody')
    assert.equal(v.port, undefined)
  })

  test('Match exec is not run', async () => {
    const dir = makeTempDir('hactl-sshcfg-')
    try {
      const marker = path.join(dir.dir, 'ran')
      const cfg = await parseSshConfig(`Match exec "touch ${marker}"\n  User evil\n`)
      assert.equal(cfg.lookup('x').user, undefined)
      const {existsSync} = await import('node:fs')
      assert.equal(existsSync(marker), false)
    } finally {
      dir.remove()
    }
  })
})

describe('resolveTarget precedence', () => {
  test('node values from hactl.yaml beat ssh_config, which beats the ssh: section', () => {
    // Given a node with its own port and user (different from ssh: defaults).
    const t = resolveTarget(
      {host: 'ast1', port: 2022, user: 'admin'},
      SSH_DEFAULTS,
      {hostName: '10.0.0.1', port: 2222, user: 'core', identityFiles: []},
      env,
    )
    assert.equal(t.host, '10.0.0.1')
    assert.equal(t.port, 2022)
    assert.equal(t.user, 'admin')
  })

  test('a node value equal to the ssh: default lets ssh_config decide', () => {
    const t = resolveTarget(
      {host: 'ast1', port: 22, user: 'root'},
      SSH_DEFAULTS,
      {port: 2222, user: 'core', identityFiles: []},
      env,
    )
    assert.equal(t.port, 2222)
    assert.equal(t.user, 'core')
  })

  test('without ssh_config values the node values stand', () => {
    const t = resolveTarget(
      {host: '10.0.0.9', port: 22, user: 'root'},
      SSH_DEFAULTS,
      {identityFiles: []},
      env,
    )
    assert.deepEqual({host: t.host, port: t.port, user: t.user}, {host: '10.0.0.9', port: 22, user: 'root'})
  })

  test('identity files: hactl.yaml first, then ssh_config (tokens expanded), OpenSSH defaults only if none', () => {
    const t = resolveTarget(
      {host: 'ast1', port: 22, user: 'root'},
      {...SSH_DEFAULTS, identityFiles: ['~/keys/hactl']},
      {hostName: '10.0.0.1', identityFiles: ['~/.ssh/id_%u_%h', '%d/x_%r']},
      env,
    )
    assert.deepEqual(t.identityFiles, [
      '/home/op/keys/hactl',
      '/home/op/.ssh/id_op_10.0.0.1',
      '/home/op/x_root',
    ])
    const d = resolveTarget({host: 'ast1', port: 22, user: 'root'}, SSH_DEFAULTS, {identityFiles: []}, env)
    assert.deepEqual(d.identityFiles, [
      '/home/op/.ssh/id_ed25519',
      '/home/op/.ssh/id_ecdsa',
      '/home/op/.ssh/id_rsa',
    ])
  })

  test('ProxyJump becomes jump hops; IdentityAgent none disables the agent', () => {
    const t = resolveTarget(
      {host: 'ast1', port: 22, user: 'root'},
      SSH_DEFAULTS,
      {identityFiles: [], proxyJump: 'jump@bastion:2200', identityAgent: 'none'},
      {...env, authSock: '/tmp/agent.sock'},
    )
    assert.deepEqual(t.jumps, [{user: 'jump', host: 'bastion', port: 2200}])
    assert.equal(t.agent, undefined)
    const a = resolveTarget(
      {host: 'ast1', port: 22, user: 'root'},
      SSH_DEFAULTS,
      {identityFiles: []},
      {...env, authSock: '/tmp/agent.sock'},
    )
    assert.equal(a.agent, '/tmp/agent.sock')
  })
})

describe('parseProxyJump', () => {
  test('hops, users, ports, ssh:// and IPv6', () => {
    assert.deepEqual(parseProxyJump('bastion'), [{host: 'bastion'}])
    assert.deepEqual(parseProxyJump('a@b:22,ssh://c@[2001:db8::1]:2222'), [
      {user: 'a', host: 'b', port: 22},
      {user: 'c', host: '2001:db8::1', port: 2222},
    ])
    assert.deepEqual(parseProxyJump('none'), [])
  })

  test('garbage is an error naming the hop', () => {
    assert.throws(() => parseProxyJump('a b'), /a b/)
    assert.throws(() => parseProxyJump('h:99999'), /bad port/)
  })
})

describe('loadSshConfig', () => {
  const tmp = makeTempDir('hactl-sshcfg-')
  after(() => tmp.remove())

  test('reads the file and its Include files (relative to the config directory, globbed)', async () => {
    const sshDir = path.join(tmp.dir, '.ssh')
    mkdirSync(path.join(sshDir, 'conf.d'), {recursive: true})
    writeFileSync(
      path.join(sshDir, 'conf.d', '10-lab.conf'),
      'Host lab1\n  HostName 10.77.0.21\n  User core\n',
    )
    writeFileSync(path.join(sshDir, 'config'), 'Include conf.d/*.conf\n\nHost *\n  Port 2200\n')
    const cfg = await loadSshConfig(path.join(sshDir, 'config'))
    assert.deepEqual(cfg.lookup('lab1'), {
      hostName: '10.77.0.21',
      user: 'core',
      port: 2200,
      identityFiles: [],
    })
  })

  test('a missing file is an empty config', async () => {
    const cfg = await loadSshConfig(path.join(tmp.dir, 'absent'))
    assert.deepEqual(cfg.lookup('x'), {identityFiles: []})
  })
})
