import {isMap, isPair, isScalar, LineCounter, parseDocument, visit, type Document, type YAMLError} from 'yaml'
import {ConfigError} from '../errors.js'
import {
  configCandidates,
  displayPath,
  findConfigFile,
  MAX_CONFIG_BYTES,
  readConfigText,
  tooLarge,
} from './file.js'
import {formatPath, locate, problemsFromIssues} from './problems.js'
import {configSchema, type ParsedConfig, type Role} from './schema.js'

/** Line and column (1-based) of a path in a parsed document: the value, or `childKey`'s key. */
export function positionOf(
  doc: Document,
  lc: LineCounter,
  p: PropertyKey[],
  childKey?: string,
): {line: number; column: number} {
  return childKey === undefined ? locate(doc, lc, p, 'value') : locate(doc, lc, [...p, childKey], 'key')
}

export interface ResolvedNode {
  name: string
  host: string
  port: number
  user: string
  roles: Role[]
  weight?: number
}

export interface HactlConfig extends Omit<ParsedConfig, 'nodes'> {
  /** The file this config was read from. */
  file: string
  nodes: ResolvedNode[]
}

export {
  configCandidates,
  etcdEndpoints,
  expandHome,
  findConfigFile,
  MAX_CONFIG_BYTES,
  readConfigText,
} from './file.js'

/** YAML aliases expand; a handful of anchors is normal, thousands of expansions are an attack. */
const MAX_ALIAS_COUNT = 100

export function loadConfig(opts: Parameters<typeof configCandidates>[0] = {}): HactlConfig {
  const file = findConfigFile(opts)
  const text = readConfigText(file)
  const config = parseConfig(text, displayPath(file, opts.cwd ?? process.cwd()))
  return {...config, file}
}

/**
 * Parse and validate the text of a hactl.yaml. Every error is a ConfigError that names file, line
 * and column, says what is wrong and what is allowed; the first problem in the file is reported.
 */
export function parseConfig(text: string, file: string): HactlConfig {
  const {doc, lineCounter, raw} = parseYamlMapping(text, file)
  const result = configSchema.safeParse(raw, {reportInput: true})
  if (!result.success) {
    const [first] = problemsFromIssues(result.error.issues, doc, lineCounter)
    const problem = first!
    throw new ConfigError(problem.message, {
      position: {file, line: problem.line, column: problem.column},
      suggestions: problem.hints,
    })
  }
  return resolveConfig(result.data, file)
}

/**
 * The YAML layer of parseConfig: size, encoding, syntax, duplicate keys, aliases, and a mapping at
 * the top. Top-level keys starting with `x-` are dropped: they hold YAML anchors to reuse.
 */
