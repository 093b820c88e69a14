// Helpers of the bench runner (bench/bench.mjs): processes, timing, SSH to lab hosts, the Ansible
// inventory generated from a lab's hactl.yaml, and statistics.
import {spawn} from 'node:child_process'
import fs from 'node:fs'
import http from 'node:http'
import path from 'node:path'
import {performance} from 'node:perf_hooks'
import {parse as parseYaml, stringify as stringifyYaml} from 'yaml'

export const LAB_ROOT = '/var/lib/hactl-lab'
export const TIME_BIN = '/usr/bin/time'

/** The child being waited for (killed by pid on SIGINT/SIGTERM), and whether the run was aborted. */
export const current = {child: undefined, aborted: false}

export class AbortedError extends Error {}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/**
 * Run argv, wall-clock timed from spawn to exit, under /usr/bin/time for the peak RSS (the largest
 * single process of the tree, in KiB). Output goes to `logFile`. Never throws on a non-zero exit.
 */
export async function timed(argv, {env, cwd, logFile, rssFile}) {
  if (current.aborted) throw new AbortedError('aborted')
  const out = fs.openSync(logFile, 'w')
  fs.writeSync(out, `$ ${argv.join(' ')}\n`)
  const useTime = fs.existsSync(TIME_BIN)
  const full = useTime ? [TIME_BIN, '-f', '%M', '-o', rssFile, ...argv] : argv
  const t0 = performance.now()
  const child = spawn(full[0], full.slice(1), {stdio: ['ignore', out, out], env, cwd})
  current.child = child
  let code
  try {
    code = await new Promise((resolve, reject) => {
      child.once('error', reject)
      child.once('exit', (c, sig) => resolve(c ?? (sig ? 128 : 1)))
    })
  } finally {
    current.child = undefined
    fs.closeSync(out)
  }
  const ms = performance.now() - t0
  let rssKb
  if (useTime) {
    try {
      const lines = fs.readFileSync(rssFile, 'utf8').trim().split('\n')
      const n = Number(lines[lines.length - 1])
      if (Number.isFinite(n)) rssKb = n
    } catch {
      // no RSS
    }
  }
  if (current.aborted) throw new AbortedError('aborted')
  return {ms, code, rssKb}
}

/** Run argv untimed, collecting its output. */
export function run(argv, {env, cwd, input, timeoutMs = 600_000} = {}) {
  if (current.aborted) return Promise.reject(new AbortedError('aborted'))
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), {stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'], env, cwd})
    current.child = child
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.once('error', (e) => {
      clearTimeout(timer)
      reject(e)
    })
    child.once('close', (code, sig) => {
      clearTimeout(timer)
      if (current.child === child) current.child = undefined
      if (current.aborted) return reject(new AbortedError('aborted'))
      resolve({code: code ?? (sig ? 128 : 1), stdout, stderr})
    })
    if (child.stdin) {
      child.stdin.on('error', () => undefined) // a child that exits without reading its input
      child.stdin.end(input)
    }
  })
}

export async function runOk(argv, opts) {
  const r = await run(argv, opts)
  if (r.code !== 0) {
    throw new Error(`${argv.join(' ')} exited ${r.code}: ${(r.stderr || r.stdout).trim().split('\n').slice(-5).join(' | ')}`)
  }
  return r
}

export function httpGet(url, timeoutMs = 2000) {
  return new Promise((resolve) => {
    const req = http.get(url, {timeout: timeoutMs}, (res) => {
      let body = ''
      res.on('data', (d) => (body += d))
      res.on('end', () => resolve({status: res.statusCode ?? 0, body}))
      res.on('error', () => resolve({status: 0, body: ''}))
    })
    req.on('timeout', () => req.destroy(new Error('timeout')))
    req.on('error', () => resolve({status: 0, body: ''}))
  })
}

// --- Labs -----------------------------------------------------------------------------------

export function labState(name) {
  try {
    return JSON.parse(fs.readFileSync(path.join(LAB_ROOT, name, 'state.json'), 'utf8'))
  } catch {
    return undefined
  }
}

export function labExists(name) {
  return fs.existsSync(path.join(LAB_ROOT, name))
}

