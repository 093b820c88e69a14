import {existsSync, mkdirSync, readFileSync, renameSync, writeFileSync} from 'node:fs'
import path from 'node:path'
import {UserError} from '../errors.js'
import {hostDir, labDir, statePath} from './paths.js'
import type {LabHostKind, PlannedHost} from './plan.js'
import {assertLabName} from './plan.js'

export interface LabHostState extends PlannedHost {
  /** Per-host state directory (private /var/lib/etcd, /run, /var/log ... live under it). */
  dir: string
  /** The host's supervisor (its first process). */
  supervisorPid?: number
}

/** /var/lib/hactl-lab/<name>/state.json: everything `lab down` needs, also after a crash. */
export interface LabState {
  version: 1
  name: string
  status: 'starting' | 'up'
  createdAt: string
  subnet: string
  prefix: number
  bridge: string
  bridgeIp: string
  dir: string
  configPath: string
  /** How long a rebooting host stays down (ms). Hosts re-read it at each reboot. */
  rebootDelayMs: number
  discoveryService: string
  /** The discovery URL the etcd cluster bootstrapped from. */
  discoveryUrl?: string
  hosts: LabHostState[]
}

export function readState(name: string): LabState | undefined {
  const file = statePath(name)
  if (!existsSync(file)) return undefined
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as LabState
  } catch {
    return undefined
  }
}

export function writeState(state: LabState): void {
  const file = statePath(state.name)
  mkdirSync(path.dirname(file), {recursive: true})
  const tmp = `${file}.${process.pid}.tmp`
  writeFileSync(tmp, `${JSON.stringify(state, null, 2)}\n`)
  renameSync(tmp, file)
}

/** The state of a lab that is up, or a UserError that says how to start it. */
export function requireState(name: string): LabState {
  assertLabName(name)
  const state = readState(name)
  if (!state) {
    throw new UserError(`lab "${name}" is not up (no ${statePath(name)})`, [
      name === 'hactl' ? 'start it: sudo hactl lab up' : `start it: sudo hactl lab up --name ${name}`,
    ])
  }
  return state
}

export function findHost(state: LabState, node: string, kinds?: LabHostKind[]): LabHostState {
  const host = state.hosts.find((h) => h.name === node)
  const eligible = state.hosts.filter((h) => !kinds || kinds.includes(h.kind)).map((h) => h.name)
  if (!host || (kinds && !kinds.includes(host.kind))) {
    throw new UserError(`lab "${state.name}" has no ${kinds ? `${kinds.join(' or ')} ` : ''}host "${node}"`, [
      `use one of: ${eligible.join(', ')}`,
    ])
  }
  return host
}

export {hostDir, labDir}
