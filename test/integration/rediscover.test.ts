/**
 * `hactl cluster rediscover` on the lab, with the built CLI (node bin/run.js), checked with tools of
 * our own: an etcd client for the cluster id and the keys, OpenSSH for boot ids, marker files and
 * the cloud-config on each host.
 */
import assert from 'node:assert/strict'
import {randomBytes} from 'node:crypto'
import {existsSync, mkdtempSync, readFileSync, rmSync, statSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {after, before, describe, test} from 'node:test'
import {loadConfig, type HactlConfig} from '../../src/lib/config/load.js'
import {openEtcd} from '../../src/lib/etcd/client.js'
import {readDiscoveryUrl} from '../../src/lib/etcd/discovery-config.js'
import {etcdClusterHealth, type EtcdClusterHealth} from '../../src/lib/etcd/health.js'
import {
  exec,
  labCli,
  labHosts,
  labSsh,
  REPO,
  restoreLab,
  useLab,
  waitFor,
  type ExecResult,
} from '../helpers/lab.js'

const BUILT = path.join(REPO, 'bin', 'run.js')
const MARKER = 'hactl-rediscover-marker'

interface HostFacts {
  bootId: string
  url: string | null
  marker: boolean
}

describe('hactl cluster rediscover (lab)', () => {
  let release: () => Promise<void> = async () => {}
  let configPath = ''
  let config: HactlConfig
  let stateHome = ''
  const etcdHosts = () =>
    labHosts('asterisk')
      .filter((h) => h.etcd)
      .map((h) => h.name)

  /** The built CLI against the lab, with a state dir of this test's own. */
  const rediscover = (args: string[], timeoutMs = 240_000): Promise<ExecResult> =>
    exec(process.execPath, [BUILT, 'cluster', 'rediscover', ...args], {
      env: {...process.env, NO_COLOR: '1', HACTL_CONFIG: configPath, XDG_STATE_HOME: stateHome},
      timeoutMs,
    })

  async function health(): Promise<EtcdClusterHealth> {
    const handle = await openEtcd(config)
    try {
      return await etcdClusterHealth(handle)
    } finally {
      await handle.close()
    }
  }

  async function hostFacts(): Promise<Record<string, HostFacts>> {
    const out: Record<string, HostFacts> = {}
    const file = config.etcd.discovery.file
    await Promise.all(
      etcdHosts().map(async (name) => {
        const r = await labSsh(
          name,
          `cat /proc/sys/kernel/random/boot_id; if [ -e ${config.etcd.dataDir}/member/${MARKER} ]; then echo marker; else echo none; fi; cat ${file}`,
        )
        assert.equal(r.code, 0, `${name}: ${r.stderr}`)
        const [boot = '', marker = '', ...rest] = r.stdout.split('\n')
        out[name] = {
          bootId: boot.trim(),
          marker: marker.trim() === 'marker',
          url: readDiscoveryUrl(rest.join('\n'), {
            format: config.etcd.discovery.format,
            key: config.etcd.discovery.key,
          }),
        }
      }),
    )
    return out
  }

  before(async () => {
    assert.ok(
      existsSync(path.join(REPO, 'dist', 'commands', 'cluster', 'rediscover.js')),
      'build first: npx tsc -p tsconfig.json && npx oclif manifest',
    )
    const lab = await useLab()
    release = lab.release
    configPath = lab.configPath
    config = loadConfig({flag: configPath})
    stateHome = mkdtempSync(path.join(tmpdir(), 'hactl-rediscover-state-'))
    // Given: a healthy etcd cluster, and a marker in every member's data dir.
    await waitFor(async () => (await health()).healthyCount === etcdHosts().length, {
      timeoutMs: 60_000,
      what: 'a healthy etcd cluster',
    })
    for (const name of etcdHosts()) {
      const r = await labSsh(name, `touch ${config.etcd.dataDir}/member/${MARKER}`)
      assert.equal(r.code, 0, r.stderr)
    }
  })

  after(async () => {
    await restoreLab().catch(() => undefined)
    await release()
    rmSync(stateHome, {recursive: true, force: true})
  })

  test('one etcd host unreachable: exit 1 naming it, and nothing changed anywhere', async () => {
    // Given
    const before = await hostFacts()
    const clusterBefore = (await health()).clusterId
    const fault = await labCli(['fault', 'ast2', 'sshd-down'])
    assert.equal(fault.code, 0, fault.stderr)
    let r: ExecResult
    try {
      // When
      r = await rediscover(['--yes'])
    } finally {
      assert.equal((await labCli(['heal', 'ast2'])).code, 0)
    }
    // Then
    assert.equal(r.code, 1, r.stderr)
    assert.match(r.stderr, /1 of 3 etcd hosts is not ready \(ast2\); nothing was changed/)
    assert.match(r.stderr, /ast2: unreachable/)
    await waitFor(async () => (await labSsh('ast2', 'true')).code === 0, {
      what: 'sshd on ast2 after the heal',
    })
    assert.deepEqual(await hostFacts(), before, 'same boot ids, same discovery URL, data untouched')
    const h = await health()
    assert.equal(h.clusterId, clusterBefore)
    assert.equal(h.healthyCount, 3)
  })

  test('a discovery URL this cluster uses is refused before anything runs (exit 2)', async () => {
    const before = await hostFacts()
    const used = Object.values(before)[0]!.url!
    const r = await rediscover(['--yes', '--discovery', used])
    assert.equal(r.code, 2, r.stderr)
    assert.match(r.stderr, /cannot be used: it is the URL configured now on ast1, ast2, ast3/)
    const bad = await rediscover(['--yes', '--discovery-service', 'ftp://nope'])
    assert.equal(bad.code, 2)
    assert.match(bad.stderr, /only http and https/)
    assert.deepEqual(await hostFacts(), before)
  })

  test('rediscovery: new cluster, new boot ids, data removed, new URL everywhere, keys back', async () => {
    // Given: keys without a lease (and one with), the facts before.
    const prefix = `/rediscover-test/${randomBytes(4).toString('hex')}/`
    const keys: Record<string, string> = {}
    for (let i = 0; i < 20; i++) keys[`${prefix}k${i}`] = `value ${i} ${randomBytes(8).toString('hex')}`
    const handle = await openEtcd(config)
    for (const [k, v] of Object.entries(keys)) await handle.client.put(k).value(v)
    // A live lease (kept alive until the rediscovery starts): its key must not come back.
    const lease = handle.client.lease(60)
    lease.on('lost', () => undefined)
    await lease.put(`${prefix}leased`).value('gone after the rediscovery')
    const before = await hostFacts()
    const healthBefore = await health()
    for (const f of Object.values(before)) assert.ok(f.marker)

    // When
    const t0 = Date.now()
    const r = await rediscover(['--yes', '--json'])
    const took = Date.now() - t0
    lease.release()
    await handle.close()

    // Then: the command says it is done, with everything the summary needs.
    assert.equal(r.code, 0, `${r.stderr}\n${r.stdout}`)
    const result = JSON.parse(r.stdout)
    assert.equal(result.status, 'done')
    assert.equal(result.oldClusterId, healthBefore.clusterId)
    assert.notEqual(result.newClusterId, healthBefore.clusterId)
    assert.deepEqual(result.oldDiscoveryUrls, [...new Set(Object.values(before).map((f) => f.url))])
    assert.match(result.newDiscoveryUrl, /^http:\/\/.*\/v2\/keys\/discovery\/[0-9a-f]{32}$/)
    assert.equal(result.members.length, 3)
    assert.ok(result.leader?.id)
    assert.ok(result.restore.restored >= 20, JSON.stringify(result.restore))
    assert.ok(statSync(result.backup.snapshotPath).size > 0)
    assert.ok(
      result.backup.snapshotPath.startsWith(path.join(stateHome, 'hactl', 'backups', `${config.cluster}-`)),
    )
    const dump = JSON.parse(readFileSync(result.backup.keysPath, 'utf8'))
    assert.ok(dump.keys.some((k: {key: string}) => k.key === `${prefix}k0`))
    assert.ok(!dump.keys.some((k: {key: string}) => k.key === `${prefix}leased`))
    // Progress on stderr, the result alone on stdout.
    assert.match(r.stderr, /Stop etcd, remove its data, write the new URL, reboot/)
    assert.match(r.stderr, /members joined 3\/3/)

    // Then: checked on the cluster itself.
    const h = await health()
    assert.notEqual(h.clusterId, healthBefore.clusterId, 'a new etcd cluster')
    assert.equal(h.clusterId, result.newClusterId)
    assert.equal(h.healthyCount, 3)
    assert.equal(h.total, 3)
    assert.ok(h.leaderId)
    const after = await hostFacts()
    for (const name of etcdHosts()) {
      assert.notEqual(after[name]!.bootId, before[name]!.bootId, `${name} rebooted`)
      assert.equal(after[name]!.marker, false, `${name}: the old member dir was removed`)
      assert.equal(after[name]!.url, result.newDiscoveryUrl, `${name}: the new URL is in the cloud-config`)
      assert.notEqual(after[name]!.url, before[name]!.url)
    }
    const check = await openEtcd(config)
    try {
      const got = await check.client.getAll().prefix(prefix).strings()
      assert.deepEqual(got, keys, 'the keys without a lease are back, the leased one is not')
    } finally {
      await check.close()
    }
    // The cloud-config kept the rest of the file.
    const cc = await labSsh('ast1', `cat ${config.etcd.discovery.file}`)
    assert.match(cc.stdout, /^#cloud-config/m)
    // Used URLs are remembered: the old one can never come back.
    const used = JSON.parse(readFileSync(path.join(stateHome, 'hactl', 'discovery-used.json'), 'utf8'))
    const urls = used.clusters[config.cluster].map((u: {url: string}) => u.url)
    assert.ok(urls.includes(result.newDiscoveryUrl) && urls.includes(Object.values(before)[0]!.url))
    process.stderr.write(
      `rediscovery took ${took} ms (command: ${result.durationMs} ms; phases ${JSON.stringify(result.phases)})\n`,
    )
  })
})
