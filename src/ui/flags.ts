import * as Flags from '@oclif/core/flags'

/** `--endpoints URL,...` of the agents (env HACTL_ETCD_ENDPOINTS). */
export const etcdEndpointsFlag = () =>
  Flags.string({
    summary: 'etcd client URLs, comma-separated (default: from hactl.yaml).',
    env: 'HACTL_ETCD_ENDPOINTS',
    helpValue: 'URL,...',
  })

/**
 * `--wait-lock DURATION`, shared by every command that takes the cluster lock: wait this long for
 * another run's lock instead of refusing at once.
 */
export const waitLockFlag = () =>
  Flags.custom<number>({
    summary: 'When another hactl run holds the cluster lock, wait this long for it (e.g. 5m) instead of refusing.',
    helpValue: 'DURATION',
    parse: async (input) => (await import('./drain-view.js')).parseTimeoutFlag(input, '--wait-lock'),
  })()
