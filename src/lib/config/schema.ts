import {z} from 'zod'
import {
  CLUSTER_NAME_RE,
  DURATION_RE,
  HOST_RE,
  NODE_NAME_RE,
  NODE_NAME_RULE,
  parseDuration,
  RESERVED_NODE_NAMES,
  ROLES,
} from './rules.js'

// The plain rules (names, roles, durations) live in rules.ts, without zod; they stay importable from here.
export * from './rules.js'

/**
 * The schema of hactl.yaml. This file is the contract between every part of hactl (and the lab,
 * which writes a hactl.yaml): change it with care and keep docs/config.md and
 * schema/hactl.schema.json (`hactl config schema`) in step.
 *
 * Defaults are given as input values (`prefault`), so the JSON Schema shows `5s` rather than 5000.
 * Checks that span several fields (duplicate hosts, wipe paths, weights) are in `crossChecks` below;
 * they run only when every field is well-typed.
 */

/** "500ms", "5s", "2m", "1h", or a number of seconds. Parsed to milliseconds. */
export const duration = z
  .union([
    z.number().positive('expected a positive duration such as 5s (a bare number is seconds)'),
    z.string().regex(DURATION_RE, 'expected a duration such as 500ms, 5s, 2m or 1h (or a number of seconds)'),
  ])
  .transform((v) => parseDuration(v))

const nodeName = z.string().regex(NODE_NAME_RE, `node names are ${NODE_NAME_RULE}`)

const host = z.string().max(253, 'a host name is at most 253 characters').regex(HOST_RE, 'expected a host name or an IP address')
const port = z.number().int('expected a whole number').min(1).max(65535)
const USER_RE = /^[a-z_][a-z0-9_.-]*\$?$/i
const userName = z.string().regex(USER_RE, 'expected a user name such as root or core')
/** A path on this machine (the one running hactl): absolute, or starting with ~. */
const localPath = z
  .string()
  .min(1)
  .max(4096)
  .regex(/^[/~]/, 'expected an absolute path (or one starting with ~)')
/** A path on a cluster host: absolute. */
const remotePath = z
  .string()
  .min(1)
  .max(4096)
  .regex(/^\/[^\0\n]*$/, 'expected an absolute path on the host, starting with /')
/** A remote command prefix such as `asterisk -rx` or `docker exec asterisk asterisk -rx`. */
const commandPrefix = z
  .string()
  .min(1)
  .max(1024)
  .regex(/^[^\n\0]+$/, 'expected a command on a single line')
const unitName = z
  .string()
  .regex(/^[a-zA-Z0-9@._-]+$/, 'expected a systemd unit name such as etcd2 or etcd-member')
const httpUrl = z.url({
  protocol: /^https?$/,
  error: 'expected an http:// or https:// URL such as http://10.0.0.1:2379',
})
const keyPrefix = z.string().startsWith('/', 'expected an etcd key starting with /')

export const sshSchema = z
  .object({
    user: userName
      .prefault('root')
      .describe('SSH user for every node (a node may override it). Default root.'),
    port: port.prefault(22).describe('SSH port for every node (a node may override it). Default 22.'),
    identityFiles: z
      .array(localPath)
      .prefault([])
      .describe(
        'Private keys to offer, on this machine. Empty: ssh-agent (SSH_AUTH_SOCK) and ~/.ssh/config.',
      ),
    knownHosts: localPath
      .prefault('~/.ssh/known_hosts')
      .describe('OpenSSH known_hosts file checked for host keys (plain and hashed entries).'),
    strictHostKeyChecking: z
      .enum(['yes', 'accept-new'])
      .prefault('yes')
      .describe('yes: refuse unknown hosts; accept-new: record unknown hosts, still refuse changed keys.'),
    become: z
      .boolean()
      .prefault(false)
      .describe('Run privileged commands through `sudo -n` (needed when user is not root).'),
    useSshConfig: z
      .boolean()
      .prefault(true)
      .describe('Read ~/.ssh/config for HostName, User, Port, IdentityFile and ProxyJump.'),
    connectTimeout: duration
      .prefault('5s')
      .describe('How long a connection may take: 500ms, 5s, 2m, 1h, or seconds.'),
    commandTimeout: duration
      .prefault('30s')
      .describe('How long one remote command may take unless an operation says otherwise.'),
  })
  .strict()
  .describe('SSH defaults for every node.')

