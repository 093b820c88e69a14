import assert from 'node:assert/strict'
import {readdirSync, readFileSync, statSync} from 'node:fs'
import path from 'node:path'
import {pathToFileURL} from 'node:url'
import {test} from 'node:test'

// oclif.manifest.json is what `hactl --help` and command lookup read instead of loading every
// command: a stale one silently hides a command or a flag. It must match the commands exactly.
const repo = path.resolve(import.meta.dirname, '../..')

interface ManifestCommand {
  flags: Record<string, unknown>
  args: Record<string, unknown>
}

function commandFiles(dir: string, prefix: string[] = []): Array<{id: string; file: string}> {
  const out: Array<{id: string; file: string}> = []
  for (const e of readdirSync(dir).sort()) {
    const p = path.join(dir, e)
    if (statSync(p).isDirectory()) out.push(...commandFiles(p, [...prefix, e]))
    else if (e.endsWith('.js')) {
      const base = e.slice(0, -3)
      out.push({id: [...prefix, ...(base === 'index' ? [] : [base])].join(':'), file: p})
    }
  }
  return out
}

test('oclif.manifest.json lists every built command with its current flags and args (npm run build regenerates it)', async () => {
  const manifest = JSON.parse(readFileSync(path.join(repo, 'oclif.manifest.json'), 'utf8')) as {
    version: string
    commands: Record<string, ManifestCommand>
  }
  const pkg = JSON.parse(readFileSync(path.join(repo, 'package.json'), 'utf8')) as {version: string}
  assert.equal(manifest.version, pkg.version, 'manifest version differs from package.json: run npm run build')
  const files = commandFiles(path.join(repo, 'dist', 'commands'))
  assert.ok(files.length > 0, 'no built commands: run npm run build')
  assert.deepEqual(Object.keys(manifest.commands).sort(), files.map((f) => f.id).sort(), 'command list is stale: run npm run build')
  for (const {id, file} of files) {
    const mod = (await import(pathToFileURL(file).href)) as {default: {flags?: object; baseFlags?: object; args?: object; enableJsonFlag?: boolean}}
    const cls = mod.default
    const flags = new Set([...Object.keys(cls.baseFlags ?? {}), ...Object.keys(cls.flags ?? {}), ...(cls.enableJsonFlag ? ['json'] : [])])
    assert.deepEqual(Object.keys(manifest.commands[id]!.flags).sort(), [...flags].sort(), `flags of "${id}" are stale: run npm run build`)
    assert.deepEqual(Object.keys(manifest.commands[id]!.args).sort(), Object.keys(cls.args ?? {}).sort(), `args of "${id}" are stale`)
  }
})

test('README.md documents every command (regenerate with: npm run readme)', () => {
  const manifest = JSON.parse(readFileSync(path.join(repo, 'oclif.manifest.json'), 'utf8')) as {commands: Record<string, unknown>}
  const readme = readFileSync(path.join(repo, 'README.md'), 'utf8')
  const missing = Object.keys(manifest.commands)
    .map((id) => `hactl ${id.replaceAll(':', ' ')}`)
    .filter((usage) => !readme.includes(`## \`${usage}`))
  assert.deepEqual(missing, [], `README.md lacks these commands: run npm run readme`)
})
