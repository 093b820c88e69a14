/**
 * The local lab for integration tests: real sshd, etcd and Kamailio hosts in network namespaces
 * (`hactl lab`). `node scripts/test.mjs` brings ONE lab up before the integration tests
 * (`hactltest`, 10.78.0.0/24, 4 Asterisk, 2 Kamailio, 3 etcd, 1 spare), exports its hactl.yaml as
 * HACTL_TEST_CONFIG and removes it afterwards. A test file run on its own (node --import tsx --test
 * FILE) gets the same lab from `useLab()`, which then brings one up and removes it in `release()`.
 *
 * Tests that change the lab (faults, reboots, drains) must put it back: `restoreLab()` heals every
 * host, starts stopped services and waits until `hactl lab status` is healthy again.
 */
import {spawn} from 'node:child_process'
import {existsSync, readFileSync} from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import type {LabHostState, LabState} from '../../src/lib/lab/state.js'
import {
  callLogPath,
  readCallLog,
  summarizeCalls,
  type CallLogEntry,
  type CallSummary,
} from '../../src/lib/lab/calls.js'
import {dispatcherFlags} from '../../src/lib/lab/dispatcher.js'

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')

/** The shared test lab's parameters (scripts/test.mjs uses them too). */
export const TEST_LAB = {
  name: process.env.HACTL_TEST_LAB_NAME ?? 'hactltest',
  subnet: process.env.HACTL_TEST_LAB_SUBNET ?? '10.78.0.0/24',
  asterisk: 4,
  kamailio: 2,
  etcd: 3,
  spare: 1,
} as const

export interface ExecResult {
  stdout: string
  stderr: string
  code: number | null
  signal?: NodeJS.Signals | null
  durationMs: number
}

/** Run a program (no shell); never rejects on a non-zero exit. */
export function exec(
  cmd: string,
  args: string[],
  opts: {env?: NodeJS.ProcessEnv; timeoutMs?: number; input?: string} = {},
): Promise<ExecResult> {
  const t0 = Date.now()
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      env: opts.env ?? process.env,
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d))
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000)
    child.on('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({stdout, stderr, code, signal, durationMs: Date.now() - t0})
    })
    if (child.stdin) {
      child.stdin.on('error', () => {})
      child.stdin.end(opts.input)
    }
  })
}

/** The hactl binary: the build (bin/run.js) when there is one, else the TypeScript sources (bin/dev.js). */
export function hactlBin(): string {
  return existsSync(path.join(REPO, 'dist', 'commands', 'lab', 'up.js'))
    ? path.join(REPO, 'bin', 'run.js')
    : path.join(REPO, 'bin', 'dev.js')
}

/** Run hactl with the test lab's config (HACTL_CONFIG) unless env says otherwise. */
export function hactl(
  args: string[],
  opts: {env?: NodeJS.ProcessEnv; timeoutMs?: number} = {},
): Promise<ExecResult> {
  const env = {
    ...process.env,
    NO_COLOR: '1',
    ...(process.env.HACTL_TEST_CONFIG ? {HACTL_CONFIG: process.env.HACTL_TEST_CONFIG} : {}),
    ...opts.env,
  }
  return exec(process.execPath, [hactlBin(), ...args], {env, timeoutMs: opts.timeoutMs})
}

/** hactl.yaml of the shared test lab. */
export function labConfigPath(): string {
  const p = process.env.HACTL_TEST_CONFIG
  if (!p) {
    throw new Error(
      'HACTL_TEST_CONFIG is not set: run the integration tests through `node scripts/test.mjs integration`, or call useLab() first',
    )
  }
  return p
}

export function labDirOf(configPath = labConfigPath()): string {
  return path.dirname(configPath)
}

export function labState(configPath = labConfigPath()): LabState {
  return JSON.parse(readFileSync(path.join(labDirOf(configPath), 'state.json'), 'utf8')) as LabState
}

export function labName(): string {
  return labState().name
}

export function labHost(name: string): LabHostState {
  const h = labState().hosts.find((x) => x.name === name)
  if (!h) throw new Error(`the test lab has no host ${name}`)
  return h
}

export function labHosts(kind?: LabHostState['kind']): LabHostState[] {
  return labState().hosts.filter((h) => !kind || h.kind === kind)
}

