import assert from 'node:assert/strict'
import {readFileSync} from 'node:fs'
import path from 'node:path'
import {describe, test} from 'node:test'
import {addNode, removeNode} from '../../src/lib/config/edit.js'
import {parseConfig} from '../../src/lib/config/load.js'
import {ConfigError, UserError} from '../../src/lib/errors.js'

const good = path.resolve(import.meta.dirname, '../fixtures/config/good')

const FLOW = `# prod cluster
cluster: prod   # aligned comment
ssh:
  user: core    # the CoreOS user
  become: true

nodes:
  # dispatchers
  kam1: {host: 10.0.0.11, roles: [kamailio, etcd]}    # keepalived leader

  # asterisk boxes
  ast1: {host: 10.0.0.21, roles: [asterisk, etcd]}
  ast2: {host: 10.0.0.22, roles: [asterisk]}   # the new one

# etcd after the nodes
etcd:
  wipe: [member]
`

const BLOCK = `cluster: prod
nodes:
    ast1:
        host: a1   # first
        roles:
          - asterisk
    # between
    ast2:
        host: a2
        roles: [asterisk]`

/** Lines of `after` that are not in `before` (and the other way round), in order. */
function diff(before: string, after: string): {added: string[]; removed: string[]} {
  const a = before.split('\n')
  const b = after.split('\n')
  return {added: b.filter((l) => !a.includes(l)), removed: a.filter((l) => !b.includes(l))}
}

describe('addNode', () => {
  test('appends one line in the style of its neighbours and touches nothing else', () => {
    // Given a hand-written file with comments and aligned columns
    // When a node is added
    const out = addNode(FLOW, 'ast3', {host: '10.0.0.23', roles: ['asterisk', 'etcd'], weight: 20})
    // Then exactly one line is new, right after the last node, and every other byte is kept
    assert.deepEqual(diff(FLOW, out), {
      added: ['  ast3: {host: 10.0.0.23, roles: [asterisk, etcd], weight: 20}'],
      removed: [],
    })
    assert.equal(out.replace('  ast3: {host: 10.0.0.23, roles: [asterisk, etcd], weight: 20}\n', ''), FLOW)
    assert.ok(
      out.indexOf('ast3') > out.indexOf('# the new one') && out.indexOf('ast3') < out.indexOf('# etcd after'),
    )
    const c = parseConfig(out, 'x.yaml')
    assert.deepEqual(c.nodes.at(-1), {
      name: 'ast3',
      host: '10.0.0.23',
      port: 22,
      user: 'core',
      roles: ['asterisk', 'etcd'],
      weight: 20,
    })
  })

  test('block-style nodes get a block-style node with the same indentation', () => {
    const out = addNode(BLOCK, 'ast3', {host: 'a3', port: 2222, user: 'root', roles: ['asterisk', 'homer']})
    assert.equal(
      out,
      `${BLOCK}\n    ast3:\n        host: a3\n        port: 2222\n        user: root\n        roles: [asterisk, homer]\n`,
    )
  })

  test('keeps CRLF line ends', () => {
    const crlf = FLOW.replace(/\n/g, '\r\n')
    const out = addNode(crlf, 'ast3', {host: '10.0.0.23', roles: ['asterisk']})
    assert.ok(out.includes('  ast3: {host: 10.0.0.23, roles: [asterisk]}\r\n'))
    assert.ok(!/[^\r]\n/.test(out), 'no bare LF')
  })

  test('a flow-style nodes mapping is re-rendered through the Document API, comments kept', () => {
    const text = '# top\ncluster: x\nnodes: {a: {host: h1, roles: [etcd]}}  # inline\n'
    const out = addNode(text, 'b', {host: 'h2', roles: ['etcd']})
    assert.deepEqual(
      parseConfig(out, 'x.yaml').nodes.map((n) => n.name),
      ['a', 'b'],
    )
    assert.ok(out.includes('# top') && out.includes('# inline'))
  })

  test('works on every good fixture', () => {
    for (const file of [
      'lab.yaml',
      'full.yaml',
      'anchors.yaml',
      'mixed.yaml',
      'minimal.yaml',
      'coreos.yaml',
    ]) {
      const text = readFileSync(path.join(good, file), 'utf8')
      const out = addNode(text, 'new-node', {host: '192.0.2.250', roles: ['asterisk']})
      const before = parseConfig(text, file)
      const after = parseConfig(out, file)
      assert.deepEqual(after.nodes.slice(0, -1), before.nodes, file)
      assert.equal(after.nodes.at(-1)?.name, 'new-node', file)
      assert.deepEqual(diff(text, out).removed, [], `${file}: no line removed`)
    }
  })

  test('refuses a duplicate name, a duplicate host:port, bad names and bad nodes', () => {
    assert.throws(
      () => addNode(FLOW, 'ast1', {host: '10.0.0.99', roles: ['asterisk']}),
      (e: unknown) =>
        e instanceof UserError && e.message === 'node ast1 is already in hactl.yaml (host 10.0.0.21)',
    )
    assert.throws(
      () => addNode(FLOW, 'ast9', {host: '10.0.0.21', roles: ['asterisk']}),
      (e: unknown) => e instanceof UserError && e.message === 'host 10.0.0.21 port 22 is already node ast1',
    )
    assert.doesNotThrow(() => addNode(FLOW, 'ast9', {host: '10.0.0.21', port: 2222, roles: ['asterisk']}))
    assert.throws(() => addNode(FLOW, 'Ast_9', {host: 'h', roles: ['asterisk']}), /invalid node name "Ast_9"/)
    assert.throws(() => addNode(FLOW, 'etcd', {host: 'h', roles: ['etcd']}), /is also a role name/)
    assert.throws(
      () => addNode(FLOW, 'ast9', {host: 'a b', roles: ['asterisk']}),
      (e: unknown) =>
        e instanceof UserError &&
        /^nodes\.ast9\.host: expected a host name or an IP address, got string "a b"$/.test(e.message),
    )
    assert.throws(() => addNode(FLOW, 'ast9', {host: 'h', roles: []}), /a node needs at least one role/)
    assert.throws(
      () => addNode(FLOW, 'ast9', {host: 'h', roles: ['kamailio'], weight: 10}),
      /weight applies only to asterisk nodes/,
    )
  })

  test('refuses to edit a file that is already invalid, with its position', () => {
    assert.throws(
      () =>
        addNode(
          'cluster: x\nnodes:\n  a: {host: h, roles: [nope]}\n',
          'b',
          {host: 'h2', roles: ['etcd']},
          'c.yaml',
        ),
      (e: unknown) =>
        e instanceof ConfigError &&
        e.message.startsWith('c.yaml:3:24: nodes.a.roles[0]: "nope" is not a role'),
    )
  })
})

