import {createRequire} from 'node:module'
import {parseFlagDuration} from './lib/config/rules.js'
import type {HactlConfig, ResolvedNode} from './lib/config/load.js'
import type {PreflightEtcd} from './lib/ops/rediscover.js'
import type {EtcdFacts} from './lib/ops/status.js'
import type {PassphrasePrompt, SshPool} from './lib/ssh/pool.js'

/**
 * The early start of the commands that spend their time on SSH and etcd (`status`, `node drain`,
 * `node undrain`, `cluster rediscover`, and `exec`, which only connects early), run by bin/run.js
 * before oclif loads.
 *
 * A run of these is mostly module loading (oclif, etcd3 with grpc-js and protobufjs: CPU work) and
 * SSH handshakes (waiting on the network and on the hosts). Done one after the other, as oclif
 * would, they add up; so this reads hactl.yaml (through the config cache), opens the SSH
 * connections the command is going to use, and only then loads the modules, in small steps, so that
 * the handshakes in flight get the event loop between the steps.
 *
 * It changes nothing and prints nothing. Connecting is read-only, and it connects only to the
 * hosts the command itself connects to first (`lib/ops/targets.ts`). For `status` and the
 * preflight of `cluster rediscover` it also sends the read-only probe the command sends first
 * (`SshPool.prefetch`), so the hosts answer it while this process is still loading, and their
 * (read-only) etcd pass, once etcd3 has loaded. The command adopts the config
 * and the connections (`BaseCommand.hactlConfig`, `sshPool`) when its parsed flags agree; the
 * `--verbose` lines of the connections are held until then, and a passphrase prompt waits for it.
 * When the flags do not agree, or the command ends without adopting them, the connections are
 * closed unused. On anything unexpected on the command line (a flag this module does not know,
 * `--help`, a bad node name, a config error) it does nothing, and oclif runs the command as ever.
 */

type CommandId = 'status' | 'node drain' | 'node undrain' | 'cluster rediscover' | 'exec'

interface Grammar {
  /** Flags that take a value. */
  value: string[]
  /** Flags without a value. */
  bool: string[]
  positionals: boolean
  /** Everything after `--` is the remote command (exec): required, and not read here. */
  rest?: boolean
}

const ALIASES: Record<string, string> = {'-c': '--config', '-v': '--verbose', '-y': '--yes'}
const BASE: Grammar = {
  value: ['--config', '--concurrency'],
  bool: ['--verbose', '--yes', '--json', '--color', '--no-color'],
  positionals: false,
}
const COMMANDS: Record<CommandId, Grammar> = {
  status: {value: ['--interval'], bool: ['--watch'], positionals: true},
  'node drain': {
    value: ['--timeout', '--reason', '--wait-lock'],
    bool: ['--force', '--dry-run'],
    positionals: true,
  },
  'node undrain': {value: ['--timeout', '--wait-lock'], bool: ['--dry-run'], positionals: true},
  // --size, --discovery, --discovery-service and the timeouts are left to oclif and the command.
  'cluster rediscover': {value: [], bool: ['--restore', '--no-restore', '--dry-run'], positionals: false},
  // The command itself is never sent early (it may change anything): only the connections open.
  exec: {value: ['--timeout'], bool: [], positionals: true, rest: true},
}

export interface EarlyArgs {
  command: CommandId
  values: Map<string, string>
  bools: Set<string>
  positionals: string[]
}

/**
 * What the command line asks for, or undefined when the early start should stay out of the way.
 * Deliberately narrower than oclif's parser: whatever it does not recognise is left to oclif.
 */
