/**
 * A throwaway sshd that runs nothing: every key's authorized_keys line carries
 * `command="log.sh TAG"`, so whatever a client asks for is only recorded (exactly as it arrived,
 * `$SSH_ORIGINAL_COMMAND`) with the tag of the key that asked, and answered with exit 0 and no output.
 * The bad-input corpus asserts a tag's log stays empty; the no-injection property test reads what
 * reached the host. One sshd listens on several loopback addresses (127.0.0.2, 127.0.0.3, ...) so a
 * hactl.yaml can name distinct hosts on one port. Needs root (sshd), like test/helpers/sshd.ts.
 */
import {existsSync, readFileSync, writeFileSync} from 'node:fs'
import path from 'node:path'
import {type KeyPair, keygen, knownHostsLine, makeTempDir, type Sshd, startSshd} from './sshd.js'

export interface RecordedCommand {
  tag: string
  command: string
}

export interface LoggingSshd {
  dir: string
  port: number
  /** The loopback addresses it listens on (host of node i = addresses[i]). */
  addresses: string[]
  knownHosts: string
  sshd: Sshd
  /** A key whose every command is recorded under `tag` (made on first use). */
  keyFor(tag: string): KeyPair
  /** Every command recorded so far, in arrival order. */
  commands(): RecordedCommand[]
  commandsOf(tag: string): string[]
  stop(): Promise<void>
}

/**
 * Start the server with keys for `tags` (more can be added later with keyFor, which rewrites
 * authorized_keys: sshd reads it at each login).
 */
export async function startLoggingSshd(
  opts: {addresses?: number; tags?: string[]; prefix?: string} = {},
): Promise<LoggingSshd> {
  const tmp = makeTempDir(opts.prefix ?? 'hactl-logsshd-')
  const dir = tmp.dir
  const log = path.join(dir, 'commands.log')
  writeFileSync(log, '')
  const script = path.join(dir, 'log.sh')
  // base64 keeps newlines and any other byte of the command on one log line.
  writeFileSync(
    script,
    `#!/bin/sh\nprintf '%s %s\\n' "$1" "$(printf '%s' "$SSH_ORIGINAL_COMMAND" | base64 -w0)" >> ${log}\nexit 0\n`,
    {mode: 0o755},
  )
  const addresses = Array.from({length: opts.addresses ?? 6}, (_, i) => `127.0.0.${i + 2}`)
  const keys = new Map<string, KeyPair>()
  let started = false
  const authorizedKeys = (): string =>
    [...keys]
      .map(
        ([tag, k]) =>
          `command="/bin/sh ${script} ${tag}",no-pty,no-port-forwarding,no-agent-forwarding,no-X11-forwarding ${k.pub}`,
      )
      .join('\n')
  const keyFor = (tag: string): KeyPair => {
    if (!/^[A-Za-z0-9._-]+$/.test(tag)) throw new Error(`bad tag ${tag}`)
    let k = keys.get(tag)
    if (!k) {
      k = keygen(path.join(dir, `key-${tag}`), {comment: tag})
      keys.set(tag, k)
      if (started)
        writeFileSync(path.join(dir, 'sshd', 'authorized_keys'), `${authorizedKeys()}\n`, {mode: 0o600})
    }
    return k
  }
  for (const t of opts.tags ?? ['control']) keyFor(t)
  const sshd = await startSshd({
    dir: path.join(dir, 'sshd'),
    authorizedKeys: authorizedKeys(),
    extraConfig: [
      ...addresses.map((a) => `ListenAddress ${a}`),
      'MaxSessions 20',
      'PermitUserEnvironment no',
    ],
  })
  started = true
  const knownHosts = path.join(dir, 'known_hosts')
  writeFileSync(
    knownHosts,
    `${['127.0.0.1', ...addresses].map((a) => knownHostsLine(sshd.port, sshd.hostKey, a)).join('\n')}\n`,
  )
  const commands = (): RecordedCommand[] =>
    (existsSync(log) ? readFileSync(log, 'utf8') : '')
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => {
        const [tag = '', b64 = ''] = l.split(' ')
        return {tag, command: Buffer.from(b64, 'base64').toString('utf8')}
      })
  return {
    dir,
    port: sshd.port,
    addresses,
    knownHosts,
    sshd,
    keyFor,
    commands,
    commandsOf: (tag) =>
      commands()
        .filter((c) => c.tag === tag)
        .map((c) => c.command),
    stop: async () => {
      await sshd.stop()
      tmp.remove()
    },
  }
}
