/**
 * No generated value can change the remote command (issue 9). fast-check generates node names,
 * drain reasons and paths full of shell syntax (quotes, `$()`, backticks, `;`, `|`, newlines, globs,
 * unicode, control characters) and runs the BUILT CLI with them against a local sshd that records
 * every command exactly as it arrives (`$SSH_ORIGINAL_COMMAND`) and runs none
 * (test/helpers/logging-sshd.ts), plus a local etcd (test/helpers/etcd.ts).
 *
 * - Node names on the command line: refused (exit 2), and nothing reaches any host.
 * - Reasons (`node drain --reason`): either refused (exit 2, nothing reaches a host), or the hosts
 *   get exactly the commands a plain reason gives: the reason never reaches a host.
 * - Paths from hactl.yaml (etcd.dataDir, etcd.wipe, etcd.discovery.file, kamailio.listFile), as used
 *   by `cluster rediscover --dry-run` and `dispatcher sync --dry-run`: either refused (exit 2,
 *   nothing reaches a host), or each recorded command, replayed by bash (the hosts' login shell)
 *   with every command replaced by a recorder (test/fixtures/bad-input/trace.sh), runs exactly the
 *   commands a plain path runs, with the generated path as ONE argument wherever the plain one was.
 *   A value that broke out of its quotes would add a command (the payloads call `hactlpwn`) or
 *   split or change an argument.
 * Results (runs, seed, counterexamples) go to test/.results/no-injection.json.
 */
import assert from 'node:assert/strict'
import {spawn, spawnSync} from 'node:child_process'
import {existsSync, mkdirSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {after, before, describe, test} from 'node:test'
import fc from 'fast-check'
import {parse as parseYaml} from 'yaml'
import {wipePaths} from '../../src/lib/etcd/paths.js'
import {type EtcdCluster, startEtcd} from '../helpers/etcd.js'
import {startLoggingSshd, type LoggingSshd} from '../helpers/logging-sshd.js'
import {writeResults} from '../helpers/results.js'
import {canRunSshd, makeTempDir} from '../helpers/sshd.js'

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
const BIN = path.join(REPO, 'bin', 'run.js')
const TRACER = path.join(REPO, 'test', 'fixtures', 'bad-input', 'trace.sh')
/** Values tried at once (one sshd key each) per property run. */
const BATCH = 5
const RUNS = Number(process.env.HACTL_PROPERTY_RUNS ?? 5)
/** Nothing under this exists, so a redirection from a generated path never reads a real file. */
const NOWHERE = '/nonexistent-hactl-prop'

/** Pieces that would change a command if they ever reached a shell unquoted. */
const HOSTILE = [
  "'",
  '"',
  '$(hactlpwn)',
  '`hactlpwn`',
  ';hactlpwn;',
  '\nhactlpwn\n',
  '|hactlpwn',
  '&&hactlpwn',
  '||hactlpwn',
  '&hactlpwn&',
  '>hactlpwn',
  '<hactlpwn',
  "'$(hactlpwn)'",
  '"$(hactlpwn)"',
  "'\\''",
  '\\',
  '${IFS}hactlpwn',
  '$IFS',
  '$HOME',
  '*',
  '?',
  '[a]',
  '{a,b}',
  '~',
  '#',
  '!',
  '%',
  '=',
  ' ',
  '\t',
  '\r',
  '\u0001',
  '\u007f',
  '\u00a0',
  'é',
  'ß',
  '雪',
  '😀',
  '\u202e',
  '\u200b',
  '..',
  '/',
  '-',
  '--',
  '-rf',
  '$',
  '(',
  ')',
  '{',
  '}',
] as const

const hostile = fc.constantFrom(...HOSTILE)
const plain = fc.stringMatching(/^[a-z0-9._-]{1,6}$/)
const anyText = fc.string({unit: 'grapheme', maxLength: 3})
/** A value with at least one hostile piece in it. */
const hostileValue = fc
  .tuple(
    fc.array(
      fc.oneof(
        {weight: 3, arbitrary: hostile},
        {weight: 2, arbitrary: plain},
        {weight: 1, arbitrary: anyText},
      ),
      {maxLength: 6},
    ),
    hostile,
    fc.nat(),
  )
  .map(([parts, h, at]) => {
    const all = [...parts]
    all.splice(at % (all.length + 1), 0, h)
    return all.join('')
  })

interface Run {
  code: number | null
  stdout: string
  stderr: string
}

interface Finding {
  property: string
  value: string
  problem: string
}

function runCli(argv: string[], env: NodeJS.ProcessEnv, timeoutMs = 30_000): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...argv], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
      cwd: env.HOME,
    })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d))
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.on('error', (e) => {
      clearTimeout(timer)
      reject(e)
    })
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({code, stdout, stderr})
    })
  })
}

