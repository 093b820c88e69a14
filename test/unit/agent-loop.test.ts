import assert from 'node:assert/strict'
import {readFileSync} from 'node:fs'
import path from 'node:path'
import {describe, test} from 'node:test'
import {
  classifyReload,
  describeChange,
  DispatcherLoop,
  mergeOtherSets,
  type AgentClock,
  type ReloadAnswer,
} from '../../src/lib/agent/agent-loop.js'
import {agentLogLine} from '../../src/lib/agent/log.js'

const fixtures = path.resolve(import.meta.dirname, '../fixtures/kamailio')
const OK: ReloadAnswer = {code: 0, output: readFileSync(path.join(fixtures, 'reload-ok.txt'), 'utf8')}
const ONGOING: ReloadAnswer = {
  code: 0,
  output: readFileSync(path.join(fixtures, 'reload-ongoing.txt'), 'utf8'),
}
const DOWN: ReloadAnswer = {
  code: 255,
  output: readFileSync(path.join(fixtures, 'kamcmd-down-refused.stderr.txt'), 'utf8'),
}

/** Timers that only move when the test says so. */
class FakeClock implements AgentClock {
  t = 0
  private seq = 0
  private timers = new Map<number, {at: number; fn: () => void}>()

  now(): number {
    return this.t
  }

  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.seq
    this.timers.set(id, {at: this.t + ms, fn})
    return id
  }

  clearTimeout(handle: unknown): void {
    this.timers.delete(handle as number)
  }

  get pending(): number {
    return this.timers.size
  }

  /** Move time forward, firing due timers in order and letting their promises settle. */
  async advance(ms: number): Promise<void> {
    const end = this.t + ms
    for (;;) {
      await settle()
      let next: [number, {at: number; fn: () => void}] | undefined
      for (const e of this.timers) if (e[1].at <= end && (!next || e[1].at < next[1].at)) next = e
      if (!next) break
      this.timers.delete(next[0])
      this.t = next[1].at
      next[1].fn()
    }
    this.t = end
    await settle()
  }
}

async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r))
}

/** A fake world: what etcd would render, the file on disk, Kamailio's answers. */
function harness(opts: {wanted?: string; file?: string; answers?: ReloadAnswer[]; resyncMs?: number} = {}) {
  const clock = new FakeClock()
  const world = {
    wanted: opts.wanted ?? '1 sip:10.0.0.21:5060 0 0 weight=100\n',
    etcdError: undefined as Error | undefined,
    file: opts.file as string | undefined,
    writes: [] as Array<{at: number; text: string}>,
    reloads: [] as number[],
    answers: [...(opts.answers ?? [])],
    wantedCalls: 0,
    logs: [] as string[],
  }
  const loop = new DispatcherLoop(
    {
      wanted: async () => {
        world.wantedCalls += 1
        if (world.etcdError) throw world.etcdError
        return world.wanted
      },
      readFile: async () => world.file,
      writeFile: async (text) => {
        world.file = text
        world.writes.push({at: clock.now(), text})
      },
      reload: async () => {
        world.reloads.push(clock.now())
        return world.answers.shift() ?? OK
      },
      clock,
      log: (event, detail) => world.logs.push(`${event} ${detail ?? ''}`.trim()),
    },
    {
      listFile: '/etc/kamailio/dispatcher.list',
      setId: 1,
      settleMs: 200,
      reloadDeltaMs: 5000,
      retryMs: 1000,
      resyncMs: opts.resyncMs ?? 0,
    },
  )
  return {clock, world, loop}
}

