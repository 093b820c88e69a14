import {isMap, isPair, isScalar, isSeq, type Document, type LineCounter, type Node as YamlNode} from 'yaml'
import type {z} from 'zod'
import {configSchema, NODE_NAME_RULE} from './schema.js'

/**
 * Turning zod issues into one-line messages an operator can act on: where (path and source
 * position), what is wrong, what is allowed, and a hint.
 */

export interface Problem {
  message: string
  hints: string[]
  line: number
  column: number
  /** Lower sorts first among problems at the same position. */
  rank: number
}

/** `nodes.ast1.roles[0]`. */
export function formatPath(p: readonly PropertyKey[]): string {
  let out = ''
  for (const seg of p) {
    if (typeof seg === 'number') out += `[${seg}]`
    else out += out === '' ? String(seg) : `.${String(seg)}`
  }
  return out
}

/** Every zod issue as a problem, the first in the file first. */
export function problemsFromIssues(
  issues: readonly z.core.$ZodIssue[],
  doc: Document,
  lc: LineCounter,
): Problem[] {
  // A misspelt key (`hots:`) also shows up as a missing one (`host`): the misspelling is the news.
  const withUnknown = new Set(
    issues.filter((i) => i.code === 'unrecognized_keys').map((i) => formatPath(i.path)),
  )
  const isMissing = (i: z.core.$ZodIssue) => i.code === 'invalid_type' && i.input === undefined
  return issues
    .filter((i) => !(isMissing(i) && withUnknown.has(formatPath(i.path.slice(0, -1)))))
    .map((issue) => describeIssue(issue, doc, lc))
    .sort((a, b) => a.line - b.line || a.column - b.column || a.rank - b.rank)
}

function describeIssue(issue: z.core.$ZodIssue, doc: Document, lc: LineCounter): Problem {
  const p = issue.path
  const at = formatPath(p)
  const value = () => locate(doc, lc, p, 'value')
  const key = () => locate(doc, lc, p, 'key')
  const hintOf = (i: z.core.$ZodIssue) => {
    const h = (i as {params?: {hint?: unknown}}).params?.hint
    return typeof h === 'string' ? [h] : []
  }
  switch (issue.code) {
    case 'unrecognized_keys': {
      const allowed = allowedKeys(p) ?? []
      // Report the unknown key that comes first in the file.
      const located = issue.keys
        .map((k) => ({k, pos: locate(doc, lc, [...p, k], 'key')}))
        .sort((a, b) => a.pos.line - b.pos.line || a.pos.column - b.pos.column)[0]!
      const where = p.length === 0 ? 'at the top level' : `in ${at}`
      const more = issue.keys.length > 1 ? ` (and ${issue.keys.length - 1} more)` : ''
      const synonym = SYNONYMS[located.k.toLowerCase()]
      const guess = synonym && allowed.includes(synonym) ? synonym : closest(located.k, allowed)
      return {
        message: `unknown key "${located.k}" ${where}${more}; allowed: ${allowed.join(', ')}`,
        hints: guess ? [`did you mean "${guess}"?`] : [],
        ...located.pos,
        rank: 0,
      }
    }
    case 'invalid_key': {
      const name = String(p.at(-1) ?? '')
      const suggestion = sanitizeName(name)
      return {
        message: `invalid node name "${name}": expected ${NODE_NAME_RULE}`,
        hints: suggestion ? [`rename it, e.g. ${suggestion}`] : [],
        ...key(),
        rank: 1,
      }
    }
    case 'invalid_type': {
      const expected = expectedName(issue.expected)
      if (issue.input === undefined) {
        const parent = p.slice(0, -1)
        const k = String(p.at(-1))
        const pos = parent.length === 0 ? {line: 1, column: 1} : locate(doc, lc, parent, 'key')
        const what = REQUIRED_DESCRIPTIONS[k] ?? expected
        return {
          message: `${parent.length === 0 ? '' : `${formatPath(parent)}: `}missing required key "${k}" (${what})`,
          hints: [],
          ...pos,
          rank: 2,
        }
      }
      if (issue.input === null) {
        return {message: `${at} is empty: expected ${expected}`, hints: nullHints(p), ...key(), rank: 2}
      }
      return {
        message: `${at}: expected ${expected}, got ${describeValue(issue.input)}`,
        hints: typeHints(issue.expected, issue.input, p),
        ...value(),
        rank: 2,
      }
    }
    case 'invalid_value': {
      const allowed = issue.values.map((v) => String(v))
      const isRole = p[0] === 'nodes' && p[2] === 'roles'
      const guess = typeof issue.input === 'string' ? closest(issue.input, allowed) : undefined
      const hints = guess ? [`did you mean "${guess}"?`] : []
      if (p.at(-1) === 'strictHostKeyChecking' && (issue.input === 'no' || issue.input === false)) {
        hints.push(
          'hactl never turns host key checking off; accept-new records unknown hosts and still refuses changed keys',
        )
      }
      return {
        message: `${at}: ${showValue(issue.input)} is not ${isRole ? 'a role' : 'allowed'}; allowed: ${allowed.join(', ')}`,
        hints,
        ...value(),
        rank: 3,
      }
    }
    case 'invalid_format':
      return {
        message: `${at}: ${issue.message}, got ${describeValue(issue.input)}`,
        hints: [],
        ...value(),
        rank: 3,
      }
    case 'invalid_union':
      // The only unions are durations.
      return {
        message: `${at}: expected a duration such as 500ms, 5s, 2m or 1h (or a number of seconds), got ${describeValue(issue.input)}`,
        hints: [],
        ...value(),
        rank: 3,
      }
    case 'too_small':
    case 'too_big':
      return {message: `${at}: ${sizeMessage(issue)}`, hints: [], ...value(), rank: 3}
    case 'custom':
      return {
        message: issue.message,
        hints: hintOf(issue),
        ...(issue.path.length === 2 && p[0] === 'nodes' ? key() : value()),
        rank: 4,
      }
    default:
      return {
        message: `${at}: ${issue.message}${issue.input === undefined ? '' : `, got ${describeValue(issue.input)}`}`,
        hints: [],
        ...value(),
        rank: 5,
      }
  }
}

