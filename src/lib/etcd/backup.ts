import {createHash} from 'node:crypto'
import {mkdir, open, readFile, rename, rm, writeFile} from 'node:fs/promises'
import path from 'node:path'
import type {Etcd3, IKeyValue, IRequestOp, ICompare} from 'etcd3'
import {formatMs, HactlError} from '../errors.js'
import {hactlStateDir} from './discovery-service.js'

/**
 * Save an etcd keyspace before a rediscovery throws it away, and put it back afterwards.
 *
 * Two files per backup, under `<state dir>/backups/`:
 * - `CLUSTER-TIMESTAMP.db`: the member's snapshot (etcd3 maintenance snapshot), for `etcdctl
 *   snapshot restore` by hand. Its trailing SHA-256 is checked.
 * - `CLUSTER-TIMESTAMP.keys.json`: every key without a lease, as JSON. That is what `restoreKeys`
 *   puts back: keys with a lease belong to a live process that writes them again itself (locks,
 *   heartbeats), and their lease does not exist in the new cluster.
 */

/** The part of an `openEtcd` handle these functions use. */
export interface EtcdClientHandle {
  client: Etcd3
}

export interface DumpedKey {
  key: string
  value: string
  /** Absent: key and value are UTF-8 text. `base64`: both are base64 (binary data). */
  encoding?: 'base64'
}

export interface KeysDump {
  version: 1
  cluster: string
  takenAt: string
  /** The etcd revision the dump was read at (every page reads the same revision). */
  revision: string
  /** `serializable`: read from one member without a leader (the cluster had lost quorum). */
  consistency?: 'linearizable' | 'serializable'
  clusterId?: string
  /** Keys left out because they have a lease. */
  skippedLeased: number
  keys: DumpedKey[]
}

export interface BackupResult {
  snapshotPath: string
  snapshotBytes: number
  /** The snapshot's trailing SHA-256 matched its content. */
  snapshotVerified: boolean
  keysPath: string
  keys: number
  skippedLeased: number
  revision: string
}

export interface RestoreResult {
  /** Keys written. */
  restored: number
  /** Keys left alone because the new cluster already has them (written since it came up). */
  skippedExisting: number
}

export function backupsDir(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(hactlStateDir(env), 'backups')
}

/** `2024-05-01T101502Z`: sortable, no colons (file names). */
export function backupStamp(now: Date): string {
  return now
    .toISOString()
    .replace(/\.\d+Z$/, 'Z')
    .replace(/:/g, '')
}

/**
 * Snapshot and dump the keyspace. The dump goes first: it is what a restore needs, and it is small.
 * Files are written to a temporary name and renamed, so a path in the result is always complete.
 */
export async function backupEtcd(
  handle: EtcdClientHandle,
  opts: {cluster: string; dir?: string; now?: Date; timeoutMs?: number; signal?: AbortSignal},
): Promise<BackupResult> {
  const dir = opts.dir ?? backupsDir()
  await mkdir(dir, {recursive: true, mode: 0o700})
  const base = await freeBase(dir, `${opts.cluster}-${backupStamp(opts.now ?? new Date())}`)
  const keysPath = `${base}.keys.json`
  const snapshotPath = `${base}.db`
  let dump: KeysDump
  let snap: {bytes: number; verified: boolean}
  try {
    dump = await dumpKeys(handle, {cluster: opts.cluster, now: opts.now})
    opts.signal?.throwIfAborted()
    await writeAtomic(keysPath, `${JSON.stringify(dump, null, 1)}\n`)
    snap = await saveSnapshot(handle, snapshotPath, {
      timeoutMs: opts.timeoutMs ?? 60_000,
      signal: opts.signal,
    })
  } catch (error) {
    // Half a backup is worse than none: it looks like one.
    await rm(keysPath, {force: true})
    await rm(snapshotPath, {force: true})
    throw error
  }
  return {
    snapshotPath,
    snapshotBytes: snap.bytes,
    snapshotVerified: snap.verified,
    keysPath,
    keys: dump.keys.length,
    skippedLeased: dump.skippedLeased,
    revision: dump.revision,
  }
}

