import assert from 'node:assert/strict'
import {readFileSync} from 'node:fs'
import path from 'node:path'
import {describe, test} from 'node:test'
import {parse as parseYaml} from 'yaml'
import {parseConfig, type HactlConfig, type ResolvedNode} from '../../src/lib/config/load.js'
import type {EtcdMemberHealth} from '../../src/lib/etcd/health.js'
import {HactlError, UserError} from '../../src/lib/errors.js'
import {parseSipUri} from '../../src/lib/facts/kamailio.js'
import {buildHostFactsScript, hostRequirements, parseHostFacts, type HostFacts, type HostFactsRequest} from '../../src/lib/ops/host-facts.js'
import {
  configureEtcdMember,
  decideHostKey,
  initialClusterOf,
  normalizeFingerprint,
  parseRoles,
  peerUrlFor,
  planNodeAdd,
  validateNodeAdd,
  type HostKeyInfo,
  type NodeAddFacts,
} from '../../src/lib/ops/node-add.js'
import {endpointsWithout, memberOfNode, planNodeRemove, type NodeRemoveFacts} from '../../src/lib/ops/node-remove.js'
import {
  appendListLine,
  destinationLine,
  listHasDestination,
  parseAgentStart,
  parseAgentStop,
  removeListDestination,
  startAgentScript,
  UndoStack,
} from '../../src/lib/ops/node-shared.js'
import type {DrainRunPlan, NodePlan} from '../../src/lib/ops/drain.js'

const fixtures = path.resolve(import.meta.dirname, '../fixtures')
const fixture = (p: string) => readFileSync(path.join(fixtures, p), 'utf8')

const YAML = `# the lab — keep this comment
cluster: lab
ssh:
  knownHosts: /tmp/known_hosts   # trailing comment
nodes:
  kam1: {host: 10.0.0.11, roles: [kamailio]}
  # etcd and Asterisk
  ast1: {host: 10.0.0.21, roles: [asterisk, etcd]}
  ast2: {host: 10.0.0.22, roles: [asterisk, etcd]}
  ast3: {host: 10.0.0.23, roles: [asterisk, etcd]}
# after the nodes
`
const FILE = '/tmp/hactl.yaml'
const config: HactlConfig = {...parseConfig(YAML, FILE), file: FILE}
const FP = 'SHA256:Hwu9Y8vTXPjQvdhK57OiGxbYjzchpLlAxHEwm1A+H60'

describe('node add input (validateNodeAdd, parseRoles, fingerprints)', () => {
  test('the YAML edit adds the node and keeps every comment and byte of the file', () => {
    // Given the lab's hactl.yaml, when spare1 is added
    const v = validateNodeAdd(config, YAML, {name: 'spare1', host: '10.0.0.240', roles: ['asterisk', 'etcd'], weight: 25})
    // Then the old text is a prefix up to the last node, comments included, and spare1 follows
    assert.ok(v.newText.includes('# the lab — keep this comment'))
    assert.ok(v.newText.includes('# trailing comment'))
    assert.ok(v.newText.includes('# after the nodes'))
    assert.ok(v.newText.startsWith(YAML.slice(0, YAML.indexOf('# after the nodes'))))
    assert.deepEqual(v.node, {name: 'spare1', host: '10.0.0.240', port: 22, user: 'root', roles: ['asterisk', 'etcd'], weight: 25})
    assert.equal(v.newConfig.nodes.length, 5)
    assert.equal(v.text, YAML)
  })

  test('a name or host already in the inventory is refused (exit 2) before any connection', () => {
    assert.throws(() => validateNodeAdd(config, YAML, {name: 'ast1', host: '10.0.0.99', roles: ['asterisk']}), (e: unknown) => e instanceof UserError && /ast1 is already in/.test(e.message) && e.exitCode === 2)
    assert.throws(() => validateNodeAdd(config, YAML, {name: 'new1', host: '10.0.0.21', roles: ['asterisk']}), (e: unknown) => e instanceof UserError && /already node ast1/.test(e.message))
  })

  test('bad names, hosts, weights are refused as usage errors', () => {
    assert.throws(() => validateNodeAdd(config, YAML, {name: 'Bad_Name', host: '10.0.0.99', roles: ['asterisk']}), UserError)
    assert.throws(() => validateNodeAdd(config, YAML, {name: 'etcd', host: '10.0.0.99', roles: ['asterisk']}), UserError)
    assert.throws(() => validateNodeAdd(config, YAML, {name: 'n1', host: 'a b', roles: ['asterisk']}), UserError)
    assert.throws(() => validateNodeAdd(config, YAML, {name: 'n1', host: '10.0.0.99', roles: ['etcd'], weight: 10}), /--weight applies to Asterisk boxes only/)
    assert.throws(() => validateNodeAdd(config, YAML, {name: 'n1', host: '10.0.0.99', roles: []}), UserError)
  })

  test('--host-key-fingerprint must be a SHA256 fingerprint; padding is dropped', () => {
    assert.equal(normalizeFingerprint(FP), FP)
    assert.equal(normalizeFingerprint(`${FP}=`), FP)
    assert.throws(() => normalizeFingerprint('MD5:aa:bb'), UserError)
    assert.throws(() => normalizeFingerprint('SHA256:short'), UserError)
    assert.throws(() => validateNodeAdd(config, YAML, {name: 'n1', host: '10.0.0.99', roles: ['asterisk'], hostKeyFingerprint: 'nope'}), UserError)
  })

  test('--roles: a comma list, each once; unknown roles refused', () => {
    assert.deepEqual(parseRoles('asterisk,etcd'), ['asterisk', 'etcd'])
    assert.deepEqual(parseRoles(' Asterisk , asterisk,etcd '), ['asterisk', 'etcd'])
    assert.throws(() => parseRoles('asterisk,pbx'), /unknown role "pbx"/)
    assert.throws(() => parseRoles(' , '), UserError)
  })
})

