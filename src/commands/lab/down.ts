import * as Flags from '@oclif/core/flags'
import {BaseCommand} from '../../base-command.js'
import type {LabDownResult} from '../../lib/lab/down.js'

export default class LabDown extends BaseCommand<typeof LabDown> {
  static override summary = 'Remove a local lab: its processes, namespaces, bridge, mounts and files.'

  static override description = `Kills every process of the lab's hosts by pid (those in its namespaces, and strays that still
name its directory), deletes the NAME-* namespaces, the bridge and links, and /var/lib/hactl-lab/NAME.
Works from state.json and, after a crash, from the namespaces and links alone. Safe to run twice:
a lab that is not there is nothing to do (exit 0).`

  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --name second',
  ]

  static override flags = {
    name: Flags.string({summary: 'Name of the lab.', default: 'hactl', env: 'HACTL_LAB'}),
  }

  public async run(): Promise<LabDownResult> {
    const {labDown} = await import('../../lib/lab/down.js')
    const result = await labDown({
      name: this.flags.name,
      log: this.flags.verbose ? (line) => process.stderr.write(`${line}\n`) : undefined,
    })
    if (!this.jsonEnabled()) {
      this.log(
        result.found
          ? `lab ${result.name} removed: ${result.killed} processes, ${result.namespaces.length} namespaces, ${result.links.length} links${result.removedDir ? ', its directory' : ''}`
          : `lab ${result.name} is not up; nothing to do`,
      )
    }
    return result
  }
}
