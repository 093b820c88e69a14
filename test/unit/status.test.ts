import assert from 'node:assert/strict'
import {readFileSync} from 'node:fs'
import path from 'node:path'
import {describe, test} from 'node:test'
import {z} from 'zod'
import {parseConfig} from '../../src/lib/config/load.js'
import {findProblems, isInService, type EtcdSummary, type NodeStatus} from '../../src/lib/ops/status-model.js'
import {clusterStatusSchema} from '../../src/lib/ops/status-schema.js'
import {buildStatusProbe, parseStatusProbe} from '../../src/lib/ops/status-probe.js'

const repo = path.resolve(import.meta.dirname, '../..')

const config = parseConfig(
  `cluster: t
nodes:
  ast1: {host: 10.0.0.21, roles: [asterisk, etcd]}
  kam1: {host: 10.0.0.11, roles: [kamailio]}
`,
  'hactl.yaml',
)

const healthyEtcd: EtcdSummary = {reachable: true, healthy: 3, total: 3, leader: 'ast1', alarms: []}

function ast(overrides: Partial<NodeStatus> = {}): NodeStatus {
  return {
    name: 'ast1',
    host: '10.0.0.21',
    port: 22,
    roles: ['asterisk'],
    ssh: {ok: true, rttMs: 3},
    asterisk: {state: 'running', activeCalls: 0, activeChannels: 0, callsProcessed: 0},
    dispatcher: {kam1: {flags: 'AP', state: 'active'}, kam2: {flags: 'AP', state: 'active'}},
    ...overrides,
  }
}

const opts = {hasEtcdRole: true, kamailioNodes: ['kam1', 'kam2']}

describe('status probe', () => {
  test('one script per host collects only what its roles need', () => {
    const [a, k] = config.nodes
    const astScript = buildStatusProbe(config, a!)
    assert.match(astScript, /asterisk -rx 'core show channels count'/)
    assert.match(astScript, /systemctl is-active '?etcd2'?/)
    assert.doesNotMatch(astScript, /dispatcher\.list/)
    const kamScript = buildStatusProbe(config, k!)
    assert.match(kamScript, /kamcmd dispatcher\.list/)
    assert.doesNotMatch(kamScript, /asterisk -rx/)
  })

  test('the probe runs in a real shell and its sections parse back', async () => {
    // Given a probe whose commands are stand-ins that print and fail like the real ones
    const {execFileSync} = await import('node:child_process')
    const fake = parseConfig(
      `cluster: t
asterisk: {cli: "printf '2 active channels\\\\n1 active call\\\\n7 calls processed\\\\n'; echo"}
etcd: {service: etcd2, discovery: {file: /nonexistent/user_data}}
nodes:
  ast1: {host: 10.0.0.21, roles: [asterisk, etcd]}
`,
      'x.yaml',
    )
    const script = buildStatusProbe(fake, fake.nodes[0]!).replace('systemctl is-active', 'echo inactive; false')
    // When it runs
    let out = ''
    try {
      out = execFileSync('sh', ['-c', script], {encoding: 'utf8'})
    } catch (error) {
      out = (error as {stdout: string}).stdout
    }
    // Then every section is there with its own exit status
    const s = parseStatusProbe(out)
    assert.match(s.boot_id!.output, /^[0-9a-f-]{36}$/)
    assert.equal(s.asterisk!.code, 0)
    assert.match(s.asterisk!.output, /1 active call\n7 calls processed/)
    assert.equal(s.etcd_service!.output.split('\n')[0], 'inactive')
    assert.notEqual(s.etcd_service!.code, 0)
    assert.notEqual(s.discovery!.code, 0)
  })

  test('a section cut off before its rc line is left out', () => {
    const s = parseStatusProbe('@@hactl:boot_id\nabc\n@@hactl:rc 0\n@@hactl:asterisk\n1 active')
    assert.equal(s.boot_id?.output, 'abc')
    assert.equal(s.asterisk, undefined)
  })
})

describe('in service', () => {
  test('running, unmarked, active everywhere', () => assert.equal(isInService(ast()), true))
  test('draining is not in service', () =>
    assert.equal(isInService(ast({maintenance: {state: 'draining'}})), false))
  test('inactive on one Kamailio is not in service', () =>
    assert.equal(isInService(ast({dispatcher: {kam1: {flags: 'AP', state: 'active'}, kam2: {flags: 'IP', state: 'inactive'}}})), false))
  test('stopped Asterisk is not in service', () =>
    assert.equal(isInService(ast({asterisk: {state: 'stopped'}})), false))
})

