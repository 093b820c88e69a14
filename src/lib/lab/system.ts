import {spawn} from 'node:child_process'
import {existsSync, readdirSync, readFileSync, readlinkSync, statSync} from 'node:fs'
import net from 'node:net'
import {HactlError, UserError} from '../errors.js'

export interface RunResult {
  stdout: string
  stderr: string
  code: number | null
}

/** Run a program (no shell) and collect its output. Rejects only when it cannot be started. */
export function run(
  cmd: string,
  args: string[],
  opts: {input?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv} = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      env: opts.env ?? process.env,
    })
    let stdout = ''
    let stderr = ''
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d))
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d))
    const timer = opts.timeoutMs ? setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs) : undefined
    child.on('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({stdout, stderr, code})
    })
    if (child.stdin) {
      // A program that exits without reading its input must not crash us with EPIPE.
      child.stdin.on('error', () => {})
      child.stdin.end(opts.input)
    }
  })
}

/** Like run(), but a non-zero exit is an error naming the command and its stderr. */
export async function runOk(
  cmd: string,
  args: string[],
  opts: Parameters<typeof run>[2] = {},
): Promise<RunResult> {
  const r = await run(cmd, args, opts)
  if (r.code !== 0) {
    throw new HactlError(
      `${cmd} ${args.join(' ')} failed (exit ${r.code}): ${r.stderr.trim() || r.stdout.trim()}`,
    )
  }
  return r
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** Run fn over items, at most `limit` at a time, keeping the order of results. */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const out = new Array<R>(items.length)
  let next = 0
  const worker = async () => {
    while (next < items.length) {
      const i = next++
      out[i] = await fn(items[i]!, i)
    }
  }
  await Promise.all(Array.from({length: Math.min(limit, items.length)}, worker))
  return out
}

/** The programs the lab runs, and the Debian package of each. */
export const REQUIRED_PROGRAMS: ReadonlyArray<{program: string; paths: string[]; pkg: string}> = [
  {program: 'sshd', paths: ['/usr/sbin/sshd'], pkg: 'openssh-server'},
  {program: 'ssh-keygen', paths: ['/usr/bin/ssh-keygen'], pkg: 'openssh-client'},
  {program: 'etcd', paths: ['/usr/bin/etcd'], pkg: 'etcd-server'},
  {program: 'etcdctl', paths: ['/usr/bin/etcdctl'], pkg: 'etcd-client'},
  {program: 'kamailio', paths: ['/usr/sbin/kamailio'], pkg: 'kamailio'},
  {program: 'kamcmd', paths: ['/usr/sbin/kamcmd'], pkg: 'kamailio'},
  {program: 'ip', paths: ['/usr/sbin/ip', '/usr/bin/ip', '/sbin/ip', '/bin/ip'], pkg: 'iproute2'},
  {program: 'unshare', paths: ['/usr/bin/unshare'], pkg: 'util-linux'},
  {program: 'nsenter', paths: ['/usr/bin/nsenter'], pkg: 'util-linux'},
  {program: 'mount', paths: ['/usr/bin/mount', '/bin/mount'], pkg: 'mount'},
]

export function missingPackages(exists: (p: string) => boolean = existsSync): string[] {
  const missing = new Set<string>()
  for (const r of REQUIRED_PROGRAMS) if (!r.paths.some((p) => exists(p))) missing.add(r.pkg)
  return [...missing]
}

/** The lab makes namespaces, links and mounts: it needs root, and the Debian packages it runs. */
export function assertLabPrerequisites(command: string): void {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    throw new UserError(`hactl ${command} needs root: it creates network namespaces, a bridge and mounts`, [
      `run it as root: sudo hactl ${command}`,
    ])
  }
  const missing = missingPackages()
  if (missing.length > 0) {
    throw new UserError(
      `the lab needs these Debian packages, which are not installed: ${missing.join(', ')}`,
      [`apt-get install -y ${missing.join(' ')}`],
    )
  }
}

export async function listNetns(): Promise<string[]> {
  const r = await run('ip', ['netns', 'list'])
  return r.stdout
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter(Boolean)
}

