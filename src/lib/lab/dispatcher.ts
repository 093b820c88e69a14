import path from 'node:path'
import {run} from './system.js'

/** The ctl socket of a Kamailio lab host, seen from the root namespace (the host's /run is HOSTDIR/run). */
export function kamailioCtl(dir: string): string {
  return path.join(dir, 'run', 'kamailio', 'kamailio_ctl')
}

/** URI → FLAGS (AP, IP, DX ...) from `kamcmd dispatcher.list` text. */
export function parseDispatcherFlags(text: string): Record<string, string> {
  const out: Record<string, string> = {}
  let uri: string | undefined
  for (const line of text.split('\n')) {
    const u = /^\s*URI:\s*(\S+)/.exec(line)
    if (u) {
      uri = u[1]
      continue
    }
    const f = /^\s*FLAGS:\s*(\S+)/.exec(line)
    if (f && uri) {
      out[uri] = f[1]!
      uri = undefined
    }
  }
  return out
}

/** What a lab Kamailio's dispatcher says now; {} when it does not answer. */
export async function dispatcherFlags(dir: string): Promise<Record<string, string>> {
  try {
    const r = await run('kamcmd', ['-s', `unixs:${kamailioCtl(dir)}`, 'dispatcher.list'], {timeoutMs: 3000})
    return r.code === 0 ? parseDispatcherFlags(r.stdout) : {}
  } catch {
    return {}
  }
}
