import {HactlError, UserError} from '../errors.js'
import {findHost, requireState, type LabHostState} from './state.js'
import {supervisorRequest} from './supervisor.js'

export const LAB_FAULTS = ['sshd-down', 'sshd-hang', 'etcd-down', 'hostkey-change', 'asterisk-down'] as const
export type LabFault = (typeof LAB_FAULTS)[number]

export interface LabFaultResult {
  node: string
  fault: LabFault
  /** Every fault now in force on the host. */
  faults: string[]
}

export interface LabHealResult {
  hosts: Array<{node: string; healed: string[]}>
}

async function ask<T>(host: LabHostState, message: object): Promise<T> {
  let reply: {ok: boolean; error?: string} & T
  try {
    reply = await supervisorRequest<{ok: boolean; error?: string} & T>(host.dir, message, 120_000)
  } catch (error) {
    throw new HactlError(`${host.name}: the lab host does not answer (${(error as Error).message})`, {
      suggestions: ['see hactl lab status; a broken lab is rebuilt with hactl lab down && hactl lab up'],
    })
  }
  if (!reply.ok) throw new UserError(`${host.name}: ${reply.error ?? 'refused'}`)
  return reply
}

/** Break something on a lab host, for reliability tests. `hactl lab heal` undoes it. */
export async function labFault(opts: {name: string; node: string; fault: string}): Promise<LabFaultResult> {
  if (!(LAB_FAULTS as readonly string[]).includes(opts.fault)) {
    throw new UserError(`unknown fault "${opts.fault}"`, [`use one of: ${LAB_FAULTS.join(', ')}`])
  }
  const state = requireState(opts.name)
  const host = findHost(state, opts.node, ['kamailio', 'asterisk', 'spare'])
  if (opts.fault === 'etcd-down' && !host.etcd && host.kind !== 'asterisk' && host.kind !== 'spare') {
    throw new UserError(`${host.name} runs no etcd`, [
      `etcd runs on ${state.hosts
        .filter((h) => h.etcd)
        .map((h) => h.name)
        .join(', ')}`,
    ])
  }
  if (opts.fault === 'asterisk-down' && host.kind !== 'asterisk' && host.kind !== 'spare') {
    throw new UserError(`${host.name} runs no Asterisk`, [
      `Asterisk runs on ${state.hosts
        .filter((h) => h.kind === 'asterisk')
        .map((h) => h.name)
        .join(', ')}`,
    ])
  }
  const r = await ask<{faults: string[]}>(host, {op: 'fault', fault: opts.fault})
  return {node: host.name, fault: opts.fault as LabFault, faults: r.faults}
}

/** Undo every fault on a host (`all`: on every host): sshd back, original host key, services started. */
export async function labHeal(opts: {name: string; node: string}): Promise<LabHealResult> {
  const state = requireState(opts.name)
  const hosts = opts.node === 'all' ? state.hosts : [findHost(state, opts.node)]
  const out = await Promise.all(
    hosts.map(async (h) => {
      const r = await ask<{healed: string[]}>(h, {op: 'heal'})
      return {node: h.name, healed: r.healed}
    }),
  )
  return {hosts: out}
}
