import {existsSync, readdirSync, readFileSync, statSync} from 'node:fs'
import path from 'node:path'
import {
  isMap,
  isScalar,
  isSeq,
  LineCounter,
  parseDocument,
  type Document,
  type Node as YamlNode,
  type YAMLMap,
} from 'yaml'
import {ConfigError, UserError, type SourcePosition} from '../errors.js'
import {expandHostPattern, HostPatternError} from './host-pattern.js'

/**
 * Ansible inventories, read the way Ansible's `ini` and `yaml` inventory plugins read them: groups,
 * `[group:children]` / `children:`, `[group:vars]` / `vars:`, inline host vars, host ranges, the
 * implicit `all` and `ungrouped` groups, and `group_vars/` and `host_vars/` next to the inventory.
 * Variables are merged with Ansible's precedence (see `hostVars`). Nothing is templated: a value
 * with `{{ ... }}` stays a string, and the importer refuses to use it.
 */

export type InventoryFormat = 'ini' | 'yaml'

export interface InventoryHost {
  name: string
  /** Host variables from the inventory source(s), merged in the order they were declared. */
  vars: Record<string, unknown>
  /** Where the host was first declared. */
  source: SourcePosition
}

export interface InventoryGroup {
  name: string
  /** Direct members, in declaration order. */
  hosts: string[]
  children: string[]
  vars: Record<string, unknown>
  source?: SourcePosition
}

export interface AnsibleInventory {
  /** The inventory files read (not group_vars/host_vars). */
  files: Array<{file: string; format: InventoryFormat}>
  /** Every group, including `all` and `ungrouped`, in declaration order. */
  groups: Map<string, InventoryGroup>
  /** Every host, in order of first declaration. */
  hosts: Map<string, InventoryHost>
  /** Variables from group_vars/<group> and host_vars/<host> files. */
  groupVarsFiles: Map<string, Record<string, unknown>>
  hostVarsFiles: Map<string, Record<string, unknown>>
  /** Things Ansible would warn about, or that were skipped. */
  warnings: string[]
}

export function emptyInventory(): AnsibleInventory {
  const inv: AnsibleInventory = {
    files: [],
    groups: new Map(),
    hosts: new Map(),
    groupVarsFiles: new Map(),
    hostVarsFiles: new Map(),
    warnings: [],
  }
  ensureGroup(inv, 'all')
  ensureGroup(inv, 'ungrouped')
  return inv
}

function ensureGroup(inv: AnsibleInventory, name: string, source?: SourcePosition): InventoryGroup {
  let g = inv.groups.get(name)
  if (!g) {
    g = {name, hosts: [], children: [], vars: {}, ...(source ? {source} : {})}
    inv.groups.set(name, g)
  } else if (!g.source && source) g.source = source
  return g
}

function addHost(
  inv: AnsibleInventory,
  group: string,
  name: string,
  vars: Record<string, unknown>,
  source: SourcePosition,
): void {
  let h = inv.hosts.get(name)
  if (!h) {
    h = {name, vars: {}, source}
    inv.hosts.set(name, h)
  }
  Object.assign(h.vars, vars)
  const g = ensureGroup(inv, group)
  if (!g.hosts.includes(name)) g.hosts.push(name)
}

function addChild(inv: AnsibleInventory, parent: string, child: string, source: SourcePosition): void {
  if (parent === child)
    throw new ConfigError(`group ${parent} cannot be a child of itself`, {position: source})
  const p = ensureGroup(inv, parent)
  ensureGroup(inv, child)
  // Adding the edge must not make a loop: is parent reachable from child?
  const seen = new Set<string>()
  const stack = [child]
  while (stack.length > 0) {
    const g = stack.pop()!
    if (g === parent) {
      throw new ConfigError(`making ${child} a child of ${parent} creates a loop of groups`, {
        position: source,
      })
    }
    if (seen.has(g)) continue
    seen.add(g)
    stack.push(...(inv.groups.get(g)?.children ?? []))
  }
  if (!p.children.includes(child)) p.children.push(child)
}

