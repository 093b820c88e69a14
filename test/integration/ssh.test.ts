/**
 * The SSH engine and `hactl exec` against real OpenSSH servers on 127.0.0.1: three sshd with their
 * own host keys, plus a closed port (unreachable), a server that accepts and never speaks (hung),
 * and a frozen sshd (SIGSTOP). Runs as root (sshd needs it); every server is stopped by pid.
 */
import assert from 'node:assert/strict'
import {type ChildProcess, execFile, execFileSync, spawn} from 'node:child_process'
import {existsSync, readFileSync, statSync, writeFileSync} from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {after, before, describe, test} from 'node:test'
import fc from 'fast-check'
import {type HactlConfig, loadConfig} from '../../src/lib/config/load.js'
import {
  AuthError,
  formatMs,
  HostKeyMismatchError,
  TimeoutError,
  UnknownHostKeyError,
} from '../../src/lib/errors.js'
import {execOnNodes} from '../../src/lib/ops/exec.js'
import {SshPool} from '../../src/lib/ssh/pool.js'
import {sh, shellQuote} from '../../src/lib/ssh/quote.js'
import {
  closedPort,
  type KeyPair,
  keygen,
  knownHostsLine,
  makeTempDir,
  type Sshd,
  sshKeygenFingerprint,
  startSilentServer,
  startSshd,
} from '../helpers/sshd.js'

const REPO = process.env.HACTL_REPO ?? path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
// Generous, so real connections on a loaded machine never hit it; the hung-host tests wait it out.
const CONNECT_TIMEOUT_MS = 3000
/** Slack for timing assertions: CI machines run other suites at the same time. */
const SLACK_MS = 3000

interface NodeSpec {
  name: string
  port: number
  host?: string
  roles?: string[]
}