/** Words people (and Ansible inventories) use for hactl's keys. */
const SYNONYMS: Record<string, string> = {
  hosts: 'nodes',
  servers: 'nodes',
  machines: 'nodes',
  name: 'cluster',
  ansible_host: 'host',
  ansible_ssh_host: 'host',
  hostname: 'host',
  address: 'host',
  ip: 'host',
  ansible_port: 'port',
  ansible_user: 'user',
  username: 'user',
  role: 'roles',
  groups: 'roles',
  identityfile: 'identityFiles',
  identity_file: 'identityFiles',
  ansible_ssh_private_key_file: 'identityFiles',
  known_hosts: 'knownHosts',
  sudo: 'become',
}

const REQUIRED_DESCRIPTIONS: Record<string, string> = {
  cluster: 'the cluster name, e.g. cluster: prod',
  nodes: 'the machines, e.g. ast1: {host: 10.0.0.21, roles: [asterisk, etcd]}',
  host: 'the host name or IP address to reach the node at',
  roles: 'a list such as [asterisk, etcd]',
  username: 'a string',
  password: 'a string',
}

function expectedName(expected: string): string {
  return (
    {
      string: 'a string',
      number: 'a number',
      int: 'a whole number',
      boolean: 'true or false',
      object: 'a mapping',
      array: 'a list',
      record: 'a mapping',
    }[expected] ?? expected
  )
}

/** A scalar as written (JSON), or what kind of thing it is. */
function showValue(v: unknown): string {
  if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') return JSON.stringify(v)
  return describeValue(v)
}

export function describeValue(v: unknown): string {
  if (v === null) return 'null'
  if (v === undefined) return 'nothing'
  if (Array.isArray(v)) return 'a list'
  if (typeof v === 'object') return 'a mapping'
  if (typeof v === 'string') return `string ${JSON.stringify(v.length > 60 ? `${v.slice(0, 57)}...` : v)}`
  if (typeof v === 'number' && !Number.isFinite(v)) return String(v)
  return `${typeof v} ${JSON.stringify(v)}`
}

function typeHints(expected: string, input: unknown, p: readonly PropertyKey[]): string[] {
  const last = p.at(-1)
  if (
    (expected === 'number' || expected === 'int') &&
    typeof input === 'string' &&
    /^\s*-?\d+(\.\d+)?\s*$/.test(input)
  ) {
    return [`write the number without quotes: ${String(last)}: ${input.trim()}`]
  }
  if (expected === 'string' && (typeof input === 'number' || typeof input === 'boolean')) {
    return [`quote it to make it a string: ${String(last)}: "${String(input)}"`]
  }
  if (
    expected === 'boolean' &&
    typeof input === 'string' &&
    /^(yes|no|y|n|on|off|true|false)$/i.test(input)
  ) {
    return ['hactl.yaml is YAML 1.2: write true or false (yes/no/on/off are strings)']
  }
  if (expected === 'array' && typeof input === 'string') {
    return [`write a list: ${String(last)}: [${input}]`]
  }
  if ((expected === 'record' || expected === 'object') && Array.isArray(input) && last === 'nodes') {
    return ['nodes is a mapping by node name, not a list: ast1: {host: 10.0.0.21, roles: [asterisk]}']
  }
  return []
}

function nullHints(p: readonly PropertyKey[]): string[] {
  if (p[0] === 'nodes' && p.length === 2) {
    return [
      `give the node a host and roles, indented below its name: ${String(p[1])}: {host: 10.0.0.21, roles: [asterisk]}`,
    ]
  }
  return ['give it a value, or remove the key to use the default']
}

