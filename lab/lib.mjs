// Helpers shared by the scripts that run inside lab hosts (supervisor, systemctl, asterisk, discovery).
// Plain ESM JavaScript on purpose: these start often (every `systemctl` or `asterisk -rx` call), so
// they must start fast and need no build step.
import {mkdirSync, readFileSync, renameSync, writeFileSync} from 'node:fs'
import net from 'node:net'
import path from 'node:path'

export function readJson(file, fallback) {
  try {
    return JSON.parse(readFileSync(file, 'utf8'))
  } catch (error) {
    if (fallback !== undefined) return fallback
    throw error
  }
}

/** Write JSON through a temporary file, so a reader never sees half a file. */
export function writeJson(file, value) {
  mkdirSync(path.dirname(file), {recursive: true})
  const tmp = `${file}.${process.pid}.tmp`
  writeFileSync(tmp, `${JSON.stringify(value, null, 2)}\n`)
  renameSync(tmp, file)
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * One request, one JSON reply, over a unix socket (the supervisor's and the Asterisk stand-in's
 * control protocol). Rejects with `code` ENOENT/ECONNREFUSED when nobody listens.
 */
export function requestJson(socketPath, message, {timeoutMs = 120_000} = {}) {
  return new Promise((resolve, reject) => {
    const sock = net.createConnection(socketPath)
    let buf = ''
    let done = false
    const finish = (err, value) => {
      if (done) return
      done = true
      clearTimeout(timer)
      sock.destroy()
      if (err) reject(err)
      else resolve(value)
    }
    const timer = setTimeout(
      () => finish(Object.assign(new Error(`no answer from ${socketPath}`), {code: 'ETIMEDOUT'})),
      timeoutMs,
    )
    sock.setEncoding('utf8')
    sock.on('connect', () => sock.write(`${JSON.stringify(message)}\n`))
    sock.on('data', (d) => {
      buf += d
      const nl = buf.indexOf('\n')
      if (nl >= 0) {
        try {
          finish(null, JSON.parse(buf.slice(0, nl)))
        } catch (error) {
          finish(error)
        }
      }
    })
    sock.on('error', (err) => finish(err))
    sock.on('close', () =>
      finish(Object.assign(new Error(`${socketPath} closed the connection`), {code: 'ECONNRESET'})),
    )
  })
}

/** Serve JSON requests (one line each) on a unix socket; `handler(msg, sock)` returns the reply. */
export function serveJson(socketPath, handler) {
  const server = net.createServer((sock) => {
    sock.setEncoding('utf8')
    let buf = ''
    let handled = false
    sock.on('error', () => {})
    sock.on('data', async (d) => {
      buf += d
      const nl = buf.indexOf('\n')
      if (nl < 0 || handled) return
      handled = true
      let reply
      try {
        reply = await handler(JSON.parse(buf.slice(0, nl)), sock)
      } catch (error) {
        reply = {ok: false, error: error instanceof Error ? error.message : String(error)}
      }
      if (reply !== undefined && !sock.destroyed) sock.end(`${JSON.stringify(reply)}\n`)
    })
  })
  return server
}

/** Parse the small cloud-config a CoreOS host reads at boot. Uses the repository's `yaml` package. */
export async function readCloudConfig(file) {
  let text
  try {
    text = readFileSync(file, 'utf8')
  } catch {
    return {}
  }
  const {parse} = await import('yaml')
  const doc = parse(text)
  return doc && typeof doc === 'object' ? doc : {}
}

/** `foo`, `foo.service` → `foo`. */
export function unitBase(name) {
  return String(name).replace(/\.service$/, '')
}

export function log(line) {
  process.stderr.write(`${new Date().toISOString()} ${line}\n`)
}