export function parseYamlMapping(
  text: string,
  file: string,
): {doc: Document; lineCounter: LineCounter; raw: Record<string, unknown>} {
  const bytes = Buffer.byteLength(text, 'utf8')
  if (bytes > MAX_CONFIG_BYTES) throw tooLarge(file, bytes)
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1)
  const lineCounter = new LineCounter()
  const at = (offset: number) => {
    const p = lineCounter.linePos(offset)
    return {file, line: p.line, column: p.col}
  }
  const nul = text.indexOf('\0')
  const bad = text.indexOf('\uFFFD')
  if (nul >= 0 || bad >= 0) {
    // Positions need the line starts, which only the parser records: count them by hand here.
    const offset = nul >= 0 ? nul : bad
    const before = text.slice(0, offset).split('\n')
    throw new ConfigError(nul >= 0 ? 'this is a binary file, not YAML' : 'the file is not valid UTF-8', {
      position: {file, line: before.length, column: before.at(-1)!.length + 1},
      suggestions: [nul >= 0 ? 'is this the right file?' : 'save the file as UTF-8'],
    })
  }
  const doc = parseDocument(text, {
    lineCounter,
    uniqueKeys: true,
    prettyErrors: false,
    strict: true,
    merge: true,
  })
  const yamlError = [...doc.errors].sort((a, b) => a.pos[0] - b.pos[0])[0]
  if (yamlError) {
    const {message, hint, offset} = describeYamlError(yamlError, doc)
    throw new ConfigError(message, {
      position: at(offset ?? yamlError.pos[0]),
      suggestions: hint ? [hint] : [],
    })
  }
  let raw: unknown
  try {
    raw = doc.toJS({maxAliasCount: MAX_ALIAS_COUNT})
  } catch (error) {
    throw aliasError(error as Error, doc, at)
  }
  if (raw === null || raw === undefined) {
    throw new ConfigError('the file is empty (no YAML content, only comments or blank lines)', {
      position: {file, line: 1, column: 1},
      suggestions: [
        'start from the example in docs/config.md, or import one: hactl inventory import INVENTORY',
      ],
    })
  }
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    const got = Array.isArray(raw) ? 'a list' : `${typeof raw} ${JSON.stringify(raw)}`
    const contents = doc.contents as {range?: [number, number, number]} | null
    throw new ConfigError(`expected a mapping at the top level (cluster:, ssh:, nodes: ...), got ${got}`, {
      position: at(contents?.range?.[0] ?? 0),
      suggestions: ['a hactl.yaml starts with keys such as cluster: and nodes:, each at the start of a line'],
    })
  }
  const mapping = Object.fromEntries(Object.entries(raw).filter(([k]) => !k.startsWith('x-')))
  return {doc, lineCounter, raw: mapping}
}

function describeYamlError(e: YAMLError, doc: Document): {message: string; hint?: string; offset?: number} {
  const first = e.message.split('\n')[0]!.trim()
  switch (e.code) {
    case 'MISSING_CHAR': {
      // The parser notices a missing quote at the end of the file; the operator needs its start.
      const start = /quote/i.test(first) ? openQuoteBefore(doc, e.pos[0]) : undefined
      if (start !== undefined) {
        return {
          message: 'invalid YAML: the quoted string that starts here is never closed',
          hint: 'add the closing quote at the end of the value',
          offset: start,
        }
      }
      return {message: `invalid YAML: ${first.replace(/\.$/, '')}`}
    }
    case 'BAD_INDENT': {
      const flow = /^Flow (map|sequence)/.exec(first)
      const start = flow ? unclosedFlowAt(doc, e.pos[0]) : undefined
      if (flow && start !== undefined) {
        const [open, close] = flow[1] === 'map' ? ['{', '}'] : ['[', ']']
        return {
          message: `invalid YAML: the "${open}" here is not closed by "${close}"`,
          hint: `close it on the same line, or indent the lines that continue it further than its key`,
          offset: start,
        }
      }
      return {message: `invalid YAML: ${first.replace(/ at line \d+, column \d+:?$/, '').replace(/\.$/, '')}`}
    }
    case 'TAB_AS_INDENT':
      return {
        message: 'invalid YAML: a tab is used for indentation; YAML allows only spaces',
        hint: 'replace the tabs with spaces (expand -t 2 FILE)',
      }
    case 'DUPLICATE_KEY': {
      const found = keyAt(doc, e.pos[0])
      const name = found ? `"${found.key}"` : 'a key'
      const where =
        found && found.parent.length > 0
          ? ` in ${formatPath(found.parent)}`
          : found
            ? ' at the top level'
            : ''
      const isNode = found?.parent.length === 1 && found.parent[0] === 'nodes'
      return {
        message: `duplicate key ${name}${where}: ${isNode ? 'two nodes have the same name' : 'a key may appear only once in a mapping'}`,
        hint: isNode
          ? 'node names must be unique: rename or remove one of them'
          : 'remove one of them, or merge their values',
      }
    }
    case 'MULTIPLE_DOCS':
      return {
        message:
          'invalid YAML: the file holds more than one YAML document (a second "---"); hactl.yaml is a single document',
        hint: 'remove the second --- line, or split the file',
      }
    default:
      return {message: `invalid YAML: ${first.replace(/ at line \d+, column \d+:?$/, '').replace(/\.$/, '')}`}
  }
}

