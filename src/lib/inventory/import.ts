import {existsSync, renameSync, unlinkSync, writeFileSync} from 'node:fs'
import path from 'node:path'
import {Document, isMap, isSeq, type Node as YamlNode, type Pair, type Scalar} from 'yaml'
import {ConfigError, UserError} from '../errors.js'
import {parseConfig} from '../config/load.js'
import {sanitizeName} from '../config/problems.js'
import {
  CLUSTER_NAME_RE,
  HOST_RE,
  NODE_NAME_RE,
  RESERVED_NODE_NAMES,
  ROLES,
  type Role,
} from '../config/schema.js'
import {
  groupMembers,
  groupsOfHost,
  hostVars,
  loadAnsibleInventory,
  type AnsibleInventory,
  type InventoryFormat,
} from './ansible.js'

/**
 * Ansible inventory → hactl.yaml: groups become roles, inventory hosts become nodes, the
 * connection variables become ssh settings. The result is validated with the same parser every
 * command uses before anything is written.
 */

/** Which inventory groups give which role, unless the operator says otherwise. etcd: CoreOS runs it on every host. */
export const ROLE_GROUP_DEFAULTS: Readonly<Record<Role, readonly string[]>> = {
  asterisk: ['asterisk'],
  kamailio: ['kamailio'],
  etcd: ['all'],
  homer: ['homer'],
}

/** A role group of `none` gives the role to no host. */
export const NO_GROUP = 'none'

export interface ImportOptions {
  /** Inventory file or directory. */
  inventory: string
  format?: InventoryFormat
  cluster?: string
  /** Groups per role; a role left out uses ROLE_GROUP_DEFAULTS. */
  groups?: Partial<Record<Role, readonly string[]>>
  /** hactl.yaml to write; "-" writes nothing (the caller prints `text`). Default ./hactl.yaml. */
  output?: string
  force?: boolean
  cwd?: string
  /** For the date in the header (tests). */
  now?: Date
}

export interface ImportedNode {
  name: string
  /** The host's name in the inventory. */
  inventoryHost: string
  host: string
  port: number
  user?: string
  roles: Role[]
}

export interface ImportPlan {
  inventory: string
  files: Array<{file: string; format: InventoryFormat}>
  cluster: string
  roleGroups: Record<Role, string[]>
  ssh: {user?: string; port: number; identityFiles: string[]; become: boolean}
  nodes: ImportedNode[]
  /** Inventory host names changed to follow the node-name rule. */
  renamed: Array<{from: string; to: string}>
  /** Hosts in no role group. */
  skipped: Array<{host: string; groups: string[]}>
  warnings: string[]
  /** The hactl.yaml text. */
  text: string
}

export interface ImportResult extends ImportPlan {
  /** The file written, or null when output is "-". */
  output: string | null
}

/** Read the inventory, build hactl.yaml, validate it, and write it (unless output is "-"). */
export function importAnsibleInventory(opts: ImportOptions): ImportResult {
  const cwd = opts.cwd ?? process.cwd()
  const inventoryPath = path.resolve(cwd, opts.inventory)
  const toStdout = opts.output === '-'
  const output = toStdout ? null : path.resolve(cwd, opts.output ?? 'hactl.yaml')
  if (!existsSync(inventoryPath)) {
    throw new UserError(`inventory not found: ${inventoryPath}`, [
      'pass the inventory file Ansible uses (ansible -i FILE)',
    ])
  }
  // Refuse before reading: parsing a big inventory only to refuse the write would be a waste.
  if (output && existsSync(output) && !opts.force) {
    throw new UserError(`${opts.output ?? 'hactl.yaml'} already exists; not overwriting it`, [
      'pass --force to replace it, or --output OTHER.yaml to write elsewhere',
    ])
  }
  const inv = loadAnsibleInventory(inventoryPath, opts.format ? {format: opts.format} : {})
  const plan = planImport(inv, {...opts, inventory: inventoryPath})
  try {
    parseConfig(plan.text, output ?? 'hactl.yaml')
  } catch (error) {
    // The inventory checks above should catch everything; if not, say where it came from.
    const detail = error instanceof ConfigError ? error.message : (error as Error).message
    throw new UserError(`the imported config would not be valid: ${detail}`, [
      'write it to stdout to look at it: --output -',
    ])
  }
  if (output) writeAtomically(output, plan.text)
  return {...plan, output}
}

