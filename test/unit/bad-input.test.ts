/**
 * The bad-input corpus (issue 9): wrong command lines and hactl.yaml files, from
 * test/fixtures/bad-input/cases.json, run through the BUILT CLI (node bin/run.js) with a config
 * whose hosts are a local sshd that records every command and runs none (test/helpers/logging-sshd.ts;
 * each case has its own key, so each case has its own log). Every case must:
 *   - exit with its documented status (2 unless the case says otherwise) within its time limit;
 *   - print one `Error: ...` line on stderr (matching the case's pattern) and only `Hint:`/`Try:`
 *     lines after it, nothing on stdout, no stack trace; (`format: report` cases, errors found at
 *     connect time, may add indented detail lines and progress lines around the Error line);
 *   - run no command on any host: the case's log stays empty.
 * Patterns are matched case-insensitively. A control case proves the log works. Results go to test/.results/bad-input.json for
 * docs/reliability.md (node scripts/reliability-report.mjs).
 * Needs root (sshd) and the build (npx tsc -p tsconfig.json && npx oclif manifest).
 */
import assert from 'node:assert/strict'
import {spawn} from 'node:child_process'
import {existsSync, mkdirSync, readFileSync, writeFileSync} from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {after, before, describe, test} from 'node:test'
import {parseDocument} from 'yaml'
import {startLoggingSshd, type LoggingSshd} from '../helpers/logging-sshd.js'
import {displayArgv, writeResults} from '../helpers/results.js'
import {canRunSshd, freePort, makeTempDir} from '../helpers/sshd.js'

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
const BIN = path.join(REPO, 'bin', 'run.js')
const CORPUS = path.join(REPO, 'test', 'fixtures', 'bad-input', 'cases.json')

type Arg = string | {repeat: string; times: number} | {spread: string; count: number}
type Value = unknown

interface BadInputCase {
  id: string
  group: string
  argv: Arg[]
  /** Regex (source) the Error line must match. */
  stderr?: string
  /** Documented exit status; default 2. */
  exit?: number
  /** one-line (default): Error + Hint/Try lines only; report: an Error line among progress/detail lines. */
  format?: 'one-line' | 'report'
  /** For `report`: regexes that some stderr line must match (the per-host lines). */
  expectLines?: string[]
  config?: {set?: Record<string, Value>; append?: string; text?: string; path?: 'missing' | 'directory'}
  timeoutMs?: number
  note?: string
}

interface Corpus {
  description: string
  base: string
  cases: BadInputCase[]
}

interface BadInputResult {
  id: string
  group: string
  argv: string
  config?: string
  note?: string
  expectedExit: number
  exit: number | null
  errorLine: string
  hints: number
  durationMs: number
  remoteCommands: number
  ok: boolean
  problems: string[]
}

const STACK_RE = /\bat .*\(.*:\d+:\d+\)/
/** An Error line longer than this is not "one clear line" (a path may be 4096 characters). */
const MAX_ERROR_LINE = 5000
const CONCURRENCY = 6

const corpus = JSON.parse(readFileSync(CORPUS, 'utf8')) as Corpus

function materialize(v: Value, vars: Record<string, string>): Value {
  if (typeof v === 'string') {
    const m = /^\{\{([A-Z_]+)\}\}$/.exec(v)
    if (m && vars[m[1]!] !== undefined && /^\d+$/.test(vars[m[1]!]!)) return Number(vars[m[1]!])
    return v
  }
  if (Array.isArray(v)) return v.map((x) => materialize(x, vars))
  if (v && typeof v === 'object' && 'repeat' in v) {
    const r = v as {repeat: string; times: number}
    return r.repeat.repeat(r.times)
  }
  return v
}

function argvOf(c: BadInputCase): string[] {
  return c.argv.flatMap((a) => {
    if (typeof a === 'string') return [a]
    if ('repeat' in a) return [a.repeat.repeat(a.times)]
    return Array.from({length: a.count}, (_, i) => `${a.spread}${i}`)
  })
}

function describeConfig(c: BadInputCase): string | undefined {
  const cfg = c.config
  if (!cfg) return undefined
  if (cfg.path) return `config file: ${cfg.path}`
  if (cfg.append) return `nodes += ${JSON.stringify(cfg.append.trim())}`
  if (cfg.text !== undefined) {
    const t = cfg.text.replace(/\{\{HUGE:(\d+)\}\}/, (_, n: string) => `<${n} bytes>`)
    return `config: ${JSON.stringify(t.length > 90 ? `${t.slice(0, 87)}...` : t)}`
  }
  if (cfg.set) {
    return Object.entries(cfg.set)
      .map(([k, v]) => {
        const s =
          v && typeof v === 'object' && 'repeat' in (v as object)
            ? `<${(v as {times: number}).times} × ${JSON.stringify((v as {repeat: string}).repeat)}>`
            : JSON.stringify(v)
        return `${k}: ${s}`
      })
      .join(', ')
  }
  return undefined
}