describe('decideHostKey', () => {
  const info = (known: boolean): HostKeyInfo => ({host: '10.0.0.240', port: 22, type: 'ssh-ed25519', fingerprint: FP, known, knownHostsFile: '/tmp/known_hosts'})

  test('a matching --host-key-fingerprint trusts a new key', async () => {
    assert.equal(await decideHostKey(info(false), {fingerprint: FP}), 'flag')
  })

  test('a mismatch is refused (exit 1), naming both fingerprints, for new and known keys', async () => {
    const other = 'SHA256:AAAAY8vTXPjQvdhK57OiGxbYjzchpLlAxHEwm1A+H60'
    for (const known of [false, true]) {
      await assert.rejects(decideHostKey(info(known), {fingerprint: other}), (e: unknown) => e instanceof HactlError && e.exitCode === 1 && e.message.includes(FP) && e.message.includes(other) && /nothing was changed/.test(e.message))
    }
  })

  test('no terminal and no fingerprint: a usage error (exit 2) whose hint has the flag to pass', async () => {
    await assert.rejects(decideHostKey(info(false), {}), (e: unknown) => e instanceof UserError && e.exitCode === 2 && e.suggestions.some((s) => s.includes(`--host-key-fingerprint ${FP}`)))
  })

  test('the operator is asked; no means refused', async () => {
    let asked = 0
    assert.equal(await decideHostKey(info(false), {confirm: async () => (asked++, true)}), 'confirmed')
    await assert.rejects(decideHostKey(info(false), {confirm: async () => false}), /not trusted/)
    assert.equal(asked, 1)
  })

  test('a known key needs no question', async () => {
    assert.equal(await decideHostKey(info(true), {}), 'known')
  })
})