const ZERO = Buffer.from([0])

/** Every key without a lease, read page by page at one revision. */
export async function dumpKeys(
  handle: EtcdClientHandle,
  opts: {cluster: string; now?: Date; pageSize?: number},
): Promise<KeysDump> {
  const pageSize = opts.pageSize ?? 1000
  const keys: DumpedKey[] = []
  let skippedLeased = 0
  let revision: string | undefined
  let clusterId: string | undefined
  let from = ZERO
  let serializable = false
  for (;;) {
    const req = {key: from, range_end: ZERO, limit: pageSize, ...(revision === undefined ? {} : {revision})}
    let res
    try {
      res = await handle.client.kv.range({...req, serializable})
    } catch (error) {
      // A cluster that lost its way may have no leader: one member's own copy is the best there is.
      if (serializable || revision !== undefined) throw error
      serializable = true
      res = await handle.client.kv.range({...req, serializable})
    }
    revision ??= res.header.revision
    clusterId ??= res.header.cluster_id
    for (const kv of res.kvs) {
      if (!isNoLease(kv)) {
        skippedLeased++
        continue
      }
      keys.push(encodeKv(kv))
    }
    const last = res.kvs.at(-1)
    if (!res.more || !last) break
    // The next key after `last` in byte order.
    from = Buffer.concat([last.key, ZERO])
  }
  return {
    version: 1,
    cluster: opts.cluster,
    takenAt: (opts.now ?? new Date()).toISOString(),
    revision: revision ?? '0',
    consistency: serializable ? 'serializable' : 'linearizable',
    ...(clusterId === undefined ? {} : {clusterId}),
    skippedLeased,
    keys,
  }
}

function isNoLease(kv: IKeyValue): boolean {
  return kv.lease === undefined || kv.lease === null || String(kv.lease) === '0' || String(kv.lease) === ''
}

function isUtf8(b: Buffer): boolean {
  return Buffer.from(b.toString('utf8'), 'utf8').equals(b)
}

function encodeKv(kv: IKeyValue): DumpedKey {
  const value = kv.value ?? Buffer.alloc(0)
  if (isUtf8(kv.key) && isUtf8(value)) return {key: kv.key.toString('utf8'), value: value.toString('utf8')}
  return {key: kv.key.toString('base64'), value: value.toString('base64'), encoding: 'base64'}
}

function decodeKey(k: DumpedKey): {key: Buffer; value: Buffer} {
  const enc = k.encoding === 'base64' ? 'base64' : 'utf8'
  return {key: Buffer.from(k.key, enc), value: Buffer.from(k.value, enc)}
}

/**
 * Stream the member's snapshot to `file`. etcd ends the stream with the SHA-256 of the database;
 * a mismatch means a truncated or corrupted snapshot, which is an error.
 */
export async function saveSnapshot(
  handle: EtcdClientHandle,
  file: string,
  opts: {timeoutMs: number; signal?: AbortSignal},
): Promise<{bytes: number; verified: boolean}> {
  const tmp = `${file}.part`
  const fh = await open(tmp, 'w', 0o600)
  const hash = createHash('sha256')
  let bytes = 0
  // Keep the last 32 bytes back from the hash: they are the hash etcd appends.
  let tail = Buffer.alloc(0)
  try {
    const stream = await handle.client.maintenance.snapshot()
    await new Promise<void>((resolve, reject) => {
      let writing = Promise.resolve()
      const timer = setTimeout(
        () => reject(new HactlError(`etcd snapshot did not finish within ${formatMs(opts.timeoutMs)}`)),
        opts.timeoutMs,
      )
      const onAbort = () =>
        reject(opts.signal?.reason instanceof Error ? opts.signal.reason : new HactlError('interrupted'))
      opts.signal?.addEventListener('abort', onAbort, {once: true})
      const done = (err?: Error) => {
        clearTimeout(timer)
        opts.signal?.removeEventListener('abort', onAbort)
        if (err) reject(err)
        else writing.then(resolve, reject)
      }
      stream.on('data', (chunk) => {
        const blob = chunk.blob ?? Buffer.alloc(0)
        bytes += blob.length
        const all = Buffer.concat([tail, blob])
        const keep = Math.min(32, all.length)
        hash.update(all.subarray(0, all.length - keep))
        tail = Buffer.from(all.subarray(all.length - keep))
        writing = writing.then(async () => {
          await fh.write(blob)
        })
      })
      stream.on('error', (err) => done(new HactlError(`etcd snapshot failed: ${err.message}`, {cause: err})))
      stream.on('end', () => done())
    })
    await fh.sync()
  } catch (error) {
    await fh.close().catch(() => undefined)
    await rm(tmp, {force: true})
    throw error
  }
  await fh.close()
  if (bytes === 0) {
    await rm(tmp, {force: true})
    throw new HactlError('etcd snapshot was empty')
  }
  const verified = tail.length === 32 && hash.digest().equals(tail)
  if (!verified) {
    await rm(tmp, {force: true})
    throw new HactlError(
      `etcd snapshot failed its SHA-256 check (${bytes} bytes received): truncated or corrupted`,
    )
  }
  await rename(tmp, file)
  return {bytes, verified}
}

