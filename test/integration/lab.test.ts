/**
 * `hactl lab`: a real multi-host cluster on this machine. Checked with the real tools an operator
 * would use: OpenSSH (host keys checked), etcdctl, kamcmd, and the hosts' own systemctl/asterisk.
 *
 * Two labs: the shared test lab (scripts/test.mjs or useLab()), which every test leaves as it found
 * it, and a small one of this file's own to check up, "already up", a crash and down.
 */
import assert from 'node:assert/strict'
import {readdirSync, readFileSync, existsSync, rmSync} from 'node:fs'
import dgram from 'node:dgram'
import path from 'node:path'
import {after, before, describe, test} from 'node:test'
import {loadConfig} from '../../src/lib/config/load.js'
import {
  callLog,
  callSummary,
  exec,
  hactl,
  labCli,
  labDispatcher,
  labHost,
  labHosts,
  labSsh,
  labState,
  REPO,
  restoreLab,
  sshArgs,
  useLab,
  waitFor,
} from '../helpers/lab.js'

const ipNetnsList = async () => (await exec('ip', ['netns', 'list'])).stdout
const ipLinks = async () => (await exec('ip', ['-o', 'link', 'show'])).stdout

/** Every process whose command line or environment names a directory, and every mount anywhere that does. */
function traces(dir: string): {pids: number[]; mounts: string[]} {
  const pids: number[] = []
  const mounts = new Set<string>()
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue
    try {
      const cmd = readFileSync(`/proc/${e}/cmdline`, 'utf8')
      const env = readFileSync(`/proc/${e}/environ`, 'utf8')
      if (cmd.includes(`${dir}/`) || env.includes(`=${dir}/`)) pids.push(Number(e))
      for (const line of readFileSync(`/proc/${e}/mountinfo`, 'utf8').split('\n'))
        if (line.includes(`${dir}/`)) mounts.add(line)
    } catch {
      // exited meanwhile
    }
  }
  return {pids, mounts: [...mounts]}
}

/** One SIP OPTIONS to a lab Asterisk host, from this machine; resolves the status line. */
function sipOptions(ip: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket('udp4')
    const timer = setTimeout(() => {
      sock.close()
      reject(new Error(`no SIP answer from ${ip}`))
    }, 3000)
    sock.on('message', (msg) => {
      clearTimeout(timer)
      sock.close()
      const text = msg.toString('latin1')
      assert.match(text, /^Call-ID: lab-test-1$/m)
      assert.match(text, /^CSeq: 7 OPTIONS$/m)
      assert.match(text, /^Via: SIP\/2\.0\/UDP [\d.]+:\d+;branch=z9hG4bKlabtest/m)
      resolve(text.split('\r\n')[0]!)
    })
    sock.bind(0, () => {
      const {port} = sock.address()
      const req = [
        `OPTIONS sip:${ip}:5060 SIP/2.0`,
        `Via: SIP/2.0/UDP 127.0.0.1:${port};branch=z9hG4bKlabtest`,
        'From: <sip:test@127.0.0.1>;tag=abc',
        `To: <sip:${ip}:5060>`,
        'Call-ID: lab-test-1',
        'CSeq: 7 OPTIONS',
        'Max-Forwards: 70',
        'Content-Length: 0',
        '',
        '',
      ].join('\r\n')
      sock.send(req, 5060, ip)
    })
  })
}

