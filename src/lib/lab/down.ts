import {existsSync, readdirSync, rmSync, rmdirSync, statSync} from 'node:fs'
import path from 'node:path'
import {HactlError} from '../errors.js'
import {readPlaceholders} from './files.js'
import {LAB_ROOT, labDir, PLACEHOLDERS_FILE} from './paths.js'
import {assertLabName} from './plan.js'
import {readState} from './state.js'
import {
  assertLabPrerequisites,
  linkExists,
  listLinks,
  listNetns,
  mountsUnder,
  pidsInNetns,
  pidAlive,
  pidsMentioning,
  run,
  sleep,
} from './system.js'

export interface LabDownResult {
  name: string
  /** False when there was nothing left of the lab. */
  found: boolean
  killed: number
  namespaces: string[]
  links: string[]
  removedDir: boolean
  /** Mount points the lab had created on this machine and removed (the last lab only). */
  removedPlaceholders: string[]
}

/**
 * Remove a lab: every process in its namespaces (and any that lost its namespace but still names
 * the lab's directory), the namespaces, the bridge and links, its mounts and its directory. Works
 * from state.json and, after a crash, from the `<name>-` namespaces and links alone. Idempotent.
 */
export async function labDown(opts: {name: string; log?: (line: string) => void}): Promise<LabDownResult> {
  const {name} = opts
  assertLabName(name)
  assertLabPrerequisites('lab down')
  const dir = labDir(name)
  const state = readState(name)
  const prefix = `${name}-`
  const namespaces = [
    ...new Set([
      ...(state?.hosts.map((h) => h.ns) ?? []),
      ...(await listNetns()).filter((n) => n.startsWith(prefix)),
    ]),
  ]
  const existingNs = new Set(await listNetns())

  const t0 = Date.now()
  const step = (what: string) => opts.log?.(`${what} (${Date.now() - t0} ms)`)
  // 1. Processes: whatever runs in the lab's namespaces, plus strays that still name its directory.
  const pids = new Set<number>()
  for (const pid of pidsInNetns(namespaces.filter((ns) => existingNs.has(ns)))) pids.add(pid)
  for (const pid of pidsMentioning(dir)) pids.add(pid)
  pids.delete(process.pid)
  let killed = 0
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL')
      killed++
    } catch {
      // already gone
    }
  }
  for (let i = 0; i < 100 && [...pids].some(pidAlive); i++) await sleep(50)
  const survivors = [...pids].filter(pidAlive)
  if (survivors.length > 0)
    throw new HactlError(`lab ${name}: processes ${survivors.join(', ')} did not die after SIGKILL`)

  step(`killed ${killed} processes`)
  // 2. Namespaces, then links (a namespace takes its end of each veth with it).
  const gone: string[] = []
  const nsToDelete = namespaces.filter((ns) => existingNs.has(ns))
  if (nsToDelete.length > 0) {
    await run('ip', ['-force', '-batch', '-'], {
      input: `${nsToDelete.map((ns) => `netns del ${ns}`).join('\n')}\n`,
    })
    gone.push(...nsToDelete)
  }
  const links: string[] = []
  const bridge = state?.bridge ?? `${name}-br`
  for (let i = 0; i < 20; i++) {
    const left = (await listLinks()).filter((l) => l === bridge || l.startsWith(prefix))
    if (left.length === 0) break
    for (const l of left) {
      const r = await run('ip', ['link', 'del', l])
      if (r.code === 0 && !links.includes(l)) links.push(l)
    }
    await sleep(50)
  }
  if (await linkExists(bridge)) throw new HactlError(`lab ${name}: cannot delete the bridge ${bridge}`)

  step(`removed ${gone.length} namespaces and ${links.length} links`)
  // 3. Mounts under the lab's directory in this namespace (none, normally: hosts mount privately).
  for (const mp of mountsUnder(dir).reverse()) await run('umount', ['-l', mp])

  // 4. Files.
  const hadDir = existsSync(dir)
  if (hadDir) rmSync(dir, {recursive: true, force: true})

  step('removed the files')
  // 5. Mount points made for the hosts, once no lab is left to use them.
  const removedPlaceholders: string[] = []
  if (otherLabs().length === 0) {
    for (const p of readPlaceholders()) {
      try {
        const st = statSync(p.path)
        if (p.type === 'dir' && st.isDirectory() && readdirSync(p.path).length === 0) rmdirSync(p.path)
        else if (p.type === 'file' && st.isFile() && st.size === 0) rmSync(p.path)
        else continue
        removedPlaceholders.push(p.path)
      } catch {
        // already gone
      }
    }
    rmSync(PLACEHOLDERS_FILE, {force: true})
    try {
      if (readdirSync(LAB_ROOT).length === 0) rmdirSync(LAB_ROOT)
    } catch {
      // not there
    }
  }
  return {
    name,
    found: Boolean(state) || gone.length > 0 || links.length > 0 || hadDir || killed > 0,
    killed,
    namespaces: gone,
    links,
    removedDir: hadDir,
    removedPlaceholders,
  }
}

/** Names of the labs that still have a directory. */
export function otherLabs(): string[] {
  try {
    return readdirSync(LAB_ROOT).filter((e) => {
      try {
        return statSync(path.join(LAB_ROOT, e)).isDirectory()
      } catch {
        return false
      }
    })
  } catch {
    return []
  }
}
