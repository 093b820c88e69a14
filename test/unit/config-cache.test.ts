import assert from 'node:assert/strict'
import {mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {after, describe, test} from 'node:test'
import {configCacheDir, holdsSecret, loadConfigCached} from '../../src/lib/config/cache.js'
import {loadConfig} from '../../src/lib/config/load.js'
import {ConfigError} from '../../src/lib/errors.js'

const repo = path.resolve(import.meta.dirname, '../..')
const fixtures = path.join(repo, 'test/fixtures/config')
const tmp = mkdtempSync(path.join(tmpdir(), 'hactl-config-cache-test-'))
after(() => rmSync(tmp, {recursive: true, force: true}))

let n = 0
/** A fresh cache directory and a working directory holding `text` as hactl.yaml. */
function setup(text: string): {env: NodeJS.ProcessEnv; cwd: string; file: string; cacheDir: string} {
  const dir = path.join(tmp, String(++n))
  const cwd = path.join(dir, 'work')
  mkdirSync(cwd, {recursive: true})
  const file = path.join(cwd, 'hactl.yaml')
  writeFileSync(file, text)
  const env = {XDG_CACHE_HOME: path.join(dir, 'cache')}
  return {env, cwd, file, cacheDir: configCacheDir(env)}
}

function cacheFiles(dir: string): string[] {
  try {
    return readdirSync(dir)
  } catch {
    return []
  }
}

describe('the config cache', () => {
  for (const name of readdirSync(path.join(fixtures, 'good')).filter((f) => f.endsWith('.yaml'))) {
    test(`good/${name}: the cached config is the parsed one, field for field`, async () => {
      // Given a good config
      const {env, cwd, file, cacheDir} = setup(readFileSync(path.join(fixtures, 'good', name), 'utf8'))
      const parsed = loadConfig({flag: file, env, cwd})
      // When it is loaded twice through the cache (a miss that writes the entry, then a hit)
      const first = await loadConfigCached({flag: file, env, cwd})
      const second = await loadConfigCached({flag: file, env, cwd})
      // Then both are exactly what the parser gives
      assert.deepStrictEqual(first, parsed)
      assert.deepStrictEqual(second, parsed)
      if (!holdsSecret(parsed)) assert.equal(cacheFiles(cacheDir).length, 1)
      // and JSON, the cache's format, keeps every field of it (also of the configs not cached)
      assert.deepStrictEqual(JSON.parse(JSON.stringify(parsed)), parsed)
    })
  }

  test('an entry is private to its user and used only for the same text', async () => {
    // Given a cached config
    const {env, cwd, file, cacheDir} = setup(
      'cluster: one\nnodes:\n  ast1: {host: 10.0.0.21, roles: [asterisk]}\n',
    )
    assert.equal((await loadConfigCached({flag: file, env, cwd})).cluster, 'one')
    const [entry] = cacheFiles(cacheDir)
    assert.ok(entry)
    assert.equal(statSync(path.join(cacheDir, entry)).mode & 0o777, 0o600)
    assert.equal(statSync(cacheDir).mode & 0o777, 0o700)
    // When the file changes
    writeFileSync(file, 'cluster: two\nnodes:\n  ast1: {host: 10.0.0.21, roles: [asterisk]}\n')
    // Then the new text is parsed, not the old entry returned
    assert.equal((await loadConfigCached({flag: file, env, cwd})).cluster, 'two')
    assert.equal(cacheFiles(cacheDir).length, 1)
  })

  test('an entry that does not match its key is ignored', async () => {
    // Given a cache entry whose config was changed behind hactl's back
    const {env, cwd, file, cacheDir} = setup(
      'cluster: real\nnodes:\n  ast1: {host: 10.0.0.21, roles: [asterisk]}\n',
    )
    await loadConfigCached({flag: file, env, cwd})
    const entryFile = path.join(cacheDir, cacheFiles(cacheDir)[0]!)
    const entry = JSON.parse(readFileSync(entryFile, 'utf8')) as {key: string; config: {cluster: string}}
    writeFileSync(
      entryFile,
      JSON.stringify({key: `${entry.key.slice(0, -1)}0`, config: {...entry.config, cluster: 'fake'}}),
    )
    // When the config is loaded
    const c = await loadConfigCached({flag: file, env, cwd})
    // Then it comes from the file
    assert.equal(c.cluster, 'real')
  })

  test('a broken config is never cached: every run reports file:line:col as the parser does', async () => {
    // Given a config with an error on line 3
    const {env, cwd, file, cacheDir} = setup('cluster: x\nnodes:\n  ast1: {host: "a b", roles: [asterisk]}\n')
    let expected: ConfigError | undefined
    try {
      loadConfig({flag: file, env, cwd})
    } catch (error) {
      expected = error as ConfigError
    }
    assert.ok(expected instanceof ConfigError)
    // When it is loaded through the cache, twice
    for (let i = 0; i < 2; i++) {
      await assert.rejects(loadConfigCached({flag: file, env, cwd}), (error: unknown) => {
        assert.ok(error instanceof ConfigError)
        assert.equal(error.message, expected!.message)
        assert.deepEqual(error.position, expected!.position)
        assert.deepEqual(error.suggestions, expected!.suggestions)
        return true
      })
    }
    // Then nothing was written
    assert.deepEqual(cacheFiles(cacheDir), [])
  })

  test('a config holding a secret is not cached', async () => {
    // Given a config with an etcd password
    const {env, cwd, file, cacheDir} = setup(
      'cluster: x\netcd:\n  auth: {username: hactl, password: s3cret}\nnodes:\n  ast1: {host: 10.0.0.21, roles: [asterisk, etcd]}\n',
    )
    // When it is loaded
    const c = await loadConfigCached({flag: file, env, cwd})
    // Then it is parsed, and the password is nowhere in the cache
    assert.equal(c.etcd.auth?.password, 's3cret')
    assert.deepEqual(cacheFiles(cacheDir), [])
  })

  test('an unwritable cache directory only costs the parse', async () => {
    // Given a cache location that is a file, not a directory
    const {env, cwd, file} = setup('cluster: x\nnodes:\n  ast1: {host: 10.0.0.21, roles: [asterisk]}\n')
    writeFileSync(env.XDG_CACHE_HOME!, 'not a directory')
    // When the config is loaded, twice
    // Then it loads
    assert.equal((await loadConfigCached({flag: file, env, cwd})).cluster, 'x')
    assert.equal((await loadConfigCached({flag: file, env, cwd})).cluster, 'x')
  })

  test('holdsSecret looks at every key that names a secret', () => {
    assert.equal(holdsSecret({etcd: {auth: {username: 'u', password: 'p'}}}), true)
    assert.equal(holdsSecret({a: [{apiToken: 'x'}]}), true)
    assert.equal(holdsSecret({etcd: {timeout: 5000}, nodes: [{name: 'secretary', host: 'h'}]}), false)
  })
})
