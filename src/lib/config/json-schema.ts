import {z} from 'zod'
import {configSchema} from './schema.js'

/**
 * The JSON Schema of hactl.yaml, for editors (yaml-language-server, VS Code, IntelliJ): the input
 * side of the zod schema, so durations are strings such as 5s and defaults are shown as written.
 * Checks across fields (duplicate hosts, wipe paths) are not expressible here; `hactl config
 * validate` does them. schema/hactl.schema.json is this, generated and checked in.
 */
export function configJsonSchema(): Record<string, unknown> {
  const generated = z.toJSONSchema(configSchema, {
    io: 'input',
    target: 'draft-2020-12',
    unrepresentable: 'any',
  }) as Record<string, unknown>
  const {$schema, description, ...rest} = generated
  return {
    $schema,
    title: 'hactl.yaml',
    description,
    ...rest,
    // Top-level x-* keys are ignored by hactl: a place for YAML anchors (x-asterisk: &ast {...}).
    patternProperties: {'^x-': {description: 'Ignored by hactl; a place for YAML anchors to reuse.'}},
  }
}

/** The checked-in file's exact text: two-space JSON with a final newline. */
export function configJsonSchemaText(): string {
  return `${JSON.stringify(configJsonSchema(), null, 2)}\n`
}
