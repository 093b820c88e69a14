/**
 * The agent commands as processes, against a throwaway etcd on 127.0.0.1 (no lab): no hactl.yaml
 * needed with --endpoints, one log line per event, exit 0 on SIGTERM/SIGINT (announce revokes
 * first), the dispatcher agent's file handling and reload retries, an etcd outage.
 */
import assert from 'node:assert/strict'
import {spawn, type ChildProcess} from 'node:child_process'
import {chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {after, before, describe, test} from 'node:test'
import {eventually, startEtcd, type EtcdCluster} from '../helpers/etcd.js'
import {hactlBin} from '../helpers/lab.js'
import {openEtcd, type EtcdHandle} from '../../src/lib/etcd/client.js'

const LINE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ [a-z-]+( .*)?$/

interface Proc {
  child: ChildProcess
  out: () => string
  err: () => string
  exited: Promise<{code: number | null; signal: NodeJS.Signals | null}>
}

describe('agent processes against a local etcd', () => {
  let cluster: EtcdCluster
  let etcd: EtcdHandle
  let dir: string
  const procs: Proc[] = []

  /** hactl in an empty directory, with no config anywhere it looks. */
  function hactl(args: string[]): Proc {
    const env: NodeJS.ProcessEnv = {...process.env, HOME: dir, NO_COLOR: '1'}
    delete env.HACTL_CONFIG
    delete env.HACTL_ETCD_ENDPOINTS
    const child = spawn(process.execPath, [hactlBin(), ...args], {
      cwd: dir,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    let err = ''
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d))
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d))
    const exited = new Promise<{code: number | null; signal: NodeJS.Signals | null}>((resolve) =>
      child.on('close', (code, signal) => resolve({code, signal})),
    )
    const p = {child, out: () => out, err: () => err, exited}
    procs.push(p)
    return p
  }

  async function exitOf(p: Proc, ms = 8000) {
    return Promise.race([
      p.exited,
      new Promise<never>((_, reject) =>
        setTimeout(() => reject(new Error(`no exit within ${ms} ms:\n${p.out()}${p.err()}`)), ms),
      ),
    ])
  }

  before(async () => {
    cluster = await startEtcd({name: 'agents'})
    etcd = await openEtcd(cluster.config())
    dir = mkdtempSync(path.join(tmpdir(), 'hactl-agents-'))
  })

  after(async () => {
    for (const p of procs)
      if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL')
    await etcd?.close()
    await cluster?.destroy()
    if (dir) rmSync(dir, {recursive: true, force: true})
  })

  test('announce registers under a lease, logs one line per event, and revokes on SIGTERM', async () => {
    const url = cluster.endpoints[0]!
    const p = hactl([
      'agent',
      'announce',
      '--name',
      'ast5',
      '--ip',
      '10.77.0.25',
      '--weight',
      '25',
      '--ttl',
      '2',
      '--endpoints',
      url,
    ])
    await eventually(() => / registered /.test(p.out()), {
      timeoutMs: 15_000,
      what: `registered in ${p.out()}${p.err()}`,
    })
    const kv = (await etcd.client.getAll().prefix('/asterisk/').exec()).kvs
    assert.equal(kv.length, 1)
    assert.equal(kv[0]!.key.toString(), '/asterisk/ast5')
    assert.deepEqual(JSON.parse(kv[0]!.value.toString()), {ip: '10.77.0.25', port: 5060, weight: 25})
    assert.notEqual(kv[0]!.lease, '0')
    // A lease of 2 s outlives a few keep-alive rounds
    await new Promise((r) => setTimeout(r, 3000))
    assert.notEqual(await etcd.client.get('/asterisk/ast5').string(), null)

    p.child.kill('SIGTERM')
    const {code} = await exitOf(p)
    assert.equal(code, 0, p.err())
    assert.equal(await etcd.client.get('/asterisk/ast5').string(), null)
    const lines = p.out().trimEnd().split('\n')
    for (const l of lines) assert.match(l, LINE)
    assert.deepEqual(
      lines.map((l) => l.split(' ')[1]),
      ['starting', 'registered', 'stopping', 'revoked'],
    )
    assert.equal(p.err(), '')
  })

  test('without --endpoints and without hactl.yaml the agents refuse with a hint', async () => {
    const p = hactl(['agent', 'announce', '--name', 'ast5', '--ip', '10.77.0.25'])
    const {code} = await exitOf(p)
    assert.equal(code, 2)
    assert.match(p.err(), /no hactl\.yaml found/)
    assert.match(p.err(), /--endpoints/)
  })

  test('the dispatcher agent writes the list, keeps other sets, retries "Ongoing reload", and writes nothing when unchanged', async () => {
    // Given a list with another set, and a reload command that is refused once
    const list = path.join(dir, 'dispatcher.list')
    writeFileSync(list, '1 sip:10.9.9.9:5060 0 0\n2 sip:10.0.5.1:5060 0 0 weight=100\n')
    const calls = path.join(dir, 'reloads')
    const stub = path.join(dir, 'reload.sh')
    writeFileSync(
      stub,
      `#!/bin/sh\necho x >>${calls}\nif [ "$(wc -l <${calls})" -eq 1 ]; then echo "error: 500 - Ongoing reload"; else echo "Ok. Dispatcher successfully reloaded."; fi\n`,
    )
    chmodSync(stub, 0o755)
    await etcd.client
      .put('/asterisk/ast1')
      .value(JSON.stringify({ip: '10.77.0.21'}))
      .exec()
    await etcd.client
      .put('/asterisk/ast2')
      .value(JSON.stringify({ip: '10.77.0.22', weight: 25}))
      .exec()
    // When the agent runs
    const p = hactl([
      'agent',
      'dispatcher',
      '--list-file',
      list,
      '--reload-command',
      stub,
      '--resync',
      '1',
      '--endpoints',
      cluster.endpoints.join(','),
    ])
    await eventually(() => / reloaded /.test(p.out()), {
      timeoutMs: 15_000,
      what: `a reload in ${p.out()}${p.err()}`,
    })
    // Then the file holds the registrations, then the other set as it was
    const text = readFileSync(list, 'utf8')
    assert.match(
      text,
      /^1 sip:10\.77\.0\.21:5060 0 0 weight=75\n1 sip:10\.77\.0\.22:5060 0 0 weight=25\n2 sip:10\.0\.5\.1:5060 0 0 weight=100\n$/m,
    )
    assert.doesNotMatch(text, /10\.9\.9\.9/)
    // And the refused reload was retried
    assert.equal(readFileSync(calls, 'utf8'), 'x\nx\n')
    assert.match(p.out(), / reload-busy error: 500 - Ongoing reload; retrying in \d+ ms\n/)
    // When nothing changes for a few resyncs
    const mtime = statSync(list).mtimeMs
    await new Promise((r) => setTimeout(r, 2500))
    // Then nothing is written and Kamailio not reloaded
    assert.equal(statSync(list).mtimeMs, mtime)
    assert.equal(p.out().match(/ wrote /g)?.length, 1)
    assert.equal(readFileSync(calls, 'utf8'), 'x\nx\n')

    // When a box is drained, the file says disabled
    await etcd.client
      .put('/hactl/maintenance/ast2')
      .value(
        JSON.stringify({node: 'ast2', state: 'draining', by: 'test@host', since: new Date().toISOString()}),
      )
      .exec()
    await eventually(() => / 4 0 weight=1$/m.test(readFileSync(list, 'utf8')), {
      timeoutMs: 5000,
      what: 'the disabled flag',
    })
    assert.match(
      readFileSync(list, 'utf8'),
      /^1 sip:10\.77\.0\.21:5060 0 0 weight=100\n1 sip:10\.77\.0\.22:5060 4 0 weight=1\n/m,
    )

    // When etcd goes away, the list stays as it is (an unreachable etcd is not an empty cluster)
    const before = readFileSync(list, 'utf8')
    const member = cluster.members[0]!
    await cluster.stop(member, 'SIGKILL')
    await new Promise((r) => setTimeout(r, 3000))
    assert.equal(readFileSync(list, 'utf8'), before)
    // And when it comes back, the agent is still there and picks up what changed meanwhile
    await cluster.start(member)
    await etcd.client.delete().key('/hactl/maintenance/ast2').exec()
    await eventually(() => / 0 0 weight=25$/m.test(readFileSync(list, 'utf8')), {
      timeoutMs: 15_000,
      what: `the undrain after the outage: ${p.out()}`,
    })

    p.child.kill('SIGINT')
    const {code} = await exitOf(p)
    assert.equal(code, 0, p.err())
    for (const l of p.out().trimEnd().split('\n')) assert.match(l, LINE)
    assert.match(p.out(), / stopped \d+ write\(s\), \d+ reload\(s\)\n$/)
  })
})