describe('dispatcher agent loop', () => {
  test('the first render writes the file and reloads at once', async () => {
    // Given an empty list file
    const {clock, world, loop} = harness()
    // When the agent starts
    loop.start()
    await clock.advance(0)
    // Then the rendered list is written once and Kamailio reloaded once
    assert.equal(world.file, world.wanted)
    assert.equal(world.writes.length, 1)
    assert.deepEqual(world.reloads, [0])
    assert.match(
      world.logs.join('\n'),
      /^wrote \/etc\/kamailio\/dispatcher\.list set 1: 1 destination\(s\) \+sip:10\.0\.0\.21:5060$/m,
    )
    assert.match(world.logs.join('\n'), /^reloaded Ok\. Dispatcher successfully reloaded\.$/m)
    await loop.stop()
  })

  test('an unchanged rendering writes nothing and does not reload', async () => {
    // Given a file that already holds what etcd renders
    const {clock, world, loop} = harness({file: '1 sip:10.0.0.21:5060 0 0 weight=100\n'})
    loop.start()
    await clock.advance(0)
    // When events arrive that do not change the rendering
    loop.changed()
    await clock.advance(1000)
    loop.changed()
    await clock.advance(1000)
    // Then etcd was read each time, but the file never written and Kamailio never reloaded
    assert.equal(world.wantedCalls, 3)
    assert.equal(world.writes.length, 0)
    assert.equal(world.reloads.length, 0)
    await loop.stop()
  })

  test('a burst of events within the settle time makes one render and one write', async () => {
    const {clock, world, loop} = harness()
    loop.start()
    await clock.advance(0)
    const rendersBefore = world.wantedCalls
    // When ten boxes register within 100 ms
    for (let i = 0; i < 10; i++) {
      world.wanted = `${world.wanted}1 sip:10.0.0.${30 + i}:5060 0 0\n`
      loop.changed()
      await clock.advance(10)
    }
    await clock.advance(500)
    // Then one render and one more write
    assert.equal(world.wantedCalls - rendersBefore, 1)
    assert.equal(world.writes.length, 2)
    assert.equal(world.writes[1]?.text, world.wanted)
    await loop.stop()
  })

  test('reloads are debounced to one per reload_delta, and the last write wins', async () => {
    const {clock, world, loop} = harness()
    loop.start()
    await clock.advance(0)
    assert.deepEqual(world.reloads, [0])
    // When the list changes three times within the next 3 s
    for (const ip of ['10.0.0.22', '10.0.0.23', '10.0.0.24']) {
      world.wanted += `1 sip:${ip}:5060 0 0\n`
      loop.changed()
      await clock.advance(1000)
    }
    // Then each change is written at once, but no reload runs before t = 5000
    assert.equal(world.writes.length, 4)
    assert.deepEqual(world.reloads, [0])
    await clock.advance(1999)
    assert.deepEqual(world.reloads, [0])
    // And exactly one reload runs at t = 5000, for all three changes
    await clock.advance(1)
    assert.deepEqual(world.reloads, [0, 5000])
    await clock.advance(20_000)
    assert.deepEqual(world.reloads, [0, 5000])
    await loop.stop()
  })

  test('"Ongoing reload" is retried until Kamailio accepts, then nothing more', async () => {
    // Given a Kamailio that someone else reloaded a moment ago
    const {clock, world, loop} = harness({answers: [ONGOING, ONGOING]})
    loop.start()
    await clock.advance(0)
    assert.deepEqual(world.reloads, [0])
    // Then the agent retries every retryMs, and stops once accepted
    await clock.advance(1000)
    assert.deepEqual(world.reloads, [0, 1000])
    await clock.advance(1000)
    assert.deepEqual(world.reloads, [0, 1000, 2000])
    await clock.advance(60_000)
    assert.deepEqual(world.reloads, [0, 1000, 2000])
    assert.equal(
      world.logs.filter((l) => l.startsWith('reload-busy error: 500 - Ongoing reload; retrying in 1000 ms'))
        .length,
      2,
    )
    assert.equal(world.logs.filter((l) => l.startsWith('reloaded')).length, 1)
    assert.equal(loop.busy, false)
    await loop.stop()
  })

  test('a change written while a reload is being retried is loaded by that retry', async () => {
    const {clock, world, loop} = harness({answers: [ONGOING]})
    loop.start()
    await clock.advance(0)
    // When a box registers while the agent waits to retry
    world.wanted += '1 sip:10.0.0.22:5060 0 0\n'
    loop.changed()
    await clock.advance(300)
    assert.equal(world.writes.length, 2)
    // Then the one retry serves both writes
    await clock.advance(10_000)
    assert.deepEqual(world.reloads, [0, 1000])
    await loop.stop()
  })

  test('a reload that fails otherwise (kamcmd cannot connect) is retried, then given up until the next change', async () => {
    const {clock, world, loop} = harness({answers: Array.from({length: 10}, () => DOWN)})
    loop.start()
    await clock.advance(0)
    await clock.advance(60_000)
    // Then ten attempts one second apart, and no more
    assert.deepEqual(world.reloads, [0, 1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000])
    assert.match(
      world.logs.join('\n'),
      /reload-failed ERROR: connect_unix_sock.*Connection refused \[111\]; retrying in 1000 ms/,
    )
    assert.match(world.logs.join('\n'), /reload-gave-up after 10 attempts/)
    // When the list changes again, Kamailio (now back) is asked again
    world.wanted += '1 sip:10.0.0.22:5060 0 0\n'
    loop.changed()
    await clock.advance(300)
    assert.deepEqual(world.reloads.slice(10), [60_200])
    await loop.stop()
  })

  test('an etcd failure never empties the list: nothing is written, the read is retried', async () => {
    // Given a list with one box, and etcd down
    const {clock, world, loop} = harness({file: '1 sip:10.0.0.21:5060 0 0 weight=100\n'})
    world.etcdError = new Error('etcd unreachable at http://10.0.0.21:2379: UNAVAILABLE')
    loop.start()
    await clock.advance(0)
    await clock.advance(1000)
    await clock.advance(2000)
    // Then the file is untouched and the failure is logged once
    assert.equal(world.writes.length, 0)
    assert.equal(world.wantedCalls, 3)
    assert.equal(world.logs.filter((l) => l.startsWith('etcd-error')).length, 1)
    // When etcd comes back with a second box
    world.etcdError = undefined
    world.wanted = '1 sip:10.0.0.21:5060 0 0 weight=50\n1 sip:10.0.0.22:5060 0 0 weight=50\n'
    await clock.advance(4000)
    // Then the list is written and reloaded
    assert.equal(world.file, world.wanted)
    assert.equal(world.reloads.length, 1)
    assert.ok(world.logs.includes('etcd-ok registrations readable again'))
    await loop.stop()
  })

  test('an event during a render makes one more render after it', async () => {
    const {clock, world, loop} = harness()
    let release: (() => void) | undefined
    const slow = new Promise<void>((r) => {
      release = r
    })
    // Given a render that waits on etcd
    const origWanted = world.wanted
    let first = true
    ;(loop as unknown as {deps: {wanted: () => Promise<string>}}).deps.wanted = async () => {
      world.wantedCalls += 1
      if (first) {
        first = false
        await slow
        return origWanted
      }
      return world.wanted
    }
    loop.start()
    await clock.advance(0)
    // When a box registers while that render runs
    world.wanted = `${origWanted}1 sip:10.0.0.22:5060 0 0\n`
    loop.changed()
    release?.()
    await clock.advance(300)
    // Then a second render picks it up
    assert.equal(world.wantedCalls, 2)
    assert.equal(world.file, world.wanted)
    await loop.stop()
  })

  test('the periodic resync puts back a hand-edited file', async () => {
    const {clock, world, loop} = harness({resyncMs: 30_000})
    loop.start()
    await clock.advance(0)
    world.file = '1 sip:10.9.9.9:5060 0 0\n'
    await clock.advance(30_000 + 200)
    assert.equal(world.file, world.wanted)
    assert.equal(world.writes.length, 2)
    await loop.stop()
  })

  test('stop() cancels pending renders and reloads', async () => {
    const {clock, world, loop} = harness({answers: [ONGOING]})
    loop.start()
    await clock.advance(0)
    loop.changed()
    await loop.stop()
    assert.equal(clock.pending, 0)
    await clock.advance(60_000)
    assert.deepEqual(world.reloads, [0])
  })
})

