import {existsSync, readFileSync} from 'node:fs'
import {homedir} from 'node:os'
import path from 'node:path'
import {isMap, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node as YamlNode} from 'yaml'
import type {z} from 'zod'
import {ConfigError} from '../errors.js'
import {configSchema, type ParsedConfig, type Role} from './schema.js'

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

/** Where hactl looks for its config, in order: --config, HACTL_CONFIG, ./hactl.yaml, ~/.config/hactl/config.yaml. */
export function configCandidates(opts: {flag?: string; env?: NodeJS.ProcessEnv; cwd?: string; home?: string} = {}): string[] {
  const env = opts.env ?? process.env
  const cwd = opts.cwd ?? process.cwd()
  const home = opts.home ?? homedir()
  if (opts.flag) return [path.resolve(cwd, expandHome(opts.flag, home))]
  if (env.HACTL_CONFIG) return [path.resolve(cwd, expandHome(env.HACTL_CONFIG, home))]
  return [path.join(cwd, 'hactl.yaml'), path.join(home, '.config', 'hactl', 'config.yaml')]
}

export function findConfigFile(opts: Parameters<typeof configCandidates>[0] = {}): string {
  const candidates = configCandidates(opts)
  for (const c of candidates) if (existsSync(c)) return c
  const explicit = Boolean(opts.flag || (opts.env ?? process.env).HACTL_CONFIG)
  throw new ConfigError(
    explicit ? `config file not found: ${candidates[0]}` : `no hactl.yaml found (looked in ${candidates.join(', ')})`,
    {
      suggestions: [
        'point hactl at one with --config FILE or HACTL_CONFIG=FILE',
        'import one from Ansible: hactl inventory import INVENTORY',
        'or try the local lab: sudo hactl lab up',
      ],
    },
  )
}

export function loadConfig(opts: Parameters<typeof configCandidates>[0] = {}): HactlConfig {
  const file = findConfigFile(opts)
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (error) {
    throw new ConfigError(`cannot read ${file}: ${(error as Error).message}`)
  }
  return parseConfig(text, file)
}

/** Parse and validate the text of a hactl.yaml. Every error names file, line and column. */
export function parseConfig(text: string, file: string): HactlConfig {
  if (text.length > 4 * 1024 * 1024) throw new ConfigError(`${file} is larger than 4 MiB; that is not a hactl.yaml`)
  const lineCounter = new LineCounter()
  const doc = parseDocument(text, {lineCounter, uniqueKeys: true, prettyErrors: false, strict: true})
  const yamlError = doc.errors[0]
  if (yamlError) {
    const pos = lineCounter.linePos(yamlError.pos[0])
    const msg = yamlError.code === 'DUPLICATE_KEY' ? `duplicate key: ${describeDuplicate(yamlError.message)}` : firstLine(yamlError.message)
    throw new ConfigError(`invalid YAML: ${msg}`, {position: {file, line: pos.line, column: pos.col}})
  }
  const raw: unknown = doc.toJS({maxAliasCount: 100})
  if (raw === null || raw === undefined) throw new ConfigError('the file is empty', {position: {file, line: 1, column: 1}, suggestions: ['see the example in README.md ("Configuration")']})
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError('expected a mapping at the top level (cluster:, ssh:, nodes: ...)', {position: {file, line: 1, column: 1}})
  }
  const result = configSchema.safeParse(raw, {reportInput: true})
  if (!result.success) {
    const issue = result.error.issues[0]!
    throw new ConfigError(describeIssue(issue), {position: {file, ...positionOf(doc, lineCounter, issue.path, issue.code === 'unrecognized_keys' ? (issue as {keys: string[]}).keys[0] : undefined)}})
  }
  return resolveConfig(result.data, file, doc, lineCounter)
}

function resolveConfig(parsed: ParsedConfig, file: string, doc: Document, lc: LineCounter): HactlConfig {
  const nodes: ResolvedNode[] = Object.entries(parsed.nodes).map(([name, n]) => ({
    name,
    host: n.host,
    port: n.port ?? parsed.ssh.port,
    user: n.user ?? parsed.ssh.user,
    roles: [...new Set(n.roles)],
    ...(n.weight === undefined ? {} : {weight: n.weight}),
  }))
  // Two names for one host:port would make every operation run twice on the same box.
  const seen = new Map<string, string>()
  for (const n of nodes) {
    const key = `${n.host}:${n.port}`
    const other = seen.get(key)
    if (other) {
      throw new ConfigError(`nodes ${other} and ${n.name} have the same host ${n.host} and port ${n.port}`, {
        position: {file, ...positionOf(doc, lc, ['nodes', n.name, 'host'])},
        suggestions: ['each node must be a different machine; remove one of them'],
      })
    }
    seen.set(key, n.name)
  }
  for (const p of parsed.etcd.wipe) {
    if (p.startsWith('/') || p.split('/').some((seg) => seg === '..' || seg === '.' || seg === '') ) {
      throw new ConfigError(`etcd.wipe entry "${p}" must be a path inside etcd.dataDir (relative, no "..")`, {
        position: {file, ...positionOf(doc, lc, ['etcd', 'wipe', parsed.etcd.wipe.indexOf(p)])},
        suggestions: ['use sub-paths such as member, or log and conf for etcd 0.4'],
      })
    }
  }
  if (parsed.etcd.dataDir === '/' || parsed.etcd.dataDir.split('/').includes('..')) {
    throw new ConfigError(`etcd.dataDir "${parsed.etcd.dataDir}" is not a data directory hactl may wipe in`, {
      position: {file, ...positionOf(doc, lc, ['etcd', 'dataDir'])},
    })
  }
  const {nodes: _ignored, ...rest} = parsed
  return {...rest, file, nodes}
}

