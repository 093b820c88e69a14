import assert from 'node:assert/strict'
import {readFileSync} from 'node:fs'
import path from 'node:path'
import {describe, test} from 'node:test'
import {fileURLToPath} from 'node:url'
import fc from 'fast-check'
import {
  classifyKamcmdAnswer,
  parseDispatcherAttrs,
  parseDispatcherFile,
  parseDispatcherList,
  parseSipUri,
  renderDispatcherFile,
  type DispatcherFileEntry,
  type DispatcherList,
} from '../../src/lib/facts/kamailio.js'
import {FactParseError} from '../../src/lib/facts/parse-error.js'

// Every fixture here is a real capture from Kamailio 5.6.3 (test/fixtures/kamailio/README.md).
const dir = path.join(path.dirname(fileURLToPath(import.meta.url)), '../fixtures/kamailio')
const fixture = (name: string): string => readFileSync(path.join(dir, name), 'utf8')

/** set id → "uri flags" lines, for compact assertions. */
function summary(list: DispatcherList): Record<number, string[]> {
  return Object.fromEntries(list.sets.map((s) => [s.id, s.targets.map((t) => `${t.uri} ${t.flags}`)]))
}

describe('parseDispatcherList', () => {
  test('full structure of one capture', () => {
    const list = parseDispatcherList(fixture('list-startup.txt'))
    // Kamailio printed set 2 first; the parser sorts sets by id.
    assert.deepEqual(
      list.sets.map((s) => s.id),
      [1, 2],
    )
    const [one, two] = list.sets
    assert.deepEqual(one!.targets[0], {
      uri: 'sip:127.0.0.1:25961',
      host: '127.0.0.1',
      port: 25961,
      flags: 'AP',
      state: 'active',
      probing: true,
      priority: 10,
      attrs: {body: 'weight=50', maxload: 0, weight: 50, rweight: 0},
    })
    assert.deepEqual(one!.targets[1], {
      uri: 'sip:127.0.0.21:5060',
      host: '127.0.0.21',
      port: 5060,
      flags: 'AX',
      state: 'active',
      probing: false,
      priority: 5,
      attrs: {body: 'weight=25;duid=ast1', duid: 'ast1', maxload: 0, weight: 25, rweight: 0},
    })
    assert.equal(one!.targets[2]!.priority, 0)
    assert.deepEqual(
      two!.targets.map((t) => [t.uri, t.state, t.probing, t.attrs.duid, t.attrs.weight]),
      [['sip:127.0.0.31:5060', 'disabled', false, 'ast3', 100]],
    )
  })

  test('after OPTIONS probes: unanswered destinations are IP', () => {
    assert.deepEqual(summary(parseDispatcherList(fixture('list-probed.txt'))), {
      1: ['sip:127.0.0.1:25961 AP', 'sip:127.0.0.21:5060 IP', 'sip:127.0.0.22:5060 IP'],
      2: ['sip:127.0.0.31:5060 DX'],
    })
  })

  test('after set_state d / a / t: the probing flag is cleared', () => {
    const list = parseDispatcherList(fixture('list-set-state.txt'))
    assert.deepEqual(summary(list)[1], [
      'sip:127.0.0.1:25961 TX',
      'sip:127.0.0.21:5060 DX',
      'sip:127.0.0.22:5060 AX',
    ])
    assert.deepEqual(
      list.sets[0]!.targets.map((t) => t.state),
      ['trying', 'disabled', 'active'],
    )
  })

  test('after set_state tp: TP', () => {
    const t = parseDispatcherList(fixture('list-tp.txt')).sets[0]!.targets[2]!
    assert.deepEqual([t.flags, t.state, t.probing], ['TP', 'trying', true])
  })

  test('every flag combination of the file, as Kamailio shows it', () => {
    // Given the file that was loaded and what kamcmd printed for it
    const file = parseDispatcherFile(fixture('file-flags.list'))
    const list = parseDispatcherList(fixture('list-file-flags.txt'))
    const shown = new Map(list.sets[0]!.targets.map((t) => [t.uri, t]))
    // Then: one state letter, chosen I before D before T before A; P for bit 8
    const expected: Record<number, string> = {
      0: 'AX',
      1: 'IX',
      2: 'TX',
      4: 'DX',
      5: 'IX',
      8: 'AP',
      9: 'IP',
      10: 'TP',
      12: 'DP',
    }
    for (const e of file) assert.equal(shown.get(e.uri)?.flags, expected[e.flags], `flags ${e.flags}`)
    // Equal priorities come out in reverse file order.
    assert.deepEqual(
      list.sets[0]!.targets.map((t) => t.uri),
      file.map((e) => e.uri).reverse(),
    )
    // A line without attributes has no ATTRS block.
    assert.deepEqual(shown.get('sip:127.0.0.49:5060')!.attrs, {})
  })

  test('attributes: socket, maxload, rweight, a URI with params and one without port', () => {
    const list = parseDispatcherList(fixture('list-attrs.txt'))
    assert.deepEqual(
      list.sets.map((s) => s.id),
      [1, 3],
    )
    const self = list.sets[0]!.targets[0]!
    assert.deepEqual(self.attrs, {
      body: 'weight=60;duid=self;maxload=20;rweight=50;socket=udp:127.0.0.1:25960',
      duid: 'self',
      maxload: 20,
      weight: 60,
      rweight: 50,
      socket: 'udp:127.0.0.1:25960',
    })
    assert.deepEqual(self.latency, {avg: 0.333, std: 0.577, est: 0.333, max: 1, timeout: 0})
    const withParams = list.sets[0]!.targets[1]!
    assert.deepEqual([withParams.host, withParams.port, withParams.transport], ['127.0.0.52', 5060, 'udp'])
    const noPort = list.sets[1]!.targets[0]!
    assert.deepEqual(
      [noPort.uri, noPort.host, noPort.port, noPort.flags],
      ['sip:127.0.0.53', '127.0.0.53', 5060, 'DX'],
    )
  })

  test('latency stats of a destination that never answered', () => {
    const t = parseDispatcherList(fixture('list-latency.txt')).sets[0]!.targets.find(
      (x) => x.host === '127.0.0.51',
    )!
    assert.equal(t.flags, 'IP')
    assert.equal(t.latency?.timeout, 2)
  })

  test('"No Destination Sets" is an empty list', () => {
    assert.deepEqual(parseDispatcherList(fixture('list-empty.txt')), {sets: []})
  })

  test('other errors and non-tree text throw', () => {
    assert.throws(() => parseDispatcherList(fixture('reload-ongoing.txt')), /Ongoing reload/)
    assert.throws(() => parseDispatcherList(fixture('kamcmd-down-no-socket.stderr.txt')), FactParseError)
    assert.throws(() => parseDispatcherList(''), FactParseError)
  })

  test('output cut short throws instead of losing destinations', () => {
    const text = fixture('list-probed.txt')
    assert.throws(() => parseDispatcherList(text.slice(0, Math.floor(text.length / 2))), FactParseError)
    // Whole sets missing while braces balance: NRSETS disagrees.
    const oneSetDropped = text.replace('NRSETS: 2', 'NRSETS: 3')
    assert.throws(() => parseDispatcherList(oneSetDropped), /NRSETS/)
  })

  test('an unknown flag letter throws', () => {
    assert.throws(
      () => parseDispatcherList(fixture('list-probed.txt').replace('FLAGS: AP', 'FLAGS: ZP')),
      /unknown FLAGS "ZP"/,
    )
  })
})

