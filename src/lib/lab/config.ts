import {readFileSync} from 'node:fs'
import path from 'node:path'
import {configSchema, type HactlConfigInput} from '../config/schema.js'
import {HactlError} from '../errors.js'
import type {LabState} from './state.js'

/** The hactl.yaml of a lab: every host but the discovery service and the spares. */
export function labConfigObject(state: LabState): HactlConfigInput {
  const disc = state.hosts.find((h) => h.kind === 'discovery')
  const nodes: HactlConfigInput['nodes'] = {}
  for (const h of state.hosts) {
    if (h.kind === 'kamailio' || h.kind === 'asterisk') nodes[h.name] = {host: h.ip, roles: h.roles}
  }
  return {
    cluster: state.name,
    ssh: {
      user: 'root',
      identityFiles: [path.join(state.dir, 'id_ed25519')],
      knownHosts: path.join(state.dir, 'known_hosts'),
      strictHostKeyChecking: 'yes',
      useSshConfig: false,
      connectTimeout: '3s',
      commandTimeout: '30s',
    },
    etcd: {
      service: 'etcd2',
      dataDir: '/var/lib/etcd',
      wipe: ['member'],
      discovery: {
        format: 'cloud-config',
        file: '/var/lib/coreos-install/user_data',
        service: `http://${disc?.ip ?? state.bridgeIp}:8087`,
      },
    },
    asterisk: {cli: 'asterisk -rx', minInService: 1},
    kamailio: {cli: 'kamcmd', setId: 1, listFile: '/etc/kamailio/dispatcher.list'},
    nodes,
  }
}

export async function renderLabConfig(state: LabState): Promise<string> {
  const obj = labConfigObject(state)
  const check = configSchema.safeParse(obj)
  if (!check.success) {
    // The schema changed under the lab: a bug to fix here, not something a user can do about.
    throw new HactlError(
      `the lab's hactl.yaml does not match the config schema: ${check.error.issues[0]?.message ?? check.error.message}`,
    )
  }
  const {stringify} = await import('yaml')
  const spares = state.hosts.filter((h) => h.kind === 'spare')
  const disc = state.hosts.find((h) => h.kind === 'discovery')
  const header = [
    `# hactl.yaml of the local lab "${state.name}", written by \`hactl lab up\` on ${state.createdAt}.`,
    `# Remove the lab with: hactl lab down --name ${state.name}`,
    `# Not listed: the discovery service ${disc ? `(${disc.name}, ${disc.ip})` : ''}${spares.length > 0 ? ` and the spare hosts ${spares.map((s) => `${s.name} (${s.ip})`).join(', ')}` : ''}.`,
    '',
  ].join('\n')
  return `${header}${stringify(obj, {lineWidth: 0})}`
}

/** known_hosts lines (`IP TYPE KEY`) with each host's real ed25519 host key, as ssh-keyscan prints them. */
export function knownHostsText(state: LabState): string {
  const lines: string[] = []
  for (const h of state.hosts) {
    const pub = readFileSync(path.join(h.dir, 'ssh', 'ssh_host_ed25519_key.pub'), 'utf8')
      .trim()
      .split(/\s+/)
    lines.push(`${h.ip} ${pub[0]} ${pub[1]}`)
  }
  return `${lines.join('\n')}\n`
}