/** Give `all` its children and `ungrouped` its hosts, as Ansible does after reading every source. */
export function reconcileInventory(inv: AnsibleInventory): AnsibleInventory {
  const all = ensureGroup(inv, 'all')
  const ungrouped = ensureGroup(inv, 'ungrouped')
  const hasParent = new Set<string>()
  for (const g of inv.groups.values()) for (const c of g.children) hasParent.add(c)
  for (const g of inv.groups.values()) {
    if (g.name !== 'all' && !hasParent.has(g.name) && !all.children.includes(g.name))
      all.children.push(g.name)
  }
  const inSomeGroup = new Set<string>()
  for (const g of inv.groups.values()) {
    if (g.name === 'all' || g.name === 'ungrouped') continue
    for (const h of g.hosts) inSomeGroup.add(h)
  }
  // As in Ansible: a host that no real group has is ungrouped, and only such a host.
  ungrouped.hosts = [...inv.hosts.keys()].filter((h) => !inSomeGroup.has(h))
  return inv
}

// ---------------------------------------------------------------------------------------------
// INI

const SECTION_RE = /^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?$/
const GROUP_NAME_RE = /^([^:\]\s]+)\s*(?:#.*)?$/

/** Parse an INI inventory into `inv` (a fresh one by default). */
export function parseIniInventory(
  text: string,
  file: string,
  inv: AnsibleInventory = emptyInventory(),
): AnsibleInventory {
  inv.files.push({file, format: 'ini'})
  let group = 'ungrouped'
  let state: 'hosts' | 'children' | 'vars' = 'hosts'
  // Groups referenced (as children, or by :vars) before they are declared.
  const pending = new Map<string, {state: 'children' | 'vars'; parents: string[]; position: SourcePosition}>()
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/)
  lines.forEach((raw, i) => {
    const line = raw.trim()
    if (line === '' || line.startsWith('#') || line.startsWith(';')) return
    const position = {file, line: i + 1, column: raw.length - raw.trimStart().length + 1}
    const section = SECTION_RE.exec(line)
    if (section) {
      group = section[1]!
      const kind = section[2] ?? 'hosts'
      if (kind !== 'hosts' && kind !== 'children' && kind !== 'vars') {
        throw new ConfigError(
          `section [${group}:${kind}] has an unknown type "${kind}"; allowed: [${group}], [${group}:children], [${group}:vars]`,
          {
            position,
          },
        )
      }
      state = kind
      if (!inv.groups.has(group) && state === 'vars' && !pending.has(group)) {
        pending.set(group, {state: 'vars', parents: [], position})
      }
      ensureGroup(inv, group, state === 'vars' ? undefined : position)
      const waiting = pending.get(group)
      if (waiting && state !== 'vars') {
        if (waiting.state === 'children')
          for (const parent of waiting.parents) addChild(inv, parent, group, waiting.position)
        pending.delete(group)
      }
      return
    }
    if (line.startsWith('[') && line.endsWith(']')) {
      throw new ConfigError(
        `invalid section "${line}": a section is [group], [group:children] or [group:vars], with no spaces`,
        {position},
      )
    }
    if (state === 'hosts') {
      const {tokens, error} = shlexSplit(line)
      if (error) throw new ConfigError(`cannot parse the host line: ${error}`, {position})
      if (tokens.length === 0) return
      const vars: Record<string, unknown> = {}
      for (const t of tokens.slice(1)) {
        const eq = t.indexOf('=')
        if (eq <= 0) {
          throw new ConfigError(`expected key=value after the host name, got "${t}"`, {
            position,
            suggestions: ['host variables are written key=value; quote values with spaces: key="a b"'],
          })
        }
        vars[t.slice(0, eq)] = parseIniValue(t.slice(eq + 1))
      }
      let expanded
      try {
        expanded = expandHostPattern(tokens[0]!)
      } catch (error) {
        if (error instanceof HostPatternError) throw new ConfigError(error.message, {position})
        throw error
      }
      for (const h of expanded.hosts) {
        addHost(
          inv,
          group,
          h,
          expanded.port === undefined ? vars : {ansible_port: expanded.port, ...vars},
          position,
        )
      }
    } else if (state === 'vars') {
      const eq = line.indexOf('=')
      if (eq <= 0) throw new ConfigError(`expected key=value in [${group}:vars], got "${line}"`, {position})
      ensureGroup(inv, group).vars[line.slice(0, eq).trim()] = parseIniValue(line.slice(eq + 1).trim())
    } else {
      const m = GROUP_NAME_RE.exec(line)
      if (!m) throw new ConfigError(`expected a group name in [${group}:children], got "${line}"`, {position})
      const child = m[1]!
      if (inv.groups.has(child)) addChild(inv, group, child, position)
      else {
        const waiting = pending.get(child)
        if (waiting) waiting.parents.push(group)
        else pending.set(child, {state: 'children', parents: [group], position})
      }
    }
  })
  for (const [name, p] of pending) {
    if (p.state === 'vars') {
      throw new ConfigError(`section [${name}:vars] is for a group that is never declared`, {
        position: p.position,
        suggestions: [`declare it with [${name}] (hosts) or list it under some [parent:children]`],
      })
    }
    throw new ConfigError(`[${p.parents.at(-1)}:children] lists group ${name}, which is never declared`, {
      position: p.position,
      suggestions: [`add a [${name}] section with its hosts`],
    })
  }
  return inv
}