function writeAtomically(file: string, text: string): void {
  if (!existsSync(path.dirname(file))) throw new UserError(`directory ${path.dirname(file)} does not exist`)
  const tmp = `${file}.tmp-${process.pid}`
  try {
    writeFileSync(tmp, text, {mode: 0o644})
    renameSync(tmp, file)
  } catch (error) {
    try {
      unlinkSync(tmp)
    } catch {
      // Nothing to clean up.
    }
    throw new UserError(`cannot write ${file}: ${(error as Error).message}`)
  }
}

/** hactl.yaml from a parsed inventory; pure apart from the clock. */
export function planImport(
  inv: AnsibleInventory,
  opts: Omit<ImportOptions, 'output' | 'force' | 'cwd'>,
): ImportPlan {
  const warnings = [...inv.warnings]
  const roleGroups = resolveRoleGroups(inv, opts.groups ?? {}, warnings)

  const rolesOf = new Map<string, Role[]>()
  for (const role of ROLES) {
    for (const g of roleGroups[role]) {
      for (const h of groupMembers(inv, g)) {
        const r = rolesOf.get(h) ?? []
        if (!r.includes(role)) r.push(role)
        rolesOf.set(h, r)
      }
    }
  }
  const hosts = [...inv.hosts.keys()]
  const selected = hosts.filter((h) => rolesOf.has(h))
  const skipped = hosts
    .filter((h) => !rolesOf.has(h))
    .map((h) => ({host: h, groups: groupsOfHost(inv, h).filter((g) => g !== 'all')}))
  if (selected.length === 0) {
    throw new UserError(`no host of the inventory is in a role group (${describeRoleGroups(roleGroups)})`, [
      `name the groups: --asterisk-group GROUP --kamailio-group GROUP; the inventory has: ${[...inv.groups.keys()].join(', ')}`,
    ])
  }

  const names = assignNames(selected)
  const renamed = selected.filter((h) => names.get(h) !== h).map((h) => ({from: h, to: names.get(h)!}))

  const connections = selected.map((h) => connectionOf(inv, h, warnings))
  const users = connections.map((c) => c.user)
  const defaultUser = mostCommon(users.filter((u): u is string => u !== undefined))
  if (defaultUser === undefined) {
    warnings.push(
      'the inventory sets no ansible_user: hactl will log in as root (Ansible used your local user name); set ssh.user if that is wrong',
    )
  }
  const userless = selected.filter((_, i) => connections[i]!.user === undefined)
  if (defaultUser !== undefined && userless.length > 0) {
    warnings.push(
      `${userless.join(', ')} set${userless.length === 1 ? 's' : ''} no ansible_user and will log in as ${defaultUser} (Ansible used your local user name)`,
    )
  }
  const defaultPort =
    mostCommon(
      connections.map((c) => c.port),
      22,
    ) ?? 22
  const identityFiles = [...new Set(connections.flatMap((c) => (c.identityFile ? [c.identityFile] : [])))]
  if (identityFiles.length > 1) {
    warnings.push(
      `the hosts use different private keys; hactl offers all of them to every host: ${identityFiles.join(', ')}`,
    )
  }
  const nonRoot = [...new Set(users.filter((u) => u !== undefined && u !== 'root'))]
  const become = nonRoot.length > 0 || connections.some((c) => c.become)

  const nodes: ImportedNode[] = selected.map((h, i) => {
    const c = connections[i]!
    const user = c.user ?? defaultUser
    return {
      name: names.get(h)!,
      inventoryHost: h,
      host: c.host,
      port: c.port,
      ...(user === undefined ? {} : {user}),
      roles: ROLES.filter((r) => rolesOf.get(h)!.includes(r)),
    }
  })
  const seen = new Map<string, string>()
  for (const n of nodes) {
    const key = `${n.host.toLowerCase()}:${n.port}`
    const other = seen.get(key)
    if (other) {
      throw new ConfigError(
        `inventory hosts ${other} and ${n.inventoryHost} are the same machine (${n.host} port ${n.port})`,
        {
          position: inv.hosts.get(n.inventoryHost)!.source,
          suggestions: ['remove one of them from the inventory, or leave it out of the role groups'],
        },
      )
    }
    seen.set(key, n.inventoryHost)
  }

  const cluster = clusterName(opts.cluster, opts.inventory)
  const ssh = {
    ...(defaultUser === undefined ? {} : {user: defaultUser}),
    port: defaultPort,
    identityFiles,
    become,
  }
  warnings.push(
    'the etcd section uses the CoreOS etcd2 layout (service etcd2, data in /var/lib/etcd2); check it against your hosts',
  )
  const text = renderHactlYaml({
    inventory: opts.inventory,
    files: inv.files,
    cluster,
    roleGroups,
    ssh,
    nodes,
    now: opts.now ?? new Date(),
  })
  return {
    inventory: opts.inventory,
    files: inv.files,
    cluster,
    roleGroups,
    ssh,
    nodes,
    renamed,
    skipped,
    warnings,
    text,
  }
}