describe('problem rules', () => {
  test('a healthy cluster has no problems', () => {
    assert.deepEqual(findProblems([ast()], healthyEtcd, opts), [])
  })

  test('etcd unreachable is critical and says what to run', () => {
    const p = findProblems([ast()], {reachable: false, healthy: 0, total: 0, alarms: [], error: 'connect ECONNREFUSED'}, opts)
    assert.equal(p[0]?.kind, 'etcd-unreachable')
    assert.equal(p[0]?.severity, 'critical')
    assert.match(p[0]!.message, /ECONNREFUSED/)
    assert.match(p[0]!.fix, /hactl/)
  })

  test('an etcd member down names the node and the restart command', () => {
    const n = ast({roles: ['asterisk', 'etcd'], etcd: {member: 'unhealthy'}})
    const p = findProblems([n], {...healthyEtcd, healthy: 2}, opts)
    assert.deepEqual(
      p.map((x) => [x.kind, x.node]),
      [['etcd-member-down', 'ast1']],
    )
    assert.match(p[0]!.fix, /systemctl restart etcd2/)
  })

  test('active on one Kamailio but not the other', () => {
    const n = ast({dispatcher: {kam1: {flags: 'AP', state: 'active'}, kam2: {flags: 'IP', state: 'inactive'}}})
    const p = findProblems([n], healthyEtcd, opts)
    assert.equal(p.length, 1)
    assert.equal(p[0]!.kind, 'dispatcher-disagree')
    assert.match(p[0]!.message, /kam1 AP, kam2 IP/)
  })

  test('a drained box that still takes calls', () => {
    const n = ast({
      maintenance: {state: 'drained', by: 'op@laptop'},
      asterisk: {state: 'running', activeCalls: 2},
      dispatcher: {kam1: {flags: 'DX', state: 'disabled'}, kam2: {flags: 'AP', state: 'active'}},
    })
    const p = findProblems([n], healthyEtcd, opts)
    assert.equal(p[0]!.kind, 'drained-takes-calls')
    assert.match(p[0]!.message, /active on kam2 and has 2 active call/)
  })

  test('unreachable and host key mismatch hosts; critical sorts before warnings', () => {
    const nodes = [
      ast({name: 'ast2', dispatcher: {kam1: {flags: 'AP', state: 'active'}, kam2: {flags: null, state: 'absent'}}}),
      ast({name: 'ast3', ssh: {ok: false, error: {kind: 'unreachable', message: 'connect ECONNREFUSED'}}, asterisk: {state: 'unknown'}}),
      ast({name: 'ast4', ssh: {ok: false, error: {kind: 'host-key-mismatch', message: 'host key mismatch'}}, asterisk: {state: 'unknown'}}),
    ]
    const p = findProblems(nodes, healthyEtcd, opts)
    assert.deepEqual(
      p.map((x) => [x.severity, x.kind, x.node]),
      [
        ['critical', 'host-unreachable', 'ast3'],
        ['critical', 'host-key-mismatch', 'ast4'],
        ['warning', 'dispatcher-missing', 'ast2'],
      ],
    )
    assert.match(p[1]!.fix, /ssh-keygen -R 10\.0\.0\.21/)
  })

  test('host key fixes edit the known_hosts file hactl reads, under the name it has there', () => {
    const mismatch = {ok: false, error: {kind: 'host-key-mismatch', message: 'host key mismatch'}} as const
    const unknown = {ok: false, error: {kind: 'host-key-unknown', message: 'unknown host key'}} as const
    const nodes = [
      ast({name: 'ast1', ssh: mismatch, asterisk: {state: 'unknown'}}),
      ast({name: 'ast2', host: '10.0.0.22', port: 2222, ssh: mismatch, asterisk: {state: 'unknown'}}),
      ast({name: 'ast3', host: '10.0.0.23', port: 2222, ssh: unknown, asterisk: {state: 'unknown'}}),
    ]
    const fixes = (knownHosts?: string) =>
      findProblems(nodes, healthyEtcd, {...opts, ...(knownHosts ? {knownHosts} : {})}).map((p) => [p.node, p.fix])
    assert.deepEqual(fixes('/etc/hactl/known hosts'), [
      ['ast1', `ssh-keygen -f '/etc/hactl/known hosts' -R 10.0.0.21 (only if the host was reinstalled on purpose)`],
      ['ast2', `ssh-keygen -f '/etc/hactl/known hosts' -R '[10.0.0.22]:2222' (only if the host was reinstalled on purpose)`],
      ['ast3', `ssh-keyscan -p 2222 10.0.0.23 >> '/etc/hactl/known hosts' after checking the fingerprint`],
    ])
    // The default file keeps its ~ (expanded by the shell, not quoted away).
    assert.equal(fixes('~/.ssh/known_hosts')[0]![1], `ssh-keygen -f ~/'.ssh/known_hosts' -R 10.0.0.21 (only if the host was reinstalled on purpose)`)
    assert.equal(fixes()[2]![1], 'ssh-keyscan -p 2222 10.0.0.23 >> ~/.ssh/known_hosts after checking the fingerprint')
  })

  test('Asterisk down on a box that is not drained', () => {
    const p = findProblems([ast({asterisk: {state: 'stopped'}, dispatcher: {kam1: {flags: 'IP', state: 'inactive'}}})], healthyEtcd, opts)
    assert.equal(p[0]!.kind, 'asterisk-down')
    assert.match(p[0]!.fix, /hactl node undrain ast1/)
  })

  test('a drained, stopped box is not a problem', () => {
    const n = ast({
      maintenance: {state: 'drained'},
      asterisk: {state: 'stopped'},
      dispatcher: {kam1: {flags: 'DX', state: 'disabled'}, kam2: {flags: 'DX', state: 'disabled'}},
    })
    assert.deepEqual(findProblems([n], healthyEtcd, opts), [])
  })
})

describe('status --json schema', () => {
  test('schema/status.schema.json is generated from the model (run: npm run schemas)', () => {
    const generated = JSON.stringify(z.toJSONSchema(clusterStatusSchema), null, 2) + '\n'
    const onDisk = readFileSync(path.join(repo, 'schema/status.schema.json'), 'utf8')
    assert.equal(onDisk, generated, 'schema/status.schema.json is stale: run npm run schemas')
  })
})