describe('hactl lab up/down (a lab of its own)', () => {
  const name = 'hlup'
  const subnet = '10.97.0.0/24'
  const dir = `/var/lib/hactl-lab/${name}`

  after(async () => {
    await hactl(['lab', 'down', '--name', name])
  })

  test('refuses to run without root, naming the fix (exit 2)', async () => {
    const r = await exec('setpriv', [
      '--reuid=65534',
      '--regid=65534',
      '--clear-groups',
      'env',
      'HOME=/tmp',
      process.execPath,
      path.resolve('bin/run.js'),
      'lab',
      'up',
      '--name',
      name,
    ])
    assert.equal(r.code, 2, r.stderr)
    assert.match(r.stderr, /needs root/)
    assert.match(r.stderr, /sudo hactl lab up/)
  })

  test('refuses impossible sizes with a hint (exit 2)', async () => {
    const r = await hactl(['lab', 'up', '--name', name, '--asterisk', '2', '--etcd', '3', '--subnet', subnet])
    assert.equal(r.code, 2)
    assert.match(r.stderr, /--etcd 3 is more than --asterisk 2/)
    const r2 = await hactl(['lab', 'up', '--name', name, '--asterisk', '300', '--subnet', subnet])
    assert.equal(r2.code, 2)
    assert.match(r2.stderr, /do not fit in 10\.97\.0\.0\/24/)
    assert.match(r2.stderr, /--subnet 10\.97\.0\.0\/23/)
    assert.equal(existsSync(dir), false)
  })

  test('up prints one export line; hactl.yaml loads; known_hosts has every host key', async () => {
    const r = await hactl(
      ['lab', 'up', '--name', name, '--subnet', subnet, '--asterisk', '2', '--kamailio', '1', '--etcd', '1'],
      {timeoutMs: 120_000},
    )
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout, `export HACTL_CONFIG=${dir}/hactl.yaml\n`)
    const config = loadConfig({flag: `${dir}/hactl.yaml`})
    assert.deepEqual(config.nodes.map((n) => `${n.name}=${n.host}:${n.roles.join('+')}`).sort(), [
      'ast1=10.97.0.21:asterisk+etcd',
      'ast2=10.97.0.22:asterisk',
      'kam1=10.97.0.11:kamailio',
    ])
    assert.equal(config.etcd.discovery.service, 'http://10.97.0.2:8087')
    assert.equal(config.ssh.connectTimeout, 3000)
    const known = readFileSync(`${dir}/known_hosts`, 'utf8').trim().split('\n')
    assert.equal(known.length, 4)
    for (const ip of ['10.97.0.2', '10.97.0.11', '10.97.0.21', '10.97.0.22'])
      assert.ok(
        known.some((l) => l.startsWith(`${ip} ssh-ed25519 `)),
        ip,
      )
  })

  test('up on a lab that is up: exit 2 with the down command', async () => {
    const r = await hactl(['lab', 'up', '--name', name, '--subnet', subnet])
    assert.equal(r.code, 2)
    assert.match(r.stderr, /lab "hlup" is already up/)
    assert.match(r.stderr, /hactl lab down --name hlup/)
  })

  test('a second lab on a subnet that is in use is refused', async () => {
    const r = await hactl(['lab', 'up', '--name', 'hlother', '--subnet', subnet])
    assert.equal(r.code, 2)
    assert.match(r.stderr, /overlaps 10\.97\.0\.0\/24/)
    assert.equal(existsSync('/var/lib/hactl-lab/hlother'), false)
  })

  test('down after a crash (supervisors killed, state.json lost) leaves nothing; a second down is a no-op', async () => {
    // Given a lab whose supervisors died and whose state file is gone
    const state = JSON.parse(readFileSync(`${dir}/state.json`, 'utf8')) as {
      hosts: Array<{supervisorPid: number}>
    }
    for (const h of state.hosts) process.kill(h.supervisorPid, 'SIGKILL')
    rmSync(`${dir}/state.json`)
    assert.ok(traces(dir).pids.length > 0, 'sshd, etcd, kamailio and asterisk still run')
    // When
    const r = await hactl(['lab', 'down', '--name', name])
    // Then
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /lab hlup removed/)
    assert.doesNotMatch(await ipNetnsList(), /hlup-/)
    assert.doesNotMatch(await ipLinks(), /hlup-/)
    assert.deepEqual(traces(dir), {pids: [], mounts: []})
    assert.equal(existsSync(dir), false)
    const again = await hactl(['lab', 'down', '--name', name])
    assert.equal(again.code, 0)
    assert.match(again.stdout, /not up; nothing to do/)
  })
})

