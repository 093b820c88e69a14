import * as Flags from '@oclif/core/flags'
import {BaseCommand} from '../../base-command.js'
import {etcdEndpointsFlag} from '../../ui/flags.js'

export default class AgentAnnounce extends BaseCommand<typeof AgentAnnounce> {
  static override summary =
    'Keep this Asterisk box registered in etcd (long-running; for a systemd unit or a container).'

  static override description = `Registers the box under the registration prefix (default /asterisk/): key /asterisk/NAME, value
JSON {"ip", "port", "weight"?}, attached to a lease with a TTL (default 15 s) that the agent keeps
alive. The Kamailio dispatcher agents (hactl agent dispatcher) take it into rotation at once.

A crash stops the keep-alives: the key leaves etcd after the TTL. SIGTERM or SIGINT revokes the lease
first, so the box leaves the rotation at once, then the agent exits 0. Through an etcd outage it
keeps trying, and registers again with a new lease if the old one was lost.

etcd endpoints: --endpoints (or HACTL_ETCD_ENDPOINTS), else hactl.yaml's; no hactl.yaml is needed
when the endpoints are given. Logs one line per event to stdout. See docs/agents.md.`

  static override examples = [
    '<%= config.bin %> <%= command.id %> --name ast5 --ip 10.77.0.25 --endpoints http://10.77.0.21:2379,http://10.77.0.22:2379',
    'HACTL_ETCD_ENDPOINTS=http://10.77.0.21:2379 <%= config.bin %> <%= command.id %> --name ast5 --ip 10.77.0.25 --weight 25 --ttl 10',
    '<%= config.bin %> <%= command.id %> --config /etc/hactl/hactl.yaml --name ast5 --ip 10.77.0.25',
  ]

  static override enableJsonFlag = false

  static override flags = {
    name: Flags.string({
      summary: 'Box name: the key under the prefix (lower-case letters, digits, "-").',
      required: true,
      helpValue: 'NAME',
    }),
    ip: Flags.string({summary: 'The address Kamailio sends SIP to.', required: true, helpValue: 'IP'}),
    port: Flags.integer({summary: 'SIP port.', default: 5060, min: 1, max: 65535}),
    weight: Flags.integer({
      summary: 'Share of the calls in percent (the others split what is left of 100).',
      min: 1,
      max: 100,
    }),
    ttl: Flags.integer({
      summary: 'Lease TTL in seconds: how long a crashed box stays in rotation.',
      default: 15,
      min: 1,
      max: 3600,
    }),
    prefix: Flags.string({
      summary: 'Registration prefix (default: etcd.prefixes.asterisk, /asterisk/).',
      helpValue: 'PREFIX',
    }),
    endpoints: etcdEndpointsFlag(),
  }

  public async run(): Promise<void> {
    const {agentSetup, stopOnSignals} = await import('../../ui/agent-cli.js')
    const {endpoints, config} = await agentSetup(this.flags, () => this.hactlConfig())
    const stop = stopOnSignals()
    this.onCleanup(() => stop.dispose())
    const {runAnnounceAgent} = await import('../../lib/agent/announce.js')
    const {lineLogger} = await import('../../lib/agent/log.js')
    await runAnnounceAgent({
      ...(config ? {config} : {}),
      ...(endpoints ? {endpoints} : {}),
      ...(this.flags.prefix === undefined ? {} : {prefix: this.flags.prefix}),
      name: this.flags.name,
      ip: this.flags.ip,
      port: this.flags.port,
      ...(this.flags.weight === undefined ? {} : {weight: this.flags.weight}),
      ttlSeconds: this.flags.ttl,
      log: lineLogger((line) => process.stdout.write(line)),
      signal: stop.signal,
    })
  }
}
