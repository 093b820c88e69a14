#!/usr/bin/env node
// The "init" of one lab host: `node supervisor.mjs HOSTDIR`, started by lab/host-init.sh inside the
// host's network, mount and UTS namespaces.
//
// It boots the host (fresh /run, a new boot_id, sshd, the enabled services), runs the services as
// its own children (so it can stop them by pid), answers `systemctl` (lab/systemctl.mjs) on
// HOSTDIR/supervisor.sock, reboots the host when asked (`reboot`, `shutdown -r now`, `systemctl
// reboot`), and injects the lab's faults (sshd-down, sshd-hang, etcd-down, hostkey-change,
// asterisk-down). Everything it knows about the host is in HOSTDIR/host.json, written by `hactl lab up`.
import {spawn, execFileSync} from 'node:child_process'
import {randomUUID} from 'node:crypto'
import {
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import path from 'node:path'
import {log, readCloudConfig, readJson, serveJson, sleep, unitBase, writeJson} from './lib.mjs'

const hostDir = process.argv[2]
if (!hostDir) {
  process.stderr.write('usage: supervisor.mjs HOSTDIR\n')
  process.exit(2)
}
const host = readJson(path.join(hostDir, 'host.json'))
const labScripts = host.labScripts
const enabledFile = path.join(hostDir, 'enabled.json')
const faultsFile = path.join(hostDir, 'faults.json')
const sshDir = path.join(hostDir, 'ssh')
const BOOT_ID_PATH = '/proc/sys/kernel/random/boot_id'
/** Inside the host, /run is HOSTDIR/run and /var/log is HOSTDIR/log (bind mounts made by host-init.sh). */
const RUN = '/run'
const LOG = '/var/log'

process.on('uncaughtException', (err) => log(`uncaught: ${err.stack ?? err}`))
process.on('unhandledRejection', (err) => log(`unhandled: ${err?.stack ?? err}`))

// ---------------------------------------------------------------------------------------------
// State

/** 'booting' | 'up' | 'stopping' (on the way down for a reboot or power cycle) */
let hostState = 'booting'
let bootId = ''
let bootCount = 0
let bootedAt = 0
let scheduledPower // {action, at, timer}

const sshd = {child: undefined, state: 'stopped'} // state: running | stopped | hung

/** name → runtime state of a unit */
const units = new Map()
for (const [name, def] of Object.entries(host.units ?? {})) {
  units.set(name, {
    name,
    def,
    state: 'inactive',
    child: undefined,
    since: Date.now(),
    result: 'success',
    chain: Promise.resolve(),
  })
}

function resolveUnit(requested) {
  const base = unitBase(requested)
  if (units.has(base)) return units.get(base)
  for (const u of units.values()) if ((u.def.aliases ?? []).includes(base)) return u
  return undefined
}

function enabledSet() {
  return new Set(readJson(enabledFile, []))
}

function setEnabled(name, on) {
  const set = enabledSet()
  const was = set.has(name)
  if (on) set.add(name)
  else set.delete(name)
  writeJson(enabledFile, [...set].sort())
  return was !== on
}

function faults() {
  return readJson(faultsFile, [])
}

function setFaults(list) {
  writeJson(faultsFile, [...new Set(list)])
}

// ---------------------------------------------------------------------------------------------
// Services

function baseEnv() {
  return {
    PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    HOME: '/root',
    LANG: 'C.UTF-8',
    HACTL_LAB_HOST_DIR: hostDir,
  }
}

/** coreos-cloudinit's rule: every key of coreos.etcd2 becomes ETCD_<KEY> in the unit's environment. */
async function etcdEnvFromCloudConfig() {
  const cfg = await readCloudConfig('/var/lib/coreos-install/user_data')
  const etcd2 = cfg?.coreos?.etcd2 ?? {}
  const env = {
    ETCD_NAME: host.name,
    ETCD_DATA_DIR: '/var/lib/etcd',
    ETCD_ENABLE_V2: 'true',
    ETCD_HEARTBEAT_INTERVAL: '100',
    ETCD_ELECTION_TIMEOUT: '1000',
  }
  for (const [k, v] of Object.entries(etcd2)) {
    if (v === null || v === undefined) continue
    env[`ETCD_${k.toUpperCase().replace(/-/g, '_')}`] = String(v)
  }
  // A member that has data ignores discovery; do not even pass it (as the lab's contract says).
  if (existsSync(path.join(env.ETCD_DATA_DIR, 'member'))) delete env.ETCD_DISCOVERY
  return env
}

function localClientUrl(env) {
  const first = (env.ETCD_LISTEN_CLIENT_URLS ?? 'http://127.0.0.1:2379').split(',')[0].trim()
  return first.replace('0.0.0.0', '127.0.0.1')
}

/** What to run for a unit, and how to tell it is ready. */
async function commandFor(unit) {
  const kind = unit.def.kind
  if (kind === 'coreos-etcd') {
    const env = await etcdEnvFromCloudConfig()
    mkdirSync(env.ETCD_DATA_DIR, {recursive: true, mode: 0o700})
    const url = localClientUrl(env)
    return {argv: ['etcd'], env, ready: () => etcdHealthy(url)}
  }
  if (kind === 'etcd-backend') {
    const ip = host.ip
    const argv = [
      'etcd',
      '--name',
      host.name,
      '--data-dir',
      '/var/lib/etcd',
      '--enable-v2',
      '--listen-client-urls',
      `http://${ip}:2379,http://127.0.0.1:2379`,
      '--advertise-client-urls',
      `http://${ip}:2379`,
      '--listen-peer-urls',
      'http://127.0.0.1:2380',
      '--initial-advertise-peer-urls',
      'http://127.0.0.1:2380',
      '--initial-cluster',
      `${host.name}=http://127.0.0.1:2380`,
      '--heartbeat-interval',
      '100',
      '--election-timeout',
      '1000',
    ]
    return {argv, env: {}, ready: () => etcdHealthy('http://127.0.0.1:2379')}
  }
  if (kind === 'discovery') {
    return {
      argv: [host.node, path.join(labScripts, 'discovery.mjs'), hostDir],
      env: {},
      ready: () => tcpOpen(host.ip, 8087),
    }
  }
  if (kind === 'asterisk') {
    mkdirSync(path.join(RUN, 'asterisk'), {recursive: true})
    mkdirSync(path.join(LOG, 'asterisk'), {recursive: true})
    return {
      argv: [host.node, path.join(labScripts, 'asterisk.mjs'), '-f'],
      env: {},
      ready: () => unixOpen('/var/run/asterisk/asterisk.ctl'),
    }
  }
  if (kind === 'kamailio') {
    mkdirSync(path.join(RUN, 'kamailio'), {recursive: true})
    return {
      argv: [
        'kamailio',
        '-DD',
        '-E',
        '-f',
        '/etc/kamailio/kamailio.cfg',
        '-m',
        '32',
        '-M',
        '4',
        '-Y',
        '/run/kamailio',
      ],
      env: {},
      ready: () => unixOpen('/run/kamailio/kamailio_ctl'),
    }
  }
  throw new Error(`unit ${unit.name}: unknown kind ${kind}`)
}

function etcdHealthy(url) {
  return new Promise((resolve) => {
    const req = http.get(`${url}/health`, {timeout: 1000}, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d) => (body += d))
      res.on('end', () => resolve(res.statusCode === 200 && /"health"\s*:\s*"true"/.test(body)))
    })
    req.on('timeout', () => req.destroy())
    req.on('error', () => resolve(false))
  })
}

