import type {RenderedDispatcherList} from '../dispatcher/render.js'
import type {RegistrationSnapshot} from '../etcd/registrations.js'
import {openAgentEtcd, type AgentEtcdOptions} from './announce.js'
import {DispatcherLoop, systemClock, type AgentClock, type ReloadAnswer} from './agent-loop.js'
import {errorText, type AgentLog} from './log.js'

/**
 * `hactl agent dispatcher`: the long-running process on a Kamailio host. It watches the
 * registrations and maintenance marks in etcd and keeps `dispatcher.list` rendered from them,
 * reloading Kamailio when (and only when) the file changed. The loop itself is `DispatcherLoop`;
 * this file wires it to etcd, the file system and the reload command.
 */

export interface DispatcherAgentOptions extends AgentEtcdOptions {
  listFile: string
  setId: number
  /** Run through `/bin/sh -c`; default `kamcmd dispatcher.reload`. */
  reloadCommand: string
  prefix: string
  maintenancePrefix: string
  /** Seconds between full re-reads of etcd and the file; 0: never. Default 30. */
  resyncSeconds?: number
  log: AgentLog
  signal: AbortSignal
  /** Test seams. */
  clock?: AgentClock
  reloadDeltaMs?: number
}

export interface DispatcherAgentIo {
  readFile(file: string): Promise<string | undefined>
  writeFile(file: string, text: string): Promise<{atomic: boolean}>
  run(command: string): Promise<ReloadAnswer>
}

/** The one line the agent logs about the state it renders from. */
export function describeSnapshot(snap: Pick<RegistrationSnapshot, 'registrations' | 'marks'>): string {
  const boxes = snap.registrations.map((r) => r.name)
  const marks = snap.marks.map((m) => `${m.node} (${m.state})`)
  return `${boxes.length} box(es)${boxes.length > 0 ? `: ${boxes.join(' ')}` : ''}${marks.length > 0 ? `; maintenance: ${marks.join(', ')}` : ''}`
}

/** Render our set from one snapshot (the registrations' parsed fields, the marks as they are). */
export async function renderSnapshot(
  snap: Pick<RegistrationSnapshot, 'registrations' | 'marks'>,
  setId: number,
): Promise<RenderedDispatcherList> {
  const {renderDispatcherList} = await import('../dispatcher/render.js')
  return renderDispatcherList(
    snap.registrations.map((r) => ({
      name: r.name,
      ip: r.ip,
      port: r.port,
      ...(r.weight === undefined ? {} : {weight: r.weight}),
    })),
    [...snap.marks],
    {setId},
  )
}

/**
 * Run the agent until `signal` aborts. Resolves after the watch is cancelled and a render in
 * progress has finished; a reload not yet started is dropped (Kamailio reads the file when it starts).
 */
export async function runDispatcherAgent(
  opts: DispatcherAgentOptions,
  io?: DispatcherAgentIo,
): Promise<void> {
  const local = io ?? (await defaultIo())
  const {watchRegistrations} = await import('../etcd/registrations.js')
  if (opts.signal.aborted) return
  const handle = await openAgentEtcd(opts)
  const log = opts.log
  let snapshot: RegistrationSnapshot | undefined
  let lastWarnings = new Set<string>()
  let warnedNotAtomic = false

  const loop = new DispatcherLoop(
    {
      async wanted() {
        if (!snapshot) throw new Error('no registrations read yet')
        const rendered = await renderSnapshot(snapshot, opts.setId)
        const invalid = [...snapshot.registrations.invalid, ...snapshot.marks.invalid].map(
          (i) => `ignored ${i.key}: ${i.error}`,
        )
        const warnings = new Set([...rendered.warnings, ...invalid])
        // Warnings repeat on every render: log each when it appears, not every time.
        for (const w of warnings) if (!lastWarnings.has(w)) log('warning', w)
        lastWarnings = warnings
        return rendered.text
      },
      readFile: () => local.readFile(opts.listFile),
      async writeFile(text) {
        const r = await local.writeFile(opts.listFile, text)
        if (!r.atomic && !warnedNotAtomic) {
          warnedNotAtomic = true
          log(
            'warning',
            `${opts.listFile} is a mount point and cannot be renamed over: rewriting it in place (mount its directory instead)`,
          )
        }
      },
      reload: () => local.run(opts.reloadCommand),
      clock: opts.clock ?? systemClock,
      log,
    },
    {
      listFile: opts.listFile,
      setId: opts.setId,
      resyncMs: (opts.resyncSeconds ?? 30) * 1000,
      ...(opts.reloadDeltaMs === undefined ? {} : {reloadDeltaMs: opts.reloadDeltaMs}),
    },
  )

  log(
    'starting',
    `dispatcher set ${opts.setId} -> ${opts.listFile} from ${opts.prefix} and ${opts.maintenancePrefix} via ${handle.endpoints.join(',')}; reload: ${opts.reloadCommand}`,
  )
  let started = false
  let resync: NodeJS.Timeout | undefined
  try {
    const watch = await watchRegistrations(handle, {
      prefixes: [opts.prefix, opts.maintenancePrefix],
      onChange: (snap, reason) => {
        snapshot = snap
        log('state', `${describeSnapshot(snap)} (${reason}, revision ${snap.revision})`)
        if (!started) {
          started = true
          loop.start()
        } else loop.changed()
      },
      onEvent: (e) => log(`watch-${e.type}`, e.message),
    })
    // The watch re-reads on reconnect; this catches what a lost event would otherwise hide.
    const every = (opts.resyncSeconds ?? 30) * 1000
    if (every > 0) {
      resync = setInterval(() => {
        watch.refresh().catch((error: unknown) => log('watch-error', errorText(error)))
      }, every)
    }
    await new Promise<void>((resolve) => {
      if (opts.signal.aborted) resolve()
      else opts.signal.addEventListener('abort', () => resolve(), {once: true})
    })
    log('stopping', typeof opts.signal.reason === 'string' ? opts.signal.reason : 'stop requested')
    if (resync) clearInterval(resync)
    await watch.stop()
    await loop.stop()
    log('stopped', `${loop.stats.writes} write(s), ${loop.stats.reloads} reload(s)`)
  } finally {
    if (resync) clearInterval(resync)
    await loop.stop()
    await handle.close()
  }
}

async function defaultIo(): Promise<DispatcherAgentIo> {
  const {readTextIfExists, writeFileAtomic, runLocalCommand} = await import('./local-io.js')
  return {readFile: readTextIfExists, writeFile: writeFileAtomic, run: (c) => runLocalCommand(c)}
}