export function parseEarlyArgs(argv: string[]): EarlyArgs | undefined {
  const command = (Object.keys(COMMANDS) as CommandId[]).find((id) => {
    const words = id.split(' ')
    return words.every((w, i) => argv[i] === w)
  })
  if (!command) return undefined
  const grammar = COMMANDS[command]
  const values = new Map<string, string>()
  const bools = new Set<string>()
  const positionals: string[] = []
  let rest = argv.slice(command.split(' ').length)
  if (grammar.rest) {
    const dash = rest.indexOf('--')
    // No command after --: the command says what is missing.
    if (dash === -1 || rest.slice(dash + 1).join(' ').trim() === '') return undefined
    rest = rest.slice(0, dash)
  }
  for (let i = 0; i < rest.length; i++) {
    const token = rest[i]!
    if (!token.startsWith('-')) {
      if (!grammar.positionals) return undefined
      positionals.push(token)
      continue
    }
    const eq = token.startsWith('--') ? token.indexOf('=') : -1
    const name = ALIASES[token] ?? (eq === -1 ? token : token.slice(0, eq))
    if (BASE.value.includes(name) || grammar.value.includes(name)) {
      const value = eq === -1 ? rest[++i] : token.slice(eq + 1)
      // A value that looks like a flag, or a flag given twice: let oclif say what it makes of it.
      if (value === undefined || value.startsWith('-') || values.has(name)) return undefined
      values.set(name, value)
    } else if ((BASE.bool.includes(name) || grammar.bool.includes(name)) && eq === -1) {
      bools.add(name)
      // `status --watch 5` is short for `--watch --interval 5`.
      if (name === '--watch' && /^\d+$/.test(rest[i + 1] ?? '')) values.set('--interval', rest[++i]!)
    } else {
      return undefined
    }
  }
  if (!valuesValid(values, bools)) return undefined
  return {command, values, bools, positionals}
}

/** Flag values oclif or the command would refuse (before connecting anywhere). */
function valuesValid(values: Map<string, string>, bools: Set<string>): boolean {
  const int = (v: string | undefined, max: number) =>
    v === undefined || (/^\d+$/.test(v) && Number(v) >= 1 && Number(v) <= max)
  const duration = (v: string | undefined) => v === undefined || parseFlagDuration(v) !== undefined
  return (
    int(values.get('--concurrency'), 1000) &&
    int(values.get('--interval'), 3600) &&
    duration(values.get('--timeout')) &&
    duration(values.get('--wait-lock')) &&
    (values.get('--reason')?.length ?? 0) <= 1024 &&
    !(bools.has('--watch') && bools.has('--json')) &&
    !(bools.has('--color') && bools.has('--no-color')) &&
    !(bools.has('--restore') && bools.has('--no-restore'))
  )
}

interface Early {
  /** The config file, resolved. */
  file: string
  config: HactlConfig
  pool?: SshPool
  concurrency?: number
  verbose?: boolean
  adopted: boolean
  /** status, rediscover: the (read-only) etcd pass the command starts with, begun once etcd3 loaded. */
  etcd?: EarlyEtcd
  /** The command has asked for the etcd pass (the early start must not start one after). */
  etcdAsked?: boolean
  /** --verbose lines of the pool, held until a command adopts it. */
  held: string[]
  /** Settled when the pool is adopted (resolves) or discarded (rejects). */
  gate: Promise<void>
  openGate(): void
  closeGate(): void
}

let early: Early | undefined

/**
 * Start early, when the command line is one of the commands above. Resolves when oclif may be
 * loaded; the rest of the modules keep loading in the background. Never rejects.
 */
export async function prestart(argv: string[]): Promise<void> {
  try {
    const args = parseEarlyArgs(argv)
    if (!args) return
    const started = await startConnections(args)
    if (!started) return
    const steps = commandSteps(args.command, args.bools.has('--json'))
    const etcdFirst = args.command === 'status' || args.command === 'cluster rediscover'
    if (etcdFirst) {
      // etcd3 first: the command's etcd pass (it only reads) then waits on etcd while oclif loads.
      await warmUp(steps.etcd)
      await startEtcdPass(args.command)
    }
    await warmUp(oclifSteps())
    void (async () => {
      await warmUp(steps.own)
      if (!etcdFirst) await warmUp(steps.etcd)
      await warmUp(steps.late)
    })()
  } catch {
    // The command does it all itself, and reports what went wrong.
  }
}

