#!/usr/bin/env node
// `systemctl`, `reboot`, `shutdown`, `poweroff` and `halt` of a lab host (one multi-call program, as
// in systemd). Bind-mounted over /usr/bin/systemctl inside each host (Debian's reboot and shutdown
// are symlinks to it) through a small wrapper that sets HACTL_LAB_HOST_DIR and passes $0.
// Usage: systemctl.mjs INVOKED-AS [ARGS...]
import path from 'node:path'
import {requestJson} from './lib.mjs'

const hostDir = process.env.HACTL_LAB_HOST_DIR
const invokedAs = path.basename(process.argv[2] ?? 'systemctl')
const args = process.argv.slice(3)
const sock = path.join(hostDir ?? '/nonexistent', 'supervisor.sock')

async function call(message) {
  try {
    return await requestJson(sock, message, {timeoutMs: 600_000})
  } catch {
    process.stderr.write(
      "System has not been booted with systemd as init system (PID 1). Can't operate.\nFailed to connect to bus: Host is down\n",
    )
    process.exit(1)
  }
}

function fmtTime(ms) {
  const d = new Date(ms)
  const day = d.toLocaleDateString('en-US', {weekday: 'short', timeZone: 'UTC'})
  const iso = d.toISOString()
  return `${day} ${iso.slice(0, 10)} ${iso.slice(11, 19)} UTC`
}

/** shutdown's TIME: now, +M, M (minutes) or hh:mm. Returns a delay in ms, or undefined. */
function parseWhen(spec) {
  if (spec === 'now') return 0
  let m = /^\+?(\d+)$/.exec(spec)
  if (m) return Number(m[1]) * 60_000
  m = /^(\d{1,2}):(\d{2})$/.exec(spec)
  if (m) {
    const now = new Date()
    const at = new Date(now)
    at.setHours(Number(m[1]), Number(m[2]), 0, 0)
    if (at <= now) at.setDate(at.getDate() + 1)
    return at.getTime() - now.getTime()
  }
  return undefined
}

async function power(action, delayMs = 0) {
  const r = await call({op: 'power', action, delayMs})
  if (!r.ok) {
    process.stderr.write(`Failed to ${action} system: ${r.error}\n`)
    process.exit(1)
  }
  if (delayMs > 0) {
    const what = action === 'reboot' ? 'Reboot' : 'Shutdown'
    process.stderr.write(`${what} scheduled for ${fmtTime(Date.parse(r.at))}, use 'shutdown -c' to cancel.\n`)
  }
  process.exit(0)
}

async function shutdownCommand() {
  let action = 'poweroff'
  let cancel = false
  let wallOnly = false
  const rest = []
  for (const a of args) {
    if (a === '-r' || a === '--reboot') action = 'reboot'
    else if (a === '-h' || a === '-P' || a === '--poweroff' || a === '-H' || a === '--halt')
      action = 'poweroff'
    else if (a === '-c') cancel = true
    else if (a === '-k') wallOnly = true
    else if (a.startsWith('-')) {
      if (!['--no-wall', '-f', '-F', '-n', '-q'].includes(a)) {
        process.stderr.write(`shutdown: invalid option -- '${a.replace(/^-+/, '')}'\n`)
        process.exit(1)
      }
    } else rest.push(a)
  }
  if (cancel) {
    await call({op: 'power', action: 'cancel'})
    process.exit(0)
  }
  if (wallOnly) process.exit(0)
  const spec = rest[0] ?? '+1'
  const delay = parseWhen(spec)
  if (delay === undefined) {
    process.stderr.write(`Failed to parse time specification: ${spec}\n`)
    process.exit(1)
  }
  await power(action, delay)
}

async function systemctlCommand() {
  let quiet = false
  let noBlock = false
  let now = false
  const properties = []
  const words = []
  for (let i = 0; i < args.length; i++) {
    const a = args[i]
    if (a === '-q' || a === '--quiet') quiet = true
    else if (a === '--no-block') noBlock = true
    else if (a === '--now') now = true
    else if (a === '-p' || a === '--property') properties.push(...String(args[++i] ?? '').split(','))
    else if (a.startsWith('--property=')) properties.push(...a.slice(11).split(','))
    else if (/^-p./.test(a)) properties.push(...a.slice(2).split(','))
    else if (
      a === '-n' ||
      a === '--lines' ||
      a === '-o' ||
      a === '--output' ||
      a === '-t' ||
      a === '--type' ||
      a === '--state'
    )
      i++
    else if (a.startsWith('-'))
      continue // --no-pager, --full, -l, --all, --system, --plain, --no-legend, -f ...
    else words.push(a)
  }
  const verb = words.shift()
  if (!verb) {
    process.stderr.write('Too few arguments.\n')
    process.exit(1)
  }
  if (['reboot', 'poweroff', 'halt', 'kexec'].includes(verb))
    await power(verb === 'reboot' || verb === 'kexec' ? 'reboot' : 'poweroff')
  const r = await call({
    op: 'systemctl',
    verb,
    units: words,
    quiet,
    noBlock,
    now,
    properties: properties.filter(Boolean),
  })
  if (r.stdout) process.stdout.write(r.stdout)
  if (r.stderr) process.stderr.write(r.stderr)
  process.exitCode = r.code ?? 1
}

if (!hostDir) {
  process.stderr.write('systemctl (hactl lab): HACTL_LAB_HOST_DIR is not set; run this inside a lab host\n')
  process.exit(1)
}
switch (invokedAs) {
  case 'reboot':
    await power(args.includes('-p') || args.includes('--poweroff') ? 'poweroff' : 'reboot')
    break
  case 'poweroff':
  case 'halt':
    await power(args.includes('--reboot') ? 'reboot' : 'poweroff')
    break
  case 'shutdown':
    await shutdownCommand()
    break
  default:
    await systemctlCommand()
}