describe('hactl lab (the shared test lab)', () => {
  let release: () => Promise<void> = async () => {}

  before(async () => {
    ;({release} = await useLab())
  })

  after(async () => {
    await release()
  })

  test('SSH into every host with the generated key and known_hosts (real OpenSSH, strict host keys)', async () => {
    const hosts = labState().hosts
    const results = await Promise.all(
      hosts.map((h) => labSsh(h, 'hostname; cat /etc/hostname; cat /proc/sys/kernel/random/boot_id')),
    )
    const bootIds = new Set<string>()
    for (const [i, r] of results.entries()) {
      assert.equal(r.code, 0, `${hosts[i]!.name}: ${r.stderr}`)
      const [hostname, etcHostname, bootId] = r.stdout.trim().split('\n')
      assert.equal(hostname, hosts[i]!.name)
      assert.equal(etcHostname, hosts[i]!.name)
      bootIds.add(bootId!)
    }
    // Each host has its own boot_id, and none is this machine's.
    assert.equal(bootIds.size, hosts.length)
    assert.ok(!bootIds.has(readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()))
  })

  test('hactl.yaml lists the Kamailio and Asterisk hosts only, with the lab discovery service', async () => {
    const state = labState()
    const config = loadConfig({flag: state.configPath})
    const expected = state.hosts
      .filter((h) => h.kind === 'kamailio' || h.kind === 'asterisk')
      .map((h) => h.name)
      .sort()
    assert.deepEqual(config.nodes.map((n) => n.name).sort(), expected)
    assert.deepEqual(config.nodes.find((n) => n.name === 'ast1')!.roles, ['asterisk', 'etcd'])
    assert.deepEqual(config.nodes.find((n) => n.name === 'ast4')!.roles, ['asterisk'])
    const disc = state.hosts.find((h) => h.kind === 'discovery')!
    assert.equal(config.etcd.discovery.service, `http://${disc.ip}:8087`)
    // The discovery service hands out fresh tokens backed by its etcd.
    const url = await (
      await fetch(`http://${disc.ip}:8087/new?size=3`, {signal: AbortSignal.timeout(3000)})
    ).text()
    assert.match(
      url,
      new RegExp(`^http://${disc.ip.replaceAll('.', '\\.')}:2379/v2/keys/discovery/[0-9a-f]{32}$`),
    )
    const size = await (await fetch(`${url}/_config/size`, {signal: AbortSignal.timeout(3000)})).text()
    assert.match(size, /"value":"3"/)
  })

  test('etcd: every etcd host is a healthy member (etcdctl)', async () => {
    const etcdHosts = labHosts().filter((h) => h.etcd)
    assert.equal(etcdHosts.length, 3)
    const endpoints = etcdHosts.map((h) => `http://${h.ip}:2379`).join(',')
    const env = {...process.env, ETCDCTL_API: '3'}
    const health = await exec(
      'etcdctl',
      ['--endpoints', endpoints, '--dial-timeout', '3s', 'endpoint', 'health'],
      {env},
    )
    assert.equal(health.code, 0, health.stderr)
    assert.equal((`${health.stdout}${health.stderr}`.match(/is healthy/g) ?? []).length, 3)
    const members = await exec('etcdctl', ['--endpoints', endpoints, 'member', 'list', '-w', 'json'], {env})
    const names = (JSON.parse(members.stdout) as {members: Array<{name: string}>}).members
      .map((m) => m.name)
      .sort()
    assert.deepEqual(names, etcdHosts.map((h) => h.name).sort())
    // And from inside a host, etcdctl on its own member works too.
    const inside = await labSsh('ast1', 'ETCDCTL_API=3 etcdctl endpoint health')
    assert.match(`${inside.stdout}${inside.stderr}`, /127\.0\.0\.1:2379 is healthy/)
  })

  test('kamcmd dispatcher.list on every Kamailio lists every Asterisk host as AP (spares not at all)', async () => {
    const ast = labHosts('asterisk')
    for (const kam of labHosts('kamailio')) {
      const r = await labSsh(kam, 'kamcmd dispatcher.list')
      assert.equal(r.code, 0, r.stderr)
      for (const a of ast)
        assert.match(
          r.stdout,
          new RegExp(`URI: sip:${a.ip.replaceAll('.', '\\.')}:5060\\s+FLAGS: AP`),
          `${kam.name} sees ${a.name}`,
        )
      for (const s of labHosts('spare'))
        assert.doesNotMatch(r.stdout, new RegExp(s.ip.replaceAll('.', '\\.')))
      const file = await labSsh(kam, 'cat /etc/kamailio/dispatcher.list')
      assert.equal((file.stdout.match(/^1 sip:/gm) ?? []).length, ast.length)
    }
  })

  test('systemctl answers like systemd: states, exit codes, messages', async () => {
    const r = await labSsh(
      'ast1',
      [
        'systemctl is-active etcd2; echo "rc=$?"',
        'systemctl is-active etcd; echo "rc=$?"',
        'systemctl is-active --quiet asterisk; echo "rc=$?"',
        'systemctl is-active nosuch; echo "rc=$?"',
        'systemctl status nosuch; echo "rc=$?"',
        'systemctl start nosuch; echo "rc=$?"',
        'systemctl stop nosuch.service; echo "rc=$?"',
        'systemctl is-enabled etcd2; echo "rc=$?"',
        'systemctl status etcd2 | head -3; echo "rc=$?"',
        'systemctl show -p ActiveState,UnitFileState asterisk; echo "rc=$?"',
      ].join('; '),
    )
    assert.equal(r.code, 0, r.stderr)
    const out = `${r.stdout}\n${r.stderr}`
    assert.match(r.stdout, /^active\nrc=0\nactive\nrc=0\nrc=0\ninactive\nrc=3\n/)
    assert.match(out, /Unit nosuch\.service could not be found\./)
    assert.match(r.stdout, /rc=4/)
    assert.match(out, /Failed to start nosuch\.service: Unit nosuch\.service not found\./)
    assert.match(out, /Failed to stop nosuch\.service: Unit nosuch\.service not loaded\./)
    assert.equal((r.stdout.match(/rc=5/g) ?? []).length, 2)
    assert.match(r.stdout, /enabled\nrc=0/)
    assert.match(
      r.stdout,
      /● etcd2\.service - etcd2\n\s+Loaded: loaded \(\/lib\/systemd\/system\/etcd2\.service; enabled; preset: enabled\)\n\s+Active: active \(running\) since/,
    )
    assert.match(r.stdout, /ActiveState=active\nUnitFileState=enabled\nrc=0/)
    // Spares: sshd only; asterisk and etcd2 exist but are disabled and stopped.
    const spare = await labSsh(
      'spare1',
      'systemctl is-enabled etcd2 asterisk; echo "rc=$?"; asterisk -rx "core show version"; echo "rc=$?"',
    )
    assert.match(spare.stdout, /disabled\ndisabled\nrc=1\nrc=1/)
    assert.match(
      spare.stderr,
      /Unable to connect to remote asterisk \(does \/var\/run\/asterisk\/asterisk\.ctl exist\?\)/,
    )
  })

  test('asterisk -rx prints what Asterisk prints', async () => {
    const r = await labSsh(
      'ast4',
      [
        'asterisk -rx "core show channels count"; echo "rc=$?"',
        'asterisk -rx "core shutdown gracefully"; echo "rc=$?"',
        'asterisk -rx "core show version"; echo "rc=$?"',
      ].join('; '),
    )
    assert.match(r.stdout, /^\d+ active channels?\n\d+ active calls?\n\d+ calls? processed\nrc=0\n/)
    assert.match(
      r.stdout,
      /No such command 'core shutdown gracefully' \(type 'core show help core shutdown' for other possible commands\)\nrc=0\n/,
    )
    assert.match(
      r.stdout,
      /^Asterisk 20\.\d+\.\d+ built by \S+ @ \S+ on a x86_64 running Linux on .+ UTC\nrc=0$/m,
    )
    // Singular forms at exactly one call: a bridged call is two channels.
    const since = new Date().toISOString()
    const calls = await labCli(['calls', 'ast4', '1', '--duration', '2'])
    assert.equal(calls.code, 0, calls.stderr)
    const one = await labSsh('ast4', 'asterisk -rx "core show channels count"')
    assert.match(one.stdout, /^2 active channels\n1 active call\n\d+ calls? processed\n$/)
    await waitFor(() => callSummary('ast4', since).finished === 1, {
      timeoutMs: 10_000,
      what: 'the call to finish',
    })
  })

  test('the fast client (Perl) answers exactly as the Node stand-ins do, and leaves the rest to them', async () => {
    // Each command twice: through the wrapper as installed (fast path) and with the fast path off.
    const commands = [
      `asterisk -rx 'core show channels count'`,
      `asterisk -x 'core show version'`,
      `asterisk -r -x 'core show nosuch "quoted" \\\\ back'`,
      `systemctl is-active etcd2`,
      `systemctl is-active etcd2 asterisk nosuch`,
      `systemctl is-active --quiet asterisk`,
      `systemctl is-enabled etcd2 asterisk`,
      `systemctl show -p ActiveState,UnitFileState asterisk`,
      `systemctl --property=SubState show etcd2`,
      `systemctl status nosuch`,
      `systemctl stop nosuch.service`,
      `systemctl`,
    ]
    const script = commands
      .map((c, i) =>
        [
          `${c} >/tmp/fast.out 2>/tmp/fast.err; echo "@@${i} fast rc=$?"; cat /tmp/fast.out /tmp/fast.err`,
          `HACTL_LAB_NO_FAST_CLIENT=1 ${c} >/tmp/node.out 2>/tmp/node.err; echo "@@${i} node rc=$?"; cat /tmp/node.out /tmp/node.err`,
        ].join('; '),
      )
      .join('; ')
    const r = await labSsh('ast1', script)
    assert.equal(r.code, 0, r.stderr)
    const parts = r.stdout.split(/^@@/m).slice(1)
    assert.equal(parts.length, commands.length * 2, r.stdout)
    for (let i = 0; i < commands.length; i++) {
      const fast = parts[2 * i]!.replace(/^\d+ fast /, '')
      const node = parts[2 * i + 1]!.replace(/^\d+ node /, '')
      assert.equal(fast, node, `${commands[i]}: the fast client differs from the Node stand-in`)
    }
    // The fast path needs no Node at all (the Node program given to it does not exist), and
    // hands every other form to the Node program (which then cannot run).
    const fastPl = path.join(REPO, 'lab', 'fast-client.pl')
    const direct = await labSsh(
      'ast1',
      [
        `perl ${fastPl} /nonexistent/node x.mjs asterisk -rx 'core show version'; echo "rc=$?"`,
        // The wrapper (bind-mounted over systemctl) names the host's directory.
        `HACTL_LAB_HOST_DIR=$(sed -n 's/^export HACTL_LAB_HOST_DIR=//p' /usr/bin/systemctl) perl ${fastPl} /nonexistent/node x.mjs systemctl systemctl is-active etcd2; echo "rc=$?"`,
        `perl ${fastPl} /nonexistent/node x.mjs asterisk -V; echo "rc=$?"`,
        `perl ${fastPl} /nonexistent/node x.mjs systemctl reboot; echo "rc=$?"`,
        `perl ${fastPl} /nonexistent/node x.mjs systemctl systemctl poweroff; echo "rc=$?"`,
      ].join('; '),
    )
    assert.match(direct.stdout, /^Asterisk 20\.\d+\.\d+ built by .*\nrc=0\nactive\nrc=0\nrc=127\nrc=127\nrc=127\n$/)
    assert.equal((direct.stderr.match(/fast-client: cannot run \/nonexistent\/node/g) ?? []).length, 3)
    // Down: the same message and exit status as the Node client.
    const down = await labSsh(
      'spare1',
      `asterisk -rx 'core show version'; echo "rc=$?"; HACTL_LAB_NO_FAST_CLIENT=1 asterisk -rx 'core show version'; echo "rc=$?"`,
    )
    assert.equal(down.stdout, 'rc=1\nrc=1\n')
    const msg = 'Unable to connect to remote asterisk (does /var/run/asterisk/asterisk.ctl exist?)\n'
    assert.equal(down.stderr, msg + msg)
  })

  test('a reboot changes boot_id, cuts SSH sessions, and brings sshd, etcd, Asterisk and Kamailio back', async () => {
    const targets = [
      {host: 'ast2', command: 'reboot'},
      {host: 'ast4', command: 'shutdown -r now'},
      {host: 'kam2', command: 'systemctl reboot'},
    ]
    const before = new Map<string, string>()
    for (const t of targets)
      before.set(t.host, (await labSsh(t.host, 'cat /proc/sys/kernel/random/boot_id')).stdout.trim())
    // Given an open SSH session on ast4
    const session = exec('ssh', [...sshArgs('ast4'), 'sleep 60'], {timeoutMs: 70_000})
    await new Promise((r) => setTimeout(r, 500))
    // When the hosts reboot
    await Promise.all(targets.map((t) => labSsh(t.host, t.command)))
    // Then the session is cut long before its 60 s
    const cut = await session
    assert.equal(cut.code, 255)
    assert.ok(cut.durationMs < 20_000)
    for (const t of targets) {
      const after = await waitFor(
        async () => {
          const r = await labSsh(t.host, 'cat /proc/sys/kernel/random/boot_id')
          return r.code === 0 ? r.stdout.trim() : undefined
        },
        {timeoutMs: 30_000, what: `${t.host} to come back`},
      )
      assert.notEqual(after, before.get(t.host), `${t.host} has a new boot_id`)
    }
    // etcd: ast2 rejoined; the cluster is healthy with all members.
    const endpoints = labHosts()
      .filter((h) => h.etcd)
      .map((h) => `http://${h.ip}:2379`)
      .join(',')
    await waitFor(
      async () => {
        const r = await exec(
          'etcdctl',
          ['--endpoints', endpoints, '--dial-timeout', '2s', 'endpoint', 'health'],
          {env: {...process.env, ETCDCTL_API: '3'}},
        )
        return r.code === 0
      },
      {timeoutMs: 30_000, what: 'etcd to be healthy after the reboot'},
    )
    const active = await labSsh('ast2', 'systemctl is-active etcd2 asterisk')
    assert.equal(active.stdout, 'active\nactive\n')
    const kam = await labSsh('kam2', 'systemctl is-active kamailio')
    assert.equal(kam.stdout, 'active\n')
    const ast = labHosts('asterisk')
    await waitFor(
      async () => Object.values(await labDispatcher('kam2')).filter((f) => f === 'AP').length === ast.length,
      {
        timeoutMs: 20_000,
        what: 'kam2 to see every Asterisk host AP again',
      },
    )
  })

  test('graceful stop with calls up: it waits for them, refuses new ones, Kamailio sees 503; no call is cut', async () => {
    const since = new Date().toISOString()
    const node = labHost('ast3')
    const uri = `sip:${node.ip}:5060`
    // Given two calls of 8 s on ast3
    const calls = await labCli(['calls', 'ast3', '2', '--duration', '8'])
    assert.equal(calls.code, 0, calls.stderr)
    assert.equal(await sipOptions(node.ip), 'SIP/2.0 200 OK')
    // When an operator stops Asterisk gracefully
    const t0 = Date.now()
    const stop = labSsh('ast3', 'asterisk -rx "core stop gracefully"; echo "rc=$?"', {timeoutMs: 90_000})
    // Then while it waits: other commands are refused, OPTIONS get 503, both Kamailios mark ast3 inactive
    const pending = await waitFor(
      async () => {
        const r = await labSsh('ast3', 'asterisk -rx "core show channels count"')
        return r.stdout.includes('cannot be run during shutdown') ? r.stdout : undefined
      },
      {timeoutMs: 5000, what: 'the shutdown to be pending'},
    )
    assert.equal(pending, "Command 'core show channels count' cannot be run during shutdown\n")
    assert.equal(await sipOptions(node.ip), 'SIP/2.0 503 Service Unavailable')
    const refused = await labCli(['calls', 'ast3', '1'])
    assert.equal(refused.code, 1, refused.stderr)
    assert.match(refused.stdout, /1 refused/, refused.stderr)
    for (const kam of labHosts('kamailio')) {
      await waitFor(async () => (await labDispatcher(kam.name))[uri] === 'IP', {
        timeoutMs: 6000,
        what: `${kam.name} to mark ast3 IP`,
      })
    }
    // The stop returns once the last call ended, not before
    const stopped = await stop
    const returnedAt = new Date().toISOString()
    assert.equal(stopped.stdout, 'rc=0\n')
    assert.ok(
      Date.now() - t0 >= 6000,
      `core stop gracefully returned after ${Date.now() - t0} ms, before the calls ended`,
    )
    const ends = callLog('ast3').filter((e) => e.time >= since && e.event === 'end')
    assert.ok(
      ends.every((e) => e.time <= returnedAt),
      'it returned after the last call ended',
    )
    const summary = callSummary('ast3', since)
    assert.deepEqual(summary, {started: 2, finished: 2, cut: 0, refused: 1, open: 0})
    const after = await labSsh(
      'ast3',
      'asterisk -rx "core show channels count"; echo "rc=$?"; systemctl is-active asterisk; echo "rc=$?"',
    )
    assert.equal(after.stdout, 'rc=1\ninactive\nrc=3\n')
    assert.match(after.stderr, /Unable to connect to remote asterisk/)
    // Restore: start it again; Kamailio probes it back to AP.
    assert.equal((await labSsh('ast3', 'systemctl start asterisk')).code, 0)
    for (const kam of labHosts('kamailio')) {
      await waitFor(async () => (await labDispatcher(kam.name))[uri] === 'AP', {
        timeoutMs: 10_000,
        what: `${kam.name} to mark ast3 AP again`,
      })
    }
  })

  test('core stop now cuts the calls, and the call log says so', async () => {
    const since = new Date().toISOString()
    assert.equal((await labCli(['calls', 'ast4', '3', '--duration', '60'])).code, 0)
    const r = await labSsh('ast4', 'asterisk -rx "core stop now"; echo "rc=$?"')
    assert.equal(r.stdout, 'rc=0\n')
    assert.deepEqual(callSummary('ast4', since), {started: 3, finished: 0, cut: 3, refused: 0, open: 0})
    assert.ok(callSummaryReasons('ast4', since).every((x) => x === 'core stop now'))
    assert.equal((await labSsh('ast4', 'systemctl start asterisk')).code, 0)
  })

  test('faults and heal: sshd-down, sshd-hang, hostkey-change, etcd-down, asterisk-down', async () => {
    try {
      assert.equal((await labCli(['fault', 'ast4', 'sshd-down'])).code, 0)
      let r = await labSsh('ast4', 'true')
      assert.equal(r.code, 255)
      assert.match(r.stderr, /Connection refused/)
      await labCli(['heal', 'ast4'])
      assert.equal((await labSsh('ast4', 'true')).code, 0)

      assert.equal((await labCli(['fault', 'ast4', 'sshd-hang'])).code, 0)
      r = await labSsh('ast4', 'true', {sshOptions: ['-o', 'ConnectTimeout=2']})
      assert.equal(r.code, 255)
      assert.match(r.stderr, /timed out/)
      await labCli(['heal', 'ast4'])
      assert.equal((await labSsh('ast4', 'true')).code, 0)

      assert.equal((await labCli(['fault', 'ast4', 'hostkey-change'])).code, 0)
      r = await labSsh('ast4', 'true')
      assert.equal(r.code, 255)
      assert.match(r.stderr, /Host key verification failed/)
      const status = await labCli(['status', '--json'])
      assert.equal(status.code, 1)
      assert.deepEqual(
        (JSON.parse(status.stdout) as {hosts: Array<{name: string; faults: string[]}>}).hosts.find(
          (h) => h.name === 'ast4',
        )!.faults,
        ['hostkey-change'],
      )
      await labCli(['heal', 'ast4'])
      assert.equal((await labSsh('ast4', 'true')).code, 0)

      assert.equal((await labCli(['fault', 'ast1', 'etcd-down'])).code, 0)
      r = await labSsh('ast1', 'systemctl is-active etcd2')
      assert.equal(r.stdout, 'inactive\n')
      assert.equal((await labCli(['fault', 'ast1', 'asterisk-down'])).code, 0)
      r = await labSsh('ast1', 'asterisk -rx "core show channels count"')
      assert.equal(r.code, 1)
      const heal = await labCli(['heal', 'ast1'])
      assert.match(heal.stdout, /healed etcd-down, asterisk-down/)
      r = await labSsh('ast1', 'systemctl is-active etcd2 asterisk')
      assert.equal(r.stdout, 'active\nactive\n')

      const bad = await labCli(['fault', 'kam1', 'etcd-down'])
      assert.equal(bad.code, 2)
      assert.match(bad.stderr, /kam1 runs no etcd/)
    } finally {
      await labCli(['heal', 'all'])
    }
  })

  test('after all that, the lab is healthy again (status exit 0)', async () => {
    await restoreLab()
    const r = await labCli(['status'])
    assert.equal(r.code, 0, r.stdout)
    assert.match(r.stdout, /^healthy$/m)
  })
})

function callSummaryReasons(host: string, since: string): string[] {
  const file = path.join(labHost(host).dir, 'log', 'asterisk', 'calls.jsonl')
  return readFileSync(file, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as {time: string; event: string; reason?: string})
    .filter((e) => e.time >= since && e.event === 'end')
    .map((e) => e.reason ?? '')
}