function tcpOpen(ip, port, timeoutMs = 500) {
  return new Promise((resolve) => {
    const s = net.createConnection({host: ip, port})
    const t = setTimeout(() => {
      s.destroy()
      resolve(false)
    }, timeoutMs)
    s.on('connect', () => {
      clearTimeout(t)
      s.destroy()
      resolve(true)
    })
    s.on('error', () => {
      clearTimeout(t)
      resolve(false)
    })
  })
}

function unixOpen(p) {
  return new Promise((resolve) => {
    const s = net.createConnection(p)
    s.on('connect', () => {
      s.destroy()
      resolve(true)
    })
    s.on('error', () => resolve(false))
  })
}

/** Run jobs of one unit one after the other, as systemd's job queue does. */
function job(unit, fn) {
  const p = unit.chain.then(fn, fn)
  unit.chain = p.catch(() => {})
  return p
}

function spawnLogged(argv, env, logName) {
  mkdirSync(LOG, {recursive: true})
  const fd = openSync(path.join(LOG, `${logName}.log`), 'a')
  try {
    return spawn(argv[0], argv.slice(1), {
      cwd: '/',
      env: {...baseEnv(), ...env},
      stdio: ['ignore', fd, fd],
      detached: true, // own process group: a stop reaches the workers too (kamailio forks)
    })
  } finally {
    closeSync(fd)
  }
}

