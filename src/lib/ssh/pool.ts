import {readFile} from 'node:fs/promises'
import {createRequire} from 'node:module'
import {homedir} from 'node:os'
import type {Duplex} from 'node:stream'
import type {Config as NodeSshConfig, NodeSSH} from 'node-ssh'
import type {AnyAuthMethod, AuthenticationType, Client, ClientChannel, ConnectConfig, ParsedKey} from 'ssh2'
import type {HactlConfig, ResolvedNode} from '../config/load.js'
import {
  AuthError,
  ConfigError,
  HactlError,
  HostError,
  HostKeyMismatchError,
  InterruptedError,
  RemoteCommandError,
  TimeoutError,
  UnknownHostKeyError,
  UnreachableError,
} from '../errors.js'
import {
  appendKnownHost,
  checkHostKey,
  fingerprint,
  type KnownHostEntry,
  keyTypeOf,
  knownHostsName,
  knownKeyTypes,
  readKnownHosts,
  RevokedHostKeyError,
} from './known-hosts.js'
import {becomeCommand} from './quote.js'
import {Semaphore} from './semaphore.js'
import {
  expandTilde,
  type JumpSpec,
  loadSshConfig,
  resolveTarget,
  type SshConfigLookup,
  type SshTarget,
} from './ssh-config.js'

export interface ExecResult {
  stdout: string
  stderr: string
  /** Exit status; null when the command died of a signal (a lost connection is an UnreachableError). */
  code: number | null
  signal?: string
  /** The command's own run time, from opening its channel to its exit. */
  durationMs: number
  /** When the command was asked for (epoch ms), before waiting for the connection and a channel. */
  askedAt?: number
  /** From the call to the answer: waiting for the connection and a channel included. */
  elapsedMs?: number
}

export interface RunOptions {
  /** Default: ssh.commandTimeout. */
  timeoutMs?: number
  /** The setting a TimeoutError names, so the message says what to raise. Default: ssh.commandTimeout. */
  timeoutName?: string
  stdin?: string | Buffer
  /** Run through `sudo -n sh -c` when the login user is not root. Default: ssh.become. */
  become?: boolean
  /**
   * Throw RemoteCommandError on a non-zero exit (default true). A connection lost before the
   * command reported how it ended is an UnreachableError either way.
   */
  check?: boolean
  /**
   * Ctrl-C: once aborted, a run still waiting for its turn (the pool's host slots, a channel) is not
   * started; it rejects with InterruptedError. A command already started is not affected.
   */
  signal?: AbortSignal
}

export interface HostKeyInfo {
  type: string
  fingerprint: string
}

/** Ask for the passphrase of an encrypted private key (the CLI passes a prompt; lib code never prompts). */
export type PassphrasePrompt = (keyFile: string, attempt: number) => Promise<string>

export interface SshPoolOptions {
  /** How many hosts to work on at once (default: config.concurrency). */
  concurrency?: number
  log?: (line: string) => void
  /** Whether a human can answer a passphrase prompt. */
  interactive?: boolean
  askPassphrase?: PassphrasePrompt
  /** OpenSSH client config to read when ssh.useSshConfig (default ~/.ssh/config). */
  sshConfigFile?: string
}

/** sshd's MaxSessions defaults to 10; two stay free for whoever else uses the connection. */
export const MAX_CHANNELS_PER_CONNECTION = 8

/**
 * How long a command's channel that closed without an exit status waits for the connection's own
 * close before the result counts as the command's: when a host goes down, sshd and the command die
 * together, and the command's exit signal can come just before the connection drops.
 */
const LOST_CONNECTION_GRACE_MS = 500

/**
 * Key exchange order: curve25519 first. OpenSSH servers otherwise settle on their post-quantum
 * hybrid kex when the client offers it, which costs ~100 ms per connection; ssh2 does not offer
 * that one, and listing ours explicitly keeps it that way if ssh2's defaults change.
 */
const KEX = [
  'curve25519-sha256',
  'curve25519-sha256@libssh.org',
  'ecdh-sha2-nistp256',
  'ecdh-sha2-nistp384',
  'ecdh-sha2-nistp521',
  'diffie-hellman-group-exchange-sha256',
  'diffie-hellman-group14-sha256',
  'diffie-hellman-group16-sha512',
  'diffie-hellman-group18-sha512',
]

const HOST_KEY_ALGOS = [
  'ssh-ed25519',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'rsa-sha2-512',
  'rsa-sha2-256',
  'ssh-rsa',
]

type Ssh2 = typeof import('ssh2')
type NodeSshModule = typeof import('node-ssh')

interface Connection {
  ssh: NodeSSH
  /** node-ssh's underlying ssh2 Client, kept here: node-ssh forgets it once the connection ends. */
  client: Client
  label: string
  target: SshTarget
  user: string
  hostKey: HostKeyInfo
  channels: Semaphore
  closed: boolean
  /** Settles when the client closes. */
  gone: Promise<void>
}

