import {isDeepStrictEqual} from 'node:util'
import {
  Document,
  isMap,
  isPair,
  isScalar,
  LineCounter,
  parseDocument,
  type Node as YamlNode,
  type Pair,
  type YAMLMap,
} from 'yaml'
import {HactlError, UserError} from '../errors.js'
import {parseConfig, type HactlConfig, type ResolvedNode} from './load.js'
import {problemsFromIssues, sanitizeName} from './problems.js'
import {NODE_NAME_RE, NODE_NAME_RULE, nodeSchema, RESERVED_NODE_NAMES, type NodeInput} from './schema.js'

/**
 * Comment-preserving edits of hactl.yaml (used by `hactl node add/remove`). The usual file has a
 * block `nodes:` mapping; there the edit is a splice of whole lines located with the yaml Document
 * API, so every other byte (comments, alignment, quoting) stays as the operator wrote it. Other
 * layouts (flow `nodes: {...}`, no nodes key) are re-rendered through the Document API, which keeps
 * comments but may normalise spacing. Either way the result is parsed again and compared with the
 * intended change before it is returned.
 */

export type {NodeInput} from './schema.js'

/** The text of hactl.yaml with one more node. Refuses a name or host:port that is already there. */
export function addNode(text: string, name: string, node: NodeInput, file = 'hactl.yaml'): string {
  const before = parseConfig(text, file)
  if (!NODE_NAME_RE.test(name)) {
    const s = sanitizeName(name)
    throw new UserError(`invalid node name "${name}": expected ${NODE_NAME_RULE}`, s ? [`use e.g. ${s}`] : [])
  }
  if (RESERVED_NODE_NAMES.includes(name)) {
    throw new UserError(`node name "${name}" is also a role name; node selections would be ambiguous`, [
      `use e.g. ${name}1`,
    ])
  }
  const existing = before.nodes.find((n) => n.name === name)
  if (existing) {
    throw new UserError(`node ${name} is already in ${file} (host ${existing.host})`, [
      `pick another name, or remove it first: hactl node remove ${name}`,
    ])
  }
  const parsed = nodeSchema.safeParse(node, {reportInput: true})
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!
    // Reuse the config messages: they name the field and what is allowed.
    const nodeDoc = new Document({nodes: {[name]: node}})
    const lc = new LineCounter()
    const [problem] = problemsFromIssues([{...issue, path: ['nodes', name, ...issue.path]}], nodeDoc, lc)
    throw new UserError(problem?.message ?? `nodes.${name}: ${issue.message}`, problem?.hints ?? [])
  }
  const clean = cleanNode(node)
  const port = clean.port ?? before.ssh.port
  const clash = before.nodes.find((n) => n.host.toLowerCase() === clean.host.toLowerCase() && n.port === port)
  if (clash) {
    throw new UserError(`host ${clean.host} port ${port} is already node ${clash.name}`, [
      'each node must be a different machine; to rename a node, remove it and add it again',
    ])
  }
  const want = (after: HactlConfig) =>
    sameSettings(before, after) &&
    isDeepStrictEqual(
      after.nodes.map((n) => n.name),
      [...before.nodes.map((n) => n.name), name],
    ) &&
    isDeepStrictEqual(after.nodes.at(-1), resolve(name, clean, before))
  return firstThatWorks(
    file,
    want,
    () => spliceAdd(text, name, clean),
    () => documentAdd(text, name, clean),
  )
}

/** The text of hactl.yaml without the node `name`. Refuses an unknown name and the last node. */
export function removeNode(text: string, name: string, file = 'hactl.yaml'): string {
  const before = parseConfig(text, file)
  if (!before.nodes.some((n) => n.name === name)) {
    throw new UserError(
      `no node named ${name} in ${file}; nodes: ${before.nodes.map((n) => n.name).join(', ')}`,
    )
  }
  if (before.nodes.length === 1) {
    throw new UserError(`${name} is the only node in ${file}; a cluster needs at least one`, [
      'add the replacement first: hactl node add',
    ])
  }
  const want = (after: HactlConfig) =>
    sameSettings(before, after) &&
    isDeepStrictEqual(
      after.nodes,
      before.nodes.filter((n) => n.name !== name),
    )
  return firstThatWorks(
    file,
    want,
    () => spliceRemove(text, name),
    () => documentRemove(text, name),
  )
}

function cleanNode(node: NodeInput): NodeInput {
  // Key order as hactl writes it; no undefined values (they would render as null).
  return {
    host: node.host,
    ...(node.port === undefined ? {} : {port: node.port}),
    ...(node.user === undefined ? {} : {user: node.user}),
    roles: [...node.roles],
    ...(node.weight === undefined ? {} : {weight: node.weight}),
  }
}

function resolve(name: string, n: NodeInput, c: HactlConfig): ResolvedNode {
  return {
    name,
    host: n.host,
    port: n.port ?? c.ssh.port,
    user: n.user ?? c.ssh.user,
    roles: [...new Set(n.roles)],
    ...(n.weight === undefined ? {} : {weight: n.weight}),
  }
}

function sameSettings(a: HactlConfig, b: HactlConfig): boolean {
  const strip = ({nodes: _n, file: _f, ...rest}: HactlConfig) => rest
  return isDeepStrictEqual(strip(a), strip(b))
}

