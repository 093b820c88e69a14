import type {Hook} from '@oclif/core'

/**
 * An unknown command is a usage error like any other: one `Error:` line, a hint with the closest
 * commands, exit 2 (oclif's own handler prints a differently shaped message).
 */
const hook: Hook<'command_not_found'> = async function (opts) {
  const id = opts.id.replaceAll(':', ' ')
  const ids = opts.config.commandIDs.map((c) => c.replaceAll(':', ' '))
  const first = id.split(' ')[0] ?? ''
  const near = ids.filter((c) => c.startsWith(first) || c.split(' ')[0] === first).slice(0, 5)
  process.stderr.write(`Error: unknown command "${id}"\n`)
  process.stderr.write(
    `Hint: ${near.length > 0 ? `did you mean: ${near.map((c) => `${opts.config.bin} ${c}`).join(', ')}? ` : ''}see ${opts.config.bin} --help\n`,
  )
  process.exit(2)
}

export default hook