export async function readKeysDump(file: string): Promise<KeysDump> {
  let parsed: unknown
  try {
    parsed = JSON.parse(await readFile(file, 'utf8'))
  } catch (error) {
    throw new HactlError(`cannot read the keys dump ${file}: ${(error as Error).message}`)
  }
  const d = parsed as Partial<KeysDump>
  if (
    !d ||
    d.version !== 1 ||
    !Array.isArray(d.keys) ||
    d.keys.some((k) => typeof k?.key !== 'string' || typeof k?.value !== 'string')
  ) {
    throw new HactlError(`${file} is not a keys dump hactl wrote`)
  }
  return d as KeysDump
}

/**
 * Put dumped keys back. A key the new cluster already has was written since it came up (an agent
 * announcing itself again): it is newer than the dump and is left alone. Writes go in transactions
 * of up to `batch` keys, each guarded by "the key does not exist".
 */
export async function restoreKeys(
  handle: EtcdClientHandle,
  dump: KeysDump,
  opts: {batch?: number} = {},
): Promise<RestoreResult> {
  const batch = Math.max(1, Math.min(opts.batch ?? 100, 128))
  const wanted = dump.keys.map(decodeKey)
  const existing = new Set<string>()
  for (const k of await handle.client.getAll().all().keyBuffers()) existing.add(k.toString('base64'))
  const todo = wanted.filter((k) => !existing.has(k.key.toString('base64')))
  let restored = 0
  let skippedExisting = wanted.length - todo.length
  for (let i = 0; i < todo.length; i += batch) {
    const chunk = todo.slice(i, i + batch)
    const res = await handle.client.kv.txn({compare: chunk.map(absent), success: chunk.map(put), failure: []})
    if (res.succeeded) {
      restored += chunk.length
      continue
    }
    // Someone created one of these keys meanwhile: go key by key so the others still go in.
    for (const kv of chunk) {
      const one = await handle.client.kv.txn({compare: [absent(kv)], success: [put(kv)], failure: []})
      if (one.succeeded) restored++
      else skippedExisting++
    }
  }
  return {restored, skippedExisting}
}

function absent(kv: {key: Buffer}): ICompare {
  return {key: kv.key, target: 'Create', result: 'Equal', create_revision: 0}
}

function put(kv: {key: Buffer; value: Buffer}): IRequestOp {
  return {request_put: {key: kv.key, value: kv.value}}
}

async function writeAtomic(file: string, text: string): Promise<void> {
  const tmp = `${file}.part`
  await writeFile(tmp, text, {mode: 0o600})
  await rename(tmp, file)
}

async function freeBase(dir: string, name: string): Promise<string> {
  for (let i = 1; i < 100; i++) {
    const base = path.join(dir, i === 1 ? name : `${name}-${i}`)
    try {
      const fh = await open(`${base}.keys.json`, 'wx', 0o600)
      await fh.close()
      return base
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
    }
  }
  throw new HactlError(`too many backups named ${name} in ${dir}`)
}
