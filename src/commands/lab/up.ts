import * as Flags from '@oclif/core/flags'
import {BaseCommand} from '../../base-command.js'
import type {LabUpResult} from '../../lib/lab/up.js'

export default class LabUp extends BaseCommand<typeof LabUp> {
  static override summary = 'Start a local cluster: Asterisk, Kamailio and etcd hosts in network namespaces.'

  static override description = `Builds a real multi-host cluster on this machine, the way kind does for Kubernetes: each host is a
network namespace on a bridge, with its own mount and UTS namespaces, hostname, sshd and host key.
etcd (real, --enable-v2) runs on the first --etcd Asterisk hosts and bootstraps through the lab's own
discovery service (host disc, .2:8087); Kamailio (real) dispatches to every Asterisk host with
OPTIONS probing; Asterisk is a faithful stand-in (lab/asterisk.mjs). Hosts reboot for real
(reboot, shutdown -r now, systemctl reboot: new boot_id, sessions cut).

Addresses: bridge .1, disc .2, kam1.. .11.., ast1.. .21.., spare1.. .240.. (spares run sshd only and
are not in hactl.yaml). Writes /var/lib/hactl-lab/NAME/{hactl.yaml,id_ed25519,known_hosts} and prints
the one line that points hactl at it. Needs root and the Debian packages openssh-server,
etcd-server, etcd-client and kamailio (it installs nothing). Remove the lab with hactl lab down.

Exit status: 0 up; 1 the lab did not come up (it is removed again); 2 usage error, not root,
missing packages, or the lab is already up.`

  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    'eval "$(<%= config.bin %> <%= command.id %>)" && <%= config.bin %> status',
    '<%= config.bin %> <%= command.id %> --asterisk 50 --kamailio 2 --etcd 5',
    '<%= config.bin %> <%= command.id %> --name second --subnet 10.78.0.0/24 --spare 1',
  ]

  static override flags = {
    name: Flags.string({
      summary: 'Name of the lab (namespaces are NAME-HOST).',
      default: 'hactl',
      env: 'HACTL_LAB',
    }),
    asterisk: Flags.integer({summary: 'Number of Asterisk hosts (ast1..).', default: 4, min: 1, max: 16_000}),
    kamailio: Flags.integer({summary: 'Number of Kamailio hosts (kam1..).', default: 2, min: 0, max: 10}),
    etcd: Flags.integer({
      summary: 'How many of the Asterisk hosts run etcd (ast1..astK). Default: 3, or --asterisk if fewer.',
      min: 1,
    }),
    spare: Flags.integer({
      summary: 'Spare hosts for `hactl node add` (sshd only, not in hactl.yaml).',
      default: 0,
      min: 0,
    }),
    subnet: Flags.string({summary: 'IPv4 subnet of the lab bridge (/16 to /26).', default: '10.77.0.0/24'}),
    'reboot-delay': Flags.integer({
      summary: 'Milliseconds a rebooting host stays down.',
      default: 1000,
      min: 0,
      max: 600_000,
    }),
    'keep-on-failure': Flags.boolean({
      summary: 'If the lab does not come up, leave it in place to read its logs.',
    }),
  }

  public async run(): Promise<LabUpResult> {
    const {labUp} = await import('../../lib/lab/up.js')
    const ac = new AbortController()
    const onSignal = () => ac.abort()
    process.once('SIGINT', onSignal)
    process.once('SIGTERM', onSignal)
    this.onCleanup(() => {
      process.removeListener('SIGINT', onSignal)
      process.removeListener('SIGTERM', onSignal)
    })
    const quiet = this.jsonEnabled()
    const result = await labUp({
      name: this.flags.name,
      asterisk: this.flags.asterisk,
      kamailio: this.flags.kamailio,
      etcd: this.flags.etcd,
      spare: this.flags.spare,
      subnet: this.flags.subnet,
      rebootDelayMs: this.flags['reboot-delay'],
      keepOnFailure: this.flags['keep-on-failure'],
      signal: ac.signal,
      log: quiet ? undefined : (line) => process.stderr.write(`${line}\n`),
    })
    if (!quiet) {
      const by = (k: string) => result.hosts.filter((h) => h.kind === k).length
      process.stderr.write(
        `lab ${result.name} is up in ${(result.durationMs / 1000).toFixed(1)} s: ${by('asterisk')} Asterisk, ${by('kamailio')} Kamailio, ` +
          `${result.etcdMembers.length} etcd members, ${by('spare')} spare (${result.subnet}); remove it with: ${this.config.bin} lab down${result.name === 'hactl' ? '' : ` --name ${result.name}`}\n`,
      )
      process.stdout.write(`${result.exportLine}\n`)
    }
    return result
  }
}
