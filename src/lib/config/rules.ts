/**
 * The plain rules of hactl.yaml that code outside the config loader needs (role names, node name
 * and duration syntax), without zod: `hactl status` and the other commands on the hot path check
 * node names and parse durations without paying for the schema. `schema.ts` builds on these and
 * re-exports them.
 */

export const DURATION_RE = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/

export function parseDuration(v: number | string): number {
  if (typeof v === 'number') return Math.round(v * 1000)
  const m = DURATION_RE.exec(v.trim())
  if (!m) throw new Error(`not a duration: ${v}`)
  const n = Number(m[1])
  const unit = m[2]
  const factor = unit === 'ms' ? 1 : unit === 's' ? 1000 : unit === 'm' ? 60_000 : 3_600_000
  return Math.round(n * factor)
}

/** Milliseconds back to the shortest duration string that parses to the same value ("30m", "1500ms"). */
export function formatDuration(ms: number): string {
  if (ms > 0 && ms % 3_600_000 === 0) return `${ms / 3_600_000}h`
  if (ms > 0 && ms % 60_000 === 0) return `${ms / 60_000}m`
  if (ms > 0 && ms % 1000 === 0) return `${ms / 1000}s`
  return `${ms}ms`
}

/**
 * A duration given on the command line (--timeout 90s, --wait-lock 5m, or bare seconds), in
 * milliseconds; undefined when it is not one or not positive.
 */
export function parseFlagDuration(text: string): number | undefined {
  try {
    const ms = parseDuration(/^\d+(\.\d+)?$/.test(text) ? Number(text) : text)
    return ms > 0 ? ms : undefined
  } catch {
    return undefined
  }
}

export const ROLES = ['asterisk', 'kamailio', 'etcd', 'homer'] as const
export type Role = (typeof ROLES)[number]

/** Node names are used in commands, file names and etcd keys: keep them boring. */
export const NODE_NAME_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/
export const NODE_NAME_RULE =
  'lower-case letters, digits and "-", 1-63 characters, not starting or ending with "-"'
/** Words a node selection understands besides node names: a node may not be called like one. */
export const RESERVED_NODE_NAMES: readonly string[] = [...ROLES, 'all']

export const CLUSTER_NAME_RE = /^[A-Za-z0-9._-]{1,64}$/

/**
 * A host name, an ~/.ssh/config alias (which may hold "_") or an IP address; no spaces, shell
 * metacharacters or URLs.
 */
export const HOST_RE = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9]([A-Za-z0-9._-]{0,252})|[0-9a-fA-F:]+)$/

/** Keys whose string values are secrets: masked by `hactl config show`, never copied to a cache. */
export const SECRET_KEY_RE = /pass(word)?|secret|token/i
