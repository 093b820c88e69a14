import assert from 'node:assert/strict'
import {spawn, spawnSync} from 'node:child_process'
import {createHash} from 'node:crypto'
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {after, before, describe, test} from 'node:test'
import {parseConfig, type HactlConfig, type ResolvedNode} from '../../src/lib/config/load.js'
import {ExitCode, HactlError, InterruptedError, UnreachableError, UserError} from '../../src/lib/errors.js'
import type {UsedUrl} from '../../src/lib/etcd/discovery-service.js'
import {
  buildPreflightScript,
  hostFactsFrom,
  interpretPrepare,
  parsePathsSection,
  parsePrepareOutput,
  planRediscover,
  prepareHostCommand,
  planSettings,
  rediscoverCluster,
  RediscoverIncompleteError,
  RediscoverPreflightError,
  stopEtcdCommand,
  validateRediscoverInputs,
  waitForReboot,
  waitProbeCommand,
  writeDiscoveryCommand,
  type RediscoverEvent,
  type RediscoverFacts,
  type HostFacts,
} from '../../src/lib/ops/rediscover.js'
import type {SshPool} from '../../src/lib/ssh/pool.js'
import {PlainProgress, renderPlan, renderSummary} from '../../src/ui/rediscover-view.js'

const CLOUD_CONFIG = `#cloud-config
# managed by hand; keep this comment
coreos:
  etcd2:
    discovery: http://10.77.0.2:2379/v2/keys/discovery/oldtoken   # the old one
    advertise-client-urls: http://$private_ipv4:2379
  units:
    - name: etcd2.service
      command: start
`

function labConfig(root: string, extra = ''): HactlConfig {
  return parseConfig(
    `cluster: lab
etcd:
  endpoints: [http://127.0.0.1:1]
  timeout: 300ms
  dataDir: ${root}/var/lib/etcd
  wipe: [member]
  discovery:
    format: cloud-config
    file: ${root}/user_data
    service: http://127.0.0.1:1
${extra}nodes:
  ast1: {host: 10.77.0.21, roles: [asterisk, etcd]}
  ast2: {host: 10.77.0.22, roles: [asterisk, etcd]}
  ast3: {host: 10.77.0.23, roles: [asterisk, etcd]}
  kam1: {host: 10.77.0.11, roles: [kamailio]}
`,
    'hactl.yaml',
  )
}

function runSh(
  script: string,
  opts: {stdin?: string; env?: NodeJS.ProcessEnv} = {},
): {code: number | null; stdout: string; stderr: string} {
  const r = spawnSync('/bin/sh', ['-c', script], {
    input: opts.stdin ?? '',
    env: {...process.env, ...opts.env},
    encoding: 'utf8',
    timeout: 10_000,
    killSignal: 'SIGKILL',
  })
  return {code: r.status, stdout: r.stdout, stderr: r.stderr}
}

