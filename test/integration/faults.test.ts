/**
 * The fault matrix (issue 9), on the shared test lab (scripts/test.mjs; run alone, useLab() brings
 * one up). Each command that uses a host runs against each fault of `hactl lab fault` on that host,
 * through the BUILT CLI with short timeouts (a temp copy of the lab's hactl.yaml: ssh.connectTimeout
 * 2s, ssh.commandTimeout 10s, etcd.timeout 2s). A cell passes when the command finishes within its
 * time bound, says which host and which fault in one line, exits as it should (non-zero where the
 * fault matters; where it does not, e.g. asterisk-down for rediscover, the right result instead),
 * changes nothing it should not (a preflight failure changes nothing at all: dispatcher flags and
 * list files, maintenance marks, etcd cluster id, boot ids, unit states, discovery files), and the
 * other hosts' results are right. Then: a host rebooting in the middle of a command, two mutating
 * commands at once (one refused, naming the holder), SIGINT at each phase of drain and rediscover
 * (exit 130, state printed, lock released), and SIGINT for every other mutating command.
 *
 * Faults land on ast3 (Asterisk + etcd member, the drain target), kam1 (a dispatcher) and spare1
 * (the host node add adds); etcd-down also on all three members (column "etcd-down (all)").
 * Every round heals the lab (heal(): faults, units, dispatcher lists, registrations, marks) before the next. Results: test/.results/faults.json, for
 * docs/reliability.md (node scripts/reliability-report.mjs).
 */