describe('etcd member configuration (configureEtcdMember)', () => {
  const settings = {name: 'spare1', initialCluster: 'ast1=http://10.0.0.21:2380,spare1=http://10.0.0.240:2380', peerUrl: 'http://10.0.0.240:2380', clientUrl: 'http://10.0.0.240:2379'}

  test('cloud-config: discovery removed, the join settings set, comments and other sections kept', () => {
    const before = fixture('cloud-config/user_data')
    const after = configureEtcdMember(before, {format: 'cloud-config'}, settings)
    assert.ok(after.startsWith('#cloud-config\n'))
    assert.ok(after.includes('# ast1 — installed by coreos-install -c user_data'))
    const doc = parseYaml(after) as {coreos: {etcd2: Record<string, string>; fleet: unknown; units: unknown[]}; write_files: unknown[]}
    const e = doc.coreos.etcd2
    assert.equal(e.discovery, undefined)
    assert.equal(e.name, 'spare1')
    assert.equal(e['initial-cluster'], settings.initialCluster)
    assert.equal(e['initial-cluster-state'], 'existing')
    assert.equal(e['initial-advertise-peer-urls'], 'http://10.0.0.240:2380')
    // Present already: left as the operator wrote them.
    assert.equal(e['listen-client-urls'], 'http://0.0.0.0:2379,http://0.0.0.0:4001')
    assert.equal(doc.coreos.units.length, 3)
    assert.equal(doc.write_files.length, 1)
  })

  test("cloud-config: the lab's spare user_data (no discovery, no cluster)", () => {
    const before = '#cloud-config\nhostname: spare1\ncoreos:\n  etcd2:\n    name: spare1\n    advertise-client-urls: http://10.0.0.240:2379\n'
    const doc = parseYaml(configureEtcdMember(before, {format: 'cloud-config'}, settings)) as {coreos: {etcd2: Record<string, string>}}
    assert.equal(doc.coreos.etcd2['initial-cluster-state'], 'existing')
    assert.equal(doc.coreos.etcd2['listen-peer-urls'], 'http://10.0.0.240:2380')
    assert.equal(doc.coreos.etcd2['listen-client-urls'], 'http://10.0.0.240:2379,http://127.0.0.1:2379')
  })

  test('cloud-config: an empty or missing file becomes a complete one', () => {
    const doc = parseYaml(configureEtcdMember('', {format: 'cloud-config'}, settings)) as {coreos: {etcd2: Record<string, string>}}
    assert.equal(doc.coreos.etcd2.name, 'spare1')
  })

  test('cloud-config: a file that is not one is refused', () => {
    assert.throws(() => configureEtcdMember('hostname: x\n', {format: 'cloud-config'}, settings), /not a cloud-config/)
  })

  test('env file: ETCD_DISCOVERY dropped, ETCD_* set, comments kept', () => {
    const after = configureEtcdMember(fixture('cloud-config/etcd.env'), {format: 'env'}, settings)
    const lines = after.split('\n')
    assert.ok(lines.includes('# /etc/default/etcd (Debian etcd-server)'))
    assert.ok(lines.includes('#ETCD_DISCOVERY=https://discovery.etcd.io/commented-out'))
    assert.ok(!lines.some((l) => l.startsWith('ETCD_DISCOVERY=')))
    assert.ok(lines.includes('ETCD_NAME=spare1'))
    assert.ok(lines.includes(`ETCD_INITIAL_CLUSTER=${settings.initialCluster}`))
    assert.ok(lines.includes('ETCD_INITIAL_CLUSTER_STATE=existing'))
    assert.ok(lines.includes('ETCD_ENABLE_V2=true'))
    assert.equal(lines.filter((l) => l.startsWith('ETCD_NAME=')).length, 1)
  })

  test('systemd drop-in: Environment= lines in [Service]', () => {
    const after = configureEtcdMember(fixture('cloud-config/20-cloudinit.conf'), {format: 'env'}, settings)
    assert.ok(!after.includes('ETCD_DISCOVERY'))
    assert.ok(after.includes('Environment="ETCD_INITIAL_CLUSTER_STATE=existing"'))
    assert.ok(after.includes('Environment="ETCD_NAME=spare1"'))
    assert.ok(after.includes('Environment="ETCD_LISTEN_PEER_URLS=http://10.77.0.21:2380"'), 'present values are kept')
    assert.ok(after.startsWith('[Service]\n'))
  })

  test('initial-cluster: every member by name, the new one by its ID or peer URL', () => {
    const members = [
      {ID: '1', name: 'ast1', peerURLs: ['http://10.0.0.21:2380']},
      {ID: '2', name: 'ast2', peerURLs: ['http://10.0.0.22:2380']},
      {ID: '9', name: '', peerURLs: ['http://10.0.0.240:2380']},
    ]
    assert.equal(initialClusterOf(members, {id: '9', name: 'spare1', peerUrl: 'http://10.0.0.240:2380'}), 'ast1=http://10.0.0.21:2380,ast2=http://10.0.0.22:2380,spare1=http://10.0.0.240:2380')
    assert.equal(initialClusterOf(members.slice(0, 2), {name: 'spare1', peerUrl: 'http://10.0.0.240:2380'}), 'ast1=http://10.0.0.21:2380,ast2=http://10.0.0.22:2380,spare1=http://10.0.0.240:2380')
  })

  test('peer URL: the scheme and port of the existing members', () => {
    assert.equal(peerUrlFor('10.0.0.240', []), 'http://10.0.0.240:2380')
    assert.equal(peerUrlFor('10.0.0.240', ['https://10.0.0.21:12380']), 'https://10.0.0.240:12380')
    assert.equal(peerUrlFor('fd00::5', []), 'http://[fd00::5]:2380')
  })
})

