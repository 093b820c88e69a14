// Rendering of the bench results: the console/markdown tables and the generated part of
// docs/benchmarks.md (between the bench:begin and bench:end markers; the prose around them is kept).
import fs from 'node:fs'

export const BEGIN = '<!-- bench:begin (written by npm run bench; edits here are overwritten) -->'
export const END = '<!-- bench:end -->'

export function fmtMs(ms) {
  if (ms === null || ms === undefined) return 'n/a'
  if (ms < 1000) return `${Math.round(ms)} ms`
  if (ms < 10_000) return `${(ms / 1000).toFixed(2)} s`
  return `${(ms / 1000).toFixed(1)} s`
}

function fmtStat(s) {
  if (!s || s.medianMs === null) return s && s.runs ? `failed (${s.failed}/${s.runs})` : 'n/a'
  const range = s.ok > 1 ? ` (${fmtMs(s.minMs)}–${fmtMs(s.maxMs)})` : ''
  const fails = s.failed ? `, ${s.failed} failed` : ''
  return `${fmtMs(s.medianMs)}${range}${fails}`
}

function fmtRss(kb) {
  return typeof kb === 'number' ? `${Math.round(kb / 1024)} MiB` : 'n/a'
}

function fmtRatio(r) {
  if (r === null || r === undefined) return 'n/a'
  return `${r.toFixed(2)} (1/${(1 / r).toFixed(1)})`
}

function verdict(v) {
  return v === true ? 'met' : v === false ? '**missed**' : 'n/a'
}

function table(head, rows) {
  const lines = [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`]
  for (const r of rows) lines.push(`| ${r.join(' | ')} |`)
  return lines.join('\n')
}

/** The generated markdown: machine, the three tables, and the targets. */
export function renderMarkdown(res) {
  const m = res.machine
  const out = []
  out.push(
    `Run of ${res.date} on ${m.hostname}: ${m.cpus} cores (${m.cpuModel}), ${m.memoryGiB} GiB memory, ` +
      `Node ${m.node}, ${m.ansible}, Python ${m.python}, Linux ${m.kernel}; load average ${m.loadavgStart.join(' ')} at the start, ` +
      `${m.loadavgEnd.join(' ')} at the end. hactl ${res.hactl.version} (${res.hactl.commit}). ` +
      `${res.config.runs} runs per tool and benchmark (${res.config.coldRuns} for cold start), alternating hactl and Ansible; ` +
      `the whole bench took ${fmtMs(res.durationMs)}.`,
  )
  if (res.notes.length > 0) out.push('', ...res.notes.map((n) => `- ${n}`))

  out.push('', '### Operations, side by side', '')
  out.push(
    table(
      ['benchmark', 'lab', 'hosts', 'hactl median (min–max)', 'Ansible median (min–max)', 'hactl / Ansible', 'target', 'floor', 'hactl peak RSS'],
      res.benchmarks.map((b) => [
        b.title,
        b.lab,
        String(b.hosts),
        fmtStat(b.hactl),
        fmtStat(b.ansible),
        fmtRatio(b.ratio),
        `≤ ${b.target.label}: ${verdict(b.target.met)}${b.floorTarget ? `; ≤ floor + ${fmtMs(b.floorTarget.withinMs)}: ${verdict(b.floorTarget.met)}` : ''}`,
        b.floor ? `${fmtMs(b.floor.ms)} (${b.floor.what})` : '–',
        fmtRss(b.hactl?.rssKbMax),
      ]),
    ),
  )

  const warm = res.benchmarks.filter((b) => b.warmupMs && b.warmupMs.ansible !== undefined)
  if (warm.length > 0) {
    out.push(
      '',
      `First runs (the untimed warm-up, with no SSH connection open yet): ${warm
        .map((b) => `${b.id}: hactl ${fmtMs(b.warmupMs.hactl)}, Ansible ${fmtMs(b.warmupMs.ansible)}`)
        .join('; ')}. The counted Ansible runs reuse the control masters the warm-up opened (ControlPersist).`,
    )
  }

  out.push('', '### Cold start', '')
  const c = res.cold
  if (c) {
    out.push(
      table(
        ['command', 'median (min–max)', '× node -e 0', 'peak RSS'],
        c.variants.map((v) => [
          `\`${v.label}\``,
          fmtStat(v.stats),
          v.stats.medianMs && c.baselineMs ? `${(v.stats.medianMs / c.baselineMs).toFixed(2)}×` : 'n/a',
          fmtRss(v.stats.rssKbMax),
        ]),
      ),
    )
    out.push('', `Target: \`hactl --version\` ≤ 2.5× \`node -e 0\`: ${verdict(c.target.met)} (${c.ratio === null ? 'n/a' : `${c.ratio.toFixed(2)}×`}).`)
  } else out.push('not measured in this run')

  out.push('', '### Lab up', '')
  if (res.labUp.length > 0) {
    out.push(
      table(
        ['lab', 'hosts', 'wall time (one run)', 'target'],
        res.labUp.map((l) => [
          l.lab,
          `${l.asterisk} Asterisk + ${l.kamailio} Kamailio (${l.etcd} etcd) + discovery`,
          l.ok ? fmtMs(l.ms) : 'failed',
          l.targetMs ? `< ${fmtMs(l.targetMs)}: ${verdict(l.met)}` : '–',
        ]),
      ),
    )
  } else out.push('not measured in this run (labs reused)')

  out.push('', '### Targets', '')
  for (const t of res.targets) out.push(`- ${t.what}: ${verdict(t.met)}${t.detail ? ` (${t.detail})` : ''}`)
  return out.join('\n')
}

