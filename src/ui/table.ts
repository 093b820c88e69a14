/**
 * Tables for human output (cli-table3, imported when a table is drawn). The default is borderless
 * aligned columns, easy to read and to cut with awk; `border: true` draws the box.
 */

export type Cell = string | number | boolean | null | undefined

export interface TableOptions {
  border?: boolean
  /** Per column; default left. */
  align?: Array<'left' | 'right' | 'center'>
}

export async function renderTable(
  head: readonly string[],
  rows: readonly (readonly Cell[])[],
  opts: TableOptions = {},
): Promise<string> {
  const {default: Table} = await import('cli-table3')
  const chars = opts.border
    ? {}
    : {
        top: '',
        'top-mid': '',
        'top-left': '',
        'top-right': '',
        bottom: '',
        'bottom-mid': '',
        'bottom-left': '',
        'bottom-right': '',
        left: '',
        'left-mid': '',
        mid: '',
        'mid-mid': '',
        right: '',
        'right-mid': '',
        middle: '  ',
      }
  const table = new Table({
    head: [...head],
    chars,
    // Colours are the caller's business (chalk honours NO_COLOR); cli-table3's own would not.
    style: {
      head: [],
      border: [],
      'padding-left': opts.border ? 1 : 0,
      'padding-right': opts.border ? 1 : 0,
      compact: true,
    },
    ...(opts.align ? {colAligns: opts.align} : {}),
  })
  for (const r of rows) table.push(r.map((c) => (c === null || c === undefined ? '' : String(c))))
  const text = table.toString()
  // Borderless rows end in padding; trailing spaces only get in the way of diff and grep.
  return opts.border ? text : text.replace(/[ \t]+$/gm, '')
}
