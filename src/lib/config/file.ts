import {existsSync, readFileSync, statSync} from 'node:fs'
import {homedir} from 'node:os'
import path from 'node:path'
import {ConfigError} from '../errors.js'
import type {HactlConfig} from './load.js'

/**
 * Finding and reading hactl.yaml, and the helpers every command needs from a loaded config, without
 * the YAML parser or the schema (`load.ts` has those; it re-exports these).
 */

/** A hactl.yaml for even a thousand nodes is far below this; anything bigger is the wrong file. */
export const MAX_CONFIG_BYTES = 1024 * 1024
/** Where hactl looks for its config, in order: --config, HACTL_CONFIG, ./hactl.yaml, ~/.config/hactl/config.yaml. */
export function configCandidates(
  opts: {flag?: string; env?: NodeJS.ProcessEnv; cwd?: string; home?: string} = {},
): string[] {
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
  const env = opts.env ?? process.env
  if (opts.flag || env.HACTL_CONFIG) {
    const from = opts.flag ? '--config' : 'HACTL_CONFIG'
    throw new ConfigError(`config file not found: ${candidates[0]} (from ${from})`, {
      suggestions: ['check the path, or import one from Ansible: hactl inventory import INVENTORY'],
    })
  }
  throw new ConfigError(`no hactl.yaml found (looked in ${candidates.join(', ')})`, {
    suggestions: [
      'point hactl at one with --config FILE or HACTL_CONFIG=FILE, import one with hactl inventory import INVENTORY, or try the lab: sudo hactl lab up',
    ],
  })
}

/** Read a config file, with a clear error for directories, permissions and oversized files. */
export function readConfigText(file: string): string {
  let size: number
  try {
    const st = statSync(file)
    if (st.isDirectory()) {
      throw new ConfigError(`${file} is a directory, not a config file`, {
        suggestions: [`pass the file itself: --config ${path.join(file, 'hactl.yaml')}`],
      })
    }
    size = st.size
  } catch (error) {
    if (error instanceof ConfigError) throw error
    throw readError(file, error)
  }
  if (size > MAX_CONFIG_BYTES) throw tooLarge(file, size)
  try {
    return readFileSync(file, 'utf8')
  } catch (error) {
    throw readError(file, error)
  }
}

function readError(file: string, error: unknown): ConfigError {
  const code = (error as NodeJS.ErrnoException).code
  if (code === 'EACCES' || code === 'EPERM') {
    return new ConfigError(`cannot read ${file}: permission denied`, {
      suggestions: [`check the file's owner and mode: ls -l ${file}`],
    })
  }
  if (code === 'ENOENT') return new ConfigError(`config file not found: ${file}`)
  return new ConfigError(`cannot read ${file}: ${(error as Error).message}`)
}

export function tooLarge(file: string, bytes: number): ConfigError {
  return new ConfigError(
    `the file is ${(bytes / 1024 / 1024).toFixed(1)} MiB; a hactl.yaml is at most ${MAX_CONFIG_BYTES / 1024 / 1024} MiB`,
    {
      position: {file, line: 1, column: 1},
      suggestions: ['is this the right file? hactl.yaml lists the cluster nodes and a few settings'],
    },
  )
}

/** The path to show in messages: relative to the working directory when the file is below it. */
export function displayPath(file: string, cwd: string): string {
  const rel = path.relative(cwd, file)
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : file
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
    .map(
      (n) =>
        `${scheme}://${n.host.includes(':') && !n.host.startsWith('[') ? `[${n.host}]` : n.host}:${config.etcd.clientPort}`,
    )
}