/**
 * Split a host line like Python's `shlex.split(line, comments=True)`: whitespace separates,
 * quotes group, backslash escapes, and `#` outside quotes starts a comment.
 */
export function shlexSplit(line: string): {tokens: string[]; error?: string} {
  const tokens: string[] = []
  let cur = ''
  let inToken = false
  let quote: '"' | "'" | undefined
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!
    if (quote === "'") {
      if (ch === "'") quote = undefined
      else cur += ch
      continue
    }
    if (quote === '"') {
      if (ch === '"') quote = undefined
      else if (ch === '\\' && (line[i + 1] === '"' || line[i + 1] === '\\')) cur += line[++i]
      else cur += ch
      continue
    }
    if (ch === '#') break
    if (/\s/.test(ch)) {
      if (inToken) tokens.push(cur)
      cur = ''
      inToken = false
      continue
    }
    inToken = true
    if (ch === "'" || ch === '"') quote = ch
    else if (ch === '\\') {
      if (i + 1 < line.length) cur += line[++i]
    } else cur += ch
  }
  if (quote) return {tokens, error: 'no closing quotation'}
  if (inToken) tokens.push(cur)
  return {tokens}
}

/**
 * An INI value as Ansible's `ast.literal_eval` attempt reads it: Python numbers, True/False/None
 * and quoted strings become typed values; anything else stays the string it is (comments included,
 * as in Ansible).
 */
export function parseIniValue(v: string): unknown {
  const literal = pythonLiteral(v.trim())
  if (literal.ok) return literal.value
  // Python's parser drops a trailing comment after a literal: `8080 # port` is 8080.
  const hash = /^(.*?)\s+#.*$/.exec(v.trim())
  if (hash) {
    const before = pythonLiteral(hash[1]!)
    if (before.ok) return before.value
  }
  return v
}

