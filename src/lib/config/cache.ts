import {createHash} from 'node:crypto'
import {mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync} from 'node:fs'
import {homedir} from 'node:os'
import path from 'node:path'
import {displayPath, findConfigFile, readConfigText} from './file.js'
import type {HactlConfig} from './load.js'
import {SECRET_KEY_RE} from './rules.js'

/**
 * hactl.yaml as validated by an earlier run, so that a run whose file has not changed skips the
 * YAML parser and the schema (together ~150 ms of CPU, before the first SSH connection can open).
 *
 * An entry is used only when it was made from exactly this file's text by exactly this loader
 * (a hash of the text and of the loader's own modules), and only when it belongs to this user. A
 * file that does not validate is never cached, so every error still comes from the full parser with
 * its file:line:column. A config holding a secret (etcd.auth.password) is not cached either: the
 * cache must not become a second copy of it. The cache is
 * `${XDG_CACHE_HOME:-~/.cache}/hactl/config-<hash of the path>.json`, one entry per config file;
 * when it cannot be read or written, hactl parses the file as before.
 */

const FORMAT = 'hactl-config-cache/1'
/** The modules whose code decides what a hactl.yaml parses to (.js when built, .ts under tsx). */
const LOADER_MODULES = ['load', 'schema', 'rules', 'file']

interface CacheEntry {
  key: string
  config: Omit<HactlConfig, 'file'>
}

export interface LoadOptions {
  flag?: string
  env?: NodeJS.ProcessEnv
  cwd?: string
  home?: string
}

/** `loadConfig`, through the cache. Same result, same errors. */
export async function loadConfigCached(opts: LoadOptions = {}): Promise<HactlConfig> {
  const file = findConfigFile(opts)
  const text = readConfigText(file)
  const env = opts.env ?? process.env
  const cacheFile = cacheFileFor(file, env, opts.home)
  const key = cacheKey(text)
  const hit = key && cacheFile ? readEntry(cacheFile, key) : undefined
  if (hit) return {...hit, file}
  const {parseConfig} = await import('./load.js')
  const config = parseConfig(text, displayPath(file, opts.cwd ?? process.cwd()))
  const {file: _display, ...rest} = config
  if (key && cacheFile && !holdsSecret(rest)) writeEntry(cacheFile, {key, config: rest})
  return {...config, file}
}

export function configCacheDir(env: NodeJS.ProcessEnv = process.env, home = homedir()): string {
  const xdg = env.XDG_CACHE_HOME
  // The XDG spec says to ignore a relative path.
  return path.join(xdg && path.isAbsolute(xdg) ? xdg : path.join(home, '.cache'), 'hactl')
}

function cacheFileFor(file: string, env: NodeJS.ProcessEnv, home?: string): string | undefined {
  try {
    const dir = configCacheDir(env, home ?? homedir())
    return path.join(dir, `config-${createHash('sha256').update(file).digest('hex').slice(0, 32)}.json`)
  } catch {
    return undefined
  }
}

let loaderHash: string | undefined

/** Hash of the text and of the loader's code; undefined when the loader's code cannot be read. */
function cacheKey(text: string): string | undefined {
  try {
    if (loaderHash === undefined) {
      const h = createHash('sha256').update(FORMAT)
      const ext = path.extname(new URL(import.meta.url).pathname)
      for (const m of LOADER_MODULES)
        h.update('\0').update(readFileSync(new URL(`./${m}${ext}`, import.meta.url)))
      loaderHash = h.digest('hex')
    }
    return createHash('sha256').update(loaderHash).update('\0').update(text).digest('hex')
  } catch {
    return undefined
  }
}

function readEntry(cacheFile: string, key: string): CacheEntry['config'] | undefined {
  try {
    const st = statSync(cacheFile)
    if (typeof process.getuid === 'function' && st.uid !== process.getuid()) return undefined
    const entry = JSON.parse(readFileSync(cacheFile, 'utf8')) as Partial<CacheEntry>
    if (entry.key !== key || typeof entry.config !== 'object' || entry.config === null) return undefined
    return entry.config
  } catch {
    return undefined
  }
}

function writeEntry(cacheFile: string, entry: CacheEntry): void {
  const tmp = `${cacheFile}.${process.pid}.tmp`
  try {
    mkdirSync(path.dirname(cacheFile), {recursive: true, mode: 0o700})
    writeFileSync(tmp, `${JSON.stringify(entry)}\n`, {mode: 0o600})
    renameSync(tmp, cacheFile)
  } catch {
    // A cache that cannot be written only costs the next run the parse.
    try {
      rmSync(tmp, {force: true})
    } catch {
      // Nothing more to do.
    }
  }
}

/** Whether any string in the config sits under a key that names a secret. */
export function holdsSecret(value: unknown, key?: string): boolean {
  if (typeof value === 'string') return key !== undefined && SECRET_KEY_RE.test(key)
  if (Array.isArray(value)) return value.some((v) => holdsSecret(v, key))
  if (value !== null && typeof value === 'object') {
    return Object.entries(value).some(([k, v]) => holdsSecret(v, k))
  }
  return false
}
