/**
 * The service-discovery agents on a real lab (issue 7): `hactl agent announce` inside Asterisk
 * hosts, `hactl agent dispatcher` inside both Kamailio hosts, real etcd and real Kamailio.
 * Needs the built CLI (npm run build) and a lab (scripts/test.mjs brings one up).
 */
import assert from 'node:assert/strict'
import {after, before, describe, test} from 'node:test'
import type {ResolvedNode} from '../../src/lib/config/load.js'
import {openEtcd, type EtcdHandle} from '../../src/lib/etcd/client.js'
import {clearMark, setMark} from '../../src/lib/etcd/maintenance.js'
import {
  agentAlive,
  agentLog,
  cleanupAll,
  clearPrefix,
  flagsOf,
  kamTargets,
  openLab,
  readListFile,
  reloadKamailio,
  restoreListFile,
  signalAgent,
  ssh,
  startAgent,
  stopAgent,
  type Agent,
  type Lab,
} from '../helpers/agent-lab.js'
import {eventually} from '../helpers/etcd.js'

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

describe('service discovery agents on the lab', () => {
  let lab: Lab
  let release: (() => Promise<void>) | undefined
  let etcd: EtcdHandle
  const agents: Agent[] = []
  const originalLists = new Map<string, string>()
  const restoreKeys: Array<() => Promise<void>> = []
  let asterPrefix = '/asterisk/'
  let maintPrefix = '/hactl/maintenance/'
  /** The box that joins during the test: a spare host running Asterisk, or a made-up name. */
  let fresh: {name: string; ip: string; spare: boolean}
  /** The boxes announced for the whole test (the lab's Asterisk hosts). */
  let steady: ResolvedNode[]
  const announceArgs = (name: string, ip: string, ttl: number) => [
    'agent',
    'announce',
    '--name',
    name,
    '--ip',
    ip,
    '--ttl',
    String(ttl),
    '--endpoints',
    lab.endpoints.join(','),
  ]

  async function registered(name: string): Promise<boolean> {
    const v = await etcd.client.get(`${asterPrefix}${name}`).string()
    return v !== null
  }

  /** Flags of ip on every Kamailio: {kam1: 'AP', kam2: null, ...}. */
  async function flagsEverywhere(ip: string): Promise<Record<string, string | null>> {
    const out: Record<string, string | null> = {}
    await Promise.all(lab.kams.map(async (k) => (out[k.name] = await flagsOf(lab, k, ip))))
    return out
  }

  const onAll = (f: Record<string, string | null>, pred: (flags: string | null) => boolean) =>
    Object.values(f).every(pred)

  function logs(): string {
    return agents
      .map((a) => `--- ${a.host} pid ${a.pid} (${a.log})\n${agentLog(a).split('\n').slice(-15).join('\n')}`)
      .join('\n')
  }

  before(async () => {
    const opened = await openLab()
    release = opened.release
    lab = opened
    asterPrefix = lab.config.etcd.prefixes.asterisk
    maintPrefix = lab.config.etcd.prefixes.maintenance
    assert.ok(lab.kams.length >= 2, 'the lab needs two Kamailio hosts')
    etcd = await openEtcd(lab.config)
    for (const k of lab.kams) originalLists.set(k.name, await readListFile(lab, k))
    // Given no registrations, and the maintenance marks put aside (they go back in after()).
    restoreKeys.push(await clearPrefix(etcd, asterPrefix), await clearPrefix(etcd, maintPrefix))

    const spare = lab.spares[0]
    if (spare) {
      await ssh(lab, spare.ip, 'systemctl start asterisk')
      fresh = {name: spare.name, ip: spare.ip, spare: true}
      steady = lab.asts
    } else {
      // No spare host: the last Asterisk host joins under a new name.
      const last = lab.asts.at(-1)!
      fresh = {name: 'astnew', ip: last.host, spare: false}
      steady = lab.asts.slice(0, -1)
    }

    // And the lab's Asterisk hosts announced by agents running inside them
    for (const n of steady)
      agents.push(await startAgent(lab, n.host, announceArgs(n.name, n.host, 15), `announce-${n.name}`))
    await eventually(async () => (await Promise.all(steady.map((n) => registered(n.name)))).every(Boolean), {
      timeoutMs: 20_000,
      what: 'the lab hosts to register',
    })
    // And a dispatcher agent inside each Kamailio host
    for (const k of lab.kams) {
      agents.push(
        await startAgent(
          lab,
          k.host,
          ['agent', 'dispatcher', '--endpoints', lab.endpoints.join(','), '--resync', '10'],
          `dispatcher-${k.name}`,
        ),
      )
    }
    await eventually(
      async () => {
        for (const k of lab.kams) {
          const t = await kamTargets(lab, k)
          const hosts = t.map((x) => x.host).sort()
          const wanted = steady.map((n) => n.host).sort()
          // weight= comes from the agent's rendering (the lab's own list has none)
          const rendered = t.every((x) => typeof x.attrs.weight === 'number' && x.flags === 'AP')
          if (hosts.join() !== wanted.join() || !rendered) return false
        }
        return true
      },
      {timeoutMs: 20_000, what: 'both Kamailio lists to hold exactly the registered boxes'},
    ).catch((error: Error) => {
      throw new Error(`${error.message}\n${logs()}`)
    })
  })

  after(async () => {
    await cleanupAll([
      () => Promise.all(agents.map((a) => stopAgent(lab, a))),
      ...restoreKeys,
      () => etcd?.close(),
      () => (fresh?.spare ? ssh(lab, fresh.ip, 'systemctl stop asterisk', {check: false}) : undefined),
      // Other tests expect the lab's own list: set 1 = every Asterisk host, active.
      ...(lab?.kams ?? []).map((k) => () => {
        const text = originalLists.get(k.name)
        return text === undefined ? undefined : restoreListFile(lab, k, text)
      }),
      () => release?.(),
    ])
  })

  test('a new box enters both lists AP within the TTL; SIGTERM takes it out at once', async () => {
    // When the announce agent starts inside the new box (TTL 15 s)
    const started = Date.now()
    const agent = await startAgent(
      lab,
      fresh.spare ? fresh.ip : lab.asts.at(-1)!.host,
      announceArgs(fresh.name, fresh.ip, 15),
      `announce-${fresh.name}-term`,
    )
    agents.push(agent)
    // Then within the TTL both Kamailio hosts have it active and probing
    await eventually(async () => onAll(await flagsEverywhere(fresh.ip), (f) => f === 'AP'), {
      timeoutMs: 15_000,
      intervalMs: 250,
      what: `${fresh.name} AP on both`,
    }).catch((error: Error) => {
      throw new Error(`${error.message}\n${logs()}`)
    })
    assert.ok(Date.now() - started < 15_000)
    assert.match(
      agentLog(agent),
      /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ registered \S+ \S+:5060 lease [0-9a-f]+ /m,
    )

    // When it gets SIGTERM
    const termAt = Date.now()
    await signalAgent(lab, agent, 'TERM')
    // Then it revokes its lease: the key is gone from etcd at once (about 100 ms when the machine
    // is idle; the bound leaves room for a loaded CI box), long before the 15 s TTL
    await eventually(async () => !(await registered(fresh.name)), {
      timeoutMs: 5000,
      intervalMs: 50,
      what: 'the key to leave etcd',
    })
    assert.ok(Date.now() - termAt < 5000, `the key left etcd ${Date.now() - termAt} ms after SIGTERM`)
    // And both lists drop it before the TTL would have (at most one reload_delta of debounce)
    await eventually(async () => onAll(await flagsEverywhere(fresh.ip), (f) => f === null), {
      timeoutMs: 12_000,
      intervalMs: 250,
      what: `${fresh.name} to leave both lists`,
    })
    assert.ok(
      Date.now() - termAt < 15_000,
      `left the lists ${Date.now() - termAt} ms after SIGTERM (TTL 15 s)`,
    )
    // And the agent has exited, saying so
    await eventually(async () => !(await agentAlive(lab, agent)), {
      timeoutMs: 5000,
      what: 'the announce agent to exit',
    })
    assert.match(agentLog(agent), /revoked .*lease revoked/)
    // The other boxes stayed active (a reload clears the probing bit until Kamailio's next OPTIONS
    // round: AX, then AP)
    for (const n of steady)
      assert.ok(onAll(await flagsEverywhere(n.host), (f) => f?.startsWith('A') ?? false), `${n.name} left a list`)
  })

  test('after SIGKILL the box stays until its lease runs out (TTL 3 s), then leaves both lists', async () => {
    const agent = await startAgent(
      lab,
      fresh.spare ? fresh.ip : lab.asts.at(-1)!.host,
      announceArgs(fresh.name, fresh.ip, 3),
      `announce-${fresh.name}-kill`,
    )
    agents.push(agent)
    await eventually(async () => onAll(await flagsEverywhere(fresh.ip), (f) => f === 'AP'), {
      timeoutMs: 15_000,
      intervalMs: 250,
      what: `${fresh.name} AP on both`,
    })

    // When the agent dies without a word
    const killAt = Date.now()
    await signalAgent(lab, agent, 'KILL')
    // Then etcd keeps the key until the lease expires (2-3 s after the last keep-alive): not at
    // once, but soon after the TTL. killAt is taken before the kill is sent, so a slow SSH only
    // makes goneAfter longer, never shorter.
    await eventually(async () => !(await registered(fresh.name)), {
      timeoutMs: 12_000,
      intervalMs: 100,
      what: 'the lease to expire',
    })
    const goneAfter = Date.now() - killAt
    assert.ok(
      goneAfter >= 1000 && goneAfter <= 10_000,
      `the key left ${goneAfter} ms after SIGKILL (TTL 3 s)`,
    )
    // And the box leaves both Kamailio lists
    await eventually(async () => onAll(await flagsEverywhere(fresh.ip), (f) => f === null), {
      timeoutMs: 8000,
      intervalMs: 250,
      what: `${fresh.name} to leave both lists`,
    })
    assert.equal(await agentAlive(lab, agent), false)
  })

  test('a drained box stays disabled across a kamcmd dispatcher.reload', async () => {
    const box = steady[1] ?? steady[0]!
    // When the box gets a maintenance mark (as hactl node drain writes it)
    await setMark(etcd, maintPrefix, {node: box.name, state: 'drained', reason: 'agents test'})
    // Then both lists have it disabled
    await eventually(async () => onAll(await flagsEverywhere(box.host), (f) => f?.startsWith('D') ?? false), {
      timeoutMs: 10_000,
      intervalMs: 250,
      what: `${box.name} disabled on both`,
    })
    // And the file says so: flag 4
    const file = await readListFile(lab, lab.kams[0]!)
    assert.match(file, new RegExp(`^1 sip:${box.host.replaceAll('.', '\\.')}:5060 4 0 weight=\\d+$`, 'm'))
    // When someone reloads Kamailio by hand
    for (const k of lab.kams)
      assert.match(await reloadKamailio(lab, k), /Ok\. Dispatcher successfully reloaded/)
    // Then it is still disabled, and the others still active
    for (const k of lab.kams) {
      assert.match((await flagsOf(lab, k, box.host)) ?? 'absent', /^D/)
      for (const n of steady) if (n.name !== box.name) assert.match((await flagsOf(lab, k, n.host)) ?? 'absent', /^A/)
    }
    // When the mark is cleared, it comes back
    await clearMark(etcd, maintPrefix, box.name)
    await eventually(async () => onAll(await flagsEverywhere(box.host), (f) => f === 'AP'), {
      timeoutMs: 10_000,
      intervalMs: 250,
      what: `${box.name} back AP on both`,
    })
  })

  test('an etcd restart loses no registration and never empties a list', async () => {
    const expected = steady.map((n) => n.host).sort()
    // Watch the lists while etcd restarts: the smallest count either Kamailio showed
    let minCount = Number.POSITIVE_INFINITY
    let watching = true
    const watcher = (async () => {
      while (watching) {
        for (const k of lab.kams) {
          try {
            minCount = Math.min(minCount, (await kamTargets(lab, k)).length)
          } catch {
            // a failed read is no evidence either way
          }
        }
        await sleep(300)
      }
    })()
    // When every etcd member restarts at once
    await Promise.all(
      lab.etcdHosts.map((n) =>
        ssh(lab, n.host, `systemctl restart ${lab.config.etcd.service}`, {timeoutMs: 60_000}),
      ),
    )
    // Then etcd comes back with every registration
    await eventually(async () => (await Promise.all(steady.map((n) => registered(n.name)))).every(Boolean), {
      timeoutMs: 30_000,
      intervalMs: 500,
      what: 'every registration after the restart',
    })
    // And after a while (two TTLs of the steady agents' leases would have expired them) still all there
    await sleep(3000)
    const keys = Object.keys(await etcd.client.getAll().prefix(asterPrefix).strings()).sort()
    assert.deepEqual(keys, steady.map((n) => `${asterPrefix}${n.name}`).sort())
    watching = false
    await watcher
    // And no list ever dropped a box
    assert.equal(
      minCount,
      expected.length,
      `a Kamailio list went down to ${minCount} destinations during the restart\n${logs()}`,
    )
    for (const k of lab.kams) assert.deepEqual((await kamTargets(lab, k)).map((t) => t.host).sort(), expected)
    // And every agent is still running
    for (const a of agents.filter((x) => x.log.includes(`announce-`) && !x.log.includes(`-${fresh.name}-`)))
      assert.equal(await agentAlive(lab, a), true, `agent ${a.log} died`)
    for (const a of agents.filter((x) => x.log.includes('dispatcher-')))
      assert.equal(await agentAlive(lab, a), true, `agent ${a.log} died`)
  })
})