function pythonLiteral(t: string): {ok: true; value: unknown} | {ok: false} {
  if (/^[-+]?(0|[1-9][0-9_]*)$/.test(t)) return {ok: true, value: Number(t.replace(/_/g, ''))}
  if (/^[-+]?(\d+\.\d*|\.\d+|\d+)([eE][-+]?\d+)?$/.test(t) && /[.eE]/.test(t))
    return {ok: true, value: Number(t)}
  if (t === 'True') return {ok: true, value: true}
  if (t === 'False') return {ok: true, value: false}
  if (t === 'None') return {ok: true, value: null}
  const q = /^(['"])(.*)\1$/s.exec(t)
  if (q && !new RegExp(`(^|[^\\\\])${q[1]}`).test(q[2]!)) {
    return {
      ok: true,
      value: q[2]!.replace(
        /\\(.)/g,
        (_, c: string) => ({n: '\n', t: '\t', r: '\r', '\\': '\\', "'": "'", '"': '"'})[c] ?? `\\${c}`,
      ),
    }
  }
  return {ok: false}
}

// ---------------------------------------------------------------------------------------------
// YAML

/** Parse a YAML (or JSON) inventory into `inv` (a fresh one by default). */
export function parseYamlInventory(
  text: string,
  file: string,
  inv: AnsibleInventory = emptyInventory(),
): AnsibleInventory {
  inv.files.push({file, format: 'yaml'})
  const lc = new LineCounter()
  // PyYAML reads YAML 1.1: yes/no are booleans there, and duplicate keys are allowed (last wins).
  const doc = parseDocument(text.replace(/^\uFEFF/, ''), {
    lineCounter: lc,
    version: '1.1',
    uniqueKeys: false,
    prettyErrors: false,
  })
  const pos = (n: unknown): SourcePosition => {
    const p = lc.linePos((n as YamlNode | null)?.range?.[0] ?? 0)
    return {file, line: p.line, column: p.col}
  }
  const err = doc.errors[0]
  if (err) {
    const p = lc.linePos(err.pos[0])
    throw new ConfigError(`invalid YAML: ${err.message.split('\n')[0]}`, {
      position: {file, line: p.line, column: p.col},
    })
  }
  const top = doc.contents
  if (top === null || (isScalar(top) && (top.value === null || top.value === ''))) {
    throw new ConfigError('the inventory is empty', {position: {file, line: 1, column: 1}})
  }
  if (!isMap(top)) {
    throw new ConfigError('a YAML inventory is a mapping of groups (all:, then hosts:, vars:, children:)', {
      position: pos(top),
    })
  }
  if (top.items.some((p) => isScalar(p.key) && p.key.value === 'plugin')) {
    throw new ConfigError('this is the configuration of an inventory plugin, not an inventory', {
      position: pos(top),
      suggestions: ['dump the inventory first: ansible-inventory -i FILE --list --yaml > inventory.yml'],
    })
  }
  for (const pair of top.items) parseYamlGroup(inv, doc, keyName(pair.key), pair.value, pos(pair.key), pos)
  return inv
}

function keyName(k: unknown): string {
  return isScalar(k) ? String(k.value) : String(k)
}

function toJS(doc: Document, n: unknown): unknown {
  return n && typeof n === 'object' && 'toJSON' in n ? (n as YamlNode).toJS(doc, {maxAliasCount: 100}) : n
}

function parseYamlGroup(
  inv: AnsibleInventory,
  doc: Document,
  name: string,
  data: unknown,
  at: SourcePosition,
  pos: (n: unknown) => SourcePosition,
): void {
  const isNull = data === null || data === undefined || (isScalar(data) && data.value === null)
  if (!isNull && !isMap(data)) {
    inv.warnings.push(`${fmt(at)}: skipped "${name}": a group is a mapping of hosts:, vars: and children:`)
    return
  }
  ensureGroup(inv, name, at)
  if (isNull) return
  for (const pair of (data as YAMLMap).items) {
    const section = keyName(pair.key)
    let value = pair.value as unknown
    if (
      isScalar(value) &&
      typeof value.value === 'string' &&
      (section === 'hosts' || section === 'children')
    ) {
      // `hosts: web1` means one host, as in Ansible.
      value = doc.createNode({[value.value]: null})
      ;(value as YamlNode).range = (pair.value as YamlNode).range
    }
    if (value === null || (isScalar(value) && value.value === null)) continue
    if (section !== 'hosts' && section !== 'vars' && section !== 'children') {
      inv.warnings.push(
        `${fmt(pos(pair.key))}: skipped key "${section}" in group ${name}: only hosts, vars and children are valid`,
      )
      continue
    }
    if (!isMap(value)) {
      throw new ConfigError(
        `"${section}" of group ${name} must be a mapping, got ${isSeq(value) ? 'a list' : 'a scalar'}`,
        {
          position: pos(value),
          suggestions:
            section === 'hosts' ? ['write hosts as keys: "hosts:" then "  coreos0:" on its own line'] : [],
        },
      )
    }
    if (section === 'vars') {
      for (const v of value.items) ensureGroup(inv, name).vars[keyName(v.key)] = toJS(doc, v.value)
    } else if (section === 'children') {
      for (const c of value.items) {
        const child = keyName(c.key)
        parseYamlGroup(inv, doc, child, c.value, pos(c.key), pos)
        addChild(inv, name, child, pos(c.key))
      }
    } else {
      for (const h of value.items) {
        const pattern = keyName(h.key)
        const hostVars = toJS(doc, h.value)
        if (
          hostVars !== null &&
          hostVars !== undefined &&
          (typeof hostVars !== 'object' || Array.isArray(hostVars))
        ) {
          throw new ConfigError(
            `host ${pattern}: its variables must be a mapping (key: value), got ${Array.isArray(hostVars) ? 'a list' : JSON.stringify(hostVars)}`,
            {
              position: pos(h.value),
            },
          )
        }
        let expanded
        try {
          expanded = expandHostPattern(pattern)
        } catch (error) {
          if (error instanceof HostPatternError) throw new ConfigError(error.message, {position: pos(h.key)})
          throw error
        }
        const vars = (hostVars ?? {}) as Record<string, unknown>
        for (const host of expanded.hosts) {
          addHost(
            inv,
            name,
            host,
            expanded.port === undefined ? vars : {ansible_port: expanded.port, ...vars},
            pos(h.key),
          )
        }
      }
    }
  }
}

function fmt(p: SourcePosition): string {
  return `${p.file}:${p.line}:${p.column}`
}

// ---------------------------------------------------------------------------------------------
// Files and directories

/** Files Ansible skips in an inventory directory (INVENTORY_IGNORE_EXTS). */
const IGNORED_EXTS = [
  '.pyc',
  '.pyo',
  '.swp',
  '.bak',
  '~',
  '.rpm',
  '.md',
  '.txt',
  '.rst',
  '.orig',
  '.ini',
  '.cfg',
  '.retry',
]
const YAML_EXTS = ['.yml', '.yaml', '.json']

/** ini or yaml, by extension, else by the first line that says something. */
export function detectFormat(file: string, text: string): InventoryFormat {
  const ext = path.extname(file).toLowerCase()
  if (YAML_EXTS.includes(ext)) return 'yaml'
  if (ext === '.ini') return 'ini'
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim()
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue
    if (line === '---' || line.startsWith('{') || /^[^\s=[\]]+:\s*(#.*)?$/.test(line)) return 'yaml'
    return 'ini'
  }
  return 'ini'
}

/**
 * Read an inventory file or directory (as `ansible -i PATH` would), plus group_vars/ and host_vars/
 * beside it. Refuses what it cannot read with a UserError or ConfigError naming the file.
 */
export function loadAnsibleInventory(p: string, opts: {format?: InventoryFormat} = {}): AnsibleInventory {
  if (!existsSync(p))
    throw new UserError(`inventory not found: ${p}`, [
      'pass the inventory file Ansible uses (ansible -i FILE)',
    ])
  const inv = emptyInventory()
  const st = statSync(p)
  let varsDir: string
  if (st.isDirectory()) {
    varsDir = p
    const entries = readdirSync(p).sort()
    for (const e of entries) {
      const f = path.join(p, e)
      if (e.startsWith('.') || e === 'group_vars' || e === 'host_vars') continue
      if (statSync(f).isDirectory()) continue
      if (IGNORED_EXTS.some((x) => e.endsWith(x))) {
        inv.warnings.push(
          `skipped ${f}: Ansible ignores ${path.extname(e) || e} files in an inventory directory (pass the file itself to import it)`,
        )
        continue
      }
      readInventoryFile(inv, f, opts.format)
    }
    if (inv.files.length === 0)
      throw new UserError(`no inventory files in ${p}`, ['pass the inventory file itself'])
  } else {
    varsDir = path.dirname(p)
    readInventoryFile(inv, p, opts.format)
  }
  reconcileInventory(inv)
  readVarsDirs(inv, varsDir)
  return inv
}

function readInventoryFile(inv: AnsibleInventory, file: string, format?: InventoryFormat): void {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (error) {
    throw new UserError(`cannot read ${file}: ${(error as Error).message}`)
  }
  if (text.length > 16 * 1024 * 1024)
    throw new UserError(`${file} is larger than 16 MiB; that is not an inventory`)
  if (text.startsWith('#!')) {
    throw new UserError(`${file} is an inventory script; hactl reads static inventories`, [
      `dump it first: ansible-inventory -i ${file} --list --yaml > inventory.yml`,
    ])
  }
  if (text.startsWith('$ANSIBLE_VAULT')) {
    throw new UserError(`${file} is encrypted with ansible-vault`, [
      `decrypt a copy first: ansible-vault view ${file} > plain-inventory`,
    ])
  }
  const f = format ?? detectFormat(file, text)
  if (f === 'yaml') parseYamlInventory(text, file, inv)
  else parseIniInventory(text, file, inv)
}

/** group_vars/<group>[.yml|.yaml|.json|/] and host_vars/<host>[...] beside the inventory. */
function readVarsDirs(inv: AnsibleInventory, dir: string): void {
  for (const [kind, names, target] of [
    ['group_vars', [...inv.groups.keys()], inv.groupVarsFiles],
    ['host_vars', [...inv.hosts.keys()], inv.hostVarsFiles],
  ] as const) {
    const base = path.join(dir, kind)
    if (!existsSync(base)) continue
    for (const name of names) {
      const vars: Record<string, unknown> = {}
      let found = false
      for (const f of varsFilesFor(base, name)) {
        found = true
        Object.assign(vars, readVarsFile(inv, f))
      }
      if (found) target.set(name, vars)
    }
  }
}

function varsFilesFor(base: string, name: string): string[] {
  const out: string[] = []
  for (const cand of [name, ...YAML_EXTS.map((e) => name + e)]) {
    const f = path.join(base, cand)
    if (!existsSync(f)) continue
    if (statSync(f).isDirectory()) {
      for (const e of readdirSync(f).sort()) {
        const inner = path.join(f, e)
        if (
          !e.startsWith('.') &&
          statSync(inner).isFile() &&
          (YAML_EXTS.includes(path.extname(e)) || path.extname(e) === '')
        ) {
          out.push(inner)
        }
      }
    } else out.push(f)
  }
  return out
}

function readVarsFile(inv: AnsibleInventory, file: string): Record<string, unknown> {
  const text = readFileSync(file, 'utf8')
  if (text.startsWith('$ANSIBLE_VAULT')) {
    inv.warnings.push(`skipped ${file}: encrypted with ansible-vault`)
    return {}
  }
  const lc = new LineCounter()
  const doc = parseDocument(text, {lineCounter: lc, version: '1.1', uniqueKeys: false, prettyErrors: false})
  const err = doc.errors[0]
  if (err) {
    const p = lc.linePos(err.pos[0])
    throw new ConfigError(`invalid YAML: ${err.message.split('\n')[0]}`, {
      position: {file, line: p.line, column: p.col},
    })
  }
  const data = doc.toJS({maxAliasCount: 100}) as unknown
  if (data === null || data === undefined) return {}
  if (typeof data !== 'object' || Array.isArray(data)) {
    throw new ConfigError('a vars file is a mapping of variable names to values', {
      position: {file, line: 1, column: 1},
    })
  }
  return data as Record<string, unknown>
}

// ---------------------------------------------------------------------------------------------
// Queries

/** Every host in a group or its descendants, in inventory order. `all` is every host. */
export function groupMembers(inv: AnsibleInventory, group: string): string[] {
  if (group === 'all') return [...inv.hosts.keys()]
  const members = new Set<string>()
  const seen = new Set<string>()
  const stack = [group]
  while (stack.length > 0) {
    const g = inv.groups.get(stack.pop()!)
    if (!g || seen.has(g.name)) continue
    seen.add(g.name)
    for (const h of g.hosts) members.add(h)
    stack.push(...g.children)
  }
  return [...inv.hosts.keys()].filter((h) => members.has(h))
}

/** Groups a host belongs to, directly or through children, `all` included. */
export function groupsOfHost(inv: AnsibleInventory, host: string): string[] {
  return [...inv.groups.keys()].filter((g) => groupMembers(inv, g).includes(host))
}

/** Distance from `all`: all is 0, its children 1, theirs 2 (the longest path counts, as in Ansible). */
function groupDepths(inv: AnsibleInventory): Map<string, number> {
  const depth = new Map<string, number>([['all', 0]])
  const visit = (g: string, d: number) => {
    if ((depth.get(g) ?? -1) >= d && g !== 'all') return
    if (g !== 'all') depth.set(g, d)
    for (const c of inv.groups.get(g)?.children ?? []) visit(c, d + 1)
  }
  visit('all', 0)
  for (const g of inv.groups.keys()) if (!depth.has(g)) depth.set(g, 1)
  return depth
}

/**
 * A host's variables with Ansible's precedence, lowest first: inventory group vars (all, then
 * parents before children, then ansible_group_priority, then name), group_vars/all,
 * group_vars/<group> (same order), inventory host vars, host_vars/<host>.
 */
export function hostVars(inv: AnsibleInventory, host: string): Record<string, unknown> {
  const h = inv.hosts.get(host)
  if (!h) return {}
  const depth = groupDepths(inv)
  const priority = (g: string) => {
    const p = Number(
      inv.groupVarsFiles.get(g)?.ansible_group_priority ??
        inv.groups.get(g)?.vars.ansible_group_priority ??
        1,
    )
    return Number.isFinite(p) ? p : 1
  }
  const groups = groupsOfHost(inv, host).sort(
    (a, b) => (depth.get(a) ?? 1) - (depth.get(b) ?? 1) || priority(a) - priority(b) || a.localeCompare(b),
  )
  return Object.assign(
    {},
    ...groups.map((g) => inv.groups.get(g)?.vars ?? {}),
    ...groups.map((g) => inv.groupVarsFiles.get(g) ?? {}),
    h.vars,
    inv.hostVarsFiles.get(host) ?? {},
  ) as Record<string, unknown>
}