// ---------------------------------------------------------------------------------------------

const req: HostFactsRequest = {
  roles: ['asterisk', 'etcd'],
  dataDir: '/var/lib/etcd',
  etcdService: 'etcd2',
  asteriskService: 'asterisk',
  asteriskCli: 'asterisk -rx',
  localHactl: {node: '/usr/bin/node', runJs: '/work/main/bin/run.js'},
}

/** What the facts script printed on a lab spare host (captured), with the clocks given. */
function capturedFacts(overrides: Record<string, string> = {}): string {
  const f: Record<string, string> = {
    clock0: '1764160000000000000',
    uid: '0',
    hostname: 'spare1',
    os: 'Debian GNU/Linux 12 (bookworm)',
    kernel: '6.1.0-18-amd64',
    diskpath: '/var/lib/etcd',
    diskfree_kb: '80327752',
    etcddata: 'no',
    'cmd systemctl': '/usr/bin/systemctl',
    'cmd etcd': '/usr/bin/etcd',
    'cmd etcd2': '',
    'cmd asterisk': '/usr/sbin/asterisk',
    'cmd setsid': '/usr/bin/setsid',
    'cmd hactl': '',
    'unit etcd2': 'loaded',
    'active etcd2': 'inactive',
    'unit asterisk': 'loaded',
    'active asterisk': 'inactive',
    localhactl: 'yes',
    clock1: '1764160000150000000',
    ...overrides,
  }
  return Object.entries(f)
    .map(([k, v]) => `@@hactl-facts ${k}${v === '' ? '' : ` ${v}`}`)
    .join('\n')
}

function facts(overrides: Record<string, string> = {}): HostFacts {
  // The laptop sent at ...000 - 100 ms and got the answer 350 ms later: 150 ms of script, 200 ms network.
  return parseHostFacts(capturedFacts(overrides), req, {sentAt: 1764160000000 - 100, receivedAt: 1764160000000 + 250})
}

