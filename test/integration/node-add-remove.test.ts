/**
 * `hactl node add` and `hactl node remove` on the lab, through the built CLI (npx tsc -p
 * tsconfig.json && npx oclif manifest): the lab's spare host (not in hactl.yaml, sshd running) is
 * added with roles asterisk and etcd, then removed again. Everything runs on COPIES of the lab's
 * hactl.yaml and known_hosts in a temp dir (node add edits both; the copy of known_hosts lacks the
 * spare's key, so the unknown-key path is the one tested). The history goes to a temp state dir.
 * `after` puts the lab back whatever happened (etcd member, services, agent, dispatcher lists).
 * Needs a lab with a spare host: scripts/test.mjs brings one up (--spare 1); run alone, useLab()
 * brings up its own.
 */
import assert from 'node:assert/strict'
import {mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {after, before, describe, test} from 'node:test'
import {loadConfig, type HactlConfig} from '../../src/lib/config/load.js'
import {openEtcd} from '../../src/lib/etcd/client.js'
import {etcdClusterHealth, type EtcdClusterHealth} from '../../src/lib/etcd/health.js'
import type {LabHostState} from '../../src/lib/lab/state.js'
import {kamailioCtl} from '../../src/lib/lab/dispatcher.js'
import {run} from '../../src/lib/lab/system.js'
import {stopAgentScript} from '../../src/lib/ops/node-shared.js'
import {fingerprint} from '../../src/lib/ssh/known-hosts.js'
import {hactl, labDispatcher, labHosts, labSsh, labState, useLab, waitFor, type ExecResult} from '../helpers/lab.js'

const NAME = 'spare1'

describe('hactl node add and node remove on the lab', {timeout: 600_000}, () => {
  let release: (() => Promise<void>) | undefined
  let dir: string
  let cfgPath: string
  let khPath: string
  let stateDir: string
  let labConfig: HactlConfig
  let spare: LabHostState
  let fp: string
  let originalYaml: string
  let originalKh: string
  let userData: string
  let kams: LabHostState[]
  let listFiles: Record<string, string>
  let baselineFlags: Record<string, Record<string, string>>
  let baselineMembers: string[]

  const uri = () => `sip:${spare.ip}:5060`

  function cli(args: string[], timeoutMs = 300_000): Promise<ExecResult> {
    return hactl(args, {env: {HACTL_CONFIG: cfgPath, XDG_STATE_HOME: stateDir, HACTL_AGENT_COMMAND: ''}, timeoutMs})
  }

  async function health(config: HactlConfig = labConfig): Promise<EtcdClusterHealth> {
    const etcd = await openEtcd(config)
    try {
      return await etcdClusterHealth(etcd)
    } finally {
      await etcd.close()
    }
  }

  async function etcdGet(prefix: string): Promise<string[]> {
    const etcd = await openEtcd(labConfig)
    try {
      return await etcd.client.getAll().prefix(prefix).keys()
    } finally {
      await etcd.close()
    }
  }

  async function flagsEverywhere(): Promise<Record<string, Record<string, string>>> {
    const out: Record<string, Record<string, string>> = {}
    for (const k of kams) out[k.name] = await labDispatcher(k.name)
    return out
  }

  const show = (r: ExecResult) => `exit ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`

  before(async () => {
    const lab = await useLab()
    release = lab.release
    const state = labState()
    const s = state.hosts.find((h) => h.kind === 'spare')
    assert.ok(s, 'this test needs a lab with a spare host: hactl lab up --spare 1 (scripts/test.mjs does that)')
    spare = s
    kams = labHosts('kamailio')
    labConfig = loadConfig({flag: lab.configPath})
    assert.ok(!labConfig.nodes.some((n) => n.name === NAME || n.host === spare.ip), `${NAME} is in the lab's hactl.yaml already`)

    // Given copies of hactl.yaml and known_hosts (without the spare's key) in a temp dir
    dir = mkdtempSync(path.join(tmpdir(), 'hactl-node-add-'))
    stateDir = path.join(dir, 'state')
    cfgPath = path.join(dir, 'hactl.yaml')
    khPath = path.join(dir, 'known_hosts')
    const labKh = readFileSync(labConfig.ssh.knownHosts, 'utf8')
    originalKh = labKh
      .split('\n')
      .filter((l) => !l.startsWith(`${spare.ip} `))
      .join('\n')
    writeFileSync(khPath, originalKh, {mode: 0o600})
    const labYaml = readFileSync(lab.configPath, 'utf8')
    originalYaml = labYaml.replace(`knownHosts: ${labConfig.ssh.knownHosts}`, `knownHosts: ${khPath}`)
    assert.notEqual(originalYaml, labYaml, 'could not point the copy of hactl.yaml at the copy of known_hosts')
    writeFileSync(cfgPath, originalYaml)
    const pub = readFileSync(path.join(spare.dir, 'ssh', 'ssh_host_ed25519_key.pub'), 'utf8').trim().split(/\s+/)
    fp = fingerprint(Buffer.from(pub[1]!, 'base64'))
    userData = readFileSync(path.join(spare.dir, 'coreos-install', 'user_data'), 'utf8')
    listFiles = Object.fromEntries(kams.map((k) => [k.name, readFileSync(path.join(k.dir, 'kamailio', 'dispatcher.list'), 'utf8')]))
    baselineFlags = await flagsEverywhere()
    const h = await health()
    baselineMembers = h.members.map((m) => m.id).sort()
    assert.equal(h.healthyCount, h.total, 'etcd is not healthy before the test')
    for (const k of kams) assert.equal(baselineFlags[k.name]![uri()], undefined, `${k.name} lists the spare already`)
  })

  /** Put the lab back: whatever node add left behind, in the cluster and on the spare. */
  async function cleanup(): Promise<void> {
    if (!spare) return
    await labSsh(spare, stopAgentScript(NAME)).catch(() => undefined)
    await labSsh(spare, 'systemctl stop etcd2 asterisk; systemctl disable etcd2 asterisk >/dev/null 2>&1; rm -rf /var/lib/etcd/member', {timeoutMs: 90_000}).catch(() => undefined)
    writeFileSync(path.join(spare.dir, 'coreos-install', 'user_data'), userData)
    const etcd = await openEtcd(labConfig)
    try {
      const list = await etcd.client.cluster.memberList({})
      for (const m of list.members) {
        if ((m.peerURLs ?? []).some((u) => u.includes(`//${spare.ip}:`))) await etcd.client.cluster.memberRemove({ID: m.ID})
      }
      await etcd.client.delete().key(`${labConfig.etcd.prefixes.asterisk}${NAME}`).exec()
      await etcd.client.delete().key(`${labConfig.etcd.prefixes.maintenance}${NAME}`).exec()
    } finally {
      await etcd.close()
    }
    for (const k of kams) {
      writeFileSync(path.join(k.dir, 'kamailio', 'dispatcher.list'), listFiles[k.name]!)
      for (let i = 0; i < 10 && (await labDispatcher(k.name))[uri()] !== undefined; i++) {
        await run('kamcmd', ['-s', `unixs:${kamailioCtl(k.dir)}`, 'dispatcher.remove', '1', uri()], {timeoutMs: 3000}).catch(() => undefined)
        await new Promise((r) => setTimeout(r, 1000))
      }
    }
  }

  after(async () => {
    try {
      await cleanup()
    } finally {
      if (dir) rmSync(dir, {recursive: true, force: true})
      await release?.()
    }
  })

  test('a wrong --host-key-fingerprint is refused and nothing changes', async () => {
    // Given a fingerprint that is not the spare's
    const wrong = `SHA256:${fp.slice(7, 10) === 'AAA' ? 'BBB' : 'AAA'}${fp.slice(10)}`
    // When node add is run with it
    const r = await cli(['node', 'add', NAME, '--host', spare.ip, '--roles', 'asterisk,etcd', '--host-key-fingerprint', wrong, '--yes'])
    // Then it is refused, naming both fingerprints, and nothing changed anywhere
    assert.equal(r.code, 1, show(r))
    assert.match(r.stderr, new RegExp(`offered the ssh-ed25519 key ${fp.replace(/[+/]/g, '\\$&')}`))
    assert.match(r.stderr, /nothing was changed/)
    assert.equal(readFileSync(cfgPath, 'utf8'), originalYaml, 'hactl.yaml changed')
    assert.equal(readFileSync(khPath, 'utf8'), originalKh, 'known_hosts changed')
    assert.deepEqual((await health()).members.map((m) => m.id).sort(), baselineMembers, 'an etcd member was added')
    assert.deepEqual(await etcdGet(`${labConfig.etcd.prefixes.asterisk}${NAME}`), [])
  })

  test('without a terminal, neither a fingerprint nor a question: exit 2 with the flag to pass', async () => {
    const r = await cli(['node', 'add', NAME, '--host', spare.ip, '--roles', 'asterisk,etcd', '--yes'])
    assert.equal(r.code, 2, show(r))
    assert.match(r.stderr, new RegExp(`--host-key-fingerprint ${fp.replace(/[+/]/g, '\\$&')}`))
    assert.equal(readFileSync(cfgPath, 'utf8'), originalYaml)
    assert.equal(readFileSync(khPath, 'utf8'), originalKh)
  })

  test('a known host whose key changed is refused, nothing changes', async () => {
    // Given known_hosts with another ed25519 key for the spare's address
    const other = readFileSync(path.join(kams[0]!.dir, 'ssh', 'ssh_host_ed25519_key.pub'), 'utf8').trim().split(/\s+/)
    const withWrong = `${originalKh.replace(/\n?$/, '\n')}${spare.ip} ${other[0]} ${other[1]}\n`
    writeFileSync(khPath, withWrong)
    try {
      const r = await cli(['node', 'add', NAME, '--host', spare.ip, '--roles', 'asterisk,etcd', '--host-key-fingerprint', fp, '--yes'])
      assert.equal(r.code, 1, show(r))
      assert.match(r.stderr, /host key mismatch/)
      assert.equal(readFileSync(cfgPath, 'utf8'), originalYaml)
      assert.equal(readFileSync(khPath, 'utf8'), withWrong)
    } finally {
      writeFileSync(khPath, originalKh)
    }
  })

  test('a failure after the inventory step rolls back everything done', async () => {
    // Given an announce agent that dies at once (/bin/false), so the add fails after etcd and Asterisk
    const r = await hactl(['node', 'add', NAME, '--host', spare.ip, '--roles', 'asterisk,etcd', '--host-key-fingerprint', fp, '--yes'], {
      env: {HACTL_CONFIG: cfgPath, XDG_STATE_HOME: stateDir, HACTL_AGENT_COMMAND: '/bin/false'},
      timeoutMs: 300_000,
    })
    // Then it fails at the agent step and undoes the earlier ones, newest first
    assert.equal(r.code, 1, show(r))
    assert.match(r.stderr, /failed at "start the announce agent/)
    assert.match(r.stderr, /rolled back: everything done was undone/)
    assert.match(r.stderr, /undone: remove etcd member spare1/)
    assert.equal(readFileSync(cfgPath, 'utf8'), originalYaml, 'hactl.yaml not restored')
    assert.equal(readFileSync(khPath, 'utf8'), originalKh, 'known_hosts not restored')
    assert.deepEqual((await health()).members.map((m) => m.id).sort(), baselineMembers, 'the etcd member is still there')
    assert.equal(readFileSync(path.join(spare.dir, 'coreos-install', 'user_data'), 'utf8'), userData, 'user_data not restored')
    const units = await labSsh(spare, 'systemctl is-active etcd2 asterisk; systemctl is-enabled etcd2 asterisk; ls /var/lib/etcd')
    assert.deepEqual(units.stdout.trim().split('\n'), ['inactive', 'inactive', 'disabled', 'disabled'])
    assert.deepEqual(await flagsEverywhere(), baselineFlags)
    assert.deepEqual(await etcdGet(`${labConfig.etcd.prefixes.asterisk}${NAME}`), [])
  })

  test('removing a member of a 3-member etcd without --force is refused, and says why', async () => {
    const h = await health()
    assert.equal(h.members.filter((m) => !m.isLearner).length, 3, 'this test expects the lab to have 3 etcd members')
    const member = labConfig.nodes.find((n) => n.roles.includes('etcd'))!
    const r = await cli(['node', 'remove', member.name, '--yes'])
    assert.equal(r.code, 1, show(r))
    assert.match(r.stderr, /quorum guard: removing \S+ would shrink etcd to 2 voting members/)
    assert.match(r.stderr, /--force/)
    assert.equal(readFileSync(cfgPath, 'utf8'), originalYaml)
    assert.deepEqual((await health()).members.map((m) => m.id).sort(), baselineMembers)
    // Nothing was drained either.
    assert.deepEqual(await etcdGet(`${labConfig.etcd.prefixes.maintenance}${member.name}`), [])
  })

  test('node add spare1 --roles asterisk,etcd: one more healthy voting member, AP on both Kamailio, in service', async () => {
    // When the spare is added with its real fingerprint
    const r = await cli(['node', 'add', NAME, '--host', spare.ip, '--roles', 'asterisk,etcd', '--host-key-fingerprint', fp, '--yes'])
    assert.equal(r.code, 0, show(r))
    assert.match(r.stdout, new RegExp(`${NAME} added`))

    // Then hactl.yaml has it (the rest of the file as it was) and known_hosts has its key
    const yaml = readFileSync(cfgPath, 'utf8')
    assert.ok(yaml.startsWith(originalYaml.trimEnd()), 'the old hactl.yaml is not a prefix of the new one')
    const config = loadConfig({flag: cfgPath})
    assert.deepEqual(config.nodes.find((n) => n.name === NAME), {name: NAME, host: spare.ip, port: 22, user: 'root', roles: ['asterisk', 'etcd']})
    assert.ok(readFileSync(khPath, 'utf8').includes(`${spare.ip} ssh-ed25519 `))

    // etcd: one more member, all voting and healthy
    const h = await health(config)
    assert.equal(h.total, baselineMembers.length + 1)
    assert.equal(h.healthyCount, h.total, JSON.stringify(h.members))
    assert.ok(h.members.every((m) => !m.isLearner))
    assert.ok(h.members.some((m) => m.name === NAME && m.peerURLs.includes(`http://${spare.ip}:2380`)))

    // Both Kamailio list it active (AP)
    for (const k of kams) assert.equal((await labDispatcher(k.name))[uri()], 'AP', `${k.name}: ${JSON.stringify(await labDispatcher(k.name))}`)

    // hactl status shows it in service
    const st = await cli(['status', '--json'], 120_000)
    const status = JSON.parse(st.stdout) as {nodes: Array<{name: string; inService?: boolean; etcd?: {member: string}}>}
    const node = status.nodes.find((n) => n.name === NAME)
    assert.equal(node?.inService, true, show(st))
    assert.ok(node?.etcd && ['leader', 'follower'].includes(node.etcd.member), JSON.stringify(node))
    // The registration is there, from the agent on the host
    assert.deepEqual(await etcdGet(`${labConfig.etcd.prefixes.asterisk}${NAME}`), [`${labConfig.etcd.prefixes.asterisk}${NAME}`])
  })

  test('node remove spare1: etcd members and both dispatcher lists are back to what they were', async () => {
    const r = await cli(['node', 'remove', NAME, '--yes'])
    assert.equal(r.code, 0, show(r))
    assert.match(r.stdout, new RegExp(`${NAME} removed`))
    // etcd: the same members as before the add
    const h = await health()
    assert.deepEqual(h.members.map((m) => m.id).sort(), baselineMembers)
    assert.equal(h.healthyCount, h.total)
    // Kamailio: the runtime lists and the list files as they were
    await waitFor(async () => JSON.stringify(await flagsEverywhere()) === JSON.stringify(baselineFlags), {timeoutMs: 20_000, what: 'the dispatcher lists to be as before'})
    for (const k of kams) assert.equal(readFileSync(path.join(k.dir, 'kamailio', 'dispatcher.list'), 'utf8'), listFiles[k.name])
    // hactl.yaml byte for byte as before the add; nothing left in etcd; etcd and Asterisk stopped on the spare
    assert.equal(readFileSync(cfgPath, 'utf8'), originalYaml)
    assert.deepEqual(await etcdGet(`${labConfig.etcd.prefixes.asterisk}${NAME}`), [])
    assert.deepEqual(await etcdGet(`${labConfig.etcd.prefixes.maintenance}${NAME}`), [])
    const units = await labSsh(spare, 'systemctl is-active etcd2 asterisk; ls /var/lib/etcd')
    assert.deepEqual(units.stdout.trim().split('\n'), ['inactive', 'inactive'])
    // The history has both runs
    const hist = readFileSync(path.join(stateDir, 'hactl', 'history.jsonl'), 'utf8')
    assert.match(hist, /"argv":\["node","add","spare1"/)
    assert.match(hist, /"argv":\["node","remove","spare1"/)
  })
})
