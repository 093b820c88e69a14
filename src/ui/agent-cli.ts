/**
 * What the two agent commands share on the CLI side: the `--endpoints` flag's parsing, and turning
 * SIGTERM/SIGINT into an AbortSignal (the agents stop cleanly on the first one; a second one
 * quits at once).
 */
import {UserError} from '../lib/errors.js'

/** `--endpoints a,b` (or HACTL_ETCD_ENDPOINTS) → client URLs; undefined when not given. */
export function parseEndpoints(value: string | undefined): string[] | undefined {
  if (value === undefined) return undefined
  const list = value
    .split(/[,\s]+/)
    .map((s) => s.trim())
    .filter(Boolean)
  if (list.length === 0) return undefined
  for (const e of list) {
    if (!/^https?:\/\/[^\s/]+\/?$/.test(e)) {
      throw new UserError(`--endpoints: ${JSON.stringify(e)} is not an etcd client URL`, [
        'use http://HOST:2379 (comma-separated for several)',
      ])
    }
  }
  return list
}

export interface StopSignal {
  signal: AbortSignal
  /** Remove the handlers (the command is over). */
  dispose(): void
}

/**
 * Abort on the first SIGTERM or SIGINT, with the signal's name as the reason. A second one while
 * the agent is stopping (say etcd hangs on the revoke) exits at once with 128+signal.
 */
export function stopOnSignals(
  onSecond: (name: NodeJS.Signals) => void = (name) => process.exit(name === 'SIGINT' ? 130 : 143),
): StopSignal {
  const controller = new AbortController()
  const handler = (name: NodeJS.Signals) => {
    if (controller.signal.aborted) onSecond(name)
    else controller.abort(name)
  }
  process.on('SIGTERM', handler)
  process.on('SIGINT', handler)
  return {
    signal: controller.signal,
    dispose() {
      process.removeListener('SIGTERM', handler)
      process.removeListener('SIGINT', handler)
    },
  }
}

/**
 * Load hactl.yaml for an agent: a missing one gets a hint about --endpoints, since an agent on a
 * host usually has none.
 */
export async function loadAgentConfig<T>(load: () => Promise<T>): Promise<T> {
  const {ConfigError} = await import('../lib/errors.js')
  try {
    return await load()
  } catch (error) {
    if (error instanceof ConfigError && /not found|no hactl\.yaml/.test(error.message)) {
      throw new ConfigError(error.message, {
        suggestions: [
          'give the etcd endpoints instead: --endpoints http://ETCD-HOST:2379 (or HACTL_ETCD_ENDPOINTS)',
          ...error.suggestions,
        ],
      })
    }
    throw error
  }
}

/**
 * An agent's etcd endpoints (--endpoints) and hactl.yaml: on a host there may be no hactl.yaml, so
 * with --endpoints and no --config the file is not read at all.
 */
export async function agentSetup<T>(
  flags: {endpoints?: string; config?: string},
  load: () => Promise<T>,
): Promise<{endpoints?: string[]; config?: T}> {
  const endpoints = parseEndpoints(flags.endpoints)
  const config = endpoints && !flags.config ? undefined : await loadAgentConfig(load)
  return {...(endpoints ? {endpoints} : {}), ...(config === undefined ? {} : {config})}
}
