import assert from 'node:assert/strict'
import {describe, test} from 'node:test'
import fc from 'fast-check'
import {
  computeWeights,
  createReloadDebouncer,
  diffLines,
  lineEdits,
  renderDispatcherList,
  type Registration,
  type ReloadEvent,
  type ReloadOutcome,
} from '../../src/lib/dispatcher/render.js'
import {parseDispatcherFile} from '../../src/lib/facts/kamailio.js'

const weightsOf = (boxes: {name: string; weight?: number}[]): Record<string, number> =>
  Object.fromEntries(computeWeights(boxes).boxes.map((b) => [b.name, b.weight]))

describe('computeWeights (the original rule)', () => {
  test("the original's example: two boxes, one with weight 25 → 25 and 75", () => {
    assert.deepEqual(weightsOf([{name: 'ast1', weight: 25}, {name: 'ast2'}]), {ast1: 25, ast2: 75})
  })

  test('the rest split evenly (floor), the remainder to the first unweighted box by name', () => {
    // 100 - 10 = 90 over 4 → 22 each, 2 left over → the first unweighted (ast2, not ast1).
    assert.deepEqual(
      weightsOf([{name: 'ast5'}, {name: 'ast1', weight: 10}, {name: 'ast3'}, {name: 'ast2'}, {name: 'ast4'}]),
      {
        ast1: 10,
        ast2: 24,
        ast3: 22,
        ast4: 22,
        ast5: 22,
      },
    )
    assert.deepEqual(weightsOf([{name: 'a'}, {name: 'b'}, {name: 'c'}]), {a: 34, b: 33, c: 33})
  })

  test('only explicit weights under 100: kept, with a warning', () => {
    const r = computeWeights([
      {name: 'a', weight: 30},
      {name: 'b', weight: 30},
    ])
    assert.deepEqual(
      r.boxes.map((b) => [b.name, b.weight, b.source]),
      [
        ['a', 30, 'explicit'],
        ['b', 30, 'explicit'],
      ],
    )
    assert.equal(r.total, 60)
    assert.match(r.warnings.join('\n'), /sum to 60/)
  })

  test('over 100: scaled to 100, each at least 1', () => {
    assert.deepEqual(
      weightsOf([
        {name: 'a', weight: 60},
        {name: 'b', weight: 60},
      ]),
      {a: 50, b: 50},
    )
    // Explicit 100 and an unweighted newcomer: it gets 1, not 0.
    const r = computeWeights([{name: 'a', weight: 50}, {name: 'b', weight: 50}, {name: 'c'}])
    assert.deepEqual(
      r.boxes.map((b) => [b.name, b.weight, b.source]),
      [
        ['a', 50, 'explicit'],
        ['b', 49, 'scaled'],
        ['c', 1, 'minimum'],
      ],
    )
    assert.equal(r.total, 100)
    assert.equal(r.warnings.length, 1)
  })

  test('invalid weights count as unweighted, with a warning', () => {
    const r = computeWeights([
      {name: 'a', weight: 0},
      {name: 'b', weight: 12.5},
      {name: 'c', weight: 40},
    ])
    assert.deepEqual(Object.fromEntries(r.boxes.map((b) => [b.name, b.weight])), {a: 30, b: 30, c: 40})
    assert.equal(r.warnings.length, 2)
  })

  test('no boxes: nothing', () => {
    assert.deepEqual(computeWeights([]), {boxes: [], total: 0, warnings: []})
  })

  // Boxes with unique names; weight absent, valid, or (rarely) invalid.
  const boxesArb = fc.uniqueArray(
    fc.record(
      {
        name: fc.stringMatching(/^[a-z][a-z0-9]{0,5}$/),
        weight: fc.oneof(
          {weight: 5, arbitrary: fc.integer({min: 1, max: 100})},
          {weight: 1, arbitrary: fc.integer({min: -5, max: 150})},
        ),
      },
      {requiredKeys: ['name']},
    ),
    {selector: (b) => b.name, maxLength: 40},
  )
  const valid = (w: number | undefined): boolean =>
    w !== undefined && Number.isInteger(w) && w >= 1 && w <= 100

  test('property: every weight is an integer ≥ 1', () => {
    fc.assert(
      fc.property(boxesArb, (boxes) => {
        for (const b of computeWeights(boxes).boxes)
          assert.ok(Number.isInteger(b.weight) && b.weight >= 1, `${b.name}: ${b.weight}`)
      }),
    )
  })

  test('property: the sum is 100 when a box is unweighted and the explicit sum ≤ 100', () => {
    fc.assert(
      fc.property(boxesArb, (boxes) => {
        const explicitSum = boxes.filter((b) => valid(b.weight)).reduce((s, b) => s + b.weight!, 0)
        const anyUnweighted = boxes.some((b) => !valid(b.weight))
        fc.pre(anyUnweighted && explicitSum <= 100)
        assert.equal(computeWeights(boxes).total, 100)
      }),
    )
  })

  test('property: the sum is exactly 100 whenever the explicit weights exceed 100', () => {
    fc.assert(
      fc.property(boxesArb, (boxes) => {
        const explicitSum = boxes.filter((b) => valid(b.weight)).reduce((s, b) => s + b.weight!, 0)
        fc.pre(explicitSum > 100)
        const r = computeWeights(boxes)
        assert.equal(r.total, 100)
        assert.ok(r.warnings.length > 0)
      }),
    )
  })

  test('property: explicit weights are kept whenever they leave at least 1 per unweighted box', () => {
    fc.assert(
      fc.property(boxesArb, (boxes) => {
        const explicit = boxes.filter((b) => valid(b.weight))
        const unweighted = boxes.length - explicit.length
        const explicitSum = explicit.reduce((s, b) => s + b.weight!, 0)
        fc.pre(explicitSum + unweighted <= 100)
        const got = new Map(computeWeights(boxes).boxes.map((b) => [b.name, b.weight]))
        for (const b of explicit) assert.equal(got.get(b.name), b.weight)
        // And the unweighted shares differ only by the remainder, which the first one (by name) gets.
        const shares = [...boxes.filter((b) => !valid(b.weight))]
          .sort((a, b) => (a.name < b.name ? -1 : 1))
          .map((b) => got.get(b.name)!)
        if (shares.length > 1) {
          const rest = shares.slice(1)
          assert.ok(rest.every((w) => w === rest[0]))
          assert.ok(shares[0]! - rest[0]! < shares.length)
        }
      }),
    )
  })

  test('property: input order does not matter', () => {
    fc.assert(
      fc.property(boxesArb, fc.nat(), (boxes, seed) => {
        const shuffled = [...boxes].sort(
          (a, b) => ((a.name.charCodeAt(0) * seed) % 7) - ((b.name.charCodeAt(0) * seed) % 7),
        )
        assert.deepEqual(computeWeights(shuffled), computeWeights(boxes))
      }),
    )
  })
})

