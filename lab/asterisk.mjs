#!/usr/bin/env node
// A faithful stand-in for Asterisk 20 on lab hosts (Asterisk is not packaged for Debian 12).
//
//   asterisk -f | -F | -c       run the daemon in the foreground (the `asterisk` unit does this)
//   asterisk -rx "CMD"          the remote CLI: prints what Asterisk prints, exit 0; exit 1 with
//                               "Unable to connect to remote asterisk ..." when it is not running
//   asterisk -r                 a minimal interactive remote console
//   asterisk                    "daemonize": asks the host's supervisor to start the unit
//
// The daemon listens on /var/run/asterisk/asterisk.ctl (its own JSON protocol; only this file
// speaks it), answers SIP on HOST-IP:5060/udp (OPTIONS → 200, or 503 while a graceful shutdown is
// pending; a bare-bones INVITE/BYE UAS), and logs every call to /var/log/asterisk/calls.jsonl as
// JSON lines: {"event":"start"}, then {"event":"end","outcome":"finished"|"cut"}; a call refused
// during a graceful shutdown is {"event":"refused","outcome":"refused"}.
//
// Channels: a call is a bridged call of two channels (the caller's leg and the callee's leg), so
// `core show channels count` shows 2 channels per active call, as a real bridged call does.
import {appendFileSync, existsSync, mkdirSync, rmSync} from 'node:fs'
import dgram from 'node:dgram'
import {randomBytes} from 'node:crypto'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import readline from 'node:readline'
import {log, readJson, requestJson} from './lib.mjs'

const VERSION = '20.5.2'
const DEFAULT_CTL = '/var/run/asterisk/asterisk.ctl'
const CALL_LOG = '/var/log/asterisk/calls.jsonl'
const CHANNELS_PER_CALL = 2
/** asterisk -rx gives up after 60 s without output from the server (asterisk.c: ast_poll(..., 60000)). */
const RX_SILENCE_MS = Number(process.env.HACTL_LAB_RX_TIMEOUT_MS ?? 60_000)

// ---------------------------------------------------------------------------------------------
// Command line

function parseArgs(argv) {
  const o = {
    remote: false,
    exec: undefined,
    foreground: false,
    version: false,
    socket: DEFAULT_CTL,
    help: false,
  }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (!a.startsWith('-') || a === '-') continue
    if (a.startsWith('--')) continue
    const flags = a.slice(1)
    for (let j = 0; j < flags.length; j++) {
      const c = flags[j]
      const rest = flags.slice(j + 1)
      const takeArg = () => (rest.length > 0 ? rest : argv[++i])
      if (c === 'r' || c === 'R') o.remote = true
      else if (c === 'x') {
        o.remote = true // -x implies -r
        o.exec = takeArg()
        break
      } else if (c === 's') {
        o.socket = takeArg()
        break
      } else if (c === 'C' || c === 'U' || c === 'G' || c === 'e' || c === 'L' || c === 'M') {
        takeArg()
        break
      } else if (c === 'f' || c === 'F' || c === 'c') o.foreground = true
      else if (c === 'V') o.version = true
      else if (c === 'h') o.help = true
    }
  }
  return o
}

// ---------------------------------------------------------------------------------------------
// Client side

/** One CLI command to the daemon; resolves with what it printed. Rejects when nothing listens. */
function remoteCommand(socket, cmd, {onData} = {}) {
  return new Promise((resolve, reject) => {
    const s = net.createConnection(socket)
    let out = ''
    let connected = false
    let timer
    const arm = () => {
      clearTimeout(timer)
      timer = setTimeout(() => {
        s.destroy()
        resolve(out)
      }, RX_SILENCE_MS)
    }
    s.setEncoding('utf8')
    s.on('connect', () => {
      connected = true
      s.write(`${JSON.stringify({op: 'cli', cmd})}\n`)
      arm()
    })
    s.on('data', (d) => {
      out += d
      onData?.(d)
      arm()
    })
    s.on('error', (err) => {
      clearTimeout(timer)
      if (!connected) reject(err)
      else resolve(out)
    })
    s.on('close', () => {
      clearTimeout(timer)
      resolve(out)
    })
  })
}