/** Like runSh, but the event loop keeps running (so a child of this process that dies is reaped). */
function runShAsync(
  script: string,
  opts: {env?: NodeJS.ProcessEnv} = {},
): Promise<{code: number | null; stdout: string; stderr: string}> {
  return new Promise((resolve) => {
    const p = spawn('/bin/sh', ['-c', script], {
      env: {...process.env, ...opts.env},
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    const t = setTimeout(() => p.kill('SIGKILL'), 15_000)
    p.on('close', (code) => {
      clearTimeout(t)
      resolve({code, stdout, stderr})
    })
  })
}

function facts(over: Partial<RediscoverFacts> = {}, hosts?: Array<Partial<HostFacts>>): RediscoverFacts {
  const base = (name: string, i: number): HostFacts => ({
    name,
    host: `10.77.0.2${i + 1}`,
    bootId: `${i}aaaaaaa-1111-2222-3333-444444444444`,
    service: 'active',
    discoveryFileExists: true,
    discoveryText: CLOUD_CONFIG,
    discoveryUrl: 'http://10.77.0.2:2379/v2/keys/discovery/oldtoken',
    present: ['/r/var/lib/etcd/member'],
  })
  return {
    cluster: 'lab',
    hosts: (hosts ?? [{}, {}, {}]).map((h, i) => ({...base(`ast${i + 1}`, i), ...h})),
    etcd: {
      answering: true,
      clusterId: 'cdf818194e3a8c32',
      healthy: 3,
      total: 3,
      leader: {id: '8e9e05c52164694d', name: 'ast1'},
      members: [{id: '8e9e05c52164694d', name: 'ast1', healthy: true, isLeader: true}],
    },
    used: [],
    usedFile: '/state/hactl/discovery-used.json',
    ...over,
  }
}

describe('rediscover: inputs and the path guard', () => {
  const config = labConfig('/r')

  test('defaults: the etcd hosts, their count as size, the configured service, member under the data dir', () => {
    const v = validateRediscoverInputs(config, {restore: true})
    assert.deepEqual(
      v.nodes.map((n) => n.name),
      ['ast1', 'ast2', 'ast3'],
    )
    assert.equal(v.size, 3)
    assert.deepEqual(v.source, {kind: 'service', url: 'http://127.0.0.1:1'})
    assert.deepEqual(v.wipe, ['/r/var/lib/etcd/member'])
  })

  test('usage errors (exit 2) before anything runs: size, URLs, wipe paths outside the data dir', () => {
    const usage = (e: unknown) => e instanceof UserError && e.exitCode === ExitCode.usage
    assert.throws(
      () => validateRediscoverInputs(config, {restore: true, size: 4}),
      (e: unknown) => usage(e) && /more than the 3 etcd hosts/.test((e as Error).message),
    )
    assert.throws(() => validateRediscoverInputs(config, {restore: true, size: 0}), usage)
    assert.throws(() => validateRediscoverInputs(config, {restore: true, discovery: 'ftp://x/y'}), usage)
    assert.throws(() => validateRediscoverInputs(config, {restore: true, discoveryService: 'nope'}), usage)
    assert.throws(
      () =>
        validateRediscoverInputs(config, {
          restore: true,
          discovery: 'http://a/b',
          discoveryService: 'http://c',
        }),
      usage,
    )
    // The schema refuses these too; the guard holds even for a config built another way.
    for (const wipe of [['../../etc'], ['/etc'], ['.'], ['member', 'a/../../b']]) {
      const bad = {...config, etcd: {...config.etcd, wipe}}
      assert.throws(
        () => validateRediscoverInputs(bad, {restore: true}),
        (e: unknown) => usage(e) && /etcd\.wipe/.test((e as Error).message),
        wipe.join(','),
      )
    }
    const noEtcd = {...config, nodes: config.nodes.filter((n) => !n.roles.includes('etcd'))}
    assert.throws(() => validateRediscoverInputs(noEtcd, {restore: true}), /no node has the etcd role/)
  })
})

describe('rediscover: the preflight probe (run here with /bin/sh)', () => {
  let root = ''
  let config: HactlConfig
  const node: ResolvedNode = {name: 'ast1', host: '10.77.0.21', port: 22, user: 'root', roles: ['etcd']}

  before(() => {
    root = mkdtempSync(path.join(tmpdir(), 'hactl-rd-'))
    mkdirSync(path.join(root, 'var/lib/etcd/member/snap'), {recursive: true})
    writeFileSync(path.join(root, 'user_data'), CLOUD_CONFIG.trimEnd()) // no final newline
    config = labConfig(root)
  })
  after(() => rmSync(root, {recursive: true, force: true}))

  test('one script gives boot id, unit state, the exact discovery file and the data paths', () => {
    const v = validateRediscoverInputs(config, {restore: true})
    const out = runSh(buildPreflightScript(config, v.wipe))
    const f = hostFactsFrom(config, node, out.stdout)
    assert.ok(typeof f !== 'string', String(f))
    assert.equal(f.bootId, readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim())
    assert.equal(f.discoveryText, CLOUD_CONFIG.trimEnd(), 'byte for byte, even without a final newline')
    assert.equal(f.discoveryUrl, 'http://10.77.0.2:2379/v2/keys/discovery/oldtoken')
    assert.deepEqual(f.present, [path.join(root, 'var/lib/etcd/member')])
    assert.ok(f.service.length > 0)
  })

  test('a wipe path that is a symlink out of the data dir stops the run at preflight', () => {
    const other = mkdtempSync(path.join(tmpdir(), 'hactl-rd-other-'))
    const evil = path.join(root, 'evil')
    mkdirSync(path.join(evil, 'var/lib/etcd'), {recursive: true})
    symlinkSync(other, path.join(evil, 'var/lib/etcd/member'))
    writeFileSync(path.join(evil, 'user_data'), CLOUD_CONFIG)
    try {
      const c = labConfig(evil)
      const v = validateRediscoverInputs(c, {restore: true})
      const f = hostFactsFrom(c, node, runSh(buildPreflightScript(c, v.wipe)).stdout)
      assert.equal(typeof f, 'string')
      assert.match(f as string, /resolves to .*outside the data dir.*refusing to wipe/)
    } finally {
      rmSync(other, {recursive: true, force: true})
    }
  })

  test('parsePathsSection: present, absent, escaping', () => {
    const r = parsePathsSection(
      'data\t/var/lib/etcd\npresent\t/var/lib/etcd/member\t/var/lib/etcd/member\nabsent\t/var/lib/etcd/log\t/var/lib/etcd/log\npresent\t/var/lib/etcd/conf\t/etc',
    )
    assert.deepEqual(r.present, ['/var/lib/etcd/member', '/var/lib/etcd/conf'])
    assert.equal(r.problems.length, 1)
    assert.match(r.problems[0]!, /\/var\/lib\/etcd\/conf resolves to \/etc/)
  })

  test('a missing cloud-config, or one that cannot be edited, is a reason to stop; a missing env file is not', () => {
    const m = '@@hactl-rediscover:'
    const out = (disc: string, code: number) =>
      `${m}boot_id\n0123456789abcdef-aaaa\n${m}rc 0\n${m}service\nactive\n${m}rc 0\n${m}discovery\n${disc}\n${m}rc ${code}\n${m}paths\ndata\t/var/lib/etcd\n${m}rc 0\n`
    assert.match(String(hostFactsFrom(config, node, out('', 3))), /does not exist/)
    assert.match(
      String(hostFactsFrom(config, node, out(Buffer.from('coreos: [1, 2\n').toString('base64'), 0))),
      /cannot edit/,
    )
    assert.match(String(hostFactsFrom(config, node, 'ssh banner only')), /boot id/)
    const env = {
      ...config,
      etcd: {...config.etcd, discovery: {...config.etcd.discovery, format: 'env' as const}},
    }
    const f = hostFactsFrom(env, node, out('', 3))
    assert.ok(typeof f !== 'string')
    assert.equal(f.discoveryFileExists, false)
    assert.equal(f.discoveryUrl, null)
  })
})

describe('rediscover: the plan', () => {
  const config = labConfig('/r')
  const v = validateRediscoverInputs(config, {restore: true})
  const s = planSettings(config, {
    stateDir: '/home/op/.local/state/hactl',
    rebootTimeoutMs: 600_000,
    healthTimeoutMs: 300_000,
  })

  test('etcd answers: backup, lock, restore; rendered with hosts, paths, discovery service, reboots', async () => {
    const plan = planRediscover(facts(), v, s)
    assert.equal(plan.size, 3)
    assert.deepEqual(plan.backup, {take: true, dir: '/home/op/.local/state/hactl/backups'})
    assert.deepEqual(plan.restore, {enabled: true})
    assert.equal(plan.lock.take, true)
    assert.deepEqual(plan.oldDiscoveryUrls, ['http://10.77.0.2:2379/v2/keys/discovery/oldtoken'])
    assert.deepEqual(plan.warnings, [])
    assert.equal(plan.steps.length, 5)
    const text = await renderPlan(plan)
    for (const want of [
      'Rediscover etcd for cluster lab: 3 hosts, a new cluster of 3 members',
      'etcd now: answers, cluster cdf818194e3a8c32, 3/3 healthy, leader ast1',
      'discovery now: http://10.77.0.2:2379/v2/keys/discovery/oldtoken',
      'new token from: discovery service http://127.0.0.1:1 (GET /new?size=N)',
      '/home/op/.local/state/hactl/backups/lab-<time>.{db,keys.json}',
      'one SSH session each: stop etcd2 (killed: its data is removed next), remove /r/var/lib/etcd/member, write the new URL into /r/user_data (cloud-config), reboot',
      'new boot id and etcd2 active (up to 10m)',
      '3 healthy members with a leader (up to 5m)',
      'put back the saved keys',
      'Lock: the cluster lock is held until etcd is stopped',
    ]) {
      assert.ok(text.includes(want), `plan lacks ${JSON.stringify(want)}:\n${text}`)
    }
    // One table row per host, with its boot id and the path to remove.
    const rows = text.split('\n').filter((l) => /^\s+ast\d\s/.test(l))
    assert.equal(rows.length, 3)
    assert.match(rows[1]!, /ast2\s+10\.77\.0\.22\s+1aaaaaaa\s+active\s+\/r\/var\/lib\/etcd\/member\s+yes/)
  })

  test('etcd down: no backup possible, no lock, nothing to restore, and the plan says so', async () => {
    const f = facts(
      {
        etcd: {
          answering: false,
          healthy: 0,
          total: 0,
          members: [],
          error: 'etcd unreachable at http://10.77.0.21:2379',
        },
      },
      [{service: 'failed', present: []}, {}, {discoveryUrl: 'http://10.77.0.2:2379/v2/keys/discovery/newer'}],
    )
    const plan = planRediscover(f, v, s)
    assert.equal(plan.backup.take, false)
    assert.deepEqual(plan.restore, {enabled: false, reason: 'nothing to restore: no backup'})
    assert.equal(plan.lock.take, false)
    assert.equal(plan.oldDiscoveryUrls.length, 2)
    assert.ok(plan.warnings.some((w) => /disagree on the discovery URL/.test(w)))
    const text = await renderPlan(plan)
    assert.match(text, /etcd now: does not answer \(etcd unreachable at http:\/\/10\.77\.0\.21:2379\)/)
    assert.match(text, /no backup: etcd does not answer .*no backup possible/)
    assert.match(text, /WITHOUT the cluster lock/)
    assert.match(text, /ast1 .*failed\s+\/r\/var\/lib\/etcd\/member \(absent\)/)
  })

  test('an unfinished earlier run: its keys are restored; --no-restore turns restoring off', () => {
    const pending = {
      cluster: 'lab',
      startedAt: '2024-05-01T10:00:00Z',
      newUrl: 'http://x/v2/keys/discovery/t',
      keysPath: '/s/backups/lab-1.keys.json',
    }
    const down = {answering: false, healthy: 0, total: 0, members: []}
    const plan = planRediscover(facts({etcd: down, pending}), v, s)
    assert.deepEqual(plan.restore, {enabled: true, pending: '/s/backups/lab-1.keys.json'})
    assert.ok(plan.warnings.some((w) => /did not finish; this run completes it/.test(w)))
    const no = planRediscover(facts({pending}), {...v, restore: false}, s)
    assert.deepEqual(no.restore, {enabled: false, reason: '--no-restore'})
  })

  test('--discovery: a URL this cluster used, or one with members registered, is refused; its size must match', () => {
    const given = (url: string) => ({...v, source: {kind: 'given' as const, url}})
    const used: UsedUrl[] = [{url: 'http://d/v2/keys/discovery/used', at: '2024-01-01T00:00:00Z', how: 'new'}]
    assert.throws(
      () => planRediscover(facts({used}), given('http://d/v2/keys/discovery/used'), s),
      (e: unknown) => e instanceof UserError && /already used it/.test(e.message),
    )
    assert.throws(
      () => planRediscover(facts(), given('http://10.77.0.2:2379/v2/keys/discovery/oldtoken'), s),
      /configured now on ast1, ast2, ast3/,
    )
    assert.throws(
      () =>
        planRediscover(
          facts({given: {facts: {size: 3, registered: 2}}}),
          given('http://d/v2/keys/discovery/t2'),
          s,
        ),
      /2 registered member/,
    )
    assert.throws(
      () =>
        planRediscover(
          facts({given: {facts: {size: 5, registered: 0}}}),
          given('http://d/v2/keys/discovery/t3'),
          s,
        ),
      /cluster of 5, not 3/,
    )
    const ok = planRediscover(
      facts({given: {facts: {size: 3, registered: 0}}}),
      given('http://d/v2/keys/discovery/t4'),
      s,
    )
    assert.match(ok.steps[1]!, /use the given discovery URL http:\/\/d\/v2\/keys\/discovery\/t4/)
    const unchecked = planRediscover(
      facts({given: {error: 'ECONNREFUSED'}}),
      given('http://d/v2/keys/discovery/t5'),
      s,
    )
    assert.ok(unchecked.warnings.some((w) => /could not check the given discovery URL/.test(w)))
  })

  test('--size smaller than the hosts: a warning', () => {
    const plan = planRediscover(facts(), {...v, size: 2}, s)
    assert.ok(plan.warnings.some((w) => /--size 2 is less than the 3 etcd hosts/.test(w)))
  })

  test('the summary names old and new URL, members, leader, backup and keys restored', async () => {
    const plan = planRediscover(facts(), v, s)
    const text = await renderSummary({
      status: 'done',
      plan,
      oldDiscoveryUrls: plan.oldDiscoveryUrls,
      newDiscoveryUrl: 'http://10.77.0.2:2379/v2/keys/discovery/newtoken',
      oldClusterId: 'cdf818194e3a8c32',
      newClusterId: 'a1b2c3d4e5f60718',
      members: [
        {id: '1111111111111111', name: 'ast1', healthy: true, isLeader: false},
        {id: '2222222222222222', name: 'ast2', healthy: true, isLeader: true},
        {id: '3333333333333333', name: 'ast3', healthy: true, isLeader: false},
      ],
      leader: {id: '2222222222222222', name: 'ast2'},
      hosts: [{name: 'ast1', host: '10.77.0.21', oldBootId: 'aaaaaaaa-1', newBootId: 'bbbbbbbb-2'}],
      backup: {
        snapshotPath: '/b/lab-1.db',
        snapshotBytes: 20512,
        snapshotVerified: true,
        keysPath: '/b/lab-1.keys.json',
        keys: 12,
        skippedLeased: 1,
        revision: '40',
      },
      restore: {restored: 11, skippedExisting: 1, from: ['/b/lab-1.keys.json']},
      lock: {held: true, note: ''},
      warnings: [],
      durationMs: 6400,
      phases: [{phase: 'prepare', durationMs: 120}],
    })
    for (const want of [
      'Rediscovered etcd for cluster lab in 6.4s',
      'old discovery URL: http://10.77.0.2:2379/v2/keys/discovery/oldtoken',
      'new discovery URL: http://10.77.0.2:2379/v2/keys/discovery/newtoken',
      'cluster id: cdf818194e3a8c32 -> a1b2c3d4e5f60718',
      'members: 3/3 healthy, leader ast2 (2222222222222222)',
      'backup: /b/lab-1.db (20512 bytes), /b/lab-1.keys.json (12 keys, 1 with a lease left out)',
      'keys restored: 11 (1 already there, kept)',
      'ast1 aaaaaaaa -> bbbbbbbb',
    ]) {
      assert.ok(text.includes(want), `summary lacks ${JSON.stringify(want)}:\n${text}`)
    }
  })
})

describe('rediscover: remote commands (run here with /bin/sh)', () => {
  let root = ''
  before(() => {
    root = mkdtempSync(path.join(tmpdir(), 'hactl-rd-cmd-'))
  })
  after(() => rmSync(root, {recursive: true, force: true}))

  test('the discovery file is replaced atomically with stdin, keeping its mode; a changed file is refused', () => {
    const file = path.join(root, 'coreos-install', 'user_data')
    mkdirSync(path.dirname(file), {recursive: true})
    writeFileSync(file, CLOUD_CONFIG)
    chmodSync(file, 0o640)
    const sha256 = createHash('sha256').update(CLOUD_CONFIG).digest('hex')
    const next = CLOUD_CONFIG.replace('oldtoken', 'newtoken')
    const ok = runSh(writeDiscoveryCommand(file, {exists: true, sha256}), {stdin: next})
    assert.equal(ok.code, 0, ok.stderr)
    assert.equal(readFileSync(file, 'utf8'), next)
    assert.equal(statSync(file).mode & 0o777, 0o640)
    // The preflight saw other content: refused, file untouched, no temp file left.
    const stale = runSh(writeDiscoveryCommand(file, {exists: true, sha256}), {stdin: 'x'})
    assert.equal(stale.code, 3)
    assert.match(stale.stderr, /changed since the preflight/)
    assert.equal(readFileSync(file, 'utf8'), next)
    assert.equal(
      spawnSync('/bin/sh', ['-c', `ls -A ${path.dirname(file)}`], {encoding: 'utf8'}).stdout.trim(),
      'user_data',
    )
    // A file that does not exist yet (env drop-in): created.
    const drop = path.join(root, 'run', 'etcd2.service.d', '20-discovery.conf')
    const created = runSh(writeDiscoveryCommand(drop, {exists: false, sha256: ''}), {
      stdin: 'ETCD_DISCOVERY=http://x/y\n',
    })
    assert.equal(created.code, 0, created.stderr)
    assert.equal(readFileSync(drop, 'utf8'), 'ETCD_DISCOVERY=http://x/y\n')
    // Values that look like shell are data: a path with a quote and spaces.
    const odd = path.join(root, "it's a dir", 'user data')
    const r = runSh(writeDiscoveryCommand(odd, {exists: false, sha256: ''}), {stdin: '$(touch /tmp/pwned)'})
    assert.equal(r.code, 0, r.stderr)
    assert.equal(readFileSync(odd, 'utf8'), '$(touch /tmp/pwned)')
  })

  test('etcd is killed, not stopped gracefully, where systemctl has no kill verb (the lab)', async () => {
    // Given: a systemctl stand-in like the lab's (no `kill` verb) and a "etcd" that ignores SIGTERM.
    const bin = path.join(root, 'bin')
    mkdirSync(bin, {recursive: true})
    const etcd = spawn('/bin/sh', ['-c', 'trap "" TERM; while :; do sleep 0.05; done'], {
      detached: true,
      stdio: 'ignore',
    })
    const pidFile = path.join(root, 'pid')
    const log = path.join(root, 'systemctl.log')
    writeFileSync(pidFile, String(etcd.pid))
    writeFileSync(
      path.join(bin, 'systemctl'),
      `#!/bin/sh
echo "$*" >> ${log}
pid=$(cat ${pidFile})
alive() { kill -0 "$pid" 2>/dev/null && [ "$(ps -o stat= -p "$pid" | cut -c1)" != Z ]; }
case "$1" in
  show) echo "MainPID=$pid" ;;
  kill) echo "Unknown command verb kill." >&2; exit 1 ;;
  stop) [ "$2" = --no-block ] && exit 0; while alive; do sleep 0.05; done ;;
  is-active) if alive; then echo active; exit 0; else echo inactive; exit 3; fi ;;
esac
`,
    )
    chmodSync(path.join(bin, 'systemctl'), 0o755)
    const exited = new Promise<string | null>((resolve) => etcd.once('exit', (_c, sig) => resolve(sig)))
    try {
      // When
      const t0 = Date.now()
      const r = await runShAsync(stopEtcdCommand('etcd2'), {env: {PATH: `${bin}:${process.env.PATH}`}})
      // Then: killed at once (a graceful stop would hang here), the stop queued before the kill.
      assert.equal(r.code, 0, r.stderr)
      assert.equal(await exited, 'SIGKILL')
      assert.ok(Date.now() - t0 < 3000)
      const calls = readFileSync(log, 'utf8').trim().split('\n')
      assert.deepEqual(calls, ['show -p MainPID etcd2', 'stop --no-block etcd2', 'kill -s KILL etcd2'])
    } finally {
      try {
        process.kill(etcd.pid!, 'SIGKILL')
      } catch {
        // gone, as it should be
      }
    }
  })

  test('prepare: stop, wipe, write and reboot in one session; a refused wipe stops before the write', () => {
    // Given: a host tree with etcd data, a cloud-config, and a systemctl whose unit is already stopped.
    const host = path.join(root, 'host')
    mkdirSync(path.join(host, 'var/lib/etcd/member/wal'), {recursive: true})
    writeFileSync(path.join(host, 'var/lib/etcd/member/wal/0.wal'), 'x')
    writeFileSync(path.join(host, 'user_data'), CLOUD_CONFIG)
    const bin = path.join(root, 'bin2')
    mkdirSync(bin, {recursive: true})
    writeFileSync(
      path.join(bin, 'systemctl'),
      '#!/bin/sh\ncase "$1" in show) echo MainPID=0 ;; kill) exit 1 ;; is-active) echo inactive; exit 3 ;; esac\nexit 0\n',
    )
    chmodSync(path.join(bin, 'systemctl'), 0o755)
    const reboots = path.join(root, 'reboots')
    writeFileSync(path.join(bin, 'reboot'), `#!/bin/sh\necho reboot >> ${reboots}\n`)
    chmodSync(path.join(bin, 'reboot'), 0o755)
    const env = {PATH: `${bin}:${process.env.PATH}`}
    const c = labConfig(host)
    const v = validateRediscoverInputs(c, {restore: true})
    const sha256 = createHash('sha256').update(CLOUD_CONFIG).digest('hex')
    const next = CLOUD_CONFIG.replace('oldtoken', 'newtoken')

    // When / Then: all three steps, in one script.
    const ok = runSh(prepareHostCommand(c, v.wipe, {exists: true, sha256}), {stdin: next, env})
    assert.equal(ok.code, 0, ok.stderr)
    assert.deepEqual(parsePrepareOutput(ok.stdout), {
      stage: 'reboot issued',
      lines: [`removed ${path.join(host, 'var/lib/etcd/member')}`],
    })
    assert.equal(readFileSync(reboots, 'utf8'), 'reboot\n')
    assert.ok(!existsSync(path.join(host, 'var/lib/etcd/member')))
    assert.equal(readFileSync(path.join(host, 'user_data'), 'utf8'), next)

    // Given: member is now a symlink out of the data dir (it appeared after the preflight).
    const outside = mkdtempSync(path.join(tmpdir(), 'hactl-rd-outside-'))
    writeFileSync(path.join(outside, 'precious'), 'keep me')
    symlinkSync(outside, path.join(host, 'var/lib/etcd/member'))
    try {
      const sha2 = createHash('sha256').update(next).digest('hex')
      const refused = runSh(prepareHostCommand(c, v.wipe, {exists: true, sha256: sha2}), {
        stdin: 'should not be written',
        env,
      })
      assert.equal(refused.code, 11)
      assert.equal(parsePrepareOutput(refused.stdout).stage, 'etcd stopped')
      assert.match(refused.stderr, /refusing to wipe/)
      assert.equal(readFileSync(path.join(outside, 'precious'), 'utf8'), 'keep me')
      assert.equal(readFileSync(path.join(host, 'user_data'), 'utf8'), next)
      assert.equal(readFileSync(reboots, 'utf8'), 'reboot\n', 'no second reboot')
    } finally {
      rmSync(outside, {recursive: true, force: true})
    }
  })

  test('the wait probe: boot id first; on the old boot it stops there, on a new one it waits for the unit', () => {
    const boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()
    const bin = path.join(root, 'bin3')
    mkdirSync(bin, {recursive: true})
    const count = path.join(root, 'count')
    writeFileSync(count, '')
    // Active on the third look.
    writeFileSync(
      path.join(bin, 'systemctl'),
      `#!/bin/sh\necho x >> ${count}\nif [ $(wc -l < ${count}) -ge 3 ]; then echo active; else echo activating; exit 3; fi\n`,
    )
    chmodSync(path.join(bin, 'systemctl'), 0o755)
    const env = {PATH: `${bin}:${process.env.PATH}`}
    assert.deepEqual(runSh(waitProbeCommand('etcd2', boot, 5000), {env}).stdout.split('\n'), [boot, ''])
    assert.equal(readFileSync(count, 'utf8'), '', 'no unit check on the old boot')
    assert.deepEqual(runSh(waitProbeCommand('etcd2', 'some-old-boot', 5000), {env}).stdout.split('\n'), [
      boot,
      'active',
      '',
    ])
    writeFileSync(count, '')
    assert.deepEqual(runSh(waitProbeCommand('etcd2', 'some-old-boot', 100), {env}).stdout.split('\n'), [
      boot,
      'activating',
      '',
    ])
  })
})

/** A stand-in for SshPool: answers from a script of responses per command kind. */
function fakePool(
  respond: (
    node: ResolvedNode,
    command: string,
    stdin?: string,
  ) => Promise<{stdout?: string; code?: number | null}> | {stdout?: string; code?: number | null},
) {
  const calls: Array<{node: string; command: string}> = []
  const drops: string[] = []
  const pool = {
    calls,
    drops,
    async run(node: ResolvedNode, command: string, opts: {stdin?: string | Buffer; check?: boolean} = {}) {
      calls.push({node: node.name, command})
      const r = await respond(node, command, opts.stdin?.toString())
      const code = r.code === undefined ? 0 : r.code
      if (opts.check !== false && code !== 0) throw new HactlError(`${node.name}: exit ${code}`)
      return {stdout: r.stdout ?? '', stderr: '', code, durationMs: 1}
    },
    async drop(node: ResolvedNode) {
      drops.push(node.name)
    },
    async connect() {},
    async close() {},
  }
  return pool
}

describe('rediscover: reboot and wait (fake SSH)', () => {
  const node: ResolvedNode = {name: 'ast1', host: '10.77.0.21', port: 22, user: 'root', roles: ['etcd']}

  test('a prepare session: finished, cut by the reboot after the write, or cut before anything', () => {
    const M = '@@hactl-step:'
    const all = `${M}stopped\nremoved /var/lib/etcd/member\n${M}wiped\n${M}written\n${M}rebooting\n`
    assert.deepEqual(interpretPrepare({stdout: all, stderr: '', code: 0}), {
      stage: 'reboot issued',
      removed: ['/var/lib/etcd/member'],
    })
    // The reboot cut the session before its exit status came: issued all the same.
    assert.deepEqual(
      interpretPrepare({stdout: `${M}stopped\n${M}wiped\n${M}written\n`, stderr: '', code: null}),
      {stage: 'reboot issued', removed: []},
    )
    assert.deepEqual(interpretPrepare({stdout: '', stderr: '', code: null}), {
      stage: 'unknown',
      removed: [],
      error: 'the SSH session was cut before the host reported anything',
    })
    const refused = interpretPrepare({
      stdout: `${M}stopped\n`,
      stderr: 'hactl: refusing to wipe /var/lib/etcd/member: it resolves to /etc\n',
      code: 11,
    })
    assert.equal(refused.stage, 'etcd stopped')
    assert.equal(
      refused.error,
      'removing the data paths failed: hactl: refusing to wipe /var/lib/etcd/member: it resolves to /etc',
    )
    assert.match(
      interpretPrepare({
        stdout: `${M}stopped\n${M}wiped\n${M}written\n`,
        stderr: 'Failed to reboot system: permission denied',
        code: 13,
      }).error!,
      /^reboot failed: Failed to reboot/,
    )
    assert.match(interpretPrepare({stdout: `${M}stopped\n`, stderr: '', code: null}).error!, /session cut/)
  })

  test('waiting: old boot id, then no SSH, then back with etcd activating, then active', async () => {
    const answers: Array<() => {stdout: string}> = [
      () => ({stdout: 'old-boot\nactive\n'}),
      () => {
        throw new UnreachableError('ast1', 'connection refused')
      },
      () => ({stdout: 'new-boot\nactivating\n'}),
      () => ({stdout: `new-boot\nactive\n${Buffer.from('ETCD_DISCOVERY=x').toString('base64')}\n`}),
    ]
    const pool = fakePool(() => answers.shift()!())
    const states: string[] = []
    const back = await waitForReboot(pool as unknown as SshPool, node, 'old-boot', 'etcd2', {
      timeoutMs: 5000,
      pollMs: 1,
      onState: (stage, detail) => states.push(`${stage}: ${detail}`),
    })
    assert.deepEqual(back, {bootId: 'new-boot'})
    assert.deepEqual(states, [
      'reboot issued: old system still up',
      'reboot issued: waiting for SSH',
      'rebooted: back (boot new-boot), etcd2 activating',
    ])
    assert.deepEqual(pool.drops, ['ast1', 'ast1'])
  })

  test('the same boot id until the timeout: it did not reboot (an error)', async () => {
    const pool = fakePool(() => ({stdout: 'old-boot\nactive\n'}))
    await assert.rejects(
      waitForReboot(pool as unknown as SshPool, node, 'old-boot', 'etcd2', {timeoutMs: 150, pollMs: 10}),
      /still up with the same boot id old-boot after 150ms: it did not reboot/,
    )
    const down = fakePool(() => {
      throw new UnreachableError('ast1', 'no route to host')
    })
    await assert.rejects(
      waitForReboot(down as unknown as SshPool, node, 'old-boot', 'etcd2', {timeoutMs: 100, pollMs: 10}),
      /not back after 100ms \(--reboot-timeout\): unreachable: no route to host/,
    )
    const ctl = new AbortController()
    ctl.abort()
    await assert.rejects(
      waitForReboot(down as unknown as SshPool, node, 'old-boot', 'etcd2', {
        timeoutMs: 10_000,
        pollMs: 10,
        signal: ctl.signal,
      }),
      InterruptedError,
    )
  })
})

describe('rediscover: the whole run against fake hosts (nothing changes before the stop phase)', () => {
  let root = ''
  let state = ''
  let config: HactlConfig
  const bootIds = new Map([
    ['ast1', '11111111-aaaa-bbbb-cccc-000000000001'],
    ['ast2', '22222222-aaaa-bbbb-cccc-000000000002'],
    ['ast3', '33333333-aaaa-bbbb-cccc-000000000003'],
  ])

  before(() => {
    root = mkdtempSync(path.join(tmpdir(), 'hactl-rd-run-'))
    state = path.join(root, 'state')
    mkdirSync(path.join(root, 'var/lib/etcd/member'), {recursive: true})
    writeFileSync(path.join(root, 'user_data'), CLOUD_CONFIG)
    config = labConfig(root)
  })
  after(() => rmSync(root, {recursive: true, force: true}))

  /** Runs the preflight script here, as if each host were this machine with its own boot id. */
  const hosts = (unreachable: string[] = []) =>
    fakePool((node, command) => {
      if (unreachable.includes(node.name))
        throw new UnreachableError(node.name, `connection refused (${node.host}:22)`)
      if (!command.includes('@@hactl-rediscover:')) return {code: 99}
      const out = runSh(command).stdout
      return {stdout: out.replace(/^[0-9a-f-]{36}$/m, bootIds.get(node.name)!)}
    })

  test('one host unreachable: refused before anything else, naming it; exit 1', async () => {
    const pool = hosts(['ast2'])
    const events: RediscoverEvent[] = []
    await assert.rejects(
      rediscoverCluster(config, pool as unknown as SshPool, {
        restore: true,
        stateDir: state,
        onEvent: (e) => events.push(e),
        confirm: async () => true,
      }),
      (e: unknown) => {
        assert.ok(e instanceof RediscoverPreflightError)
        assert.deepEqual(
          e.hosts.map((h) => h.name),
          ['ast2'],
        )
        assert.equal(e.exitCode, 1)
        assert.match(e.message, /1 of 3 etcd hosts is not ready \(ast2\); nothing was changed/)
        assert.match(e.message, /ast2: unreachable: connection refused/)
        assert.ok(e.suggestions.some((s) => s.includes('bring ast2 back')))
        return true
      },
    )
    assert.ok(
      pool.calls.every((c) => c.command.includes('@@hactl-rediscover:')),
      'only the read-only probe ran',
    )
    assert.deepEqual(pool.calls.map((c) => c.node).sort(), ['ast1', 'ast2', 'ast3'])
    assert.ok(events.some((e) => e.type === 'host' && e.host === 'ast2' && e.state === 'failed'))
    assert.ok(!existsSync(path.join(state, 'discovery-used.json')))
  })

  test('dry run: the plan, read-only probes only; declined: the same', async () => {
    const pool = hosts()
    let printed = ''
    const r = await rediscoverCluster(config, pool as unknown as SshPool, {
      restore: true,
      dryRun: true,
      stateDir: state,
      onPlan: async (p) => void (printed = await renderPlan(p)),
    })
    assert.equal(r.status, 'dry-run')
    assert.equal(r.plan.etcd.answering, false)
    assert.match(printed, /no backup: etcd does not answer/)
    assert.deepEqual(
      r.plan.hosts.map((h) => h.bootId.slice(0, 8)),
      ['11111111', '22222222', '33333333'],
    )
    assert.equal(pool.calls.length, 3)

    const asked: string[] = []
    const d = await rediscoverCluster(config, pool as unknown as SshPool, {
      restore: true,
      stateDir: state,
      confirm: async (p) => {
        asked.push(p.cluster)
        return false
      },
    })
    assert.equal(d.status, 'declined')
    assert.deepEqual(asked, ['lab'])
    assert.equal(pool.calls.length, 6)
    assert.ok(pool.calls.every((c) => c.command.includes('@@hactl-rediscover:')))
    assert.ok(existsSync(path.join(root, 'var/lib/etcd/member')))
  })

  test('the discovery service fails: nothing changed on the hosts (no stop was sent)', async () => {
    const pool = hosts()
    await assert.rejects(
      rediscoverCluster(config, pool as unknown as SshPool, {
        restore: true,
        stateDir: state,
        confirm: async () => true,
        tokenTimeoutMs: 2000,
      }),
      (e: unknown) => {
        assert.ok(e instanceof HactlError)
        assert.match(
          e.message,
          /cannot reach discovery service http:\/\/127\.0\.0\.1:1\/new\?size=3.*nothing was changed on the hosts/,
        )
        return true
      },
    )
    assert.ok(pool.calls.every((c) => c.command.includes('@@hactl-rediscover:')))
  })

  test('Ctrl-C before the stop phase: interrupted, nothing changed', async () => {
    const pool = hosts()
    const ctl = new AbortController()
    await assert.rejects(
      rediscoverCluster(config, pool as unknown as SshPool, {
        restore: true,
        stateDir: state,
        signal: ctl.signal,
        confirm: async () => {
          ctl.abort()
          return true
        },
      }),
      (e: unknown) =>
        e instanceof InterruptedError && e.exitCode === 130 && /nothing was changed/.test(e.message),
    )
    assert.ok(pool.calls.every((c) => c.command.includes('@@hactl-rediscover:')))
  })
})

describe('rediscover: plain progress lines (no terminal)', () => {
  test('a line per phase and host change, members joined x/N', () => {
    let out = ''
    const p = new PlainProgress({
      write: (s: string) => ((out += s), true),
    } as unknown as NodeJS.WritableStream)
    p.onEvent({type: 'phase', phase: 'wait-ssh', state: 'start'})
    p.onEvent({type: 'host', phase: 'wait-ssh', host: 'ast1', state: 'start'})
    p.onEvent({type: 'host', phase: 'wait-ssh', host: 'ast1', state: 'done'})
    p.onEvent({type: 'host', phase: 'wait-ssh', host: 'ast2', state: 'failed', detail: 'command failed'})
    p.onEvent({type: 'phase', phase: 'wait-ssh', state: 'failed'})
    p.onEvent({type: 'members', healthy: 2, total: 3, size: 3})
    p.onEvent({type: 'members', healthy: 2, total: 3, size: 3})
    const lines = out.trim().split('\n')
    assert.equal(lines[0], 'Wait for the hosts (new boot id, etcd active)...')
    assert.equal(lines[1], 'Wait for the hosts (new boot id, etcd active) | ast1: ok')
    assert.equal(lines[2], 'Wait for the hosts (new boot id, etcd active) | ast2: FAILED: command failed')
    assert.match(lines[3]!, /^Wait for the hosts \(new boot id, etcd active\): FAILED \(\d+ms\)$/)
    assert.equal(lines[4], 'Wait for a healthy etcd cluster: members joined 2/3')
    assert.equal(lines.length, 5)
  })

  test('an incomplete run says what state each host is in and how to finish', () => {
    const e = new RediscoverIncompleteError(
      'wipe failed on 1 of 3 hosts',
      [
        {name: 'ast1', stage: 'data wiped'},
        {name: 'ast2', stage: 'etcd stopped', error: 'remove the data paths: refusing to wipe'},
        {name: 'ast3', stage: 'data wiped'},
      ],
      {bin: 'hactl', backup: '/s/backups/lab-1.keys.json'},
    )
    assert.equal(e.exitCode, 1)
    assert.match(e.message, /ast2: etcd stopped, data still there; FAILED: remove the data paths/)
    assert.match(
      e.suggestions[0]!,
      /run `hactl cluster rediscover` again to complete it: it gets a new token .*lab-1\.keys\.json/,
    )
  })
})
