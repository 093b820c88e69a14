/**
 * Per-host progress on stderr: on a terminal, a listr2 tree with one row per host (spinner, then
 * ✔/✖); otherwise one plain line per change, so logs and CI output stay readable. listr2 is
 * imported only when a terminal will show it.
 */

export interface HostProgress {
  /** The host is being worked on; `text` says what it is doing now. */
  update(host: string, text: string): void
  succeed(host: string, text?: string): void
  fail(host: string, text?: string): void
  /** Nothing was done on the host (e.g. a step before it failed). */
  skip(host: string, text?: string): void
  /** Take the display off the screen while `fn` runs (a prompt), then put it back. */
  pause<T>(fn: () => Promise<T>): Promise<T>
}

export interface ProgressOptions {
  /** Where rows go (default process.stderr). */
  stream?: NodeJS.WriteStream
  /** Force the tree (true) or plain lines (false); default: whether `stream` is a terminal. */
  tty?: boolean
  /** false: show nothing at all (e.g. --json in a pipeline). Default true. */
  enabled?: boolean
}

type Final = {state: 'ok' | 'failed' | 'skipped'; text?: string}

/**
 * Run `fn` with a progress display for `hosts` (row labels, in display order). Rows that `fn`
 * leaves unfinished are shown as skipped when it returns. Whatever `fn` returns or throws is passed
 * through; the display is torn down first so later output does not mix with it.
 */
export async function withHostProgress<T>(
  hosts: readonly string[],
  fn: (progress: HostProgress) => Promise<T>,
  opts: ProgressOptions = {},
): Promise<T> {
  const stream = opts.stream ?? process.stderr
  if (opts.enabled === false || hosts.length === 0) return fn(silent)
  // listr2 sizes rows from stdout's width; a terminal that reports no width (some ptys, CI
  // runners) would get one character per line, so those get plain lines too.
  const tty = opts.tty ?? (Boolean(stream.isTTY) && hasWidth(stream) && hasWidth(process.stdout))
  if (!tty) return fn(plainProgress(stream))
  return withListr(hosts, fn, stream)
}

const silent: HostProgress = {update() {}, succeed() {}, fail() {}, skip() {}, pause: (fn) => fn()}

function plainProgress(stream: NodeJS.WritableStream): HostProgress {
  const last = new Map<string, string>()
  const line = (host: string, text: string): void => {
    // Repeated updates with the same text add nothing to a log.
    if (last.get(host) === text) return
    last.set(host, text)
    stream.write(`${host}: ${oneLine(text)}\n`)
  }
  return {
    update: (host, text) => line(host, text),
    succeed: (host, text) => line(host, text ? `ok: ${text}` : 'ok'),
    fail: (host, text) => line(host, text ? `FAILED: ${text}` : 'FAILED'),
    skip: (host, text) => line(host, text ? `skipped: ${text}` : 'skipped'),
    pause: (fn) => fn(),
  }
}

async function withListr<T>(
  hosts: readonly string[],
  fn: (progress: HostProgress) => Promise<T>,
  stream: NodeJS.WriteStream,
): Promise<T> {
  const {Listr, DefaultRenderer, ListrLogger, ProcessOutput} = await import('listr2')
  // listr2 only renders its tree when stdout is a terminal; ours goes to stderr, so a renderer
  // that declares itself fine without a terminal stdout lets `hactl ... > file` keep the tree.
  let renderer: StderrRenderer | undefined
  class StderrRenderer extends DefaultRenderer {
    static override nonTTY = true
    private paused = false

    constructor(...args: ConstructorParameters<typeof DefaultRenderer>) {
      super(...args)
      renderer = this
    }

    override update(): void {
      if (!this.paused) super.update()
    }

    // listr2 holds back every write to stdout and stderr while it draws; a prompt needs the
    // terminal to itself, so clear the tree and let writes through until it is answered.
    suspend(): void {
      if (this.paused) return
      this.paused = true
      const self = this as unknown as {updater?: {clear(): void}; logger: {process: {release(): void}}}
      self.updater?.clear()
      self.logger.process.release()
    }

    unsuspend(): void {
      if (!this.paused) return
      ;(this as unknown as {logger: {process: {hijack(): void}}}).logger.process.hijack()
      this.paused = false
      this.update()
    }
  }

  interface Row {
    title: string
    setTitle?: (t: string) => void
    done?: Final
    finish?: (f: Final) => void
  }
  const rows = new Map<string, Row>(hosts.map((h) => [h, {title: h}]))
  const finish = (host: string, f: Final): void => {
    const row = rows.get(host)
    if (!row || row.done) return
    row.done = f
    row.finish?.(f)
  }
  const progress: HostProgress = {
    update(host, text) {
      const row = rows.get(host)
      if (!row || row.done) return
      row.title = `${host}: ${oneLine(text)}`
      row.setTitle?.(row.title)
    },
    succeed: (host, text) => finish(host, {state: 'ok', text}),
    fail: (host, text) => finish(host, {state: 'failed', text}),
    skip: (host, text) => finish(host, {state: 'skipped', text}),
    pause: async (fn) => {
      // One prompt at a time; the display comes back after the last one.
      const run = pauseChain.then(async () => {
        renderer?.suspend()
        try {
          return await fn()
        } finally {
          renderer?.unsuspend()
        }
      })
      pauseChain = run.catch(() => undefined)
      return run
    },
  }
  let pauseChain: Promise<unknown> = Promise.resolve()

  const listr = new Listr(
    [...rows.entries()].map(([host, row]) => ({
      title: row.title,
      task: async (_ctx: unknown, task: {title: string | undefined; skip: (m?: string) => void}) => {
        row.setTitle = (t) => {
          task.title = t
        }
        task.title = row.title
        const f = row.done ?? (await new Promise<Final>((resolve) => (row.finish = resolve)))
        if (f.state === 'ok') task.title = f.text ? `${host}: ${oneLine(f.text)}` : host
        else if (f.state === 'skipped') task.skip(f.text ? `${host}: ${oneLine(f.text)}` : `${host}: skipped`)
        else {
          task.title = host
          throw new Error(f.text ? oneLine(f.text) : 'failed')
        }
      },
    })),
    {
      concurrent: true,
      exitOnError: false,
      registerSignalListeners: false,
      collectErrors: false,
      renderer: StderrRenderer,
      rendererOptions: {
        // Render to stderr; stdout writes meanwhile are held and replayed after the tree.
        logger: new ListrLogger({processOutput: new ProcessOutput(stream, process.stdout)}),
        collapseErrors: false,
        showErrorMessage: true,
      },
    },
  )
  const shown = listr.run().catch(() => undefined)
  try {
    return await fn(progress)
  } finally {
    for (const host of rows.keys()) finish(host, {state: 'skipped'})
    await shown
  }
}

function hasWidth(s: NodeJS.WriteStream): boolean {
  return !s.isTTY || (s.columns ?? 0) >= 20
}

function oneLine(text: string): string {
  const first = text.split('\n').find((l) => l.trim() !== '') ?? ''
  return first.length > 200 ? `${first.slice(0, 197)}...` : first.trim()
}
