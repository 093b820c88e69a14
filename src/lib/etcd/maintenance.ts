import {z} from 'zod'
import {NODE_NAME_RE} from '../config/rules.js'
import {withSlash} from './marks.js'

/**
 * Maintenance marks: `<prefix><node>` → JSON, written by `hactl node drain`, cleared by
 * `hactl node undrain`, read by `hactl status` and the dispatcher agent. No lease: a mark outlives
 * the command that wrote it. Reading and writing them is in marks.ts, which loads this schema (and
 * zod) only when there is something to parse or a mark its quick check cannot vouch for.
 */
export const maintenanceMarkSchema = z.object({
  node: z.string().regex(NODE_NAME_RE, 'not a node name'),
  state: z.enum(['draining', 'drained']),
  reason: z.string().max(1024).optional(),
  /** user@host of the operator. */
  by: z.string().min(1).max(512),
  /** ISO 8601 time the mark was first set. */
  since: z.string().refine((s) => !Number.isNaN(Date.parse(s)), 'expected an ISO time'),
  /** The command line that set it. */
  command: z.string().max(4096).optional(),
})

export type MaintenanceMark = z.output<typeof maintenanceMarkSchema>
export type MaintenanceState = MaintenanceMark['state']

/** A key under a hactl prefix whose value is not what hactl writes. Reported, never fatal. */
export interface InvalidEntry {
  key: string
  /** The key's last path segment (the node or box name it claims to be about). */
  name: string
  error: string
  raw: string
}

/** The valid marks, with the broken values alongside (`.invalid`). */
export type MaintenanceMarks = MaintenanceMark[] & {invalid: InvalidEntry[]}

export {clearMark, getMarks, setMark, withSlash, type SetMarkInput} from './marks.js'

/** Parse `{key: value}` as read under prefix. Pure; exported for the watchers and for tests. */
export function parseMarks(kvs: Record<string, string>, prefix: string): MaintenanceMarks {
  const p = withSlash(prefix)
  const marks = [] as unknown as MaintenanceMarks
  marks.invalid = []
  for (const [key, raw] of Object.entries(kvs).sort(([a], [b]) => a.localeCompare(b))) {
    const name = key.slice(p.length)
    const res = parseJson(raw, maintenanceMarkSchema)
    if (!res.ok) marks.invalid.push({key, name, error: res.error, raw: clip(raw)})
    else if (res.value.node !== name)
      marks.invalid.push({
        key,
        name,
        error: `the value names node "${res.value.node}", the key "${name}"`,
        raw: clip(raw),
      })
    else marks.push(res.value)
  }
  return marks
}

export function parseJson<T extends z.ZodType>(
  raw: string,
  schema: T,
): {ok: true; value: z.output<T>} | {ok: false; error: string} {
  let data: unknown
  try {
    data = JSON.parse(raw)
  } catch (error) {
    return {ok: false, error: `not JSON: ${(error as Error).message}`}
  }
  const res = schema.safeParse(data)
  if (res.success) return {ok: true, value: res.data}
  const issue = res.error.issues[0]
  return {
    ok: false,
    error: issue ? `${issue.path.length > 0 ? `${issue.path.join('.')}: ` : ''}${issue.message}` : 'invalid',
  }
}

function clip(s: string): string {
  return s.length > 200 ? `${s.slice(0, 200)}…` : s
}