/** The plain-text table printed at the end of a run. */
export function renderConsole(res) {
  const rows = [['benchmark', 'hosts', 'hactl', 'Ansible', 'ratio', 'target', 'floor', 'RSS']]
  for (const b of res.benchmarks) {
    rows.push([
      b.id,
      String(b.hosts),
      fmtStat(b.hactl),
      fmtStat(b.ansible),
      b.ratio === null ? 'n/a' : b.ratio.toFixed(3),
      `${b.target.label} ${b.target.met === true ? 'met' : b.target.met === false ? 'MISSED' : 'n/a'}${b.floorTarget ? `, floor+${fmtMs(b.floorTarget.withinMs)} ${b.floorTarget.met ? 'met' : 'MISSED'}` : ''}`,
      b.floor ? fmtMs(b.floor.ms) : '-',
      fmtRss(b.hactl?.rssKbMax),
    ])
  }
  if (res.cold) {
    for (const v of res.cold.variants) {
      rows.push([
        v.label,
        '-',
        fmtStat(v.stats),
        '',
        v.stats.medianMs && res.cold.baselineMs ? `${(v.stats.medianMs / res.cold.baselineMs).toFixed(2)}x node` : '',
        v.label === 'hactl --version' ? `2.5x ${res.cold.target.met ? 'met' : 'MISSED'}` : '',
        '',
        fmtRss(v.stats.rssKbMax),
      ])
    }
  }
  for (const l of res.labUp) {
    rows.push([`lab up ${l.lab}`, String(l.asterisk + l.kamailio + 1), l.ok ? fmtMs(l.ms) : 'failed', '', '', l.targetMs ? `<${fmtMs(l.targetMs)} ${l.met ? 'met' : 'MISSED'}` : '', '', ''])
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)))
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd()).join('\n')
}

/** Put the generated section into docs/benchmarks.md, keeping everything outside the markers. */
export function updateDoc(file, generated, template) {
  let text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : template
  if (!text.includes(BEGIN) || !text.includes(END)) text = template
  const before = text.slice(0, text.indexOf(BEGIN) + BEGIN.length)
  const after = text.slice(text.indexOf(END))
  fs.writeFileSync(file, `${before}\n${generated}\n${after}`)
}

// `node bench/report.mjs [results.json]`: render docs/benchmarks.md again from a results file
// (default bench/results.json) without running anything, and print the table.
if (import.meta.url === `file://${process.argv[1]}`) {
  const path = await import('node:path')
  const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..')
  const res = JSON.parse(fs.readFileSync(process.argv[2] ?? path.join(root, 'bench', 'results.json'), 'utf8'))
  const doc = path.join(root, 'docs', 'benchmarks.md')
  updateDoc(doc, renderMarkdown(res), `# Benchmarks: hactl against Ansible\n\n${BEGIN}\n${END}\n`)
  process.stdout.write(`${renderConsole(res)}\n`)
}
