import type {EtcdHandle} from './client.js'
import type {MaintenanceMarks} from './maintenance.js'

/**
 * Reading the maintenance marks (see maintenance.ts), apart from their schema: `hactl status` and
 * `node drain` read them on every run, and when there is no mark, the usual case, nothing needs
 * parsing, so zod is not loaded. maintenance.ts re-exports these.
 */

export function withSlash(prefix: string): string {
  return prefix.endsWith('/') ? prefix : `${prefix}/`
}

/** Every maintenance mark. A value that does not parse is listed in `.invalid`, not thrown. */
export async function getMarks(handle: EtcdHandle, prefix: string): Promise<MaintenanceMarks> {
  const p = withSlash(prefix)
  const kvs = await handle.call('reading maintenance marks', (c) => c.getAll().prefix(p).strings())
  if (Object.keys(kvs).length === 0) {
    const none = [] as unknown as MaintenanceMarks
    none.invalid = []
    return none
  }
  const {parseMarks} = await import('./maintenance.js')
  return parseMarks(kvs, p)
}
