import {Document, isMap, isSeq} from 'yaml'
import {etcdEndpoints, type HactlConfig} from './load.js'
import {SECRET_KEY_RE} from './rules.js'
import {formatDuration} from './schema.js'

/** What `hactl config show` prints in place of a secret. */
export const SECRET_MASK = '********'

/** One node as hactl.yaml spells it, with port and user resolved. */
export interface ShownNode {
  host: string
  port: number
  user: string
  roles: string[]
  weight?: number
}

/** The resolved config in hactl.yaml's own shape: defaults filled in, durations as 5s, secrets masked. */
export interface ShownConfig {
  cluster: string
  ssh: Record<string, unknown>
  etcd: Record<string, unknown>
  asterisk: Record<string, unknown>
  kamailio: Record<string, unknown>
  concurrency: number
  nodes: Record<string, ShownNode>
}

/**
 * The resolved config with secrets masked. It is itself a valid hactl.yaml (with the masked
 * password), so `hactl config show > resolved.yaml` gives a file hactl reads the same way.
 */
export function showConfig(config: HactlConfig): ShownConfig {
  const {ssh, etcd, asterisk, kamailio} = config
  const shown: ShownConfig = {
    cluster: config.cluster,
    ssh: {
      ...ssh,
      connectTimeout: formatDuration(ssh.connectTimeout),
      commandTimeout: formatDuration(ssh.commandTimeout),
    },
    etcd: {...etcd, timeout: formatDuration(etcd.timeout)},
    asterisk: {
      ...asterisk,
      drainTimeout: formatDuration(asterisk.drainTimeout),
      pollInterval: formatDuration(asterisk.pollInterval),
    },
    kamailio: {...kamailio},
    concurrency: config.concurrency,
    nodes: Object.fromEntries(
      config.nodes.map((n) => [
        n.name,
        {
          host: n.host,
          port: n.port,
          user: n.user,
          roles: [...n.roles],
          ...(n.weight === undefined ? {} : {weight: n.weight}),
        },
      ]),
    ),
  }
  return maskSecrets(shown)
}

/** A deep copy with every string under a password/secret/token key replaced by the mask. */
export function maskSecrets<T>(value: T): T {
  const walk = (v: unknown, key?: string): unknown => {
    if (Array.isArray(v)) return v.map((x) => walk(x))
    if (v !== null && typeof v === 'object') {
      return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x, k)]))
    }
    if (key !== undefined && SECRET_KEY_RE.test(key) && typeof v === 'string') return SECRET_MASK
    return v
  }
  return walk(value) as T
}

/** `hactl config show` as YAML: a header naming the file, nodes one per line. */
export function renderShownConfig(shown: ShownConfig, config: HactlConfig): string {
  const doc = new Document(shown)
  const endpoints = etcdEndpoints(config)
  doc.commentBefore = [
    ` Resolved from ${config.file}: defaults filled in, secrets masked.`,
    config.etcd.endpoints.length === 0
      ? ` etcd endpoints (derived from the etcd nodes): ${endpoints.length > 0 ? endpoints.join(', ') : 'none'}`
      : undefined,
  ]
    .filter((l): l is string => l !== undefined)
    .join('\n')
  const nodes = doc.get('nodes', true)
  if (isMap(nodes)) {
    for (const pair of nodes.items) if (isMap(pair.value)) pair.value.flow = true
  }
  // Short lists of words read best inline: identityFiles: [a], wipe: [member].
  for (const p of [
    ['ssh', 'identityFiles'],
    ['etcd', 'wipe'],
    ['etcd', 'endpoints'],
  ]) {
    const seq = doc.getIn(p, true)
    if (isSeq(seq)) seq.flow = true
  }
  return doc.toString({flowCollectionPadding: false, lineWidth: 0})
}
