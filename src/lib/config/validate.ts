import {existsSync} from 'node:fs'
import path from 'node:path'
import {etcdEndpoints, expandHome, type HactlConfig} from './load.js'
import {ROLES, type Role} from './schema.js'

/** What `hactl config validate` reports about a config that parsed. */
export interface ConfigSummary {
  ok: true
  file: string
  cluster: string
  nodes: Array<{name: string; host: string; port: number; user: string; roles: Role[]; weight?: number}>
  roles: Record<Role, string[]>
  etcdEndpoints: string[]
  /** Not errors, but probably not what the operator wants. */
  warnings: string[]
}

export function summarizeConfig(
  config: HactlConfig,
  opts: {cwd?: string; home?: string; checkFiles?: boolean} = {},
): ConfigSummary {
  const roles = Object.fromEntries(
    ROLES.map((r) => [r, config.nodes.filter((n) => n.roles.includes(r)).map((n) => n.name)]),
  ) as Record<Role, string[]>
  const cwd = opts.cwd ?? process.cwd()
  const rel = path.relative(cwd, config.file)
  return {
    ok: true,
    file: rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : config.file,
    cluster: config.cluster,
    nodes: config.nodes.map((n) => ({...n})),
    roles,
    etcdEndpoints: etcdEndpoints(config),
    warnings: configWarnings(config, opts),
  }
}

/** Things that parse but will bite: checked by `hactl config validate`, never fatal. */
export function configWarnings(
  config: HactlConfig,
  opts: {home?: string; checkFiles?: boolean} = {},
): string[] {
  const out: string[] = []
  const count = (r: Role) => config.nodes.filter((n) => n.roles.includes(r)).length
  if (config.etcd.endpoints.length === 0 && count('etcd') === 0) {
    out.push(
      'no etcd: etcd.endpoints is empty and no node has the etcd role; commands that need etcd will fail',
    )
  }
  if (count('asterisk') === 0) out.push('no node has the asterisk role')
  if (count('kamailio') === 0)
    out.push('no node has the kamailio role; drains cannot take a box out of the dispatcher list')
  const asterisks = count('asterisk')
  if (asterisks > 0 && config.asterisk.minInService >= asterisks) {
    out.push(
      `asterisk.minInService is ${config.asterisk.minInService} and there ${asterisks === 1 ? 'is 1 asterisk node' : `are ${asterisks} asterisk nodes`}: every drain will be refused`,
    )
  }
  const nonRoot = [...new Set(config.nodes.map((n) => n.user).filter((u) => u !== 'root'))]
  if (nonRoot.length > 0 && !config.ssh.become) {
    out.push(
      `ssh user ${nonRoot.join(', ')} is not root and ssh.become is false: service and file changes will fail; set ssh.become: true`,
    )
  }
  const endpoints = etcdEndpoints(config)
  if (
    config.etcd.auth &&
    !config.etcd.tls &&
    (endpoints.length === 0 || endpoints.some((e) => e.startsWith('http://')))
  ) {
    out.push('etcd.auth is set without TLS: the etcd password travels in clear text')
  }
  if (config.etcd.via === 'ssh' && count('etcd') === 0) {
    out.push('etcd.via is ssh but no node has the etcd role to tunnel through')
  }
  if (opts.checkFiles !== false) {
    for (const f of config.ssh.identityFiles) {
      if (!existsSync(expandHome(f, opts.home)))
        out.push(`ssh.identityFiles: ${f} does not exist on this machine`)
    }
    if (
      config.ssh.strictHostKeyChecking === 'yes' &&
      !existsSync(expandHome(config.ssh.knownHosts, opts.home))
    ) {
      out.push(
        `ssh.knownHosts ${config.ssh.knownHosts} does not exist and strictHostKeyChecking is yes: every host will be refused until you add their keys (ssh-keyscan), or set strictHostKeyChecking: accept-new`,
      )
    }
    for (const [k, f] of Object.entries(config.etcd.tls ?? {})) {
      if (f && !existsSync(expandHome(f, opts.home)))
        out.push(`etcd.tls.${k}: ${f} does not exist on this machine`)
    }
  }
  return out
}

/** `3 nodes: ast1, ast2, kam1` (long lists shortened). */
export function describeNodes(names: readonly string[], max = 12): string {
  const shown = names.length > max ? [...names.slice(0, max), `... (${names.length - max} more)`] : names
  return `${names.length} node${names.length === 1 ? '' : 's'}: ${shown.join(', ')}`
}
