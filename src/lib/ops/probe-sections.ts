import {shellQuote} from '../ssh/quote.js'

/**
 * Scripts that gather several facts from a host in one SSH round trip (the status probe, the
 * rediscover preflight): each command's output sits between a marker line with its name and one
 * with its exit status, so one failing command never hides the others.
 */

export interface ProbeSection {
  output: string
  code: number
}

/** One section of a probe script. */
export function probeSection(mark: string, name: string, command: string): string {
  // `</dev/null` keeps a probe from waiting on stdin; 2>&1 because Asterisk and kamcmd answer on either.
  return `echo ${shellQuote(mark + name)}; ( ${command} ) </dev/null 2>&1; echo "${mark}rc $?"`
}

/** Split a probe's output back into its sections. A section without its rc line was cut off. */
export function parseProbeSections<S extends string>(
  stdout: string,
  mark: string,
): Partial<Record<S, ProbeSection>> {
  const out: Partial<Record<S, ProbeSection>> = {}
  let current: S | undefined
  let lines: string[] = []
  for (const line of stdout.split('\n')) {
    if (line.startsWith(mark)) {
      const rest = line.slice(mark.length)
      if (rest.startsWith('rc ') && current) {
        out[current] = {output: lines.join('\n'), code: Number(rest.slice(3))}
        current = undefined
      } else {
        current = rest as S
      }
      lines = []
      continue
    }
    if (current) lines.push(line)
  }
  return out
}