describe('renderDispatcherList', () => {
  const regs: Registration[] = [
    {name: 'ast2', ip: '10.77.0.22'},
    {name: 'ast1', ip: '10.77.0.21', weight: 25},
  ]

  test('lines ordered by name, SETID sip:IP:PORT FLAGS PRIORITY weight=W, a header', () => {
    const r = renderDispatcherList(regs, undefined, {setId: 1})
    const lines = r.text.split('\n')
    assert.match(lines[0]!, /^# Generated by hactl/)
    assert.deepEqual(
      lines.filter((l) => !l.startsWith('#')),
      ['1 sip:10.77.0.21:5060 0 0 weight=25', '1 sip:10.77.0.22:5060 0 0 weight=75', ''],
    )
    assert.deepEqual(r.warnings, [])
    // Deterministic: the same input, the same bytes, whatever the order.
    assert.equal(renderDispatcherList([...regs].reverse(), {}, {setId: 1}).text, r.text)
  })

  test('a drained or draining box gets the disabled flag and weight 1; the others share 100', () => {
    const three: Registration[] = [...regs, {name: 'ast3', ip: '10.77.0.23', port: 5080}]
    for (const marks of [
      {ast2: {state: 'drained' as const}},
      new Map([['ast2', {state: 'draining' as const}]]),
      [{node: 'ast2', state: 'drained' as const}],
    ]) {
      const r = renderDispatcherList(three, marks, {setId: 7, priority: 2, flags: 8})
      assert.deepEqual(parseDispatcherFile(r.text), [
        {setId: 7, uri: 'sip:10.77.0.21:5060', flags: 8, priority: 2, attrs: 'weight=25'},
        {setId: 7, uri: 'sip:10.77.0.22:5060', flags: 4, priority: 2, attrs: 'weight=1'},
        {setId: 7, uri: 'sip:10.77.0.23:5080', flags: 8, priority: 2, attrs: 'weight=75'},
      ])
      assert.ok(r.destinations[1]!.maintenance)
    }
  })

  test('IPv6 in brackets', () => {
    const r = renderDispatcherList([{name: 'v6', ip: '2001:db8::5'}], undefined, {setId: 1})
    assert.deepEqual(parseDispatcherFile(r.text), [
      {setId: 1, uri: 'sip:[2001:db8::5]:5060', flags: 0, priority: 0, attrs: 'weight=100'},
    ])
  })

  test('bad registrations are skipped with a warning, never written', () => {
    const r = renderDispatcherList(
      [
        {name: 'ok', ip: '10.0.0.1'},
        {name: 'evil', ip: '10.0.0.2 0 0\n2 sip:6.6.6.6'},
        {name: 'bad port', ip: '10.0.0.3'},
        {name: 'p', ip: '10.0.0.4', port: 70000},
        // The same address under a later name: the first by name keeps it.
        {name: 'zz', ip: '10.0.0.1'},
      ],
      undefined,
      {setId: 1},
    )
    assert.deepEqual(
      r.destinations.map((d) => d.name),
      ['ok'],
    )
    assert.equal(r.warnings.length, 4)
    assert.match(r.warnings.join('\n'), /skipped zz: 10\.0\.0\.1:5060 is already registered by ok/)
    assert.doesNotMatch(r.text, /6\.6\.6\.6/)
  })

  test('no registrations: only the header (Kamailio answers "No Destination Sets")', () => {
    const r = renderDispatcherList([], undefined, {setId: 1})
    assert.deepEqual(parseDispatcherFile(r.text), [])
    assert.match(r.text, /^# Generated by hactl/)
  })
})

describe('diffLines', () => {
  test('equal texts: empty', () => {
    assert.equal(diffLines('a\nb\n', 'a\nb\n'), '')
    assert.equal(diffLines('a\nb', 'a\nb\n'), '')
  })

  test('one changed line with context', () => {
    const old = ['# h', '1 sip:a 0 0 weight=50', '1 sip:b 0 0 weight=50', ''].join('\n')
    const next = ['# h', '1 sip:a 0 0 weight=50', '1 sip:b 4 0 weight=1', ''].join('\n')
    assert.equal(
      diffLines(old, next, {oldLabel: 'kam1:/etc/kamailio/dispatcher.list', newLabel: 'rendered'}),
      [
        '--- kam1:/etc/kamailio/dispatcher.list',
        '+++ rendered',
        '@@ -1,3 +1,3 @@',
        ' # h',
        ' 1 sip:a 0 0 weight=50',
        '-1 sip:b 0 0 weight=50',
        '+1 sip:b 4 0 weight=1',
        '',
      ].join('\n'),
    )
  })

  test('from an empty file, and separate hunks', () => {
    assert.equal(diffLines('', 'x\n'), '--- current\n+++ new\n@@ -0,0 +1,1 @@\n+x\n')
    const a = Array.from({length: 20}, (_, i) => `l${i}`).join('\n')
    const b = a.replace('l2', 'L2').replace('l17', 'L17')
    const d = diffLines(a, b, {context: 1})
    assert.deepEqual(
      d.split('\n').filter((l) => l.startsWith('@@')),
      ['@@ -2,3 +2,3 @@', '@@ -17,3 +17,3 @@'],
    )
  })

  test('property: the edits rebuild both texts', () => {
    const lines = fc.array(fc.constantFrom('a', 'b', 'c', 'd'), {maxLength: 30})
    fc.assert(
      fc.property(lines, lines, (a, b) => {
        const ops = lineEdits(a, b)
        assert.deepEqual(
          ops.filter((o) => o.op !== 'add').map((o) => o.line),
          a,
        )
        assert.deepEqual(
          ops.filter((o) => o.op !== 'del').map((o) => o.line),
          b,
        )
      }),
    )
  })
})

/** A clock and timer queue the test drives by hand. */
function fakeClock(start = 1_000_000) {
  let t = start
  let seq = 0
  const timers = new Map<number, {at: number; fn: () => void}>()
  return {
    now: () => t,
    schedule: (fn: () => void, ms: number) => {
      const id = seq++
      timers.set(id, {at: t + ms, fn})
      return () => {
        timers.delete(id)
      }
    },
    pending: () => timers.size,
    /** Move time forward, firing due timers in order and letting promises settle after each. */
    async advance(ms: number): Promise<void> {
      const target = t + ms
      for (;;) {
        await settle()
        const next = [...timers.entries()]
          .filter(([, x]) => x.at <= target)
          .sort((a, b) => a[1].at - b[1].at || a[0] - b[0])[0]
        if (!next) break
        timers.delete(next[0])
        t = Math.max(t, next[1].at)
        next[1].fn()
      }
      t = target
      await settle()
    },
  }
}

async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((r) => setImmediate(r))
}

describe('createReloadDebouncer', () => {
  function setup(
    outcomes: (ReloadOutcome | Error)[] = [],
    extra: {settleMs?: number; maxAttempts?: number} = {},
  ) {
    const clock = fakeClock()
    const calls: number[] = []
    const events: ReloadEvent[] = []
    const debouncer = createReloadDebouncer({
      minIntervalMs: 5000,
      retryDelayMs: 1000,
      now: clock.now,
      schedule: clock.schedule,
      onEvent: (e) => events.push(e),
      ...extra,
      reload: async () => {
        calls.push(clock.now())
        const o = outcomes.shift() ?? 'ok'
        if (o instanceof Error) throw o
        return o
      },
    })
    return {clock, calls, events, debouncer, t0: clock.now()}
  }

  test('the first request reloads at once', async () => {
    const {clock, calls, debouncer, t0} = setup()
    debouncer.request()
    await clock.advance(0)
    assert.deepEqual(calls, [t0])
    assert.equal(debouncer.busy, false)
  })

  test('a burst within the interval becomes one more reload, 5 s after the first', async () => {
    const {clock, calls, events, debouncer, t0} = setup()
    debouncer.request()
    await clock.advance(100)
    for (let i = 0; i < 5; i++) {
      debouncer.request()
      await clock.advance(500)
    }
    await clock.advance(10_000)
    assert.deepEqual(calls, [t0, t0 + 5000])
    assert.deepEqual(
      events.map((e) => e.type === 'reloaded' && e.requests),
      [1, 5],
    )
  })

  test('"Ongoing reload" is retried until Kamailio accepts', async () => {
    const {clock, calls, events, debouncer, t0} = setup(['ongoing-reload', 'ongoing-reload', 'ok'])
    debouncer.request()
    await clock.advance(10_000)
    assert.deepEqual(calls, [t0, t0 + 1000, t0 + 2000])
    assert.deepEqual(
      events.map((e) => e.type),
      ['ongoing-reload', 'ongoing-reload', 'reloaded'],
    )
  })

  test('a request during a retry wait shares the retry', async () => {
    const {clock, calls, debouncer, t0} = setup(['ongoing-reload'])
    debouncer.request()
    await clock.advance(300)
    debouncer.request()
    await clock.advance(10_000)
    assert.deepEqual(calls, [t0, t0 + 1000])
  })

  test('a request while a reload runs gets its own reload after the interval', async () => {
    // Given a reload that takes 200 ms
    const clock = fakeClock()
    const calls: number[] = []
    const debouncer = createReloadDebouncer({
      now: clock.now,
      schedule: clock.schedule,
      reload: () =>
        new Promise<ReloadOutcome>((resolve) => {
          calls.push(clock.now())
          clock.schedule(() => resolve('ok'), 200)
        }),
    })
    const t0 = clock.now()
    debouncer.request()
    await clock.advance(100)
    // When the file changes again mid-reload
    debouncer.request()
    await clock.advance(20_000)
    // Then it is reloaded again, 5 s after the first one ended
    assert.deepEqual(calls, [t0, t0 + 200 + 5000])
  })

  test('gives up after maxAttempts failures, and starts over on the next request', async () => {
    const {clock, calls, events, debouncer} = setup(
      [new Error('kamcmd: timeout'), new Error('kamcmd: timeout'), new Error('kamcmd: timeout')],
      {maxAttempts: 2},
    )
    debouncer.request()
    await clock.advance(60_000)
    assert.equal(calls.length, 2)
    assert.deepEqual(
      events.map((e) => e.type),
      ['failed', 'failed', 'gave-up'],
    )
    debouncer.request()
    await clock.advance(60_000)
    assert.equal(calls.length, 4)
    assert.equal(events.at(-1)!.type, 'reloaded')
  })

  test('settleMs batches a burst into the first reload', async () => {
    const {clock, calls, debouncer, t0} = setup([], {settleMs: 300})
    debouncer.request()
    await clock.advance(100)
    debouncer.request()
    await clock.advance(100)
    debouncer.request()
    await clock.advance(5000)
    assert.deepEqual(calls, [t0 + 300])
  })

  test('idle() resolves once everything is reloaded; close() cancels a waiting reload', async () => {
    const {clock, calls, debouncer} = setup()
    debouncer.request()
    debouncer.request()
    let idle = false
    void debouncer.idle().then(() => {
      idle = true
    })
    await clock.advance(1000)
    assert.equal(idle, false)
    await clock.advance(5000)
    assert.equal(idle, true)
    assert.equal(calls.length, 2)
    debouncer.request()
    assert.equal(clock.pending(), 1)
    debouncer.close()
    assert.equal(clock.pending(), 0)
    await debouncer.idle()
    await clock.advance(20_000)
    assert.equal(calls.length, 2)
  })
})
