import {readdirSync, readFileSync} from 'node:fs'
import {homedir, userInfo} from 'node:os'
import path from 'node:path'

/**
 * What hactl takes from OpenSSH's client config (`~/.ssh/config`): HostName, User, Port,
 * IdentityFile, ProxyJump and IdentityAgent. Everything else there (ProxyCommand, ControlMaster,
 * ...) is ignored. `Match exec` blocks are not evaluated: computing a host's settings must not run
 * shell commands behind the operator's back.
 */

export interface SshConfigValues {
  hostName?: string
  user?: string
  port?: number
  identityFiles: string[]
  proxyJump?: string
  identityAgent?: string
}

export interface SshConfigLookup {
  /** The file read ('' when there is none). */
  file: string
  lookup(host: string): SshConfigValues
}

export interface JumpSpec {
  user?: string
  host: string
  port?: number
}

/** Where and as whom to connect, after hactl.yaml and ssh_config are merged. */
export interface SshTarget {
  /** The address to connect to (ssh_config HostName, or the node's host). */
  host: string
  port: number
  user: string
  /** Candidate private keys, in the order to try them; files that do not exist are skipped later. */
  identityFiles: string[]
  /** Jump hosts, first hop first (ProxyJump). */
  jumps: JumpSpec[]
  /** ssh-agent socket, or undefined for none. */
  agent?: string
}

const EMPTY: SshConfigLookup = {file: '', lookup: () => ({identityFiles: []})}

/** Read and parse an ssh_config file (with its Include files). A missing file is an empty config. */
export async function loadSshConfig(
  file: string = path.join(homedir(), '.ssh', 'config'),
): Promise<SshConfigLookup> {
  let text: string
  try {
    text = expandIncludes(readFileSync(file, 'utf8'), path.dirname(file), 0)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return {...EMPTY, file: ''}
    throw error
  }
  return parseSshConfig(text, file)
}

/** Parse ssh_config text. Split from `loadSshConfig` so tests can feed text directly. */
export async function parseSshConfig(text: string, file = '<text>'): Promise<SshConfigLookup> {
  const {default: SSHConfig} = await import('ssh-config')
  const parsed = SSHConfig.parse(text)
  return {
    file,
    lookup(host: string): SshConfigValues {
      const c = parsed.compute(host, {ignoreCase: true, matchExec: false})
      const str = (k: string): string | undefined => {
        const v = c[k]
        const s = Array.isArray(v) ? v[0] : v
        return s === undefined || s === '' ? undefined : s
      }
      const portText = str('port')
      const port = portText === undefined ? undefined : Number(portText)
      const ids = c.identityfile
      return {
        ...(str('hostname') === undefined ? {} : {hostName: str('hostname')}),
        ...(str('user') === undefined ? {} : {user: str('user')}),
        ...(port !== undefined && Number.isInteger(port) && port > 0 && port < 65536 ? {port} : {}),
        identityFiles: ids === undefined ? [] : Array.isArray(ids) ? ids : [ids],
        ...(str('proxyjump') === undefined ? {} : {proxyJump: str('proxyjump')}),
        ...(str('identityagent') === undefined ? {} : {identityAgent: str('identityagent')}),
      }
    },
  }
}

/**
 * Splice `Include` files into the text. Relative paths are relative to the including file's
 * directory (~/.ssh for the user config, as in ssh_config(5)); `*` and `?` globs in the file name.
 */
function expandIncludes(text: string, dir: string, depth: number): string {
  if (depth > 16) throw new Error('ssh_config: Include nested more than 16 deep')
  return text
    .split('\n')
    .map((line) => {
      const m = /^\s*include\s*[= ]\s*(.+?)\s*$/i.exec(line)
      if (!m?.[1]) return line
      const parts = m[1].split(/\s+/).map((p) => p.replace(/^"(.*)"$/, '$1'))
      const chunks: string[] = []
      for (const p of parts) {
        const full = path.resolve(dir, expandTilde(p, homedir()))
        for (const f of globFiles(full)) {
          try {
            chunks.push(expandIncludes(readFileSync(f, 'utf8'), dir, depth + 1))
          } catch (error) {
            if (
              (error as NodeJS.ErrnoException).code !== 'ENOENT' &&
              (error as NodeJS.ErrnoException).code !== 'EISDIR'
            )
              throw error
          }
        }
      }
      return chunks.join('\n')
    })
    .join('\n')
}

function globFiles(full: string): string[] {
  const base = path.basename(full)
  if (!/[*?]/.test(base)) return [full]
  const d = path.dirname(full)
  const re = new RegExp(
    `^${base
      .replace(/[.+^${}()|[\]\\]/g, '\\$&')
      .replaceAll('*', '.*')
      .replaceAll('?', '.')}$`,
  )
  try {
    return readdirSync(d)
      .filter((f) => re.test(f))
      .sort()
      .map((f) => path.join(d, f))
  } catch {
    return []
  }
}

