import * as Args from '@oclif/core/args'
import {BaseCommand} from '../../base-command.js'
import type {ConfigSummary} from '../../lib/config/validate.js'

export default class ConfigValidate extends BaseCommand<typeof ConfigValidate> {
  static override summary = 'Check hactl.yaml and say what it describes.'

  static override description = `Reads the config (FILE, --config, HACTL_CONFIG, ./hactl.yaml, ~/.config/hactl/config.yaml, in that
order), checks it against the schema and for mistakes across fields (duplicate node names or
hosts, wipe paths outside the etcd data dir, weights over 100), and prints one line:
ok: FILE (cluster NAME, N nodes: ...). Things that parse but will probably bite (no etcd nodes, a
non-root user without ssh.become, a missing known_hosts file) are printed as warnings on stderr.

Exit status: 0 when the config is valid (even with warnings); 2 when it is not, with FILE:LINE:COLUMN,
what is wrong and what is allowed.`

  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> -c /etc/hactl/prod.yaml',
    '<%= config.bin %> <%= command.id %> staging.yaml --json',
  ]

  static override args = {
    file: Args.string({
      description: 'Config file to check (default: --config, HACTL_CONFIG, ./hactl.yaml, ...).',
      required: false,
    }),
  }

  public async run(): Promise<ConfigSummary> {
    const {loadConfig} = await import('../../lib/config/load.js')
    const {summarizeConfig, describeNodes} = await import('../../lib/config/validate.js')
    const config = this.args.file ? loadConfig({flag: this.args.file}) : await this.hactlConfig()
    const summary = summarizeConfig(config)
    if (!this.jsonEnabled()) {
      for (const w of summary.warnings) process.stderr.write(`warning: ${w}\n`)
      this.log(
        `ok: ${summary.file} (cluster ${summary.cluster}, ${describeNodes(summary.nodes.map((n) => n.name))})`,
      )
    }
    return summary
  }
}
