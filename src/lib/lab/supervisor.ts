import net from 'node:net'
import path from 'node:path'

/** What a host's supervisor (lab/supervisor.mjs) says about its host. */
export interface SupervisorInfo {
  ok: true
  name: string
  kind: string
  ip: string
  state: 'booting' | 'up' | 'stopping'
  supervisorPid: number
  bootId: string
  bootCount: number
  bootedAt: string
  sshd: {state: 'running' | 'stopped' | 'hung'; pid?: number}
  units: Record<string, {state: string; enabled: boolean; pid?: number; since: string}>
  faults: string[]
}

/** One JSON request to a unix socket of the lab (a supervisor or an Asterisk stand-in), one JSON reply. */
export function requestJson<T = Record<string, unknown>>(
  socketPath: string,
  message: object,
  timeoutMs = 60_000,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const sock = net.createConnection(socketPath)
    let buf = ''
    let done = false
    const finish = (err: Error | null, value?: T) => {
      if (done) return
      done = true
      clearTimeout(timer)
      sock.destroy()
      if (err) reject(err)
      else resolve(value as T)
    }
    const timer = setTimeout(
      () =>
        finish(
          Object.assign(new Error(`no answer from ${socketPath} in ${timeoutMs} ms`), {code: 'ETIMEDOUT'}),
        ),
      timeoutMs,
    )
    sock.setEncoding('utf8')
    sock.on('connect', () => sock.write(`${JSON.stringify(message)}\n`))
    sock.on('data', (d: string) => {
      buf += d
      const nl = buf.indexOf('\n')
      if (nl >= 0) {
        try {
          finish(null, JSON.parse(buf.slice(0, nl)) as T)
        } catch (error) {
          finish(error as Error)
        }
      }
    })
    sock.on('error', (err) => finish(err))
    sock.on('close', () =>
      finish(Object.assign(new Error(`${socketPath} closed the connection`), {code: 'ECONNRESET'})),
    )
  })
}

export function supervisorSocket(dir: string): string {
  return path.join(dir, 'supervisor.sock')
}

export function supervisorRequest<T = Record<string, unknown>>(
  dir: string,
  message: object,
  timeoutMs?: number,
): Promise<T> {
  return requestJson<T>(supervisorSocket(dir), message, timeoutMs)
}

/** The supervisor's view of its host, or undefined when it does not answer. */
export async function supervisorInfo(dir: string, timeoutMs = 3000): Promise<SupervisorInfo | undefined> {
  try {
    const r = await supervisorRequest<SupervisorInfo>(dir, {op: 'info'}, timeoutMs)
    return r.ok ? r : undefined
  } catch {
    return undefined
  }
}

/** The Asterisk stand-in's control socket, seen from the root namespace (the host's /run is HOSTDIR/run). */
export function asteriskSocket(dir: string): string {
  return path.join(dir, 'run', 'asterisk', 'asterisk.ctl')
}
