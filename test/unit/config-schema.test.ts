import assert from 'node:assert/strict'
import {readFileSync} from 'node:fs'
import path from 'node:path'
import {describe, test} from 'node:test'
import {configJsonSchema, configJsonSchemaText} from '../../src/lib/config/json-schema.js'
import {NODE_NAME_RE, ROLES} from '../../src/lib/config/schema.js'

const repo = path.resolve(import.meta.dirname, '../..')
const REGENERATE = 'npm run schemas'

interface JsonSchema {
  type?: string
  description?: string
  default?: unknown
  properties?: Record<string, JsonSchema>
  additionalProperties?: boolean | JsonSchema
  propertyNames?: {pattern?: string}
  patternProperties?: Record<string, unknown>
  required?: string[]
  items?: JsonSchema
  enum?: unknown[]
  anyOf?: JsonSchema[]
}

describe('JSON Schema of hactl.yaml', () => {
  test('schema/hactl.schema.json is current', () => {
    const checkedIn = readFileSync(path.join(repo, 'schema/hactl.schema.json'), 'utf8')
    assert.ok(
      checkedIn === configJsonSchemaText(),
      `schema/hactl.schema.json is stale: regenerate it with: ${REGENERATE}`,
    )
  })

  const schema = configJsonSchema() as JsonSchema & {$schema?: string; title?: string}

  test('is draft 2020-12, titled, with cluster and nodes required and no unknown keys', () => {
    assert.equal(schema.$schema, 'https://json-schema.org/draft/2020-12/schema')
    assert.equal(schema.title, 'hactl.yaml')
    assert.deepEqual(schema.required, ['cluster', 'nodes'])
    assert.equal(schema.additionalProperties, false)
    assert.deepEqual(Object.keys(schema.patternProperties ?? {}), ['^x-'])
  })

  test('nodes: names follow the node-name rule, roles are the four roles, node keys are closed', () => {
    const nodes = schema.properties!.nodes!
    assert.equal(nodes.propertyNames?.pattern, NODE_NAME_RE.source)
    const node = nodes.additionalProperties as JsonSchema
    assert.deepEqual(node.required, ['host', 'roles'])
    assert.equal(node.additionalProperties, false)
    assert.deepEqual(node.properties!.roles!.items!.enum, [...ROLES])
  })

  test('input side: durations are strings or seconds, with defaults as written', () => {
    const t = schema.properties!.ssh!.properties!.connectTimeout!
    assert.equal(t.default, '5s')
    assert.deepEqual(
      t.anyOf?.map((a) => a.type),
      ['number', 'string'],
    )
    assert.equal(schema.properties!.asterisk!.properties!.drainTimeout!.default, '30m')
  })

  test('every property has a description (editors show them)', () => {
    const missing: string[] = []
    const walk = (s: JsonSchema, at: string) => {
      for (const [k, v] of Object.entries(s.properties ?? {})) {
        if (!v.description) missing.push(`${at}${k}`)
        walk(v, `${at}${k}.`)
      }
      if (typeof s.additionalProperties === 'object') walk(s.additionalProperties, `${at}*.`)
    }
    walk(schema, '')
    assert.deepEqual(missing, [])
  })
})