/**
 * `ProxyJump` value: `[user@]host[:port]` hops separated by commas, optionally as
 * `ssh://[user@]host[:port]`; IPv6 addresses in brackets. `none` means no jump.
 */
export function parseProxyJump(value: string): JumpSpec[] {
  const v = value.trim()
  if (v === '' || v.toLowerCase() === 'none') return []
  return v.split(',').map((hop) => {
    const h = hop.trim().replace(/^ssh:\/\//, '')
    const m = /^(?:([^@\s]+)@)?(\[[0-9a-fA-F:.]+\]|[^:@\s[\]]+)(?::(\d+))?$/.exec(h)
    if (!m?.[2])
      throw new Error(`ssh_config: cannot parse ProxyJump hop "${hop}" (expected [user@]host[:port])`)
    const port = m[3] === undefined ? undefined : Number(m[3])
    if (port !== undefined && (port < 1 || port > 65535))
      throw new Error(`ssh_config: bad port in ProxyJump hop "${hop}"`)
    return {
      ...(m[1] === undefined ? {} : {user: m[1]}),
      host: m[2].replace(/^\[(.*)\]$/, '$1'),
      ...(port === undefined ? {} : {port}),
    }
  })
}

/** The keys OpenSSH tries when no IdentityFile is configured anywhere. */
export function defaultIdentityFiles(home = homedir()): string[] {
  return ['id_ed25519', 'id_ecdsa', 'id_rsa'].map((f) => path.join(home, '.ssh', f))
}

/**
 * Merge a node's settings with ssh_config. Precedence, highest first:
 *   1. what hactl.yaml says for this node (`nodes.X.port`, `nodes.X.user`),
 *   2. ssh_config for the node's host (so an operator's existing ~/.ssh/config keeps working),
 *   3. hactl.yaml's `ssh:` section (defaults for every node).
 * The loader has already filled a node's port/user from `ssh:`, so a node value equal to the `ssh:`
 * value counts as not set for the node: ssh_config may then override it. The node's `host` is the
 * name looked up in ssh_config (like `ssh HOST`), so a HostName there replaces it as the address.
 * Identity files: hactl.yaml's first, then ssh_config's; OpenSSH's defaults only when neither
 * names any. The agent: SSH_AUTH_SOCK, unless ssh_config's IdentityAgent says otherwise.
 */
export function resolveTarget(
  node: {host: string; port: number; user: string},
  ssh: {port: number; user: string; identityFiles: readonly string[]},
  fromConfig: SshConfigValues,
  env: {home?: string; localUser?: string; authSock?: string} = {},
): SshTarget {
  const home = env.home ?? homedir()
  const localUser = env.localUser ?? safeLocalUser()
  const port = node.port !== ssh.port ? node.port : (fromConfig.port ?? node.port)
  const user = node.user !== ssh.user ? node.user : (fromConfig.user ?? node.user)
  const host = fromConfig.hostName === undefined ? node.host : fromConfig.hostName.replaceAll('%h', node.host)
  const tokens = {d: home, u: localUser, h: host, r: user, p: String(port)}
  const files = [
    ...ssh.identityFiles.map((f) => expandTilde(f, home)),
    ...fromConfig.identityFiles.map((f) => expandTokens(f, tokens, home)),
  ]
  const identityFiles = [...new Set(files.length > 0 ? files : defaultIdentityFiles(home))]
  const jumps = fromConfig.proxyJump === undefined ? [] : parseProxyJump(fromConfig.proxyJump)
  let agent: string | undefined = env.authSock === undefined ? process.env.SSH_AUTH_SOCK : env.authSock
  if (fromConfig.identityAgent !== undefined) {
    const a = fromConfig.identityAgent
    if (a.toLowerCase() === 'none') agent = undefined
    else if (a !== 'SSH_AUTH_SOCK')
      agent = a.startsWith('$') ? process.env[a.slice(1)] : expandTokens(a, tokens, home)
  }
  return {host, port, user, identityFiles, jumps, ...(agent ? {agent} : {})}
}

function safeLocalUser(): string {
  try {
    return userInfo().username
  } catch {
    return process.env.USER ?? ''
  }
}

export function expandTilde(p: string, home: string): string {
  if (p === '~') return home
  return p.startsWith('~/') ? path.join(home, p.slice(2)) : p
}

function expandTokens(p: string, tokens: Record<string, string>, home: string): string {
  const withTokens = p.replace(/%(.)/g, (all, c: string) => (c === '%' ? '%' : (tokens[c] ?? all)))
  return expandTilde(withTokens, home)
}
