import assert from 'node:assert/strict'
import {describe, test} from 'node:test'
import fc from 'fast-check'
import {plainHolder} from '../../src/lib/etcd/lock.js'
import {lockHolderSchema} from '../../src/lib/etcd/lock-schema.js'
import {maintenanceMarkSchema} from '../../src/lib/etcd/maintenance.js'
import {plainMark} from '../../src/lib/etcd/marks.js'

// The quick checks that spare zod when hactl writes its own records must never accept what the
// schema refuses, and must return exactly what the schema returns (the JSON written is the same).

/** Mostly plausible values, with the edges the schemas care about. */
const text = (max: number) =>
  fc.oneof(fc.string({maxLength: 20}), fc.string({minLength: max - 2, maxLength: max + 2}), fc.constant(''))
const anything = fc.oneof(
  fc.string(),
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.constant(undefined),
)

/**
 * For every candidate: when the quick check accepts it, the schema accepts it too and parses it to
 * exactly the same JSON.
 */
function agreesWithSchema<C>(
  name: string,
  quick: (value: C) => unknown,
  schema: {safeParse(value: unknown): {success: boolean; data?: unknown}},
  candidates: fc.Arbitrary<C>,
): void {
  fc.assert(
    fc.property(candidates, (c) => {
      const fast = quick(c)
      if (fast === undefined) return
      const res = schema.safeParse(c)
      assert.ok(res.success, `${name} accepted what the schema refuses: ${JSON.stringify(c)}`)
      assert.equal(JSON.stringify(fast), JSON.stringify(res.data))
    }),
    {numRuns: 2000},
  )
}

describe('quick checks against their schemas', () => {
  test('plainMark', () => {
    const candidate = fc.record(
      {
        node: fc.oneof(fc.constantFrom('ast3', 'kam-1', 'a', '-x', 'Ast3', 'a'.repeat(64)), anything),
        state: fc.oneof(fc.constantFrom('draining', 'drained', 'down'), anything),
        reason: fc.oneof(text(1024), anything),
        by: fc.oneof(text(512), anything),
        since: fc.oneof(fc.constantFrom(new Date().toISOString(), '2026-11-26', 'yesterday', ''), anything),
        command: fc.oneof(text(4096), anything),
      },
      {requiredKeys: ['node', 'state', 'by', 'since']},
    )
    agreesWithSchema('plainMark', plainMark, maintenanceMarkSchema, candidate)
  })

  test('plainMark accepts the marks drain writes', () => {
    const mark = {
      node: 'ast3',
      state: 'draining',
      reason: 'kernel',
      by: 'root@vm',
      since: new Date().toISOString(),
      command: 'hactl node drain ast3',
    }
    assert.deepEqual(plainMark(mark), maintenanceMarkSchema.parse(mark))
  })

  test('plainHolder', () => {
    const holder = fc.record({
      user: fc.oneof(fc.string(), anything),
      host: fc.oneof(fc.string(), anything),
      command: fc.oneof(fc.string(), anything),
      pid: fc.oneof(fc.integer(), fc.double(), fc.constant(2 ** 60), anything),
      since: fc.oneof(fc.string(), anything),
    })
    agreesWithSchema('plainHolder', plainHolder, lockHolderSchema, holder)
    const own = {
      user: 'root',
      host: 'vm',
      command: 'hactl node drain ast3',
      pid: 4242,
      since: new Date().toISOString(),
    }
    assert.deepEqual(plainHolder(own), lockHolderSchema.parse(own))
  })
})