/**
 * Start a unit. Resolves to {ok, error?}; with wait=false it does not wait for readiness. Only the
 * spawn is a job of the unit's queue: a stop (or a reboot) never waits for a slow activation.
 */
async function startUnit(unit, {wait = true} = {}) {
  const r = await job(unit, async () => {
    if (hostState === 'stopping') return {ok: false, error: 'the host is shutting down'}
    clearTimeout(unit.restartTimer)
    if (unit.state === 'active') return {ok: true}
    if (unit.state === 'activating' && unit.child) return {ok: true, readiness: unit.readiness}
    let cmd
    try {
      cmd = await commandFor(unit)
    } catch (error) {
      unit.state = 'failed'
      unit.result = 'resources'
      unit.since = Date.now()
      log(`${unit.name}: cannot start: ${error.message}`)
      return {ok: false, error: 'resources'}
    }
    const child = spawnLogged(cmd.argv, cmd.env, unit.name)
    unit.child = child
    unit.stopping = false
    unit.state = 'activating'
    unit.since = Date.now()
    unit.result = 'success'
    log(`${unit.name}: started pid ${child.pid}: ${cmd.argv.join(' ')}`)
    let exited = false
    child.on('error', (err) => log(`${unit.name}: spawn error: ${err.message}`))
    child.on('exit', (code, signal) => {
      exited = true
      onUnitExit(unit, child, code, signal)
    })
    const timeoutMs = unit.def.startTimeoutMs ?? 30_000
    unit.readiness = (async () => {
      const deadline = Date.now() + timeoutMs
      while (!exited && unit.child === child) {
        if (await cmd.ready()) {
          if (unit.child === child && unit.state === 'activating') {
            unit.state = 'active'
            unit.since = Date.now()
          }
          return {ok: true}
        }
        if (Date.now() > deadline) {
          log(`${unit.name}: not ready after ${timeoutMs} ms; stopping it`)
          unit.result = 'timeout'
          killGroup(child.pid, 'SIGKILL')
          return {ok: false, error: 'timeout'}
        }
        await sleep(100)
      }
      if (unit.stopping) return {ok: false, error: 'canceled'}
      return unit.state === 'active'
        ? {ok: true}
        : {ok: false, error: unit.result === 'success' ? 'exit-code' : unit.result}
    })()
    return {ok: true, readiness: unit.readiness}
  })
  if (!r.readiness) return r
  return wait ? r.readiness : {ok: true}
}

function onUnitExit(unit, child, code, signal) {
  log(`${unit.name}: pid ${child.pid} exited (${signal ?? code})`)
  if (unit.child !== child) return
  unit.child = undefined
  unit.since = Date.now()
  if (unit.stopping) {
    unit.state = 'inactive'
    return
  }
  if (code === 0) {
    unit.state = 'inactive'
    return
  }
  unit.state = 'failed'
  if (unit.result === 'success') unit.result = signal ? 'signal' : 'exit-code'
  unit.exitStatus = signal ?? code
  if (unit.def.restart === 'on-failure' && hostState === 'up') {
    const ms = (unit.def.restartSec ?? 5) * 1000
    log(`${unit.name}: restarting in ${ms} ms`)
    unit.restartTimer = setTimeout(() => {
      if (unit.state === 'failed' && hostState === 'up') startUnit(unit, {wait: false})
    }, ms)
  }
}

function killGroup(pid, sig) {
  try {
    process.kill(-pid, sig)
  } catch {
    try {
      process.kill(pid, sig)
    } catch {
      // already gone
    }
  }
}

async function waitExit(child, ms) {
  if (child.exitCode !== null || child.signalCode !== null) return true
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms)
    child.once('exit', () => {
      clearTimeout(t)
      resolve(true)
    })
  })
}