/** The first candidate text that parses and makes exactly the intended change. */
function firstThatWorks(
  file: string,
  want: (c: HactlConfig) => boolean,
  ...candidates: Array<() => string | undefined>
): string {
  const failures: string[] = []
  for (const make of candidates) {
    const out = make()
    if (out === undefined) continue
    try {
      if (want(parseConfig(out, file))) return out
      failures.push('the edited file did not come out as intended')
    } catch (error) {
      failures.push((error as Error).message)
    }
  }
  throw new HactlError(`could not edit ${file} safely: ${failures.join('; ') || 'unsupported layout'}`, {
    suggestions: [`edit ${file} by hand, then run: hactl config validate`],
  })
}

interface Located {
  doc: Document
  lc: LineCounter
  nodes: YAMLMap | undefined
  eol: string
}

function locateNodes(text: string): Located {
  const lc = new LineCounter()
  const doc = parseDocument(text, {lineCounter: lc, merge: true})
  const nodes = doc.get('nodes', true)
  return {doc, lc, nodes: isMap(nodes) ? nodes : undefined, eol: text.includes('\r\n') ? '\r\n' : '\n'}
}

function lineStart(text: string, offset: number): number {
  return text.lastIndexOf('\n', offset - 1) + 1
}

/** Offset just past the newline of the line that holds `offset` (or the end of the text). */
function nextLineStart(text: string, offset: number): number {
  const nl = text.indexOf('\n', offset)
  return nl < 0 ? text.length : nl + 1
}

/** The key starts its own line (block style), indented by spaces only. */
function indentOf(text: string, keyNode: YamlNode): string | undefined {
  const start = keyNode.range?.[0]
  if (start === undefined) return undefined
  const indent = text.slice(lineStart(text, start), start)
  return /^ *$/.test(indent) ? indent : undefined
}

/** End offset of a pair's content (its value, else its key). */
function pairEnd(pair: Pair): number | undefined {
  const v = pair.value as YamlNode | null
  if (v && v.range && !(isScalar(v) && v.value === null && v.range[0] === v.range[1])) return v.range[1]
  return (pair.key as YamlNode | null)?.range?.[1]
}

function spliceAdd(text: string, name: string, node: NodeInput): string | undefined {
  const {nodes, eol} = locateNodes(text)
  if (!nodes || nodes.flow || nodes.items.length === 0) return undefined
  const first = nodes.items[0]!
  const last = nodes.items.at(-1)!
  const indent = isPair(first) ? indentOf(text, first.key as YamlNode) : undefined
  const end = pairEnd(last)
  if (indent === undefined || end === undefined) return undefined
  const lastValue = last.value as YamlNode | null
  let rendered: string
  if (isMap(lastValue) && !lastValue.flow && lastValue.items[0]) {
    // Block style like its neighbours, with their inner indentation.
    const innerKey = lastValue.items[0].key as YamlNode
    const inner = indentOf(text, innerKey)
    const step = inner !== undefined && inner.length > indent.length ? inner.length - indent.length : 2
    const d = new Document({[name]: node})
    const roles = d.getIn([name, 'roles'], true) as {flow?: boolean} | undefined
    if (roles) roles.flow = true
    rendered = d
      .toString({indent: step, flowCollectionPadding: false, lineWidth: 0})
      .trimEnd()
      .split('\n')
      .map((l) => indent + l)
      .join(eol)
  } else {
    rendered = `${indent}${name}: ${flowText(node)}`
  }
  // After the line that ends the last node (its inline comment included).
  const at = nextLineStart(text, Math.max(0, end - 1))
  const needsNewline = at === text.length && !text.endsWith('\n')
  return `${text.slice(0, at)}${needsNewline ? eol : ''}${rendered}${eol}${text.slice(at)}`
}

function flowText(node: NodeInput): string {
  const d = new Document(node)
  if (isMap(d.contents)) d.contents.flow = true
  return d.toString({flowCollectionPadding: false, lineWidth: 0}).trim()
}

function spliceRemove(text: string, name: string): string | undefined {
  const {nodes} = locateNodes(text)
  if (!nodes || nodes.flow) return undefined
  const pair = nodes.items.find((p) => isScalar(p.key) && String(p.key.value) === name)
  if (!pair) return undefined
  const keyNode = pair.key as YamlNode
  if (indentOf(text, keyNode) === undefined) return undefined
  const end = pairEnd(pair)
  if (end === undefined) return undefined
  const from = lineStart(text, keyNode.range![0])
  const to = nextLineStart(text, Math.max(from, end - 1))
  return text.slice(0, from) + text.slice(to)
}

function documentAdd(text: string, name: string, node: NodeInput): string {
  const doc = parseDocument(text, {merge: true})
  const value = doc.createNode(node) as YamlNode
  if (isMap(value)) value.flow = true
  const nodes = doc.get('nodes', true)
  if (isMap(nodes)) nodes.add(doc.createPair(name, value))
  else doc.set('nodes', doc.createNode({[name]: node}))
  return doc.toString({flowCollectionPadding: false, lineWidth: 0})
}

function documentRemove(text: string, name: string): string {
  const doc = parseDocument(text, {merge: true})
  const nodes = doc.get('nodes', true)
  if (isMap(nodes)) nodes.delete(name)
  return doc.toString({flowCollectionPadding: false, lineWidth: 0})
}
