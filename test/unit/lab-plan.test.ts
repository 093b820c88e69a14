import assert from 'node:assert/strict'
import {describe, test} from 'node:test'
import {parseDispatcherFlags} from '../../src/lib/lab/dispatcher.js'
import {missingPackages} from '../../src/lib/lab/system.js'
import {parseSubnet, planLab} from '../../src/lib/lab/plan.js'
import {summarizeCalls} from '../../src/lib/lab/calls.js'
import {UserError} from '../../src/lib/errors.js'

const base = {name: 'hactl', asterisk: 4, kamailio: 2, etcd: 3, spare: 0, subnet: '10.77.0.0/24'}

describe('lab plan', () => {
  test('the documented layout: disc .2, kam .11.., ast .21.., etcd on ast1..astK, spares .240..', () => {
    const p = planLab({...base, spare: 2})
    assert.equal(p.bridge, 'hactl-br')
    assert.equal(p.bridgeIp, '10.77.0.1')
    // Fixed MACs (02:00 + the address), so every host can have static neighbours.
    assert.equal(p.bridgeMac, '02:00:0a:4d:00:01')
    assert.equal(p.hosts.find((h) => h.name === 'spare2')!.mac, '02:00:0a:4d:00:f1')
    assert.deepEqual(
      p.hosts.map((h) => `${h.name} ${h.ip} ${h.kind} ${h.roles.join('+') || '-'} ${h.ns} ${h.veth}`),
      [
        'disc 10.77.0.2 discovery - hactl-disc hactl-2',
        'kam1 10.77.0.11 kamailio kamailio hactl-kam1 hactl-11',
        'kam2 10.77.0.12 kamailio kamailio hactl-kam2 hactl-12',
        'ast1 10.77.0.21 asterisk asterisk+etcd hactl-ast1 hactl-21',
        'ast2 10.77.0.22 asterisk asterisk+etcd hactl-ast2 hactl-22',
        'ast3 10.77.0.23 asterisk asterisk+etcd hactl-ast3 hactl-23',
        'ast4 10.77.0.24 asterisk asterisk hactl-ast4 hactl-24',
        'spare1 10.77.0.240 spare - hactl-spare1 hactl-240',
        'spare2 10.77.0.241 spare - hactl-spare2 hactl-241',
      ],
    )
  })

  test('200 Asterisk hosts fit a /24; more need a larger subnet, and spares move after them', () => {
    assert.equal(planLab({...base, asterisk: 200}).hosts.at(-1)!.ip, '10.77.0.220')
    assert.throws(
      () => planLab({...base, asterisk: 240}),
      (e: unknown) => e instanceof UserError && /--subnet 10\.77\.0\.0\/23/.test(e.suggestions.join()),
    )
    const big = planLab({...base, asterisk: 300, spare: 1, subnet: '10.77.0.0/23'})
    assert.equal(big.hosts.find((h) => h.name === 'ast300')!.ip, '10.77.1.64')
    assert.equal(big.hosts.find((h) => h.name === 'spare1')!.ip, '10.77.1.65')
  })

  test('names, sizes and subnets are checked', () => {
    assert.throws(() => planLab({...base, name: 'Bad-Name'}), UserError)
    assert.throws(() => planLab({...base, name: 'waytoolongname'}), UserError)
    assert.throws(() => planLab({...base, etcd: 5}), /--etcd 5 is more than --asterisk 4/)
    assert.throws(() => planLab({...base, kamailio: 11}), /at most 10 Kamailio/)
    assert.throws(
      () => parseSubnet('10.77.0.1/24'),
      (e: unknown) => e instanceof UserError && /10\.77\.0\.0\/24/.test(e.suggestions.join()),
    )
    assert.throws(() => parseSubnet('10.77.0.0/8'), UserError)
    assert.throws(() => parseSubnet('nonsense'), UserError)
    // Interface names stay within Linux's 15 characters with the longest name and offset.
    const p = planLab({...base, name: 'abcdefghi', asterisk: 1000, subnet: '10.0.0.0/16'})
    assert.ok(p.hosts.every((h) => h.veth.length <= 15))
  })

  test('missing packages are named by their Debian package, once each', () => {
    assert.deepEqual(
      missingPackages((p) => !p.includes('kam') && !p.endsWith('/etcdctl')),
      ['etcd-client', 'kamailio'],
    )
    assert.deepEqual(
      missingPackages(() => true),
      [],
    )
  })
})

describe('lab helpers', () => {
  test('dispatcher flags from kamcmd dispatcher.list text', () => {
    const text =
      'SET: {\n\tID: 1\n\tTARGETS: {\n\t\tDEST: {\n\t\t\tURI: sip:10.77.0.21:5060\n\t\t\tFLAGS: AP\n\t\t\tPRIORITY: 0\n\t\t}\n\t\tDEST: {\n\t\t\tURI: sip:10.77.0.22:5060\n\t\t\tFLAGS: IP\n\t\t}\n'
    assert.deepEqual(parseDispatcherFlags(text), {'sip:10.77.0.21:5060': 'AP', 'sip:10.77.0.22:5060': 'IP'})
    assert.deepEqual(parseDispatcherFlags('error: 500 - No Destination Sets\n'), {})
  })

  test('call log summary', () => {
    const t = '2024-01-01T00:00:00Z'
    const s = summarizeCalls([
      {time: t, host: 'ast1', event: 'start', call: 'a'},
      {time: t, host: 'ast1', event: 'start', call: 'b'},
      {time: t, host: 'ast1', event: 'start', call: 'c'},
      {time: t, host: 'ast1', event: 'end', call: 'a', outcome: 'finished'},
      {time: t, host: 'ast1', event: 'end', call: 'b', outcome: 'cut'},
      {time: t, host: 'ast1', event: 'refused', outcome: 'refused'},
    ])
    assert.deepEqual(s, {started: 3, finished: 1, cut: 1, refused: 1, open: 1})
  })
})