function stopUnit(unit, {timeoutMs = host.stopTimeoutMs ?? 15_000} = {}) {
  return job(unit, async () => {
    clearTimeout(unit.restartTimer)
    const child = unit.child
    if (!child) {
      if (unit.state !== 'failed') unit.state = 'inactive'
      return {ok: true}
    }
    unit.stopping = true
    unit.state = 'deactivating'
    killGroup(child.pid, 'SIGTERM')
    killGroup(child.pid, 'SIGCONT')
    if (!(await waitExit(child, timeoutMs))) {
      log(`${unit.name}: did not stop in ${timeoutMs} ms; SIGKILL`)
      killGroup(child.pid, 'SIGKILL')
      await waitExit(child, 5000)
    }
    unit.state = 'inactive'
    unit.since = Date.now()
    return {ok: true}
  })
}

// ---------------------------------------------------------------------------------------------
// sshd

async function startSshd() {
  if (sshd.child) return
  mkdirSync('/run/sshd', {recursive: true, mode: 0o755})
  const child = spawnLogged(
    ['/usr/sbin/sshd', '-D', '-e', '-f', path.join(sshDir, 'sshd_config')],
    {},
    'sshd',
  )
  sshd.child = child
  sshd.state = 'running'
  child.on('exit', (code, signal) => {
    log(`sshd: pid ${child.pid} exited (${signal ?? code})`)
    if (sshd.child === child) {
      sshd.child = undefined
      sshd.state = 'stopped'
    }
  })
  for (let i = 0; i < 100 && sshd.child === child; i++) {
    if (await tcpOpen(host.ip, 22)) return
    await sleep(50)
  }
}

async function stopSshd() {
  const child = sshd.child
  if (!child) return
  // Only the listener: sessions already open survive, as with `systemctl stop ssh`.
  try {
    process.kill(child.pid, 'SIGTERM')
    process.kill(child.pid, 'SIGCONT')
  } catch {
    // gone
  }
  if (!(await waitExit(child, 3000))) {
    try {
      process.kill(child.pid, 'SIGKILL')
    } catch {
      // gone
    }
    await waitExit(child, 3000)
  }
  sshd.child = undefined
  sshd.state = 'stopped'
}

function hangSshd(on) {
  if (!sshd.child) return false
  process.kill(sshd.child.pid, on ? 'SIGSTOP' : 'SIGCONT')
  sshd.state = on ? 'hung' : 'running'
  return true
}

// ---------------------------------------------------------------------------------------------
// Boot and power

/** Every process in this host's network namespace but this one: what a power cut would end. */
function hostPids() {
  const mine = readlinkSync('/proc/self/ns/net')
  const pids = []
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue
    const pid = Number(e)
    if (pid === process.pid) continue
    try {
      if (readlinkSync(`/proc/${pid}/ns/net`) === mine) pids.push(pid)
    } catch {
      // exited meanwhile, or a kernel thread
    }
  }
  return pids
}

/** A boot starts with an empty /run, and an empty /tmp (Debian 12's tmpfiles.d does `D /tmp`). */
function clearRun() {
  // hactl's checkout is bound back over the host's private /tmp or /root when it lies there
  // (host-init.sh): never descend into it.
  const repo = path.dirname(labScripts)
  for (const dir of [RUN, '/tmp'])
    for (const e of readdirSync(dir)) {
      const p = path.join(dir, e)
      if (repo === p || repo.startsWith(`${p}/`)) continue
      rmSync(p, {recursive: true, force: true})
    }
  for (const d of ['sshd', 'asterisk', 'kamailio', 'lock', 'systemd/system'])
    mkdirSync(path.join(RUN, d), {recursive: true})
}

/** Bind a fresh random file over /proc/sys/kernel/random/boot_id, as a kernel does at each boot. */
function newBootId() {
  const dir = path.join(hostDir, 'boot')
  mkdirSync(dir, {recursive: true})
  for (let i = 0; i < 10; i++) {
    try {
      execFileSync('umount', [BOOT_ID_PATH], {stdio: 'ignore'})
    } catch {
      break
    }
  }
  for (const e of readdirSync(dir)) rmSync(path.join(dir, e), {force: true})
  const id = randomUUID()
  const file = path.join(dir, `boot_id.${bootCount}`)
  writeFileSync(file, `${id}\n`)
  execFileSync('mount', ['--bind', file, BOOT_ID_PATH])
  bootId = id
}

