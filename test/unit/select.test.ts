import assert from 'node:assert/strict'
import {describe, test} from 'node:test'
import type {ResolvedNode} from '../../src/lib/config/load.js'
import {UserError} from '../../src/lib/errors.js'
import {selectNodes} from '../../src/lib/select.js'

const node = (name: string, roles: ResolvedNode['roles'], host: string): ResolvedNode => ({
  name,
  host,
  port: 22,
  user: 'root',
  roles,
})
const config = {
  nodes: [
    node('kam1', ['kamailio'], '10.77.0.11'),
    node('ast1', ['asterisk', 'etcd'], '10.77.0.21'),
    node('ast2', ['asterisk', 'etcd'], '10.77.0.22'),
    node('ast3', ['asterisk'], '10.77.0.23'),
  ],
}
const names = (specs: string[]): string[] => selectNodes(config, specs).map((n) => n.name)

describe('selectNodes', () => {
  test('names, in config order whatever the order asked', () => {
    assert.deepEqual(names(['ast3', 'kam1']), ['kam1', 'ast3'])
  })

  test('comma lists, roles and all; each node once', () => {
    assert.deepEqual(names(['ast1,ast3']), ['ast1', 'ast3'])
    assert.deepEqual(names(['etcd']), ['ast1', 'ast2'])
    assert.deepEqual(names(['asterisk', 'ast1', 'etcd,ast2']), ['ast1', 'ast2', 'ast3'])
    assert.deepEqual(names(['all']), ['kam1', 'ast1', 'ast2', 'ast3'])
    assert.deepEqual(names(['kam1, ast2']), ['kam1', 'ast2'])
  })

  test('a node named like a role means the node', () => {
    const c = {nodes: [node('etcd', ['etcd'], '10.0.0.1'), node('e2', ['etcd'], '10.0.0.2')]}
    assert.deepEqual(
      selectNodes(c, ['etcd']).map((n) => n.name),
      ['etcd'],
    )
  })

  test('unknown names are a UserError listing known nodes and roles, with a close match', () => {
    assert.throws(
      () => names(['ast4']),
      (e: unknown) => {
        assert.ok(e instanceof UserError)
        assert.equal(e.exitCode, 2)
        assert.match(e.message, /unknown node or role "ast4"; did you mean ast1\?/)
        assert.match(
          e.suggestions.join('\n'),
          /known nodes: kam1, ast1, ast2, ast3; roles: asterisk, kamailio, etcd; or all/,
        )
        return true
      },
    )
  })

  test('a valid role no node has is an error, not an empty selection', () => {
    assert.throws(() => names(['homer']), /no node has the role homer/)
  })

  test('no specs, empty specs and empty lists are errors', () => {
    assert.throws(() => names([]), /no nodes given/)
    assert.throws(() => names(['']), /empty node spec/)
    assert.throws(() => names([',,']), /empty node list/)
  })

  test('hostile specs are refused with a clear message', () => {
    const cases: Array<[string, RegExp]> = [
      ['ast1;reboot', /characters no node name or role has/],
      ['$(reboot)', /characters no node name or role has/],
      ['`id`', /characters no node name or role has/],
      ['ast1 ast2', /characters no node name or role has/],
      ['../../etc/passwd', /characters no node name or role has/],
      ['ast*', /characters no node name or role has/],
      ['ast1\u001b[2J', /control characters/],
      ['ast1\nast2', /control characters/],
      ['--all', /looks like a flag/],
      ['AST1', /not a node name, role or "all"/],
      ['x'.repeat(5000), /not a list of node names/],
      ['a'.repeat(64), /not a node name/],
    ]
    for (const [spec, re] of cases) {
      assert.throws(
        () => names([spec]),
        (e: unknown) => e instanceof UserError && re.test(e.message),
        `spec ${JSON.stringify(spec.slice(0, 20))}`,
      )
    }
  })

  test('messages do not echo control characters to the terminal', () => {
    try {
      names(['ast1\u001b]0;pwned\u0007'])
      assert.fail('expected an error')
    } catch (error) {
      // eslint-disable-next-line no-control-regex
      assert.doesNotMatch((error as Error).message, /[\u0000-\u001f]/)
    }
  })
})