/** The simple commands `command` would run in bash, each as its argv, in order (none runs). */
function trace(command: string, dir: string): string[][] {
  const out = path.join(dir, `trace-${process.pid}-${Math.random().toString(36).slice(2)}`)
  writeFileSync(out, '')
  try {
    spawnSync('bash', ['--norc', '--noprofile', '-c', `. ${TRACER}; eval "$1"`, 'trace', command], {
      env: {HACTL_TRACE: out, PATH: '/usr/bin:/bin'},
      stdio: ['ignore', 'ignore', 'ignore'],
      timeout: 10_000,
    })
    return readFileSync(out, 'utf8')
      .split('\n')
      .filter((l) => l !== '')
      .map((l) =>
        l
          .replace(/ $/, '')
          .split(' ')
          .map((w) => Buffer.from(w, 'base64').toString('utf8')),
      )
  } finally {
    rmSync(out, {force: true})
  }
}

describe('no generated value can change the remote command', {timeout: 600_000}, () => {
  const tmp = makeTempDir('hactl-no-injection-')
  let server: LoggingSshd
  let etcd: EtcdCluster
  const workers = Array.from({length: BATCH}, (_, i) => `w${i}`)
  const stats: Record<
    string,
    {
      runs: number
      values: number
      refused: number
      reachedHost: number
      seed?: number
      counterexample?: string
      error?: string
    }
  > = {}
  const findings: Finding[] = []

  function config(
    worker: string,
    patch: {dataDir?: string; wipe?: string[]; file?: string; listFile?: string} = {},
  ): string {
    const q = (s: string) => JSON.stringify(s)
    const a = server.addresses
    const text = [
      'cluster: prop',
      'ssh:',
      '  user: root',
      `  port: ${server.port}`,
      `  identityFiles: [${server.keyFor(worker).file}]`,
      `  knownHosts: ${server.knownHosts}`,
      '  useSshConfig: false',
      '  connectTimeout: 5s',
      '  commandTimeout: 10s',
      'etcd:',
      `  endpoints: [${etcd.endpoints[0]}]`,
      '  timeout: 3s',
      `  dataDir: ${q(patch.dataDir ?? `${NOWHERE}/etcd`)}`,
      `  wipe: [${(patch.wipe ?? ['member']).map(q).join(', ')}]`,
      '  discovery:',
      `    file: ${q(patch.file ?? `${NOWHERE}/user_data`)}`,
      `    service: ${etcd.endpoints[0]}`,
      'kamailio:',
      `  listFile: ${q(patch.listFile ?? `${NOWHERE}/dispatcher.list`)}`,
      'nodes:',
      `  ast1: {host: ${a[0]}, roles: [asterisk, etcd]}`,
      `  ast2: {host: ${a[1]}, roles: [asterisk, etcd]}`,
      `  ast3: {host: ${a[2]}, roles: [asterisk]}`,
      `  kam1: {host: ${a[3]}, roles: [kamailio]}`,
      '',
    ].join('\n')
    const file = path.join(tmp.dir, `${worker}.yaml`)
    writeFileSync(file, text)
    return file
  }

  const env = (configPath: string): NodeJS.ProcessEnv => ({
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: path.join(tmp.dir, 'home'),
    XDG_STATE_HOME: path.join(tmp.dir, 'state'),
    NO_COLOR: '1',
    HACTL_CONFIG: configPath,
  })

  /** Run argv as `worker`; what reached the hosts during the run. */
  async function run(worker: string, argv: string[], configPath: string): Promise<Run & {remote: string[]}> {
    const before = server.commandsOf(worker).length
    const r = await runCli(argv, env(configPath))
    return {...r, remote: server.commandsOf(worker).slice(before)}
  }

  /** Run a property over batches of values, recording what happened for the report. */
  async function check(
    name: string,
    arb: fc.Arbitrary<string>,
    one: (worker: string, value: string) => Promise<'refused' | 'reached'>,
  ): Promise<void> {
    const s = (stats[name] = {runs: 0, values: 0, refused: 0, reachedHost: 0})
    const seed = Number(process.env.HACTL_PROPERTY_SEED ?? Date.now() % 2 ** 31)
    const result = await fc.check(
      fc.asyncProperty(fc.array(arb, {minLength: BATCH, maxLength: BATCH}), async (values) => {
        s.runs++
        const outcomes = await Promise.all(values.map((v, i) => one(workers[i]!, v)))
        for (const o of outcomes) {
          s.values++
          if (o === 'refused') s.refused++
          else s.reachedHost++
        }
      }),
      {numRuns: RUNS, seed, endOnFailure: true, interruptAfterTimeLimit: 240_000},
    )
    Object.assign(stats[name]!, {seed})
    if (result.failed) {
      const value = JSON.stringify(result.counterexample?.[0])
      const error =
        result.errorInstance instanceof Error ? result.errorInstance.message : String(result.errorInstance)
      Object.assign(stats[name]!, {counterexample: value, error})
      findings.push({property: name, value, problem: error})
      assert.fail(
        `${name}: counterexample ${value} (seed ${seed}, HACTL_PROPERTY_SEED=${seed} to replay):\n${error}`,
      )
    }
  }

  before(async () => {
    assert.ok(canRunSshd(), 'this test starts sshd: run it as root with /usr/sbin/sshd installed')
    assert.ok(
      existsSync(path.join(REPO, 'dist', 'commands', 'status.js')),
      'build first: npx tsc -p tsconfig.json && npx oclif manifest',
    )
    assert.ok(existsSync(TRACER), `${TRACER} is missing`)
    mkdirSync(path.join(tmp.dir, 'home'), {recursive: true})
    server = await startLoggingSshd({prefix: 'hactl-no-injection-sshd-', tags: [...workers, 'base']})
    etcd = await startEtcd({name: 'no-injection'})
  })

  after(async () => {
    writeResults('no-injection', {batch: BATCH, numRuns: RUNS, properties: stats, findings})
    await etcd?.destroy()
    await server?.stop()
    tmp.remove()
  })

  test('the tracer sees through quoting: a quoted payload is one argument, an unquoted one runs', () => {
    const quoted = trace(`[ -e '/x/it'\\''s $(hactlpwn)' ] && cat /etc/hostname`, tmp.dir)
    assert.deepEqual(quoted, [
      ['[', '-e', "/x/it's $(hactlpwn)", ']'],
      ['cat', '/etc/hostname'],
    ])
    const unquoted = trace('[ -e /x/$(hactlpwn) ]', tmp.dir)
    assert.deepEqual(unquoted[0], ['hactlpwn'])
  })

  test('node names on the command line: refused (exit 2), nothing reaches a host', async () => {
    const known = new Set(['ast1', 'ast2', 'ast3', 'kam1', 'asterisk', 'kamailio', 'etcd', 'all'])
    // The values the CLI accepts by design: comma lists of known names, blanks around them trimmed.
    const acceptable = (v: string) => {
      if (v.startsWith('-') || /[\u0000-\u001f\u007f]/.test(v)) return false
      const tokens = v
        .split(',')
        .map((t) => t.trim())
        .filter((t) => t !== '')
      return tokens.length > 0 && tokens.every((t) => known.has(t))
    }
    const commands: Array<(v: string) => string[]> = [
      (v) => ['status', v],
      (v) => ['exec', v, '--', 'uptime'],
      (v) => ['node', 'drain', '--dry-run', '--', v],
      (v) => ['node', 'undrain', '--dry-run', '--', v],
      (v) => ['dispatcher', 'sync', '--dry-run', '--', v],
    ]
    let turn = 0
    await check(
      'node names',
      hostileValue.filter((v) => !v.includes('\0') && !acceptable(v)),
      async (worker, v) => {
        const argv = commands[turn++ % commands.length]!(v)
        const r = await run(worker, argv, config(worker))
        assert.equal(
          r.remote.length,
          0,
          `${JSON.stringify(argv)} reached a host: ${JSON.stringify(r.remote[0])}`,
        )
        assert.equal(r.code, 2, `${JSON.stringify(argv)}: exit ${r.code}, expected 2\n${r.stderr}`)
        assert.match(r.stderr, /^Error: /, `${JSON.stringify(argv)}: ${r.stderr}`)
        return 'refused'
      },
    )
  })

  test('reasons: refused, or the hosts get exactly the commands a plain reason gives', async () => {
    const argv = (reason: string) => ['node', 'drain', 'ast1', '--dry-run', '--reason', reason]
    const base = await run('base', argv('plain reason'), config('base'))
    assert.ok(
      base.remote.length > 0,
      `the baseline drain --dry-run sent no command (exit ${base.code}):\n${base.stderr}`,
    )
    const want = [...base.remote].sort()
    const reason = fc.oneof(
      hostileValue,
      fc
        .tuple(hostileValue, fc.integer({min: 1000, max: 3000}))
        .map(([v, n]) => v.repeat(Math.ceil(n / Math.max(1, v.length)))),
    )
    await check(
      'reasons',
      reason.filter((v) => !v.includes('\0')),
      async (worker, v) => {
        const r = await run(worker, argv(v), config(worker))
        if (r.code === 2) {
          assert.equal(
            r.remote.length,
            0,
            `a refused reason still reached a host: ${JSON.stringify(r.remote[0])}`,
          )
          return 'refused'
        }
        assert.deepEqual(
          [...r.remote].sort(),
          want,
          `the reason changed the remote commands (exit ${r.code})`,
        )
        assert.equal(r.code, base.code, `exit ${r.code}, the plain reason gives ${base.code}:\n${r.stderr}`)
        return 'reached'
      },
    )
  })

  /**
   * A path property: `patch(v)` puts the generated value in the config, `literals(v)` says which
   * arguments it must become on the host (in the places where the plain value's arguments were),
   * `argv` is the command that sends it.
   */
  async function pathProperty(
    name: string,
    argv: string[],
    patch: (v: string) => Parameters<typeof config>[1],
    literals: (v: string) => string[],
  ): Promise<void> {
    const plainValue = 'hactlplain'
    const base = await run('base', argv, config('base', patch(plainValue)))
    assert.ok(
      base.remote.length > 0,
      `${name}: the baseline run sent no command (exit ${base.code}):\n${base.stderr}`,
    )
    const baseTraces = base.remote.map((c) => trace(c, tmp.dir))
    const baseLiterals = literals(plainValue)
    for (const lit of baseLiterals) {
      assert.ok(
        baseTraces.some((t) => t.some((call) => call.includes(lit))),
        `${name}: the plain value ${lit} is not an argument of any traced command`,
      )
    }
    await check(name, hostileValue, async (worker, v) => {
      const p = patch(v)
      const cfg = config(worker, p)
      // Only values the YAML carries unchanged say something about hactl.
      const parsed = parseYaml(readFileSync(cfg, 'utf8')) as {
        etcd: {dataDir: string; wipe: string[]; discovery: {file: string}}
        kamailio: {listFile: string}
      }
      const carried =
        (p?.dataDir === undefined || parsed.etcd.dataDir === p.dataDir) &&
        (p?.file === undefined || parsed.etcd.discovery.file === p.file) &&
        (p?.listFile === undefined || parsed.kamailio.listFile === p.listFile) &&
        (p?.wipe === undefined || parsed.etcd.wipe[0] === p.wipe[0])
      if (!carried) throw new Error(`the test's YAML does not carry ${JSON.stringify(v)} unchanged`)
      const r = await run(worker, argv, cfg)
      if (r.code === 2) {
        assert.equal(
          r.remote.length,
          0,
          `a refused value still reached a host: ${JSON.stringify(r.remote[0])}`,
        )
        assert.match(r.stderr, /^Error: /)
        return 'refused'
      }
      let lits: string[]
      try {
        lits = literals(v)
      } catch (error) {
        throw new Error(
          `hactl ran commands (exit ${r.code}) for a value it should refuse (${(error as Error).message}): ${JSON.stringify(r.remote[0])}`,
        )
      }
      const map = new Map(baseLiterals.map((b, i) => [b, lits[i]!] as const))
      const want = baseTraces.map((t) => t.map((call) => call.map((arg) => map.get(arg) ?? arg)))
      const got = r.remote.map((c) => trace(c, tmp.dir))
      const key = (t: string[][]) => JSON.stringify(t)
      assert.deepEqual(
        got.map(key).sort(),
        want.map(key).sort(),
        `the value changed the commands run on the host; recorded: ${JSON.stringify(r.remote[0])}`,
      )
      return 'reached'
    })
  }

  test('etcd.dataDir: refused, or one literal argument on the host', async () => {
    await pathProperty(
      'etcd.dataDir',
      ['cluster', 'rediscover', '--dry-run'],
      (v) => ({dataDir: `${NOWHERE}/${v}`}),
      (v) => [`${NOWHERE}/${v}`, wipePaths(`${NOWHERE}/${v}`, ['member'])[0]!],
    )
  })

  test('etcd.wipe: refused, or one literal argument on the host', async () => {
    await pathProperty(
      'etcd.wipe',
      ['cluster', 'rediscover', '--dry-run'],
      (v) => ({wipe: [v]}),
      (v) => [wipePaths(`${NOWHERE}/etcd`, [v])[0]!],
    )
  })

  test('etcd.discovery.file: refused, or one literal argument on the host', async () => {
    await pathProperty(
      'etcd.discovery.file',
      ['cluster', 'rediscover', '--dry-run'],
      (v) => ({file: `${NOWHERE}/${v}`}),
      (v) => [`${NOWHERE}/${v}`],
    )
  })

  test('kamailio.listFile: refused, or one literal argument on the host', async () => {
    await pathProperty(
      'kamailio.listFile',
      ['dispatcher', 'sync', '--dry-run', '--allow-empty'],
      (v) => ({listFile: `${NOWHERE}/${v}`}),
      (v) => [`${NOWHERE}/${v}`],
    )
  })
})