async function runRemote(o) {
  if (o.exec !== undefined) {
    try {
      await remoteCommand(o.socket, o.exec, {onData: (d) => process.stdout.write(d)})
    } catch {
      process.stderr.write(`Unable to connect to remote asterisk (does ${o.socket} exist?)\n`)
      process.exit(1)
    }
    process.exit(0)
  }
  // Interactive remote console.
  const ok = await new Promise((resolve) => {
    const s = net.createConnection(o.socket)
    s.on('connect', () => {
      s.destroy()
      resolve(true)
    })
    s.on('error', () => resolve(false))
  })
  if (!ok) {
    process.stderr.write(`Unable to connect to remote asterisk (does ${o.socket} exist?)\n`)
    process.exit(1)
  }
  process.stdout.write(
    `Asterisk ${VERSION}, Copyright (C) 1999 - 2022, Sangoma Technologies Corporation and others.\n`,
  )
  process.stdout.write(`Connected to Asterisk ${VERSION} currently running on ${os.hostname()} (pid = lab)\n`)
  const rl = readline.createInterface({
    input: process.stdin,
    output: process.stdout,
    prompt: `${os.hostname()}*CLI> `,
  })
  rl.prompt()
  for await (const line of rl) {
    const cmd = line.trim()
    if (cmd === 'exit' || cmd === 'quit') break
    if (cmd) {
      try {
        await remoteCommand(o.socket, cmd, {onData: (d) => process.stdout.write(d)})
      } catch {
        process.stdout.write('\nDisconnected from Asterisk server\n')
        process.exit(1)
      }
    }
    rl.prompt()
  }
  process.exit(0)
}

async function alreadyRunning(socket) {
  return new Promise((resolve) => {
    const s = net.createConnection(socket)
    s.on('connect', () => {
      s.destroy()
      resolve(true)
    })
    s.on('error', () => resolve(false))
  })
}

// ---------------------------------------------------------------------------------------------
// Daemon

const COMMANDS = [
  {words: 'core show channels', args: true},
  {words: 'core show calls', args: true},
  {words: 'core show version'},
  {words: 'core show uptime', args: true},
  {words: 'core show help', args: true},
  {words: 'core show settings'},
  {words: 'core stop now', atShutdown: true},
  {words: 'core stop gracefully', atShutdown: true},
  {words: 'core stop when convenient', atShutdown: true},
  {words: 'core restart now', atShutdown: true},
  {words: 'core restart gracefully', atShutdown: true},
  {words: 'core restart when convenient', atShutdown: true},
  {words: 'core abort shutdown', atShutdown: true},
  {words: 'core set verbose', args: true},
  {words: 'core reload'},
  {words: 'module reload', args: true},
  {words: 'dialplan reload'},
  {words: 'reload', args: true},
  {words: 'channel request hangup', args: true},
].map((c) => ({...c, list: c.words.split(' ')}))

function findCommand(words) {
  const lw = words.map((w) => w.toLowerCase())
  let best
  for (const c of COMMANDS) {
    if (lw.length < c.list.length) continue
    if (!c.list.every((w, i) => w === lw[i])) continue
    if (lw.length > c.list.length && !c.args) continue
    if (!best || c.list.length > best.list.length) best = c
  }
  return best
}

/** Asterisk's find_best(): the words up to and including the first one no command starts with. */
function findBest(words) {
  const lw = words.map((w) => w.toLowerCase())
  const out = []
  for (let x = 0; x < lw.length; x++) {
    out.push(words[x])
    const prefix = lw.slice(0, x + 1)
    const any = COMMANDS.some((c) =>
      prefix.every((w, i) => c.list[i] === w || (i === prefix.length - 1 && c.list[i]?.startsWith(w))),
    )
    if (!any) break
  }
  return out.join(' ')
}