import assert from 'node:assert/strict'
import {spawn} from 'node:child_process'
import {mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {after, before, describe, test, type TestContext} from 'node:test'
import {parseDocument} from 'yaml'
import {loadConfig, type HactlConfig} from '../../src/lib/config/load.js'
import {openEtcd, type EtcdHandle} from '../../src/lib/etcd/client.js'
import {etcdClusterHealth} from '../../src/lib/etcd/health.js'
import {getMarks} from '../../src/lib/etcd/maintenance.js'
import {dispatcherList} from '../../src/lib/lab/files.js'
import {asteriskSocket, requestJson} from '../../src/lib/lab/supervisor.js'
import {
  exec,
  hactlBin,
  labCli,
  labDispatcher,
  labHost,
  labHosts,
  labSsh,
  useLab,
  waitFor,
  type ExecResult,
} from '../helpers/lab.js'
import {writeResults} from '../helpers/results.js'

const FAULTS = ['sshd-down', 'sshd-hang', 'etcd-down', 'hostkey-change', 'asterisk-down'] as const
type Fault = (typeof FAULTS)[number] | 'etcd-down (all)'

/** What each fault looks like in a message. */
const FAULT_RE: Record<Fault, RegExp> = {
  'sshd-down': /unreachable|connection refused/i,
  'sshd-hang': /timed out|timeout/i,
  'etcd-down': /etcd/i,
  'etcd-down (all)': /etcd/i,
  'hostkey-change': /host key/i,
  'asterisk-down': /asterisk/i,
}

const CONNECT_TIMEOUT = '2s'
const COMMAND_TIMEOUT = '10s'
const ETCD_TIMEOUT = '2s'
/** How long a failing command may take: the timeouts above plus Node start-up on a busy machine. */
const FAIL_BOUND_MS = 25_000

interface CellResult {
  section: 'matrix' | 'scenario' | 'signal'
  row: string
  fault: string
  hosts: string[]
  expect: string
  ok: boolean
  exit: number | null
  durationMs: number
  /** The one line that names the host and the fault (or the outcome line). */
  line: string
  problems: string[]
}

interface Snapshot {
  /** kam:uri → disabled | enabled (probing flips I/A by itself, so only D counts). */
  rotation: Record<string, string>
  lists: Record<string, string>
  marks: string
  clusterId: string
  boots: Record<string, string>
  units: Record<string, string>
  discovery: Record<string, string>
}

interface Run extends ExecResult {
  argv: string[]
}

describe('fault matrix on the lab', {timeout: 1_200_000}, () => {
  let release: () => Promise<void> = async () => {}
  let configPath = ''
  let config: HactlConfig
  let stateHome = ''
  let workDir = ''
  let originalLists: Record<string, string> = {}
  let registered: string[] = []
  const results: CellResult[] = []

  const ip = (name: string) => labHost(name).ip
  const etcdHosts = () =>
    labHosts('asterisk')
      .filter((h) => h.etcd)
      .map((h) => h.name)

  // --- running hactl ---------------------------------------------------------------------------

  const env = (): NodeJS.ProcessEnv => ({
    ...process.env,
    NO_COLOR: '1',
    HACTL_CONFIG: configPath,
    XDG_STATE_HOME: stateHome,
  })

  async function cli(argv: string[], timeoutMs = 120_000): Promise<Run> {
    const r = await exec(process.execPath, [hactlBin(), ...argv], {env: env(), timeoutMs})
    return {...r, argv}
  }

  /** Start hactl; `when(line)` resolves once stderr has a line matching the pattern. */
  function start(argv: string[]) {
    const t0 = Date.now()
    const child = spawn(process.execPath, [hactlBin(), ...argv], {
      env: env(),
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    const waiters: Array<{re: RegExp; resolve: (line: string) => void}> = []
    const check = () => {
      for (const w of [...waiters]) {
        const line = stderr.split('\n').find((l) => w.re.test(l))
        if (line !== undefined) {
          waiters.splice(waiters.indexOf(w), 1)
          w.resolve(line)
        }
      }
    }
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d))
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d
      check()
    })
    const done = new Promise<Run>((resolve) =>
      child.on('close', (code, signal) =>
        resolve({stdout, stderr, code, signal, durationMs: Date.now() - t0, argv}),
      ),
    )
    const killer = setTimeout(() => child.kill('SIGKILL'), 240_000)
    void done.then(() => clearTimeout(killer))
    return {
      child,
      done,
      when: (re: RegExp, timeoutMs = 60_000) =>
        new Promise<string>((resolve, reject) => {
          const t = setTimeout(
            () => reject(new Error(`no stderr line matching ${re} within ${timeoutMs}ms:\n${stderr}`)),
            timeoutMs,
          )
          waiters.push({re, resolve: (l) => (clearTimeout(t), resolve(l))})
          check()
          void done.then(() => {
            clearTimeout(t)
            reject(new Error(`exited (${child.exitCode}) before a stderr line matched ${re}:\n${stderr}`))
          })
        }),
      signal: (sig: NodeJS.Signals = 'SIGINT') => child.kill(sig),
    }
  }

  // --- state of the lab, read without SSH (sockets, host dirs, etcd) ---------------------------

  async function withEtcd<T>(fn: (h: EtcdHandle) => Promise<T>): Promise<T> {
    const h = await openEtcd(config)
    try {
      return await fn(h)
    } finally {
      await h.close().catch(() => undefined)
    }
  }

  async function snapshot(): Promise<Snapshot> {
    const rotation: Record<string, string> = {}
    const lists: Record<string, string> = {}
    for (const k of labHosts('kamailio')) {
      for (const [uri, flags] of Object.entries(await labDispatcher(k.name)))
        rotation[`${k.name} ${uri}`] = flags.startsWith('D') ? 'disabled' : 'enabled'
      lists[k.name] = readFileSync(path.join(k.dir, 'kamailio', 'dispatcher.list'), 'utf8')
    }
    const lab = JSON.parse((await labCli(['status', '--json'])).stdout) as {
      hosts: Array<{name: string; bootId: string; units: Record<string, {state: string}>}>
    }
    const boots: Record<string, string> = {}
    const units: Record<string, string> = {}
    for (const h of lab.hosts) {
      boots[h.name] = h.bootId
      for (const [u, s] of Object.entries(h.units)) units[`${h.name} ${u}`] = s.state
    }
    const discovery: Record<string, string> = {}
    for (const h of etcdHosts())
      discovery[h] = readFileSync(path.join(labHost(h).dir, 'coreos-install', 'user_data'), 'utf8')
    let marks = 'unreadable'
    let clusterId = 'unreadable'
    try {
      await withEtcd(async (h) => {
        marks = JSON.stringify(
          (await getMarks(h, config.etcd.prefixes.maintenance))
            .map((m) => [m.node, m.state, m.reason ?? ''])
            .sort(),
        )
        clusterId = (await etcdClusterHealth(h, {timeoutMs: 3000})).clusterId
      })
    } catch {
      // etcd down (a fault): compared as unreadable.
    }
    return {rotation, lists, marks, clusterId, boots, units, discovery}
  }

  function diff(a: Snapshot, b: Snapshot): string[] {
    const out: string[] = []
    const cmp = (what: string, x: Record<string, string>, y: Record<string, string>) => {
      for (const k of new Set([...Object.keys(x), ...Object.keys(y)]))
        if (x[k] !== y[k])
          out.push(
            `${what} ${k}: ${JSON.stringify(x[k])?.slice(0, 80)} -> ${JSON.stringify(y[k])?.slice(0, 80)}`,
          )
    }
    cmp('rotation', a.rotation, b.rotation)
    cmp('dispatcher.list', a.lists, b.lists)
    cmp('boot id', a.boots, b.boots)
    cmp('unit', a.units, b.units)
    cmp('discovery file', a.discovery, b.discovery)
    if (a.marks !== b.marks) out.push(`marks: ${a.marks} -> ${b.marks}`)
    if (a.clusterId !== b.clusterId) out.push(`etcd cluster id: ${a.clusterId} -> ${b.clusterId}`)
    return out
  }

  async function lockHolder(): Promise<string | null> {
    return withEtcd(async (h) => h.client.get(config.etcd.prefixes.lock).string())
  }

  // --- checks ----------------------------------------------------------------------------------

  /** The line of the output that names one of the hosts (name or address) and matches the fault. */
  function namingLine(r: Run, hosts: string[], re: RegExp): string | undefined {
    const names = hosts.flatMap((h) => [h, ip(h)])
    return `${r.stderr}\n${r.stdout}`
      .split('\n')
      .find(
        (l) =>
          re.test(l) &&
          names.some((n) => new RegExp(`(^|[^\\w.-])${n.replaceAll('.', '\\.')}([^\\w.-]|$)`).test(l)),
      )
  }

  function noStack(r: Run): string[] {
    const p: string[] = []
    if (/\bat .*\(.*:\d+:\d+\)/.test(r.stderr + r.stdout)) p.push('a stack trace was printed')
    if (/this is a bug in hactl/.test(r.stderr))
      p.push('an unexpected exception (reported as a bug in hactl)')
    return p
  }

  function record(c: Omit<CellResult, 'ok'>): CellResult {
    const full = {...c, ok: c.problems.length === 0}
    results.push(full)
    return full
  }

  function assertCell(c: CellResult, r?: Run): void {
    assert.deepEqual(
      c.problems,
      [],
      `${c.row} × ${c.fault}: ${c.problems.join('; ')}${r ? `\n--- exit ${r.code}${r.signal ? ` (${r.signal})` : ''} in ${r.durationMs}ms\n--- stderr\n${r.stderr.slice(-3000)}\n--- stdout\n${r.stdout.slice(-2000)}` : ''}`,
    )
  }

  /**
   * A command that must fail because of the fault and change nothing: exit `exit` (default 1),
   * within FAIL_BOUND_MS, a line naming a faulted host and the fault, nothing changed.
   */
  async function failsCleanly(
    t: TestContext,
    o: {
      row: string
      fault: Fault
      hosts: string[]
      argv: string[]
      exit?: number
      expect?: string
      extra?: (r: Run) => string[]
    },
  ): Promise<void> {
    const before = await snapshot()
    const r = await cli(o.argv)
    const after = await snapshot()
    const problems: string[] = [...noStack(r)]
    const wantExit = o.exit ?? 1
    if (r.code !== wantExit)
      problems.push(`exit ${r.code}${r.signal ? ` (${r.signal})` : ''}, expected ${wantExit}`)
    if (r.durationMs > FAIL_BOUND_MS) problems.push(`took ${r.durationMs}ms (more than ${FAIL_BOUND_MS}ms)`)
    const line = namingLine(r, o.hosts, FAULT_RE[o.fault])
    if (!line)
      problems.push(`no line names ${o.hosts.join(' or ')} together with the fault (${FAULT_RE[o.fault]})`)
    problems.push(...diff(before, after).map((d) => `changed: ${d}`))
    if (before.clusterId !== 'unreadable' && (await lockHolder().catch(() => null)) !== null)
      problems.push('the cluster lock is still held after the run')
    problems.push(...(o.extra?.(r) ?? []))
    const c = record({
      section: 'matrix',
      row: o.row,
      fault: o.fault,
      hosts: o.hosts,
      expect: o.expect ?? `exit ${wantExit}, nothing changed`,
      exit: r.code,
      durationMs: r.durationMs,
      line: (line ?? '').trim().slice(0, 240),
      problems,
    })
    t.diagnostic(`${o.row} × ${o.fault}: ${c.ok ? 'pass' : 'FAIL'} (${r.durationMs}ms) ${c.line}`)
    assertCell(c, r)
  }

  /** Record a cell whose checks are written out by the caller. */
  function cell(
    t: TestContext,
    o: {
      section?: CellResult['section']
      row: string
      fault: Fault | string
      hosts: string[]
      expect: string
      r: Run
      line?: string
      problems: string[]
      soft?: boolean
    },
  ): CellResult {
    const c = record({
      section: o.section ?? 'matrix',
      row: o.row,
      fault: o.fault,
      hosts: o.hosts,
      expect: o.expect,
      exit: o.r.code,
      durationMs: o.r.durationMs,
      line: (o.line ?? '').trim().slice(0, 240),
      problems: [...noStack(o.r), ...o.problems],
    })
    t.diagnostic(`${o.row} × ${o.fault}: ${c.ok ? 'pass' : 'FAIL'} (${o.r.durationMs}ms) ${c.line}`)
    // A soft cell is asserted by the caller, after the cells that follow it have run.
    if (!o.soft) assertCell(c, o.r)
    return c
  }

  async function fault(host: string, f: string): Promise<void> {
    const r = await labCli(['fault', host, f])
    assert.equal(r.code, 0, `lab fault ${host} ${f}: ${r.stderr}`)
  }

  /**
   * Put the lab back as the matrix wants it between cases: faults healed, units started, each
   * Kamailio's list holding every Asterisk box (a rediscover without etcd loses the registrations,
   * and a dispatcher sync then renders an empty set), the registrations in etcd, nothing drained,
   * no call up.
   */
  async function heal(): Promise<void> {
    await labCli(['heal', 'all'])
    await Promise.all(
      labHosts()
        .filter((h) => h.kind === 'asterisk' || h.kind === 'kamailio')
        .map((h) =>
          labSsh(
            h,
            `systemctl start ${h.kind === 'kamailio' ? 'kamailio' : h.etcd ? 'asterisk etcd2' : 'asterisk'}`,
            {timeoutMs: 100_000},
          ).catch(() => undefined),
        ),
    )
    for (const k of labHosts('kamailio')) {
      const text = readFileSync(path.join(k.dir, 'kamailio', 'dispatcher.list'), 'utf8')
      if (registered.some((name) => !text.includes(`sip:${ip(name)}:5060`)))
        await putList(k.name, originalLists[k.name] ?? '')
    }
    await waitFor(
      () =>
        withEtcd(
          async (h) => (await etcdClusterHealth(h, {timeoutMs: 3000})).healthyCount === etcdHosts().length,
        ),
      {timeoutMs: 120_000, intervalMs: 1000, what: 'a healthy etcd'},
    )
    await withEtcd(async (h) => {
      for (const name of registered)
        await h.client
          .put(`${config.etcd.prefixes.asterisk}${name}`)
          .value(JSON.stringify({ip: ip(name)}))
          .exec()
    })
    // Undrain whatever a case left drained (the lab is not healthy with a box out of rotation),
    // once a killed run's lock has expired.
    const marks = await withEtcd((h) => getMarks(h, config.etcd.prefixes.maintenance))
    for (const m of marks) await cli(['node', 'undrain', m.node, '--wait-lock', '30s'], 120_000)
    await hangUpAll()
    await waitFor(async () => (await labCli(['status', '--json'])).code === 0, {
      timeoutMs: 120_000,
      intervalMs: 1000,
      what: 'the test lab to be healthy again',
    })
  }

  /** Wait until `host` is up again with a boot id other than `oldBoot`. */
  async function waitBack(host: string, oldBoot: string): Promise<void> {
    await waitFor(
      async () => {
        const lab = JSON.parse((await labCli(['status', '--json'])).stdout) as {
          hosts: Array<{name: string; bootId: string; sshd: string}>
        }
        const h = lab.hosts.find((x) => x.name === host)
        return h !== undefined && h.bootId !== oldBoot && h.sshd === 'up'
      },
      {timeoutMs: 90_000, intervalMs: 500, what: `${host} to come back from its reboot`},
    )
  }

  async function putList(kam: string, text: string): Promise<void> {
    const r = await labSsh(
      kam,
      `cat > /etc/kamailio/dispatcher.list.hactl-test <<'EOF'\n${text}EOF\nmv -f /etc/kamailio/dispatcher.list.hactl-test /etc/kamailio/dispatcher.list && kamcmd dispatcher.reload`,
    )
    assert.equal(r.code, 0, `restoring ${kam}'s dispatcher.list: ${r.stderr}`)
  }

  async function hangUpAll(): Promise<void> {
    for (const h of labHosts('asterisk'))
      await requestJson(asteriskSocket(h.dir), {op: 'hangup', all: true}, 5000).catch(() => undefined)
  }

  async function startCall(host: string): Promise<void> {
    const r = await labCli(['calls', host, '1', '--duration', '600', '--json'])
    assert.equal(r.code, 0, `lab calls: ${r.stderr}`)
  }

  /** The node add command line for spare1 (asterisk role). */
  const addArgv = (extra: string[] = []) => [
    'node',
    'add',
    'spare1',
    '--host',
    ip('spare1'),
    '--roles',
    'asterisk',
    ...extra,
  ]

  // --- set-up ----------------------------------------------------------------------------------

  before(async () => {
    const lab = await useLab()
    release = lab.release
    workDir = mkdtempSync(path.join(tmpdir(), 'hactl-faults-'))
    stateHome = path.join(workDir, 'state')
    // Given the lab's hactl.yaml with short timeouts
    const doc = parseDocument(readFileSync(lab.configPath, 'utf8'))
    doc.setIn(['ssh', 'connectTimeout'], CONNECT_TIMEOUT)
    doc.setIn(['ssh', 'commandTimeout'], COMMAND_TIMEOUT)
    doc.setIn(['etcd', 'timeout'], ETCD_TIMEOUT)
    configPath = path.join(workDir, 'hactl.yaml')
    writeFileSync(configPath, doc.toString())
    config = loadConfig({flag: configPath})
    // And every Asterisk box registered in etcd, so dispatcher sync renders the lab's four boxes
    registered = labHosts('asterisk').map((h) => h.name)
    // The list `lab up` writes (not the file as found: an interrupted run may have left it changed).
    for (const k of labHosts('kamailio')) originalLists[k.name] = dispatcherList(registered.map(ip))
    await heal()
  })

  after(async () => {
    try {
      await hangUpAll()
      await heal().catch(() => undefined)
      // Put the lab's own dispatcher lists back (set 1 = every Asterisk box, active) and drop the registrations.
      for (const [kam, text] of Object.entries(originalLists)) await putList(kam, text).catch(() => undefined)
      await withEtcd(async (h) => {
        for (const name of registered)
          await h.client.delete().key(`${config.etcd.prefixes.asterisk}${name}`).exec()
      }).catch(() => undefined)
    } finally {
      writeResults('faults', {
        lab: process.env.HACTL_TEST_LAB ?? 'own',
        timeouts: {
          connectTimeout: CONNECT_TIMEOUT,
          commandTimeout: COMMAND_TIMEOUT,
          etcdTimeout: ETCD_TIMEOUT,
        },
        cells: results,
      })
      rmSync(workDir, {recursive: true, force: true})
      await release()
    }
  })

  // --- the matrix: SSH faults ------------------------------------------------------------------

  for (const f of ['sshd-down', 'sshd-hang', 'hostkey-change'] as const) {
    test(`${f} on ast3, kam1 and spare1`, {concurrency: true}, async (t) => {
      await fault('ast3', f)
      await fault('kam1', f)
      await fault('spare1', f)
      try {
        const readOnly = Promise.all([
          t.test('status', async (t2) => {
            const r = await cli(['status', '--json'])
            const problems: string[] = []
            if (r.code !== 1) problems.push(`exit ${r.code}, expected 1 (degraded)`)
            if (r.durationMs > FAIL_BOUND_MS) problems.push(`took ${r.durationMs}ms`)
            let line = ''
            try {
              const s = JSON.parse(r.stdout) as {
                nodes: Array<{name: string; ssh: {ok: boolean}}>
                problems: Array<{node?: string; message: string}>
              }
              for (const n of s.nodes) {
                const faulted = n.name === 'ast3' || n.name === 'kam1'
                if (n.ssh.ok === faulted)
                  problems.push(
                    `${n.name}: ssh ${n.ssh.ok ? 'ok' : 'failed'}, expected ${faulted ? 'failed' : 'ok'}`,
                  )
              }
              for (const h of ['ast3', 'kam1']) {
                const p = s.problems.find((x) => x.node === h && FAULT_RE[f].test(x.message))
                if (!p) problems.push(`no problem names ${h} with the fault`)
                else line ||= `${h}: ${p.message}`
              }
            } catch {
              problems.push(`not JSON: ${r.stdout.slice(0, 200)}`)
            }
            cell(t2, {
              row: 'status',
              fault: f,
              hosts: ['ast3', 'kam1'],
              expect: 'exit 1 (degraded); ast3 and kam1 named, the rest ok',
              r: {...r},
              line,
              problems,
            })
          }),
          t.test('exec', async (t2) => {
            const r = await cli(['exec', 'all', '--json', '--', 'true'])
            const problems: string[] = []
            if (r.code !== 3) problems.push(`exit ${r.code}, expected 3 (partial)`)
            if (r.durationMs > FAIL_BOUND_MS) problems.push(`took ${r.durationMs}ms`)
            let line = ''
            try {
              const o = JSON.parse(r.stdout) as {
                results: Array<{node: string; ok: boolean; code: number | null; error?: {message: string}}>
              }
              for (const x of o.results) {
                const faulted = x.node === 'ast3' || x.node === 'kam1'
                if (faulted && (x.ok || !FAULT_RE[f].test(x.error?.message ?? '')))
                  problems.push(
                    `${x.node}: expected a failure naming the fault, got ${JSON.stringify(x).slice(0, 160)}`,
                  )
                if (!faulted && !(x.ok && x.code === 0))
                  problems.push(`${x.node}: expected exit 0, got ${JSON.stringify(x).slice(0, 160)}`)
                if (faulted && x.error) line ||= `${x.node}: ${x.error.message}`
              }
            } catch {
              problems.push(`not JSON: ${r.stdout.slice(0, 200)}`)
            }
            cell(t2, {
              row: 'exec',
              fault: f,
              hosts: ['ast3', 'kam1'],
              expect: 'exit 3; ast3 and kam1 fail naming the fault, the rest exit 0',
              r,
              line,
              problems,
            })
          }),
        ])
        // The mutating commands one after the other: each takes the cluster lock.
        await t.test('node drain (target)', (t2) =>
          failsCleanly(t2, {
            row: 'node drain (target)',
            fault: f,
            hosts: ['ast3'],
            argv: ['node', 'drain', 'ast3', '--yes'],
          }),
        )
        await t.test('node drain (a Kamailio)', (t2) =>
          failsCleanly(t2, {
            row: 'node drain (a Kamailio)',
            fault: f,
            hosts: ['kam1'],
            argv: ['node', 'drain', 'ast4', '--yes'],
          }),
        )
        await t.test('node undrain', (t2) =>
          failsCleanly(t2, {
            row: 'node undrain',
            fault: f,
            hosts: ['ast3'],
            argv: ['node', 'undrain', 'ast3'],
          }),
        )
        await t.test('cluster rediscover', (t2) =>
          failsCleanly(t2, {
            row: 'cluster rediscover',
            fault: f,
            hosts: ['ast3'],
            argv: ['cluster', 'rediscover', '--yes'],
          }),
        )
        await t.test('node add', async (t2) => {
          const cfgBefore = readFileSync(configPath, 'utf8')
          await failsCleanly(t2, {
            row: 'node add',
            fault: f,
            hosts: ['spare1', 'kam1'],
            argv: addArgv(['--yes']),
            extra: () => (readFileSync(configPath, 'utf8') === cfgBefore ? [] : ['hactl.yaml was changed']),
          })
        })
        await readOnly
        // Last: it changes kam2 (the host that answers), which the cells above compare.
        await t.test('dispatcher sync', async (t2) => {
          const before = await snapshot()
          const r = await cli(['dispatcher', 'sync', '--yes', '--json'])
          const after = await snapshot()
          const problems: string[] = []
          if (r.code !== 3) problems.push(`exit ${r.code}, expected 3 (kam1 failed, kam2 synced)`)
          if (r.durationMs > FAIL_BOUND_MS) problems.push(`took ${r.durationMs}ms`)
          let line = ''
          try {
            const o = JSON.parse(r.stdout) as {
              hosts: Array<{node: string; ok: boolean; verified: boolean; error?: {message: string}}>
            }
            const k1 = o.hosts.find((h) => h.node === 'kam1')
            const k2 = o.hosts.find((h) => h.node === 'kam2')
            if (!k1 || k1.ok || !FAULT_RE[f].test(k1.error?.message ?? ''))
              problems.push(
                `kam1: expected a failure naming the fault, got ${JSON.stringify(k1).slice(0, 200)}`,
              )
            else line = `kam1: ${k1.error?.message}`
            if (!k2 || !k2.ok || !k2.verified)
              problems.push(
                `kam2: expected written (or in step) and verified, got ${JSON.stringify(k2).slice(0, 200)}`,
              )
          } catch {
            problems.push(`not JSON: ${r.stdout.slice(0, 200)}`)
          }
          if (after.lists.kam1 !== before.lists.kam1) problems.push('kam1 (faulted) dispatcher.list changed')
          for (const name of registered)
            if (!after.lists.kam2?.includes(`sip:${ip(name)}:5060`))
              problems.push(`kam2's list lacks ${name}`)
          problems.push(
            ...diff({...before, lists: {}, rotation: {}}, {...after, lists: {}, rotation: {}}).map(
              (d) => `changed: ${d}`,
            ),
          )
          cell(t2, {
            row: 'dispatcher sync',
            fault: f,
            hosts: ['kam1'],
            expect: 'exit 3; kam1 fails naming the fault and keeps its list, kam2 written and verified',
            r,
            line,
            problems,
          })
        })
      } finally {
        await heal()
      }
    })
  }

  // --- the matrix: etcd down on one member (quorum holds) ----------------------------------------

  test('etcd-down on ast3 (one member of three: quorum holds)', {concurrency: true}, async (t) => {
    const f = 'etcd-down'
    await fault('ast3', f)
    try {
      await Promise.all([
        t.test('status', async (t2) => {
          const r = await cli(['status'])
          const line = namingLine(r, ['ast3'], /etcd/i)
          const problems = [
            ...(r.code === 1 ? [] : [`exit ${r.code}, expected 1 (degraded)`]),
            ...(line ? [] : ['no line names ast3 and etcd']),
          ]
          if (!/2\/3 healthy/.test(r.stdout)) problems.push('the etcd line does not say 2/3 healthy')
          cell(t2, {
            row: 'status',
            fault: f,
            hosts: ['ast3'],
            expect: 'exit 1 (degraded): etcd 2/3, member ast3 down',
            r,
            line: line ?? '',
            problems,
          })
        }),
        t.test('exec', async (t2) => {
          const r = await cli(['exec', 'all', '--', 'true'])
          cell(t2, {
            row: 'exec',
            fault: f,
            hosts: ['ast3'],
            expect: 'irrelevant to exec: exit 0 on every host',
            r,
            line: r.stdout.trim().split('\n').pop() ?? '',
            problems: r.code === 0 ? [] : [`exit ${r.code}, expected 0`],
          })
        }),
        t.test('cluster rediscover', async (t2) => {
          // What rediscover is for: it runs. The dry run shows it would, with the lock (etcd answers).
          const before = await snapshot()
          const r = await cli(['cluster', 'rediscover', '--dry-run'])
          const problems = [...diff(before, await snapshot()).map((d) => `changed: ${d}`)]
          if (r.code !== 0) problems.push(`exit ${r.code}, expected 0 (dry run)`)
          if (!/etcd answers \(2\/3 healthy\)/.test(r.stderr + r.stdout))
            problems.push('does not say etcd answers 2/3')
          if (!/ast3 .*inactive/.test(r.stdout)) problems.push("the plan does not show ast3's etcd inactive")
          if (!/lock is held/i.test(r.stdout)) problems.push('the plan does not take the lock')
          cell(t2, {
            row: 'cluster rediscover',
            fault: f,
            hosts: ['ast3'],
            expect:
              'the cure, not an obstacle: --dry-run plans all 3 hosts, etcd 2/3, with the lock; nothing changed',
            r,
            line: (r.stdout.split('\n').find((l) => /ast3 .*inactive/.test(l)) ?? '').trim(),
            problems,
          })
        }),
        t.test('node add', async (t2) => {
          const r = await cli(addArgv(['--dry-run']))
          cell(t2, {
            row: 'node add',
            fault: f,
            hosts: ['ast3'],
            expect: 'irrelevant to an asterisk-role add (quorum holds): --dry-run plans the add, exit 0',
            r,
            line: (r.stderr.split('\n').find((l) => /^Plan/.test(l)) ?? '').trim(),
            problems: r.code === 0 ? [] : [`exit ${r.code}, expected 0`],
          })
        }),
      ])
      await t.test('dispatcher sync', async (t2) => {
        const r = await cli(['dispatcher', 'sync', '--yes', '--json'])
        cell(t2, {
          row: 'dispatcher sync',
          fault: f,
          hosts: ['ast3'],
          expect: 'irrelevant (quorum holds): exit 0, both Kamailio in step',
          r,
          line: '',
          problems: r.code === 0 ? [] : [`exit ${r.code}, expected 0`],
        })
      })
      await drainThenUndrain(t, f, 'etcd quorum holds (2/3)')
    } finally {
      await heal()
    }
  })

  /** Where a fault does not stop a drain: drain ast3, check it, undrain it, check it. */
  async function drainThenUndrain(t: TestContext, f: Fault, why: string): Promise<void> {
    const uri = `sip:${ip('ast3')}:5060`
    await t.test('node drain (target)', async (t2) => {
      const r = await cli(['node', 'drain', 'ast3', '--yes', '--timeout', '60s'])
      const s = await snapshot()
      const problems: string[] = []
      if (r.code !== 0) problems.push(`exit ${r.code}, expected 0`)
      for (const k of labHosts('kamailio'))
        if (s.rotation[`${k.name} ${uri}`] !== 'disabled') problems.push(`${k.name}: ast3 not disabled`)
      if (!/"ast3","drained"/.test(s.marks)) problems.push(`ast3 not marked drained: ${s.marks}`)
      if (s.units['ast3 asterisk'] !== 'inactive')
        problems.push(`asterisk on ast3 is ${s.units['ast3 asterisk']}`)
      if ((await lockHolder()) !== null) problems.push('the cluster lock is still held')
      cell(t2, {
        row: 'node drain (target)',
        fault: f,
        hosts: ['ast3'],
        expect: `${why}: exit 0, drained (disabled everywhere, marked, Asterisk stopped)`,
        r,
        line: (r.stdout.split('\n').find((l) => /drained|ast3/.test(l)) ?? '').trim(),
        problems,
      })
    })
    await t.test('node undrain', async (t2) => {
      const r = await cli(['node', 'undrain', 'ast3'])
      const s = await snapshot()
      const problems: string[] = []
      if (r.code !== 0) problems.push(`exit ${r.code}, expected 0`)
      for (const k of labHosts('kamailio'))
        if (s.rotation[`${k.name} ${uri}`] !== 'enabled')
          problems.push(`${k.name}: ast3 not back in rotation`)
      if (/"ast3"/.test(s.marks)) problems.push(`ast3 still marked: ${s.marks}`)
      if (s.units['ast3 asterisk'] !== 'active')
        problems.push(`asterisk on ast3 is ${s.units['ast3 asterisk']}`)
      if ((await lockHolder()) !== null) problems.push('the cluster lock is still held')
      cell(t2, {
        row: 'node undrain',
        fault: f,
        hosts: ['ast3'],
        expect: `${why}: exit 0, back in service (enabled everywhere, mark cleared, Asterisk running)`,
        r,
        line: (r.stdout.split('\n').find((l) => /ast3/.test(l)) ?? '').trim(),
        problems,
      })
    })
  }

  // --- the matrix: etcd down on every member ---------------------------------------------------

  test('etcd-down on every member', {concurrency: true}, async (t) => {
    const f: Fault = 'etcd-down (all)'
    for (const h of etcdHosts()) await fault(h, 'etcd-down')
    const all = etcdHosts()
    try {
      await Promise.all([
        t.test('status', async (t2) => {
          const r = await cli(['status'])
          const line = r.stdout.split('\n').find((l) => /^etcd\s+.*(unreachable|0\/3|down)/i.test(l))
          cell(t2, {
            row: 'status',
            fault: f,
            hosts: all,
            expect: 'exit 1: etcd unreachable, named',
            r,
            line: line ?? '',
            problems: [
              ...(r.code === 1 ? [] : [`exit ${r.code}, expected 1`]),
              ...(line ? [] : ['no etcd line saying it is down']),
              ...(r.durationMs > FAIL_BOUND_MS ? [`took ${r.durationMs}ms`] : []),
            ],
          })
        }),
        t.test('exec', async (t2) => {
          const r = await cli(['exec', 'all', '--', 'true'])
          cell(t2, {
            row: 'exec',
            fault: f,
            hosts: all,
            expect: 'irrelevant to exec: exit 0 everywhere',
            r,
            line: r.stdout.trim().split('\n').pop() ?? '',
            problems: r.code === 0 ? [] : [`exit ${r.code}, expected 0`],
          })
        }),
      ])
      await t.test('node drain (target)', (t2) =>
        failsCleanly(t2, {
          row: 'node drain (target)',
          fault: f,
          hosts: all,
          argv: ['node', 'drain', 'ast3', '--yes'],
          expect: 'exit 1: etcd unreachable (no lock, no marks), nothing changed',
        }),
      )
      await t.test('node undrain', (t2) =>
        failsCleanly(t2, {
          row: 'node undrain',
          fault: f,
          hosts: all,
          argv: ['node', 'undrain', 'ast3'],
          expect: 'exit 1: etcd unreachable, nothing changed',
        }),
      )
      await t.test('dispatcher sync', (t2) =>
        failsCleanly(t2, {
          row: 'dispatcher sync',
          fault: f,
          hosts: all,
          argv: ['dispatcher', 'sync', '--yes'],
          expect: 'exit 1: cannot read the registrations, nothing changed',
        }),
      )
      await t.test('node add', async (t2) => {
        const cfgBefore = readFileSync(configPath, 'utf8')
        await failsCleanly(t2, {
          row: 'node add',
          fault: f,
          hosts: [...all, 'spare1'],
          argv: addArgv(['--yes']),
          expect: 'exit 1: etcd unreachable, nothing changed',
          extra: () => (readFileSync(configPath, 'utf8') === cfgBefore ? [] : ['hactl.yaml was changed']),
        })
      })
      // What rediscover is for: it runs without the lock, says so and why, and brings etcd back.
      await t.test('cluster rediscover', async (t2) => {
        const before = await snapshot()
        const r = await cli(['cluster', 'rediscover', '--yes'], 180_000)
        const after = await snapshot()
        const line =
          `${r.stdout}\n${r.stderr}`.split('\n').find((l) => /WITHOUT the cluster lock/i.test(l)) ?? ''
        const problems: string[] = []
        if (r.code !== 0) problems.push(`exit ${r.code}, expected 0`)
        if (!/etcd does not answer/i.test(line))
          problems.push('does not say it runs without the lock because etcd does not answer')
        for (const h of all) if (after.boots[h] === before.boots[h]) problems.push(`${h} did not reboot`)
        if (after.clusterId === 'unreadable') problems.push('etcd does not answer afterwards')
        cell(t2, {
          row: 'cluster rediscover',
          fault: f,
          hosts: all,
          expect: 'runs (the cure): WITHOUT the lock and says why; etcd healthy again',
          r,
          line,
          problems,
        })
      })
    } finally {
      await heal()
    }
  })

  // --- the matrix: Asterisk down ---------------------------------------------------------------

  test('asterisk-down on ast3 (and spare1)', {concurrency: true}, async (t) => {
    const f = 'asterisk-down'
    await fault('ast3', f)
    try {
      await Promise.all([
        t.test('status', async (t2) => {
          const r = await cli(['status', '--json'])
          const problems: string[] = []
          let line = ''
          if (r.code !== 1) problems.push(`exit ${r.code}, expected 1 (degraded)`)
          try {
            const s = JSON.parse(r.stdout) as {
              nodes: Array<{name: string; ssh: {ok: boolean}; asterisk?: {state: string}}>
              problems: Array<{node?: string; message: string}>
            }
            for (const n of s.nodes) {
              if (!n.ssh.ok) problems.push(`${n.name}: ssh failed`)
              if (n.asterisk && n.asterisk.state !== (n.name === 'ast3' ? 'stopped' : 'running'))
                problems.push(`${n.name}: asterisk ${n.asterisk.state}`)
            }
            const p = s.problems.find((x) => x.node === 'ast3' && /asterisk/i.test(x.message))
            if (p) line = `ast3: ${p.message}`
            else problems.push('no problem names ast3 and Asterisk')
          } catch {
            problems.push(`not JSON: ${r.stdout.slice(0, 200)}`)
          }
          cell(t2, {
            row: 'status',
            fault: f,
            hosts: ['ast3'],
            expect: 'exit 1 (degraded): Asterisk stopped on ast3, the rest running',
            r,
            line,
            problems,
          })
        }),
        t.test('exec', async (t2) => {
          const r = await cli(['exec', 'all', '--', 'true'])
          cell(t2, {
            row: 'exec',
            fault: f,
            hosts: ['ast3'],
            expect: 'irrelevant to exec: exit 0 everywhere',
            r,
            line: r.stdout.trim().split('\n').pop() ?? '',
            problems: r.code === 0 ? [] : [`exit ${r.code}, expected 0`],
          })
        }),
        t.test('cluster rediscover', async (t2) => {
          const before = await snapshot()
          const r = await cli(['cluster', 'rediscover', '--dry-run'])
          const problems = [
            ...diff(before, await snapshot()).map((d) => `changed: ${d}`),
            ...(r.code === 0 ? [] : [`exit ${r.code}, expected 0`]),
          ]
          if (!/etcd answers \(3\/3 healthy\)/.test(r.stderr + r.stdout))
            problems.push('does not say etcd answers 3/3')
          cell(t2, {
            row: 'cluster rediscover',
            fault: f,
            hosts: ['ast3'],
            expect: 'irrelevant (etcd is not Asterisk): --dry-run plans as usual, nothing changed',
            r,
            line: '',
            problems,
          })
        }),
        t.test('node add', async (t2) => {
          // spare1's Asterisk is stopped (as a spare's is): the add plans to start it.
          const r = await cli(addArgv(['--dry-run']))
          const problems = r.code === 0 ? [] : [`exit ${r.code}, expected 0`]
          const line = (r.stderr + r.stdout).split('\n').find((l) => /start Asterisk/i.test(l)) ?? ''
          if (!line) problems.push('the plan does not start Asterisk on spare1')
          cell(t2, {
            row: 'node add',
            fault: f,
            hosts: ['spare1'],
            expect:
              "a stopped Asterisk on the new host is what add starts: --dry-run plans 'start Asterisk', exit 0",
            r,
            line,
            problems,
          })
        }),
      ])
      await t.test('dispatcher sync', async (t2) => {
        const r = await cli(['dispatcher', 'sync', '--yes', '--json'])
        cell(t2, {
          row: 'dispatcher sync',
          fault: f,
          hosts: ['ast3'],
          expect: 'irrelevant (the list is rendered from etcd): exit 0, both Kamailio in step',
          r,
          line: '',
          problems: r.code === 0 ? [] : [`exit ${r.code}, expected 0`],
        })
      })
      // A stopped Asterisk is drained without stopping anything, and undrain starts it again.
      await drainThenUndrain(t, f, 'nothing to stop')
    } finally {
      await heal()
    }
  })

  // --- scenarios -------------------------------------------------------------------------------

  test('a host reboots in the middle of exec: it fails, named, the others are right', async (t) => {
    const before = await snapshot()
    const run = start(['exec', 'all', '--json', '--', 'sleep 4; echo done'])
    await new Promise((r) => setTimeout(r, 1500))
    await labSsh('ast2', 'reboot')
    const r = await run.done
    const problems: string[] = [...(r.code === 3 ? [] : [`exit ${r.code}, expected 3`])]
    let line = ''
    try {
      const o = JSON.parse(r.stdout) as {
        results: Array<{node: string; ok: boolean; stdout: string; error?: {message: string}}>
      }
      for (const x of o.results) {
        if (x.node === 'ast2') {
          if (x.ok) problems.push('ast2 reported ok although it rebooted')
          line = `ast2: ${x.error?.message ?? JSON.stringify(x)}`
          if (!/connection|closed|lost|reset|reboot|unreachable|no exit status/i.test(x.error?.message ?? ''))
            problems.push(
              `ast2's result does not say the connection was lost: ${JSON.stringify(x).slice(0, 200)}`,
            )
        } else if (!x.ok || x.stdout.trim() !== 'done')
          problems.push(`${x.node}: ${JSON.stringify(x).slice(0, 160)}`)
      }
    } catch {
      problems.push(`not JSON: ${r.stdout.slice(0, 200)}`)
    }
    if (r.durationMs > FAIL_BOUND_MS) problems.push(`took ${r.durationMs}ms`)
    await waitBack('ast2', before.boots.ast2 ?? '')
    cell(t, {
      section: 'scenario',
      row: 'exec',
      fault: 'host reboots mid-command',
      hosts: ['ast2'],
      expect: 'exit 3: ast2 fails, named; the others print done',
      r,
      line,
      problems,
    })
  })

  test('a host reboots in the middle of a drain: the run ends, says what it left', async (t) => {
    await startCall('ast3')
    const oldBoot = (await snapshot()).boots.ast3 ?? ''
    const run = start(['node', 'drain', 'ast3', '--yes', '--timeout', '90s'])
    try {
      await run.when(/wait for 1 call on ast3 to end \.\.\./)
      await labSsh('ast3', 'reboot')
      const r = await run.done
      await waitBack('ast3', oldBoot)
      const s = await snapshot()
      const problems: string[] = []
      if (r.durationMs > 60_000) problems.push(`took ${r.durationMs}ms`)
      const uri = `sip:${ip('ast3')}:5060`
      // Whatever the outcome, ast3 must not be back in rotation behind the operator's back.
      for (const k of labHosts('kamailio'))
        if (s.rotation[`${k.name} ${uri}`] !== 'disabled')
          problems.push(`${k.name}: ast3 is back in rotation after the reboot`)
      if (!/"ast3","drain(ing|ed)"/.test(s.marks)) problems.push(`ast3 not marked: ${s.marks}`)
      const line =
        `${r.stdout}\n${r.stderr}`
          .split('\n')
          .find(
            (l) =>
              /ast3/.test(l) &&
              /(drained|stopped|interrupted|unreachable|failed|reboot|Asterisk)/i.test(l) &&
              !/^\s+\d\./.test(l) &&
              !/^ast3: .* \.\.\.$/.test(l),
          ) ?? ''
      if ((await lockHolder()) !== null) problems.push('the cluster lock is still held')
      cell(t, {
        section: 'scenario',
        row: 'node drain',
        fault: 'host reboots mid-command',
        hosts: ['ast3'],
        expect: 'ends within its timeouts; ast3 stays out of rotation and marked; the outcome names ast3',
        r,
        line,
        problems: [...problems, ...(line ? [] : ['no line says what happened to ast3'])],
      })
    } finally {
      run.signal('SIGKILL')
      await heal()
    }
  })

  test('two mutating commands at once: the second is refused, naming the holder; then SIGINT frees the lock', async (t) => {
    await startCall('ast3')
    const cells: CellResult[] = []
    const first = start(['node', 'drain', 'ast3', '--yes', '--timeout', '120s'])
    try {
      await first.when(/wait for 1 call on ast3 to end \.\.\./)
      for (const [row, argv] of [
        ['node drain', ['node', 'drain', 'ast4', '--yes']],
        ['node undrain', ['node', 'undrain', 'ast4']],
        ['cluster rediscover', ['cluster', 'rediscover', '--yes']],
        ['node add', addArgv(['--yes'])],
        ['dispatcher sync', ['dispatcher', 'sync', '--yes']],
      ] as const) {
        const before = await snapshot()
        const cfgBefore = readFileSync(configPath, 'utf8')
        const r = await cli([...argv])
        const line =
          r.stderr.split('\n').find((l) => /locked by .* running "?hactl node drain ast3/.test(l)) ?? ''
        const problems = [
          ...(r.code === 1 ? [] : [`exit ${r.code}, expected 1`]),
          ...(line ? [] : ['no line names the holder and its command']),
          ...diff(before, await snapshot()).map((d) => `changed: ${d}`),
        ]
        if (readFileSync(configPath, 'utf8') !== cfgBefore) {
          problems.push('hactl.yaml was changed')
          writeFileSync(configPath, cfgBefore)
        }
        cells.push(
          cell(t, {
            section: 'scenario',
            row,
            fault: 'another operator holds the lock',
            hosts: ['ast3'],
            expect: 'refused (exit 1) naming the holder and its command; nothing changed',
            r,
            line,
            problems,
            soft: true,
          }),
        )
      }
      // A refused run ends as soon as it has said so (eight tries: a lingering exit is intermittent).
      const refusals = await Promise.all(Array.from({length: 8}, () => cli(['node', 'undrain', 'ast4'])))
      const slow = refusals.filter((x) => x.durationMs > 8000)
      cells.push(
        cell(t, {
          section: 'scenario',
          row: 'node undrain',
          fault: 'refused by the lock, 8 times at once',
          hosts: ['ast3'],
          expect: 'each refused run exits within 8s of starting',
          r: refusals.reduce((a, b) => (b.durationMs > a.durationMs ? b : a)),
          line: `durations: ${refusals.map((x) => `${(x.durationMs / 1000).toFixed(1)}s`).join(' ')}`,
          problems: [
            ...refusals.filter((x) => x.code !== 1).map((x) => `exit ${x.code}`),
            ...(slow.length > 0
              ? [
                  `${slow.length} of 8 refused runs took more than 8s to exit (${slow.map((x) => x.durationMs).join(', ')}ms): something keeps the process alive after the refusal`,
                ]
              : []),
          ],
          soft: true,
        }),
      )
      first.signal('SIGINT')
      const r = await first.done
      const holder = await lockHolder()
      const line = r.stdout.split('\n').find((l) => /ast3.*interrupted/.test(l)) ?? ''
      cells.push(
        cell(t, {
          section: 'signal',
          row: 'node drain',
          fault: 'SIGINT while a second operator waits',
          hosts: ['ast3'],
          expect: 'exit 130, state printed, lock released',
          r,
          line,
          problems: [
            ...(r.code === 130 ? [] : [`exit ${r.code}`]),
            ...(holder === null ? [] : [`lock still held: ${holder}`]),
            ...(line ? [] : ['no state line']),
          ],
          soft: true,
        }),
      )
      const bad = cells.filter((c) => !c.ok)
      assert.deepEqual(
        bad.map((c) => `${c.row}: ${c.problems.join('; ')}`),
        [],
      )
    } finally {
      first.signal('SIGKILL')
      await heal()
    }
  })

  test('a wipe path that is a symlink out of the data dir: rediscover refuses in preflight, nothing changed', async (t) => {
    // Given etcd.wipe [member, proxy] and, on ast2, proxy -> /etc (a remote fact: the config cannot see it)
    const cfgBefore = readFileSync(configPath, 'utf8')
    const doc = parseDocument(cfgBefore)
    doc.setIn(['etcd', 'wipe'], ['member', 'proxy'])
    writeFileSync(configPath, doc.toString())
    const link = `${config.etcd.dataDir}/proxy`
    try {
      const made = await labSsh('ast2', `ln -sfn /etc ${link}`)
      assert.equal(made.code, 0, made.stderr)
      const before = await snapshot()
      const r = await cli(['cluster', 'rediscover', '--yes'])
      const problems = [...diff(before, await snapshot()).map((d) => `changed: ${d}`)]
      if (r.code !== 1) problems.push(`exit ${r.code}, expected 1`)
      const line = namingLine(r, ['ast2'], /outside the data dir/) ?? ''
      if (!line) problems.push('no line names ast2 and the path outside the data dir')
      const gone = await labSsh('ast2', 'test -e /etc/hostname && echo present')
      if (!/present/.test(gone.stdout)) problems.push('/etc on ast2 lost files')
      cell(t, {
        section: 'scenario',
        row: 'cluster rediscover',
        fault: 'wipe path is a symlink out of the data dir (ast2)',
        hosts: ['ast2'],
        expect: 'refused in preflight (exit 1), naming ast2 and the path; nothing changed',
        r,
        line,
        problems,
      })
    } finally {
      await labSsh('ast2', `rm -f ${link}`)
      writeFileSync(configPath, cfgBefore)
    }
  })

  // --- signals ---------------------------------------------------------------------------------

  /**
   * SIGINT once stderr shows `phase` (a step of the plan, as the progress prints it), then check:
   * exit 130 (or 0 when the run finished before the signal landed), the state printed, the lock
   * released, and what is printed is what the lab says.
   */
  async function interruptDrain(
    t: TestContext,
    phase: string,
    startRe: RegExp,
    opts: {call?: boolean; prepare?: () => Promise<void>; argv?: string[]} = {},
  ): Promise<void> {
    if (opts.call) await startCall('ast3')
    await opts.prepare?.()
    const run = start(['node', 'drain', 'ast3', '--yes', '--timeout', '120s', ...(opts.argv ?? [])])
    try {
      const seen = await run.when(startRe)
      run.signal('SIGINT')
      const r = await run.done
      const s = await snapshot()
      const holder = await lockHolder()
      const uri = `sip:${ip('ast3')}:5060`
      const out = `${r.stdout}\n${r.stderr}`
      const problems: string[] = []
      if (r.code !== 130 && r.code !== 0)
        problems.push(`exit ${r.code}${r.signal ? ` (${r.signal})` : ''}, expected 130`)
      if (holder !== null) problems.push(`the lock is still held: ${holder}`)
      const state =
        out
          .split('\n')
          .find(
            (l) =>
              (/dispatchers:|interrupted/i.test(l) && /ast3|dispatchers:/.test(l)) ||
              /before anything changed|nothing (was )?changed/i.test(l),
          ) ?? ''
      if (!state) problems.push('no line with the state of ast3')
      // The printed state is the real one.
      const disabled = labHosts('kamailio')
        .filter((k) => s.rotation[`${k.name} ${uri}`] === 'disabled')
        .map((k) => k.name)
      const m = /out of rotation on ([\w, ]+?) and marked (\w+)/.exec(out)
      if (m) {
        const said = m[1]!.split(/,\s*/).filter((x) => /^kam/.test(x))
        if (said.join(',') !== disabled.join(','))
          problems.push(`says out of rotation on ${m[1]}, the lab says ${disabled.join(', ') || 'none'}`)
        const mark = /"ast3","(\w+)"/.exec(s.marks)?.[1] ?? 'nothing'
        if (m[2] !== mark) problems.push(`says marked ${m[2]}, etcd says ${mark}`)
      } else if (
        /nothing (was )?changed|before anything changed/i.test(out) &&
        (disabled.length > 0 || /"ast3"/.test(s.marks))
      ) {
        problems.push('says nothing changed, but ast3 is disabled or marked')
      }
      cell(t, {
        section: 'signal',
        row: 'node drain',
        fault: `SIGINT at ${phase}`,
        hosts: ['ast3'],
        expect:
          'exit 130 (0 when the step ended before the signal landed), state printed and true, lock released',
        r,
        line: `${seen.trim()} → ${state.trim()}`,
        problems,
      })
    } finally {
      run.signal('SIGKILL')
      await heal()
    }
  }

  test('SIGINT during drain preflight (a slow host): nothing changed', async (t) => {
    // ast4 does not answer (the capacity guard probes it), so the preflight lasts ssh.connectTimeout;
    // --verbose shows when the connections start.
    await fault('ast4', 'sshd-hang')
    await interruptDrain(t, 'preflight', /^\[ssh\] ast4: connecting/, {argv: ['--verbose']})
  })

  test('SIGINT at each step of a drain', async (t) => {
    await t.test('mark-draining', (t2) =>
      interruptDrain(t2, 'mark-draining', /mark ast3 draining in etcd \.\.\./, {call: true}),
    )
    await t.test('disable', (t2) =>
      interruptDrain(t2, 'disable', /take ast3 out of rotation .* \.\.\./, {call: true}),
    )
    await t.test('wait-calls', (t2) =>
      interruptDrain(t2, 'wait-calls', /wait for 1 call on ast3 to end \.\.\./, {call: true}),
    )
    await t.test('stop', (t2) => interruptDrain(t2, 'stop', /stop Asterisk on ast3 .* \.\.\./))
    await t.test('mark-drained', (t2) =>
      interruptDrain(t2, 'mark-drained', /mark ast3 drained in etcd \.\.\./),
    )
  })

  /**
   * SIGINT once stderr shows the rediscover phase, then: exit 130, every etcd host's state printed
   * (or "nothing was changed", then nothing changed), the lock released; then finish the job with
   * a second run and check etcd is healthy.
   */
  async function interruptRediscover(
    t: TestContext,
    phase: string,
    startRe: RegExp,
    opts: {twice?: boolean} = {},
  ): Promise<void> {
    const before = await snapshot()
    const run = start(['cluster', 'rediscover', '--yes'])
    try {
      const seen = await run.when(startRe, 120_000)
      run.signal('SIGINT')
      let secondAt: number | undefined
      if (opts.twice) {
        await new Promise((r) => setTimeout(r, 200))
        run.signal('SIGINT')
        secondAt = Date.now()
      }
      const r = await run.done
      const endedAt = Date.now()
      const out = `${r.stdout}\n${r.stderr}`
      const problems: string[] = []
      if (r.code !== 130) problems.push(`exit ${r.code}${r.signal ? ` (${r.signal})` : ''}, expected 130`)
      const nothing = /nothing was changed/i.test(out)
      // The state of each host: the indented lines after the last Error line ("  ast1: reboot issued, not back yet").
      const errLines = r.stderr.split('\n')
      const lastError =
        errLines
          .map((l, i) => (l.startsWith('Error: ') ? i : -1))
          .filter((i) => i >= 0)
          .pop() ?? -1
      const summary = lastError === -1 ? [] : errLines.slice(lastError + 1).filter((l) => /^\s+\S+: /.test(l))
      const perHost = etcdHosts().filter((h) => summary.some((l) => l.trim().startsWith(`${h}: `)))
      let line = ''
      if (nothing) {
        line = out.split('\n').find((l) => /nothing was changed/i.test(l)) ?? ''
        const after = await snapshot()
        problems.push(
          ...diff({...before, rotation: {}, units: {}}, {...after, rotation: {}, units: {}}).map(
            (d) => `changed although it says nothing was: ${d}`,
          ),
        )
      } else {
        line = [errLines[lastError] ?? '', ...summary].join(' / ')
        if (perHost.length !== etcdHosts().length)
          problems.push(
            `the final state of ${etcdHosts()
              .filter((h) => !perHost.includes(h))
              .join(', ')} is not printed (after the Error line)`,
          )
      }
      if (secondAt !== undefined && endedAt - secondAt > 2000)
        problems.push(`the second SIGINT did not end the run at once (${endedAt - secondAt}ms)`)
      const holder = await lockHolder().catch(() => null)
      if (holder !== null) problems.push(`the lock is still held: ${holder}`)
      // Then, once the hosts answer again, a second run completes the rediscovery.
      await waitFor(
        async () => {
          const lab = JSON.parse((await labCli(['status', '--json'])).stdout) as {
            hosts: Array<{name: string; state: string; sshd: string}>
          }
          return etcdHosts().every((h) =>
            lab.hosts.some((x) => x.name === h && x.state === 'up' && x.sshd === 'up'),
          )
        },
        {timeoutMs: 90_000, intervalMs: 500, what: 'the etcd hosts to answer again'},
      )
      const again = await cli(['cluster', 'rediscover', '--yes'], 240_000)
      if (again.code !== 0)
        problems.push(
          `the run after the interrupt failed (exit ${again.code}): ${again.stderr.split('\n').find((l) => l.startsWith('Error:')) ?? ''}`,
        )
      cell(t, {
        section: 'signal',
        row: 'cluster rediscover',
        fault: `SIGINT${opts.twice ? ' twice' : ''} at ${phase}`,
        hosts: etcdHosts(),
        expect: opts.twice
          ? 'the second SIGINT exits at once, exit 130, each host state printed'
          : 'exit 130, "nothing was changed" (true) or each host state printed; lock released; a second run completes',
        r,
        line: `${seen.trim().slice(0, 80)} → ${line.trim()}`,
        problems,
      })
    } finally {
      run.signal('SIGKILL')
      await heal()
    }
  }

  test('SIGINT at each phase of a rediscover', async (t) => {
    await t.test('preflight', (t2) => interruptRediscover(t2, 'preflight', /^Preflight \(read-only\)\.\.\./))
    await t.test('backup', (t2) => interruptRediscover(t2, 'backup', /^Save the etcd data\.\.\./))
    await t.test('token', (t2) => interruptRediscover(t2, 'token', /^New discovery token\.\.\./))
    await t.test('prepare', (t2) => interruptRediscover(t2, 'prepare', /^Stop etcd, remove its data.*\.\.\./))
    await t.test('wait-ssh', (t2) => interruptRediscover(t2, 'wait-ssh', /^Wait for the hosts.*\.\.\./))
    await t.test('wait-etcd', (t2) =>
      interruptRediscover(t2, 'wait-etcd', /^Wait for a healthy etcd cluster\.\.\./),
    )
    await t.test('second Ctrl-C', (t2) =>
      interruptRediscover(t2, 'wait-ssh', /^Wait for the hosts.*\.\.\./, {twice: true}),
    )
  })

  /** SIGINT for the other mutating commands: exit 130, something printed about the hosts, lock released. */
  async function interruptOther(
    t: TestContext,
    row: string,
    argv: string[],
    startRe: RegExp,
    hosts: string[],
    prepare?: () => Promise<void>,
  ): Promise<void> {
    await prepare?.()
    const cfgBefore = readFileSync(configPath, 'utf8')
    const run = start(argv)
    try {
      const seen = await run.when(startRe)
      run.signal('SIGINT')
      const r = await run.done
      const out = `${r.stdout}\n${r.stderr}`
      const problems: string[] = []
      if (r.code !== 130)
        problems.push(`exit ${r.code}${r.signal ? ` (killed by ${r.signal})` : ''}, expected 130`)
      const line = out.split('\n').find((l) => hosts.some((h) => l.includes(h)) && /interrupt/i.test(l)) ?? ''
      if (!line) problems.push(`no line with the state of ${hosts.join(', ')} after the interrupt`)
      const holder = await lockHolder().catch(() => null)
      if (holder !== null) problems.push(`the lock is still held: ${holder}`)
      cell(t, {
        section: 'signal',
        row,
        fault: 'SIGINT mid-run',
        hosts,
        expect: 'exit 130, state printed, lock released',
        r,
        line: `${seen.trim().slice(0, 80)} → ${line.trim()}`,
        problems,
      })
    } finally {
      run.signal('SIGKILL')
      writeFileSync(configPath, cfgBefore)
      await heal()
      // A node add that got far enough: take spare1 back out.
      if (row === 'node add')
        await cli(['node', 'remove', 'spare1', '--yes', '--force'], 180_000).catch(() => undefined)
      writeFileSync(configPath, cfgBefore)
    }
  }

  test('SIGINT for the other mutating commands', async (t) => {
    await t.test('node undrain', (t2) =>
      interruptOther(
        t2,
        'node undrain',
        ['node', 'undrain', 'ast3', '--timeout', '60s'],
        /start Asterisk on ast3 .*\.\.\./,
        ['ast3'],
        async () => {
          await fault('ast3', 'asterisk-down')
        },
      ),
    )
    await t.test('dispatcher sync', (t2) =>
      interruptOther(t2, 'dispatcher sync', ['dispatcher', 'sync', '--yes'], /reading/, ['kam1', 'kam2']),
    )
    await t.test('exec', (t2) =>
      // Two hosts at a time: the Ctrl-C comes while the others wait (their connections may be
      // open already: hactl's early start opens them before the command runs).
      interruptOther(t2, 'exec', ['exec', 'all', '--concurrency', '2', '--', 'sleep 5'], /running/, ['ast1', 'kam1']),
    )
    await t.test('node add', (t2) => interruptOther(t2, 'node add', addArgv(['--yes']), /./, ['spare1']))
  })

  test('the results file names every command of the matrix', () => {
    const rows = new Set(results.filter((c) => c.section === 'matrix').map((c) => c.row))
    for (const r of [
      'status',
      'exec',
      'node drain (target)',
      'node undrain',
      'cluster rediscover',
      'dispatcher sync',
      'node add',
    ])
      assert.ok(rows.has(r), `no matrix cell for ${r}`)
  })
})