async function boot() {
  hostState = 'booting'
  bootCount += 1
  clearRun()
  newBootId()
  bootedAt = Date.now()
  writeJson(path.join(hostDir, 'boot.json'), {bootId, bootCount, bootedAt: new Date(bootedAt).toISOString()})
  // Process faults do not survive a reboot; a changed host key (a file) does.
  setFaults(faults().filter((f) => f === 'hostkey-change'))
  await startSshd()
  hostState = 'up'
  const enabled = enabledSet()
  // Started without waiting for readiness: etcd members of a fresh cluster wait for each other.
  await Promise.all(
    [...units.keys()].filter((n) => enabled.has(n)).map((n) => startUnit(units.get(n), {wait: false})),
  )
  log(`boot ${bootCount}: boot_id ${bootId}`)
}

async function powerCycle(action) {
  if (hostState === 'stopping') return
  hostState = 'stopping'
  clearTimeout(scheduledPower?.timer)
  scheduledPower = undefined
  log(`${action}: stopping everything`)
  const stopMs = host.rebootStopTimeoutMs ?? 5000
  await Promise.all([...units.values()].map((u) => stopUnit(u, {timeoutMs: stopMs})))
  // sshd and every session on it, plus anything else running on the host.
  for (const sig of ['SIGTERM', 'SIGKILL']) {
    const pids = hostPids()
    if (pids.length === 0) break
    for (const pid of pids) {
      try {
        process.kill(pid, sig)
        process.kill(pid, 'SIGCONT')
      } catch {
        // gone
      }
    }
    for (let i = 0; i < 20 && hostPids().length > 0; i++) await sleep(50)
  }
  sshd.child = undefined
  sshd.state = 'stopped'
  const delay = readJson(path.join(hostDir, 'host.json'), host).rebootDelayMs ?? 1000
  await sleep(delay)
  await boot()
}

function schedulePower(action, delayMs) {
  clearTimeout(scheduledPower?.timer)
  const at = Date.now() + delayMs
  scheduledPower = {action, at, timer: setTimeout(() => powerCycle(action), delayMs)}
  return at
}

// ---------------------------------------------------------------------------------------------
// Faults

async function injectFault(fault) {
  const has = (name) => Boolean(resolveUnit(name))
  switch (fault) {
    case 'sshd-down':
      await stopSshd()
      break
    case 'sshd-hang':
      if (!sshd.child) await startSshd()
      hangSshd(true)
      break
    case 'etcd-down':
      if (!has('etcd2')) return {ok: false, error: `${host.name} has no etcd2 service`}
      await stopUnit(resolveUnit('etcd2'))
      break
    case 'asterisk-down':
      if (!has('asterisk')) return {ok: false, error: `${host.name} has no asterisk service`}
      await stopUnit(resolveUnit('asterisk'))
      break
    case 'hostkey-change': {
      const orig = path.join(sshDir, 'orig')
      const key = path.join(sshDir, 'ssh_host_ed25519_key')
      if (!existsSync(path.join(orig, 'ssh_host_ed25519_key'))) {
        mkdirSync(orig, {recursive: true})
        copyFileSync(key, path.join(orig, 'ssh_host_ed25519_key'))
        copyFileSync(`${key}.pub`, path.join(orig, 'ssh_host_ed25519_key.pub'))
      }
      rmSync(key, {force: true})
      rmSync(`${key}.pub`, {force: true})
      execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `root@${host.name}`, '-f', key])
      await restartSshd()
      break
    }
    default:
      return {ok: false, error: `unknown fault ${fault}`}
  }
  setFaults([...faults(), fault])
  return {ok: true, faults: faults()}
}

async function restartSshd() {
  const hung = sshd.state === 'hung'
  await stopSshd()
  await startSshd()
  if (hung) hangSshd(true)
}

async function heal() {
  const list = faults()
  const healed = []
  if (sshd.state === 'hung') {
    hangSshd(false)
  }
  if (list.includes('hostkey-change')) {
    const orig = path.join(sshDir, 'orig')
    for (const f of ['ssh_host_ed25519_key', 'ssh_host_ed25519_key.pub']) {
      if (existsSync(path.join(orig, f))) renameSync(path.join(orig, f), path.join(sshDir, f))
    }
    rmSync(orig, {recursive: true, force: true})
    await stopSshd()
  }
  if (!sshd.child) await startSshd()
  if (list.includes('etcd-down') && resolveUnit('etcd2')) await startUnit(resolveUnit('etcd2'))
  if (list.includes('asterisk-down') && resolveUnit('asterisk')) await startUnit(resolveUnit('asterisk'))
  healed.push(...list)
  setFaults([])
  return {ok: true, healed}
}