/**
 * The run's SSH connections: one per host, opened on first use and reused by every step, closed by
 * `close()`. A failed connect is remembered, so later steps on that host fail at once with the same
 * error instead of waiting for another timeout; `drop(node)` forgets it (e.g. to retry after a
 * reboot). A connection the server closes is forgotten and reopened by the next step.
 *
 * Layers: node-ssh (over ssh2) opens, tunnels and ends connections: `new NodeSSH()` and
 * `ssh.connect(config)` with a plain ssh2 ConnectConfig (node-ssh passes it through; hactl gives it
 * no password/privateKey, so node-ssh validates nothing more), `ssh.forwardOut()` for ProxyJump and
 * etcd tunnels, `ssh.dispose()` to end. What node-ssh leaves to ssh2's own config or does not wrap
 * stays ssh2, reached through `ssh.connection`: the async hostVerifier and the authHandler (agent,
 * then key files, a passphrase asked only when nothing else worked), `sock` for ProxyJump, telling
 * a handshake error from a close (node-ssh rejects both as the first one seen), and the commands:
 * `client.exec` on the channel itself, because hactl needs the channel to kill a timed-out command,
 * to cap channels at MAX_CHANNELS_PER_CONNECTION and retry an open that sshd refused, and to tell a
 * lost connection from an exit, while node-ssh's execCommand decodes each chunk on its own (a UTF-8
 * character split across two packets comes out garbled), trims the output, takes no Buffer for
 * stdin and adds an 'error' listener to the connection per command.
 *
 * `become`: a step that needs root passes `become: true`; without it ssh.become decides. Either
 * way only a non-root login user gets the `sudo -n sh -c` wrapper.
 *
 * Known limit: OpenSSH ignores the `signal` request for root logins (no privilege separation after
 * auth), so a command that times out there keeps running on the host until it ends by itself; its
 * channel is closed and the step fails at once all the same.
 */
export class SshPool {
  private readonly conns = new Map<string, Promise<Connection>>()
  /** Names whose remembered connect failed (forgetFailures() clears them). */
  private readonly failed = new Set<string>()
  private readonly hostSlots: Semaphore
  private readonly activeHosts = new Map<
    string,
    {count: number; ready: Promise<void>; release?: () => void}
  >()
  private readonly log: (line: string) => void
  private readonly knownHostsFile: string
  private knownHosts?: Promise<KnownHostEntry[]>
  private sshConfig?: Promise<SshConfigLookup>
  private readonly decryptedKeys = new Map<string, Promise<ParsedKey | undefined>>()
  private promptChain: Promise<unknown> = Promise.resolve()
  private closing = false
  private askPassphrase?: PassphrasePrompt
  private readonly connectDeadlines = new DeadlineGroup()
  private readonly prefetched = new Map<string, {opts: RunOptions; result: Promise<ExecResult>}>()
  /** When the pool was made (performance.now()): its first connections may date from then. */
  readonly createdAt = performance.now()

  constructor(
    readonly config: HactlConfig,
    private readonly opts: SshPoolOptions = {},
  ) {
    this.hostSlots = new Semaphore(opts.concurrency ?? config.concurrency)
    this.log = opts.log ?? (() => {})
    this.knownHostsFile = expandTilde(config.ssh.knownHosts, homedir())
    this.askPassphrase = opts.askPassphrase
  }

  /** Run `command` with the remote user's shell. The command string is passed as is: quote values with `sh`. */
  async run(node: ResolvedNode, command: string, opts: RunOptions = {}): Promise<ExecResult> {
    const key = prefetchKey(node, command)
    const early = this.prefetched.get(key)
    if (early && sameRunOptions(early.opts, opts)) {
      this.prefetched.delete(key)
      return early.result
    }
    const askedAt = Date.now()
    const asked = performance.now()
    return this.withHost(node, async () => {
      const conn = await this.connection(node)
      const release = await conn.channels.acquire()
      try {
        if (opts.signal?.aborted) throw new InterruptedError(`${node.name}: not run (interrupted)`)
        const r = await this.exec(conn, command, opts)
        return {...r, askedAt, elapsedMs: Math.round(performance.now() - asked)}
      } finally {
        release()
      }
    })
  }

  /**
   * Run a read-only command now, ahead of the step that needs it: the first `run` of the same
   * command on the node, with the same options, gets this run's result (or error) instead of
   * running it again. For facts a command is certain to gather (hactl's early start), never for
   * anything that changes a host or must be read under a lock.
   */
  prefetch(node: ResolvedNode, command: string, opts: Omit<RunOptions, 'stdin'> = {}): void {
    const result = this.run(node, command, opts)
    result.catch(() => undefined)
    this.prefetched.set(prefetchKey(node, command), {opts, result})
  }

  /** Connect (and authenticate) without running anything. */
  async connect(node: ResolvedNode): Promise<void> {
    await this.withHost(node, () => this.connection(node))
  }

  /** A TCP stream to dstHost:dstPort opened from the node (ssh -L without the listener). */
  async forwardOut(node: ResolvedNode, dstHost: string, dstPort: number): Promise<Duplex> {
    return this.withHost(node, async () => {
      const conn = await this.connection(node)
      return this.openForward(conn, dstHost, dstPort)
    })
  }

  /** The host key the node's server offered (and that known_hosts accepted). */
  async hostKeyOf(node: ResolvedNode): Promise<HostKeyInfo> {
    return this.withHost(node, async () => (await this.connection(node)).hostKey)
  }

  /**
   * Forget every failed connect, so the next step on those hosts tries again (a watch loop's next
   * round). Connections that are open or opening are kept.
   */
  forgetFailures(): void {
    for (const name of this.failed) this.conns.delete(name)
    this.failed.clear()
  }

