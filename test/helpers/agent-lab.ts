/**
 * What the agent and dispatcher integration tests do on a lab: run commands in its hosts over the
 * lab's SSH, start agents inside hosts and stop them by pid, read and restore Kamailio's lists.
 */
import {spawn} from 'node:child_process'
import {existsSync, readdirSync, readFileSync} from 'node:fs'
import path from 'node:path'
import {loadConfig, type HactlConfig, type ResolvedNode} from '../../src/lib/config/load.js'
import {parseDispatcherList, type DispatcherTarget} from '../../src/lib/facts/kamailio.js'
import type {EtcdHandle} from '../../src/lib/etcd/client.js'
import {shellQuote} from '../../src/lib/ssh/quote.js'
import {hactlBin} from './lab.js'

export const REPO = path.resolve(import.meta.dirname, '../..')

export interface LabHost {
  name: string
  ip: string
  kind: string
}

export interface Lab {
  configPath: string
  config: HactlConfig
  kams: ResolvedNode[]
  asts: ResolvedNode[]
  etcdHosts: ResolvedNode[]
  /** Spare hosts from the lab's state.json (sshd and an Asterisk unit, not in hactl.yaml). */
  spares: LabHost[]
  endpoints: string[]
}

/**
 * The lab under test: the shared test lab (scripts/test.mjs exports HACTL_TEST_CONFIG), or one that
 * `useLab()` brings up for a file run on its own. `release()` removes a lab brought up here.
 */
export async function openLab(): Promise<Lab & {release(): Promise<void>}> {
  const {useLab} = await import('./lab.js')
  const {configPath, release} = await useLab()
  return {...labAt(configPath), release}
}

export function labAt(configPath: string): Lab {
  if (!existsSync(configPath)) throw new Error(`no lab: ${configPath} does not exist`)
  const config = loadConfig({flag: configPath})
  const statePath = path.join(path.dirname(configPath), 'state.json')
  const state = existsSync(statePath)
    ? (JSON.parse(readFileSync(statePath, 'utf8')) as {hosts?: LabHost[]})
    : {}
  const etcdHosts = config.nodes.filter((n) => n.roles.includes('etcd'))
  return {
    configPath,
    config,
    kams: config.nodes.filter((n) => n.roles.includes('kamailio')),
    asts: config.nodes.filter((n) => n.roles.includes('asterisk')),
    etcdHosts,
    spares: (state.hosts ?? []).filter((h) => h.kind === 'spare'),
    endpoints: etcdHosts.map((n) => `http://${n.host}:${config.etcd.clientPort}`),
  }
}

export interface Run {
  code: number | null
  stdout: string
  stderr: string
}

function run(
  cmd: string,
  args: string[],
  opts: {stdin?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number} = {},
): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe']})
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000)
    child.on('error', (e) => {
      clearTimeout(timer)
      reject(e)
    })
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({code, stdout, stderr})
    })
    child.stdin.end(opts.stdin ?? '')
  })
}

/** Run a shell command in a lab host over the lab's SSH (its key and known_hosts). */
export async function ssh(
  lab: Lab,
  host: string,
  command: string,
  opts: {stdin?: string; check?: boolean; timeoutMs?: number} = {},
): Promise<Run> {
  const args = [
    '-i',
    lab.config.ssh.identityFiles[0] ?? '',
    '-o',
    `UserKnownHostsFile=${lab.config.ssh.knownHosts}`,
    '-o',
    'StrictHostKeyChecking=yes',
    '-o',
    'BatchMode=yes',
    '-o',
    'ConnectTimeout=5',
    `root@${host}`,
    command,
  ]
  const r = await run('ssh', args, {
    ...(opts.stdin === undefined ? {} : {stdin: opts.stdin}),
    timeoutMs: opts.timeoutMs ?? 30_000,
  })
  if (opts.check !== false && r.code !== 0)
    throw new Error(`ssh ${host} ${command}: exit ${r.code}: ${r.stderr.trim() || r.stdout.trim()}`)
  return r
}

/** hactl (the build, or the sources without one) against the lab's hactl.yaml. */
export function cli(lab: Lab, args: string[], opts: {timeoutMs?: number} = {}): Promise<Run> {
  const env = {...process.env, HACTL_CONFIG: lab.configPath, NO_COLOR: '1'}
  return run(process.execPath, [hactlBin(), ...args], {env, timeoutMs: opts.timeoutMs ?? 120_000})
}

export interface Agent {
  host: string
  pid: number
  /** The log's path inside the host. */
  log: string
  /** The same file seen from this machine: the host's private /tmp is HOSTDIR/tmp. */
  localLog: string
}

/** Where a lab host's private /tmp lives on this machine (hosts are found by IP in HOSTDIR/host.json). */
function hostTmpDir(lab: Lab, ip: string): string {
  const hostsDir = path.join(path.dirname(lab.configPath), 'hosts')
  for (const name of readdirSync(hostsDir)) {
    try {
      const info = JSON.parse(readFileSync(path.join(hostsDir, name, 'host.json'), 'utf8')) as {ip?: string}
      if (info.ip === ip) return path.join(hostsDir, name, 'tmp')
    } catch {
      // not a host directory
    }
  }
  throw new Error(`no lab host with IP ${ip} under ${hostsDir}`)
}

