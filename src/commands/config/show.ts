import {BaseCommand} from '../../base-command.js'
import type {ShownConfig} from '../../lib/config/show.js'

export default class ConfigShow extends BaseCommand<typeof ConfigShow> {
  static override summary = 'Print the resolved config, secrets masked.'

  static override description = `Prints hactl.yaml as hactl understands it: every default filled in, each node's port and user
resolved from ssh:, durations written as 5s/30m, and secrets (etcd.auth.password) replaced by
********. The output is itself a valid hactl.yaml. With --json, the same as a JSON object.`

  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> -c lab.yaml',
    "<%= config.bin %> <%= command.id %> --json | jq '.nodes | keys'",
  ]

  public async run(): Promise<ShownConfig> {
    const config = await this.hactlConfig()
    const {showConfig, renderShownConfig} = await import('../../lib/config/show.js')
    const shown = showConfig(config)
    if (!this.jsonEnabled()) process.stdout.write(renderShownConfig(shown, config))
    return shown
  }
}
