/**
 * `hactl status` against the real lab: a healthy lab gives exit 0 and every row right; calls show
 * up; each `hactl lab fault` shows up as the right problem with exit 1 while the other rows stay
 * right. The --json document is checked against the model behind schema/status.schema.json.
 */
import assert from 'node:assert/strict'
import {after, before, describe, test} from 'node:test'
import {asteriskSocket, requestJson} from '../../src/lib/lab/supervisor.js'
import {type ClusterStatus} from '../../src/lib/ops/status-model.js'
import {clusterStatusSchema} from '../../src/lib/ops/status-schema.js'
import {hactl, labCli, labHost, labHosts, restoreLab, useLab, waitFor} from '../helpers/lab.js'

async function status(args: string[] = []): Promise<{code: number | null; doc: ClusterStatus; stderr: string}> {
  const r = await hactl(['status', '--json', ...args], {timeoutMs: 60_000})
  let parsed: unknown
  try {
    parsed = JSON.parse(r.stdout)
  } catch {
    throw new Error(`status --json printed no JSON (exit ${r.code}):\n${r.stdout}\n${r.stderr}`)
  }
  // The document has the shape the JSON Schema promises.
  const doc = clusterStatusSchema.parse(parsed)
  return {code: r.code, doc, stderr: r.stderr}
}

function node(doc: ClusterStatus, name: string) {
  const n = doc.nodes.find((x) => x.name === name)
  assert.ok(n, `no row for ${name}`)
  return n
}

describe('hactl status on the lab', () => {
  let release: (() => Promise<void>) | undefined
  const asts = () => labHosts('asterisk').map((h) => h.name)
  const kams = () => labHosts('kamailio').map((h) => h.name)

  before(async () => {
    release = (await useLab()).release
    await restoreLab()
  })

  after(async () => {
    try {
      await restoreLab()
    } finally {
      await release?.()
    }
  })

  test('a healthy lab: exit 0, every row right, no problems', async () => {
    const {code, doc} = await status()
    assert.deepEqual(doc.problems, [])
    assert.equal(code, 0)
    assert.equal(doc.healthy, true)
    assert.equal(doc.etcd.reachable, true)
    assert.equal(doc.etcd.healthy, doc.etcd.total)
    assert.equal(doc.etcd.total, labHosts('asterisk').filter((h) => h.etcd).length)
    assert.ok(doc.etcd.leader, 'a leader is named')
    assert.equal(doc.discoveryUrls.length, 1, 'one discovery URL across the etcd hosts')
    assert.deepEqual(doc.asterisk, {inService: asts().length, total: asts().length, inServiceNodes: asts()})
    for (const name of asts()) {
      const n = node(doc, name)
      assert.equal(n.host, labHost(name).ip)
      assert.equal(n.ssh.ok, true)
      assert.match(n.bootId ?? '', /^[0-9a-f-]{36}$/)
      assert.equal(n.asterisk?.state, 'running')
      assert.deepEqual(Object.keys(n.dispatcher ?? {}).sort(), kams().sort())
      for (const e of Object.values(n.dispatcher ?? {})) assert.equal(e.flags, 'AP')
      if (labHost(name).etcd) assert.match(n.etcd?.member ?? '', /^(leader|follower)$/)
    }
    for (const name of kams()) assert.equal(node(doc, name).kamailio?.state, 'running')
    // Boot ids are per host (each lab host is its own machine)
    assert.equal(new Set(doc.nodes.map((n) => n.bootId)).size, doc.nodes.length)
  })

  test('named nodes and roles select the rows', async () => {
    const one = await status([asts()[0]!])
    assert.deepEqual(
      one.doc.nodes.map((n) => n.name),
      [asts()[0]],
    )
    const role = await status(['kamailio'])
    assert.deepEqual(role.doc.nodes.map((n) => n.name).sort(), kams().sort())
    const bad = await hactl(['status', 'nosuchnode'])
    assert.equal(bad.code, 2)
    assert.match(bad.stderr, /nosuchnode/)
  })

  test('calls started with hactl lab calls show up on their node', async () => {
    const name = asts()[1]!
    const before = node((await status([name])).doc, name).asterisk?.callsProcessed ?? 0
    const r = await labCli(['calls', name, '2', '--duration', '30'])
    assert.equal(r.code, 0, r.stderr)
    const {doc} = await status([name])
    const a = node(doc, name).asterisk
    assert.equal(a?.activeCalls, 2)
    assert.equal(a?.callsProcessed, before + 2)
    // When the callers hang up, the calls are gone again
    await requestJson(asteriskSocket(labHost(name).dir), {op: 'hangup', all: true}, 5000)
    assert.equal(node((await status([name])).doc, name).asterisk?.activeCalls, 0)
  })

  const faults: Array<{fault: string; host: () => string; kind: string; check?: (doc: ClusterStatus, host: string) => void}> = [
    {
      fault: 'etcd-down',
      host: () => labHosts('asterisk').find((h) => h.etcd)!.name,
      kind: 'etcd-member-down',
      check: (doc, host) => {
        assert.equal(node(doc, host).etcd?.member, 'unhealthy')
        assert.equal(doc.etcd.healthy, doc.etcd.total - 1)
      },
    },
    {
      fault: 'sshd-down',
      host: () => asts()[3]!,
      kind: 'host-unreachable',
      check: (doc, host) => assert.equal(node(doc, host).ssh.error?.kind, 'unreachable'),
    },
    {
      fault: 'sshd-hang',
      host: () => asts()[3]!,
      kind: 'host-unreachable',
      check: (doc, host) => assert.equal(node(doc, host).ssh.error?.kind, 'timeout'),
    },
    {
      fault: 'hostkey-change',
      host: () => asts()[2]!,
      kind: 'host-key-mismatch',
      check: (doc, host) => assert.equal(node(doc, host).ssh.ok, false),
    },
    {
      fault: 'asterisk-down',
      host: () => asts()[1]!,
      kind: 'asterisk-down',
      check: (doc, host) => {
        assert.equal(node(doc, host).asterisk?.state, 'stopped')
        assert.equal(doc.asterisk.inService, asts().length - 1)
      },
    },
  ]

  for (const f of faults) {
    test(`fault ${f.fault}: shows as ${f.kind} with exit 1, other rows stay right`, async () => {
      const host = f.host()
      // Given the fault on one host
      const r = await labCli(['fault', host, f.fault])
      assert.equal(r.code, 0, r.stderr)
      try {
        // When status runs (Kamailio's probes need a moment to see Asterisk gone: wait for them)
        const {code, doc} = await waitFor(
          async () => {
            const s = await status()
            return s.doc.problems.some((p) => p.kind === f.kind && p.node === host) ? s : undefined
          },
          {timeoutMs: 30_000, intervalMs: 1000, what: `${f.kind} on ${host}`},
        )
        // Then it is the named problem, the exit status is 1, and the fix names a command
        assert.equal(code, 1)
        const p = doc.problems.find((x) => x.kind === f.kind && x.node === host)!
        assert.match(p.message, new RegExp(host))
        assert.ok(p.fix.length > 0)
        f.check?.(doc, host)
        // And the other Asterisk rows are right
        for (const name of asts().filter((n) => n !== host)) {
          const n = node(doc, name)
          assert.equal(n.ssh.ok, true, `${name} reachable`)
          assert.equal(n.asterisk?.state, 'running', `${name} running`)
        }
      } finally {
        await labCli(['heal', host])
        await restoreLab()
      }
    })
  }
})
