import {z} from 'zod'

/**
 * The shape of `hactl status --json`. The JSON Schema in schema/status.schema.json is generated
 * from this (a unit test fails when it is stale), so scripts can rely on it. The status itself
 * (status-model.ts, status.ts) uses only the types: a run does not load zod.
 */

const errorInfo = z.object({kind: z.string(), message: z.string()})

export const dispatcherEntrySchema = z.object({
  /** Kamailio flags as kamcmd prints them: AP, IP, TP, DX... or null when the box is not in the list. */
  flags: z.string().nullable(),
  state: z.enum(['active', 'inactive', 'trying', 'disabled', 'absent', 'unknown']),
})

export const nodeStatusSchema = z.object({
  name: z.string(),
  host: z.string(),
  port: z.number(),
  roles: z.array(z.string()),
  ssh: z.object({ok: z.boolean(), rttMs: z.number().optional(), error: errorInfo.optional()}),
  bootId: z.string().optional(),
  uptimeSeconds: z.number().optional(),
  etcd: z
    .object({
      member: z.enum(['leader', 'follower', 'learner', 'unhealthy', 'not-a-member', 'unknown']),
      memberId: z.string().optional(),
      service: z.string().optional(),
      discoveryUrl: z.string().optional(),
    })
    .optional(),
  asterisk: z
    .object({
      state: z.enum(['running', 'stopped', 'shutdown-pending', 'unknown']),
      activeCalls: z.number().optional(),
      activeChannels: z.number().optional(),
      callsProcessed: z.number().optional(),
      maxCalls: z.number().optional(),
      detail: z.string().optional(),
    })
    .optional(),
  kamailio: z
    .object({
      state: z.enum(['running', 'down', 'unknown']),
      destinations: z.number().optional(),
      detail: z.string().optional(),
    })
    .optional(),
  /** Keyed by Kamailio node name. */
  dispatcher: z.record(z.string(), dispatcherEntrySchema).optional(),
  maintenance: z
    .object({
      state: z.enum(['draining', 'drained']),
      by: z.string().optional(),
      since: z.string().optional(),
      reason: z.string().optional(),
    })
    .optional(),
  inService: z.boolean().optional(),
})

export const problemSchema = z.object({
  severity: z.enum(['critical', 'warning']),
  kind: z.enum([
    'etcd-unreachable',
    'etcd-member-down',
    'etcd-no-leader',
    'etcd-alarm',
    'host-unreachable',
    'host-key-mismatch',
    'host-key-unknown',
    'ssh-failed',
    'asterisk-down',
    'kamailio-down',
    'dispatcher-disagree',
    'dispatcher-missing',
    'drained-takes-calls',
    'shutdown-unmarked',
    'no-capacity',
  ]),
  node: z.string().optional(),
  message: z.string(),
  fix: z.string(),
})

export const clusterStatusSchema = z.object({
  cluster: z.string(),
  generatedAt: z.string(),
  durationMs: z.number(),
  healthy: z.boolean(),
  etcd: z.object({
    reachable: z.boolean(),
    error: z.string().optional(),
    clusterId: z.string().optional(),
    healthy: z.number(),
    total: z.number(),
    leader: z.string().optional(),
    raftTerm: z.number().optional(),
    raftIndex: z.number().optional(),
    version: z.string().optional(),
    dbSize: z.number().optional(),
    alarms: z.array(z.string()),
  }),
  discoveryUrls: z.array(z.string()),
  asterisk: z.object({inService: z.number(), total: z.number(), inServiceNodes: z.array(z.string())}),
  nodes: z.array(nodeStatusSchema),
  problems: z.array(problemSchema),
})

export type DispatcherEntry = z.infer<typeof dispatcherEntrySchema>
export type NodeStatus = z.infer<typeof nodeStatusSchema>
export type Problem = z.infer<typeof problemSchema>
export type ClusterStatus = z.infer<typeof clusterStatusSchema>
export type EtcdSummary = ClusterStatus['etcd']
