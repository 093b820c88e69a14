import type {Lease} from 'etcd3'
import {formatMs, HactlError} from '../errors.js'
import {localIdentity} from '../history.js'
import {hexId, withTimeout, type EtcdHandle} from './client.js'
import type {LockHolder} from './lock-schema.js'

/**
 * The cluster lock (issue 9): one key, created in a transaction only when it is missing, attached
 * to a lease. The value says who holds it, so a refused operator learns who and what; a crashed
 * holder's lock goes with its lease.
 */
export type {LockHolder} from './lock-schema.js'

export const DEFAULT_LOCK_TTL = 15

/** The holder record for this process: local user and host, pid, now. */
export function lockHolder(command: string, now: Date = new Date()): LockHolder {
  const id = localIdentity()
  return {user: id.user, host: id.host, command, pid: process.pid, since: now.toISOString()}
}

export interface AcquireLockOptions {
  /** The lock key, config `etcd.prefixes.lock`. */
  key: string
  holder: LockHolder
  /** Lease TTL: how long a crashed holder blocks others. Default 15 s. */
  ttlSeconds?: number
  /** Wait up to this long for the lock (`--wait-lock`); default: do not wait. */
  waitMs?: number
  /** How often to try again while waiting. Default 250 ms. */
  pollMs?: number
  /** Called once per holder seen while waiting (for a "waiting for ..." line). */
  onWait?: (holder: LockHolder | undefined, raw: string) => void
  /** The lease was lost while the lock was held (etcd unreachable longer than the TTL). */
  onLost?: (error: Error) => void
}

export interface ClusterLock {
  key: string
  holder: LockHolder
  /** Lease ID in hex. */
  leaseId: string
  /** True once the lease was lost: someone else may hold the lock now. */
  readonly lost: boolean
  /**
   * Revoke the lease (the key goes with it). Idempotent. Throws a HactlError when etcd does not
   * answer; the lock then expires by itself within the TTL.
   */
  release(): Promise<void>
}

/** Someone else holds the cluster lock. Exit 1. */
export class ClusterLockedError extends HactlError {
  readonly kind = 'locked'
  readonly holder?: LockHolder
  readonly raw: string

  constructor(message: string, opts: {holder?: LockHolder; raw: string; suggestions: string[]}) {
    super(message, {suggestions: opts.suggestions})
    this.holder = opts.holder
    this.raw = opts.raw
  }
}

/**
 * Take the cluster lock. Refuses at once with ClusterLockedError naming the holder, or, with
 * waitMs, keeps trying until the lock is free or the time is up. etcd errors come out as
 * EtcdUnreachableError (the caller decides whether to run without a lock).
 */
export async function acquireClusterLock(handle: EtcdHandle, opts: AcquireLockOptions): Promise<ClusterLock> {
  const ttl = opts.ttlSeconds ?? DEFAULT_LOCK_TTL
  const holder =
    plainHolder(opts.holder) ?? (await import('./lock-schema.js')).lockHolderSchema.parse(opts.holder)
  const value = JSON.stringify(holder)
  const waitMs = opts.waitMs ?? 0
  const pollMs = opts.pollMs ?? 250
  const deadline = Date.now() + waitMs
  const tooSlow = () => new Error(`no answer within ${formatMs(handle.timeoutMs)} (etcd.timeout)`)

  let lease: Lease | undefined
  let lastRaw: string | undefined
  try {
    for (;;) {
      if (!lease || lease.revoked()) {
        const l = handle.client.lease(ttl)
        lease = l
        // grant() rejects on failure; the 'lost' listener keeps an unlistened error from crashing us.
        l.on('lost', () => undefined)
        await handle.call('granting a lease for the cluster lock', () => l.grant())
      }
      const leaseId = await lease.grant()
      const res = await handle.call('taking the cluster lock', (c) =>
        c
          .if(opts.key, 'Create', '==', 0)
          .then(c.put(opts.key).value(value).lease(leaseId))
          .else(c.get(opts.key))
          .commit(),
      )
      if (res.succeeded) return heldLock(handle, opts, lease, leaseId, holder, ttl)

      const kv = res.responses[0]?.response_range?.kvs?.[0]
      const raw = kv ? kv.value.toString() : ''
      const [{lockHolderSchema}, {parseJson}] = await Promise.all([
        import('./lock-schema.js'),
        import('./maintenance.js'),
      ])
      const parsed = parseJson(raw, lockHolderSchema)
      const other = parsed.ok ? parsed.value : undefined
      if (Date.now() >= deadline) {
        throw lockedError(opts.key, other, raw, {waitedMs: waitMs, ttl})
      }
      if (raw !== lastRaw) {
        lastRaw = raw
        opts.onWait?.(other, raw)
      }
      await sleep(Math.min(pollMs, Math.max(0, deadline - Date.now())))
    }
  } catch (error) {
    // Not ours after all: give the lease back so it holds nothing.
    const l = lease
    if (l) await withTimeout(l.revoke(), handle.timeoutMs, tooSlow).catch(() => undefined)
    throw error
  }
}