function sizeMessage(issue: z.core.$ZodIssueTooSmall | z.core.$ZodIssueTooBig): string {
  const custom = !/^Too (small|big)/.test(issue.message)
  if (custom) return typeof issue.input === 'number' ? `${issue.message}, got ${issue.input}` : issue.message
  const limit = issue.code === 'too_small' ? issue.minimum : issue.maximum
  const inclusive = issue.inclusive !== false
  const small = issue.code === 'too_small'
  switch (issue.origin) {
    case 'number':
    case 'int':
      return `${describeValue(issue.input)} is too ${small ? 'small' : 'big'}; ${small ? (inclusive ? 'the minimum is' : 'it must be more than') : inclusive ? 'the maximum is' : 'it must be less than'} ${String(limit)}`
    case 'string':
      return small
        ? Number(limit) <= 1
          ? 'must not be empty'
          : `needs at least ${String(limit)} characters`
        : `is too long; at most ${String(limit)} characters`
    case 'array':
      return small
        ? `needs at least ${String(limit)} item${Number(limit) === 1 ? '' : 's'}`
        : `has too many items; at most ${String(limit)}`
    default:
      return issue.message
  }
}

/** The allowed keys of the object at a path of the config schema. */
export function allowedKeys(p: readonly PropertyKey[]): string[] | undefined {
  let schema: unknown = configSchema
  for (const seg of p) {
    schema = unwrap(schema)
    const shape = (schema as {shape?: Record<string, unknown>}).shape
    const def = (schema as {_zod?: {def?: {type?: string; valueType?: unknown; element?: unknown}}})._zod?.def
    if (shape && typeof seg === 'string' && seg in shape) schema = shape[seg]
    else if (def?.type === 'record') schema = def.valueType
    else if (def?.type === 'array') schema = def.element
    else return undefined
  }
  const shape = (unwrap(schema) as {shape?: Record<string, unknown>}).shape
  return shape ? Object.keys(shape) : undefined
}

function unwrap(schema: unknown): unknown {
  let s = schema as {_zod?: {def?: {type?: string; innerType?: unknown; in?: unknown}}}
  for (let i = 0; i < 10; i++) {
    const def = s._zod?.def
    if (!def) break
    if (
      (def.type === 'default' ||
        def.type === 'optional' ||
        def.type === 'prefault' ||
        def.type === 'nullable') &&
      def.innerType
    ) {
      s = def.innerType as typeof s
    } else if (def.type === 'pipe' && def.in) s = def.in as typeof s
    else break
  }
  return s
}

/**
 * Line and column (1-based) of a path in the document. `value`: the value if present, else its
 * key, else the nearest ancestor found. `key`: the key (or, for a list item, the item).
 */
export function locate(
  doc: Document,
  lc: LineCounter,
  p: readonly PropertyKey[],
  want: 'value' | 'key',
): {line: number; column: number} {
  let node: unknown = doc.contents
  let best: YamlNode | undefined = (doc.contents as YamlNode | null) ?? undefined
  for (let i = 0; i < p.length; i++) {
    const seg = p[i]
    const last = i === p.length - 1
    if (isMap(node)) {
      const pair = node.items.find(
        (it) => isPair(it) && isScalar(it.key) && String(it.key.value) === String(seg),
      )
      if (!pair) break
      const keyNode = pair.key as YamlNode
      const valueNode = (pair.value as YamlNode | null) ?? undefined
      if (last && want === 'key') {
        best = keyNode
        break
      }
      // A null value (`ast1:`) has no useful position of its own: point at its key.
      best = valueNode && !(isScalar(valueNode) && valueNode.value === null) ? valueNode : keyNode
      node = valueNode
    } else if (isSeq(node) && typeof seg === 'number') {
      const item = node.items[seg] as YamlNode | undefined
      if (!item) break
      best = item
      node = item
    } else break
  }
  const offset = best?.range?.[0] ?? 0
  const pos = lc.linePos(offset)
  return {line: pos.line, column: pos.col}
}

/** The closest of `candidates` to `word`, if it is close enough to be a likely typo. */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  const w = word.toLowerCase()
  let best: string | undefined
  let bestScore = Number.POSITIVE_INFINITY
  for (const c of candidates) {
    const cl = c.toLowerCase()
    let score = editDistance(w, cl)
    // ansible_host -> host, identity_file -> identityFiles
    const bare = w.replace(/[_-]/g, '')
    if (bare.length >= 4 && cl.length >= 4 && (bare.includes(cl) || cl.includes(bare)))
      score = Math.min(score, 1)
    if (score < bestScore) {
      bestScore = score
      best = c
    }
  }
  const limit = w.length <= 3 ? 1 : w.length <= 6 ? 2 : 3
  return bestScore <= limit ? best : undefined
}

/** Edit distance where swapping two neighbouring letters counts as one edit (optimal string alignment). */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({length: a.length + 1}, (_, i) =>
    Array.from({length: b.length + 1}, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  )
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        v = Math.min(v, d[i - 2]![j - 2]! + 1)
      d[i]![j] = v
    }
  }
  return d[a.length]![b.length]!
}

/** A node name that follows the rule, made from any name; undefined when nothing is left. */
export function sanitizeName(name: string): string | undefined {
  const s = name
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/-+/g, '-')
    .replace(/^-+/, '')
    .slice(0, 63)
    .replace(/-+$/, '')
  return s === '' ? undefined : s
}