describe('host facts', () => {
  test('the script checks each command and unit the roles need, quoted', () => {
    const s = buildHostFactsScript({...req, dataDir: "/var/lib/it's"})
    for (const c of ['systemctl', 'etcd', 'asterisk', 'setsid', 'hactl']) assert.match(s, new RegExp(`command -v ${c} `))
    assert.match(s, /systemctl show -p LoadState etcd2/)
    assert.match(s, /d='\/var\/lib\/it'\\''s'/)
    assert.doesNotMatch(buildHostFactsScript({...req, roles: ['kamailio']}), /command -v etcd/)
  })

  test('parsed from captured output', () => {
    const f = facts()
    assert.equal(f.hostname, 'spare1')
    assert.equal(f.os, 'Debian GNU/Linux 12 (bookworm)')
    assert.equal(f.diskFreeBytes, 80327752 * 1024)
    assert.equal(f.commands.etcd, '/usr/bin/etcd')
    assert.equal(f.commands.etcd2, null)
    assert.equal(f.units.etcd2, 'loaded')
    assert.equal(f.active.asterisk, 'inactive')
    assert.equal(f.uid, 0)
    assert.deepEqual(f.agent, {argv: ['/usr/bin/node', '/work/main/bin/run.js'], how: 'shared-path'})
  })

  test('clock offset: the script time is taken out, the network time split in two', () => {
    // Remote clock0 = T; the laptop sent at T-100 and the network took 350-150 = 200 ms → offset 0.
    assert.equal(facts().clockOffsetMs, 0)
    assert.equal(facts({clock0: '1764160005000000000', clock1: '1764160005150000000'}).clockOffsetMs, 5000)
  })

  test('an installed hactl wins over the shared path; --agent-command over both', () => {
    assert.deepEqual(facts({'cmd hactl': '/usr/local/bin/hactl'}).agent, {argv: ['hactl'], how: 'installed'})
    const r = {...req, agentCommand: ['/opt/hactl/bin/hactl']}
    const f = parseHostFacts(capturedFacts({'cmd /opt/hactl/bin/hactl': '/opt/hactl/bin/hactl'}), r, {sentAt: 0, receivedAt: 1})
    assert.deepEqual(f.agent, {argv: ['/opt/hactl/bin/hactl'], how: 'flag'})
  })

  test('nothing missing on a good host', () => {
    assert.deepEqual(hostRequirements(facts(), req), {missing: [], warnings: []})
  })

  test('missing commands, units, data and disk stop the add with what to install', () => {
    const f = facts({'cmd etcd': '', 'unit asterisk': 'not-found', etcddata: 'yes', diskfree_kb: '1000', localhactl: 'no', 'active etcd2': 'active'})
    const {missing} = hostRequirements(f, req)
    const text = missing.map((m) => `${m.what} => ${m.fix}`).join('\n')
    assert.match(text, /^etcd => install etcd \(Debian: apt-get install etcd-server/m)
    assert.match(text, /asterisk\.service => install Asterisk's unit/)
    assert.match(text, /member exists.*=> .*rm -rf \/var\/lib\/etcd\/member/)
    assert.match(text, /1\.0 GiB free at \/var\/lib\/etcd/)
    assert.match(text, /hactl \(runs the announce agent.*=> install hactl on the host/)
    assert.match(text, /etcd stopped on the host \(etcd2 is active\)/)
  })

  test('the Asterisk CLI through docker needs docker', () => {
    const r = {...req, roles: ['asterisk' as const], asteriskCli: 'docker exec asterisk asterisk -rx'}
    const f = parseHostFacts(capturedFacts(), r, {sentAt: 0, receivedAt: 1})
    assert.match(hostRequirements(f, r).missing.map((m) => m.what).join(), /docker/)
  })

  test('a clock far off is a warning', () => {
    const {missing, warnings} = hostRequirements(facts({clock0: '1764160030000000000', clock1: '1764160030150000000'}), req)
    assert.equal(missing.length, 0)
    assert.match(warnings.join(), /\+30\.0s off/)
  })

  test('output cut short is an error, not empty facts', () => {
    assert.throws(() => parseHostFacts('garbage', req, {sentAt: 0, receivedAt: 1}), /cut short/)
  })
})

// ---------------------------------------------------------------------------------------------

function member(name: string, ip: string, over: Partial<EtcdMemberHealth> = {}): EtcdMemberHealth & {peerURLs: string[]} {
  return {id: `${name}id`, name, peerURLs: [`http://${ip}:2380`], clientURLs: [`http://${ip}:2379`], isLearner: false, healthy: true, isLeader: false, ...over}
}

const spare: ResolvedNode = {name: 'spare1', host: '10.0.0.240', port: 22, user: 'root', roles: ['asterisk', 'etcd']}
const etcdMembers = [member('ast1', '10.0.0.21'), member('ast2', '10.0.0.22'), member('ast3', '10.0.0.23')]

function addFacts(over: Partial<NodeAddFacts> = {}): NodeAddFacts {
  return {
    node: spare,
    hostKey: {host: '10.0.0.240', port: 22, type: 'ssh-ed25519', fingerprint: FP, known: false, knownHostsFile: '/tmp/known_hosts'},
    host: facts(),
    requirements: {missing: [], warnings: []},
    configFile: FILE,
    etcd: {members: etcdMembers, hasLeader: true, serviceName: 'etcd2', discoveryFile: '/var/lib/coreos-install/user_data'},
    sipIp: '10.0.0.240',
    sipPort: 5060,
    setId: 1,
    registration: null,
    mark: null,
    kamailio: [
      {node: 'kam1', ok: true, fileExists: true, fileText: '', inFile: false, runtime: null},
      {node: 'kam2', ok: true, fileExists: true, fileText: '', inFile: false, runtime: null},
    ],
    agent: {argv: ['hactl'], how: 'installed'},
    ...over,
  }
}

describe('planNodeAdd', () => {
  test('asterisk and etcd: every step, in order', () => {
    const plan = planNodeAdd(addFacts())
    assert.deepEqual(plan.blockers, [])
    assert.deepEqual(
      plan.steps.map((s) => s.id),
      ['known-hosts', 'inventory', 'etcd-member', 'etcd-config', 'etcd-start', 'etcd-promote', 'asterisk-start', 'agent-start', 'dispatcher', 'wait-active'],
    )
    assert.equal(plan.etcd?.peerUrl, 'http://10.0.0.240:2380')
    assert.equal(plan.etcd?.initialCluster, 'ast1=http://10.0.0.21:2380,ast2=http://10.0.0.22:2380,ast3=http://10.0.0.23:2380,spare1=http://10.0.0.240:2380')
    assert.deepEqual(plan.sip, {ip: '10.0.0.240', uri: 'sip:10.0.0.240:5060'})
    assert.match(plan.steps.find((s) => s.id === 'dispatcher')!.title, /kam1, kam2/)
  })

  test('a known host key adds no known_hosts step; an asterisk-only node no etcd steps', () => {
    const plan = planNodeAdd(addFacts({node: {...spare, roles: ['asterisk']}, hostKey: {...addFacts().hostKey, known: true}}))
    assert.deepEqual(plan.steps.map((s) => s.id), ['inventory', 'asterisk-start', 'agent-start', 'dispatcher', 'wait-active'])
  })

  test('an etcd-only node: no Asterisk steps', () => {
    const plan = planNodeAdd(addFacts({node: {...spare, roles: ['etcd']}}))
    assert.deepEqual(plan.steps.map((s) => s.id), ['known-hosts', 'inventory', 'etcd-member', 'etcd-config', 'etcd-start', 'etcd-promote'])
  })

  test('unhealthy etcd blocks (a member down, or a learner waiting)', () => {
    const down = planNodeAdd(addFacts({etcd: {...addFacts().etcd!, members: [member('ast1', '10.0.0.21'), member('ast2', '10.0.0.22', {healthy: false}), member('ast3', '10.0.0.23')]}}))
    assert.match(down.blockers.join(), /ast2 is not healthy/)
    const learner = planNodeAdd(addFacts({etcd: {...addFacts().etcd!, members: [...etcdMembers, member('', '10.0.0.99', {isLearner: true, id: 'x9'})]}}))
    assert.match(learner.blockers.join(), /learner already/)
  })

  test('a member with the same name or host blocks', () => {
    const plan = planNodeAdd(addFacts({etcd: {...addFacts().etcd!, members: [...etcdMembers.slice(0, 2), member('old', '10.0.0.240')]}}))
    assert.match(plan.blockers.join(), /member old with the host of spare1/)
    assert.match(plan.suggestions.join(), /etcdctl member remove oldid/)
  })

  test('missing requirements, a registration, a mark, an unreachable Kamailio block', () => {
    const plan = planNodeAdd(
      addFacts({
        requirements: {missing: [{what: 'etcd', fix: 'install etcd'}], warnings: ['clock']},
        registration: {ip: '10.0.0.77', port: 5060},
        mark: {state: 'drained', by: 'ops@x', since: '2024-01-01T00:00:00Z'},
        kamailio: [{node: 'kam1', ok: false, error: 'timeout', fileExists: false, fileText: '', inFile: false, runtime: null}],
      }),
    )
    const b = plan.blockers.join('\n')
    assert.match(b, /lacks what its roles need: etcd/)
    assert.match(b, /registered in etcd already \(ip 10\.0\.0\.77/)
    assert.match(b, /maintenance mark for spare1/)
    assert.match(b, /kam1 does not answer/)
    assert.ok(plan.suggestions.includes('install etcd'))
    assert.deepEqual(plan.warnings, ['clock'])
  })

  test('already in every dispatcher list: says so', () => {
    const plan = planNodeAdd(addFacts({kamailio: [{node: 'kam1', ok: true, fileExists: true, fileText: '', inFile: true, runtime: {flags: 'AP', state: 'active'}}]}))
    assert.match(plan.steps.find((s) => s.id === 'dispatcher')!.title, /in every dispatcher list already/)
  })
})

// ---------------------------------------------------------------------------------------------

describe('dispatcher.list edits (one destination, every other byte kept)', () => {
  const LIST = '# dispatcher.list of the hactl lab: SETID URI FLAGS PRIORITY ATTRS\n1 sip:10.0.0.21:5060 0 0\n2 sip:10.0.0.240:5060 0 0\n1 sip:10.0.0.22:5060 0 0 weight=50\n'

  test('the line hactl writes', () => {
    assert.equal(destinationLine(1, 'sip:10.0.0.240:5060'), '1 sip:10.0.0.240:5060 0 0')
    assert.equal(destinationLine(1, 'sip:10.0.0.240:5060', 25), '1 sip:10.0.0.240:5060 0 0 weight=25')
  })

  test('present only in its own set', () => {
    assert.equal(listHasDestination(LIST, 1, '10.0.0.22', 5060, parseSipUri), true)
    assert.equal(listHasDestination(LIST, 1, '10.0.0.240', 5060, parseSipUri), false)
    assert.equal(listHasDestination(LIST, 2, '10.0.0.240', 5060, parseSipUri), true)
    assert.equal(listHasDestination(LIST, 1, '10.0.0.21', 5080, parseSipUri), false)
  })

  test('append, then remove: the file is byte for byte what it was', () => {
    const added = appendListLine(LIST, destinationLine(1, 'sip:10.0.0.240:5060'))
    assert.equal(added, `${LIST}1 sip:10.0.0.240:5060 0 0\n`)
    const back = removeListDestination(added, 1, '10.0.0.240', 5060, parseSipUri)
    assert.equal(back.text, LIST)
    assert.deepEqual(back.removed, ['1 sip:10.0.0.240:5060 0 0'])
  })

  test('a file without a final newline, CRLF files, an empty file', () => {
    assert.equal(appendListLine('1 sip:a:5060 0 0', '1 sip:b:5060 0 0'), '1 sip:a:5060 0 0\n1 sip:b:5060 0 0\n')
    assert.equal(appendListLine('1 sip:a:5060 0 0\r\n', '1 sip:b:5060 0 0'), '1 sip:a:5060 0 0\r\n1 sip:b:5060 0 0\r\n')
    assert.equal(appendListLine('', '1 sip:b:5060 0 0'), '1 sip:b:5060 0 0\n')
    assert.equal(removeListDestination('1 sip:a:5060 0 0\r\n1 sip:b:5060 0 0\r\n', 1, 'b', 5060, parseSipUri).text, '1 sip:a:5060 0 0\r\n')
  })

  test('remove leaves comments and other sets alone', () => {
    const r = removeListDestination(LIST, 1, '10.0.0.21', 5060, parseSipUri)
    assert.equal(r.text, '# dispatcher.list of the hactl lab: SETID URI FLAGS PRIORITY ATTRS\n2 sip:10.0.0.240:5060 0 0\n1 sip:10.0.0.22:5060 0 0 weight=50\n')
  })
})

describe('the announce agent scripts', () => {
  test('start: one background simple command, quoted arguments, pid file', () => {
    const s = startAgentScript(['/usr/bin/node', '/work/main/bin/run.js'], ['agent', 'announce', '--name', "it's"], 'spare1')
    assert.match(s, /^pidf=\/run\/hactl\/announce-spare1\.pid; log=\/var\/log\/hactl-announce-spare1\.log$/m)
    assert.match(s, /^cd \/ \|\| exit 1$/m)
    assert.match(s, /^setsid \/usr\/bin\/node \/work\/main\/bin\/run\.js agent announce --name 'it'\\''s' >>"\$log" 2>&1 <\/dev\/null &$/m)
  })

  test('parsing the answers', () => {
    assert.deepEqual(parseAgentStart('@@hactl-agent started 123\n'), {outcome: 'started', pid: 123, log: ''})
    assert.deepEqual(parseAgentStart('@@hactl-agent died 7\nError: boom\n'), {outcome: 'died', pid: 7, log: 'Error: boom'})
    assert.equal(parseAgentStart('').outcome, 'unknown')
    assert.deepEqual(parseAgentStop('@@hactl-agent stopped 123\n'), {outcome: 'stopped', pid: 123})
    assert.deepEqual(parseAgentStop('@@hactl-agent none\n'), {outcome: 'none'})
  })
})

describe('UndoStack', () => {
  test('undoes newest first, goes on after a failure, reports each', async () => {
    const order: string[] = []
    const u = new UndoStack()
    u.push('a', async () => void order.push('a'))
    u.push('b', async () => {
      order.push('b')
      throw new Error('b broke\nmore')
    })
    u.push('c', async () => void order.push('c'))
    const out = await u.unwind()
    assert.deepEqual(order, ['c', 'b', 'a'])
    assert.deepEqual(out, [
      {title: 'c', ok: true},
      {title: 'b', ok: false, error: 'b broke'},
      {title: 'a', ok: true},
    ])
    assert.equal(u.size, 0)
  })
})

// ---------------------------------------------------------------------------------------------

describe('planNodeRemove', () => {
  const ast1: ResolvedNode = {name: 'ast1', host: '10.0.0.21', port: 22, user: 'root', roles: ['asterisk', 'etcd']}
  const drainNode: NodePlan = {node: 'ast1', action: 'apply', state: 'Asterisk running, 0 calls', steps: [{kind: 'mark-draining', title: 'mark ast1 draining in etcd'}]}
  const drainPlan = (capacityOk = true): DrainRunPlan => ({
    operation: 'drain',
    nodes: [drainNode],
    capacity: {ok: capacityOk, minInService: 1, inService: ['ast1'], remaining: [], removing: ['ast1'], outOfService: [], message: capacityOk ? 'fine' : 'draining ast1 would leave 0'},
    force: false,
    timeoutMs: 1000,
    forceEffects: [],
  })
  const removeFacts = (over: Partial<NodeRemoveFacts> = {}): NodeRemoveFacts => ({
    node: ast1,
    configFile: FILE,
    target: {reachable: true, etcdUnit: 'active', asteriskUnit: 'active', agentPid: 42},
    etcd: {members: [...etcdMembers, member('ast4', '10.0.0.24')], member: etcdMembers[0]!, serviceName: 'etcd2'},
    drain: {plan: drainPlan(), node: drainNode},
    registration: {ip: '10.0.0.21', lease: 'abc'},
    mark: null,
    sipIp: '10.0.0.21',
    sipPort: 5060,
    kamailio: [{node: 'kam1', ok: true, fileExists: true, fileText: '', inFile: true, runtime: {flags: 'AP', state: 'active'}}],
    ...over,
  })

  test('4 members: drain, member removal before etcd stops, services, registration, lists, inventory', () => {
    const plan = planNodeRemove(removeFacts())
    assert.deepEqual(plan.blockers, [])
    assert.deepEqual(plan.steps.map((s) => s.id), ['drain', 'etcd-remove', 'etcd-stop', 'agent-stop', 'asterisk-stop', 'registration', 'dispatcher', 'inventory'])
    assert.equal(plan.etcd?.quorum.ok, true)
    assert.deepEqual(plan.steps[0]!.details, ['mark ast1 draining in etcd'])
  })

  test('3 members: the quorum guard refuses without --force and names the flag', () => {
    const plan = planNodeRemove(removeFacts({etcd: {members: etcdMembers, member: etcdMembers[0]!, serviceName: 'etcd2'}}))
    assert.match(plan.blockers.join(), /quorum guard: removing ast1 would shrink etcd to 2 voting members/)
    assert.match(plan.suggestions.join(), /node remove ast1 --force/)
    const forced = planNodeRemove(removeFacts({etcd: {members: etcdMembers, member: etcdMembers[0]!, serviceName: 'etcd2'}}), {force: true})
    assert.deepEqual(forced.blockers, [])
    assert.match(forced.warnings.join(), /--force/)
  })

  test('the capacity guard of the drain blocks', () => {
    const plan = planNodeRemove(removeFacts({drain: {plan: drainPlan(false), node: drainNode}}))
    assert.match(plan.blockers.join(), /capacity guard refuses to drain ast1/)
    assert.match(plan.suggestions.join(), /node drain ast1 --force/)
  })

  test('an unreachable host: refused without --force; with it, only the cluster side is planned', () => {
    const t = {reachable: false, error: 'connection refused'}
    assert.match(planNodeRemove(removeFacts({target: t})).blockers.join(), /ast1 does not answer/)
    const plan = planNodeRemove(removeFacts({target: t}), {force: true})
    assert.deepEqual(plan.blockers, [])
    assert.deepEqual(plan.steps.map((s) => s.id), ['etcd-remove', 'registration', 'dispatcher', 'inventory'])
  })

  test('a Kamailio-only node: just the inventory', () => {
    const kam: ResolvedNode = {name: 'kam3', host: '10.0.0.13', port: 22, user: 'root', roles: ['kamailio']}
    const plan = planNodeRemove({node: kam, configFile: FILE, target: {reachable: true}, registration: null, mark: null, sipPort: 5060, kamailio: []})
    assert.deepEqual(plan.steps.map((s) => s.id), ['inventory'])
  })

  test('memberOfNode and endpointsWithout', () => {
    assert.equal(memberOfNode(etcdMembers, {name: 'x', host: '10.0.0.22'})?.name, 'ast2')
    assert.equal(memberOfNode(etcdMembers, {name: 'ast3', host: '1.2.3.4'})?.name, 'ast3')
    assert.equal(memberOfNode(etcdMembers, {name: 'x', host: '1.2.3.4'}), undefined)
    const node = config.nodes.find((n) => n.name === 'ast1')!
    assert.deepEqual(endpointsWithout(config, node), ['http://10.0.0.22:2379', 'http://10.0.0.23:2379'])
  })
})