interface Run {
  code: number | null
  stdout: string
  stderr: string
  durationMs: number
  timedOut: boolean
}

function runCli(argv: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<Run> {
  const t0 = Date.now()
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...argv], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
      cwd: env.HOME,
    })
    let stdout = ''
    let stderr = ''
    let timedOut = false
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d))
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
    const timer = setTimeout(() => {
      timedOut = true
      child.kill('SIGKILL')
    }, timeoutMs)
    child.on('error', (e) => {
      clearTimeout(timer)
      reject(e)
    })
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({code, stdout, stderr, durationMs: Date.now() - t0, timedOut})
    })
  })
}

/** What is wrong with one run, as sentences; empty when the case passes. */
function checkRun(c: BadInputCase, r: Run, remote: string[]): string[] {
  const problems: string[] = []
  const expectedExit = c.exit ?? 2
  const timeoutMs = c.timeoutMs ?? 20_000
  if (r.timedOut) problems.push(`did not finish within ${timeoutMs / 1000}s (killed)`)
  else if (r.code !== expectedExit) problems.push(`exit ${r.code}, expected ${expectedExit}`)
  if (STACK_RE.test(r.stderr) || STACK_RE.test(r.stdout)) problems.push('a stack trace was printed')
  if (/this is a bug in hactl/.test(r.stderr))
    problems.push('reported as a bug in hactl (an unexpected exception)')
  if (r.stdout !== '') problems.push(`printed on stdout: ${JSON.stringify(r.stdout.slice(0, 120))}`)
  const lines = r.stderr.replace(/\n$/, '').split('\n')
  const format = c.format ?? 'one-line'
  const errorIdx = format === 'one-line' ? 0 : lines.findIndex((l) => l.startsWith('Error: '))
  const errorLine = lines[errorIdx] ?? ''
  if (!r.timedOut) {
    if (!errorLine.startsWith('Error: '))
      problems.push(`stderr does not start with "Error: ": ${JSON.stringify(r.stderr.slice(0, 160))}`)
    if (format === 'one-line') {
      const extra = lines.slice(1).filter((l) => !/^(Hint|Try): \S/.test(l))
      if (extra.length > 0)
        problems.push(
          `more than one Error line (${extra.length} other lines, first: ${JSON.stringify(extra[0]!.slice(0, 120))})`,
        )
    }
    if (errorLine.length > MAX_ERROR_LINE)
      problems.push(`the Error line is ${errorLine.length} characters long`)
    if (c.stderr && !new RegExp(c.stderr, 'i').test(errorLine))
      problems.push(`the Error line does not match /${c.stderr}/`)
    for (const want of c.expectLines ?? []) {
      if (!lines.some((l) => new RegExp(want, 'i').test(l))) problems.push(`no stderr line matches /${want}/`)
    }
    const colonId = /\bhactl [a-z]+:[a-z-]+/.exec(r.stderr)
    if (colonId)
      problems.push(
        `a hint names a command that does not exist: "${colonId[0]}" (the topic separator is a space)`,
      )
  }
  if (remote.length > 0)
    problems.push(
      `${remote.length} command(s) reached a host, first: ${JSON.stringify(remote[0]!.slice(0, 120))}`,
    )
  return problems
}

