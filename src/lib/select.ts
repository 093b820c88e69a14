import type {ResolvedNode} from './config/load.js'
import {ROLES, type Role} from './config/rules.js'
import {UserError} from './errors.js'

/** A node name, a role or `all`: the characters any of them can contain. */
const TOKEN_RE = /^[a-z0-9][a-z0-9-]*$/
const MAX_SPEC_LENGTH = 4096

/**
 * The nodes that specs name, in config order, each once. A spec is a node name (`ast1`), a role
 * (`asterisk`), `all`, or a comma list of those (`ast1,kam1`). A name that is both a node and a role
 * means the node: the operator typed a node's name, so the narrower reading is the safer one.
 */
export function selectNodes(
  config: {nodes: readonly ResolvedNode[]},
  specs: readonly string[],
): ResolvedNode[] {
  const known = knownList(config.nodes)
  if (specs.length === 0) {
    throw new UserError('no nodes given: name nodes, roles or all', [known])
  }
  const wanted = new Set<string>()
  for (const spec of specs) {
    checkSpecShape(spec)
    const tokens = spec.split(',').map((t) => t.trim())
    if (tokens.every((t) => t === '')) throw new UserError(`empty node list "${spec}"`, [known])
    for (const token of tokens) {
      if (token === '') continue
      for (const n of resolveToken(config.nodes, token, known)) wanted.add(n.name)
    }
  }
  return config.nodes.filter((n) => wanted.has(n.name))
}

function resolveToken(nodes: readonly ResolvedNode[], token: string, known: string): ResolvedNode[] {
  if (!TOKEN_RE.test(token) || token.length > 63) {
    throw new UserError(
      `"${printable(token)}" is not a node name, role or "all" (lower-case letters, digits and "-")`,
      [known],
    )
  }
  const byName = nodes.find((n) => n.name === token)
  if (byName) return [byName]
  if (token === 'all') return [...nodes]
  if ((ROLES as readonly string[]).includes(token)) {
    const withRole = nodes.filter((n) => n.roles.includes(token as Role))
    if (withRole.length === 0) throw new UserError(`no node has the role ${token}`, [known])
    return withRole
  }
  const close = suggest(token, [...nodes.map((n) => n.name), ...rolesInUse(nodes), 'all'])
  throw new UserError(`unknown node or role "${token}"${close ? `; did you mean ${close}?` : ''}`, [known])
}

// Specs come from argv and may come from scripts: refuse the ones that look like an attempt to
// smuggle something (shell syntax, control characters, paths, huge strings) with a message that
// says why, before they reach any output or remote command.
function checkSpecShape(spec: string): void {
  if (typeof spec !== 'string') throw new UserError('a node spec must be a string')
  if (spec.length > MAX_SPEC_LENGTH)
    throw new UserError(`node spec is ${spec.length} characters long; that is not a list of node names`)
  if (spec.trim() === '') throw new UserError('empty node spec', [])
  if (spec.startsWith('-'))
    throw new UserError(
      `"${printable(spec)}" looks like a flag, not a node: put flags before the nodes, or check the spelling`,
    )
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(spec))
    throw new UserError(`node spec "${printable(spec)}" contains control characters`)
  if (/[;&|`$<>()\\'"*?[\]{}!~#/\s]/.test(spec.replace(/^\s+|\s+$/g, '').replace(/,\s+/g, ','))) {
    throw new UserError(
      `node spec "${printable(spec)}" contains characters no node name or role has (node names are lower-case letters, digits and "-")`,
    )
  }
}

function knownList(nodes: readonly ResolvedNode[]): string {
  const roles = rolesInUse(nodes)
  return `known nodes: ${nodes.map((n) => n.name).join(', ')}; roles: ${roles.length > 0 ? roles.join(', ') : '(none)'}; or all`
}

function rolesInUse(nodes: readonly ResolvedNode[]): string[] {
  return ROLES.filter((r) => nodes.some((n) => n.roles.includes(r)))
}

/** Show a hostile string without letting it drive the terminal. */
function printable(s: string): string {
  const shown = s.length > 60 ? `${s.slice(0, 57)}...` : s
  return JSON.stringify(shown).slice(1, -1)
}

function suggest(token: string, candidates: string[]): string | undefined {
  let best: {c: string; d: number} | undefined
  for (const c of candidates) {
    const d = distance(token, c)
    if (d <= 2 && (!best || d < best.d)) best = {c, d}
  }
  return best?.c
}

function distance(a: string, b: string): number {
  const row = Array.from({length: b.length + 1}, (_, i) => i)
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!
    row[0] = i
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j]!
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1))
      prev = tmp
    }
  }
  return row[b.length]!
}