const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`

function uptimeText(ms) {
  let s = Math.floor(ms / 1000)
  const parts = []
  for (const [unit, len] of [
    ['week', 604800],
    ['day', 86400],
    ['hour', 3600],
    ['minute', 60],
  ]) {
    if (s >= len) {
      parts.push(plural(Math.floor(s / len), unit))
      s %= len
    }
  }
  parts.push(plural(s, 'second'))
  return parts.join(', ')
}

async function runDaemon(o) {
  const hostDir = process.env.HACTL_LAB_HOST_DIR
  const host = hostDir ? readJson(path.join(hostDir, 'host.json'), {}) : {}
  const hostName = host.name ?? os.hostname()
  const ip = host.ip ?? '127.0.0.1'
  const ctlPath = o.socket

  if (await alreadyRunning(ctlPath)) {
    process.stderr.write(`Asterisk already running on ${ctlPath}.  Use 'asterisk -r' to connect.\n`)
    process.exit(1)
  }

  let startedAt = Date.now()
  let processed = 0
  /** id → {id, via, startedAt, timer, to?} */
  const calls = new Map()
  /** {niceness: 'now'|'gracefully'|'when convenient', restart, waiters: Set<net.Socket>} */
  let shutdown = null
  let callSeq = 0
  const bootTag = Date.now().toString(36)

  mkdirSync(path.dirname(CALL_LOG), {recursive: true})
  const callLog = (entry) =>
    appendFileSync(
      CALL_LOG,
      `${JSON.stringify({time: new Date().toISOString(), host: hostName, ...entry})}\n`,
    )

  /** ast_shutting_down(): set by a graceful stop/restart (not by "when convenient"). */
  const shuttingDown = () => shutdown !== null && shutdown.niceness === 'gracefully'

  function startCall(via, durationMs, id) {
    if (shuttingDown()) {
      callLog({event: 'refused', outcome: 'refused', via, reason: 'shutting down'})
      return undefined
    }
    callSeq += 1
    const call = {id: id ?? `${hostName}-${bootTag}-${callSeq}`, via, startedAt: Date.now()}
    processed += 1
    calls.set(call.id, call)
    if (durationMs !== undefined) call.timer = setTimeout(() => endCall(call.id, 'finished'), durationMs)
    callLog({event: 'start', call: call.id, via, plannedMs: durationMs})
    return call
  }

  function endCall(id, outcome, reason) {
    const call = calls.get(id)
    if (!call) return
    clearTimeout(call.timer)
    calls.delete(id)
    callLog({
      event: 'end',
      call: id,
      via: call.via,
      outcome,
      ...(reason ? {reason} : {}),
      durationMs: Date.now() - call.startedAt,
    })
    if (calls.size === 0 && shutdown && shutdown.niceness !== 'now') finishShutdown()
  }

  function cutAll(reason) {
    for (const id of [...calls.keys()]) endCall(id, 'cut', reason)
  }

  let ctlServer
  let udp
  const niceRank = {now: 1, gracefully: 2, 'when convenient': 3}

  /** Asterisk's can_safely_quit(): a less nice request overrides a pending one, others are ignored. */
  function requestShutdown(niceness, restart, sock) {
    if (shutdown && niceRank[niceness] >= niceRank[shutdown.niceness]) {
      log(`Ignoring asterisk ${restart ? 'restart' : 'shutdown'} request, already in progress.`)
      return false
    }
    const waiters = shutdown?.waiters ?? new Set()
    shutdown = {niceness, restart, waiters}
    if (sock) waiters.add(sock)
    log(`${restart ? 'restart' : 'stop'} ${niceness} requested with ${calls.size} call(s) up`)
    if (niceness === 'now') {
      cutAll(restart ? 'core restart now' : 'core stop now')
      finishShutdown()
    } else if (calls.size === 0) finishShutdown()
    return true
  }

  async function finishShutdown() {
    const s = shutdown
    if (!s) return
    if (!s.restart) {
      log('Asterisk ending')
      for (const w of s.waiters) w.destroy()
      await closeEverything()
      process.exit(0)
    }
    // core restart: go away for a moment, then come back with fresh counters.
    shutdown = null
    for (const w of s.waiters) w.destroy()
    await closeEverything()
    setTimeout(() => {
      startedAt = Date.now()
      processed = 0
      openEverything().catch((err) => {
        log(`restart failed: ${err.message}`)
        process.exit(1)
      })
    }, 1000)
  }

  function abortShutdown() {
    if (!shutdown) return
    const s = shutdown
    shutdown = null
    // The blocked `core stop gracefully` returns once the shutdown is cancelled.
    for (const w of s.waiters) w.end()
  }

  function cli(raw, sock) {
    const s = raw.replace(/[\r\n]+$/, '')
    const words = s.trim().split(/\s+/).filter(Boolean)
    if (words.length === 0) return ''
    const c = findCommand(words)
    if (!c)
      return `No such command '${s}' (type 'core show help ${findBest(words)}' for other possible commands)\n`
    if (shuttingDown() && !c.atShutdown) return `Command '${s}' cannot be run during shutdown\n`
    const extra = words.slice(c.list.length).map((w) => w.toLowerCase())
    const active = calls.size
    switch (c.words) {
      case 'core show channels': {
        const counts = `${plural(active * CHANNELS_PER_CALL, 'active channel')}\n${plural(active, 'active call')}\n${plural(processed, 'call')} processed\n`
        if (extra[0] === 'count') return counts
        if (extra[0] === 'concise') {
          return [...calls.values()]
            .flatMap((call, i) => [
              `PJSIP/kamailio-${String(i * 2 + 1).padStart(8, '0')}!default!s!1!Up!Dial!PJSIP/agent!!!3!${Math.round((Date.now() - call.startedAt) / 1000)}!!${call.id}`,
            ])
            .map((l) => `${l}\n`)
            .join('')
        }
        const rows = [...calls.values()].flatMap((call, i) => [
          `${`PJSIP/kamailio-${String(i * 2 + 1).padStart(8, '0')}`.padEnd(21)}${'s@default:1'.padEnd(21)}${'Up'.padEnd(8)}Dial(PJSIP/agent)`,
          `${`PJSIP/agent-${String(i * 2 + 2).padStart(8, '0')}`.padEnd(21)}${'(None)'.padEnd(21)}${'Up'.padEnd(8)}AppDial((Outgoing Line))`,
        ])
        return `${['Channel              Location             State   Application(Data)             ', ...rows].join('\n')}\n${counts}`
      }
      case 'core show calls':
        if (extra[0] === 'uptime') return `${uptimeText(Date.now() - startedAt)}\n`
        return `${plural(active, 'active call')}\n${plural(processed, 'call')} processed\n`
      case 'core show version':
        return `Asterisk ${VERSION} built by hactl-lab @ lab on a x86_64 running Linux on 2024-01-01 00:00:00 UTC\n`
      case 'core show uptime':
        return `System uptime: ${uptimeText(Date.now() - startedAt)}\nLast reload: ${uptimeText(Date.now() - startedAt)}\n`
      case 'core show settings':
        return `\nPBX Core settings\n-----------------\n  Version:                     ${VERSION}\n  Maximum calls:               Not set\n  Current call count:          ${active}\n`
      case 'core show help': {
        const prefix = extra.join(' ')
        return COMMANDS.filter((x) => x.words.startsWith(prefix))
          .map((x) => `${x.words.padEnd(30)} -- ${x.words}\n`)
          .join('')
      }
      case 'core set verbose':
        return `Verbosity is at least ${Number(extra[0] ?? 0) || 0}\n`
      case 'core reload':
      case 'module reload':
      case 'reload':
      case 'dialplan reload':
        return ''
      case 'channel request hangup':
        if (extra[0] === 'all') {
          for (const id of [...calls.keys()]) endCall(id, 'cut', 'channel request hangup all')
          return ''
        }
        return `${extra.join(' ')} is not a known channel\n`
      case 'core abort shutdown':
        abortShutdown()
        return ''
      default: {
        const [, verb, ...rest] = c.list
        const niceness =
          rest.join(' ') === 'now'
            ? 'now'
            : rest.join(' ') === 'gracefully'
              ? 'gracefully'
              : 'when convenient'
        // The CLI call blocks until Asterisk exits (the client gives up after 60 s of silence).
        if (requestShutdown(niceness, verb === 'restart', sock)) return undefined
        return ''
      }
    }
  }

  function handleControl(msg, sock) {
    if (msg.op === 'cli') {
      const out = cli(String(msg.cmd ?? ''), sock)
      if (out === undefined) return // held open until the shutdown finishes or is aborted
      sock.end(out)
      return
    }
    let reply
    if (msg.op === 'calls') {
      const count = Math.max(0, Math.floor(Number(msg.count) || 0))
      const durationMs = Math.max(0, Number(msg.durationMs) || 0)
      const started = []
      let refused = 0
      for (let i = 0; i < count; i++) {
        const call = startCall('lab', durationMs)
        if (call) started.push(call.id)
        else refused += 1
      }
      reply = {ok: true, started, refused}
    } else if (msg.op === 'info') {
      reply = {
        ok: true,
        pid: process.pid,
        version: VERSION,
        activeCalls: calls.size,
        processed,
        shutdown: shutdown?.niceness ?? null,
        restart: shutdown?.restart ?? false,
      }
    } else if (msg.op === 'hangup') {
      const ids = msg.all ? [...calls.keys()] : [msg.call].filter(Boolean)
      for (const id of ids) endCall(id, 'finished')
      reply = {ok: true, hungUp: ids.length}
    } else reply = {ok: false, error: `unknown op ${msg.op}`}
    sock.end(`${JSON.stringify(reply)}\n`)
  }

  // --- SIP (UDP) ---------------------------------------------------------------------------
  function sipResponse(req, code, reason, extraHeaders = [], body = '') {
    const lines = [`SIP/2.0 ${code} ${reason}`]
    req.vias.forEach((v, i) => {
      if (i === 0) {
        let top = v
        if (/;rport(?=;|$)/.test(top)) top = top.replace(/;rport(?=;|$)/, `;rport=${req.rinfo.port}`)
        if (!/;received=/.test(top)) top += `;received=${req.rinfo.address}`
        lines.push(`Via: ${top}`)
      } else lines.push(`Via: ${v}`)
    })
    lines.push(`From: ${req.h.from ?? ''}`)
    let to = req.h.to ?? ''
    if (!/;\s*tag=/i.test(to)) to += `;tag=${req.toTag}`
    lines.push(`To: ${to}`)
    // A dialog-creating 2xx carries the proxy's Record-Route back (RFC 3261 12.1.1).
    if (req.method === 'INVITE' && code >= 200 && code < 300)
      for (const rr of req.recordRoutes) lines.push(`Record-Route: ${rr}`)
    lines.push(`Call-ID: ${req.h['call-id'] ?? ''}`)
    lines.push(`CSeq: ${req.h.cseq ?? ''}`)
    lines.push(`Server: Asterisk PBX ${VERSION}`)
    lines.push('Allow: OPTIONS, INVITE, ACK, BYE, CANCEL')
    lines.push('Accept: application/sdp')
    lines.push('Supported: 100rel, timer, replaces')
    lines.push(...extraHeaders)
    lines.push(`Content-Length: ${Buffer.byteLength(body)}`)
    return `${lines.join('\r\n')}\r\n\r\n${body}`
  }

  const COMPACT = {v: 'via', f: 'from', t: 'to', i: 'call-id', m: 'contact', l: 'content-length'}

  function parseSip(text) {
    const head = text.split(/\r?\n\r?\n/)[0]
    const rawLines = head.split(/\r?\n/)
    const lines = []
    for (const l of rawLines) {
      if (/^[ \t]/.test(l) && lines.length > 0) lines[lines.length - 1] += ` ${l.trim()}`
      else lines.push(l)
    }
    const [method, uri] = lines.shift().split(' ')
    const h = {}
    const vias = []
    const recordRoutes = []
    for (const l of lines) {
      const i = l.indexOf(':')
      if (i < 0) continue
      let name = l.slice(0, i).trim().toLowerCase()
      name = COMPACT[name] ?? name
      const value = l.slice(i + 1).trim()
      if (name === 'via') vias.push(...value.split(/,(?=\s*SIP\/)/i).map((v) => v.trim()))
      else if (name === 'record-route') recordRoutes.push(value)
      else if (!(name in h)) h[name] = value
    }
    return {method, uri, h, vias, recordRoutes}
  }

  function onSip(buf, rinfo) {
    let req
    try {
      const text = buf.toString('latin1')
      if (text.startsWith('SIP/2.0')) return // a response to nothing we sent
      req = parseSip(text)
    } catch {
      return
    }
    if (!req.method || req.vias.length === 0) return
    req.rinfo = rinfo
    req.toTag = randomBytes(6).toString('hex')
    const callId = req.h['call-id'] ?? ''
    let reply
    switch (req.method) {
      case 'OPTIONS':
        reply = shuttingDown() ? sipResponse(req, 503, 'Service Unavailable') : sipResponse(req, 200, 'OK')
        break
      case 'INVITE': {
        if (calls.has(callId)) {
          reply = sipResponse(req, 200, 'OK', ['Content-Type: application/sdp'], sdp())
          break
        }
        const call = startCall('sip', undefined, callId)
        reply = call
          ? sipResponse(req, 200, 'OK', [`Contact: <sip:${ip}:5060>`, 'Content-Type: application/sdp'], sdp())
          : sipResponse(req, 503, 'Service Unavailable')
        break
      }
      case 'BYE':
        if (calls.has(callId)) {
          endCall(callId, 'finished')
          reply = sipResponse(req, 200, 'OK')
        } else reply = sipResponse(req, 481, 'Call/Transaction Does Not Exist')
        break
      case 'ACK':
        return
      case 'CANCEL':
        reply = sipResponse(req, 200, 'OK')
        break
      default:
        reply = sipResponse(req, 501, 'Not Implemented')
    }
    udp?.send(reply, rinfo.port, rinfo.address)
  }

  function sdp() {
    return `v=0\r\no=- 1 1 IN IP4 ${ip}\r\ns=Asterisk\r\nc=IN IP4 ${ip}\r\nt=0 0\r\nm=audio 10000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n`
  }

  async function openEverything() {
    mkdirSync(path.dirname(ctlPath), {recursive: true})
    rmSync(ctlPath, {force: true})
    ctlServer = net.createServer((sock) => {
      sock.setEncoding('utf8')
      let buf = ''
      let handled = false
      sock.on('error', () => {})
      sock.on('close', () => shutdown?.waiters.delete(sock))
      sock.on('data', (d) => {
        buf += d
        const nl = buf.indexOf('\n')
        if (nl < 0 || handled) return
        handled = true
        try {
          handleControl(JSON.parse(buf.slice(0, nl)), sock)
        } catch (error) {
          sock.end(`${JSON.stringify({ok: false, error: error.message})}\n`)
        }
      })
    })
    await new Promise((resolve, reject) => {
      ctlServer.once('error', reject)
      ctlServer.listen(ctlPath, resolve)
    })
    udp = dgram.createSocket('udp4')
    udp.on('message', onSip)
    udp.on('error', (err) => log(`sip: ${err.message}`))
    await new Promise((resolve, reject) => {
      udp.once('error', reject)
      udp.bind(5060, ip, resolve)
    })
    log(`Asterisk ${VERSION} ready on ${ip}:5060, control ${ctlPath}`)
  }

  async function closeEverything() {
    // Stop listening; connections still open (a console waiting on a shutdown) just get cut.
    ctlServer?.close()
    rmSync(ctlPath, {force: true})
    try {
      udp?.close()
    } catch {
      // closed
    }
    udp = undefined
  }

  const onSignal = async (sig) => {
    cutAll(sig)
    await closeEverything()
    process.exit(0)
  }
  process.on('SIGTERM', () => onSignal('SIGTERM'))
  process.on('SIGINT', () => onSignal('SIGINT'))
  process.on('SIGHUP', () => {})
  await openEverything()
}

// ---------------------------------------------------------------------------------------------

const o = parseArgs(process.argv.slice(2))
if (o.version) {
  process.stdout.write(`Asterisk ${VERSION}\n`)
  process.exit(0)
}
if (o.help) {
  process.stdout.write(
    `Asterisk ${VERSION} (hactl lab stand-in). Usage: asterisk [-f] | -rx "COMMAND" | -r\n`,
  )
  process.exit(0)
}
if (o.remote) await runRemote(o)
else if (o.foreground) await runDaemon(o)
else {
  // `asterisk` alone daemonizes; here the host's supervisor runs it as the asterisk unit.
  if (await alreadyRunning(o.socket)) {
    process.stderr.write(`Asterisk already running on ${o.socket}.  Use 'asterisk -r' to connect.\n`)
    process.exit(1)
  }
  const hostDir = process.env.HACTL_LAB_HOST_DIR
  if (!hostDir || !existsSync(path.join(hostDir, 'supervisor.sock'))) {
    process.stderr.write('asterisk (hactl lab): not inside a lab host; use asterisk -f\n')
    process.exit(1)
  }
  const r = await requestJson(path.join(hostDir, 'supervisor.sock'), {
    op: 'systemctl',
    verb: 'start',
    units: ['asterisk'],
    noBlock: false,
  })
  process.exit(r.code ?? 1)
}