// ---------------------------------------------------------------------------------------------
// systemctl

const UNIT_DIR = '/lib/systemd/system'
const WANTS_DIR = '/etc/systemd/system/multi-user.target.wants'

function fmtTime(ms) {
  const d = new Date(ms)
  const day = d.toLocaleDateString('en-US', {weekday: 'short', timeZone: 'UTC'})
  const iso = d.toISOString()
  return `${day} ${iso.slice(0, 10)} ${iso.slice(11, 19)} UTC`
}

function ago(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000))
  if (s < 60) return `${s}s ago`
  const m = Math.floor(s / 60)
  if (m < 60) return `${m}min ${s % 60}s ago`
  const h = Math.floor(m / 60)
  return `${h}h ${m % 60}min ago`
}

function subState(u) {
  return {
    active: 'running',
    activating: 'start',
    deactivating: 'stop-sigterm',
    failed: 'failed',
    inactive: 'dead',
  }[u.state]
}

function statusText(u) {
  const enabled = enabledSet().has(u.name) ? 'enabled' : 'disabled'
  const lines = [
    `${u.state === 'active' ? '●' : u.state === 'failed' ? '×' : '○'} ${u.name}.service - ${u.def.description ?? u.name}`,
  ]
  lines.push(`     Loaded: loaded (${UNIT_DIR}/${u.name}.service; ${enabled}; preset: enabled)`)
  let active
  if (u.state === 'active') active = `active (running) since ${fmtTime(u.since)}; ${ago(u.since)}`
  else if (u.state === 'activating') active = `activating (start) since ${fmtTime(u.since)}; ${ago(u.since)}`
  else if (u.state === 'deactivating')
    active = `deactivating (stop-sigterm) since ${fmtTime(u.since)}; ${ago(u.since)}`
  else if (u.state === 'failed')
    active = `failed (Result: ${u.result}) since ${fmtTime(u.since)}; ${ago(u.since)}`
  else active = 'inactive (dead)'
  lines.push(`     Active: ${active}`)
  if (u.child)
    lines.push(
      `   Main PID: ${u.child.pid} (${path.basename(u.def.kind === 'asterisk' ? 'asterisk' : u.def.kind === 'kamailio' ? 'kamailio' : 'etcd')})`,
    )
  const tail = logTail(path.join(LOG, `${u.name}.log`), 10)
  if (tail.length > 0) lines.push('', ...tail)
  return `${lines.join('\n')}\n`
}

function logTail(file, n) {
  try {
    const text = readFileSync(file, 'utf8')
    return text.replace(/\n+$/, '').split('\n').slice(-n)
  } catch {
    return []
  }
}

function showProps(u, requested) {
  const props = {
    Id: `${u.name}.service`,
    Names: [`${u.name}.service`, ...(u.def.aliases ?? []).map((a) => `${a}.service`)].join(' '),
    Description: u.def.description ?? u.name,
    LoadState: 'loaded',
    ActiveState: u.state,
    SubState: subState(u),
    UnitFileState: enabledSet().has(u.name) ? 'enabled' : 'disabled',
    MainPID: String(u.child?.pid ?? 0),
    Result: u.result,
    FragmentPath: `${UNIT_DIR}/${u.name}.service`,
  }
  const keys = requested.length > 0 ? requested : Object.keys(props)
  return keys.map((k) => `${k}=${props[k] ?? ''}`).join('\n')
}

function notFoundProps(name, requested) {
  const props = {
    Id: `${name}.service`,
    Names: `${name}.service`,
    LoadState: 'not-found',
    ActiveState: 'inactive',
    SubState: 'dead',
    UnitFileState: '',
    MainPID: '0',
  }
  const keys = requested.length > 0 ? requested : Object.keys(props)
  return keys.map((k) => `${k}=${props[k] ?? ''}`).join('\n')
}