  /** Forget the node's connection (closing it if open), so the next step connects afresh. */
  async drop(node: ResolvedNode): Promise<void> {
    for (const key of this.prefetched.keys())
      if (key.startsWith(`${node.name}\0`)) this.prefetched.delete(key)
    const p = this.conns.get(node.name)
    this.conns.delete(node.name)
    this.failed.delete(node.name)
    if (!p) return
    const conn = await p.catch(() => undefined)
    if (conn) await endClient(conn)
  }

  /**
   * Set (or clear) how to ask for a key's passphrase. The CLI sets it after creating the pool, so a
   * command with a progress display can take the display off the screen while the prompt shows.
   */
  setPassphrasePrompt(prompt: PassphrasePrompt | undefined): void {
    this.askPassphrase = prompt
  }

  /** Close every connection, jump hosts included. */
  async close(): Promise<void> {
    this.closing = true
    const all = [...this.conns.values()]
    this.conns.clear()
    const conns = await Promise.all(all.map((p) => p.catch(() => undefined)))
    await Promise.all(conns.map((c) => (c ? endClient(c) : undefined)))
  }

  // A semaphore over hosts: a host takes one slot while any step on it runs, so `concurrency`
  // bounds the hosts worked on at once, not the steps (several steps on one host share its slot).
  private async withHost<T>(node: ResolvedNode, fn: () => Promise<T>): Promise<T> {
    let entry = this.activeHosts.get(node.name)
    if (!entry) {
      const e: {count: number; ready: Promise<void>; release?: () => void} = {
        count: 0,
        ready: Promise.resolve(),
      }
      e.ready = this.hostSlots.acquire().then((release) => {
        e.release = release
      })
      entry = e
      this.activeHosts.set(node.name, e)
    }
    entry.count++
    try {
      await entry.ready
      return await fn()
    } finally {
      entry.count--
      if (entry.count === 0) {
        if (this.activeHosts.get(node.name) === entry) this.activeHosts.delete(node.name)
        entry.release?.()
      }
    }
  }

  private connection(node: ResolvedNode): Promise<Connection> {
    if (this.closing) return Promise.reject(new Error('SshPool is closed'))
    let p = this.conns.get(node.name)
    if (!p) {
      const opening: Promise<Connection> = this.targetOf(node).then((target) =>
        this.open(node.name, target, () => {
          if (this.conns.get(node.name) === opening) this.conns.delete(node.name)
        }),
      )
      p = opening
      this.conns.set(node.name, p)
      // Callers see the rejection; this keeps a failure nobody awaits from crashing the process.
      p.catch(() => {
        if (this.conns.get(node.name) === opening) this.failed.add(node.name)
      })
    }
    return p
  }

  private async targetOf(node: ResolvedNode): Promise<SshTarget> {
    try {
      const values = this.config.ssh.useSshConfig
        ? (await this.loadSshConfig()).lookup(node.host)
        : {identityFiles: []}
      return resolveTarget(node, this.config.ssh, values)
    } catch (error) {
      if (error instanceof HactlError) throw error
      throw new ConfigError(`${this.opts.sshConfigFile ?? '~/.ssh/config'}: ${(error as Error).message}`, {
        suggestions: ['fix that file, or set ssh.useSshConfig: false in hactl.yaml to ignore it'],
      })
    }
  }

  private loadSshConfig(): Promise<SshConfigLookup> {
    this.sshConfig ??= loadSshConfig(this.opts.sshConfigFile)
    return this.sshConfig
  }

  /** A jump host's connection, shared by every node behind it. Its own ProxyJump is not followed. */
  private async jumpConnection(hops: JumpSpec[]): Promise<Connection> {
    const chainKey = `jump:${hops.map((h) => `${h.user ?? ''}@${h.host}:${h.port ?? ''}`).join(',')}`
    let p = this.conns.get(chainKey)
    if (!p) {
      p = (async () => {
        const hop = hops.at(-1)!
        const values = this.config.ssh.useSshConfig
          ? (await this.loadSshConfig()).lookup(hop.host)
          : {identityFiles: []}
        const base = resolveTarget(
          {
            host: hop.host,
            port: hop.port ?? values.port ?? 22,
            user: hop.user ?? values.user ?? this.config.ssh.user,
          },
          {...this.config.ssh, port: -1, user: ''},
          {...values, proxyJump: undefined},
        )
        const target: SshTarget = {...base, jumps: hops.slice(0, -1)}
        return this.open(`jump host ${hop.host}`, target, () => {
          if (this.conns.get(chainKey) === p) this.conns.delete(chainKey)
        })
      })()
      this.conns.set(chainKey, p)
      p.catch(() => undefined)
    }
    return p
  }

