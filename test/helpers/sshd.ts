/**
 * Throwaway OpenSSH servers for integration tests: each `sshd -D` listens on 127.0.0.1 on a free
 * high port with its own host key, authorized_keys and log in a temp dir, and is stopped by pid.
 * Needs root (sshd must be able to switch to the logged-in user) and /usr/sbin/sshd.
 */
import {type ChildProcess, execFileSync, spawn} from 'node:child_process'
import {existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import net from 'node:net'
import {tmpdir} from 'node:os'
import path from 'node:path'

export const SSHD = '/usr/sbin/sshd'

export interface KeyPair {
  /** Private key file. */
  file: string
  /** `type base64 comment` line of the public key. */
  pub: string
  /** The base64 key blob. */
  blob: string
  type: string
}

/** Make a key pair with ssh-keygen (real OpenSSH output, the same format operators have). */
export function keygen(
  file: string,
  opts: {type?: 'ed25519' | 'ecdsa' | 'rsa'; passphrase?: string; comment?: string} = {},
): KeyPair {
  const type = opts.type ?? 'ed25519'
  execFileSync(
    'ssh-keygen',
    [
      '-q',
      '-t',
      type,
      ...(type === 'rsa' ? ['-b', '2048'] : []),
      '-N',
      opts.passphrase ?? '',
      '-C',
      opts.comment ?? 'hactl-test',
      '-f',
      file,
    ],
    {stdio: 'ignore'},
  )
  const pub = readFileSync(`${file}.pub`, 'utf8').trim()
  const [t, blob] = pub.split(' ')
  return {file, pub, blob: blob!, type: t!}
}

/** `SHA256:...` as ssh-keygen -l prints it: the reference the tests compare hactl's output with. */
export function sshKeygenFingerprint(pubFile: string): string {
  const out = execFileSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', pubFile], {encoding: 'utf8'})
  return out.split(' ')[1]!
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.on('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const {port} = srv.address() as net.AddressInfo
      srv.close(() => resolve(port))
    })
  })
}

export interface Sshd {
  port: number
  pid: number
  dir: string
  hostKey: KeyPair
  /** Freeze the server (SIGSTOP): the kernel still accepts TCP connections, nobody answers. */
  pause(): void
  resume(): void
  log(): string
  stop(): Promise<void>
}

export interface SshdOptions {
  /** Directory for this server's files (created). */
  dir: string
  /** authorized_keys contents (public key lines). */
  authorizedKeys: string
  port?: number
  hostKeyType?: 'ed25519' | 'ecdsa' | 'rsa'
  /** Reuse this host key instead of making one (to restart a "host" with the same identity). */
  hostKey?: KeyPair
  extraConfig?: string[]
}

export async function startSshd(opts: SshdOptions): Promise<Sshd> {
  mkdirSync(opts.dir, {recursive: true})
  // sshd refuses to start without its privilege-separation directory.
  if (!existsSync('/run/sshd')) mkdirSync('/run/sshd', {recursive: true, mode: 0o755})
  const hostKey =
    opts.hostKey ??
    keygen(path.join(opts.dir, `ssh_host_${opts.hostKeyType ?? 'ed25519'}_key`), {
      type: opts.hostKeyType ?? 'ed25519',
    })
  const authorized = path.join(opts.dir, 'authorized_keys')
  writeFileSync(
    authorized,
    opts.authorizedKeys.endsWith('\n') ? opts.authorizedKeys : `${opts.authorizedKeys}\n`,
    {mode: 0o600},
  )
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = opts.port ?? (await freePort())
    const cfg = path.join(opts.dir, 'sshd_config')
    const logFile = path.join(opts.dir, 'sshd.log')
    writeFileSync(
      cfg,
      [
        // sshd keeps the first value it reads for a keyword: the caller's settings go first.
        ...(opts.extraConfig ?? []),
        `Port ${port}`,
        'ListenAddress 127.0.0.1',
        `HostKey ${hostKey.file}`,
        `PidFile ${path.join(opts.dir, 'sshd.pid')}`,
        `AuthorizedKeysFile ${authorized}`,
        'StrictModes no',
        'UsePAM no',
        'PermitRootLogin prohibit-password',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        'AllowTcpForwarding yes',
        'MaxStartups 100:30:200',
        'LogLevel VERBOSE',
        '',
      ].join('\n'),
    )
    const child: ChildProcess = spawn(SSHD, ['-D', '-f', cfg, '-E', logFile], {stdio: 'ignore'})
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
    const ready = await Promise.race([waitForBanner(port, 5000).then(() => true), exited.then(() => false)])
    if (ready && child.pid !== undefined) {
      const pid = child.pid
      return {
        port,
        pid,
        dir: opts.dir,
        hostKey,
        pause: () => process.kill(pid, 'SIGSTOP'),
        resume: () => process.kill(pid, 'SIGCONT'),
        log: () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : ''),
        stop: async () => {
          if (child.exitCode !== null || child.signalCode !== null) return
          try {
            process.kill(pid, 'SIGCONT')
            process.kill(pid, 'SIGTERM')
          } catch {
            return
          }
          const timer = setTimeout(() => {
            try {
              process.kill(pid, 'SIGKILL')
            } catch {
              // Already gone.
            }
          }, 3000)
          await exited
          clearTimeout(timer)
        },
      }
    }
    if (child.pid !== undefined && child.exitCode === null) {
      process.kill(child.pid, 'SIGKILL')
      await exited
    }
    // Port taken between freePort() and sshd's bind: try another one (unless the port was fixed).
    if (opts.port !== undefined) break
  }
  const log = path.join(opts.dir, 'sshd.log')
  throw new Error(`sshd did not start; log:\n${existsSync(log) ? readFileSync(log, 'utf8') : '(none)'}`)
}

/** Resolves once something on the port speaks SSH. */
export async function waitForBanner(port: number, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs
  while (Date.now() < until) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1')
      const t = setTimeout(() => {
        s.destroy()
        resolve(false)
      }, 500)
      s.once('data', (d) => {
        clearTimeout(t)
        s.destroy()
        resolve(d.toString('latin1').startsWith('SSH-'))
      })
      s.once('error', () => {
        clearTimeout(t)
        resolve(false)
      })
    })
    if (ok) return
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`nothing speaks SSH on 127.0.0.1:${port} after ${timeoutMs}ms`)
}

/** A TCP server that accepts connections and never says a word: a hung host. */
export async function startSilentServer(): Promise<{port: number; close(): Promise<void>}> {
  const sockets = new Set<net.Socket>()
  const srv = net.createServer((s) => {
    sockets.add(s)
    s.on('error', () => undefined)
    s.on('close', () => sockets.delete(s))
  })
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  const {port} = srv.address() as net.AddressInfo
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy()
        srv.close(() => resolve())
      }),
  }
}

/** A port nothing listens on (connect gets ECONNREFUSED). */
export async function closedPort(): Promise<number> {
  return freePort()
}

export function makeTempDir(prefix = 'hactl-test-'): {dir: string; remove(): void} {
  const dir = mkdtempSync(path.join(tmpdir(), prefix))
  return {dir, remove: () => rmSync(dir, {recursive: true, force: true})}
}

/** `host keytype key` for a known_hosts file, with `[host]:port` for non-22 ports. */
export function knownHostsLine(port: number, key: KeyPair, host = '127.0.0.1'): string {
  return `${port === 22 ? host : `[${host}]:${port}`} ${key.type} ${key.blob}`
}

/** Whether the test can run sshd at all (root and the binary present). */
export function canRunSshd(): boolean {
  return process.getuid?.() === 0 && existsSync(SSHD)
}