export const etcdSchema = z
  .object({
    endpoints: z
      .array(httpUrl)
      .prefault([])
      .describe(
        'etcd client URLs. Empty: derived from the nodes with the etcd role as http://HOST:clientPort.',
      ),
    clientPort: port
      .prefault(2379)
      .describe('Client port used when the endpoints are derived from the nodes.'),
    via: z
      .enum(['direct', 'ssh'])
      .prefault('direct')
      .describe(
        'direct: connect to the endpoints; ssh: tunnel the etcd client through the SSH connection of an etcd node.',
      ),
    tls: z
      .object({
        ca: localPath.optional().describe('CA bundle that signed the etcd server certificates.'),
        cert: localPath.optional().describe('Client certificate (with key).'),
        key: localPath.optional().describe('Client private key (with cert).'),
      })
      .strict()
      .optional()
      .describe('TLS for the etcd client (paths on this machine). Set: derived endpoints use https://.'),
    auth: z
      .object({
        username: z.string().min(1).describe('etcd user.'),
        password: z.string().min(1).describe('etcd password. Masked by `hactl config show`.'),
      })
      .strict()
      .optional()
      .describe('etcd user and password.'),
    service: unitName
      .prefault('etcd2')
      .describe('systemd unit of etcd on the hosts (etcd2 on CoreOS, etcd, etcd-member).'),
    dataDir: remotePath
      .prefault('/var/lib/etcd')
      .describe('etcd data directory on the hosts (CoreOS etcd2: /var/lib/etcd2).'),
    wipe: z
      .array(z.string().min(1, 'expected a sub-path of dataDir such as member'))
      .min(1, 'list at least one sub-path of dataDir, such as member')
      .prefault(['member'])
      .describe(
        'Sub-paths of dataDir that a rediscovery removes (etcd 2+: member, proxy; etcd 0.4: log, conf).',
      ),
    discovery: z
      .object({
        format: z
          .enum(['cloud-config', 'env'])
          .prefault('cloud-config')
          .describe(
            'cloud-config: coreos.etcd2.discovery in a CoreOS cloud-config; env: an ETCD_DISCOVERY= line (env file or systemd drop-in).',
          ),
        file: remotePath
          .prefault('/var/lib/coreos-install/user_data')
          .describe('File on each etcd host that holds the discovery URL.'),
        key: z
          .string()
          .min(1)
          .optional()
          .describe(
            'cloud-config: dotted YAML path (default coreos.etcd2.discovery); env: variable name (default ETCD_DISCOVERY).',
          ),
        service: httpUrl
          .prefault('https://discovery.etcd.io')
          .describe('Discovery service that hands out new tokens (GET <service>/new?size=N).'),
      })
      .strict()
      .prefault({})
      .describe('Where the etcd discovery URL lives on a host, and where new ones come from.'),
    prefixes: z
      .object({
        asterisk: keyPrefix.prefault('/asterisk/').describe('Where the announcers register Asterisk boxes.'),
        maintenance: keyPrefix.prefault('/hactl/maintenance/').describe('Drain markers written by hactl.'),
        lock: keyPrefix.prefault('/hactl/lock').describe('Cluster-wide lock held by changing commands.'),
        history: keyPrefix.prefault('/hactl/history/').describe('Log of operations.'),
      })
      .strict()
      .prefault({})
      .describe('etcd key prefixes.'),
    timeout: duration.prefault('5s').describe('Timeout of one etcd request.'),
  })
  .strict()
  .describe('etcd: how to reach it, and how a rediscovery treats it.')