  private async open(
    label: string,
    target: SshTarget,
    onClose: (conn: Connection) => void,
  ): Promise<Connection> {
    const {NodeSSH} = await loadNodeSsh()
    const connectTimeout = this.config.ssh.connectTimeout
    const where = `${target.user}@${target.host}:${target.port}${target.jumps.length > 0 ? ` via ${target.jumps.map((j) => j.host).join(',')}` : ''}`
    this.log(`${label}: connecting to ${where}`)
    const started = performance.now()
    const keyName = knownHostsName(target.host, target.port)
    const keyErrorHost = target.port === 22 ? target.host : `${target.host}:${target.port}`
    const knownTypes = knownKeyTypes(await this.loadKnownHosts(), keyName)
    const identities = await this.loadIdentities(target.identityFiles)

    return new Promise<Connection>((resolve, reject) => {
      const ssh = new NodeSSH()
      /** ssh2's Client, from the moment node-ssh creates it (after a jump host's tunnel, if any). */
      let client: Client | undefined
      let settled = false
      let hostKey: HostKeyInfo | undefined
      let hostKeyError: HostError | undefined
      /** The client's first 'error' before 'ready': node-ssh rejects with it, or with its own "No response from server" on a close. */
      let handshakeError: (Error & {level?: string; code?: string}) | undefined
      const skippedEncrypted: string[] = []
      const tried: string[] = []

      const fail = (err: Error): void => {
        if (settled) return
        settled = true
        deadline.clear()
        if (client) destroyClient(client)
        reject(err)
      }
      const deadline = this.connectDeadlines.create(connectTimeout, () => {
        fail(new TimeoutError(label, `connecting to ${where}`, 'ssh.connectTimeout', connectTimeout))
      })

      // Why the connect failed. Runs after the client's events: node-ssh's rejection is a promise
      // reaction, and a socket error and its close are emitted in the same tick.
      const connectFailure = (rejection: unknown, closed: boolean): Error => {
        if (hostKeyError) return hostKeyError
        const err = handshakeError
        // sshd disconnects with "Too many authentication failures" when an agent offers more keys
        // than MaxAuthTries: that is an authentication problem too, not an unreachable host.
        if (
          err &&
          (err.level === 'client-authentication' || /too many authentication failures/i.test(err.message))
        )
          return authFailure(label, target, tried, skippedEncrypted, identities.missing)
        if (err) return toHostError(label, target, err)
        if (closed)
          return unreachable(label, target, `${where}: the server closed the connection during the handshake`)
        return rejection instanceof Error ? rejection : new Error(String(rejection))
      }

      const connect = (cfg: NodeSshConfig): void => {
        const connecting = ssh.connect(cfg)
        // node-ssh creates the Client and calls its connect() before its first await (hactl passes
        // no privateKeyPath to read), so the client is here before it can emit anything.
        client = ssh.connection ?? undefined
        if (!client) {
          connecting.catch(() => undefined)
          throw new Error('node-ssh did not start connecting')
        }
        let markGone = (): void => undefined
        const conn: Connection = {
          ssh,
          client,
          label,
          target,
          user: target.user,
          hostKey: {type: '', fingerprint: ''},
          channels: new Semaphore(MAX_CHANNELS_PER_CONNECTION),
          closed: false,
          gone: new Promise<void>((resolve) => (markGone = resolve)),
        }
        let ready = false
        client.on('error', (err: Error & {level?: string; code?: string}) => {
          if (settled) this.log(`${label}: connection error: ${err.message}`)
          else handshakeError ??= err
        })
        client.on('close', () => {
          conn.closed = true
          markGone()
          // Only an established connection is forgotten when it closes: a failed connect stays
          // remembered until drop(), so later steps fail at once instead of waiting again.
          if (ready) onClose(conn)
        })
        connecting.then(
          () => {
            if (settled) return // timed out meanwhile; fail() has already destroyed the client
            if (conn.closed) return fail(connectFailure(undefined, true))
            settled = true
            ready = true
            deadline.clear()
            conn.hostKey = hostKey!
            this.log(
              `${label}: connected in ${Math.round(performance.now() - started)}ms (${hostKey!.type} ${hostKey!.fingerprint})`,
            )
            resolve(conn)
          },
          (error: unknown) => fail(connectFailure(error, conn.closed)),
        )
      }

      const hostVerifier = (key: Buffer, verify: (ok: boolean) => void): void => {
        this.verifyHostKey(keyName, keyErrorHost, key).then(
          (info) => {
            hostKey = info
            verify(true)
          },
          (error: unknown) => {
            hostKeyError =
              error instanceof HostError
                ? error
                : unreachable(label, target, `checking the host key: ${(error as Error).message}`, error)
            verify(false)
          },
        )
      }

      // Methods in OpenSSH's order: the agent's keys, then key files. Encrypted keys last-minute:
      // a passphrase is asked only if nothing before it worked.
      const methods: Array<() => Promise<AnyAuthMethod | undefined>> = []
      if (target.agent) {
        const agent = target.agent
        methods.push(async () => {
          tried.push(`ssh-agent (${agent})`)
          return {type: 'agent', username: target.user, agent}
        })
      }
      for (const id of identities.keys) {
        methods.push(async () => {
          if (id.parsed) {
            tried.push(id.file)
            return {type: 'publickey', username: target.user, key: id.parsed}
          }
          if (!this.opts.interactive || !this.askPassphrase) {
            skippedEncrypted.push(id.file)
            return undefined
          }
          deadline.pause()
          try {
            const key = await this.decrypt(id.file, id.data)
            if (!key) {
              skippedEncrypted.push(id.file)
              return undefined
            }
            tried.push(id.file)
            return {type: 'publickey', username: target.user, key}
          } finally {
            deadline.resume()
          }
        })
      }
      const authHandler = (
        methodsLeft: AuthenticationType[] | null,
        _partial: boolean | null,
        next: (m: AnyAuthMethod | false) => void,
      ): void => {
        void (async () => {
          if (methodsLeft && !methodsLeft.includes('publickey')) return next(false)
          while (methods.length > 0) {
            const m = await methods.shift()!()
            if (m) return next(m)
          }
          next(false)
        })().catch((error: unknown) => fail(error as Error))
      }

      // An ssh2 ConnectConfig; node-ssh checks only username, host/sock and its own key/password
      // fields (none here: keys go through authHandler) and hands the rest to ssh2 as is.
      const cfg: NodeSshConfig = {
        host: target.host,
        port: target.port,
        username: target.user,
        // Our Deadline covers TCP connect, handshake and authentication (minus passphrase prompts).
        readyTimeout: 0,
        keepaliveInterval: 15_000,
        keepaliveCountMax: 3,
        hostVerifier,
        authHandler: authHandler as unknown as ConnectConfig['authHandler'],
        algorithms: {
          kex: KEX as NonNullable<ConnectConfig['algorithms']>['kex'],
          serverHostKey: preferKnownTypes(knownTypes) as NonNullable<
            ConnectConfig['algorithms']
          >['serverHostKey'],
        },
      }

      const start = async (): Promise<void> => {
        if (target.jumps.length > 0) {
          const jump = await this.jumpConnection(target.jumps)
          if (settled) return
          let sock: Duplex
          try {
            sock = await this.openForward(jump, target.host, target.port)
          } catch (error) {
            throw error instanceof HostError
              ? unreachable(label, target, `${where}: ${error.message}`, error)
              : error
          }
          if (settled) {
            sock.destroy()
            return
          }
          cfg.sock = sock
        }
        connect(cfg)
      }
      start().catch((error: unknown) => fail(error instanceof Error ? error : new Error(String(error))))
    })
  }