/** Options for the real OpenSSH client against a lab host, host key checked against the lab's known_hosts. */
export function sshArgs(host: LabHostState | string, extra: string[] = []): string[] {
  const h = typeof host === 'string' ? labHost(host) : host
  const dir = labDirOf()
  return [
    '-i',
    path.join(dir, 'id_ed25519'),
    '-o',
    `UserKnownHostsFile=${path.join(dir, 'known_hosts')}`,
    '-o',
    'StrictHostKeyChecking=yes',
    '-o',
    'BatchMode=yes',
    '-o',
    'ConnectTimeout=3',
    '-o',
    'LogLevel=ERROR',
    ...extra,
    `root@${h.ip}`,
  ]
}

/** Run a command on a lab host over real SSH. */
export function labSsh(
  host: LabHostState | string,
  command: string,
  opts: {timeoutMs?: number; sshOptions?: string[]} = {},
): Promise<ExecResult> {
  return exec('ssh', [...sshArgs(host, opts.sshOptions), command], {timeoutMs: opts.timeoutMs ?? 60_000})
}

/** `hactl lab SUBCOMMAND ... --name <test lab>`. */
export function labCli(args: string[], opts: {timeoutMs?: number} = {}): Promise<ExecResult> {
  return hactl(['lab', ...args, '--name', labName()], opts)
}

export function callLog(host: string): CallLogEntry[] {
  return readCallLog(callLogPath(labHost(host).dir))
}

export function callSummary(host: string, since?: string): CallSummary {
  return summarizeCalls(callLog(host).filter((e) => !since || e.time >= since))
}

/** URI → FLAGS of a lab Kamailio's dispatcher (through its ctl socket, no SSH). */
export function labDispatcher(kam: string): Promise<Record<string, string>> {
  return dispatcherFlags(labHost(kam).dir)
}

export async function waitFor<T>(
  fn: () => Promise<T | undefined | false> | T | undefined | false,
  opts: {timeoutMs?: number; intervalMs?: number; what?: string} = {},
): Promise<T> {
  const deadline = Date.now() + (opts.timeoutMs ?? 30_000)
  let last: unknown
  for (;;) {
    try {
      const v = await fn()
      if (v !== undefined && v !== false) return v as T
    } catch (error) {
      last = error
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out waiting for ${opts.what ?? 'a condition'}${last ? ` (last error: ${(last as Error).message})` : ''}`,
      )
    }
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 250))
  }
}

/** Put the lab back as `lab up` made it: heal every host, start what is stopped, wait until healthy. */
export async function restoreLab(timeoutMs = 90_000): Promise<void> {
  await labCli(['heal', 'all'])
  const state = labState()
  await Promise.all(
    state.hosts
      .filter((h) => h.kind === 'asterisk' || h.kind === 'kamailio')
      .map((h) => {
        const units = h.kind === 'kamailio' ? 'kamailio' : h.etcd ? 'asterisk etcd2' : 'asterisk'
        return labSsh(h, `systemctl start ${units}`, {timeoutMs: 100_000}).catch(() => undefined)
      }),
  )
  await waitFor(async () => (await labCli(['status', '--json'])).code === 0, {
    timeoutMs,
    intervalMs: 1000,
    what: 'the test lab to be healthy again',
  })
}

/**
 * The lab for this test file: the shared one (HACTL_TEST_CONFIG), or one brought up here with the
 * test lab's parameters and removed by release().
 */
export async function useLab(): Promise<{configPath: string; release: () => Promise<void>}> {
  if (process.env.HACTL_TEST_CONFIG)
    return {configPath: process.env.HACTL_TEST_CONFIG, release: async () => {}}
  const args = [
    'lab',
    'up',
    '--name',
    TEST_LAB.name,
    '--subnet',
    TEST_LAB.subnet,
    '--asterisk',
    String(TEST_LAB.asterisk),
    '--kamailio',
    String(TEST_LAB.kamailio),
    '--etcd',
    String(TEST_LAB.etcd),
    '--spare',
    String(TEST_LAB.spare),
  ]
  const up = await hactl(args, {timeoutMs: 180_000})
  if (up.code !== 0) throw new Error(`hactl ${args.join(' ')} failed (${up.code}):\n${up.stderr}`)
  const configPath = up.stdout.trim().replace(/^export HACTL_CONFIG=/, '')
  process.env.HACTL_TEST_CONFIG = configPath
  return {
    configPath,
    release: async () => {
      delete process.env.HACTL_TEST_CONFIG
      await hactl(['lab', 'down', '--name', TEST_LAB.name])
    },
  }
}