export const asteriskSchema = z
  .object({
    cli: commandPrefix
      .prefault('asterisk -rx')
      .describe(
        'How to run one Asterisk CLI command: `asterisk -rx` or `docker exec asterisk asterisk -rx`.',
      ),
    service: unitName
      .prefault('asterisk')
      .describe('systemd unit of Asterisk (asterisk@1 for a fleet-style unit).'),
    sipPort: port.prefault(5060).describe('SIP port the dispatchers send calls to.'),
    minInService: z
      .number()
      .int('expected a whole number')
      .min(0)
      .prefault(1)
      .describe('The capacity guard: a drain is refused when fewer Asterisk boxes would stay in service.'),
    drainTimeout: duration.prefault('30m').describe('How long a drain waits for the calls to end.'),
    pollInterval: duration.prefault('1s').describe('How often a drain counts the calls.'),
  })
  .strict()
  .describe('Asterisk on the nodes with the asterisk role.')

export const kamailioSchema = z
  .object({
    cli: commandPrefix
      .prefault('kamcmd')
      .describe('How to run kamcmd: `kamcmd` or `docker exec kamailio kamcmd`.'),
    service: unitName.prefault('kamailio').describe('systemd unit of Kamailio.'),
    setId: z
      .number()
      .int('expected a whole number')
      .min(0)
      .prefault(1)
      .describe('Dispatcher set id of the Asterisk boxes.'),
    listFile: remotePath
      .prefault('/etc/kamailio/dispatcher.list')
      .describe('dispatcher.list on the Kamailio hosts.'),
  })
  .strict()
  .describe('Kamailio on the nodes with the kamailio role.')

export const nodeSchema = z
  .object({
    host: host.describe('Host name or IP address to reach the node at over SSH.'),
    port: port.optional().describe('SSH port of this node (default: ssh.port).'),
    user: userName.optional().describe('SSH user of this node (default: ssh.user).'),
    roles: z
      .array(z.enum(ROLES))
      .min(1, 'a node needs at least one role: asterisk, kamailio, etcd or homer')
      .describe('What runs on the node: asterisk, kamailio, etcd, homer.'),
    weight: z
      .number()
      .int('expected a whole number')
      .min(1)
      .max(100)
      .optional()
      .describe(
        'Dispatcher weight in percent (1-100), asterisk nodes only. Unset: an even share of the rest.',
      ),
  })
  .strict()
  .describe('One machine of the cluster.')

/** Remote data directories a wipe must never be pointed at. */
const SYSTEM_DIRS = new Set([
  '/',
  '/bin',
  '/boot',
  '/dev',
  '/etc',
  '/home',
  '/lib',
  '/lib64',
  '/opt',
  '/proc',
  '/root',
  '/run',
  '/sbin',
  '/srv',
  '/sys',
  '/tmp',
  '/usr',
  '/usr/lib',
  '/usr/local',
  '/var',
  '/var/lib',
])

const configObject = z
  .object({
    cluster: z
      .string()
      .regex(CLUSTER_NAME_RE, 'expected letters, digits, ".", "_" and "-", 1-64 characters')
      .describe('Name of the cluster, shown in every report.'),
    ssh: sshSchema.prefault({}),
    etcd: etcdSchema.prefault({}),
    asterisk: asteriskSchema.prefault({}),
    kamailio: kamailioSchema.prefault({}),
    concurrency: z
      .number()
      .int('expected a whole number')
      .min(1)
      .max(1000)
      .prefault(50)
      .describe('How many hosts to work on at once (--concurrency overrides it).'),
    nodes: z
      .record(nodeName, nodeSchema)
      .refine((n) => Object.keys(n).length > 0, 'nodes is empty: at least one node is needed')
      .describe('The machines, by node name (lower-case letters, digits, "-").'),
  })
  .strict()

type ConfigOutput = z.output<typeof configObject>