function resolveRoleGroups(
  inv: AnsibleInventory,
  wanted: Partial<Record<Role, readonly string[]>>,
  warnings: string[],
): Record<Role, string[]> {
  const out = {} as Record<Role, string[]>
  for (const role of ROLES) {
    const explicit = wanted[role]
    const groups = (explicit ?? ROLE_GROUP_DEFAULTS[role])
      .flatMap((g) => g.split(','))
      .map((g) => g.trim())
      .filter((g) => g !== '')
    if (groups.includes(NO_GROUP)) {
      out[role] = []
      continue
    }
    out[role] = []
    for (const g of groups) {
      if (inv.groups.has(g)) out[role].push(g)
      else if (explicit) {
        throw new UserError(`--${role}-group ${g}: the inventory has no group ${g}`, [
          `its groups: ${[...inv.groups.keys()].join(', ')}`,
        ])
      } else
        warnings.push(
          `the inventory has no group ${g}: no node gets the ${role} role (name one with --${role}-group)`,
        )
    }
  }
  return out
}

function describeRoleGroups(rg: Record<Role, string[]>): string {
  return ROLES.map((r) => `${r}: ${rg[r].length > 0 ? rg[r].join(', ') : NO_GROUP}`).join('; ')
}

/** Node names from inventory host names: kept when they follow the rule, else made to. */
export function assignNames(hosts: readonly string[]): Map<string, string> {
  const isIp = (h: string) => /^\d{1,3}(\.\d{1,3}){3}$/.test(h) || h.includes(':')
  const firstLabel = (h: string) => (isIp(h) ? h : h.split('.')[0]!)
  const labelCount = new Map<string, number>()
  for (const h of hosts) labelCount.set(firstLabel(h), (labelCount.get(firstLabel(h)) ?? 0) + 1)
  const taken = new Set<string>()
  // Names that need no change are claimed first, so a renamed host never takes one of them.
  for (const h of hosts) if (NODE_NAME_RE.test(h) && !RESERVED_NODE_NAMES.includes(h)) taken.add(h)
  const out = new Map<string, string>()
  for (const h of hosts) {
    if (NODE_NAME_RE.test(h) && !RESERVED_NODE_NAMES.includes(h)) {
      out.set(h, h)
      continue
    }
    // ast1.example.com -> ast1 when no other host shares the first label.
    const base = !isIp(h) && h.includes('.') && labelCount.get(firstLabel(h)) === 1 ? firstLabel(h) : h
    let name = sanitizeName(base) ?? 'node'
    if (RESERVED_NODE_NAMES.includes(name)) name = `${name}-1`
    name = name.slice(0, 60).replace(/-+$/, '')
    let candidate = name
    for (let i = 2; taken.has(candidate); i++) candidate = `${name}-${i}`
    taken.add(candidate)
    out.set(h, candidate)
  }
  return out
}

interface Connection {
  host: string
  port: number
  user?: string
  identityFile?: string
  become: boolean
}

