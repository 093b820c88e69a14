import {z} from 'zod'

/**
 * The schema of hactl.yaml. This file is the contract between every part of hactl (and the lab,
 * which writes a hactl.yaml): change it with care and keep docs/config.md in step.
 */

const DURATION_RE = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/

/** "500ms", "5s", "2m", "1h", or a number of seconds. Parsed to milliseconds. */
export const duration = z
  .union([z.number().positive(), z.string().regex(DURATION_RE, 'expected a duration such as 500ms, 5s, 2m or 1h')])
  .transform((v) => parseDuration(v))

export function parseDuration(v: number | string): number {
  if (typeof v === 'number') return Math.round(v * 1000)
  const m = DURATION_RE.exec(v.trim())
  if (!m) throw new Error(`not a duration: ${v}`)
  const n = Number(m[1])
  const unit = m[2]
  const factor = unit === 'ms' ? 1 : unit === 's' ? 1000 : unit === 'm' ? 60_000 : 3_600_000
  return Math.round(n * factor)
}

export const ROLES = ['asterisk', 'kamailio', 'etcd', 'homer'] as const
export type Role = (typeof ROLES)[number]

/** Node names are used in commands, file names and etcd keys: keep them boring. */
export const NODE_NAME_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/
const nodeName = z.string().regex(NODE_NAME_RE, 'node names are lower-case letters, digits and "-", 1-63 characters')

/** A host name or an IP address; no spaces, shell metacharacters or URLs. */
const HOST_RE = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]{0,252})|[0-9a-fA-F:]+)$/
const host = z.string().regex(HOST_RE, 'expected a host name or an IP address')
const port = z.number().int().min(1).max(65535)
const absPath = z.string().min(1).regex(/^[/~]/, 'expected an absolute path (or one starting with ~)').max(4096)
/** A remote command prefix such as `asterisk -rx` or `docker exec asterisk asterisk -rx`. */
const commandPrefix = z.string().min(1).max(1024).regex(/^[^\n\0]+$/, 'a single-line command')

const urlString = z.string().url('expected a URL such as http://10.0.0.1:2379')

export const sshSchema = z
  .object({
    user: z.string().regex(/^[a-z_][a-z0-9_.-]*\$?$/i, 'expected a user name').default('root'),
    port: port.default(22),
    identityFiles: z.array(absPath).default([]),
    knownHosts: absPath.default('~/.ssh/known_hosts'),
    strictHostKeyChecking: z.enum(['yes', 'accept-new']).default('yes'),
    /** Run privileged commands through `sudo -n` (for a non-root user). */
    become: z.boolean().default(false),
    /** Read ~/.ssh/config for HostName, User, Port, IdentityFile, ProxyJump. */
    useSshConfig: z.boolean().default(true),
    connectTimeout: duration.default(5000),
    commandTimeout: duration.default(30_000),
  })
  .strict()

export const etcdSchema = z
  .object({
    /** Client URLs. Empty: derived from the nodes with the etcd role as http://HOST:2379. */
    endpoints: z.array(urlString).default([]),
    clientPort: port.default(2379),
    /** `ssh`: tunnel the etcd client through the SSH connection of an etcd host. */
    via: z.enum(['direct', 'ssh']).default('direct'),
    tls: z
      .object({ca: absPath.optional(), cert: absPath.optional(), key: absPath.optional()})
      .strict()
      .optional(),
    auth: z.object({username: z.string().min(1), password: z.string().min(1)}).strict().optional(),
    service: z.string().regex(/^[a-zA-Z0-9@._-]+$/, 'expected a systemd unit name').default('etcd2'),
    dataDir: absPath.default('/var/lib/etcd'),
    /** Sub-paths of dataDir that a rediscovery removes (etcd >= 2: member; etcd 0.4: log, conf). */
    wipe: z.array(z.string().min(1)).min(1).default(['member']),
    discovery: z
      .object({
        format: z.enum(['cloud-config', 'env']).default('cloud-config'),
        file: absPath.default('/var/lib/coreos-install/user_data'),
        /** cloud-config: dotted YAML path; env: variable name. */
        key: z.string().min(1).optional(),
        /** Discovery service used for new tokens (GET <service>/new?size=N). */
        service: urlString.default('https://discovery.etcd.io'),
      })
      .strict()
      .default({format: 'cloud-config', file: '/var/lib/coreos-install/user_data', service: 'https://discovery.etcd.io'}),
    prefixes: z
      .object({
        asterisk: z.string().startsWith('/').default('/asterisk/'),
        maintenance: z.string().startsWith('/').default('/hactl/maintenance/'),
        lock: z.string().startsWith('/').default('/hactl/lock'),
        history: z.string().startsWith('/').default('/hactl/history/'),
      })
      .strict()
      .default({
        asterisk: '/asterisk/',
        maintenance: '/hactl/maintenance/',
        lock: '/hactl/lock',
        history: '/hactl/history/',
      }),
    timeout: duration.default(5000),
  })
  .strict()

export const asteriskSchema = z
  .object({
    /** How to run one Asterisk CLI command: `asterisk -rx` or `docker exec asterisk asterisk -rx`. */
    cli: commandPrefix.default('asterisk -rx'),
    service: z.string().regex(/^[a-zA-Z0-9@._-]+$/, 'expected a systemd unit name').default('asterisk'),
    sipPort: port.default(5060),
    /** The capacity guard: drains are refused below this many Asterisk boxes in service. */
    minInService: z.number().int().min(0).default(1),
    drainTimeout: duration.default(30 * 60_000),
    pollInterval: duration.default(1000),
  })
  .strict()

export const kamailioSchema = z
  .object({
    /** How to run kamcmd: `kamcmd` or `docker exec kamailio kamcmd`. */
    cli: commandPrefix.default('kamcmd'),
    service: z.string().regex(/^[a-zA-Z0-9@._-]+$/, 'expected a systemd unit name').default('kamailio'),
    setId: z.number().int().min(0).default(1),
    listFile: absPath.default('/etc/kamailio/dispatcher.list'),
  })
  .strict()

export const nodeSchema = z
  .object({
    host,
    port: port.optional(),
    user: z.string().regex(/^[a-z_][a-z0-9_.-]*\$?$/i, 'expected a user name').optional(),
    roles: z.array(z.enum(ROLES)).min(1, 'a node needs at least one role'),
    /** Dispatcher weight in percent (1-100), for the asterisk role. */
    weight: z.number().int().min(1).max(100).optional(),
  })
  .strict()

export const configSchema = z
  .object({
    cluster: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'letters, digits, ".", "_" and "-", at most 64'),
    ssh: sshSchema.default(sshSchema.parse({})),
    etcd: etcdSchema.default(etcdSchema.parse({})),
    asterisk: asteriskSchema.default(asteriskSchema.parse({})),
    kamailio: kamailioSchema.default(kamailioSchema.parse({})),
    concurrency: z.number().int().min(1).max(1000).default(50),
    nodes: z.record(nodeName, nodeSchema).refine((n) => Object.keys(n).length > 0, 'at least one node is needed'),
  })
  .strict()

export type HactlConfigInput = z.input<typeof configSchema>
export type ParsedConfig = z.output<typeof configSchema>
export type NodeConfig = z.output<typeof nodeSchema>
