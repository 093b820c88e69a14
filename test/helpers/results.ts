/**
 * Where the reliability tests (bad-input corpus, no-injection property, fault matrix) leave what
 * they saw, for `node scripts/reliability-report.mjs` to turn into docs/reliability.md.
 * test/.results/ is git-ignored: the report, not the raw results, is what gets committed.
 */
import {mkdirSync, writeFileSync} from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

export const RESULTS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '.results')

export function writeResults(name: string, data: unknown): string {
  mkdirSync(RESULTS_DIR, {recursive: true})
  const file = path.join(RESULTS_DIR, `${name}.json`)
  writeFileSync(
    file,
    `${JSON.stringify({generatedAt: new Date().toISOString(), ...(data as object)}, null, 2)}\n`,
  )
  return file
}

/** `a b 'c d'` for a report: each word shell-quoted, long words and long lists shortened. */
export function displayArgv(argv: readonly string[], max = 100): string {
  const words = argv.length > 8 ? [...argv.slice(0, 6), `... (${argv.length} arguments)`] : [...argv]
  const shown = words
    .map((w) => (w.length > 40 ? `${w.slice(0, 20)}...(${w.length} chars)` : w))
    .map((w) => (w.startsWith('... (') ? w : /^[A-Za-z0-9_@%+:,./=-]+$/.test(w) ? w : JSON.stringify(w)))
    .join(' ')
  return shown.length > max ? `${shown.slice(0, max - 3)}...` : shown
}