describe('classifyKamcmdAnswer', () => {
  test('each captured answer', () => {
    assert.equal(classifyKamcmdAnswer(fixture('reload-ok.txt'), 0).kind, 'ok')
    assert.equal(classifyKamcmdAnswer(fixture('set-state-ok.txt'), 0).kind, 'ok')
    // kamcmd exits 0 on RPC faults.
    assert.deepEqual(classifyKamcmdAnswer(fixture('reload-ongoing.txt'), 0), {
      kind: 'ongoing-reload',
      message: 'error: 500 - Ongoing reload',
    })
    assert.deepEqual(classifyKamcmdAnswer(fixture('reload-failed.txt'), 0), {
      kind: 'rpc-error',
      code: 500,
      message: 'Reload Failed',
    })
    assert.deepEqual(classifyKamcmdAnswer(fixture('set-state-failed.txt'), 0), {
      kind: 'rpc-error',
      code: 500,
      message: 'State Update Failed',
    })
    assert.deepEqual(classifyKamcmdAnswer(fixture('set-state-bad-value.txt'), 0), {
      kind: 'rpc-error',
      code: 500,
      message: 'Unknown State Value',
    })
    assert.deepEqual(classifyKamcmdAnswer(fixture('list-empty.txt'), 0), {
      kind: 'rpc-error',
      code: 500,
      message: 'No Destination Sets',
    })
  })

  test('Kamailio down: no socket, or a stale one (exit 255)', () => {
    assert.equal(classifyKamcmdAnswer(fixture('kamcmd-down-no-socket.stderr.txt'), 255).kind, 'not-running')
    assert.equal(classifyKamcmdAnswer(fixture('kamcmd-down-refused.stderr.txt'), 255).kind, 'not-running')
  })

  test('anything else failing is unknown', () => {
    assert.deepEqual(classifyKamcmdAnswer('sh: kamcmd: not found\n', 127), {
      kind: 'unknown',
      exitCode: 127,
      message: 'sh: kamcmd: not found (exit status 127)',
    })
  })
})

