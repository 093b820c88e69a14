import type {HactlConfig} from '../config/load.js'
import {sh} from '../ssh/quote.js'
import {parseProbeSections, probeSection, type ProbeSection} from './probe-sections.js'

/**
 * The read-only script the preflight of `hactl cluster rediscover` runs on each etcd host, and its
 * parser. Apart from rediscover.ts so that hactl's early start can send it before the rest loads.
 */

/** How the preflight runs: never a RemoteCommandError (each section has its exit status). */
export const PREFLIGHT_RUN = {check: false, timeoutName: 'ssh.commandTimeout'} as const

const MARK = '@@hactl-rediscover:'
export type Section = 'boot_id' | 'service' | 'discovery' | 'paths'

function section(name: Section, command: string): string {
  return probeSection(MARK, name, command)
}

/** The one read-only script a preflight runs on a host. */
export function buildPreflightScript(config: HactlConfig, wipe: string[]): string {
  const file = config.etcd.discovery.file
  return [
    section('boot_id', 'cat /proc/sys/kernel/random/boot_id'),
    section('service', sh`systemctl is-active ${config.etcd.service}`),
    // Exit 3: the file does not exist (not an error for an env file that will be created).
    // base64: the exact bytes (a missing final newline, say) survive the trip and the checksum.
    section('discovery', sh`if [ -e ${file} ]; then base64 < ${file}; else exit 3; fi`),
    // Each path as it resolves on the host (symlinks followed), so one that leads out of the data
    // dir stops the run here rather than at the wipe, after etcd was stopped everywhere.
    section(
      'paths',
      sh`printf 'data\t%s\n' "$(realpath -m -- ${config.etcd.dataDir})"; for p in ${wipe}; do if [ -e "$p" ] || [ -L "$p" ]; then s=present; else s=absent; fi; printf '%s\t%s\t%s\n' "$s" "$p" "$(realpath -m -- "$p")"; done`,
    ),
  ].join('\n')
}

export function parsePreflightOutput(stdout: string): Partial<Record<Section, ProbeSection>> {
  return parseProbeSections<Section>(stdout, MARK)
}