async function startConnections(args: EarlyArgs): Promise<boolean> {
  const {loadConfigCached} = await import('./lib/config/cache.js')
  const flag = args.values.get('--config')
  const config = await loadConfigCached({flag})
  // loadConfigCached found the file (findConfigFile) and returns its resolved path.
  const file = config.file
  let openGate = () => {}
  let closeGate = () => {}
  const gate = new Promise<void>((resolve, reject) => {
    openGate = resolve
    closeGate = () => reject(new Error('the early SSH connections were not used'))
  })
  gate.catch(() => undefined)
  early = {file, config, adopted: false, held: [], gate, openGate, closeGate}

  const nodes = await nodesFor(args, config)
  if (nodes.length === 0) return false
  const concurrency = args.values.has('--concurrency')
    ? Number(args.values.get('--concurrency'))
    : config.concurrency
  const verbose = args.bools.has('--verbose')
  const e = early
  const interactive = Boolean(process.stdin.isTTY && process.stderr.isTTY)
  const askPassphrase: PassphrasePrompt = async (keyFile, attempt) => {
    await e.gate
    const {askPassphrase: ask} = await import('./ui/passphrase.js')
    return ask(keyFile, attempt)
  }
  const {SshPool} = await import('./lib/ssh/pool.js')
  e.pool = new SshPool(config, {
    concurrency,
    ...(verbose ? {log: (line: string) => (e.adopted ? writeSshLog(line) : void e.held.push(line))} : {}),
    interactive,
    ...(interactive ? {askPassphrase} : {}),
  })
  e.concurrency = concurrency
  e.verbose = verbose
  for (const node of nodes) e.pool.connect(node).catch(() => undefined)
  await prefetchFacts(args.command, config, e.pool, nodes)
  return true
}

/**
 * The read-only facts the command gathers first, asked as soon as each connection is up: the
 * hosts work on them while this process loads its modules. Not for drain and undrain: they read
 * their facts only once they hold the cluster lock.
 */
async function prefetchFacts(
  command: CommandId,
  config: HactlConfig,
  pool: SshPool,
  nodes: ResolvedNode[],
): Promise<void> {
  if (command === 'status') {
    const {buildStatusProbe, STATUS_PROBE_RUN} = await import('./lib/ops/status-probe.js')
    for (const node of nodes) pool.prefetch(node, buildStatusProbe(config, node), STATUS_PROBE_RUN)
  } else if (command === 'cluster rediscover') {
    const {wipePaths} = await import('./lib/etcd/paths.js')
    const {buildPreflightScript, PREFLIGHT_RUN} = await import('./lib/ops/rediscover-probe.js')
    const script = buildPreflightScript(config, wipePaths(config.etcd.dataDir, config.etcd.wipe))
    for (const node of nodes) pool.prefetch(node, script, PREFLIGHT_RUN)
  }
}

/** The hosts the command connects to first; [] when this module cannot tell for sure. */
async function nodesFor(args: EarlyArgs, config: HactlConfig): Promise<ResolvedNode[]> {
  const {selectNodes} = await import('./lib/select.js')
  const targets = await import('./lib/ops/targets.js')
  switch (args.command) {
    case 'status': {
      const shown = args.positionals.length > 0 ? selectNodes(config, args.positionals) : config.nodes
      return targets.statusProbeNodes(config, shown)
    }
    case 'node drain':
    case 'node undrain': {
      const chosen = selectNodes(config, args.positionals)
      // The command refuses these before connecting anywhere.
      if (chosen.length === 0 || chosen.some((n) => !n.roles.includes('asterisk'))) return []
      const force = args.command === 'node drain' && args.bools.has('--force')
      if (force && !args.bools.has('--yes') && !args.bools.has('--dry-run') && !interactive(args)) return []
      const min = args.command === 'node drain' ? config.asterisk.minInService : 0
      return targets.drainProbedNodes(config, chosen, min)
    }
    case 'cluster rediscover': {
      // Without --yes or --dry-run and no terminal to ask on, the command refuses before connecting.
      if (!args.bools.has('--yes') && !args.bools.has('--dry-run') && !interactive(args)) return []
      return config.nodes.filter((n) => n.roles.includes('etcd'))
    }
    case 'exec':
      // exec connects to every node it selects (the pool's concurrency caps how many at once).
      return args.positionals.length === 0 ? [] : selectNodes(config, args.positionals)
  }
}

