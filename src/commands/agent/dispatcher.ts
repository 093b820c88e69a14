import * as Flags from '@oclif/core/flags'
import {BaseCommand} from '../../base-command.js'
import {etcdEndpointsFlag} from '../../ui/flags.js'

export default class AgentDispatcher extends BaseCommand<typeof AgentDispatcher> {
  static override summary =
    "Keep this Kamailio's dispatcher.list in step with the registrations in etcd (long-running)."

  static override description = `Watches the registrations (/asterisk/) and the maintenance marks (/hactl/maintenance/) and renders
set --set of dispatcher.list from them: one line per box, SETID sip:IP:PORT FLAGS PRIORITY weight=W,
explicit weights kept and the rest of 100 split evenly (remainder to the first unweighted box), a
box in maintenance (hactl node drain) with the disabled flag so a reload cannot bring it back.
Lines of other sets in the file are kept.

When the rendering differs from the file, the agent writes it atomically (temp file and rename)
and runs the reload command, debounced (Kamailio refuses a reload within reload_delta, 5 s, of the
last one) and retried on "Ongoing reload". When the rendering is unchanged it writes nothing.
While etcd is unreachable the file is left as it is. SIGTERM/SIGINT: stop, exit 0.

etcd endpoints: --endpoints (or HACTL_ETCD_ENDPOINTS), else hactl.yaml's; no hactl.yaml is needed
when the endpoints are given. Logs one line per event to stdout. See docs/agents.md.`

  static override examples = [
    '<%= config.bin %> <%= command.id %> --endpoints http://10.77.0.21:2379,http://10.77.0.22:2379',
    '<%= config.bin %> <%= command.id %> --endpoints http://10.77.0.21:2379 --list-file /etc/kamailio/dispatcher.list --set 1',
    "<%= config.bin %> <%= command.id %> --config /etc/hactl/hactl.yaml --reload-command 'docker exec kamailio kamcmd dispatcher.reload'",
  ]

  static override enableJsonFlag = false

  static override flags = {
    'list-file': Flags.string({
      summary: 'The dispatcher.list to keep (default: kamailio.listFile, /etc/kamailio/dispatcher.list).',
      helpValue: 'FILE',
    }),
    set: Flags.integer({
      summary: 'Dispatcher set id to render (default: kamailio.setId, 1).',
      min: 0,
      max: 2_147_483_647,
      helpValue: 'ID',
    }),
    'reload-command': Flags.string({
      summary:
        'Shell command that reloads the list (default: kamailio.cli + " dispatcher.reload", kamcmd dispatcher.reload).',
      helpValue: 'COMMAND',
    }),
    prefix: Flags.string({
      summary: 'Registration prefix (default: etcd.prefixes.asterisk, /asterisk/).',
      helpValue: 'PREFIX',
    }),
    'maintenance-prefix': Flags.string({
      summary: 'Maintenance mark prefix (default: etcd.prefixes.maintenance, /hactl/maintenance/).',
      helpValue: 'PREFIX',
    }),
    resync: Flags.integer({
      summary: 'Seconds between full re-reads of etcd and the file (0: only on events).',
      default: 30,
      min: 0,
      max: 86_400,
    }),
    endpoints: etcdEndpointsFlag(),
  }

  public async run(): Promise<void> {
    const {agentSetup, stopOnSignals} = await import('../../ui/agent-cli.js')
    const {endpoints, config} = await agentSetup(this.flags, () => this.hactlConfig())
    const listFile = this.flags['list-file'] ?? config?.kamailio.listFile ?? '/etc/kamailio/dispatcher.list'
    if (!listFile.startsWith('/')) {
      const {UserError} = await import('../../lib/errors.js')
      throw new UserError(`--list-file must be an absolute path, got ${JSON.stringify(listFile)}`)
    }
    const stop = stopOnSignals()
    this.onCleanup(() => stop.dispose())
    const {runDispatcherAgent} = await import('../../lib/agent/dispatcher-agent.js')
    const {lineLogger} = await import('../../lib/agent/log.js')
    await runDispatcherAgent({
      ...(config ? {config} : {}),
      ...(endpoints ? {endpoints} : {}),
      listFile,
      setId: this.flags.set ?? config?.kamailio.setId ?? 1,
      reloadCommand: this.flags['reload-command'] ?? `${config?.kamailio.cli ?? 'kamcmd'} dispatcher.reload`,
      prefix: this.flags.prefix ?? config?.etcd.prefixes.asterisk ?? '/asterisk/',
      maintenancePrefix:
        this.flags['maintenance-prefix'] ?? config?.etcd.prefixes.maintenance ?? '/hactl/maintenance/',
      resyncSeconds: this.flags.resync,
      log: lineLogger((line) => process.stdout.write(line)),
      signal: stop.signal,
    })
  }
}
