import {isIP} from 'node:net'
import type {IKeyValue, Lease, Watcher} from 'etcd3'
import {z} from 'zod'
import {NODE_NAME_RE} from '../config/rules.js'
import {formatMs, HactlError, UserError} from '../errors.js'
import {hexId, translateEtcdError, withTimeout, type EtcdHandle} from './client.js'
import {parseJson, parseMarks, withSlash, type InvalidEntry, type MaintenanceMarks} from './maintenance.js'

/**
 * Service registrations (issue 7): one key per Asterisk box, `<prefix><name>` → JSON
 * `{ip, port?, weight?}`, attached to a lease so a dead box disappears on its own after the TTL.
 */
export const registrationValueSchema = z.object({
  ip: z.string().refine((s) => isIP(s) !== 0, 'expected an IP address'),
  port: z.number().int().min(1).max(65535).optional(),
  /** Dispatcher weight in percent. */
  weight: z.number().int().min(1).max(100).optional(),
})

export const DEFAULT_SIP_PORT = 5060
export const DEFAULT_REGISTRATION_TTL = 15

export interface Registration {
  name: string
  key: string
  ip: string
  /** 5060 when the value has none. */
  port: number
  weight?: number
  /** Lease ID in hex; undefined for a key without a lease (written by hand). */
  lease?: string
}

export type Registrations = Registration[] & {invalid: InvalidEntry[]}

/** Every registered box. A value that does not parse is listed in `.invalid`, not thrown. */
export async function listRegistrations(handle: EtcdHandle, prefix: string): Promise<Registrations> {
  const p = withSlash(prefix)
  const res = await handle.call('reading the Asterisk registrations', (c) => c.getAll().prefix(p).exec())
  return parseRegistrations(res.kvs, p)
}

/** Parse the key-values read under prefix. Pure; exported for tests. */
export function parseRegistrations(kvs: IKeyValue[], prefix: string): Registrations {
  const p = withSlash(prefix)
  const out = [] as unknown as Registrations
  out.invalid = []
  const sorted = [...kvs].sort((a, b) => a.key.toString().localeCompare(b.key.toString()))
  for (const kv of sorted) {
    const key = kv.key.toString()
    const raw = kv.value.toString()
    const name = key.slice(p.length)
    if (!NODE_NAME_RE.test(name)) {
      out.invalid.push({
        key,
        name,
        error: name.includes('/')
          ? 'not a registration key (nested path; the etcd v2 layout?)'
          : 'not a valid box name',
        raw: raw.slice(0, 200),
      })
      continue
    }
    const res = parseJson(raw, registrationValueSchema)
    if (!res.ok) {
      out.invalid.push({key, name, error: res.error, raw: raw.slice(0, 200)})
      continue
    }
    out.push({
      name,
      key,
      ip: res.value.ip,
      port: res.value.port ?? DEFAULT_SIP_PORT,
      ...(res.value.weight === undefined ? {} : {weight: res.value.weight}),
      ...(kv.lease && kv.lease !== '0' ? {lease: hexId(kv.lease)} : {}),
    })
  }
  return out
}

export type AnnounceEvent =
  | {type: 'registered'; message: string; key: string; leaseId: string; ttlSeconds: number}
  | {type: 'keepalive-failed'; message: string; error: string}
  | {type: 'keepalive-restored'; message: string}
  | {type: 'lease-lost'; message: string; error: string}
  | {type: 'retry'; message: string; error: string; inMs: number}
  | {type: 'stopped'; message: string; revoked: boolean; error?: string}

export interface AnnounceOptions {
  prefix: string
  name: string
  ip: string
  port?: number
  weight?: number
  /** Lease TTL; default 15 s. */
  ttlSeconds?: number
  /** One call per event; each has a one-line `message` for the agent's log. */
  onEvent?: (event: AnnounceEvent) => void
  /** Backoff between failed registration attempts. Default 250 ms doubling up to 5 s. */
  retry?: {minMs: number; maxMs: number}
}