describe('parseSipUri', () => {
  test('forms', () => {
    assert.deepEqual(parseSipUri('sip:10.0.0.1:5080'), {
      scheme: 'sip',
      host: '10.0.0.1',
      port: 5080,
      explicitPort: true,
    })
    assert.deepEqual(parseSipUri('sips:pbx.example'), {
      scheme: 'sips',
      host: 'pbx.example',
      port: 5061,
      explicitPort: false,
    })
    assert.deepEqual(parseSipUri('sip:[2001:db8::1]:5060;transport=TCP'), {
      scheme: 'sip',
      host: '2001:db8::1',
      port: 5060,
      explicitPort: true,
      transport: 'tcp',
    })
    assert.deepEqual(parseSipUri('sip:gw@10.0.0.2;transport=tls'), {
      scheme: 'sip',
      user: 'gw',
      host: '10.0.0.2',
      port: 5061,
      explicitPort: false,
      transport: 'tls',
    })
    assert.equal(parseSipUri('http://x'), undefined)
    assert.equal(parseSipUri('sip:10.0.0.1:99999'), undefined)
  })
})

describe('dispatcher.list file', () => {
  test('parses the files the captures were made from', () => {
    assert.deepEqual(parseDispatcherFile(fixture('file-probed.list')), [
      {setId: 1, uri: 'sip:127.0.0.1:25961', flags: 0, priority: 10, attrs: 'weight=50'},
      {setId: 1, uri: 'sip:127.0.0.21:5060', flags: 0, priority: 5, attrs: 'weight=25;duid=ast1'},
      {setId: 1, uri: 'sip:127.0.0.22:5060', flags: 0, priority: 0, attrs: 'weight=25'},
      {setId: 2, uri: 'sip:127.0.0.31:5060', flags: 4, priority: 0, attrs: 'weight=100;duid=ast3;body=x'},
    ])
    const attrs = parseDispatcherFile(fixture('file-attrs.list'))
    assert.equal(attrs[1]!.uri, 'sip:127.0.0.52:5060;transport=udp')
    assert.deepEqual(attrs[2], {setId: 3, uri: 'sip:127.0.0.53', flags: 4, priority: 0, attrs: 'weight=1'})
  })

  test('optional columns and trailing comments', () => {
    assert.deepEqual(
      parseDispatcherFile('1 sip:10.0.0.1\n2 sip:10.0.0.2 8 # probing\n\n   # indented comment\n'),
      [
        {setId: 1, uri: 'sip:10.0.0.1', flags: 0, priority: 0, attrs: ''},
        {setId: 2, uri: 'sip:10.0.0.2', flags: 8, priority: 0, attrs: ''},
      ],
    )
  })

  test('bad lines throw with their line number', () => {
    assert.throws(() => parseDispatcherFile('# ok\nx sip:127.0.0.1 0 0\n'), /line 2: set id "x"/)
    assert.throws(
      () => parseDispatcherFile('1 notauri 0 0 weight=1\n'),
      /line 1: "notauri" is not a sip: URI/,
    )
    assert.throws(() => parseDispatcherFile('1 sip:10.0.0.1 0 0 weight=1 extra\n'), /unexpected "extra"/)
    assert.throws(() => parseDispatcherFile('1 sip:10.0.0.1 -1 0\n'), /flags "-1"/)
  })

  test('render refuses what Kamailio would misread', () => {
    const ok: DispatcherFileEntry = {
      setId: 1,
      uri: 'sip:10.0.0.1:5060',
      flags: 0,
      priority: 0,
      attrs: 'weight=1',
    }
    assert.equal(
      renderDispatcherFile([ok], {header: ['made by a test']}),
      '# made by a test\n1 sip:10.0.0.1:5060 0 0 weight=1\n',
    )
    assert.equal(renderDispatcherFile([]), '')
    assert.throws(() => renderDispatcherFile([{...ok, uri: 'sip:10.0.0.1 0 0\n2 sip:evil'}]), /bad URI/)
    assert.throws(() => renderDispatcherFile([{...ok, attrs: 'weight=1 #x'}]), /whitespace/)
    assert.throws(() => renderDispatcherFile([{...ok, flags: -1}]), /non-negative/)
    assert.throws(() => renderDispatcherFile([ok], {header: ['two\nlines']}), /newline/)
  })

  test('render then parse gives the entries back', () => {
    const entry = fc.record({
      setId: fc.nat({max: 1000}),
      uri: fc
        .tuple(fc.ipV4(), fc.option(fc.integer({min: 1, max: 65535}), {nil: undefined}))
        .map(([ip, port]) => (port === undefined ? `sip:${ip}` : `sip:${ip}:${port}`)),
      flags: fc.nat({max: 15}),
      priority: fc.nat({max: 100}),
      attrs: fc
        .option(fc.stringMatching(/^[a-z]+=[A-Za-z0-9.]+(;[a-z]+=[A-Za-z0-9.]+)*$/), {nil: ''})
        .map((a) => a ?? ''),
    })
    fc.assert(
      fc.property(fc.array(entry, {maxLength: 20}), (entries) => {
        // fast-check builds null-prototype records; compare plain copies.
        assert.deepEqual(
          parseDispatcherFile(renderDispatcherFile(entries, {header: ['h']})),
          entries.map((e) => ({...e})),
        )
      }),
    )
  })

  test('attrs', () => {
    assert.deepEqual(parseDispatcherAttrs('weight=25;DUID=ast1;flag;;x=a=b'), {
      weight: '25',
      duid: 'ast1',
      flag: '',
      x: 'a=b',
    })
  })
})
