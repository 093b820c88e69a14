import assert from 'node:assert/strict'
import {execFileSync} from 'node:child_process'
import {readFileSync} from 'node:fs'
import path from 'node:path'
import {test} from 'node:test'

const repo = path.resolve(import.meta.dirname, '../..')

test('the --version fast path prints what oclif itself prints', async () => {
  // Given oclif's own answer (its Config computes the user agent the same way)
  const {Config} = await import('@oclif/core')
  const config = await Config.load({root: repo})
  // When hactl --version runs through bin/run.js's fast path
  const out = execFileSync(process.execPath, [path.join(repo, 'bin/run.js'), '--version'], {encoding: 'utf8'})
  // Then it is the same line, with package.json's version
  assert.equal(out, `${config.userAgent}\n`)
  const {version} = JSON.parse(readFileSync(path.join(repo, 'package.json'), 'utf8')) as {version: string}
  assert.match(out, new RegExp(`^hactl/${version.replaceAll('.', '\\.')} `))
})