describe('bad input: refused before any command reaches a host', {concurrency: CONCURRENCY}, () => {
  const tmp = makeTempDir('hactl-bad-input-')
  let server: LoggingSshd
  let closedPort = 1
  const results: BadInputResult[] = []

  const sshBlock = (key: string) =>
    [
      'ssh:',
      '  user: root',
      `  port: ${server.port}`,
      `  identityFiles: [${key}]`,
      `  knownHosts: ${server.knownHosts}`,
      '  strictHostKeyChecking: yes',
      '  useSshConfig: false',
      '  connectTimeout: 3s',
      '  commandTimeout: 10s',
      '',
    ].join('\n')
  const nodesBlock = () =>
    [
      'nodes:',
      `  ast1: {host: ${server.addresses[0]}, roles: [asterisk, etcd]}`,
      `  ast2: {host: ${server.addresses[1]}, roles: [asterisk, etcd]}`,
      `  ast3: {host: ${server.addresses[2]}, roles: [asterisk, etcd]}`,
      `  ast4: {host: ${server.addresses[3]}, roles: [asterisk]}`,
      `  kam1: {host: ${server.addresses[4]}, roles: [kamailio]}`,
      '',
    ].join('\n')

  function expand(text: string, key: string): string {
    return text
      .replaceAll('{{SSH}}', sshBlock(key))
      .replaceAll('{{NODES}}', nodesBlock())
      .replaceAll('{{CLOSED_PORT}}', String(closedPort))
      .replace(/\{\{HUGE:(\d+)\}\}/g, (_, n: string) => 'x'.repeat(Number(n)))
  }

  /** The case's hactl.yaml (its own key, so its own log), as a path. */
  function configFor(c: BadInputCase): string {
    const key = server.keyFor(c.id).file
    const cfg = c.config ?? {}
    if (cfg.path === 'missing') return path.join(tmp.dir, 'no-such-dir', 'hactl.yaml')
    if (cfg.path === 'directory') {
      const d = path.join(tmp.dir, `${c.id}.d`)
      mkdirSync(d, {recursive: true})
      return d
    }
    let text: string
    if (cfg.text !== undefined) text = expand(cfg.text, key)
    else {
      text = expand(corpus.base, key)
      if (cfg.set) {
        const doc = parseDocument(text)
        for (const [k, v] of Object.entries(cfg.set))
          doc.setIn(k.split('.'), materialize(v, {CLOSED_PORT: String(closedPort)}))
        text = doc.toString({lineWidth: 0})
      }
      if (cfg.append) text += cfg.append
    }
    const file = path.join(tmp.dir, `${c.id}.yaml`)
    writeFileSync(file, text)
    return file
  }

  function envFor(configPath: string): NodeJS.ProcessEnv {
    const home = path.join(tmp.dir, 'home')
    mkdirSync(home, {recursive: true})
    return {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: home,
      XDG_STATE_HOME: path.join(tmp.dir, 'state'),
      NO_COLOR: '1',
      HACTL_CONFIG: configPath,
    }
  }

  before(async () => {
    assert.ok(canRunSshd(), 'the bad-input corpus starts sshd: run it as root with /usr/sbin/sshd installed')
    assert.ok(
      existsSync(path.join(REPO, 'dist', 'commands', 'status.js')),
      'build first: npx tsc -p tsconfig.json && npx oclif manifest',
    )
    assert.ok(
      corpus.cases.length >= 60,
      `the corpus has ${corpus.cases.length} cases; issue 9 asks for at least 60`,
    )
    closedPort = await freePort()
    // Every key up front: sshd reads authorized_keys at each login, so it is not rewritten later.
    server = await startLoggingSshd({
      prefix: 'hactl-bad-input-sshd-',
      tags: ['control', ...corpus.cases.map((c) => c.id)],
    })
  })

  after(async () => {
    const order = new Map(corpus.cases.map((c, i) => [c.id, i]))
    results.sort((a, b) => (order.get(a.id) ?? 0) - (order.get(b.id) ?? 0))
    writeResults('bad-input', {corpus: path.relative(REPO, CORPUS), cases: results})
    await server?.stop()
    tmp.remove()
  })

  test('control: with good input, the command does reach the host (so an empty log means something)', async () => {
    const cfg = configFor({id: 'control', group: 'control', argv: []})
    const r = await runCli(['exec', 'ast1', '--', 'uptime'], envFor(cfg), 30_000)
    assert.equal(r.code, 0, `exec failed:\n${r.stdout}\n${r.stderr}`)
    assert.deepEqual(server.commandsOf('control'), ['uptime'])
  })

  for (const c of corpus.cases) {
    test(`${c.id}: ${displayArgv(argvOf(c), 70)}${c.config ? ` [${describeConfig(c)?.slice(0, 60)}]` : ''}`, async () => {
      const argv = argvOf(c)
      const r = await runCli(argv, envFor(configFor(c)), c.timeoutMs ?? 20_000)
      const remote = server.commandsOf(c.id)
      const problems = checkRun(c, r, remote)
      const lines = r.stderr.replace(/\n$/, '').split('\n')
      const errorLine = lines.find((l) => l.startsWith('Error: ')) ?? lines[0] ?? ''
      results.push({
        id: c.id,
        group: c.group,
        argv: displayArgv(argv),
        ...(c.config ? {config: describeConfig(c)} : {}),
        ...(c.note ? {note: c.note} : {}),
        expectedExit: c.exit ?? 2,
        exit: r.timedOut ? null : r.code,
        errorLine: errorLine.length > 300 ? `${errorLine.slice(0, 297)}...` : errorLine,
        hints: lines.filter((l) => /^(Hint|Try): /.test(l)).length,
        durationMs: r.durationMs,
        remoteCommands: remote.length,
        ok: problems.length === 0,
        problems,
      })
      assert.deepEqual(
        problems,
        [],
        `${c.id}: ${problems.join('; ')}\n--- stderr (first 1500 chars)\n${r.stderr.slice(0, 1500)}\n--- stdout (first 500 chars)\n${r.stdout.slice(0, 500)}`,
      )
    })
  }
})
