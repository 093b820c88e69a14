#!/usr/bin/env node
// The whole test suite: unit tests, then integration tests against real sshd, etcd and Kamailio.
// Usage: node scripts/test.mjs [unit|integration] [FILTER...]
// Runs every file with node's test runner (through tsx), one file at a time, so integration tests
// that share hosts never race each other.
//
// When integration tests are selected, they run against ONE shared local lab (`hactl lab`, see
// test/helpers/lab.ts): it needs root, is brought up before the run, its hactl.yaml is exported as
// HACTL_TEST_CONFIG (and HACTL_TEST_LAB names it), and it is always removed afterwards, also when
// a test fails or the run is interrupted. Tests that change the lab put it back.
import {spawn} from 'node:child_process'
import {existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const args = process.argv.slice(2)
const suites = args[0] === 'unit' || args[0] === 'integration' ? [args.shift()] : ['unit', 'integration']
const filters = args

/** Keep in step with TEST_LAB in test/helpers/lab.ts. Two runs on one machine need different names and subnets. */
const TEST_LAB = {
  name: process.env.HACTL_TEST_LAB_NAME ?? 'hactltest',
  subnet: process.env.HACTL_TEST_LAB_SUBNET ?? '10.78.0.0/24',
  asterisk: 4,
  kamailio: 2,
  etcd: 3,
  spare: 1,
}
const ownerFile = `/var/lib/hactl-lab/${TEST_LAB.name}/test-run.pid`

/** The pid of another test run that still uses the test lab, if any. */
function otherOwner() {
  try {
    const pid = Number(readFileSync(ownerFile, 'utf8').trim())
    if (pid === process.pid || !Number.isInteger(pid)) return undefined
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('scripts/test.mjs') ? pid : undefined
  } catch {
    return undefined
  }
}

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

const needsLab = files.some((f) => f.startsWith(path.join(root, 'test', 'integration') + path.sep))

/** Run a program with inherited stdio (or captured stdout); resolves {code, stdout}. */
function run(cmd, argv, {capture = false, env = process.env} = {}) {
  return new Promise((resolve) => {
    const child = spawn(cmd, argv, {
      cwd: root,
      env,
      stdio: ['ignore', capture ? 'pipe' : 'inherit', 'inherit'],
    })
    let stdout = ''
    if (capture) child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d))
    current = child
    child.on('error', (err) => resolve({code: 1, stdout, error: err}))
    child.on('close', (code, signal) => {
      current = undefined
      resolve({code: code ?? (signal ? 128 : 1), stdout})
    })
  })
}

let current
let interrupted = false
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    // Pass it on to the running step and let that end, then clean up below: never leave a lab behind.
    interrupted = true
    current?.kill(sig)
  })
}

/** The build when there is one, else the TypeScript sources. */
const hactlBin = existsSync(path.join(root, 'dist', 'commands', 'lab', 'up.js')) ? 'bin/run.js' : 'bin/dev.js'
const hactl = (argv, opts) => run(process.execPath, [hactlBin, ...argv], opts)

async function main() {
  // The tests' runs of hactl keep their history, backups and config cache in a scratch home, not
  // in the operator's ~/.local/state/hactl and ~/.cache/hactl.
  const env = {...process.env, HACTL_REPO: root, XDG_STATE_HOME: path.join(scratch, 'state'), XDG_CACHE_HOME: path.join(scratch, 'cache')}
  if (needsLab) {
    if (typeof process.getuid === 'function' && process.getuid() !== 0) {
      console.error('integration tests need root: they run a local lab of network namespaces (hactl lab).')
      console.error(
        'run them as root (sudo node scripts/test.mjs integration), or only the unit tests: node scripts/test.mjs unit',
      )
      return 1
    }
    const owner = otherOwner()
    if (owner) {
      console.error(
        `another test run (pid ${owner}) is using the test lab ${TEST_LAB.name}; wait for it to finish,`,
      )
      console.error('or run beside it with HACTL_TEST_LAB_NAME=NAME HACTL_TEST_LAB_SUBNET=10.NN.0.0/24')
      ownsLab = false
      return 1
    }
    // A lab left by a run that was killed hard would make `lab up` refuse: remove it first.
    await hactl(['lab', 'down', '--name', TEST_LAB.name])
    const up = await hactl(
      [
        'lab',
        'up',
        '--name',
        TEST_LAB.name,
        '--subnet',
        TEST_LAB.subnet,
        '--asterisk',
        String(TEST_LAB.asterisk),
        '--kamailio',
        String(TEST_LAB.kamailio),
        '--etcd',
        String(TEST_LAB.etcd),
        '--spare',
        String(TEST_LAB.spare),
      ],
      {capture: true},
    )
    const m = /^export HACTL_CONFIG=(\S+)$/m.exec(up.stdout)
    if (up.code !== 0 || !m) {
      console.error(`could not bring the test lab up (exit ${up.code}); see the messages above`)
      return 1
    }
    writeFileSync(ownerFile, `${process.pid}\n`)
    env.HACTL_TEST_CONFIG = m[1]
    env.HACTL_TEST_LAB = TEST_LAB.name
    console.error(`test lab ${TEST_LAB.name} is up: HACTL_TEST_CONFIG=${m[1]}`)
  }
  if (interrupted) return 130
  const res = await run(
    process.execPath,
    [
      '--import',
      'tsx',
      '--test',
      '--test-concurrency=1',
      // A test file that leaves a handle open (an etcd watch, a socket) must not hang the run, and
      // no single test may wait forever on a stuck host: both end as failures instead.
      '--test-force-exit',
      '--test-timeout=600000',
      '--test-reporter=spec',
      ...files.map((f) => path.relative(root, f)),
    ],
    {env},
  )
  return interrupted ? 130 : res.code
}

let status = 1
let ownsLab = true
const scratch = mkdtempSync(path.join(tmpdir(), 'hactl-test-home-'))
try {
  status = await main()
} finally {
  rmSync(scratch, {recursive: true, force: true})
  if (needsLab && ownsLab && (typeof process.getuid !== 'function' || process.getuid() === 0)) {
    const down = await hactl(['lab', 'down', '--name', TEST_LAB.name], {capture: true})
    if (down.code !== 0) {
      console.error(`could not remove the test lab: run hactl lab down --name ${TEST_LAB.name}`)
      if (status === 0) status = 1
    }
  }
}
process.exit(status)
