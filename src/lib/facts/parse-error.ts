import {HactlError} from '../errors.js'

/**
 * Remote output that a fact parser does not recognise. It usually means a version of Asterisk or
 * Kamailio that prints something else, or a wrapper (`docker exec ...`) that added noise, so the
 * message carries the start of the text: that is what the operator needs to see to tell which.
 */
export class FactParseError extends HactlError {
  /** Which parser refused (`core show channels count`, `kamcmd dispatcher.list`, ...). */
  readonly fact: string
  /** The first few hundred characters of the refused text. */
  readonly excerpt: string

  constructor(fact: string, problem: string, text: string) {
    const excerpt = excerptOf(text)
    super(`cannot parse the output of ${fact}: ${problem}${excerpt ? `\n${excerpt}` : ' (empty output)'}`)
    this.fact = fact
    this.excerpt = excerpt
  }
}

function excerptOf(text: string): string {
  const trimmed = text.trim()
  return trimmed.length > 300 ? `${trimmed.slice(0, 300)}…` : trimmed
}

/**
 * Remove ANSI colour sequences and carriage returns. Asterisk colours its CLI output when it thinks
 * it talks to a terminal, and a `ssh -t` or `docker exec -t` wrapper turns newlines into CRLF; a
 * parser should see neither.
 */
export function cleanCliText(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/\u001B\[[0-9;?]*[A-Za-z]/g, '').replace(/\r/g, '')
}