/** A lab that is up: its hactl.yaml (parsed), nodes by role, and the SSH material. */
export function loadLab(name) {
  const state = labState(name)
  if (!state || state.status !== 'up') throw new Error(`lab ${name} is not up`)
  const config = parseYaml(fs.readFileSync(state.configPath, 'utf8'))
  const nodes = Object.entries(config.nodes).map(([n, v]) => ({name: n, host: v.host, roles: v.roles ?? []}))
  return {
    name,
    state,
    config,
    configPath: state.configPath,
    nodes,
    byRole: (role) => nodes.filter((n) => n.roles.includes(role)),
    node: (n) => nodes.find((x) => x.name === n),
    key: config.ssh.identityFiles[0],
    knownHosts: config.ssh.knownHosts,
    user: config.ssh.user ?? 'root',
  }
}

/**
 * The Ansible inventory of a lab, from its hactl.yaml: groups per role (asterisk, kamailio, etcd),
 * the lab's key, user and known_hosts (host keys checked), and the values the playbooks use.
 */
export function ansibleInventory(lab) {
  const c = lab.config
  const group = (role) =>
    Object.fromEntries(lab.byRole(role).map((n) => [n.name, {ansible_host: n.host}]))
  const inv = {
    all: {
      vars: {
        ansible_user: lab.user,
        ansible_ssh_private_key_file: lab.key,
        ansible_ssh_common_args: `-o UserKnownHostsFile=${lab.knownHosts} -o StrictHostKeyChecking=yes`,
        asterisk_cli: c.asterisk?.cli ?? 'asterisk -rx',
        kamailio_cli: c.kamailio?.cli ?? 'kamcmd',
        dispatcher_set: c.kamailio?.setId ?? 1,
        etcd_service: c.etcd?.service ?? 'etcd2',
        etcd_data_dir: c.etcd?.dataDir ?? '/var/lib/etcd',
        etcd_wipe: (c.etcd?.wipe ?? ['member']).join(','),
        discovery_file: c.etcd?.discovery?.file ?? '/var/lib/coreos-install/user_data',
        discovery_service: c.etcd?.discovery?.service,
      },
      children: {
        asterisk: {hosts: group('asterisk')},
        kamailio: {hosts: group('kamailio')},
        etcd: {hosts: group('etcd')},
      },
    },
  }
  return `# Ansible inventory of lab ${lab.name}, generated by bench/bench.mjs from ${lab.configPath}\n${stringifyYaml(inv)}`
}

/** OpenSSH to a lab host, one fresh connection (no config file, no multiplexing), host key checked. */
export function sshArgv(lab, host, command) {
  return [
    'ssh',
    '-F',
    '/dev/null',
    '-o',
    'BatchMode=yes',
    '-o',
    'ControlMaster=no',
    '-o',
    'ControlPath=none',
    '-o',
    'ConnectTimeout=5',
    '-o',
    'LogLevel=ERROR',
    '-o',
    `UserKnownHostsFile=${lab.knownHosts}`,
    '-o',
    'StrictHostKeyChecking=yes',
    '-i',
    lab.key,
    `${lab.user}@${host}`,
    command,
  ]
}

export function ssh(lab, node, command, opts) {
  return run(sshArgv(lab, node.host, command), opts)
}

// --- Statistics -----------------------------------------------------------------------------

export function median(xs) {
  if (xs.length === 0) return null
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}

/** Median, min and max of the successful runs (ms), and of the peak RSS (KiB). */
export function stats(runs) {
  const ok = runs.filter((r) => r.ok)
  const ms = ok.map((r) => r.ms)
  const rss = ok.map((r) => r.rssKb).filter((x) => typeof x === 'number')
  const round = (x) => (x === null ? null : Math.round(x))
  return {
    runs: runs.length,
    ok: ok.length,
    failed: runs.length - ok.length,
    medianMs: round(median(ms)),
    minMs: ms.length ? round(Math.min(...ms)) : null,
    maxMs: ms.length ? round(Math.max(...ms)) : null,
    rssKbMedian: round(median(rss)),
    rssKbMax: rss.length ? Math.max(...rss) : null,
  }
}