describe('removeNode', () => {
  test('removes the node line and its inline comment, keeps the comments around it', () => {
    const out = removeNode(FLOW, 'ast2')
    assert.deepEqual(diff(FLOW, out), {
      added: [],
      removed: ['  ast2: {host: 10.0.0.22, roles: [asterisk]}   # the new one'],
    })
    assert.ok(out.includes('# asterisk boxes') && out.includes('# etcd after the nodes'))
  })

  test('removes a whole block-style node and nothing of its neighbour', () => {
    const out = removeNode(BLOCK, 'ast1')
    assert.equal(
      out,
      'cluster: prod\nnodes:\n    # between\n    ast2:\n        host: a2\n        roles: [asterisk]',
    )
    assert.equal(
      removeNode(BLOCK, 'ast2'),
      'cluster: prod\nnodes:\n    ast1:\n        host: a1   # first\n        roles:\n          - asterisk\n    # between\n',
    )
  })

  test('add then remove gives back the original text', () => {
    assert.equal(removeNode(addNode(FLOW, 'ast3', {host: '10.0.0.23', roles: ['asterisk']}), 'ast3'), FLOW)
    assert.equal(
      removeNode(addNode(`${BLOCK}\n`, 'ast3', {host: 'a3', roles: ['asterisk']}), 'ast3'),
      `${BLOCK}\n`,
    )
  })

  test('refuses an unknown name (listing the known ones) and the last node', () => {
    assert.throws(
      () => removeNode(FLOW, 'ast9'),
      (e: unknown) =>
        e instanceof UserError && e.message === 'no node named ast9 in hactl.yaml; nodes: kam1, ast1, ast2',
    )
    assert.throws(
      () => removeNode('cluster: x\nnodes:\n  a: {host: h, roles: [etcd]}\n', 'a'),
      /a is the only node in hactl\.yaml; a cluster needs at least one/,
    )
  })

  test('a flow-style nodes mapping falls back to the Document API', () => {
    const out = removeNode(
      'cluster: x\nnodes: {a: {host: h1, roles: [etcd]}, b: {host: h2, roles: [etcd]}}\n',
      'a',
    )
    assert.deepEqual(
      parseConfig(out, 'x.yaml').nodes.map((n) => n.name),
      ['b'],
    )
  })
})