  private async verifyHostKey(name: string, errorHost: string, key: Buffer): Promise<HostKeyInfo> {
    const entries = await this.loadKnownHosts()
    let type: string
    try {
      type = keyTypeOf(key)
    } catch {
      throw new UnreachableError(errorHost, 'the server sent a host key hactl cannot read')
    }
    const fp = fingerprint(key)
    const verdict = checkHostKey(entries, name, key)
    switch (verdict.status) {
      case 'known':
        return {type, fingerprint: fp}
      case 'revoked':
        throw new RevokedHostKeyError(errorHost, {
          fingerprint: fp,
          keyType: type,
          file: verdict.entry.file,
          line: verdict.entry.line,
        })
      case 'mismatch': {
        const first = verdict.expected[0]!
        throw new HostKeyMismatchError(errorHost, {
          expected: verdict.expected.map((e) => e.fingerprint),
          actual: fp,
          file: first.file,
          line: first.line,
        })
      }
      case 'unknown': {
        if (this.config.ssh.strictHostKeyChecking !== 'accept-new') {
          throw new UnknownHostKeyError(errorHost, {
            fingerprint: fp,
            keyType: type,
            file: this.knownHostsFile,
          })
        }
        // Another connection may have added this host meanwhile; append only if still unknown.
        const again = checkHostKey(await this.loadKnownHosts(), name, key)
        if (again.status === 'known') return {type, fingerprint: fp}
        if (again.status !== 'unknown') return this.verifyHostKey(name, errorHost, key)
        const entry = await appendKnownHost(this.knownHostsFile, name, key)
        ;(await this.loadKnownHosts()).push(entry)
        this.log(
          `${errorHost}: added ${type} ${fp} to ${this.knownHostsFile}:${entry.line} (strictHostKeyChecking: accept-new)`,
        )
        return {type, fingerprint: fp}
      }
    }
  }

  private loadKnownHosts(): Promise<KnownHostEntry[]> {
    this.knownHosts ??= readKnownHosts(this.knownHostsFile)
    return this.knownHosts
  }

  private async loadIdentities(files: string[]): Promise<{keys: Identity[]; missing: string[]}> {
    const {utils} = await loadSsh2()
    const keys: Identity[] = []
    const missing: string[] = []
    for (const file of files) {
      let data: Buffer
      try {
        data = await readFile(file)
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code
        if (code === 'ENOENT') missing.push(file)
        else this.log(`cannot read identity file ${file}: ${(error as Error).message}`)
        continue
      }
      const parsed = utils.parseKey(data)
      if (parsed instanceof Error) {
        if (isEncryptedKeyError(parsed)) keys.push({file, data})
        else this.log(`skipping identity file ${file}: ${parsed.message}`)
        continue
      }
      const key = Array.isArray(parsed) ? (parsed[0] as ParsedKey | undefined) : parsed
      if (key?.isPrivateKey()) keys.push({file, data, parsed: key})
      else this.log(`skipping identity file ${file}: not a private key`)
    }
    return {keys, missing}
  }

  // One prompt per key file per run, and one prompt on screen at a time, however many hosts wait.
  private decrypt(file: string, data: Buffer): Promise<ParsedKey | undefined> {
    let p = this.decryptedKeys.get(file)
    if (!p) {
      const ask = this.askPassphrase!
      p = this.promptChain.then(async () => {
        const {utils} = await loadSsh2()
        // Every connect timer stops while a human types and while the key's KDF runs: that takes
        // a second or more and blocks the event loop, so the timers would fire for no fault of
        // the hosts.
        this.connectDeadlines.pauseAll()
        try {
          for (let attempt = 1; attempt <= 3; attempt++) {
            const passphrase = await ask(file, attempt)
            const parsed = utils.parseKey(data, passphrase)
            if (!(parsed instanceof Error)) {
              const key = Array.isArray(parsed) ? (parsed[0] as ParsedKey | undefined) : parsed
              if (key?.isPrivateKey()) return key
            }
            this.log(`${file}: wrong passphrase`)
          }
          return undefined
        } finally {
          this.connectDeadlines.resumeAll()
        }
      })
      this.promptChain = p.catch(() => undefined)
      this.decryptedKeys.set(file, p)
    }
    return p
  }