/** Checks across fields, with the path each problem is reported at. */
function crossChecks(c: ConfigOutput, ctx: z.RefinementCtx<ConfigOutput>): void {
  const add = (path: PropertyKey[], message: string, hint?: string) =>
    ctx.addIssue({code: 'custom', path, message, ...(hint ? {params: {hint}} : {})})

  // Two names for one host:port would make every operation run twice on the same box.
  const seen = new Map<string, string>()
  let weightSum = 0
  let lastWeighted: string | undefined
  for (const [name, n] of Object.entries(c.nodes)) {
    if (RESERVED_NODE_NAMES.includes(name)) {
      add(
        ['nodes', name],
        `node name "${name}" is also a role name; "hactl exec ${name}" would be ambiguous`,
        `rename the node, e.g. ${name}1`,
      )
    }
    const key = `${n.host.toLowerCase()}:${n.port ?? c.ssh.port}`
    const other = seen.get(key)
    if (other) {
      add(
        ['nodes', name, 'host'],
        `nodes ${other} and ${name} have the same host ${n.host} and port ${n.port ?? c.ssh.port}`,
        'each node must be a different machine: remove one of them, or give them different ports',
      )
    } else seen.set(key, name)
    if (n.weight !== undefined) {
      if (!n.roles.includes('asterisk')) {
        add(
          ['nodes', name, 'weight'],
          `nodes.${name}.weight: weight applies only to asterisk nodes; ${name} has roles ${n.roles.join(', ')}`,
          'remove the weight, or add the asterisk role',
        )
      } else {
        weightSum += n.weight
        lastWeighted = name
      }
    }
  }
  if (weightSum > 100 && lastWeighted) {
    add(
      ['nodes', lastWeighted, 'weight'],
      `the asterisk weights add up to ${weightSum}; they are percentages and may add up to at most 100`,
      'lower the weights, or remove some so those nodes share the rest',
    )
  }

  const dataDir = c.etcd.dataDir.replace(/\/+$/, '') || '/'
  if (SYSTEM_DIRS.has(dataDir)) {
    add(
      ['etcd', 'dataDir'],
      `etcd.dataDir "${c.etcd.dataDir}" is a system directory, not an etcd data directory; a rediscovery deletes inside it`,
      'use the directory etcd keeps its data in, such as /var/lib/etcd2',
    )
  } else if (c.etcd.dataDir.split('/').some((seg) => seg === '..' || seg === '.')) {
    add(
      ['etcd', 'dataDir'],
      `etcd.dataDir "${c.etcd.dataDir}" must not contain "." or ".." segments`,
      'write the plain absolute path, such as /var/lib/etcd2',
    )
  }
  c.etcd.wipe.forEach((p, i) => {
    const problem = wipeProblem(p)
    if (problem) {
      add(
        ['etcd', 'wipe', i],
        `etcd.wipe entry ${JSON.stringify(p)} ${problem}; entries are sub-paths of etcd.dataDir (${c.etcd.dataDir})`,
        'use sub-paths such as member and proxy (etcd 2+), or log and conf (etcd 0.4)',
      )
    }
  })

  if (c.etcd.tls) {
    const {cert, key} = c.etcd.tls
    if ((cert === undefined) !== (key === undefined)) {
      add(
        ['etcd', 'tls', cert === undefined ? 'key' : 'cert'],
        'etcd.tls: cert and key go together; set both or neither',
        'add the missing one, or remove the other',
      )
    }
    c.etcd.endpoints.forEach((e, i) => {
      if (e.startsWith('http://')) {
        add(
          ['etcd', 'endpoints', i],
          `etcd endpoint ${e} is plain http:// but etcd.tls is set`,
          `use https:// (${e.replace(/^http:/, 'https:')}), or remove etcd.tls`,
        )
      }
    })
  }
}

/** Why a wipe entry is unsafe, or undefined when it is a plain sub-path. */
function wipeProblem(p: string): string | undefined {
  if (p.startsWith('/')) return 'is an absolute path'
  if (p.startsWith('~')) return 'starts with ~'
  if (/[\0-\x1f]/.test(p)) return 'contains a control character'
  if (/[*?[\]{}]/.test(p)) return 'contains a wildcard (entries are not globs)'
  const segs = p.replace(/\/$/, '').split('/')
  if (segs.some((s) => s === '..')) return 'climbs out with ".."'
  if (segs.some((s) => s === '.' || s === ''))
    return 'has an empty or "." segment (it would name dataDir itself)'
  return undefined
}

export const configSchema = configObject
  .superRefine(crossChecks, {when: (payload) => payload.issues.length === 0})
  .describe('hactl.yaml: the inventory and settings of one HA Asterisk cluster (see docs/config.md).')

export type HactlConfigInput = z.input<typeof configSchema>
export type ParsedConfig = z.output<typeof configSchema>
export type NodeConfig = z.output<typeof nodeSchema>
export type NodeInput = z.input<typeof nodeSchema>
