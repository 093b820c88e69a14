/**
 * The SSH pool against an SSH server in this process (ssh2's Server on 127.0.0.1), for what a real
 * sshd will not do on demand: drop the connection in the middle of a command, or at a chosen point
 * of the handshake. Needs no root; test/integration/ssh.test.ts covers real OpenSSH servers.
 */
import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import {writeFileSync} from 'node:fs'
import type {AddressInfo} from 'node:net'
import path from 'node:path'
import {after, before, describe, test} from 'node:test'
import {pathToFileURL} from 'node:url'
import ssh2 from 'ssh2'
import {type HactlConfig, parseConfig} from '../../src/lib/config/load.js'
import {AuthError, UnreachableError} from '../../src/lib/errors.js'
import {execOnNodes} from '../../src/lib/ops/exec.js'
import {SshPool, toHostError} from '../../src/lib/ssh/pool.js'
import {makeTempDir} from '../helpers/sshd.js'

const repo = path.resolve(import.meta.dirname, '../..')

/** What the server does with an exec request, by command. */
type Behaviour = (channel: ssh2.ServerChannel, conn: ssh2.Connection) => void

interface TestServer {
  port: number
  hostKeyLine: string
  close(): Promise<void>
}

async function startServer(
  clientPublicKey: string,
  commands: Record<string, Behaviour>,
  opts: {onAuth?: (conn: ssh2.Connection) => boolean; port?: number; hostKey?: {private: string; public: string}} = {},
): Promise<TestServer> {
  const hostKey = opts.hostKey ?? ssh2.utils.generateKeyPairSync('ed25519')
  const allowed = ssh2.utils.parseKey(clientPublicKey) as ssh2.ParsedKey
  const conns = new Set<ssh2.Connection>()
  const server = new ssh2.Server({hostKeys: [hostKey.private]}, (conn) => {
    conns.add(conn)
    conn.on('close', () => conns.delete(conn))
    conn.on('error', () => undefined)
    conn.on('authentication', (ctx) => {
      if (opts.onAuth && !opts.onAuth(conn)) return
      if (
        ctx.method !== 'publickey' ||
        ctx.key.algo !== allowed.type ||
        !ctx.key.data.equals(allowed.getPublicSSH())
      )
        return ctx.reject(['publickey'])
      if (ctx.signature && !allowed.verify(ctx.blob!, ctx.signature, ctx.hashAlgo)) return ctx.reject()
      ctx.accept()
    })
    conn.on('ready', () => {
      conn.on('session', (accept) => {
        accept().on('exec', (acceptExec, _reject, info) => {
          const channel = acceptExec()
          const behave = commands[info.command]
          if (behave) behave(channel, conn)
          else {
            channel.stderr.write(`no such test command: ${info.command}\n`)
            channel.exit(127)
            channel.end()
          }
        })
      })
    })
  })
  await new Promise<void>((resolve) => server.listen(opts.port ?? 0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  return {
    port,
    hostKeyLine: `[127.0.0.1]:${port} ${hostKey.public.trim()}`,
    async close() {
      for (const c of conns) c.end()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

/** The server side of a host that goes away: its TCP connection ends with no SSH goodbye. */
function dropConnection(conn: ssh2.Connection): void {
  ;(conn as unknown as {_sock: {destroy(): void}})._sock.destroy()
}

/** Called by the test server when a `sleep 0.3` starts (the command is running on the "host"). */
let onSleepStarted: (() => void) | undefined

describe('ssh pool against an in-process SSH server', () => {
  const tmp = makeTempDir('hactl-pool-')
  const clientKey = ssh2.utils.generateKeyPairSync('ed25519')
  const keyFile = path.join(tmp.dir, 'id_ed25519')
  const knownHosts = path.join(tmp.dir, 'known_hosts')
  let server: TestServer
  let savedAgent: string | undefined

  before(async () => {
    // Given a key pair the server accepts, and no ssh-agent (the key file is the only way in).
    savedAgent = process.env.SSH_AUTH_SOCK
    delete process.env.SSH_AUTH_SOCK
    writeFileSync(keyFile, clientKey.private, {mode: 0o600})
    server = await startServer(clientKey.public, {
      'echo out; echo err >&2; exit 3': (ch) => {
        ch.write('out\n')
        ch.stderr.write('err\n')
        ch.exit(3)
        ch.end()
      },
      'kill -KILL $$': (ch) => {
        ch.exit('KILL')
        ch.end()
      },
      // The host goes away (a reboot): no exit status, the TCP connection just ends.
      'sleep 30 # dropped': (ch, conn) => {
        ch.write('partial\n')
        setTimeout(() => dropConnection(conn), 20)
      },
      // The reboot kills the command a moment before sshd itself.
      'sleep 30 # killed, then dropped': (ch, conn) => {
        ch.exit('TERM')
        ch.close()
        setTimeout(() => dropConnection(conn), 20)
      },
      // A channel closed with no word on how the command ended, the connection staying up.
      'sleep 30 # no status': (ch) => ch.close(),
      'sleep 0.3': (ch) => {
        onSleepStarted?.()
        setTimeout(() => {
          ch.exit(0)
          ch.end()
        }, 300)
      },
    })
    writeFileSync(knownHosts, `${server.hostKeyLine}\n`)
  })

  after(async () => {
    await server.close()
    tmp.remove()
    if (savedAgent !== undefined) process.env.SSH_AUTH_SOCK = savedAgent
  })

  function configFor(port: number, extra = ''): HactlConfig {
    return parseConfig(
      [
        'cluster: t',
        'ssh:',
        '  user: root',
        `  identityFiles: [${keyFile}]`,
        `  knownHosts: ${knownHosts}`,
        '  useSshConfig: false',
        '  connectTimeout: 5s',
        '  commandTimeout: 5s',
        extra,
        'nodes:',
        `  ast1: {host: 127.0.0.1, port: ${port}, roles: [asterisk]}`,
        '',
      ].join('\n'),
      'hactl.yaml',
    )
  }

  async function withPool<T>(
    config: HactlConfig,
    fn: (pool: SshPool, node: HactlConfig['nodes'][0]) => Promise<T>,
  ) {
    const pool = new SshPool(config, {concurrency: 4})
    try {
      return await fn(pool, config.nodes[0]!)
    } finally {
      await pool.close()
    }
  }

  test('connects through node-ssh with the host key checked and the key file offered; exit status, output, signal', async () => {
    await withPool(configFor(server.port), async (pool, node) => {
      // When a command exits 3 with output on both streams
      const r = await pool.run(node, 'echo out; echo err >&2; exit 3', {check: false})
      // Then both streams and the status come back
      assert.deepEqual(
        {stdout: r.stdout, stderr: r.stderr, code: r.code},
        {stdout: 'out\n', stderr: 'err\n', code: 3},
      )
      // And a command killed by a signal reports the signal, not an exit status
      const k = await pool.run(node, 'kill -KILL $$', {check: false})
      assert.equal(k.code, null)
      assert.equal(k.signal, 'SIGKILL')
      const key = await pool.hostKeyOf(node)
      assert.equal(key.type, 'ssh-ed25519')
      assert.match(key.fingerprint, /^SHA256:/)
    })
  })

  test('the connection lost in the middle of a command is a failure, with check: false too', async () => {
    const lost = (command: string, extra = '') =>
      new RegExp(
        `^ast1: unreachable: connection lost while running the command \\(\`${command}\`${extra}\\)$`,
      )
    for (const check of [false, true]) {
      await withPool(configFor(server.port), async (pool, node) => {
        // When the host goes away while the command runs
        await assert.rejects(pool.run(node, 'sleep 30 # dropped', {check}), (e: unknown) => {
          // Then the step fails as unreachable, saying the connection was lost and what to check
          assert.ok(e instanceof UnreachableError, String(e))
          assert.match(e.message, lost('sleep 30 # dropped'))
          assert.match(
            e.suggestions[0]!,
            /rebooted.*may not have finished.*ssh -p \d+ root@127\.0\.0\.1 true/,
          )
          return true
        })
        // And the next step opens a new connection
        assert.equal((await pool.run(node, 'echo out; echo err >&2; exit 3', {check: false})).code, 3)
      })
    }
    await withPool(configFor(server.port), async (pool, node) => {
      // When the command is killed just before the connection drops (a reboot: everything dies)
      await assert.rejects(
        pool.run(node, 'sleep 30 # killed, then dropped', {check: false}),
        (e: unknown) => {
          assert.match(
            (e as Error).message,
            lost('sleep 30 # killed, then dropped', ', after it got SIGTERM'),
          )
          return true
        },
      )
    })
  })

  test('hactl exec: a host whose connection drops mid-command is reported failed, with why', async () => {
    const config = configFor(server.port)
    const pool = new SshPool(config, {concurrency: 4})
    try {
      const out = await execOnNodes(pool, config.nodes, 'sleep 30 # dropped')
      const r = out.results[0]!
      assert.equal(r.ok, false)
      assert.equal(r.error?.kind, 'unreachable')
      assert.match(r.error?.message ?? '', /^ast1: unreachable: connection lost while running the command/)
      assert.deepEqual(out.summary, {...out.summary, total: 1, ok: 0, failed: 1})
    } finally {
      await pool.close()
    }
  })

  test("a channel closed without an exit status on a live connection is still the command's result", async () => {
    await withPool(configFor(server.port), async (pool, node) => {
      const r = await pool.run(node, 'sleep 30 # no status', {check: false})
      assert.equal(r.code, null)
      assert.equal(r.signal, undefined)
      await assert.rejects(pool.run(node, 'sleep 30 # no status'), /command failed with exit status unknown/)
    })
  })

  test('a key the server refuses is an AuthError naming the key file', async () => {
    // Given a server that accepts no key at all
    const refusing = await startServer(ssh2.utils.generateKeyPairSync('ed25519').public, {})
    writeFileSync(knownHosts, `${server.hostKeyLine}\n${refusing.hostKeyLine}\n`)
    try {
      await withPool(configFor(refusing.port), async (pool, node) => {
        await assert.rejects(
          pool.connect(node),
          (e: unknown) => e instanceof AuthError && e.message.includes(keyFile),
        )
      })
    } finally {
      await refusing.close()
    }
  })

  test('a server that hangs up during the handshake is unreachable, and says so', async () => {
    // Given a server that drops the connection when the client starts to authenticate
    const rude = await startServer(
      clientKey.public,
      {},
      {
        onAuth: (conn) => {
          dropConnection(conn)
          return false
        },
      },
    )
    writeFileSync(knownHosts, `${server.hostKeyLine}\n${rude.hostKeyLine}\n`)
    try {
      await withPool(configFor(rude.port), async (pool, node) => {
        await assert.rejects(
          pool.connect(node),
          (e: unknown) =>
            e instanceof UnreachableError && /ast1: unreachable: .*(closed|lost|reset)/.test(e.message),
        )
        // And a later step on that host fails at once with the same error (the failure is remembered)
        const t0 = performance.now()
        await assert.rejects(pool.run(node, 'true'), UnreachableError)
        assert.ok(performance.now() - t0 < 100)
      })
    } finally {
      await rude.close()
    }
  })

  test('Ctrl-C: a run still waiting for a host slot is not started; the running one finishes', async () => {
    // Given two nodes on the server and a pool that works on one host at a time
    const config = configFor(server.port, '')
    const second = {...config.nodes[0]!, name: 'ast2'}
    const pool = new SshPool(config, {concurrency: 1})
    try {
      const {execOnNodes, execExitCode} = await import('../../src/lib/ops/exec.js')
      const ac = new AbortController()
      // When Ctrl-C comes while the first host's command runs
      onSleepStarted = () => ac.abort()
      const out = await execOnNodes(pool, [config.nodes[0]!, second], 'sleep 0.3', {signal: ac.signal})
      onSleepStarted = undefined
      // Then the first one finished, the second was not run, and the exit status is 130
      assert.deepEqual(
        out.results.map((r) => [r.node, r.ok, r.error?.kind ?? null]),
        [
          ['ast1', true, null],
          ['ast2', false, 'interrupted'],
        ],
      )
      assert.equal(execExitCode(out.summary), 130)
    } finally {
      await pool.close()
    }
  })

  test('forgetFailures(): a host that failed is tried again (status --watch, next round)', async () => {
    // Given a known host whose port has nothing listening yet
    const hostKey = ssh2.utils.generateKeyPairSync('ed25519')
    const probe = await startServer(clientKey.public, {}, {hostKey})
    const port = probe.port
    await probe.close()
    writeFileSync(knownHosts, `${server.hostKeyLine}\n${probe.hostKeyLine}\n`)
    await withPool(configFor(port), async (pool, node) => {
      await assert.rejects(pool.connect(node), UnreachableError)
      // When the server comes up on that port, the remembered failure still answers
      const back = await startServer(clientKey.public, {}, {port, hostKey})
      try {
        await assert.rejects(pool.connect(node), UnreachableError)
        // Until the failures are forgotten: then it connects
        pool.forgetFailures()
        await pool.connect(node)
      } finally {
        await pool.close()
        await back.close()
      }
    })
  })
})

describe('connect errors', () => {
  const target = {host: 'ast9.example', port: 22, user: 'core', identityFiles: [], jumps: []}
  /** What net.connect emits (and ssh2 passes on) for a name the resolver does not know. */
  const lookupError = (code: string) =>
    Object.assign(new Error(`getaddrinfo ${code} ast9.example`), {
      code,
      syscall: 'getaddrinfo',
      hostname: 'ast9.example',
      level: 'client-socket',
    })

  test('a host name that does not resolve: one line naming the host, and a hint to check it', () => {
    const e = toHostError('ast9', target, lookupError('ENOTFOUND'))
    assert.ok(e instanceof UnreachableError)
    assert.equal(e.message, 'ast9: unreachable: cannot resolve host name "ast9.example" (ENOTFOUND)')
    assert.equal(e.suggestions.length, 1)
    assert.match(e.suggestions[0]!, /hactl\.yaml.*DNS: getent hosts ast9\.example$/)
    assert.ok(!e.message.includes('\n') && !e.suggestions[0]!.includes('\n'))
  })

  test('a DNS server that does not answer is said to be temporary', () => {
    const e = toHostError('ast9', target, lookupError('EAI_AGAIN'))
    assert.match(e.message, /cannot resolve host name "ast9\.example" \(EAI_AGAIN: temporary DNS failure\)$/)
  })

  test('a refused connection still names the address, with the ssh command to try', () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED 10.0.0.9:22'), {
      code: 'ECONNREFUSED',
      address: '10.0.0.9',
      port: 22,
    })
    const e = toHostError('ast9', target, refused)
    assert.equal(e.message, 'ast9: unreachable: connection refused (10.0.0.9:22)')
    assert.deepEqual(e.suggestions, [
      'check that the host is up and sshd listens: ssh -p 22 core@ast9.example true',
    ])
  })
})

describe('lazy loading', () => {
  // ssh2 is what node-ssh loads (node-ssh's own ESM entry is not in require.cache; its CJS
  // dependency ssh2 is), so "ssh2 loaded" stands for both.
  const probe = (code: string) => `
    import {createRequire} from 'node:module'
    globalThis.__sshLoaded = () => Object.keys(createRequire(process.cwd() + '/').cache).some((k) => /\\/node_modules\\/(ssh2|node-ssh)\\//.test(k))
    ${code}
  `

  test('hactl --help and hactl exec --help load neither node-ssh nor ssh2', () => {
    const hook = `data:text/javascript,${encodeURIComponent(
      probe(
        `process.on('exit', () => process.stderr.write('\\nSSH-LOADED=' + globalThis.__sshLoaded() + '\\n'))`,
      ),
    )}`
    for (const args of [['--help'], ['exec', '--help']]) {
      const r = spawnSync(
        process.execPath,
        ['--import', 'tsx', '--import', hook, path.join(repo, 'bin/dev.js'), ...args],
        {
          cwd: repo,
          encoding: 'utf8',
          env: {...process.env, NO_COLOR: '1'},
        },
      )
      assert.equal(r.status, 0, r.stderr)
      assert.match(r.stderr, /SSH-LOADED=false/, `hactl ${args.join(' ')}`)
    }
  })

  test('importing the pool does not load node-ssh; connecting does', () => {
    const pool = pathToFileURL(path.join(repo, 'src/lib/ssh/pool.ts')).href
    const load = pathToFileURL(path.join(repo, 'src/lib/config/load.ts')).href
    const code = probe(`
      const {SshPool} = await import(${JSON.stringify(pool)})
      const {parseConfig} = await import(${JSON.stringify(load)})
      const before = __sshLoaded()
      const config = parseConfig('cluster: t\\nssh: {user: root, useSshConfig: false, knownHosts: /nonexistent/kh, identityFiles: [/nonexistent/id]}\\nnodes: {a: {host: 127.0.0.1, port: 1, roles: [asterisk]}}\\n', 'x.yaml')
      const p = new SshPool(config)
      const error = await p.connect(config.nodes[0]).then(() => 'connected', (e) => e.message)
      await p.close()
      console.log(JSON.stringify({before, after: __sshLoaded(), error}))
    `)
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
      cwd: repo,
      encoding: 'utf8',
    })
    assert.equal(r.status, 0, r.stderr)
    const out = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as {
      before: boolean
      after: boolean
      error: string
    }
    assert.deepEqual({before: out.before, after: out.after}, {before: false, after: true})
    assert.match(out.error, /a: unreachable: connection refused/)
  })
})