/** Start of the flow collection ({...} or [...]) that the parser gave up on at `offset`. */
function unclosedFlowAt(doc: Document, offset: number): number | undefined {
  let start: number | undefined
  const check = (node: {flow?: boolean; range?: [number, number, number] | null}) => {
    const r = node.range
    if (node.flow && r && (r[1] === offset || r[2] === offset)) start = r[0]
  }
  visit(doc, {Map: (_, n) => check(n), Seq: (_, n) => check(n)})
  return start
}

/** Start of the quoted scalar that runs up to `offset`, if any. */
function openQuoteBefore(doc: Document, offset: number): number | undefined {
  let start: number | undefined
  visit(doc, {
    Scalar(_, node) {
      const r = node.range
      if (
        r &&
        (node.type === 'QUOTE_DOUBLE' || node.type === 'QUOTE_SINGLE') &&
        r[0] <= offset &&
        offset <= r[2]
      ) {
        start = r[0]
        return visit.BREAK
      }
      return undefined
    },
  })
  return start
}

/** The key (and the path of its mapping) whose source starts at `offset`. */
function keyAt(doc: Document, offset: number): {key: string; parent: PropertyKey[]} | undefined {
  let found: {key: string; parent: PropertyKey[]} | undefined
  visit(doc, {
    Pair(_, pair, ancestors) {
      if (found) return visit.BREAK
      if (isScalar(pair.key) && pair.key.range?.[0] === offset) {
        found = {key: String(pair.key.value), parent: pathOf(ancestors)}
        return visit.BREAK
      }
      return undefined
    },
  })
  return found
}

function pathOf(ancestors: readonly unknown[]): PropertyKey[] {
  const out: PropertyKey[] = []
  for (let i = 0; i < ancestors.length; i++) {
    const a = ancestors[i]
    if (isPair(a) && isScalar(a.key)) out.push(String(a.key.value))
    else if (!isPair(a) && !isMap(a) && Array.isArray((a as {items?: unknown}).items)) {
      const next = ancestors[i + 1]
      const idx = (a as {items: unknown[]}).items.indexOf(next)
      if (idx >= 0) out.push(idx)
    }
  }
  return out
}

function aliasError(
  error: Error,
  doc: Document,
  at: (offset: number) => {file: string; line: number; column: number},
): ConfigError {
  const unresolved = /Unresolved alias.*: (.+)$/.exec(error.message)
  let offset = 0
  visit(doc, {
    Alias(_, node) {
      if (!unresolved || node.source === unresolved[1]) {
        offset = node.range?.[0] ?? 0
        return visit.BREAK
      }
      return undefined
    },
  })
  if (unresolved) {
    return new ConfigError(`invalid YAML: alias *${unresolved[1]} refers to no anchor defined before it`, {
      position: at(offset),
      suggestions: [`define the anchor first (&${unresolved[1]}), above the alias`],
    })
  }
  if (/alias/i.test(error.message)) {
    return new ConfigError(
      `invalid YAML: too many alias expansions (more than ${MAX_ALIAS_COUNT}); this is not a hactl.yaml`,
      {
        position: at(offset),
      },
    )
  }
  return new ConfigError(`invalid YAML: ${error.message}`, {position: at(0)})
}

function resolveConfig(parsed: ParsedConfig, file: string): HactlConfig {
  const nodes: ResolvedNode[] = Object.entries(parsed.nodes).map(([name, n]) => ({
    name,
    host: n.host,
    port: n.port ?? parsed.ssh.port,
    user: n.user ?? parsed.ssh.user,
    roles: [...new Set(n.roles)],
    ...(n.weight === undefined ? {} : {weight: n.weight}),
  }))
  const {nodes: _ignored, ...rest} = parsed
  return {...rest, file, nodes}
}