  private openForward(conn: Connection, dstHost: string, dstPort: number): Promise<Duplex> {
    const ms = this.config.ssh.connectTimeout
    return new Promise<Duplex>((resolve, reject) => {
      let done = false
      const timer = setTimeout(() => {
        done = true
        reject(
          new TimeoutError(conn.label, `opening a tunnel to ${dstHost}:${dstPort}`, 'ssh.connectTimeout', ms),
        )
      }, ms)
      let opening: Promise<Duplex>
      try {
        opening = conn.ssh.forwardOut('127.0.0.1', 0, dstHost, dstPort)
      } catch (error) {
        // node-ssh throws at once when its connection has already ended.
        opening = Promise.reject(error as Error)
      }
      opening.then(
        (stream) => {
          clearTimeout(timer)
          if (done) {
            stream.destroy()
            return
          }
          done = true
          resolve(stream)
        },
        (error: Error) => {
          clearTimeout(timer)
          if (done) return
          done = true
          reject(
            conn.closed
              ? unreachable(conn.label, conn.target, 'the connection was closed', error)
              : unreachable(
                  conn.label,
                  conn.target,
                  `cannot reach ${dstHost}:${dstPort} from there: ${error.message}`,
                  error,
                ),
          )
        },
      )
    })
  }

  private exec(conn: Connection, command: string, opts: RunOptions): Promise<ExecResult> {
    const become = opts.become ?? this.config.ssh.become
    const full = becomeCommand(command, conn.user, become)
    const ms = opts.timeoutMs ?? this.config.ssh.commandTimeout
    const timeoutName = opts.timeoutName ?? 'ssh.commandTimeout'
    const check = opts.check ?? true
    this.log(`${conn.label}: $ ${full}`)
    const started = performance.now()

    return new Promise<ExecResult>((resolve, reject) => {
      let settled = false
      let channel: ClientChannel | undefined
      const stdout: Buffer[] = []
      const stderr: Buffer[] = []
      let code: number | null = null
      let signal: string | undefined

      const finish = (fn: () => void): void => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        fn()
      }
      const timer = setTimeout(() => {
        finish(() => reject(commandTimeout(conn.label, command, timeoutName, ms)))
        if (channel) killChannel(channel)
      }, ms)

      if (conn.closed) {
        finish(() => reject(unreachable(conn.label, conn.target, 'the connection was closed')))
        return
      }
      const open = (attempt: number): void => {
        conn.client.exec(full, (err, stream) => {
          if (err) {
            // sshd frees a finished session only after it has reaped the command and read our
            // close, which on a busy host lags well behind what we see: a burst of channels can
            // hit MaxSessions even under our cap. While other channels on this connection are
            // still in flight their end will free a slot, so keep trying (the command timeout
            // still bounds the wait); alone on the connection, give up after a few tries.
            if (
              !conn.closed &&
              !settled &&
              /open failed|administratively prohibited/i.test(err.message) &&
              (conn.channels.inUse > 1 || attempt < 6)
            ) {
              setTimeout(() => open(attempt + 1), Math.min(400, 25 * 2 ** attempt))
              return
            }
            finish(() =>
              reject(
                conn.closed
                  ? unreachable(conn.label, conn.target, 'the connection was lost', err)
                  : unreachable(conn.label, conn.target, `cannot start a session: ${err.message}`, err),
              ),
            )
            return
          }
          onSession(stream)
        })
      }
      const onSession = (stream: ClientChannel): void => {
        if (settled) {
          stream.close()
          return
        }
        channel = stream
        stream.on('data', (d: Buffer) => stdout.push(d))
        stream.stderr.on('data', (d: Buffer) => stderr.push(d))
        stream.on('exit', (c: number | null, sig?: string) => {
          if (typeof c === 'number') code = c
          else if (sig) signal = sig
        })
        stream.on('close', () => {
          if (settled) return // timed out: the step has failed already
          const result: ExecResult = {
            stdout: Buffer.concat(stdout).toString('utf8'),
            stderr: Buffer.concat(stderr).toString('utf8'),
            code,
            ...(signal === undefined ? {} : {signal}),
            durationMs: Math.round(performance.now() - started),
          }
          const settle = (lost: boolean): void =>
            finish(() => {
              if (lost) reject(connectionLost(conn, command, signal))
              else if (check && code !== 0)
                reject(new RemoteCommandError(conn.label, command, code, result.stderr))
              else resolve(result)
            })
          // No exit status: the command died of a signal, or the host went away under it. ssh2
          // closes the channels of a dropped connection after its 'close', so conn.closed is set by
          // then; but a host going down can kill the command just before sshd, hence the grace.
          if (code !== null) settle(false)
          else if (conn.closed) settle(true)
          else void closedWithin(conn, LOST_CONNECTION_GRACE_MS).then(settle)
        })
        stream.on('error', () => undefined)
        if (opts.stdin === undefined) stream.end()
        else stream.end(opts.stdin)
      }
      open(0)
    })
  }
}

