import type {HactlConfig, ResolvedNode} from '../config/load.js'
import {HactlError, HostError} from '../errors.js'
import type {DispatcherList} from '../facts/kamailio.js'
import type {SshPool} from '../ssh/pool.js'

/**
 * `hactl dispatcher show`: each Kamailio's runtime view (`kamcmd dispatcher.list`) side by side,
 * one row per destination, marking where the Kamailio hosts disagree.
 */

/** One Kamailio's view of one destination. */
export interface DestinationCell {
  flags: string
  state: string
  priority: number
  weight?: number
}

export interface DispatcherShowRow {
  setId: number
  uri: string
  /** The inventory node whose host this destination is, when there is one. */
  node?: string
  /** Per Kamailio: its view, `null` when the destination is not in its list. Hosts that could not be asked are left out. */
  views: Record<string, DestinationCell | null>
  /** Whether every Kamailio that answered has it, with the same flags, priority and weight. */
  agree: boolean
  /** What differs, e.g. `flags: kam1 AP, kam2 DX`. */
  differences: string[]
}

export interface DispatcherShowHost {
  name: string
  host: string
  ok: boolean
  error?: {kind: string; message: string}
}

export interface DispatcherShowResult {
  hosts: DispatcherShowHost[]
  rows: DispatcherShowRow[]
  /** Every host answered and every row agrees. */
  agree: boolean
}

/** Build the side-by-side view from each host's parsed list (null: the host could not be asked). Pure. */
export function compareDispatcherViews(
  lists: ReadonlyMap<string, DispatcherList | null>,
  opts: {setId?: number; nodes?: readonly {name: string; host: string}[]} = {},
): Pick<DispatcherShowResult, 'rows' | 'agree'> {
  const answered = [...lists.entries()].filter((e): e is [string, DispatcherList] => e[1] !== null)
  const rowsByKey = new Map<string, DispatcherShowRow>()
  const hostKey = (h: string) => h.replace(/^\[(.*)\]$/, '$1').toLowerCase()
  for (const [kam, list] of answered) {
    for (const set of list.sets) {
      if (opts.setId !== undefined && set.id !== opts.setId) continue
      for (const t of set.targets) {
        const key = `${set.id} ${t.uri}`
        let row = rowsByKey.get(key)
        if (!row) {
          const node = opts.nodes?.find((n) => hostKey(n.host) === hostKey(t.host))?.name
          row = {setId: set.id, uri: t.uri, ...(node ? {node} : {}), views: {}, agree: true, differences: []}
          rowsByKey.set(key, row)
        }
        const weight = typeof t.attrs.weight === 'number' ? t.attrs.weight : undefined
        row.views[kam] = {
          flags: t.flags,
          state: t.state,
          priority: t.priority,
          ...(weight === undefined ? {} : {weight}),
        }
      }
    }
  }
  const rows = [...rowsByKey.values()].sort((a, b) => a.setId - b.setId || compareUris(a.uri, b.uri))
  for (const row of rows) {
    for (const [kam] of answered) if (!(kam in row.views)) row.views[kam] = null
    const views = answered.map(([kam]) => [kam, row.views[kam] ?? null] as const)
    const missing = views.filter(([, v]) => v === null).map(([k]) => k)
    if (missing.length > 0) row.differences.push(`missing on ${missing.join(', ')}`)
    const present = views.filter((e): e is readonly [string, DestinationCell] => e[1] !== null)
    for (const field of ['flags', 'priority', 'weight'] as const) {
      const values = new Set(present.map(([, v]) => String(v[field] ?? '-')))
      if (values.size > 1)
        row.differences.push(`${field}: ${present.map(([k, v]) => `${k} ${v[field] ?? '-'}`).join(', ')}`)
    }
    row.agree = row.differences.length === 0
  }
  const allAnswered = answered.length === lists.size
  return {rows, agree: allAnswered && rows.every((r) => r.agree)}
}

/** Ask every Kamailio (or `nodes`) for its dispatcher list, in parallel, and compare. */
export async function showDispatchers(
  config: HactlConfig,
  pool: SshPool,
  opts: {nodes?: ResolvedNode[]; setId?: number} = {},
): Promise<DispatcherShowResult> {
  const nodes = opts.nodes ?? config.nodes.filter((n) => n.roles.includes('kamailio'))
  if (nodes.length === 0) {
    throw new HactlError('no Kamailio nodes: no node in hactl.yaml has the kamailio role', {
      suggestions: ['add roles: [kamailio] to the Kamailio hosts in hactl.yaml'],
    })
  }
  const {parseDispatcherList} = await import('../facts/kamailio.js')
  const hosts: DispatcherShowHost[] = []
  const lists = new Map<string, DispatcherList | null>()
  await Promise.all(
    nodes.map(async (node) => {
      try {
        const r = await pool.run(node, `( ${config.kamailio.cli} dispatcher.list ) </dev/null 2>&1`, {
          check: false,
        })
        lists.set(node.name, parseDispatcherList(r.stdout))
        hosts.push({name: node.name, host: node.host, ok: true})
      } catch (error) {
        lists.set(node.name, null)
        const kind = error instanceof HostError ? error.kind : 'dispatcher-list-failed'
        hosts.push({
          name: node.name,
          host: node.host,
          ok: false,
          error: {kind, message: (error as Error).message.split('\n')[0] ?? ''},
        })
      }
    }),
  )
  // Keep the config's order for columns, whatever order the answers came in.
  const order = new Map(nodes.map((n, i) => [n.name, i]))
  hosts.sort((a, b) => (order.get(a.name) ?? 0) - (order.get(b.name) ?? 0))
  const ordered = new Map(hosts.map((h) => [h.name, lists.get(h.name) ?? null]))
  const cmp = compareDispatcherViews(ordered, {
    ...(opts.setId === undefined ? {} : {setId: opts.setId}),
    nodes: config.nodes,
  })
  return {hosts, ...cmp}
}

/** Numeric order for IPv4 addresses (10.0.0.9 before 10.0.0.10), text order otherwise. */
function compareUris(a: string, b: string): number {
  const num = (u: string) => /^sips?:(\d+)\.(\d+)\.(\d+)\.(\d+)(?::(\d+))?/.exec(u)
  const x = num(a)
  const y = num(b)
  if (x && y) {
    for (let i = 1; i <= 5; i++) {
      const d = Number(x[i] ?? 0) - Number(y[i] ?? 0)
      if (d !== 0) return d
    }
    return 0
  }
  return a < b ? -1 : a > b ? 1 : 0
}
