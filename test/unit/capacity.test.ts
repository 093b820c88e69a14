import assert from 'node:assert/strict'
import {describe, test} from 'node:test'
import {checkCapacity} from '../../src/lib/ops/capacity.js'

const four = [
  {name: 'ast1', inService: true},
  {name: 'ast2', inService: true},
  {name: 'ast3', inService: true},
  {name: 'ast4', inService: false},
]

describe('checkCapacity', () => {
  test('draining one of three in service with minInService 1 passes and says what stays', () => {
    const c = checkCapacity(four, ['ast3'], 1)
    assert.equal(c.ok, true)
    assert.deepEqual(c.inService, ['ast1', 'ast2', 'ast3'])
    assert.deepEqual(c.remaining, ['ast1', 'ast2'])
    assert.deepEqual(c.removing, ['ast3'])
    assert.match(c.message, /3 Asterisk boxes are in service \(ast1, ast2, ast3\)/)
  })

  test('draining the last box in service is refused; the message says how many and which are in service', () => {
    const nodes = [
      {name: 'ast1', inService: true},
      {name: 'ast2', inService: false},
    ]
    const c = checkCapacity(nodes, ['ast1'], 1)
    assert.equal(c.ok, false)
    assert.deepEqual(c.remaining, [])
    assert.match(c.message, /would leave 0 Asterisk boxes in service, fewer than minInService \(1\)/)
    assert.match(c.message, /1 Asterisk box is in service \(ast1\)/)
  })

  test('several nodes at once count together', () => {
    // Given three in service and minInService 2, draining two at once leaves one: refused,
    // although each alone would pass.
    assert.equal(checkCapacity(four, ['ast2'], 2).ok, true)
    assert.equal(checkCapacity(four, ['ast3'], 2).ok, true)
    const c = checkCapacity(four, ['ast2', 'ast3'], 2)
    assert.equal(c.ok, false)
    assert.deepEqual(c.removing, ['ast2', 'ast3'])
    assert.deepEqual(c.remaining, ['ast1'])
    assert.match(c.message, /draining ast2, ast3 would leave 1 Asterisk box in service \(ast1\)/)
  })

  test('draining a box that is already out of service removes no capacity', () => {
    // Even when the cluster is below the minimum already, finishing the drain of ast4 is fine.
    const c = checkCapacity(four, ['ast4'], 5)
    assert.equal(c.ok, true)
    assert.deepEqual(c.removing, [])
    assert.match(c.message, /takes none of them out of service/)
  })

  test('minInService 0 lets the last box go', () => {
    assert.equal(checkCapacity([{name: 'ast1', inService: true}], ['ast1'], 0).ok, true)
  })

  test('exactly minInService remaining passes; one fewer does not', () => {
    assert.equal(checkCapacity(four, ['ast1'], 2).ok, true)
    assert.equal(checkCapacity(four, ['ast1'], 3).ok, false)
  })
})