describe('ssh engine against real sshd', () => {
  const tmp = makeTempDir('hactl-ssh-it-')
  const dir = tmp.dir
  const servers: Sshd[] = []
  let client: KeyPair
  let encrypted: KeyPair
  let silent: {port: number; close(): Promise<void>}
  let refused: number
  let knownHosts: string
  let configs = 0

  before(async () => {
    assert.equal(process.getuid?.(), 0, 'these tests start sshd and need root')
    client = keygen(path.join(dir, 'id_ed25519'))
    encrypted = keygen(path.join(dir, 'id_encrypted'), {passphrase: 'correct horse'})
    const authorized = `${client.pub}\n${encrypted.pub}\n`
    servers.push(
      await startSshd({
        dir: path.join(dir, 's1'),
        authorizedKeys: authorized,
        extraConfig: ['MaxSessions 8'],
      }),
    )
    servers.push(await startSshd({dir: path.join(dir, 's2'), authorizedKeys: authorized}))
    servers.push(
      await startSshd({dir: path.join(dir, 's3'), authorizedKeys: authorized, hostKeyType: 'ecdsa'}),
    )
    silent = await startSilentServer()
    refused = await closedPort()
    knownHosts = path.join(dir, 'known_hosts')
    writeFileSync(knownHosts, `${servers.map((s) => knownHostsLine(s.port, s.hostKey)).join('\n')}\n`)
    ensureBuilt()
  })

  after(async () => {
    await Promise.all(servers.map((s) => s.stop()))
    await silent?.close()
    tmp.remove()
  })

  /** Write a hactl.yaml for these nodes and return it loaded. */
  function writeConfig(
    nodes: NodeSpec[],
    ssh: Record<string, string | number | boolean | string[]> = {},
  ): {file: string; config: HactlConfig} {
    const file = path.join(dir, `hactl-${++configs}.yaml`)
    const settings: Record<string, unknown> = {
      user: 'root',
      identityFiles: [client.file],
      knownHosts,
      useSshConfig: false,
      connectTimeout: `${CONNECT_TIMEOUT_MS}ms`,
      commandTimeout: '10s',
      ...ssh,
    }
    const yaml = [
      'cluster: it',
      'ssh:',
      ...Object.entries(settings).map(([k, v]) => `  ${k}: ${JSON.stringify(v)}`),
      'nodes:',
      ...nodes.map(
        (n) =>
          `  ${n.name}: {host: ${n.host ?? '127.0.0.1'}, port: ${n.port}, roles: [${(n.roles ?? ['asterisk']).join(', ')}]}`,
      ),
      '',
    ].join('\n')
    writeFileSync(file, yaml)
    return {file, config: loadConfig({flag: file})}
  }

  const threeNodes = (): NodeSpec[] => servers.map((s, i) => ({name: `ast${i + 1}`, port: s.port}))

  async function withPool<T>(
    config: HactlConfig,
    fn: (pool: SshPool) => Promise<T>,
    opts: ConstructorParameters<typeof SshPool>[1] = {},
  ): Promise<T> {
    const pool = new SshPool(config, {concurrency: 10, ...opts})
    try {
      return await fn(pool)
    } finally {
      await pool.close()
    }
  }

  const acceptedLogins = (s: Sshd): number => (s.log().match(/Accepted publickey/g) ?? []).length

  describe('lib', () => {
    test('runs on several hosts over one connection per host, however many steps', async () => {
      const {config} = writeConfig(threeNodes())
      const before = servers.map(acceptedLogins)
      await withPool(config, async (pool) => {
        const outcome = await execOnNodes(pool, config.nodes, 'echo $((6*7)); echo to-stderr >&2; exit 0')
        assert.equal(outcome.summary.ok, 3)
        for (const r of outcome.results) {
          assert.deepEqual(
            {ok: r.ok, code: r.code, stdout: r.stdout, stderr: r.stderr},
            {ok: true, code: 0, stdout: '42\n', stderr: 'to-stderr\n'},
          )
        }
        // More steps on the same hosts reuse the connections.
        for (const node of config.nodes) {
          const r = await pool.run(node, 'exit 5', {check: false})
          assert.equal(r.code, 5)
        }
        const keys = await Promise.all(config.nodes.map((n) => pool.hostKeyOf(n)))
        assert.deepEqual(
          keys.map((k) => k.fingerprint),
          servers.map((s) => sshKeygenFingerprint(`${s.hostKey.file}.pub`)),
        )
        assert.equal(keys[2]!.type, 'ecdsa-sha2-nistp256')
      })
      assert.deepEqual(
        servers.map((s, i) => acceptedLogins(s) - before[i]!),
        [1, 1, 1],
      )
    })

    test('many parallel steps on one host: at most 8 channels at once, all succeed', async () => {
      // Given 30 steps started at once on one host, each registering itself in a directory while
      // it runs: the most any of them sees is how many ran side by side.
      const {config} = writeConfig([{name: 'ast1', port: servers[0]!.port}])
      const running = path.join(dir, 'running')
      await withPool(config, async (pool) => {
        const node = config.nodes[0]!
        const results = await Promise.all(
          Array.from({length: 30}, (_, i) =>
            pool.run(
              node,
              sh`mkdir -p ${running}; touch ${running}/${i}; sleep 1.5; ls ${running} | wc -l; rm ${running}/${i}`,
            ),
          ),
        )
        const peak = Math.max(...results.map((r) => Number(r.stdout.trim())))
        // More than 10 would also break sshd's default MaxSessions; fewer than 8 means no parallelism.
        assert.equal(peak, 8)
      })
    })

    test('check (the default) turns a non-zero exit into RemoteCommandError with the stderr tail', async () => {
      const {config} = writeConfig(threeNodes().slice(0, 1))
      await withPool(config, async (pool) => {
        await assert.rejects(
          pool.run(config.nodes[0]!, 'echo boom >&2; exit 7'),
          (e: Error & {kind?: string; exitStatus?: number}) => {
            assert.equal(e.kind, 'command-failed')
            assert.equal(e.exitStatus, 7)
            assert.match(e.message, /boom/)
            return true
          },
        )
        const r = await pool.run(config.nodes[0]!, 'cat', {stdin: 'fed through stdin'})
        assert.equal(r.stdout, 'fed through stdin')
      })
    })

    test('a changed host key is refused with both fingerprints and the known_hosts line; nothing runs', async () => {
      // Given known_hosts that holds another key for server 2, on line 2.
      const fake = keygen(path.join(dir, 'fake_host_key'))
      const file = path.join(dir, 'known_hosts_changed')
      writeFileSync(
        file,
        `${knownHostsLine(servers[0]!.port, servers[0]!.hostKey)}\n${knownHostsLine(servers[1]!.port, fake)}\n`,
      )
      const {config} = writeConfig([{name: 'ast2', port: servers[1]!.port}], {knownHosts: file})
      const marker = path.join(dir, 'marker-lib')
      await withPool(config, async (pool) => {
        await assert.rejects(pool.run(config.nodes[0]!, sh`touch ${marker}`), (e: unknown) => {
          assert.ok(e instanceof HostKeyMismatchError, String(e))
          assert.equal(e.actual, sshKeygenFingerprint(`${servers[1]!.hostKey.file}.pub`))
          assert.deepEqual(e.expected, [sshKeygenFingerprint(`${fake.file}.pub`)])
          assert.equal(e.file, file)
          assert.equal(e.line, 2)
          assert.match(
            e.message,
            new RegExp(`${escape(e.actual)}.*${escape(file)}:2.*${escape(e.expected[0]!)}`),
          )
          return true
        })
      })
      assert.equal(existsSync(marker), false)
    })

    test('an unknown host is refused, or added under accept-new', async () => {
      const file = path.join(dir, 'known_hosts_partial')
      writeFileSync(file, `${knownHostsLine(servers[0]!.port, servers[0]!.hostKey)}\n`)
      const strict = writeConfig([{name: 'ast3', port: servers[2]!.port}], {knownHosts: file})
      await withPool(strict.config, async (pool) => {
        await assert.rejects(pool.connect(strict.config.nodes[0]!), (e: unknown) => {
          assert.ok(e instanceof UnknownHostKeyError, String(e))
          assert.equal(e.fingerprint, sshKeygenFingerprint(`${servers[2]!.hostKey.file}.pub`))
          assert.match(e.suggestions.join(' '), /accept-new/)
          return true
        })
      })
      const lenient = writeConfig([{name: 'ast3', port: servers[2]!.port}], {
        knownHosts: file,
        strictHostKeyChecking: 'accept-new',
      })
      await withPool(lenient.config, async (pool) => {
        const r = await pool.run(lenient.config.nodes[0]!, 'echo ok')
        assert.equal(r.stdout, 'ok\n')
      })
      const lines = readFileSync(file, 'utf8').trim().split('\n')
      assert.equal(lines.length, 2)
      assert.equal(lines[1], knownHostsLine(servers[2]!.port, servers[2]!.hostKey))
      // And a strict run now trusts the added key.
      await withPool(strict.config, async (pool) => {
        await pool.connect(strict.config.nodes[0]!)
      })
    })

    test('unreachable and hung hosts fail on their own, within connectTimeout, while others succeed', async () => {
      const {config} = writeConfig([
        ...threeNodes(),
        {name: 'kam1', port: refused, roles: ['kamailio']},
        {name: 'kam2', port: silent.port, roles: ['kamailio']},
      ])
      await withPool(config, async (pool) => {
        const started = performance.now()
        const outcome = await execOnNodes(pool, config.nodes, 'echo up')
        const elapsed = performance.now() - started
        const by = Object.fromEntries(outcome.results.map((r) => [r.node, r]))
        assert.deepEqual(
          ['ast1', 'ast2', 'ast3'].map((n) => by[n]!.stdout),
          ['up\n', 'up\n', 'up\n'],
        )
        assert.equal(by.kam1!.error?.kind, 'unreachable')
        assert.match(by.kam1!.error!.message, /connection refused/)
        assert.equal(by.kam2!.error?.kind, 'timeout')
        assert.match(by.kam2!.error!.message, /ssh\.connectTimeout/)
        assert.ok(
          by.kam2!.durationMs >= CONNECT_TIMEOUT_MS - 50,
          `hung host gave up after ${by.kam2!.durationMs}ms`,
        )
        assert.ok(elapsed < CONNECT_TIMEOUT_MS + SLACK_MS, `run took ${Math.round(elapsed)}ms`)
        assert.deepEqual(outcome.summary, {...outcome.summary, total: 5, ok: 3, failed: 2})
        // A later step on a failed host fails at once with the same error, without a new timeout.
        const t0 = performance.now()
        await assert.rejects(pool.run(config.nodes[4]!, 'true'), TimeoutError)
        assert.ok(performance.now() - t0 < CONNECT_TIMEOUT_MS / 3, 'a remembered failure must not wait again')
      })
    })

    test('a frozen sshd (SIGSTOP) times out within connectTimeout', async () => {
      const frozen = await startSshd({dir: path.join(dir, 'frozen'), authorizedKeys: client.pub})
      try {
        frozen.pause()
        const {config} = writeConfig([{name: 'ast9', port: frozen.port}])
        await withPool(config, async (pool) => {
          const t0 = performance.now()
          await assert.rejects(
            pool.connect(config.nodes[0]!),
            (e: unknown) => e instanceof TimeoutError && e.timeoutName === 'ssh.connectTimeout',
          )
          const took = performance.now() - t0
          assert.ok(
            took >= CONNECT_TIMEOUT_MS - 50 && took < CONNECT_TIMEOUT_MS + SLACK_MS,
            `took ${Math.round(took)}ms`,
          )
        })
      } finally {
        await frozen.stop()
      }
    })

    test('a hung command hits commandTimeout', async () => {
      const {config} = writeConfig(threeNodes().slice(0, 1), {commandTimeout: '1500ms'})
      await withPool(config, async (pool) => {
        await pool.connect(config.nodes[0]!)
        const t0 = performance.now()
        await assert.rejects(pool.run(config.nodes[0]!, 'sleep 8'), (e: unknown) => {
          assert.ok(e instanceof TimeoutError, String(e))
          assert.equal(e.timeoutName, 'ssh.commandTimeout')
          assert.match(e.message, /sleep 8.*timed out after 1\.5s \(ssh\.commandTimeout\)/)
          return true
        })
        const took = performance.now() - t0
        assert.ok(took >= 1450 && took < 1500 + SLACK_MS, `took ${Math.round(took)}ms`)
        // The connection is still good for the next step (with room for a busy machine).
        assert.equal(
          (await pool.run(config.nodes[0]!, 'echo still here', {timeoutMs: 30_000})).stdout,
          'still here\n',
        )
        // A per-call timeout names what the caller says.
        await assert.rejects(
          pool.run(config.nodes[0]!, 'sleep 8', {timeoutMs: 300, timeoutName: '--timeout'}),
          /timed out after 300ms \(--timeout\)/,
        )
      })
    })

    test('an encrypted key: AuthError with an ssh-agent hint when no one can be asked; one prompt for all hosts otherwise', async () => {
      const {config} = writeConfig(threeNodes(), {identityFiles: [encrypted.file]})
      const saved = process.env.SSH_AUTH_SOCK
      delete process.env.SSH_AUTH_SOCK
      try {
        await withPool(config, async (pool) => {
          await assert.rejects(pool.connect(config.nodes[0]!), (e: unknown) => {
            assert.ok(e instanceof AuthError, String(e))
            assert.match(e.suggestions.join('\n'), new RegExp(`ssh-add ${escape(encrypted.file)}`))
            return true
          })
        })
        const asked: Array<[string, number]> = []
        const askPassphrase = async (file: string, attempt: number): Promise<string> => {
          asked.push([file, attempt])
          return attempt === 1 ? 'wrong' : 'correct horse'
        }
        await withPool(
          config,
          async (pool) => {
            const outcome = await execOnNodes(pool, config.nodes, 'echo in')
            assert.equal(outcome.summary.ok, 3, JSON.stringify(outcome.results.map((r) => r.error)))
          },
          {interactive: true, askPassphrase},
        )
        assert.deepEqual(asked, [
          [encrypted.file, 1],
          [encrypted.file, 2],
        ])
      } finally {
        if (saved === undefined) delete process.env.SSH_AUTH_SOCK
        else process.env.SSH_AUTH_SOCK = saved
      }
    })

    test('ssh-agent (SSH_AUTH_SOCK) authenticates when no key file is configured', async () => {
      const sock = path.join(dir, 'agent.sock')
      const agent: ChildProcess = spawn('ssh-agent', ['-D', '-a', sock], {stdio: 'ignore'})
      const saved = process.env.SSH_AUTH_SOCK
      try {
        for (let i = 0; i < 50 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 50))
        execFileSync('ssh-add', [client.file], {env: {...process.env, SSH_AUTH_SOCK: sock}, stdio: 'ignore'})
        process.env.SSH_AUTH_SOCK = sock
        const {config} = writeConfig(threeNodes().slice(0, 1), {
          identityFiles: [path.join(dir, 'does-not-exist')],
        })
        await withPool(config, async (pool) => {
          assert.equal((await pool.run(config.nodes[0]!, 'echo agent')).stdout, 'agent\n')
        })
      } finally {
        if (saved === undefined) delete process.env.SSH_AUTH_SOCK
        else process.env.SSH_AUTH_SOCK = saved
        if (agent.pid !== undefined && agent.exitCode === null) agent.kill('SIGTERM')
      }
    })

    test('ProxyJump from ssh_config: the node is reached through a jump host, whose key is checked too', async () => {
      // Given ssh_config naming an alias that lives behind server 1.
      const sshConfig = path.join(dir, 'ssh_config')
      writeFileSync(
        sshConfig,
        `Host behind-jump\n  HostName 127.0.0.1\n  Port ${servers[2]!.port}\n  ProxyJump root@127.0.0.1:${servers[0]!.port}\n`,
      )
      const {config} = writeConfig([{name: 'ast3', host: 'behind-jump', port: 22}], {useSshConfig: true})
      const jumpLogins = acceptedLogins(servers[0]!)
      const targetLogins = acceptedLogins(servers[2]!)
      const log: string[] = []
      await withPool(
        config,
        async (pool) => {
          const [a, b] = await Promise.all([
            pool.run(config.nodes[0]!, 'echo via-jump'),
            pool.run(config.nodes[0]!, 'true'),
          ])
          assert.equal(a.stdout, 'via-jump\n')
          assert.equal(b.code, 0)
        },
        {sshConfigFile: sshConfig, log: (l) => log.push(l)},
      )
      // The node's config names only server 3; server 1 saw a login, so the path went through it.
      assert.equal(acceptedLogins(servers[0]!), jumpLogins + 1)
      assert.equal(acceptedLogins(servers[2]!), targetLogins + 1)
      assert.ok(
        log.some((l) => l.includes(`root@127.0.0.1:${servers[2]!.port} via 127.0.0.1`)),
        log.join('\n'),
      )

      // When known_hosts holds another key for the jump host, the node is not reached.
      const fake = keygen(path.join(dir, 'fake_jump_key'))
      const file = path.join(dir, 'known_hosts_bad_jump')
      writeFileSync(
        file,
        `${knownHostsLine(servers[0]!.port, fake)}\n${knownHostsLine(servers[2]!.port, servers[2]!.hostKey)}\n`,
      )
      const bad = writeConfig([{name: 'ast3', host: 'behind-jump', port: 22}], {
        useSshConfig: true,
        knownHosts: file,
      })
      await withPool(
        bad.config,
        async (pool) => {
          await assert.rejects(pool.run(bad.config.nodes[0]!, 'true'), (e: unknown) => {
            assert.ok(e instanceof HostKeyMismatchError, String(e))
            assert.equal(e.host, `127.0.0.1:${servers[0]!.port}`)
            return true
          })
        },
        {sshConfigFile: sshConfig},
      )
    })

    test('property: any string survives the remote shell byte for byte (200 runs)', async () => {
      // A burst of 200 commands on a busy CI machine: give each one plenty of time.
      const {config} = writeConfig(threeNodes(), {commandTimeout: '120s'})
      const arb = fc
        .string({
          unit: fc.oneof(
            {weight: 3, arbitrary: fc.string({unit: 'binary', minLength: 1, maxLength: 1})},
            {
              weight: 2,
              arbitrary: fc.constantFrom(
                "'",
                '"',
                '\\',
                '$',
                '`',
                '$(',
                ')',
                '${',
                '\n',
                '\r',
                '\t',
                ' ',
                '*',
                '~',
                '!',
                ';',
                '|',
                '&',
                '%',
                '\u00e9',
                '\u{1F600}',
              ),
            },
          ),
          maxLength: 60,
        })
        .filter((s) => !s.includes('\0'))
      const roundTrip = async (pool: SshPool, s: string, i: number): Promise<boolean> =>
        (await pool.run(config.nodes[i % config.nodes.length]!, `printf %s ${shellQuote(s)}`)).stdout === s
      const seed = Number(process.env.HACTL_FC_SEED ?? Date.now() % 2 ** 31)
      await withPool(config, async (pool) => {
        // One remote round trip costs a few hundred ms here, so the 200 generated strings go out
        // at once over three hosts (8 channels each) instead of one after another.
        const inputs = fc.sample(arb, {numRuns: 200, seed})
        const ok = await Promise.all(inputs.map((s, i) => roundTrip(pool, s, i)))
        const bad = inputs.filter((_, i) => !ok[i])
        if (bad.length > 0) {
          // Shrink the first failure to a minimal counterexample for the report.
          await fc.assert(
            fc.asyncProperty(arb, async (s) => assert.ok(await roundTrip(pool, s, 0), JSON.stringify(s))),
            {seed, numRuns: 1, examples: [[bad[0]!]]},
          )
        }
        assert.deepEqual(bad, [], `seed ${seed} (rerun with HACTL_FC_SEED=${seed})`)
      })
    })
  })

  describe('hactl exec (built CLI)', () => {
    test('runs on all nodes: per-host output, summary, exit 0', async () => {
      const {file} = writeConfig(threeNodes())
      const r = await cli(file, ['exec', 'all', '--', 'echo', 'hello;', 'echo', '$((1+1))'])
      assert.equal(r.code, 0, r.stderr)
      for (const n of ['ast1', 'ast2', 'ast3'])
        assert.match(r.stdout, new RegExp(`=== ${n} \\(127\\.0\\.0\\.1\\) exit 0`))
      assert.equal((r.stdout.match(/^hello\n2$/gm) ?? []).length, 3)
      assert.match(r.stdout, /3 hosts: 3 ok, 0 failed/)
      // Progress went to stderr, one plain line per change (not a terminal).
      assert.match(r.stderr, /^ast1: ok/m)
    })

    test('--json: results and summary; exit 3 when some hosts fail', async () => {
      const {file} = writeConfig([...threeNodes(), {name: 'kam1', port: refused, roles: ['kamailio']}])
      const r = await cli(file, ['exec', 'asterisk,kam1', '--json', '--', 'printf', '%s', 'x'])
      assert.equal(r.code, 3, r.stderr)
      const out = JSON.parse(r.stdout) as {
        results: Array<Record<string, unknown>>
        summary: Record<string, number>
      }
      assert.deepEqual(
        out.results.map((x) => [x.node, x.ok, x.code, x.stdout]),
        [
          ['ast1', true, 0, 'x'],
          ['ast2', true, 0, 'x'],
          ['ast3', true, 0, 'x'],
          ['kam1', false, null, ''],
        ],
      )
      assert.equal((out.results[3]!.error as {kind: string}).kind, 'unreachable')
      assert.ok(out.results.every((x) => x.host === '127.0.0.1' && typeof x.durationMs === 'number'))
      assert.deepEqual(
        {total: out.summary.total, ok: out.summary.ok, failed: out.summary.failed},
        {total: 4, ok: 3, failed: 1},
      )
    })

    test('exit 1 when every host fails', async () => {
      const {file} = writeConfig(threeNodes())
      const r = await cli(file, ['exec', 'all', '--', 'exit 4'])
      assert.equal(r.code, 1)
      assert.match(r.stdout, /3 hosts: 0 ok, 3 failed/)
    })

    test('a changed host key: non-zero exit, both fingerprints, nothing run', async () => {
      const fake = keygen(path.join(dir, 'fake_host_key_cli'))
      const file = path.join(dir, 'known_hosts_changed_cli')
      writeFileSync(file, `${knownHostsLine(servers[0]!.port, fake)}\n`)
      const {file: cfg} = writeConfig([{name: 'ast1', port: servers[0]!.port}], {knownHosts: file})
      const marker = path.join(dir, 'marker-cli')
      const r = await cli(cfg, ['exec', 'ast1', '--', 'touch', shellQuote(marker)])
      assert.notEqual(r.code, 0)
      assert.match(r.stdout, /host key mismatch/)
      assert.ok(r.stdout.includes(sshKeygenFingerprint(`${servers[0]!.hostKey.file}.pub`)), r.stdout)
      assert.ok(r.stdout.includes(sshKeygenFingerprint(`${fake.file}.pub`)), r.stdout)
      assert.ok(r.stdout.includes(`${file}:1`))
      assert.equal(existsSync(marker), false)
    })

    test('a frozen host times out within connectTimeout, the others succeed: exit 3', async () => {
      const frozen = await startSshd({dir: path.join(dir, 'frozen-cli'), authorizedKeys: client.pub})
      try {
        frozen.pause()
        const {file} = writeConfig([...threeNodes(), {name: 'ast9', port: frozen.port}])
        const t0 = performance.now()
        const r = await cli(file, ['exec', 'all', '--', 'echo', 'fine'])
        const took = performance.now() - t0
        assert.equal(r.code, 3, r.stdout + r.stderr)
        assert.match(
          r.stdout,
          new RegExp(`ast9.*timed out after ${formatMs(CONNECT_TIMEOUT_MS)} \\(ssh\\.connectTimeout\\)`),
        )
        assert.match(r.stdout, /4 hosts: 3 ok, 1 failed/)
        // Node start-up plus the timeout; a hung host must not hold the run much longer.
        assert.ok(took < CONNECT_TIMEOUT_MS + 2 * SLACK_MS, `took ${Math.round(took)}ms`)
      } finally {
        await frozen.stop()
      }
    })

    test('usage errors: no --, unknown node', async () => {
      const {file} = writeConfig(threeNodes())
      const a = await cli(file, ['exec', 'all', 'uptime'])
      assert.equal(a.code, 2)
      assert.match(a.stderr, /put -- between the nodes and the command/)
      const b = await cli(file, ['exec', 'ast7', '--', 'true'])
      assert.equal(b.code, 2)
      assert.match(b.stderr, /unknown node or role "ast7"/)
      assert.match(b.stderr, /known nodes: ast1, ast2, ast3/)
    })
  })

  async function cli(
    configFile: string,
    args: string[],
  ): Promise<{code: number | null; stdout: string; stderr: string}> {
    return new Promise((resolve) => {
      execFile(
        process.execPath,
        [path.join(REPO, 'bin', 'run.js'), ...args],
        {
          cwd: dir,
          env: {...process.env, HACTL_CONFIG: configFile, NO_COLOR: '1', HOME: dir, SSH_AUTH_SOCK: ''},
          timeout: 60_000,
        },
        (err, stdout, stderr) => {
          const code = err ? ((err as {code?: number | string}).code as number | null) : 0
          resolve({code: typeof code === 'number' ? code : null, stdout, stderr})
        },
      )
    })
  }
})

/** The tests run the built CLI; build it when dist or the manifest lags behind the sources. */
function ensureBuilt(): void {
  const built = path.join(REPO, 'dist', 'commands', 'exec.js')
  const manifest = path.join(REPO, 'oclif.manifest.json')
  const src = ['src/commands/exec.ts', 'src/lib/ssh/pool.ts', 'src/lib/ops/exec.ts'].map(
    (f) => statSync(path.join(REPO, f)).mtimeMs,
  )
  const fresh =
    existsSync(built) &&
    statSync(built).mtimeMs >= Math.max(...src) &&
    existsSync(manifest) &&
    readFileSync(manifest, 'utf8').includes('"exec"')
  if (fresh) return
  try {
    execFileSync('npx', ['tsc', '-p', 'tsconfig.json'], {cwd: REPO, stdio: 'ignore'})
  } catch {
    // Type errors elsewhere in the tree still emit JavaScript; what matters is that exec.js exists.
  }
  execFileSync('npx', ['oclif', 'manifest'], {cwd: REPO, stdio: 'ignore'})
  assert.ok(existsSync(built), 'build did not produce dist/commands/exec.js: run npm run build')
}

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')
}