describe('dispatcher list helpers', () => {
  test('lines of other sets in the file are kept after the rendered set', () => {
    const current =
      '# by hand\n1 sip:10.0.0.9:5060 0 0\n2 sip:10.0.1.1:5060 0 0 weight=100\n\n3 sip:10.0.2.1 4 0\n'
    const rendered = '# written by hactl\n1 sip:10.0.0.21:5060 0 0 weight=100\n'
    assert.equal(
      mergeOtherSets(current, rendered, 1),
      '# written by hactl\n1 sip:10.0.0.21:5060 0 0 weight=100\n2 sip:10.0.1.1:5060 0 0 weight=100\n3 sip:10.0.2.1 4 0\n',
    )
    assert.equal(mergeOtherSets(undefined, rendered, 1), rendered)
    assert.equal(mergeOtherSets('1 sip:x 0 0\n', rendered, 1), rendered)
  })

  test('the change summary names added, removed and changed destinations', () => {
    const before = '1 sip:a:5060 0 0 weight=50\n1 sip:b:5060 0 0 weight=50\n2 sip:z 0 0\n'
    const after = '1 sip:a:5060 4 0 weight=50\n1 sip:c:5060 0 0 weight=50\n'
    assert.deepEqual(describeChange(before, after, 1), {
      count: 2,
      summary: '~sip:a:5060 +sip:c:5060 -sip:b:5060',
    })
  })

  test('reload answers are classified from captured kamcmd output', () => {
    assert.deepEqual(classifyReload(OK), {kind: 'ok', message: 'Ok. Dispatcher successfully reloaded.'})
    assert.equal(classifyReload(ONGOING).kind, 'busy')
    // kamcmd exits 0 on an RPC fault: the text decides
    assert.equal(classifyReload({code: 0, output: ONGOING.output}).kind, 'busy')
    assert.deepEqual(classifyReload({code: 0, output: 'error: 500 - Reload Failed\n'}), {
      kind: 'failed',
      message: 'error 500 - Reload Failed',
    })
    assert.equal(classifyReload(DOWN).kind, 'failed')
  })

  test('log lines carry a UTC timestamp to the second', () => {
    assert.equal(
      agentLogLine(new Date('2026-11-26T12:00:00.123Z'), 'registered', 'ast5 10.77.0.25:5060 lease 694d'),
      '2026-11-26T12:00:00Z registered ast5 10.77.0.25:5060 lease 694d',
    )
  })
})