/** Implements systemctl's verbs with systemd's messages and exit codes (systemd 252, Debian 12). */
async function systemctl({
  verb,
  units: names = [],
  quiet = false,
  noBlock = false,
  now = false,
  properties = [],
}) {
  let stdout = ''
  let stderr = ''
  let code = 0
  const svc = (n) => `${unitBase(n)}.service`
  const out = (s) => {
    if (!quiet) stdout += s
  }
  const needUnits = [
    'start',
    'stop',
    'restart',
    'try-restart',
    'reload-or-restart',
    'enable',
    'disable',
    'is-enabled',
  ]
  if (needUnits.includes(verb) && names.length === 0) {
    return {code: 1, stdout, stderr: `Too few arguments.\n`}
  }
  switch (verb) {
    case 'start':
    case 'restart':
    case 'try-restart':
    case 'reload-or-restart': {
      const results = await Promise.all(
        names.map(async (n) => {
          const u = resolveUnit(n)
          if (!u)
            return {
              n,
              err: `Failed to ${verb === 'start' ? 'start' : 'restart'} ${svc(n)}: Unit ${svc(n)} not found.\n`,
              code: 5,
            }
          if (verb === 'try-restart' && u.state !== 'active') return {n}
          if (verb !== 'start') await stopUnit(u)
          const r = await startUnit(u, {wait: !noBlock})
          if (!r.ok) {
            if (r.error === 'canceled') return {n, code: 1, err: `Job for ${u.name}.service canceled.\n`}
            const why =
              r.error === 'timeout' ? 'a timeout was exceeded' : 'the control process exited with error code'
            return {
              n,
              code: 1,
              err: `Job for ${u.name}.service failed because ${why}.\nSee "systemctl status ${u.name}.service" and "journalctl -xeu ${u.name}.service" for details.\n`,
            }
          }
          return {n}
        }),
      )
      for (const r of results) {
        if (r.err) stderr += r.err
        if (r.code && code === 0) code = r.code
      }
      break
    }
    case 'stop': {
      const results = await Promise.all(
        names.map(async (n) => {
          const u = resolveUnit(n)
          if (!u) return {err: `Failed to stop ${svc(n)}: Unit ${svc(n)} not loaded.\n`, code: 5}
          if (noBlock) stopUnit(u)
          else await stopUnit(u)
          return {}
        }),
      )
      for (const r of results) {
        if (r.err) stderr += r.err
        if (r.code && code === 0) code = r.code
      }
      break
    }
    case 'is-active':
    case 'is-failed': {
      let any = false
      for (const n of names) {
        const u = resolveUnit(n)
        const state = u ? u.state : 'inactive'
        out(`${state}\n`)
        if (verb === 'is-active' ? state === 'active' : state === 'failed') any = true
      }
      // systemd: is-active exits 0 if at least one unit is active (3 otherwise).
      code = any ? 0 : verb === 'is-active' ? 3 : 1
      break
    }
    case 'is-enabled': {
      let any = false
      for (const n of names) {
        const u = resolveUnit(n)
        if (!u) {
          stderr += `Failed to get unit file state for ${svc(n)}: No such file or directory\n`
          code = 1
          continue
        }
        const on = enabledSet().has(u.name)
        out(`${on ? 'enabled' : 'disabled'}\n`)
        if (on) any = true
      }
      if (code === 0) code = any ? 0 : 1
      break
    }
    case 'enable':
    case 'disable': {
      const on = verb === 'enable'
      for (const n of names) {
        const u = resolveUnit(n)
        if (!u) {
          stderr += `Failed to ${verb} unit: Unit file ${svc(n)} does not exist.\n`
          return {code: 1, stdout, stderr}
        }
        if (setEnabled(u.name, on)) {
          stderr += on
            ? `Created symlink ${WANTS_DIR}/${u.name}.service → ${UNIT_DIR}/${u.name}.service.\n`
            : `Removed "${WANTS_DIR}/${u.name}.service".\n`
        }
        if (now) {
          const r = on ? await startUnit(u, {wait: !noBlock}) : await stopUnit(u)
          if (!r.ok) {
            stderr += `Job for ${u.name}.service failed because the control process exited with error code.\n`
            code = 1
          }
        }
      }
      if (quiet) stderr = ''
      break
    }
    case 'status': {
      if (names.length === 0) {
        out(
          `● ${host.name}\n    State: ${hostState === 'up' ? 'running' : hostState}\n    Since: ${fmtTime(bootedAt)}; ${ago(bootedAt)}\n`,
        )
        break
      }
      let worst = 0
      for (const n of names) {
        const u = resolveUnit(n)
        if (!u) {
          stderr += `Unit ${svc(n)} could not be found.\n`
          worst = Math.max(worst, 4)
          continue
        }
        out(statusText(u))
        if (u.state !== 'active') worst = Math.max(worst, 3)
      }
      code = worst
      break
    }
    case 'show': {
      const blocks = names.map((n) => {
        const u = resolveUnit(n)
        return u ? showProps(u, properties) : notFoundProps(unitBase(n), properties)
      })
      out(`${blocks.join('\n\n')}\n`)
      break
    }
    case 'list-units':
    case 'list-unit-files': {
      const enabled = enabledSet()
      const rows = [...units.values()].map((u) =>
        verb === 'list-units'
          ? `  ${`${u.name}.service`.padEnd(24)} loaded ${u.state.padEnd(8)} ${subState(u).padEnd(7)} ${u.def.description ?? u.name}`
          : `${`${u.name}.service`.padEnd(24)} ${enabled.has(u.name) ? 'enabled ' : 'disabled'} enabled`,
      )
      out(`${rows.join('\n')}\n`)
      break
    }
    case 'daemon-reload':
    case 'reset-failed':
      for (const u of units.values())
        if (verb === 'reset-failed' && u.state === 'failed') u.state = 'inactive'
      break
    default:
      return {code: 1, stdout: '', stderr: `Unknown command verb ${verb}.\n`}
  }
  return {code, stdout, stderr}
}