/**
 * Start `hactl ARGS` inside a lab host, in the background (its own session, so the SSH session can
 * end), logging to a file in the host's /tmp (read from here through HOSTDIR/tmp). Returns its pid.
 */
export async function startAgent(lab: Lab, host: string, args: string[], label: string): Promise<Agent> {
  const log = `/tmp/hactl-test-${path.basename(path.dirname(lab.configPath))}-${label}.log`
  // `&` on the simple command alone, every fd redirected: the SSH session ends at once, and $! is
  // the agent's own pid (a background setsid is no group leader, so it execs without forking).
  const bin = path.relative(REPO, hactlBin())
  const cmd = `cd ${shellQuote(REPO)} || exit 1; setsid node ${shellQuote(bin)} ${args.map(shellQuote).join(' ')} >${shellQuote(log)} 2>&1 </dev/null & echo $!`
  const r = await ssh(lab, host, cmd)
  const pid = Number(r.stdout.trim())
  if (!Number.isInteger(pid) || pid <= 1) throw new Error(`no pid from ${host}: ${r.stdout}`)
  return {host, pid, log, localLog: path.join(hostTmpDir(lab, host), path.basename(log))}
}

export async function signalAgent(lab: Lab, agent: Agent, signal: 'TERM' | 'KILL' | 'INT'): Promise<void> {
  await ssh(lab, agent.host, `kill -${signal} ${agent.pid}`, {check: false})
}

export async function agentAlive(lab: Lab, agent: Agent): Promise<boolean> {
  const r = await ssh(lab, agent.host, `kill -0 ${agent.pid} 2>/dev/null && echo alive || echo gone`, {
    check: false,
  })
  return r.stdout.trim() === 'alive'
}

/** Stop an agent by its pid (TERM, then KILL after 5 s); best effort. */
export async function stopAgent(lab: Lab, agent: Agent): Promise<void> {
  await ssh(
    lab,
    agent.host,
    `kill -TERM ${agent.pid} 2>/dev/null; for i in $(seq 50); do kill -0 ${agent.pid} 2>/dev/null || exit 0; sleep 0.1; done; kill -KILL ${agent.pid} 2>/dev/null; exit 0`,
    {check: false},
  ).catch(() => undefined)
}

export function agentLog(agent: Agent): string {
  try {
    return readFileSync(agent.localLog, 'utf8')
  } catch {
    return '(no log)'
  }
}

/** Set `setId` of a Kamailio's runtime list (kamcmd dispatcher.list). */
export async function kamTargets(
  lab: Lab,
  kam: ResolvedNode,
  setId = lab.config.kamailio.setId,
): Promise<DispatcherTarget[]> {
  const r = await ssh(lab, kam.host, 'kamcmd dispatcher.list', {check: false})
  return parseDispatcherList(r.stdout).sets.find((s) => s.id === setId)?.targets ?? []
}

/** The flags of ip:port in a Kamailio's runtime list, or null when absent. */
export async function flagsOf(lab: Lab, kam: ResolvedNode, ip: string, port = 5060): Promise<string | null> {
  const t = (await kamTargets(lab, kam)).find((x) => x.host === ip && x.port === port)
  return t ? t.flags : null
}

/** `kamcmd dispatcher.reload`, retried while Kamailio answers "Ongoing reload". */
export async function reloadKamailio(lab: Lab, kam: ResolvedNode): Promise<string> {
  for (let i = 0; ; i++) {
    const r = await ssh(lab, kam.host, 'kamcmd dispatcher.reload 2>&1', {check: false})
    if (!/Ongoing reload/.test(r.stdout) || i >= 15) return r.stdout
    await new Promise((res) => setTimeout(res, 1000))
  }
}

export async function readListFile(lab: Lab, kam: ResolvedNode): Promise<string> {
  return (await ssh(lab, kam.host, `cat ${shellQuote(lab.config.kamailio.listFile)}`)).stdout
}

/** Put a list file back as it was and reload Kamailio. */
export async function restoreListFile(lab: Lab, kam: ResolvedNode, text: string): Promise<void> {
  const f = shellQuote(lab.config.kamailio.listFile)
  await ssh(lab, kam.host, `cat >${f}.hactl-test && mv -f ${f}.hactl-test ${f}`, {stdin: text})
  await reloadKamailio(lab, kam)
}

/**
 * Put aside every key under `prefix` (the test starts from none) and return a function that puts
 * back those without a lease (a leased key belongs to a process that is gone or will write it again).
 */
export async function clearPrefix(etcd: EtcdHandle, prefix: string): Promise<() => Promise<void>> {
  const res = await etcd.client.getAll().prefix(prefix).exec()
  const keep = res.kvs
    .filter((kv) => !kv.lease || kv.lease === '0')
    .map((kv) => [kv.key.toString(), kv.value.toString()] as const)
  await etcd.client.delete().prefix(prefix).exec()
  return async () => {
    await etcd.client.delete().prefix(prefix).exec()
    for (const [k, v] of keep) await etcd.client.put(k).value(v).exec()
  }
}

/** Run every cleanup step, even when one fails; throw the first failure at the end. */
export async function cleanupAll(steps: Array<() => Promise<unknown> | unknown>): Promise<void> {
  let first: unknown
  for (const step of steps) {
    try {
      await step()
    } catch (error) {
      first ??= error
    }
  }
  if (first !== undefined) throw first
}