function connectionOf(inv: AnsibleInventory, host: string, warnings: string[]): Connection {
  const vars = hostVars(inv, host)
  const source = inv.hosts.get(host)!.source
  const get = (...keys: string[]): {key: string; value: string} | undefined => {
    for (const key of keys) {
      const v = vars[key]
      if (v === undefined || v === null) continue
      if (typeof v !== 'string' && typeof v !== 'number') {
        throw new ConfigError(
          `host ${host}: ${key} must be a string, got ${Array.isArray(v) ? 'a list' : typeof v}`,
          {position: source},
        )
      }
      const value = String(v).trim()
      if (value.includes('{{') || value.includes('{%')) {
        throw new ConfigError(
          `host ${host}: ${key} is a Jinja template (${value}); hactl cannot evaluate templates`,
          {
            position: source,
            suggestions: [
              'render the inventory first (ansible-inventory -i INVENTORY --list --yaml), or write the plain value',
            ],
          },
        )
      }
      return {key, value}
    }
    return undefined
  }
  const addr = get('ansible_host', 'ansible_ssh_host')
  const hostValue = addr?.value ?? host
  if (!HOST_RE.test(hostValue)) {
    throw new ConfigError(
      `host ${host}: ${addr ? `${addr.key} "${hostValue}"` : 'the name'} is not a host name or an IP address`,
      {
        position: source,
        suggestions: addr ? [] : ['give the host an address: ansible_host=10.0.0.10'],
      },
    )
  }
  const portVar = get('ansible_port', 'ansible_ssh_port')
  let port = 22
  if (portVar) {
    port = Number(portVar.value)
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      throw new ConfigError(`host ${host}: ${portVar.key} "${portVar.value}" is not a port (1-65535)`, {
        position: source,
      })
    }
  }
  const user = get('ansible_user', 'ansible_ssh_user')
  if (user && !/^[a-z_][a-z0-9_.-]*\$?$/i.test(user.value)) {
    throw new ConfigError(`host ${host}: ${user.key} "${user.value}" is not a user name`, {position: source})
  }
  let identityFile = get('ansible_ssh_private_key_file', 'ansible_private_key_file')?.value
  if (identityFile && !/^[/~]/.test(identityFile)) {
    const base = path.dirname(inv.files[0]?.file ?? '.')
    const resolved = path.resolve(base, identityFile)
    warnings.push(`host ${host}: the relative key path ${identityFile} was taken as ${resolved}; check it`)
    identityFile = resolved
  }
  const become = truthy(vars.ansible_become) || truthy(vars.ansible_sudo)
  const becomeUser = get('ansible_become_user', 'ansible_sudo_user')?.value
  if (becomeUser && becomeUser !== 'root') {
    warnings.push(`host ${host}: ansible_become_user is ${becomeUser}; hactl's sudo -n always becomes root`)
  }
  for (const k of [
    'ansible_password',
    'ansible_ssh_pass',
    'ansible_become_password',
    'ansible_become_pass',
    'ansible_sudo_pass',
  ]) {
    if (vars[k] !== undefined) {
      warnings.push(
        `host ${host}: ${k} is ignored; hactl logs in with keys and needs password-less sudo (sudo -n)`,
      )
    }
  }
  const connection = get('ansible_connection')?.value
  if (connection && !['ssh', 'smart', 'paramiko', 'paramiko_ssh'].includes(connection)) {
    warnings.push(`host ${host}: ansible_connection is ${connection}; hactl always uses SSH`)
  }
  const args = [vars.ansible_ssh_common_args, vars.ansible_ssh_extra_args]
    .filter((a) => typeof a === 'string')
    .join(' ')
  if (/Proxy(Jump|Command)|(^|\s)-J\s/i.test(args)) {
    warnings.push(
      `host ${host}: its jump host (ansible_ssh_common_args) is not imported; put a ProxyJump for it in ~/.ssh/config, which hactl reads`,
    )
  }
  return {
    host: hostValue,
    port,
    ...(user ? {user: user.value} : {}),
    ...(identityFile ? {identityFile} : {}),
    become,
  }
}

function truthy(v: unknown): boolean {
  if (typeof v === 'boolean') return v
  if (typeof v === 'number') return v !== 0
  return typeof v === 'string' && /^(yes|y|true|on|1)$/i.test(v.trim())
}

/** The most frequent value; on a tie `prefer` if it is among the tied, else the first seen. */
function mostCommon<T>(values: readonly T[], prefer?: T): T | undefined {
  const counts = new Map<T, number>()
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1)
  let best: T | undefined
  let bestCount = 0
  for (const [v, c] of counts) {
    if (c > bestCount || (c === bestCount && v === prefer)) {
      best = v
      bestCount = c
    }
  }
  return best
}

/** --cluster, else the inventory's name (hosts.ini -> its directory's name). */
function clusterName(flag: string | undefined, inventory: string): string {
  if (flag !== undefined) {
    if (!CLUSTER_NAME_RE.test(flag)) {
      throw new UserError(
        `--cluster ${JSON.stringify(flag)}: expected letters, digits, ".", "_" and "-", 1-64 characters`,
      )
    }
    return flag
  }
  const base = path.basename(inventory).replace(/\.(ini|ya?ml|json|cfg|txt)$/i, '')
  // hosts, inventory...: says nothing about the cluster; its directory usually does.
  const generic = ['hosts', 'inventory', 'inventories', 'ansible', 'all', 'main', 'default']
  const pick = generic.includes(base.toLowerCase()) ? path.basename(path.dirname(inventory)) : base
  const clean = pick
    .replace(/[^A-Za-z0-9._-]+/g, '-')
    .replace(/^[-.]+|[-.]+$/g, '')
    .slice(0, 64)
  return clean === '' ? 'cluster' : clean
}

