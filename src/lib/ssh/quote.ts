/**
 * The one place where values become part of a remote shell command. Everything hactl interpolates
 * into a command string (paths, keys, URLs, user input) goes through `shellQuote` or `sh`.
 */

/**
 * Quote one argument for a POSIX shell: wrap it in single quotes, and write each embedded single
 * quote as `'\''`. Inside single quotes no character is special, so this is correct for any byte
 * string except NUL, which no shell argument can carry (refused rather than silently truncated).
 * Words made only of characters that are never special are left bare, so logged commands stay
 * readable (`systemctl stop etcd2`, not `'systemctl' 'stop' 'etcd2'`). `=` and `~` are not in that set:
 * zsh expands a leading `=word` and every shell a leading `~`.
 */
export function shellQuote(arg: string): string {
  if (typeof arg !== 'string') throw new TypeError(`shellQuote expects a string, got ${typeof arg}`)
  if (arg.includes('\0')) throw new TypeError('shellQuote: a shell argument cannot contain a NUL byte')
  if (arg !== '' && /^[A-Za-z0-9_@%+:,./-]+$/.test(arg)) return arg
  return `'${arg.replaceAll("'", `'\\''`)}'`
}

/** A value `sh` inserts without quoting: for a fragment that is itself built with `sh`. */
export class RawShell {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text
  }
}

/** Mark an already-quoted fragment (built with `sh` or `shellQuote`) so `sh` inserts it as is. */
export function raw(text: string): RawShell {
  return new RawShell(text)
}

type ShellValue = string | number | bigint | RawShell | readonly (string | number | bigint)[]

/**
 * Tagged template that quotes every interpolated value: sh`rm -rf ${dir}/member` is safe whatever
 * `dir` holds. Arrays become several quoted words; numbers are written as is; `raw(...)` fragments
 * are inserted unchanged. Anything else (undefined, objects) is a bug and throws.
 */
export function sh(strings: TemplateStringsArray, ...values: ShellValue[]): string {
  let out = strings[0] ?? ''
  values.forEach((value, i) => {
    out += quoteValue(value) + (strings[i + 1] ?? '')
  })
  return out
}

function quoteValue(value: ShellValue): string {
  if (value instanceof RawShell) return value.text
  if (typeof value === 'string') return shellQuote(value)
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new TypeError(`sh: cannot interpolate ${value}`)
    return shellQuote(String(value))
  }
  if (typeof value === 'bigint') return String(value)
  if (Array.isArray(value)) return value.map((v) => quoteValue(v)).join(' ')
  throw new TypeError(`sh: cannot interpolate a value of type ${value === null ? 'null' : typeof value}`)
}

/**
 * Run `command` through `sudo -n sh -c` when it must be privileged and the login user is not root.
 * `-n` makes sudo fail at once instead of waiting for a password nobody will type.
 */
export function becomeCommand(command: string, user: string, become: boolean): string {
  if (!become || user === 'root') return command
  return `sudo -n sh -c ${shellQuote(command)}`
}