/** BaseCommand.interactive: a terminal to ask on, and no --json. */
function interactive(args: EarlyArgs): boolean {
  return Boolean(process.stdin.isTTY && process.stderr.isTTY) && !args.bools.has('--json')
}

function writeSshLog(line: string): void {
  process.stderr.write(`[ssh] ${line}\n`)
}

/** The config the early start loaded, when `file` is the file it read. */
export function takeEarlyConfig(file: string): HactlConfig | undefined {
  return early && early.file === file ? early.config : undefined
}

/**
 * The early connections, when they were opened with these settings for this config; else they are
 * closed and undefined is returned.
 */
export async function adoptEarlyPool(
  config: HactlConfig,
  opts: {concurrency: number; verbose: boolean},
): Promise<SshPool | undefined> {
  const e = early
  if (!e?.pool || e.adopted) return undefined
  if (e.config !== config || e.concurrency !== opts.concurrency || e.verbose !== opts.verbose) {
    await discardEarly()
    return undefined
  }
  e.adopted = true
  for (const line of e.held.splice(0)) writeSshLog(line)
  e.openGate()
  return e.pool
}

type EarlyEtcd =
  | {command: 'status'; facts: Promise<EtcdFacts>}
  | {command: 'cluster rediscover'; facts: Promise<PreflightEtcd>}

/** Start the command's etcd pass, unless the command has asked for it already. */
async function startEtcdPass(command: CommandId): Promise<void> {
  const e = early
  if (!e?.pool || e.etcdAsked) return
  if (command === 'status') {
    const {statusEtcdFacts} = await import('./lib/ops/status.js')
    if (!e.etcdAsked) e.etcd = {command, facts: statusEtcdFacts(e.config, e.pool)}
  } else if (command === 'cluster rediscover') {
    const {preflightEtcdFacts} = await import('./lib/ops/rediscover.js')
    const nodes = e.config.nodes.filter((n) => n.roles.includes('etcd'))
    if (!e.etcdAsked) e.etcd = {command, facts: preflightEtcdFacts(e.config, e.pool, nodes)}
  }
}

/** The etcd pass the early start began for this config, if any; asked once. */
function takeEarlyEtcd(config: HactlConfig): EarlyEtcd | undefined {
  const e = early
  if (!e?.adopted || e.config !== config || e.etcdAsked) return undefined
  e.etcdAsked = true
  return e.etcd
}

/** status: its etcd pass, when the early start began it. */
export function takeEarlyEtcdFacts(config: HactlConfig): Promise<EtcdFacts> | undefined {
  const pass = takeEarlyEtcd(config)
  return pass?.command === 'status' ? pass.facts : undefined
}

/** cluster rediscover: the etcd pass of its preflight, when the early start began it. */
export function takeEarlyPreflightEtcd(config: HactlConfig): Promise<PreflightEtcd> | undefined {
  const pass = takeEarlyEtcd(config)
  return pass?.command === 'cluster rediscover' ? pass.facts : undefined
}