function describeIssue(issue: z.core.$ZodIssue): string {
  const at = issue.path.length > 0 ? issue.path.join('.') : 'top level'
  switch (issue.code) {
    case 'unrecognized_keys': {
      const allowed = allowedKeys(issue.path)
      return `unknown key "${issue.keys.join('", "')}" in ${at}${allowed ? `; allowed: ${allowed.join(', ')}` : ''}`
    }
    case 'invalid_type': {
      const got = issue.input === undefined ? 'nothing' : Array.isArray(issue.input) ? 'a list' : issue.input === null ? 'null' : typeof issue.input === 'object' ? 'a mapping' : `${typeof issue.input} ${JSON.stringify(issue.input)}`
      if (issue.input === undefined) return `${at} is required (${expectedName(issue.expected)})`
      return `${at}: expected ${expectedName(issue.expected)}, got ${got}`
    }
    case 'invalid_value':
      return `${at}: ${JSON.stringify(issue.input)} is not allowed; allowed: ${issue.values.map((v) => String(v)).join(', ')}`
    case 'invalid_union':
      return `${at}: ${JSON.stringify(issue.input)} is not valid: expected a duration such as 500ms, 5s, 2m or 1h`
    case 'too_small':
      return `${at}: ${issue.message.replace(/^Too small: /, '')}`
    case 'too_big':
      return `${at}: ${issue.message.replace(/^Too big: /, '')}`
    case 'invalid_key':
      return `nodes: invalid node name ${JSON.stringify(issue.path.at(-1) ?? '')}: node names are lower-case letters, digits and "-", 1-63 characters`
    default:
      return `${at}: ${issue.message}${issue.input === undefined ? '' : ` (got ${JSON.stringify(issue.input)})`}`
  }
}

function expectedName(expected: string): string {
  return (
    {string: 'a string', number: 'a number', boolean: 'true or false', object: 'a mapping', array: 'a list', record: 'a mapping'}[expected] ?? expected
  )
}

function allowedKeys(p: PropertyKey[]): string[] | undefined {
  let schema: unknown = configSchema
  for (const seg of p) {
    schema = unwrap(schema)
    const shape = (schema as {shape?: Record<string, unknown>}).shape
    if (shape && typeof seg === 'string' && seg in shape) schema = shape[seg]
    else if ((schema as {_zod?: {def?: {type?: string; valueType?: unknown}}})._zod?.def?.type === 'record') schema = (schema as {_zod: {def: {valueType: unknown}}})._zod.def.valueType
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
    if ((def.type === 'default' || def.type === 'optional' || def.type === 'prefault') && def.innerType) s = def.innerType as typeof s
    else if (def.type === 'pipe' && def.in) s = def.in as typeof s
    else break
  }
  return s
}

/** Line and column (1-based) of a path in the document: the value if present, else its key, else the parent. */
export function positionOf(doc: Document, lc: LineCounter, p: PropertyKey[], childKey?: string): {line: number; column: number} {
  let node: YamlNode | null | undefined = doc.contents as YamlNode
  let best: YamlNode | null | undefined = node
  const full = childKey === undefined ? p : [...p, childKey]
  for (const seg of full) {
    if (isMap(node)) {
      const pair: {key: unknown; value: unknown} | undefined = node.items.find(
        (it: {key: unknown}) => isScalar(it.key) && String(it.key.value) === String(seg),
      )
      if (!pair) break
      const keyNode = pair.key as YamlNode
      if (seg === childKey) {
        node = keyNode
        best = keyNode
        break
      }
      node = (pair.value as YamlNode | null) ?? keyNode
      best = node
    } else if (isSeq(node) && typeof seg === 'number') {
      node = node.items[seg] as YamlNode | undefined
      if (!node) break
      best = node
    } else break
  }
  const offset = best?.range?.[0] ?? 0
  const pos = lc.linePos(offset)
  return {line: pos.line, column: pos.col}
}

function describeDuplicate(message: string): string {
  return firstLine(message).replace(/^Map keys must be unique.*$/, 'the same key appears twice in one mapping (a node listed twice?)')
}

function firstLine(s: string): string {
  return s.split('\n')[0]!.trim()
}

export function expandHome(p: string, home = homedir()): string {
  if (p === '~') return home
  if (p.startsWith('~/')) return path.join(home, p.slice(2))
  return p
}

/** etcd client endpoints: configured, or derived from the etcd nodes. */
export function etcdEndpoints(config: HactlConfig): string[] {
  if (config.etcd.endpoints.length > 0) return config.etcd.endpoints
  const scheme = config.etcd.tls ? 'https' : 'http'
  return config.nodes
    .filter((n) => n.roles.includes('etcd'))
    .map((n) => `${scheme}://${n.host.includes(':') && !n.host.startsWith('[') ? `[${n.host}]` : n.host}:${config.etcd.clientPort}`)
}