export interface Announcement {
  readonly key: string
  /** True while the key is (as far as we know) in etcd under a live lease. */
  readonly registered: boolean
  /** The current lease in hex. */
  readonly leaseId: string | undefined
  /** Resolves once registered (at once if it is); rejects after timeoutMs or on stop. */
  whenRegistered(timeoutMs?: number): Promise<void>
  /** Revoke the lease: the key leaves etcd at once. Never throws; see the `stopped` event. */
  stop(): Promise<void>
  /** Stop the keep-alives without revoking, as a crash would: the key goes when the TTL runs out. */
  abandon(): void
}

/**
 * Announce a box and keep it announced: keeps the lease alive, and when the lease is lost (etcd
 * was down longer than the TTL, or came back without it) grants a new one and writes the key
 * again, retrying with backoff until etcd answers. Returns at once; nothing here throws after
 * the options are checked.
 */
export function announce(handle: EtcdHandle, opts: AnnounceOptions): Announcement {
  if (!NODE_NAME_RE.test(opts.name))
    throw new UserError(`not a valid box name: ${JSON.stringify(opts.name)}`, [
      'use lower-case letters, digits and "-"',
    ])
  const ttl = opts.ttlSeconds ?? DEFAULT_REGISTRATION_TTL
  if (!Number.isInteger(ttl) || ttl < 1)
    throw new UserError(`the TTL must be a whole number of seconds, at least 1 (got ${ttl})`)
  const value = registrationValueSchema.safeParse({
    ip: opts.ip,
    ...(opts.port === undefined ? {} : {port: opts.port}),
    ...(opts.weight === undefined ? {} : {weight: opts.weight}),
  })
  if (!value.success) {
    const issue = value.error.issues[0]
    throw new UserError(
      `invalid registration for ${opts.name}: ${issue ? `${issue.path.join('.')}: ${issue.message}` : 'invalid'}`,
    )
  }
  const key = withSlash(opts.prefix) + opts.name
  const json = JSON.stringify(value.data)
  const emit = (e: AnnounceEvent) => {
    try {
      opts.onEvent?.(e)
    } catch {
      // A logging callback must not kill the registration.
    }
  }
  const minMs = opts.retry?.minMs ?? 250
  const maxMs = opts.retry?.maxMs ?? 5000
  const timeoutMs = handle.timeoutMs

  let stopped = false
  let current: Lease | undefined
  let registered = false
  let leaseId: string | undefined
  let delay = minMs
  let retryTimer: NodeJS.Timeout | undefined
  const waiters = new Set<{resolve: () => void; reject: (e: Error) => void}>()

  const schedule = (ms: number) => {
    if (stopped || retryTimer) return
    retryTimer = setTimeout(() => {
      retryTimer = undefined
      void register()
    }, ms)
  }

  async function register(): Promise<void> {
    if (stopped) return
    const lease = handle.client.lease(ttl)
    current = lease
    let live = false
    let failing = false
    lease.on('lost', (err) => {
      if (lease !== current || stopped || !live) return
      current = undefined
      registered = false
      leaseId = undefined
      emit({
        type: 'lease-lost',
        message: `lease lost for ${key}: ${short(err)}; registering again`,
        error: short(err),
      })
      schedule(0)
    })
    lease.on('keepaliveFailed', (err) => {
      if (lease !== current || stopped || failing) return
      failing = true
      emit({
        type: 'keepalive-failed',
        message: `keep-alive for ${key} failed: ${short(err)}; retrying`,
        error: short(err),
      })
    })
    lease.on('keepaliveSucceeded', () => {
      if (lease !== current || stopped || !failing) return
      failing = false
      emit({type: 'keepalive-restored', message: `keep-alive for ${key} works again`})
    })
    try {
      const tooSlow = () => new Error(`no answer within ${formatMs(timeoutMs)} (etcd.timeout)`)
      const id = await withTimeout(lease.grant(), timeoutMs, tooSlow)
      await withTimeout(lease.put(key).value(json).exec(), timeoutMs, tooSlow)
      if (lease !== current || stopped) return
      live = true
      registered = true
      leaseId = hexId(id)
      delay = minMs
      emit({
        type: 'registered',
        message: `registered ${key} = ${json} with lease ${leaseId} (TTL ${ttl}s)`,
        key,
        leaseId,
        ttlSeconds: ttl,
      })
      for (const w of waiters) w.resolve()
      waiters.clear()
    } catch (error) {
      // revoke() also stops the keep-alive of a grant that answers after we gave up on it.
      lease.revoke().catch(() => undefined)
      if (lease !== current || stopped) return
      current = undefined
      const wait = delay
      delay = Math.min(maxMs, delay * 2)
      const detail = translateEtcdError(error, {
        endpoints: handle.endpoints,
        what: `registering ${key}`,
        via: handle.via,
      }).message
      emit({
        type: 'retry',
        message: `cannot register ${key}: ${detail}; retrying in ${formatMs(wait)}`,
        error: detail,
        inMs: wait,
      })
      schedule(wait)
    }
  }

  const stop = async (): Promise<void> => {
    if (stopped) return
    stopped = true
    unregisterClose()
    if (retryTimer) clearTimeout(retryTimer)
    for (const w of waiters)
      w.reject(new HactlError(`registration of ${key} stopped before it was registered`))
    waiters.clear()
    const lease = current
    current = undefined
    registered = false
    if (!lease) {
      emit({type: 'stopped', message: `stopped; ${key} was not registered`, revoked: false})
      return
    }
    try {
      await withTimeout(
        lease.revoke(),
        timeoutMs,
        () => new Error(`no answer within ${formatMs(timeoutMs)} (etcd.timeout)`),
      )
      emit({type: 'stopped', message: `revoked the lease of ${key}; it left etcd`, revoked: true})
    } catch (error) {
      emit({
        type: 'stopped',
        message: `could not revoke the lease of ${key} (${short(error)}); it expires within ${ttl}s`,
        revoked: false,
        error: short(error),
      })
    }
  }

  const unregisterClose = handle.onClose(stop)
  void register()

  return {
    key,
    get registered() {
      return registered
    },
    get leaseId() {
      return leaseId
    },
    whenRegistered(ms?: number) {
      if (registered) return Promise.resolve()
      if (stopped) return Promise.reject(new HactlError(`registration of ${key} is stopped`))
      return new Promise<void>((resolve, reject) => {
        let timer: NodeJS.Timeout | undefined
        const w = {
          resolve: () => {
            if (timer) clearTimeout(timer)
            resolve()
          },
          reject: (e: Error) => {
            if (timer) clearTimeout(timer)
            reject(e)
          },
        }
        waiters.add(w)
        if (ms !== undefined) {
          timer = setTimeout(() => {
            waiters.delete(w)
            reject(new HactlError(`${key} was not registered within ${formatMs(ms)}`))
          }, ms)
        }
      })
    },
    stop,
    abandon() {
      if (stopped) return
      stopped = true
      unregisterClose()
      if (retryTimer) clearTimeout(retryTimer)
      for (const w of waiters) w.reject(new HactlError(`registration of ${key} abandoned`))
      waiters.clear()
      current?.release()
      current = undefined
      registered = false
    },
  }
}

