import type {HactlConfig, ResolvedNode} from '../config/load.js'
import {shellQuote} from '../ssh/quote.js'
import {parseProbeSections, probeSection, type ProbeSection} from './probe-sections.js'

/**
 * The one remote script `hactl status` runs on a host: it collects every fact the status needs
 * from that host in a single SSH round trip. Each fact is printed in a section opened by a marker
 * line and closed by the exit status of the command that produced it, so one failing probe never
 * hides the others.
 */
export const MARK = '@@hactl:'

export type SectionName = 'boot_id' | 'uptime' | 'asterisk' | 'dispatcher' | 'etcd_service' | 'discovery'

export type {ProbeSection} from './probe-sections.js'

/** How the probe runs: never a RemoteCommandError (each section has its exit status). */
export const STATUS_PROBE_RUN = {check: false, timeoutName: 'ssh.commandTimeout'} as const

export function buildStatusProbe(config: HactlConfig, node: ResolvedNode): string {
  const parts: string[] = [
    section('boot_id', 'cat /proc/sys/kernel/random/boot_id'),
    section('uptime', 'cat /proc/uptime'),
  ]
  if (node.roles.includes('asterisk')) {
    parts.push(section('asterisk', `${config.asterisk.cli} ${shellQuote('core show channels count')}`))
  }
  if (node.roles.includes('kamailio')) {
    parts.push(section('dispatcher', `${config.kamailio.cli} dispatcher.list`))
  }
  if (node.roles.includes('etcd')) {
    parts.push(section('etcd_service', `systemctl is-active ${shellQuote(config.etcd.service)}`))
    parts.push(section('discovery', `cat ${shellQuote(config.etcd.discovery.file)}`))
  }
  return parts.join('\n')
}

function section(name: SectionName, command: string): string {
  return probeSection(MARK, name, command)
}

/** Split the probe's output back into its sections (trailing blank lines dropped). */
export function parseStatusProbe(stdout: string): Partial<Record<SectionName, ProbeSection>> {
  const out = parseProbeSections<SectionName>(stdout, MARK)
  for (const sec of Object.values(out)) sec.output = sec.output.replace(/\n+$/, '')
  return out
}