/**
 * The holder exactly as lockHolderSchema would return it (same keys, same order), when it is
 * plainly valid; undefined otherwise, and the schema decides (and throws). This spares zod on the
 * way to the lock; a unit test checks it against the schema.
 */
export function plainHolder(h: {[K in keyof LockHolder]: unknown}): LockHolder | undefined {
  const {user, host, command, pid, since} = h
  if (typeof user !== 'string' || typeof host !== 'string' || typeof command !== 'string') return undefined
  if (typeof pid !== 'number' || !Number.isSafeInteger(pid) || typeof since !== 'string') return undefined
  return {user, host, command, pid, since}
}

function heldLock(
  handle: EtcdHandle,
  opts: AcquireLockOptions,
  lease: Lease,
  leaseId: string,
  holder: LockHolder,
  ttl: number,
): ClusterLock {
  let lost = false
  let released: Promise<void> | undefined
  lease.on('lost', (err) => {
    if (released) return
    lost = true
    opts.onLost?.(err)
  })
  const release = (): Promise<void> => {
    released ??= (async () => {
      unregister()
      try {
        await handle.call('releasing the cluster lock', () => lease.revoke())
      } catch (error) {
        throw new HactlError(
          `could not release the cluster lock ${opts.key}: ${(error as Error).message}; it expires by itself within ${ttl}s`,
          {cause: error},
        )
      }
    })()
    return released
  }
  const unregister = handle.onClose(() => release().catch(() => undefined))
  return {
    key: opts.key,
    holder,
    leaseId: hexId(leaseId),
    get lost() {
      return lost
    },
    release,
  }
}

function lockedError(
  key: string,
  holder: LockHolder | undefined,
  raw: string,
  ctx: {waitedMs: number; ttl: number},
): ClusterLockedError {
  const who = describeHolder(holder, raw)
  const message =
    ctx.waitedMs > 0
      ? `the cluster is still locked after waiting ${formatMs(ctx.waitedMs)} (--wait-lock): ${who}`
      : `the cluster is ${who}`
  const suggestions =
    ctx.waitedMs > 0
      ? [
          `wait longer: --wait-lock 15m, or ask ${holder ? `${holder.user}@${holder.host}` : 'the holder'} what is running`,
        ]
      : [
          'wait for it: run the command again with --wait-lock 5m',
          `if that run crashed, its lock expires by itself within ${ctx.ttl}s of the crash`,
        ]
  return new ClusterLockedError(message, {...(holder ? {holder} : {}), raw, suggestions})
}

/** `locked by alice@laptop since 12:03:04 running "hactl node drain ast3"` */
export function describeHolder(holder: LockHolder | undefined, raw = ''): string {
  if (!holder) return `locked by an unknown holder (key value: ${JSON.stringify(raw.slice(0, 200))})`
  return `locked by ${holder.user}@${holder.host} since ${clock(holder.since)} running ${JSON.stringify(holder.command)}`
}

/** HH:MM:SS local time; with the date when it is not today. */
function clock(iso: string, now = new Date()): string {
  const d = new Date(iso)
  if (Number.isNaN(d.getTime())) return iso
  const p = (n: number) => String(n).padStart(2, '0')
  const time = `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`
  const sameDay =
    d.getFullYear() === now.getFullYear() && d.getMonth() === now.getMonth() && d.getDate() === now.getDate()
  return sameDay ? time : `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${time}`
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
