/**
 * Throwaway etcd clusters for integration tests: real /usr/bin/etcd processes on 127.0.0.1 ports,
 * data in a temp dir, fast elections. Every process is stopped by its pid (also when the test
 * process exits early), and the temp dir is removed.
 */
import {spawn, spawnSync, type ChildProcess} from 'node:child_process'
import {closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {get as httpGet} from 'node:http'
import {get as httpsGet} from 'node:https'
import {createServer, type AddressInfo, type Server} from 'node:net'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {parseConfig, type HactlConfig} from '../../src/lib/config/load.js'

export const ETCD_BIN = process.env.HACTL_TEST_ETCD ?? '/usr/bin/etcd'

export interface EtcdMember {
  name: string
  clientPort: number
  peerPort: number
  clientUrl: string
  peerUrl: string
  dataDir: string
  logFile: string
  proc?: ChildProcess
}

/** Files of a throwaway CA, a server certificate (127.0.0.1 and etcd-a.invalid) and a client certificate. */
export interface TestTls {
  ca: string
  serverCert: string
  serverKey: string
  clientCert: string
  clientKey: string
}

export interface EtcdCluster {
  dir: string
  /** Set when started with `tls: true`: client URLs are https and client certificates are required. */
  tls?: TestTls
  members: EtcdMember[]
  /** Client URLs of every member. */
  endpoints: string[]
  /** A hactl config pointing at this cluster (or at `endpoints` given). */
  config(opts?: {
    endpoints?: string[]
    timeout?: string
    extraEtcdYaml?: string
    tls?: 'full' | 'ca-only' | 'none'
  }): HactlConfig
  /** Stop one member: SIGTERM (clean) or SIGKILL (crash); waits until it has exited. */
  stop(member: EtcdMember, signal?: 'SIGTERM' | 'SIGKILL'): Promise<void>
  /** Start a stopped member again; `wipe` removes its data first (a new cluster for a single member). */
  start(member: EtcdMember, opts?: {wipe?: boolean; wait?: boolean}): Promise<void>
  /** SIGSTOP / SIGCONT: a member that accepts connections but never answers. */
  freeze(member: EtcdMember): void
  thaw(member: EtcdMember): void
  /** Wait until every running member says healthy. */
  waitHealthy(timeoutMs?: number): Promise<void>
  /** Stop every member and remove the temp dir. */
  destroy(): Promise<void>
}

const running = new Set<ChildProcess>()
let exitHookInstalled = false

function installExitHook(): void {
  if (exitHookInstalled) return
  exitHookInstalled = true
  // A test that throws or is interrupted must not leave etcd processes behind.
  process.on('exit', () => {
    for (const p of running) {
      try {
        if (p.pid) process.kill(p.pid, 'SIGKILL')
      } catch {
        // already gone
      }
    }
  })
}

async function freePorts(n: number): Promise<number[]> {
  // Hold them all open at once so no two are the same.
  const servers: Server[] = []
  try {
    for (let i = 0; i < n; i++) {
      const s = createServer()
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject)
        s.listen(0, '127.0.0.1', () => resolve())
      })
      servers.push(s)
    }
    return servers.map((s) => (s.address() as AddressInfo).port)
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))))
  }
}

