#!/usr/bin/env node
// `hactl --version` is run by scripts and shell prompts: answer it without loading oclif (which
// costs more than Node's own start-up), in exactly oclif's format.
const argv = process.argv.slice(2)
if (argv.length === 1 && (argv[0] === '--version' || argv[0] === 'version')) {
  const {readFileSync} = await import('node:fs')
  const {version} = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'))
  process.stdout.write(`hactl/${version} ${process.platform}-${process.arch} node-${process.version}\n`)
} else {
  const {execute} = await import('@oclif/core')
  await execute({dir: import.meta.url})
  // The command has ended and closed what it opened. A library handle left behind (a gRPC channel
  // or lease timer of etcd3 winding down) must not keep the operator waiting: leave within 1 s.
  setTimeout(() => process.exit(), 1000).unref()
}