// ---------------------------------------------------------------------------------------------
// Control socket

function info() {
  const enabled = enabledSet()
  return {
    ok: true,
    name: host.name,
    kind: host.kind,
    ip: host.ip,
    state: hostState,
    supervisorPid: process.pid,
    bootId,
    bootCount,
    bootedAt: new Date(bootedAt).toISOString(),
    sshd: {state: sshd.state, pid: sshd.child?.pid},
    units: Object.fromEntries(
      [...units.values()].map((u) => [
        u.name,
        {
          state: u.state,
          enabled: enabled.has(u.name),
          pid: u.child?.pid,
          since: new Date(u.since).toISOString(),
        },
      ]),
    ),
    faults: faults(),
    scheduledPower: scheduledPower
      ? {action: scheduledPower.action, at: new Date(scheduledPower.at).toISOString()}
      : undefined,
  }
}

async function handle(msg) {
  switch (msg.op) {
    case 'info':
      return info()
    case 'systemctl':
      if (hostState === 'stopping' && ['start', 'restart', 'enable'].includes(msg.verb)) {
        return {ok: true, code: 1, stdout: '', stderr: 'Failed to start: Transaction is destructive.\n'}
      }
      return {ok: true, ...(await systemctl(msg))}
    case 'power': {
      if (msg.action === 'cancel') {
        const had = Boolean(scheduledPower)
        clearTimeout(scheduledPower?.timer)
        scheduledPower = undefined
        return {ok: true, cancelled: had}
      }
      const action = msg.action === 'poweroff' ? 'poweroff' : 'reboot'
      // A short grace so the caller's `reboot` can return before its session is cut.
      const at = schedulePower(action, Math.max(150, msg.delayMs ?? 0))
      return {ok: true, action, at: new Date(at).toISOString()}
    }
    case 'fault':
      return injectFault(msg.fault)
    case 'heal':
      return heal()
    case 'sshd':
      if (msg.action === 'start') await startSshd()
      else if (msg.action === 'stop') await stopSshd()
      else if (msg.action === 'restart') await restartSshd()
      return {ok: true, sshd: sshd.state}
    default:
      return {ok: false, error: `unknown op ${msg.op}`}
  }
}

async function main() {
  const sock = path.join(hostDir, 'supervisor.sock')
  rmSync(sock, {force: true})
  const server = serveJson(sock, handle)
  await new Promise((resolve) => server.listen(sock, resolve))
  writeFileSync(path.join(hostDir, 'supervisor.pid'), `${process.pid}\n`)
  const shutdown = async () => {
    hostState = 'stopping'
    await Promise.all([...units.values()].map((u) => stopUnit(u, {timeoutMs: 3000})))
    for (const pid of hostPids()) {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // gone
      }
    }
    process.exit(0)
  }
  process.on('SIGTERM', shutdown)
  process.on('SIGINT', shutdown)
  await boot()
}

main().catch((err) => {
  log(`supervisor failed: ${err.stack ?? err}`)
  process.exit(1)
})