export interface RegistrationSnapshot {
  registrations: Registrations
  marks: MaintenanceMarks
  /** The etcd revision the snapshot was read at. */
  revision: string
}

export type WatchEvent =
  | {type: 'connected'; message: string}
  | {type: 'disconnected'; message: string; error: string}
  | {type: 'error'; message: string; error: string; retryInMs?: number}

export interface WatchRegistrationsOptions {
  /** [registrations prefix, maintenance prefix], e.g. [prefixes.asterisk, prefixes.maintenance]. */
  prefixes: readonly [asterisk: string, maintenance: string]
  /**
   * Called with the whole state: first when it has been read, then after every change (bursts
   * within debounceMs coalesce). Not called when a re-read finds nothing changed. Calls never overlap.
   */
  onChange: (
    snapshot: RegistrationSnapshot,
    reason: 'initial' | 'change' | 'reconnect',
  ) => void | Promise<void>
  onEvent?: (event: WatchEvent) => void
  debounceMs?: number
  retry?: {minMs: number; maxMs: number}
}

export interface RegistrationWatch {
  /** Read again now (e.g. on SIGHUP). */
  refresh(): Promise<void>
  stop(): Promise<void>
}

/** Read both prefixes at one revision. */
export async function readRegistrationSnapshot(
  handle: EtcdHandle,
  prefixes: readonly [string, string],
): Promise<RegistrationSnapshot> {
  const [ap, mp] = [withSlash(prefixes[0]), withSlash(prefixes[1])]
  const res = await handle.call('reading registrations and maintenance marks', (c) =>
    c.kv.txn({
      compare: [],
      success: [ap, mp].map((p) => ({request_range: {key: Buffer.from(p), range_end: prefixRangeEnd(p)}})),
      failure: [],
    }),
  )
  const kvs = (i: number): IKeyValue[] => res.responses[i]?.response_range?.kvs ?? []
  const markKvs: Record<string, string> = {}
  for (const kv of kvs(1)) markKvs[kv.key.toString()] = kv.value.toString()
  return {
    registrations: parseRegistrations(kvs(0), ap),
    marks: parseMarks(markKvs, mp),
    revision: res.header.revision,
  }
}