/** A CA and certificates made with openssl; the server certificate names 127.0.0.1 and etcd-a.invalid. */
export function makeTestTls(dir: string): TestTls {
  const f = (name: string) => path.join(dir, name)
  const ssl = (...args: string[]) => {
    const r = spawnSync('openssl', args, {cwd: dir, encoding: 'utf8'})
    if (r.status !== 0) throw new Error(`openssl ${args.join(' ')}: ${r.stderr}`)
  }
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
  ssl(
    'req',
    '-x509',
    ...ec,
    '-keyout',
    f('ca.key'),
    '-out',
    f('ca.crt'),
    '-subj',
    '/CN=hactl-test-ca',
    '-days',
    '2',
  )
  const sign = (name: string, cn: string, ext: string) => {
    ssl('req', ...ec, '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`), '-subj', `/CN=${cn}`)
    writeFileSync(f(`${name}.ext`), ext)
    ssl(
      'x509',
      '-req',
      '-in',
      f(`${name}.csr`),
      '-CA',
      f('ca.crt'),
      '-CAkey',
      f('ca.key'),
      '-CAcreateserial',
      '-out',
      f(`${name}.crt`),
      '-days',
      '2',
      '-extfile',
      f(`${name}.ext`),
    )
  }
  sign(
    'server',
    'etcd',
    'subjectAltName=IP:127.0.0.1,DNS:etcd-a.invalid\nextendedKeyUsage=serverAuth,clientAuth\n',
  )
  sign('client', 'hactl', 'extendedKeyUsage=clientAuth\n')
  return {
    ca: f('ca.crt'),
    serverCert: f('server.crt'),
    serverKey: f('server.key'),
    clientCert: f('client.crt'),
    clientKey: f('client.key'),
  }
}

export async function startEtcd(
  opts: {members?: number; name?: string; tls?: boolean} = {},
): Promise<EtcdCluster> {
  installExitHook()
  const n = opts.members ?? 1
  const dir = mkdtempSync(path.join(tmpdir(), `hactl-etcd-${opts.name ?? 'test'}-`))
  const tls = opts.tls ? makeTestTls(dir) : undefined
  const scheme = tls ? 'https' : 'http'
  const ports = await freePorts(2 * n)
  const members: EtcdMember[] = Array.from({length: n}, (_, i) => {
    const clientPort = ports[2 * i]!
    const peerPort = ports[2 * i + 1]!
    const name = `m${i + 1}`
    return {
      name,
      clientPort,
      peerPort,
      clientUrl: `${scheme}://127.0.0.1:${clientPort}`,
      peerUrl: `http://127.0.0.1:${peerPort}`,
      dataDir: path.join(dir, name),
      logFile: path.join(dir, `${name}.log`),
    }
  })
  const initialCluster = members.map((m) => `${m.name}=${m.peerUrl}`).join(',')
  const token = `hactl-test-${path.basename(dir)}`

  const spawnMember = (m: EtcdMember): void => {
    const fd = openSync(m.logFile, 'a')
    const args = [
      '--name',
      m.name,
      '--data-dir',
      m.dataDir,
      '--listen-client-urls',
      m.clientUrl,
      '--advertise-client-urls',
      m.clientUrl,
      '--listen-peer-urls',
      m.peerUrl,
      '--initial-advertise-peer-urls',
      m.peerUrl,
      '--initial-cluster',
      initialCluster,
      '--initial-cluster-state',
      'new',
      '--initial-cluster-token',
      token,
      '--heartbeat-interval',
      '100',
      '--election-timeout',
      '1000',
      '--logger',
      'zap',
      '--log-outputs',
      'stderr',
      ...(tls
        ? [
            '--cert-file',
            tls.serverCert,
            '--key-file',
            tls.serverKey,
            '--trusted-ca-file',
            tls.ca,
            '--client-cert-auth',
          ]
        : []),
    ]
    // A clean environment: ETCD_* variables of the machine must not leak in.
    const proc = spawn(ETCD_BIN, args, {
      stdio: ['ignore', fd, fd],
      env: {PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir},
    })
    closeSync(fd)
    running.add(proc)
    proc.once('exit', () => running.delete(proc))
    m.proc = proc
  }

  const stop = async (m: EtcdMember, signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): Promise<void> => {
    const p = m.proc
    if (!p || p.exitCode !== null || p.signalCode !== null) {
      m.proc = undefined
      return
    }
    const exited = new Promise<void>((resolve) => p.once('exit', () => resolve()))
    try {
      // A frozen process cannot act on SIGTERM.
      if (p.pid) process.kill(p.pid, 'SIGCONT')
    } catch {
      // gone
    }
    p.kill(signal)
    const timer = setTimeout(() => p.kill('SIGKILL'), 10_000)
    await exited
    clearTimeout(timer)
    m.proc = undefined
  }

  const healthy = (m: EtcdMember): Promise<boolean> =>
    new Promise((resolve) => {
      const url = `${m.clientUrl}/health`
      const options = tls
        ? {
            ca: readFileSync(tls.ca),
            cert: readFileSync(tls.clientCert),
            key: readFileSync(tls.clientKey),
            timeout: 1000,
          }
        : {timeout: 1000}
      const req = (tls ? httpsGet : httpGet)(url, options, (res) => {
        let body = ''
        res.on('data', (d: Buffer) => (body += d.toString()))
        res.on('end', () => {
          try {
            resolve((JSON.parse(body) as {health?: string}).health === 'true')
          } catch {
            resolve(false)
          }
        })
        res.on('error', () => resolve(false))
      })
      req.on('timeout', () => req.destroy())
      req.on('error', () => resolve(false))
    })

  const waitHealthy = async (timeoutMs = 20_000, only?: EtcdMember[]): Promise<void> => {
    const deadline = Date.now() + timeoutMs
    const targets = only ?? members.filter((m) => m.proc)
    for (;;) {
      for (const m of targets) {
        if (m.proc && (m.proc.exitCode !== null || m.proc.signalCode !== null)) {
          throw new Error(
            `etcd ${m.name} exited (${m.proc.exitCode ?? m.proc.signalCode}):\n${tail(m.logFile)}`,
          )
        }
      }
      const ok = await Promise.all(targets.map((m) => healthy(m)))
      if (ok.every(Boolean)) return
      if (Date.now() > deadline) {
        const bad = targets.filter((_, i) => !ok[i])
        throw new Error(
          `etcd not healthy within ${timeoutMs} ms: ${bad.map((m) => `${m.name}\n${tail(m.logFile)}`).join('\n')}`,
        )
      }
      await new Promise((r) => setTimeout(r, 100))
    }
  }

  const cluster: EtcdCluster = {
    dir,
    ...(tls ? {tls} : {}),
    members,
    endpoints: members.map((m) => m.clientUrl),
    config(c = {}) {
      const eps = c.endpoints ?? members.map((m) => m.clientUrl)
      const yaml = [
        'cluster: test',
        'etcd:',
        `  endpoints: [${eps.map((e) => JSON.stringify(e)).join(', ')}]`,
        `  timeout: ${c.timeout ?? '2s'}`,
        ...(tls && c.tls !== 'none' ? ['  tls:', `    ca: ${tls.ca}`] : []),
        ...(tls && (c.tls ?? 'full') === 'full'
          ? [`    cert: ${tls.clientCert}`, `    key: ${tls.clientKey}`]
          : []),
        ...(c.extraEtcdYaml ? c.extraEtcdYaml.split('\n').map((l) => `  ${l}`) : []),
        'nodes:',
        '  ast1: {host: 127.0.0.1, roles: [asterisk]}',
      ].join('\n')
      return parseConfig(yaml, path.join(dir, 'hactl.yaml'))
    },
    stop,
    async start(m, o = {}) {
      if (m.proc) throw new Error(`etcd ${m.name} is running`)
      if (o.wipe) rmSync(m.dataDir, {recursive: true, force: true})
      spawnMember(m)
      if (o.wait !== false) await waitHealthy(20_000, [m])
    },
    freeze(m) {
      if (m.proc?.pid) process.kill(m.proc.pid, 'SIGSTOP')
    },
    thaw(m) {
      if (m.proc?.pid) process.kill(m.proc.pid, 'SIGCONT')
    },
    waitHealthy: (t) => waitHealthy(t),
    async destroy() {
      // SIGKILL: stopping every member cleanly makes the leader wait ~7 s for a transfer.
      await Promise.all(members.map((m) => stop(m, 'SIGKILL')))
      rmSync(dir, {recursive: true, force: true})
    },
  }

  try {
    for (const m of members) spawnMember(m)
    await waitHealthy()
  } catch (error) {
    await cluster.destroy()
    throw error
  }
  return cluster
}

function tail(file: string, lines = 15): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n')
  } catch {
    return '(no log)'
  }
}

/** Poll fn until it returns a truthy value or the time is up. */
export async function eventually<T>(
  fn: () => Promise<T> | T,
  opts: {timeoutMs?: number; intervalMs?: number; what?: string} = {},
): Promise<NonNullable<T>> {
  const deadline = Date.now() + (opts.timeoutMs ?? 10_000)
  let last: unknown
  for (;;) {
    try {
      const v = await fn()
      if (v) return v as NonNullable<T>
    } catch (error) {
      last = error
    }
    if (Date.now() > deadline)
      throw new Error(
        `timed out waiting for ${opts.what ?? 'a condition'}${last ? `: ${(last as Error).message}` : ''}`,
      )
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 100))
  }
}
