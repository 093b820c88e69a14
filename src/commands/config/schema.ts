import {BaseCommand} from '../../base-command.js'

export default class ConfigSchema extends BaseCommand<typeof ConfigSchema> {
  static override summary = 'Print the JSON Schema of hactl.yaml.'

  static override description = `Prints the JSON Schema (draft 2020-12) of hactl.yaml to stdout, so editors can complete and check
the file. The same schema ships with hactl as schema/hactl.schema.json. With the YAML language
server (VS Code, Neovim, ...), put this first line in hactl.yaml:
  # yaml-language-server: $schema=./hactl.schema.json
Checks across fields (duplicate hosts, wipe paths) are not in the schema: run hactl config validate.`

  static override examples = [
    '<%= config.bin %> <%= command.id %> > hactl.schema.json',
    "<%= config.bin %> <%= command.id %> | jq '.properties.nodes'",
  ]

  public async run(): Promise<Record<string, unknown>> {
    const {configJsonSchema, configJsonSchemaText} = await import('../../lib/config/json-schema.js')
    if (!this.jsonEnabled()) process.stdout.write(configJsonSchemaText())
    return configJsonSchema()
  }
}