/**
 * Watch registrations and maintenance marks; hands `onChange` the whole state whenever it changes.
 * Survives etcd outages: the watch reconnects, the state is read again on reconnect, and a
 * failed read is retried with backoff. Nothing here throws after start.
 */
export async function watchRegistrations(
  handle: EtcdHandle,
  opts: WatchRegistrationsOptions,
): Promise<RegistrationWatch> {
  const prefixes = [withSlash(opts.prefixes[0]), withSlash(opts.prefixes[1])] as const
  const debounceMs = opts.debounceMs ?? 50
  const minMs = opts.retry?.minMs ?? 250
  const maxMs = opts.retry?.maxMs ?? 5000
  const emit = (e: WatchEvent) => {
    try {
      opts.onEvent?.(e)
    } catch {
      // A logging callback must not stop the watch.
    }
  }

  let stopped = false
  let watchers: Watcher[] = []
  let lastState: string | undefined
  let delay = minMs
  let retryTimer: NodeJS.Timeout | undefined
  let debounceTimer: NodeJS.Timeout | undefined
  let running: Promise<void> | undefined
  let pending: 'change' | 'reconnect' | undefined
  let connected = false
  let snapshotRevision: bigint | undefined

  const refresh = (reason: 'initial' | 'change' | 'reconnect'): Promise<void> => {
    if (stopped) return Promise.resolve()
    if (running) {
      pending = pending === 'reconnect' || reason === 'reconnect' ? 'reconnect' : 'change'
      return running
    }
    running = (async () => {
      let r: typeof reason | undefined = reason
      while (r && !stopped) {
        pending = undefined
        try {
          const snap = await readRegistrationSnapshot(handle, prefixes)
          if (stopped) return
          delay = minMs
          ensureWatching(snap.revision)
          const state = JSON.stringify({
            r: [...snap.registrations],
            ri: snap.registrations.invalid,
            m: [...snap.marks],
            mi: snap.marks.invalid,
          })
          if (state !== lastState) {
            try {
              await opts.onChange(snap, lastState === undefined ? 'initial' : r)
            } catch (error) {
              throw new Error(`the change handler failed: ${short(error)}`)
            }
            lastState = state
          }
        } catch (error) {
          if (stopped) return
          const wait = delay
          delay = Math.min(maxMs, delay * 2)
          const what = String((error as Error)?.message).startsWith('the change handler failed')
            ? short(error)
            : `cannot read registrations: ${short(error)}`
          emit({
            type: 'error',
            message: `${what}; retrying in ${formatMs(wait)}`,
            error: short(error),
            retryInMs: wait,
          })
          if (!retryTimer) {
            retryTimer = setTimeout(() => {
              retryTimer = undefined
              void refresh(lastState === undefined ? 'initial' : 'reconnect')
            }, wait)
          }
        }
        r = pending
      }
    })().finally(() => {
      running = undefined
    })
    return running
  }

  const onData = () => {
    if (stopped || debounceTimer) return
    debounceTimer = setTimeout(() => {
      debounceTimer = undefined
      void refresh('change')
    }, debounceMs)
  }

  function ensureWatching(revision: string): void {
    const rev = BigInt(revision)
    // A cluster that came back with less history (data wiped, rediscovered) would leave a watch
    // waiting for revisions that come much later: start again from what is there now.
    const wentBack = snapshotRevision !== undefined && rev < snapshotRevision
    if (snapshotRevision === undefined || rev > snapshotRevision || wentBack) snapshotRevision = rev
    if (watchers.length > 0 && !wentBack) return
    const from = rev + 1n
    const old = watchers
    watchers = []
    for (const w of old) void w.cancel().catch(() => undefined)
    for (const p of prefixes) {
      const w = handle.client.watch().prefix(p).startRevision(from.toString()).watcher()
      let seenConnect = false
      w.on('put', onData)
      w.on('delete', onData)
      w.on('connected', () => {
        if (!connected) {
          connected = true
          emit({type: 'connected', message: 'watching registrations and maintenance marks'})
        }
        if (seenConnect) void refresh('reconnect')
        seenConnect = true
      })
      w.on('disconnected', (err) => {
        if (stopped) return
        if (connected) {
          connected = false
          emit({
            type: 'disconnected',
            message: `watch disconnected: ${short(err)}; reconnecting`,
            error: short(err),
          })
        }
      })
      w.on('error', (err) => {
        if (stopped) return
        // The server cancelled the watch (e.g. its revision was compacted): start over.
        emit({type: 'error', message: `watch cancelled: ${short(err)}; starting again`, error: short(err)})
        watchers = watchers.filter((x) => x !== w)
        for (const x of watchers) void x.cancel().catch(() => undefined)
        watchers = []
        void refresh('reconnect')
      })
      watchers.push(w)
    }
  }

  const stop = async (): Promise<void> => {
    if (stopped) return
    stopped = true
    unregisterClose()
    if (retryTimer) clearTimeout(retryTimer)
    if (debounceTimer) clearTimeout(debounceTimer)
    const ws = watchers
    watchers = []
    await Promise.all(
      ws.map((w) =>
        withTimeout(w.cancel(), handle.timeoutMs, () => new Error('cancel timed out')).catch(() => undefined),
      ),
    )
  }
  const unregisterClose = handle.onClose(stop)

  void refresh('initial')
  return {refresh: () => refresh('change'), stop}
}

/** The end of the key range holding every key that starts with prefix. */
export function prefixRangeEnd(prefix: string): Buffer {
  const end = Buffer.from(prefix)
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i] = end[i]! + 1
      return end.subarray(0, i + 1)
    }
  }
  return Buffer.from([0])
}

function short(error: unknown): string {
  const msg = error instanceof Error ? error.message : String(error)
  return msg
    .replace(/ \(\d{4}-\d\d-\d\dT[^)]*\)/g, '')
    .split('\n')[0]!
    .trim()
}
