import assert from 'node:assert/strict'
import {describe, test} from 'node:test'
import {checkMemberAddition, checkMemberRemoval, majority, type QuorumMember} from '../../src/lib/ops/quorum.js'

function members(spec: string): QuorumMember[] {
  // "h h d l" → healthy voter, healthy voter, down voter, healthy learner; ids m1.., names e1..
  return spec.split(' ').map((s, i) => ({id: `m${i + 1}`, name: `e${i + 1}`, healthy: s !== 'd' && s !== 'dl', isLearner: s === 'l' || s === 'dl'}))
}

describe('majority', () => {
  test('is more than half', () => {
    assert.deepEqual([1, 2, 3, 4, 5, 6, 7].map(majority), [1, 2, 2, 3, 3, 4, 4])
  })
})

describe('checkMemberRemoval (the quorum guard of node remove)', () => {
  test('5 healthy voters: removing one leaves 4, fine without --force', () => {
    const c = checkMemberRemoval(members('h h h h h'), 'm5')
    assert.equal(c.ok, true)
    assert.equal(c.needsForce, false)
    assert.equal(c.votersAfter, 4)
    assert.equal(c.healthyVotersAfter, 4)
    assert.equal(c.quorumAfter, 3)
  })

  test('4 healthy voters: removing one leaves 3, fine', () => {
    const c = checkMemberRemoval(members('h h h h'), 'm1')
    assert.equal(c.ok, true)
    assert.match(c.message, /3 voting members stay/)
  })

  test('3 healthy voters: shrinking to 2 is refused without --force, and says why', () => {
    const c = checkMemberRemoval(members('h h h'), 'm2')
    assert.equal(c.ok, false)
    assert.equal(c.needsForce, true)
    assert.match(c.message, /shrink etcd to 2 voting members/)
    assert.match(c.message, /survive no member failure/)
  })

  test('3 healthy voters with --force: allowed, the message names --force', () => {
    const c = checkMemberRemoval(members('h h h'), 'm2', {force: true})
    assert.equal(c.ok, true)
    assert.equal(c.needsForce, true)
    assert.match(c.message, /--force/)
  })

  test('a 2-member cluster is never shrunk, not even with --force', () => {
    const c = checkMemberRemoval(members('h h'), 'm1', {force: true})
    assert.equal(c.ok, false)
    assert.equal(c.needsForce, false)
    assert.match(c.message, /2 voting members/)
    assert.match(c.message, /add a member first/)
  })

  test('the last member is never removed', () => {
    const c = checkMemberRemoval(members('h'), 'm1', {force: true})
    assert.equal(c.ok, false)
    assert.match(c.message, /only voting member/)
  })

  test('no healthy majority now: refused, --force does not help', () => {
    const c = checkMemberRemoval(members('h h d d d'), 'm3', {force: true})
    assert.equal(c.ok, false)
    assert.equal(c.needsForce, false)
    assert.match(c.message, /no healthy majority now \(2 of 5/)
  })

  test('removing a healthy member that would leave too few healthy ones: refused', () => {
    // 5 voters, 2 down: 3 of 5 is a majority now; without m1, 2 healthy of 4 is not (3 needed).
    const c = checkMemberRemoval(members('h h h d d'), 'm1', {force: true})
    assert.equal(c.ok, false)
    assert.equal(c.healthyVotersAfter, 2)
    assert.equal(c.quorumAfter, 3)
    assert.match(c.message, /leave 2 healthy of 4 voting members, fewer than the majority of 3/)
  })

  test('removing the dead member of a 5-member cluster with one down: fine', () => {
    const c = checkMemberRemoval(members('h h h h d'), 'm5')
    assert.equal(c.ok, true)
    assert.equal(c.healthyVotersAfter, 4)
  })

  test('a learner does not vote: removing it never touches the quorum', () => {
    const c = checkMemberRemoval(members('h h h l'), 'm4')
    assert.equal(c.ok, true)
    assert.equal(c.needsForce, false)
    assert.equal(c.votersAfter, 3)
    assert.match(c.message, /learner/)
  })

  test('learners are not counted as voters', () => {
    const c = checkMemberRemoval(members('h h h h l'), 'm1')
    assert.equal(c.voters, 4)
    assert.equal(c.votersAfter, 3)
    assert.equal(c.ok, true)
  })

  test('an unknown member: nothing to remove', () => {
    const c = checkMemberRemoval(members('h h h'), 'nope')
    assert.equal(c.ok, true)
    assert.match(c.message, /not in the cluster/)
  })
})

describe('checkMemberAddition (node add refuses while etcd is unhealthy)', () => {
  test('healthy with a leader: fine, says the new size', () => {
    const c = checkMemberAddition(members('h h h'), {hasLeader: true})
    assert.equal(c.ok, true)
    assert.match(c.message, /with the new one 4, majority 3/)
  })

  test('a member down: refused, names it', () => {
    const c = checkMemberAddition(members('h d h'), {hasLeader: true})
    assert.equal(c.ok, false)
    assert.match(c.message, /e2 is not healthy/)
  })

  test('no leader: refused', () => {
    const c = checkMemberAddition(members('h h h'), {hasLeader: false})
    assert.equal(c.ok, false)
    assert.match(c.message, /no leader/)
  })

  test('a learner waiting: refused (one member at a time)', () => {
    const c = checkMemberAddition(members('h h h l'), {hasLeader: true})
    assert.equal(c.ok, false)
    assert.match(c.message, /learner already \(e4\)/)
  })

  test('no members at all: refused', () => {
    assert.equal(checkMemberAddition([], {hasLeader: false}).ok, false)
  })
})
