import {spawn} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {chmod, chown, open, readFile, rename, rm, stat, writeFile} from 'node:fs/promises'
import path from 'node:path'
import type {ReloadAnswer} from './agent-loop.js'

/** A file's text, or undefined when it does not exist. */
export async function readTextIfExists(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw error
  }
}

export interface AtomicWriteResult {
  /** False when the file is a mount point (a bind-mounted file cannot be renamed over). */
  atomic: boolean
}

/**
 * Replace `file` with `text` so a reader (Kamailio's reload) sees the old file or the new one, never
 * half of one: write a temporary file in the same directory, flush it, give it the old file's mode
 * and owner, rename it over. A file that is itself a mount point (a container bind-mounting just
 * that file) cannot be renamed over (EBUSY): then it is rewritten in place and the caller told.
 */
export async function writeFileAtomic(file: string, text: string): Promise<AtomicWriteResult> {
  const dir = path.dirname(file)
  const tmp = path.join(dir, `.${path.basename(file)}.hactl-${process.pid}-${randomBytes(4).toString('hex')}`)
  const old = await stat(file).catch(() => undefined)
  const fh = await open(tmp, 'wx', old ? old.mode & 0o7777 : 0o644)
  try {
    try {
      await fh.writeFile(text, 'utf8')
      await fh.sync()
    } finally {
      await fh.close()
    }
    if (old) {
      await chmod(tmp, old.mode & 0o7777)
      if (process.getuid?.() === 0) await chown(tmp, old.uid, old.gid).catch(() => undefined)
    }
    try {
      await rename(tmp, file)
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code
      if (code !== 'EBUSY' && code !== 'EXDEV') throw error
      await writeFile(file, text, 'utf8')
      await rm(tmp, {force: true})
      return {atomic: false}
    }
  } catch (error) {
    await rm(tmp, {force: true}).catch(() => undefined)
    throw error
  }
  // Make the rename itself durable; best effort (not every filesystem allows fsync on a directory).
  const dh = await open(dir, 'r').catch(() => undefined)
  if (dh) {
    await dh.sync().catch(() => undefined)
    await dh.close()
  }
  return {atomic: true}
}

/**
 * Run a local shell command (the operator's `--reload-command`, e.g. `kamcmd dispatcher.reload` or
 * `docker exec kamailio kamcmd dispatcher.reload`) and collect what it says on stdout and stderr.
 */
export function runLocalCommand(command: string, timeoutMs = 10_000): Promise<ReloadAnswer> {
  return new Promise((resolve) => {
    const child = spawn('/bin/sh', ['-c', command], {stdio: ['ignore', 'pipe', 'pipe']})
    let output = ''
    child.stdout.on('data', (d: Buffer) => (output += d.toString()))
    child.stderr.on('data', (d: Buffer) => (output += d.toString()))
    const timer = setTimeout(() => {
      output += `\n(no answer within ${timeoutMs} ms; killed)`
      child.kill('SIGKILL')
    }, timeoutMs)
    child.on('error', (error) => {
      clearTimeout(timer)
      resolve({code: null, output: `${output}${error.message}`})
    })
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({code, output})
    })
  })
}
