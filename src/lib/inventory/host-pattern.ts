/**
 * Ansible host patterns as inventories write them: `coreos0`, `coreos0:2222`, `10.0.0.1:22`,
 * `[fe80::1]:22`, `fe80::1`, and ranges `coreos[0:5]`, `web[01:10:2].example.com`, `db-[a:c]`
 * (inclusive; a zero-padded start pads every number to its width; several ranges multiply).
 */

export interface ExpandedPattern {
  hosts: string[]
  port?: number
}

/** More hosts than this from one pattern is a typo, not an inventory. */
export const MAX_RANGE_HOSTS = 10_000

export class HostPatternError extends Error {}

const LETTERS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'

export function expandHostPattern(pattern: string): ExpandedPattern {
  const p = pattern.trim()
  if (p === '') throw new HostPatternError('empty host pattern')
  if (p === '---') throw new HostPatternError('"---" is not a host (is this a YAML file read as INI?)')
  const {host, port} = splitPort(p)
  return {hosts: expandRanges(host), ...(port === undefined ? {} : {port})}
}

function splitPort(p: string): {host: string; port?: number} {
  // [v6addr] or [v6addr]:port
  const v6 = /^\[([0-9a-fA-F:.]*:[0-9a-fA-F:.]*:[0-9a-fA-F:.]*)\](?::(\d*))?$/.exec(p)
  if (v6) return {host: v6[1]!, ...portOf(p, v6[2])}
  const colons = outsideBrackets(p).filter((c) => c.ch === ':')
  if (colons.length === 0) return {host: p}
  // Two or more colons: a bare IPv6 address (which cannot carry a port without brackets).
  if (colons.length >= 2) return {host: p}
  const at = colons[0]!.i
  return {host: p.slice(0, at), ...portOf(p, p.slice(at + 1))}
}

function portOf(pattern: string, text: string | undefined): {port?: number} {
  if (text === undefined) return {}
  if (!/^\d+$/.test(text)) {
    throw new HostPatternError(
      text === ''
        ? `host pattern "${pattern}" ends in ":" without a port`
        : `host pattern "${pattern}": port "${text}" is not a number`,
    )
  }
  const port = Number(text)
  if (port < 1 || port > 65535)
    throw new HostPatternError(`host pattern "${pattern}": port ${port} is outside 1-65535`)
  return {port}
}

function outsideBrackets(p: string): Array<{ch: string; i: number}> {
  const out: Array<{ch: string; i: number}> = []
  let depth = 0
  for (let i = 0; i < p.length; i++) {
    const ch = p[i]!
    if (ch === '[') depth++
    else if (ch === ']') depth = Math.max(0, depth - 1)
    else if (depth === 0) out.push({ch, i})
  }
  return out
}

function expandRanges(host: string): string[] {
  const open = host.indexOf('[')
  if (open < 0) {
    if (host.includes(']')) throw new HostPatternError(`host pattern "${host}" has "]" without "["`)
    return [host]
  }
  const close = host.indexOf(']', open)
  if (close < 0) throw new HostPatternError(`host pattern "${host}" has "[" without "]"`)
  const head = host.slice(0, open)
  const tail = host.slice(close + 1)
  const values = expandRange(host.slice(open + 1, close), host)
  const rest = expandRanges(tail)
  if (values.length * rest.length > MAX_RANGE_HOSTS) {
    throw new HostPatternError(`host pattern "${host}" expands to more than ${MAX_RANGE_HOSTS} hosts`)
  }
  return values.flatMap((v) => rest.map((r) => `${head}${v}${r}`))
}

function expandRange(range: string, pattern: string): string[] {
  const parts = range.split(':')
  if (parts.length < 2 || parts.length > 3) {
    throw new HostPatternError(
      `host pattern "${pattern}": a range is [begin:end] or [begin:end:step], not [${range}]`,
    )
  }
  const beg = parts[0] === '' ? '0' : parts[0]!
  const end = parts[1]!
  const stepText = parts[2] ?? '1'
  if (end === '') throw new HostPatternError(`host pattern "${pattern}": the range [${range}] has no end`)
  if (!/^\d+$/.test(stepText) || Number(stepText) < 1) {
    throw new HostPatternError(`host pattern "${pattern}": the step in [${range}] must be a positive number`)
  }
  const step = Number(stepText)
  const out: string[] = []
  if (/^[a-zA-Z]$/.test(beg) && /^[a-zA-Z]$/.test(end)) {
    const b = LETTERS.indexOf(beg)
    const e = LETTERS.indexOf(end)
    if (b > e) throw new HostPatternError(`host pattern "${pattern}": the range [${range}] runs backwards`)
    for (let i = b; i <= e; i += step) out.push(LETTERS[i]!)
    return out
  }
  if (!/^\d+$/.test(beg) || !/^\d+$/.test(end)) {
    throw new HostPatternError(
      `host pattern "${pattern}": [${range}] is neither a number range nor a single-letter range`,
    )
  }
  const padded = beg.length > 1 && beg.startsWith('0')
  if (padded && beg.length !== end.length) {
    throw new HostPatternError(
      `host pattern "${pattern}": a zero-padded range needs begin and end of the same width, not [${range}]`,
    )
  }
  const b = Number(beg)
  const e = Number(end)
  if (b > e) throw new HostPatternError(`host pattern "${pattern}": the range [${range}] runs backwards`)
  if ((e - b) / step + 1 > MAX_RANGE_HOSTS) {
    throw new HostPatternError(`host pattern "${pattern}" expands to more than ${MAX_RANGE_HOSTS} hosts`)
  }
  for (let i = b; i <= e; i += step) out.push(padded ? String(i).padStart(beg.length, '0') : String(i))
  return out
}
