#!/usr/bin/env node
// `hactl --version` is run by scripts and shell prompts: answer it without loading oclif (which
// costs more than Node's own start-up), in exactly oclif's format.
const argv = process.argv.slice(2)
if (argv.length === 1 && (argv[0] === '--version' || argv[0] === 'version')) {
  const {readFileSync} = await import('node:fs')
  const {version} = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'))
  process.stdout.write(`hactl/${version} ${process.platform}-${process.arch} node-${process.version}\n`)
} else {
  // Ctrl-C before the command has its own handling (while the early start connects and oclif
  // loads; nothing has changed yet) ends the run with 130 rather than death by signal. Once the
  // command listens for the signal itself, this one stands aside.
  const onEarlySignal = (sig) => {
    if (process.listenerCount(sig) > 1) return
    const what = sig === 'SIGINT' ? 'Interrupted' : `Got ${sig}`
    // BaseCommand.init sets the flag: before it, no command has run at all.
    process.stderr.write(globalThis.hactlCommandStarted ? `\n${what}.\n` : `\n${what} before the command started: nothing was changed.\n`)
    process.exit(130)
  }
  process.on('SIGINT', onEarlySignal)
  process.on('SIGTERM', onEarlySignal)
  // Node >= 22.1 can keep compiled code between runs; older versions start without it.
  const {default: nodeModule} = await import('node:module')
  nodeModule.enableCompileCache?.()
  // The commands that work over SSH open their connections before oclif loads (dist/prestart.js).
  const early = await import('../dist/prestart.js')
  await early.prestart(argv)
  // oclif's parts, not its index: the index also checks the Node version with semver (~25 ms),
  // which package.json's engines make moot; its other start-up check is kept here.
  try {
    process.cwd()
  } catch (error) {
    if (error.code === 'ENOENT') process.stderr.write('WARNING: current directory does not exist\n')
  }
  const {execute} = await import('@oclif/core/execute')
  try {
    await execute({dir: import.meta.url})
  } finally {
    await early.discardEarly()
  }
  // The command has ended and closed what it opened. A library handle left behind (a gRPC channel
  // or lease timer of etcd3 winding down) must not keep the operator waiting: leave within 1 s.
  setTimeout(() => process.exit(), 1000).unref()
}
