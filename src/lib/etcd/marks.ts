import {NODE_NAME_RE} from '../config/rules.js'
import {UserError} from '../errors.js'
import {localIdentity} from '../history.js'
import type {EtcdHandle} from './client.js'
import type {MaintenanceMark, MaintenanceMarks, MaintenanceState} from './maintenance.js'

/**
 * Reading and writing the maintenance marks (their schema is in maintenance.ts, which re-exports
 * these). `hactl status` and `node drain` / `undrain` use them on every run; zod, which the schema
 * needs, costs more CPU than the rest of the marks' work, so it is loaded only when there is
 * something to parse (marks read from etcd) or a mark to write that `plainMark` cannot vouch for.
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

export interface SetMarkInput {
  node: string
  state: MaintenanceState
  reason?: string
  command?: string
  /** Default: the local user@host. */
  by?: string
  /** Default: now. Pass the old mark's `since` to keep it when draining turns into drained. */
  since?: string
}

/** Write (or overwrite) the mark of one node; returns what was stored. */
export async function setMark(
  handle: EtcdHandle,
  prefix: string,
  input: SetMarkInput,
): Promise<MaintenanceMark> {
  const id = localIdentity()
  const candidate = {
    node: input.node,
    state: input.state,
    ...(input.reason === undefined ? {} : {reason: input.reason}),
    by: input.by ?? `${id.user}@${id.host}`,
    since: input.since ?? new Date().toISOString(),
    ...(input.command === undefined ? {} : {command: input.command}),
  }
  let mark = plainMark(candidate)
  if (!mark) {
    const {maintenanceMarkSchema} = await import('./maintenance.js')
    const res = maintenanceMarkSchema.safeParse(candidate)
    if (!res.success) {
      const issue = res.error.issues[0]
      throw new UserError(
        `invalid maintenance mark for ${JSON.stringify(input.node)}: ${issue ? `${issue.path.join('.')}: ${issue.message}` : 'invalid'}`,
      )
    }
    mark = res.data
  }
  const stored = mark
  await handle.call(`setting the maintenance mark of ${stored.node}`, (c) =>
    c
      .put(withSlash(prefix) + stored.node)
      .value(JSON.stringify(stored))
      .exec(),
  )
  return stored
}

/** Remove the mark of one node. Resolves true when there was one. */
export async function clearMark(handle: EtcdHandle, prefix: string, node: string): Promise<boolean> {
  if (!NODE_NAME_RE.test(node)) throw new UserError(`not a node name: ${JSON.stringify(node)}`)
  const res = await handle.call(`clearing the maintenance mark of ${node}`, (c) =>
    c
      .delete()
      .key(withSlash(prefix) + node)
      .exec(),
  )
  return Number(res.deleted) > 0
}

/**
 * The mark exactly as maintenanceMarkSchema would return it (same keys, same order), when it is
 * plainly valid; undefined otherwise, and the schema decides and explains. Stricter than the
 * schema, never looser: a unit test checks this against the schema.
 */
export function plainMark(c: {
  node: unknown
  state: unknown
  reason?: unknown
  by: unknown
  since: unknown
  command?: unknown
}): MaintenanceMark | undefined {
  const {node, state, reason, by, since, command} = c
  if (typeof node !== 'string' || !NODE_NAME_RE.test(node)) return undefined
  if (state !== 'draining' && state !== 'drained') return undefined
  if (reason !== undefined && (typeof reason !== 'string' || reason.length > 1024)) return undefined
  if (typeof by !== 'string' || by.length < 1 || by.length > 512) return undefined
  if (typeof since !== 'string' || Number.isNaN(Date.parse(since))) return undefined
  if (command !== undefined && (typeof command !== 'string' || command.length > 4096)) return undefined
  return {
    node,
    state,
    ...(reason === undefined ? {} : {reason}),
    by,
    since,
    ...(command === undefined ? {} : {command}),
  }
}