interface Identity {
  file: string
  data: Buffer
  /** Undefined for an encrypted key not yet decrypted. */
  parsed?: ParsedKey
}

let nodeSshModule: Promise<NodeSshModule> | undefined
async function loadNodeSsh(): Promise<NodeSshModule> {
  nodeSshModule ??= import('node-ssh')
  return nodeSshModule
}

let ssh2Module: Promise<Ssh2> | undefined
function prefetchKey(node: ResolvedNode, command: string): string {
  return `${node.name}\0${command}`
}

function sameRunOptions(a: RunOptions, b: RunOptions): boolean {
  return (
    a.stdin === undefined &&
    b.stdin === undefined &&
    a.signal === undefined &&
    b.signal === undefined &&
    a.timeoutMs === b.timeoutMs &&
    a.timeoutName === b.timeoutName &&
    a.become === b.become &&
    (a.check ?? true) === (b.check ?? true)
  )
}

async function loadSsh2(): Promise<Ssh2> {
  // ssh2 is CommonJS: `require` spares Node's scan of its exports that `import()` would run.
  ssh2Module ??= Promise.resolve().then(() => createRequire(import.meta.url)('ssh2') as Ssh2)
  return ssh2Module
}

/** Host key algorithms to ask for: the ones known_hosts has for this host first, as OpenSSH does. */
function preferKnownTypes(known: string[]): string[] {
  const wanted: string[] = []
  for (const t of known) {
    const algos = t === 'ssh-rsa' ? ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'] : [t]
    for (const a of algos) if (HOST_KEY_ALGOS.includes(a) && !wanted.includes(a)) wanted.push(a)
  }
  return [...wanted, ...HOST_KEY_ALGOS.filter((a) => !wanted.includes(a))]
}

function isEncryptedKeyError(err: Error): boolean {
  return /encrypted|passphrase/i.test(err.message)
}

const NET_REASONS: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  EHOSTUNREACH: 'no route to host',
  ENETUNREACH: 'network unreachable',
  ECONNRESET: 'connection reset by the server',
  ETIMEDOUT: 'TCP connection timed out',
  EPIPE: 'connection closed by the server',
}

/** The ssh command line that checks by hand whether hactl could log in. */
function sshProbe(target: SshTarget): string {
  const jump =
    target.jumps.length > 0
      ? ` -J ${target.jumps.map((j) => `${j.user ? `${j.user}@` : ''}${j.host}${j.port ? `:${j.port}` : ''}`).join(',')}`
      : ''
  return `ssh${jump} -p ${target.port} ${target.user}@${target.host} true`
}

/** An UnreachableError whose hint is the exact ssh command to try by hand. */
function unreachable(label: string, target: SshTarget, detail: string, cause?: unknown): UnreachableError {
  const err = new UnreachableError(label, detail, cause)
  err.suggestions.splice(
    0,
    err.suggestions.length,
    `check that the host is up and sshd listens: ${sshProbe(target)}`,
  )
  return err
}

/** A command whose connection dropped before it said how it ended: it may or may not have run to the end. */
function connectionLost(conn: Connection, command: string, signal: string | undefined): UnreachableError {
  const err = new UnreachableError(
    conn.label,
    `connection lost while running the command (\`${shorten(command)}\`${signal ? `, after it got ${signal}` : ''})`,
  )
  err.suggestions.splice(
    0,
    err.suggestions.length,
    `the host may have rebooted or dropped off the network, and the command may not have finished: once ${sshProbe(conn.target)} works, check what it did before running it again`,
  )
  return err
}

/** Whether the connection closes within `ms`. */
function closedWithin(conn: Connection, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms)
    void conn.gone.then(() => {
      clearTimeout(timer)
      resolve(true)
    })
  })
}

/** ssh2 and socket errors as the typed errors hactl prints. */
export function toHostError(
  label: string,
  target: SshTarget,
  err: Error & {
    code?: string | number
    level?: string
    address?: string
    port?: number
    hostname?: string
    syscall?: string
  },
): HostError {
  if (err instanceof HostError) return err
  const code = typeof err.code === 'string' ? err.code : undefined
  if (err.syscall === 'getaddrinfo' || code === 'ENOTFOUND' || code === 'EAI_AGAIN') {
    const name = err.hostname ?? target.host
    const why = code === 'EAI_AGAIN' ? 'EAI_AGAIN: temporary DNS failure' : (code ?? 'lookup failed')
    const e = unreachable(label, target, `cannot resolve host name "${name}" (${why})`, err)
    e.suggestions.splice(
      0,
      e.suggestions.length,
      `check the host name (host: under nodes: in hactl.yaml, or HostName in ~/.ssh/config) and your DNS: getent hosts ${name}`,
    )
    return e
  }
  if (code && NET_REASONS[code]) {
    const addr = err.address ? ` (${err.address}${err.port ? `:${err.port}` : ''})` : ''
    return unreachable(label, target, `${NET_REASONS[code]}${addr}`, err)
  }
  if (err.level === 'handshake' || err.level === 'protocol')
    return unreachable(label, target, `SSH handshake failed: ${err.message}`, err)
  return unreachable(label, target, err.message, err)
}