/** Close the early connections unless a command adopted them. */
export async function discardEarly(): Promise<void> {
  const e = early
  if (!e) return
  // An etcd pass nobody took: the preflight's leaves its client open for the lock; close it.
  if (e.etcd && !e.etcdAsked) {
    e.etcdAsked = true
    if (e.etcd.command === 'cluster rediscover') void e.etcd.facts.then((r) => r.handle?.close())
  }
  if (e.adopted) return
  early = undefined
  e.closeGate()
  await e.pool?.close().catch(() => undefined)
}

// --- Loading modules in small steps -------------------------------------------------------------

type Step = () => unknown

/**
 * Run each step in its own turn of the event loop. A step that fails is skipped: whoever needs
 * that module loads it again and reports the problem.
 */
async function warmUp(steps: Step[]): Promise<void> {
  for (const step of steps) {
    await new Promise<void>((resolve) => setImmediate(resolve))
    try {
      await step()
    } catch {
      // See above.
    }
  }
}

const require = createRequire(import.meta.url)

/** `require` as seen from inside a package, for its own dependencies (npm may nest them). */
function requireFrom(pkg: string, from: NodeJS.Require = require): NodeJS.Require {
  return createRequire(from.resolve(pkg))
}

/**
 * oclif in pieces of a few tens of milliseconds: its heaviest dependencies first, then the parts
 * hactl uses (never its index, see bin/run.js). The pieces only fill the module cache.
 */
function oclifSteps(): Step[] {
  const oclif = requireFrom('@oclif/core')
  return [
    ...['debug', 'ansis', 'wrap-ansi', 'ejs', 'minimatch', 'tinyglobby'].map((m) => () => oclif(m)),
    ...['errors', 'config', 'parser', 'help', 'flags', 'args', 'command', 'execute'].map(
      (m) => () => require(`@oclif/core/${m}`),
    ),
  ]
}

/** What the command itself loads, in the order it needs it: its code, then etcd3, then the rendering. */
function commandSteps(command: CommandId, json: boolean): {own: Step[]; etcd: Step[]; late: Step[]} {
  const own: Record<CommandId, string[]> = {
    status: ['./commands/status.js', './lib/ops/status.js'],
    'node drain': ['./commands/node/drain.js', './lib/ops/drain.js', './ui/drain-view.js'],
    'node undrain': ['./commands/node/undrain.js', './lib/ops/drain.js', './ui/drain-view.js'],
    'cluster rediscover': [
      './commands/cluster/rediscover.js',
      './lib/ops/rediscover.js',
      './ui/rediscover-view.js',
    ],
    exec: ['./commands/exec.js', './lib/ops/exec.js', './ui/progress.js'],
  }
  const etcd3 = requireFrom('etcd3')
  const protoLoader = requireFrom('@grpc/proto-loader', etcd3)
  const late: Record<CommandId, string[]> = {
    status: json ? [] : ['./ui/status-view.js'],
    'node drain': ['./lib/etcd/lock.js', './lib/history.js'],
    'node undrain': ['./lib/etcd/lock.js', './lib/history.js'],
    'cluster rediscover': ['./lib/etcd/lock.js', './lib/etcd/backup.js', './lib/history.js'],
    exec: [],
  }
  return {
    own: own[command].map((m) => () => import(m)),
    // exec does not use etcd.
    etcd: command === 'exec' ? [] : [
      () => import('./lib/etcd/client.js'),
      () => etcd3('@grpc/grpc-js'),
      () => protoLoader('protobufjs'),
      () => protoLoader('protobufjs/ext/descriptor'),
      () => etcd3('@grpc/proto-loader'),
      () => etcd3('cockatiel'),
      () => require('etcd3'),
    ],
    // Not chalk: it settles its colour level when it loads, and BaseCommand.init sets FORCE_COLOR
    // for --no-color and NO_COLOR first.
    late: [
      ...late[command].map((m) => () => import(m)),
      ...(command === 'status' && !json ? [() => import('cli-table3')] : []),
    ],
  }
}
