import assert from 'node:assert/strict'
import {spawn} from 'node:child_process'
import {EventEmitter} from 'node:events'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {describe, test} from 'node:test'
import {InterruptedError} from '../../src/lib/errors.js'
import {INTERRUPTED_EXIT, watchInterrupts} from '../../src/lib/signals.js'

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')

describe('watchInterrupts', () => {
  function setup(describeState?: () => string[]) {
    const target = new EventEmitter()
    let out = ''
    const exits: number[] = []
    const w = watchInterrupts({
      target: target as unknown as NodeJS.Process,
      write: (t) => (out += t),
      exit: (c) => exits.push(c),
      ...(describeState ? {describe: describeState} : {}),
    })
    return {target, w, out: () => out, exits}
  }

  test('the first SIGINT aborts the signal with an InterruptedError and does not exit', () => {
    const {target, w, out, exits} = setup()
    target.emit('SIGINT')
    assert.equal(w.signal.aborted, true)
    assert.ok(w.signal.reason instanceof InterruptedError)
    assert.equal((w.signal.reason as InterruptedError).exitCode, 130)
    assert.match(out(), /Interrupted: stopping after the steps running now \(Ctrl-C again to quit at once\)/)
    assert.deepEqual(exits, [])
  })

  test('SIGTERM counts as the first signal too', () => {
    const {target, w, out} = setup()
    target.emit('SIGTERM')
    assert.equal(w.signal.aborted, true)
    assert.match(out(), /Got SIGTERM/)
  })

  test('the second signal prints the known state and exits 130 at once', () => {
    const {target, out, exits} = setup(() => ['ast1: etcd stopped, data still there', 'ast2: not changed'])
    target.emit('SIGINT')
    target.emit('SIGINT')
    assert.deepEqual(exits, [INTERRUPTED_EXIT])
    assert.match(
      out(),
      /Quit at once \(SIGINT again\)\. Known state:\n {2}ast1: etcd stopped, data still there\n {2}ast2: not changed\n/,
    )
    // And it stopped listening: a third signal does nothing more.
    target.emit('SIGINT')
    assert.deepEqual(exits, [INTERRUPTED_EXIT])
  })

  test('a describe() that throws still exits 130', () => {
    const {target, out, exits} = setup(() => {
      throw new Error('boom')
    })
    target.emit('SIGINT')
    target.emit('SIGTERM')
    assert.deepEqual(exits, [130])
    assert.match(out(), /could not be described: boom/)
  })

  test('dispose() removes the listeners', () => {
    const {target, w} = setup()
    w.dispose()
    w.dispose()
    assert.equal(target.listenerCount('SIGINT'), 0)
    assert.equal(target.listenerCount('SIGTERM'), 0)
  })

  test('in a real process: SIGINT twice exits 130 with the state', async () => {
    // Given a process that waits with the watcher on
    const script = `
      import {watchInterrupts} from ${JSON.stringify(path.join(REPO, 'src/lib/signals.ts'))}
      const w = watchInterrupts({write: (t) => process.stderr.write(t), exit: (c) => process.exit(c), describe: () => ['ast1: rebooting']})
      w.signal.addEventListener('abort', () => process.stdout.write('aborted\\n'))
      process.stdout.write('ready\\n')
      setInterval(() => {}, 1000)
    `
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: REPO,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
    await new Promise<void>((resolve) =>
      child.stdout.setEncoding('utf8').on('data', (d: string) => {
        stdout += d
        if (stdout.includes('ready')) resolve()
      }),
    )
    // When it gets SIGINT twice
    child.kill('SIGINT')
    await new Promise((r) => setTimeout(r, 300))
    child.kill('SIGINT')
    const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)))
    // Then it aborted first, and left with 130 and the state
    assert.equal(code, 130, stderr)
    assert.match(stdout, /aborted/)
    assert.match(stderr, /Known state:\n {2}ast1: rebooting/)
  })
})

describe('Ctrl-C in the operations (no new step starts after it)', () => {
  const node = (name: string) => ({name, host: `${name}.lab`}) as unknown as import('../../src/lib/config/load.js').ResolvedNode

  test('exec: a host still waiting for its turn is not run, a running one finishes; exit 130', async () => {
    const {execOnNodes, execExitCode} = await import('../../src/lib/ops/exec.js')
    const ac = new AbortController()
    const ran: string[] = []
    let releaseSecond!: () => void
    const secondWaits = new Promise<void>((r) => (releaseSecond = r))
    const pool = {
      // ast2 waits for a free slot in the pool until after the Ctrl-C.
      connect: async (n: {name: string}) => (n.name === 'ast2' ? secondWaits : undefined),
      run: async (n: {name: string}) => {
        ran.push(n.name)
        ac.abort()
        releaseSecond()
        return {stdout: 'ok\n', stderr: '', code: 0, durationMs: 1}
      },
    }
    const out = await execOnNodes(pool as never, [node('ast1'), node('ast2')], 'true', {signal: ac.signal})
    assert.deepEqual(ran, ['ast1'])
    assert.equal(out.results[0]!.ok, true)
    assert.equal(out.results[1]!.ok, false)
    assert.equal(out.results[1]!.error?.kind, 'interrupted')
    assert.match(out.results[1]!.error?.message ?? '', /^ast2: not run \(interrupted\)$/)
    assert.equal(out.summary.interrupted, true)
    assert.equal(execExitCode(out.summary), 130)
  })

  test('exec: without a Ctrl-C the exit codes are 0, 3 and 1 as before', async () => {
    const {execExitCode} = await import('../../src/lib/ops/exec.js')
    assert.equal(execExitCode({total: 2, ok: 2, failed: 0, durationMs: 1}), 0)
    assert.equal(execExitCode({total: 2, ok: 1, failed: 1, durationMs: 1}), 3)
    assert.equal(execExitCode({total: 2, ok: 0, failed: 2, durationMs: 1}), 1)
  })

  test('node add/remove steps: once aborted, run() starts nothing and throws InterruptedError', async () => {
    const {StepRunner} = await import('../../src/lib/ops/node-shared.js')
    const ac = new AbortController()
    const events: string[] = []
    const runner = new StepRunner(
      [
        {id: 'a', title: 'first'},
        {id: 'b', title: 'second'},
      ],
      (e) => events.push(`${e.type}:${'step' in e ? e.step : ''}`),
      ac.signal,
    )
    let ranB = false
    await runner.run('a', async () => {
      ac.abort()
      return 'done'
    })
    await assert.rejects(
      runner.run('b', async () => {
        ranB = true
      }),
      (e: unknown) => e instanceof InterruptedError && /interrupted before "second"/.test(e.message) && e.exitCode === 130,
    )
    assert.equal(ranB, false)
    assert.deepEqual(events, ['start:a', 'done:a'])
    assert.deepEqual(
      runner.records.map((r) => r.status),
      ['done', 'pending'],
    )
  })
})
