#!/usr/bin/env node
// The whole test suite: unit tests, then integration tests against real sshd, etcd and Kamailio.
// Usage: node scripts/test.mjs [unit|integration] [FILTER...]
// Runs every file with node's test runner (through tsx), one file at a time, so integration tests
// that share hosts never race each other.
import {spawnSync} from 'node:child_process'
import {readdirSync, statSync} from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const args = process.argv.slice(2)
const suites = args[0] === 'unit' || args[0] === 'integration' ? [args.shift()] : ['unit', 'integration']
const filters = args

function find(dir) {
  let out = []
  let entries = []
  try {
    entries = readdirSync(dir)
  } catch {
    return out
  }
  for (const e of entries.sort()) {
    const p = path.join(dir, e)
    if (statSync(p).isDirectory()) out = out.concat(find(p))
    else if (e.endsWith('.test.ts')) out.push(p)
  }
  return out
}

const files = suites
  .flatMap((s) => find(path.join(root, 'test', s)))
  .filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)))

if (files.length === 0) {
  console.error('no test files matched')
  process.exit(1)
}

const res = spawnSync(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-concurrency=1', '--test-reporter=spec', ...files.map((f) => path.relative(root, f))],
  {cwd: root, stdio: 'inherit', env: {...process.env, HACTL_REPO: root}},
)
process.exit(res.status ?? 1)