function renderHactlYaml(p: {
  inventory: string
  files: Array<{file: string; format: InventoryFormat}>
  cluster: string
  roleGroups: Record<Role, string[]>
  ssh: ImportPlan['ssh']
  nodes: ImportedNode[]
  now: Date
}): string {
  const ssh: Record<string, unknown> = {}
  if (p.ssh.user !== undefined) ssh.user = p.ssh.user
  if (p.ssh.port !== 22) ssh.port = p.ssh.port
  if (p.ssh.identityFiles.length > 0) ssh.identityFiles = p.ssh.identityFiles
  if (p.ssh.become) ssh.become = true
  const nodes: Record<string, Record<string, unknown>> = {}
  for (const n of p.nodes) {
    nodes[n.name] = {
      host: n.host,
      ...(n.port === p.ssh.port ? {} : {port: n.port}),
      ...(n.user === undefined || n.user === p.ssh.user ? {} : {user: n.user}),
      roles: n.roles,
    }
  }
  const doc = new Document({
    cluster: p.cluster,
    ...(Object.keys(ssh).length > 0 ? {ssh} : {}),
    etcd: {service: 'etcd2', dataDir: '/var/lib/etcd2', wipe: ['member', 'proxy']},
    asterisk: {cli: 'asterisk -rx'},
    kamailio: {cli: 'kamcmd'},
    nodes,
  })
  const sources = p.files.map((f) => `${f.file} (${f.format})`).join(', ')
  doc.commentBefore = [
    ` hactl.yaml imported from the Ansible inventory ${sources}`,
    ` by "hactl inventory import" on ${p.now.toISOString().slice(0, 10)}.`,
    ` Roles from groups: ${ROLES.map((r) => `${r} <- ${p.roleGroups[r].length > 0 ? p.roleGroups[r].join(', ') : NO_GROUP}`).join('; ')}.`,
    ' Review the etcd, asterisk and kamailio sections, then run: hactl config validate',
    ' Every key is described in docs/config.md and by: hactl config schema',
  ].join('\n')
  const pair = (key: string): Pair | undefined =>
    isMap(doc.contents)
      ? (doc.contents.items.find((i) => (i.key as Scalar).value === key) as Pair | undefined)
      : undefined
  const setComment = (key: string, comment: string) => {
    const pr = pair(key)
    if (pr) (pr.key as YamlNode).commentBefore = comment
  }
  if (p.ssh.become && p.ssh.user !== undefined && p.ssh.user !== 'root') {
    const becomePair = (doc.getIn(['ssh'], true) as {items?: Pair[]} | undefined)?.items?.find(
      (i) => (i.key as Scalar).value === 'become',
    )
    if (becomePair)
      (becomePair.value as YamlNode).comment =
        ` ${p.ssh.user} is not root: privileged commands run through sudo -n`
  }
  setComment(
    'etcd',
    ' CoreOS etcd2: the Ansible rediscovery removed everything under /var/lib/etcd2.\n For etcd 0.4 (unit etcd): dataDir /var/lib/etcd, wipe [log, conf].',
  )
  setComment('asterisk', ' Asterisk in a container? cli: docker exec asterisk asterisk -rx')
  setComment('kamailio', ' Kamailio in a container? cli: docker exec kamailio kamcmd')
  for (const seqPath of [
    ['ssh', 'identityFiles'],
    ['etcd', 'wipe'],
  ]) {
    const seq = doc.getIn(seqPath, true)
    if (isSeq(seq)) seq.flow = true
  }
  const nodesMap = doc.get('nodes', true)
  if (isMap(nodesMap)) {
    for (const item of nodesMap.items) {
      const n = p.nodes.find((x) => x.name === (item.key as Scalar).value)
      if (isMap(item.value)) {
        item.value.flow = true
        if (n && n.name !== n.inventoryHost) item.value.comment = ` inventory host ${n.inventoryHost}`
      }
    }
  }
  return doc.toString({flowCollectionPadding: false, lineWidth: 0})
}