export async function linkExists(name: string): Promise<boolean> {
  const r = await run('ip', ['link', 'show', 'dev', name])
  return r.code === 0
}

export async function listLinks(): Promise<string[]> {
  const r = await run('ip', ['-o', 'link', 'show'])
  return r.stdout
    .split('\n')
    .map((l) => /^\d+:\s+([^:@\s]+)/.exec(l)?.[1] ?? '')
    .filter(Boolean)
}

/**
 * Every process in any of these named network namespaces, in one pass over /proc (`ip netns pids`
 * does that pass once per namespace, which takes seconds for a big lab).
 */
export function pidsInNetns(namespaces: string[]): number[] {
  const inodes = new Set<string>()
  for (const ns of namespaces) {
    try {
      inodes.add(`net:[${statSync(`/run/netns/${ns}`).ino}]`)
    } catch {
      // not there
    }
  }
  if (inodes.size === 0) return []
  const pids: number[] = []
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue
    const pid = Number(e)
    if (pid === process.pid) continue
    const ns = netnsOf(pid)
    if (ns && inodes.has(ns)) pids.push(pid)
  }
  return pids
}

export async function netnsPids(ns: string): Promise<number[]> {
  const r = await run('ip', ['netns', 'pids', ns])
  return r.stdout
    .split('\n')
    .map((l) => Number(l.trim()))
    .filter((n) => Number.isInteger(n) && n > 0)
}

/** Alive and not a zombie. */
export function pidAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3)
    return state !== 'Z' && state !== 'X'
  } catch {
    return false
  }
}

/**
 * Processes that belong to a lab although they may have lost their namespace name (after a crash or a
 * manual `ip netns del`): their command line or environment mentions the lab's directory.
 */
export function pidsMentioning(dir: string): number[] {
  const needle = `${dir}/`
  const pids: number[] = []
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue
    const pid = Number(e)
    if (pid === process.pid) continue
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8')
      if (cmdline.includes(needle)) {
        pids.push(pid)
        continue
      }
      const environ = readFileSync(`/proc/${pid}/environ`, 'utf8')
      if (environ.includes(`HACTL_LAB_HOST_DIR=${needle}`)) pids.push(pid)
    } catch {
      // gone, or a kernel thread
    }
  }
  return pids
}

/** The network namespace of a process, as `net:[inode]`. */
export function netnsOf(pid: number): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/ns/net`)
  } catch {
    return undefined
  }
}

/** Mount points (root namespace) at or under a directory. */
export function mountsUnder(dir: string): string[] {
  const text = readFileSync('/proc/self/mountinfo', 'utf8')
  const out: string[] = []
  for (const line of text.split('\n')) {
    const mp = line.split(' ')[4]
    if (!mp) continue
    const decoded = mp.replace(/\\(\d{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)))
    if (decoded === dir || decoded.startsWith(`${dir}/`)) out.push(decoded)
  }
  return out
}

/** Connect to ip:port and read the first bytes (an SSH banner). Resolves '' on failure. */
export function readBanner(ip: string, port: number, timeoutMs = 1000): Promise<string> {
  return new Promise((resolve) => {
    const s = net.createConnection({host: ip, port})
    let data = ''
    const done = (v: string) => {
      clearTimeout(t)
      s.destroy()
      resolve(v)
    }
    const t = setTimeout(() => done(''), timeoutMs)
    s.setEncoding('utf8')
    s.on('data', (d: string) => {
      data += d
      if (data.includes('\n')) done(data)
    })
    s.on('error', () => done(''))
    s.on('close', () => done(data))
  })
}

/** One HTTP GET to a lab address; resolves {status, body}, or status 0 when unreachable. */
export async function httpGet(url: string, timeoutMs = 2000): Promise<{status: number; body: string}> {
  const http = await import('node:http')
  return new Promise((resolve) => {
    const req = http.get(url, {timeout: timeoutMs}, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => (body += d))
      res.on('end', () => resolve({status: res.statusCode ?? 0, body}))
    })
    req.on('timeout', () => req.destroy())
    req.on('error', () => resolve({status: 0, body: ''}))
  })
}