function authFailure(
  label: string,
  target: SshTarget,
  tried: string[],
  skippedEncrypted: string[],
  missing: string[],
): AuthError {
  const suggestions: string[] = []
  for (const f of skippedEncrypted) {
    suggestions.push(
      `${f} is encrypted: load it into ssh-agent (ssh-add ${f}) or run hactl in a terminal to be asked for its passphrase`,
    )
  }
  let detail: string
  if (tried.length === 0) {
    detail =
      skippedEncrypted.length > 0
        ? `no usable key for ${target.user}@${target.host}:${target.port}: ${skippedEncrypted.join(', ')} ${skippedEncrypted.length > 1 ? 'are' : 'is'} encrypted and no passphrase could be asked`
        : `no key to offer for ${target.user}@${target.host}:${target.port}: no ssh-agent (SSH_AUTH_SOCK) and no identity file${missing.length > 0 ? ` (missing: ${missing.join(', ')})` : ''}`
    if (skippedEncrypted.length === 0)
      suggestions.push('set ssh.identityFiles in hactl.yaml, or start ssh-agent and ssh-add your key')
  } else {
    detail = `the server accepted none of the keys offered for ${target.user}@${target.host}:${target.port} (tried: ${tried.join(', ')})`
    suggestions.push(
      `check that the public key is in ~${target.user}/.ssh/authorized_keys on the host, and ssh.user / ssh.identityFiles in hactl.yaml`,
    )
  }
  return new AuthError(label, detail, suggestions)
}

/**
 * Drop the TCP connection now. ssh2's `end()` only half-closes it, and `destroy()` does nothing on
 * a half-closed socket, so a frozen server would keep the process alive waiting for its FIN.
 */
function destroyClient(client: Client): void {
  const sock = (client as unknown as {_sock?: {destroy?: () => void}})._sock
  try {
    client.destroy()
  } finally {
    sock?.destroy?.()
  }
}

async function endClient(conn: Connection): Promise<void> {
  if (conn.closed) return
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      destroyClient(conn.client)
      resolve()
    }, 1000)
    conn.client.once('close', () => {
      clearTimeout(timer)
      resolve()
    })
    conn.ssh.dispose()
  })
}

/**
 * Stop a remote command: sshd (OpenSSH >= 7.9) kills the command's process group on a `signal`
 * request; merely closing the channel would leave it running. ssh2's `signal()` sends nothing once
 * we have closed stdin (which every run does), so the request goes out through the protocol object.
 */
function killChannel(channel: ClientChannel): void {
  const c = channel as unknown as {
    type?: string
    outgoing?: {id?: number; state?: string}
    _client?: {_protocol?: {signal?: (id: number, name: string) => void}}
  }
  try {
    const proto = c._client?._protocol
    if (
      c.type === 'session' &&
      (c.outgoing?.state === 'open' || c.outgoing?.state === 'eof') &&
      typeof c.outgoing.id === 'number' &&
      typeof proto?.signal === 'function'
    ) {
      proto.signal(c.outgoing.id, 'KILL')
    } else {
      channel.signal('KILL')
    }
  } catch {
    // The channel or connection is already gone; closing below is all that is left to do.
  }
  channel.close()
}

function commandTimeout(label: string, command: string, timeoutName: string, ms: number): TimeoutError {
  const err = new TimeoutError(label, `command \`${shorten(command)}\``, timeoutName, ms)
  // TimeoutError's hint names a hactl.yaml setting; a flag is raised on the command line instead.
  if (timeoutName.startsWith('-'))
    err.suggestions.splice(
      0,
      err.suggestions.length,
      `if the command is just slow, run again with a longer ${timeoutName}`,
    )
  return err
}

function shorten(command: string): string {
  const one = command.replace(/\s+/g, ' ').trim()
  return one.length > 80 ? `${one.slice(0, 77)}...` : one
}

/** The pool's running connect timers, to stop them all while a passphrase is asked. */
class DeadlineGroup {
  private readonly running = new Set<Deadline>()
  private paused = 0

  create(ms: number, onExpire: () => void): Deadline {
    const d: Deadline = new Deadline(ms, onExpire, () => this.running.delete(d))
    this.running.add(d)
    if (this.paused > 0) d.pause()
    return d
  }

  pauseAll(): void {
    this.paused++
    for (const d of this.running) d.pause()
  }

  resumeAll(): void {
    this.paused--
    for (const d of [...this.running]) d.resume()
  }
}

/** A timeout that can be paused while a human types a passphrase. */
class Deadline {
  private timer?: NodeJS.Timeout
  private remaining: number
  private startedAt = 0
  private paused = 0
  private done = false

  constructor(
    ms: number,
    private readonly onExpire: () => void,
    private readonly onDone: () => void = () => {},
  ) {
    this.remaining = ms
    this.arm()
  }

  pause(): void {
    if (this.done) return
    if (this.paused++ === 0 && this.timer) {
      clearTimeout(this.timer)
      this.timer = undefined
      this.remaining -= performance.now() - this.startedAt
    }
  }

  resume(): void {
    if (this.done || this.paused === 0) return
    if (--this.paused === 0) this.arm()
  }

  clear(): void {
    this.done = true
    if (this.timer) clearTimeout(this.timer)
    this.onDone()
  }

  private arm(): void {
    this.startedAt = performance.now()
    this.timer = setTimeout(
      () => {
        this.done = true
        this.onDone()
        this.onExpire()
      },
      Math.max(0, this.remaining),
    )
  }
}
