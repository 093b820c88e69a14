import assert from 'node:assert/strict'
import {existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {after, describe, test} from 'node:test'
import {loadConfig, parseConfig} from '../../src/lib/config/load.js'
import {ConfigError, UserError} from '../../src/lib/errors.js'
import {
  detectFormat,
  groupMembers,
  hostVars,
  loadAnsibleInventory,
  parseIniInventory,
  parseIniValue,
  parseYamlInventory,
  reconcileInventory,
  shlexSplit,
} from '../../src/lib/inventory/ansible.js'
import {expandHostPattern} from '../../src/lib/inventory/host-pattern.js'
import {assignNames, importAnsibleInventory, planImport} from '../../src/lib/inventory/import.js'

const repo = path.resolve(import.meta.dirname, '../..')
const fixtures = path.join(repo, 'test/fixtures/ansible')
const tmp = mkdtempSync(path.join(tmpdir(), 'hactl-inventory-test-'))
after(() => rmSync(tmp, {recursive: true, force: true}))
const NOW = new Date('2025-03-04T05:06:07Z')

const ini = (text: string) => reconcileInventory(parseIniInventory(text, 'hosts'))
const yml = (text: string) => reconcileInventory(parseYamlInventory(text, 'hosts.yml'))

function thrown(fn: () => unknown): Error {
  try {
    fn()
  } catch (error) {
    return error as Error
  }
  assert.fail('expected an error')
}

describe('host patterns', () => {
  test('plain names, ports, IPv4 and IPv6', () => {
    assert.deepEqual(expandHostPattern('coreos0'), {hosts: ['coreos0']})
    assert.deepEqual(expandHostPattern('coreos0:2222'), {hosts: ['coreos0'], port: 2222})
    assert.deepEqual(expandHostPattern('10.0.0.1:22'), {hosts: ['10.0.0.1'], port: 22})
    assert.deepEqual(expandHostPattern('[2001:db8::1]:2200'), {hosts: ['2001:db8::1'], port: 2200})
    assert.deepEqual(expandHostPattern('2001:db8::1'), {hosts: ['2001:db8::1']})
  })

  test('ranges: numbers, zero padding, steps, letters, several ranges', () => {
    assert.deepEqual(expandHostPattern('coreos[0:5]').hosts, [
      'coreos0',
      'coreos1',
      'coreos2',
      'coreos3',
      'coreos4',
      'coreos5',
    ])
    assert.deepEqual(expandHostPattern('web[01:10:3].example.com').hosts, [
      'web01.example.com',
      'web04.example.com',
      'web07.example.com',
      'web10.example.com',
    ])
    assert.deepEqual(expandHostPattern('db-[a:c]').hosts, ['db-a', 'db-b', 'db-c'])
    assert.deepEqual(expandHostPattern('n[:1]-[x:y]:2022'), {
      hosts: ['n0-x', 'n0-y', 'n1-x', 'n1-y'],
      port: 2022,
    })
  })

  test('mistakes are refused with the pattern named', () => {
    for (const [p, msg] of [
      ['web[1:]', /has no end/],
      ['web[01:100]', /zero-padded range needs begin and end of the same width/],
      ['web[5:1]', /runs backwards/],
      ['web[a]', /a range is \[begin:end\]/],
      ['web[1:3', /"\[" without "\]"/],
      ['web:', /ends in ":" without a port/],
      ['web:ssh', /port "ssh" is not a number/],
      ['web:70000', /outside 1-65535/],
      ['web[0:99999]', /more than 10000 hosts/],
      ['---', /YAML file read as INI/],
    ] as const) {
      assert.throws(() => expandHostPattern(p), msg, p)
    }
  })
})

describe('INI details', () => {
  test('host lines split like shlex: quotes, escapes, comments', () => {
    assert.deepEqual(shlexSplit(`h a=1 b="x y" c='p#q' d=e#comment`).tokens, [
      'h',
      'a=1',
      'b=x y',
      'c=p#q',
      'd=e',
    ])
    assert.deepEqual(shlexSplit('h a=b\\ c # trailing').tokens, ['h', 'a=b c'])
    assert.equal(shlexSplit('h a="open').error, 'no closing quotation')
  })

  test('values are Python literals where they can be, strings otherwise', () => {
    assert.equal(parseIniValue('22'), 22)
    assert.equal(parseIniValue('1.5'), 1.5)
    assert.equal(parseIniValue('True'), true)
    assert.equal(parseIniValue('None'), null)
    assert.equal(parseIniValue('"22"'), '22')
    assert.equal(parseIniValue("'03#pa33w0rd'"), '03#pa33w0rd')
    assert.equal(parseIniValue('8080 # port'), 8080)
    assert.equal(parseIniValue('0755'), '0755')
    assert.equal(parseIniValue('yes'), 'yes')
    // As in Ansible, a bare word keeps a trailing comment.
    assert.equal(parseIniValue('core  # the user'), 'core  # the user')
  })

  test('sections, children declared later, vars, ungrouped hosts', () => {
    const inv = ini(
      `lonely\n[parent:children]\nchild\n[child]\nc1 ansible_port=2222\n[child:vars]\nx=1\n[parent:vars]\nx=0\ny=2\n`,
    )
    assert.deepEqual(groupMembers(inv, 'parent'), ['c1'])
    assert.deepEqual(groupMembers(inv, 'ungrouped'), ['lonely'])
    assert.deepEqual(groupMembers(inv, 'all'), ['lonely', 'c1'])
    assert.deepEqual(hostVars(inv, 'c1'), {x: 1, y: 2, ansible_port: 2222})
  })

  test('errors name the file, line and column', () => {
    const cases: Array<[string, string]> = [
      [
        '[a:kids]\nh\n',
        'hosts:1:1: section [a:kids] has an unknown type "kids"; allowed: [a], [a:children], [a:vars]',
      ],
      [
        '[a b]\n',
        'hosts:1:1: invalid section "[a b]": a section is [group], [group:children] or [group:vars], with no spaces',
      ],
      ['[a]\n  h1 ansible_user\n', 'hosts:2:3: expected key=value after the host name, got "ansible_user"'],
      ['[a]\nh1 x="open\n', 'hosts:2:1: cannot parse the host line: no closing quotation'],
      ['[a:children]\nb\n', 'hosts:2:1: [a:children] lists group b, which is never declared'],
      ['[zz:vars]\nx=1\n', 'hosts:1:1: section [zz:vars] is for a group that is never declared'],
      ['[a]\nh\n[a:vars]\nnovalue\n', 'hosts:4:1: expected key=value in [a:vars], got "novalue"'],
      ['[a]\nweb[1:]\n', 'hosts:2:1: host pattern "web[1:]": the range [1:] has no end'],
      [
        '[a]\nh\n[b]\nh\n[a:children]\nb\n[b:children]\na\n',
        'hosts:8:1: making a a child of b creates a loop of groups',
      ],
    ]
    for (const [text, message] of cases) {
      const err = thrown(() => ini(text))
      assert.ok(err instanceof ConfigError, String(err))
      assert.equal(err.message, message)
    }
  })
})

describe('YAML details', () => {
  test('YAML 1.1 like PyYAML: yes is true; a host list as a string; hosts under all are ungrouped', () => {
    const inv = yml(
      'all:\n  hosts:\n    solo:\n      ansible_become: yes\n  children:\n    g:\n      hosts: one\n',
    )
    assert.equal(hostVars(inv, 'solo').ansible_become, true)
    assert.deepEqual(groupMembers(inv, 'g'), ['one'])
    assert.deepEqual(groupMembers(inv, 'ungrouped'), ['solo'])
  })

  test('mistakes are refused with a position, odd keys are warnings', () => {
    assert.equal(
      thrown(() => yml('all:\n  hosts:\n    - a\n    - b\n')).message,
      'hosts.yml:3:5: "hosts" of group all must be a mapping, got a list',
    )
    assert.equal(
      thrown(() => yml('all:\n  hosts:\n    a: [1]\n')).message,
      'hosts.yml:3:8: host a: its variables must be a mapping (key: value), got a list',
    )
    assert.equal(
      thrown(() => yml('plugin: aws_ec2\n')).message,
      'hosts.yml:1:1: this is the configuration of an inventory plugin, not an inventory',
    )
    assert.equal(
      thrown(() => yml('- a\n')).message,
      'hosts.yml:1:1: a YAML inventory is a mapping of groups (all:, then hosts:, vars:, children:)',
    )
    assert.equal(
      thrown(() => yml('all:\n  hosts: {a: 1\n'))
        .message.split(':')
        .slice(0, 3)
        .join(':'),
      'hosts.yml:3:1',
    )
    const inv = yml('all:\n  host:\n    a:\n  children:\n    g:\n      hosts: {b: }\n')
    assert.deepEqual(inv.warnings, [
      'hosts.yml:2:3: skipped key "host" in group all: only hosts, vars and children are valid',
    ])
  })

  test('format detection: extension first, then content', () => {
    assert.equal(detectFormat('x.yml', '[a]'), 'yaml')
    assert.equal(detectFormat('x.ini', 'all:'), 'ini')
    assert.equal(detectFormat('hosts', '# c\n\nall:\n  hosts:\n'), 'yaml')
    assert.equal(detectFormat('hosts', '; c\n[asterisk]\nast1\n'), 'ini')
    assert.equal(detectFormat('hosts', 'ast1 ansible_host=1.2.3.4\n'), 'ini')
  })
})

describe('variable precedence (as Ansible)', () => {
  test('all < parent < child group < host; same depth: ansible_group_priority, then name', () => {
    const inv = ini(
      '[all:vars]\nv=all\nw=all\n[parent:children]\nchild\n[parent:vars]\nv=parent\nw=parent\nz=parent\n[child]\nh z=host\n[child:vars]\nv=child\n[a]\nh\n[a:vars]\nq=a\n[b]\nh\n[b:vars]\nq=b\n[c]\nh\n[c:vars]\nq=c\nansible_group_priority=0\n',
    )
    assert.deepEqual(hostVars(inv, 'h'), {
      v: 'child',
      w: 'parent',
      z: 'host',
      q: 'b',
      ansible_group_priority: 0,
    })
  })

  test('group_vars/ beats inventory group vars; host_vars/ beats everything (directory fixture)', () => {
    const inv = loadAnsibleInventory(path.join(fixtures, 'coreos-dir'))
    assert.deepEqual(hostVars(inv, 'coreos0'), {
      ansible_user: 'core',
      ansible_become: true,
      ansible_ssh_private_key_file: '~/.ssh/coreos_rsa',
      ansible_port: 2222,
    })
    assert.equal(hostVars(inv, 'coreos5').ansible_port, 22)
    assert.equal(hostVars(inv, 'coreos5').ansible_host, 'homer.example.net')
  })
})

describe('the original system: coreos0..5 (INI, YAML, directory)', () => {
  const iniInv = loadAnsibleInventory(path.join(fixtures, 'coreos.ini'))
  const ymlInv = loadAnsibleInventory(path.join(fixtures, 'coreos.yml'))

  test('groups and children as Ansible reads them', () => {
    assert.deepEqual(
      [...iniInv.hosts.keys()],
      ['coreos0', 'coreos1', 'coreos2', 'coreos3', 'coreos4', 'coreos5'],
    )
    assert.deepEqual(groupMembers(iniInv, 'kamailio'), ['coreos0', 'coreos1'])
    assert.deepEqual(groupMembers(iniInv, 'asterisk'), ['coreos2', 'coreos3', 'coreos4'])
    assert.deepEqual(groupMembers(iniInv, 'homer'), ['coreos5'])
    assert.deepEqual(groupMembers(iniInv, 'leader'), ['coreos0'])
    assert.deepEqual(groupMembers(iniInv, 'keepalive'), ['coreos0', 'coreos1'])
    assert.deepEqual(hostVars(iniInv, 'coreos0').keepalived_vip, '172.17.8.50')
    assert.equal(hostVars(iniInv, 'coreos1').keepalived_priority, 100)
  })

  test('the INI and YAML inventories say the same thing', () => {
    for (const g of [
      'all',
      'coreos',
      'kamailio',
      'asterisk',
      'homer',
      'leader',
      'keepalive',
      'keepalive_leader',
      'keepalive_follower',
      'ungrouped',
    ]) {
      assert.deepEqual(groupMembers(ymlInv, g), groupMembers(iniInv, g), g)
    }
    for (const h of iniInv.hosts.keys()) assert.deepEqual(hostVars(ymlInv, h), hostVars(iniInv, h), h)
  })

  test('import: core with sudo, one key, etcd everywhere, roles from the groups', () => {
    const plan = planImport(iniInv, {inventory: path.join(fixtures, 'coreos.ini'), now: NOW})
    assert.equal(plan.cluster, 'coreos')
    assert.deepEqual(plan.ssh, {user: 'core', port: 22, identityFiles: ['~/.ssh/coreos_rsa'], become: true})
    assert.deepEqual(
      plan.nodes.map((n) => `${n.name} ${n.host} ${n.roles.join(',')}`),
      [
        'coreos0 172.17.8.100 kamailio,etcd',
        'coreos1 172.17.8.101 kamailio,etcd',
        'coreos2 172.17.8.102 asterisk,etcd',
        'coreos3 172.17.8.103 asterisk,etcd',
        'coreos4 172.17.8.104 asterisk,etcd',
        'coreos5 172.17.8.105 etcd,homer',
      ],
    )
    assert.deepEqual(plan.renamed, [])
    assert.deepEqual(plan.skipped, [])
    // The written file reads as the hand-written good/coreos.yaml does.
    const want = parseConfig(
      readFileSync(path.join(repo, 'test/fixtures/config/good/coreos.yaml'), 'utf8'),
      'coreos.yaml',
    )
    const got = parseConfig(plan.text, 'hactl.yaml')
    assert.deepEqual({...got, file: ''}, {...want, file: ''})
  })

  test('the file has a header saying where it came from, and comments to review', () => {
    const plan = planImport(iniInv, {inventory: path.join(fixtures, 'coreos.ini'), now: NOW})
    const lines = plan.text.split('\n')
    assert.equal(
      lines[0],
      `# hactl.yaml imported from the Ansible inventory ${path.join(fixtures, 'coreos.ini')} (ini)`,
    )
    assert.equal(lines[1], '# by "hactl inventory import" on 2025-03-04.')
    assert.equal(
      lines[2],
      '# Roles from groups: asterisk <- asterisk; kamailio <- kamailio; etcd <- all; homer <- homer.',
    )
    assert.ok(
      plan.text.includes('  become: true # core is not root: privileged commands run through sudo -n\n'),
    )
    assert.ok(plan.text.includes('  coreos5: {host: 172.17.8.105, roles: [etcd, homer]}\n'))
  })

  test('YAML gives the same hactl.yaml as INI (but the header)', () => {
    const a = planImport(iniInv, {inventory: 'coreos.ini', now: NOW}).text
    const b = planImport(ymlInv, {inventory: 'coreos.yml', now: NOW}).text
    assert.equal(b.split('\n').slice(1).join('\n'), a.split('\n').slice(1).join('\n'))
  })

  test('the directory layout: ranges, group_vars, host_vars', () => {
    const inv = loadAnsibleInventory(path.join(fixtures, 'coreos-dir'))
    const plan = planImport(inv, {inventory: path.join(fixtures, 'coreos-dir'), now: NOW})
    assert.equal(plan.cluster, 'coreos-dir')
    assert.deepEqual(plan.ssh, {user: 'core', port: 2222, identityFiles: ['~/.ssh/coreos_rsa'], become: true})
    assert.deepEqual(plan.nodes.at(-1), {
      name: 'coreos5',
      inventoryHost: 'coreos5',
      host: 'homer.example.net',
      port: 22,
      user: 'core',
      roles: ['etcd', 'homer'],
    })
    assert.ok(plan.text.includes('  coreos5: {host: homer.example.net, port: 22, roles: [etcd, homer]}\n'))
    assert.ok(plan.text.includes('  coreos0: {host: coreos0, roles: [kamailio, etcd]}\n'))
  })
})

describe('import: role groups, names, connection variables', () => {
  const ranges = loadAnsibleInventory(path.join(fixtures, 'ranges.ini'))

  test('ranges.ini: names made to follow the rule, skipped hosts, per-node ports and users', () => {
    const plan = planImport(ranges, {inventory: 'ranges.ini', groups: {etcd: ['etcd_members']}, now: NOW})
    assert.deepEqual(plan.renamed, [
      {from: 'ast01.voip.example.net', to: 'ast01'},
      {from: 'ast02.voip.example.net', to: 'ast02'},
      {from: 'ast03.voip.example.net', to: 'ast03'},
      {from: 'pbx_a.voip.example.net', to: 'pbx-a'},
      {from: '2001:db8::10', to: '2001-db8-10'},
      {from: 'SIP-Proxy-1', to: 'sip-proxy-1'},
      {from: '10.1.0.12', to: '10-1-0-12'},
    ])
    assert.deepEqual(plan.skipped, [{host: 'bastion', groups: ['ungrouped_box']}])
    assert.ok(plan.warnings.some((w) => w.includes('no group homer')))
    assert.ok(
      plan.warnings.includes(
        'ast01.voip.example.net, ast02.voip.example.net, ast03.voip.example.net, 2001:db8::10, 10.1.0.12 set no ansible_user and will log in as admin (Ansible used your local user name)',
      ),
    )
    const c = parseConfig(plan.text, 'x.yaml')
    const n = Object.fromEntries(c.nodes.map((x) => [x.name, x]))
    assert.deepEqual(n['pbx-a'], {
      name: 'pbx-a',
      host: 'pbx_a.voip.example.net',
      port: 2200,
      user: 'admin',
      roles: ['asterisk', 'etcd'],
    })
    assert.deepEqual(n['2001-db8-10'], {
      name: '2001-db8-10',
      host: '2001:db8::10',
      port: 2201,
      user: 'admin',
      roles: ['asterisk', 'etcd'],
    })
    assert.deepEqual(n['sip-proxy-1']!.roles, ['kamailio'])
    assert.ok(plan.text.includes('# inventory host SIP-Proxy-1'))
  })

  test('role group flags: several groups, commas, none; an unknown group is an error listing the real ones', () => {
    const inv = loadAnsibleInventory(path.join(fixtures, 'coreos.ini'))
    const plan = planImport(inv, {
      inventory: 'x',
      groups: {asterisk: ['leader,homer'], kamailio: ['keepalive'], etcd: ['none'], homer: ['none']},
      now: NOW,
    })
    assert.deepEqual(
      plan.nodes.map((x) => `${x.name}:${x.roles.join('+')}`),
      ['coreos0:asterisk+kamailio', 'coreos1:kamailio', 'coreos5:asterisk'],
    )
    assert.deepEqual(
      plan.skipped.map((s) => s.host),
      ['coreos2', 'coreos3', 'coreos4'],
    )
    const err = thrown(() => planImport(inv, {inventory: 'x', groups: {asterisk: ['pbx']}}))
    assert.ok(err instanceof UserError)
    assert.equal(err.message, '--asterisk-group pbx: the inventory has no group pbx')
    assert.match(err.suggestions[0]!, /^its groups: all, ungrouped, coreos, kamailio, asterisk/)
  })

  test('no host in any role group is an error', () => {
    const inv = ini('[web]\nw1\n')
    assert.throws(
      () => planImport(inv, {inventory: 'x', groups: {etcd: ['none']}}),
      /no host of the inventory is in a role group/,
    )
  })

  test('node names: kept when fine, first DNS label when unique, suffixes on clashes, never a role name', () => {
    const names = assignNames([
      'ast1',
      'Ast1',
      'ast1.a.net',
      'web.a.net',
      'web.b.net',
      'homer',
      'x__y',
      '___',
    ])
    assert.deepEqual(
      [...names.values()],
      ['ast1', 'ast1-2', 'ast1-a-net', 'web-a-net', 'web-b-net', 'homer-1', 'x-y', 'node'],
    )
  })

  test('connection variables: ansible_ssh_* aliases, port strings, key paths, become', () => {
    const inv = ini(
      '[asterisk]\na1 ansible_host=10.0.0.1 ansible_ssh_port="2200" ansible_user=root ansible_private_key_file=keys/id\na2 ansible_ssh_host=10.0.0.2 ansible_ssh_user=root ansible_become=true\n',
    )
    inv.files[0]!.file = path.join(tmp, 'inv/hosts')
    const plan = planImport(inv, {inventory: 'x', groups: {etcd: ['none']}})
    assert.deepEqual(plan.ssh, {
      user: 'root',
      port: 22,
      identityFiles: [path.join(tmp, 'inv/keys/id')],
      become: true,
    })
    assert.deepEqual(
      plan.nodes.map((n) => [n.host, n.port]),
      [
        ['10.0.0.1', 2200],
        ['10.0.0.2', 22],
      ],
    )
    assert.ok(plan.warnings.some((w) => w.includes('the relative key path keys/id was taken as')))
  })

  test('warnings for what hactl does not carry over', () => {
    const inv = ini(
      '[asterisk]\na1 ansible_ssh_pass=x ansible_connection=local ansible_become_user=postgres ansible_ssh_common_args="-o ProxyJump=bastion"\n',
    )
    const w = planImport(inv, {inventory: 'x'}).warnings.join('\n')
    for (const part of [
      'ansible_ssh_pass is ignored',
      'ansible_connection is local',
      'ansible_become_user is postgres',
      'jump host',
      'sets no ansible_user',
    ]) {
      assert.ok(w.includes(part), part)
    }
  })

  test('refuses templates, bad addresses and two hosts that are one machine, at the inventory line', () => {
    const cases: Array<[string, RegExp]> = [
      [
        "[asterisk]\n\na1 ansible_host=\"{{ lookup('env', 'IP') }}\"\n",
        /^hosts:3:1: host a1: ansible_host is a Jinja template/,
      ],
      [
        '[asterisk]\na1 ansible_host="10.0.0.1 x"\n',
        /^hosts:2:1: host a1: ansible_host "10\.0\.0\.1 x" is not a host name or an IP address$/,
      ],
      ['[asterisk]\na1 ansible_port=http\n', /^hosts:2:1: host a1: ansible_port "http" is not a port/],
      [
        '[asterisk]\na1 ansible_host=10.0.0.1\na2 ansible_host=10.0.0.1\n',
        /^hosts:3:1: inventory hosts a1 and a2 are the same machine \(10\.0\.0\.1 port 22\)$/,
      ],
      [
        '[asterisk]\na1 ansible_user="bad user"\n',
        /^hosts:2:1: host a1: ansible_user "bad user" is not a user name$/,
      ],
    ]
    for (const [text, re] of cases) {
      const err = thrown(() => planImport(ini(text), {inventory: 'x'}))
      assert.ok(err instanceof ConfigError, String(err))
      assert.match(err.message, re)
    }
  })
})

describe('importAnsibleInventory (files)', () => {
  test('writes hactl.yaml, which loads; refuses to overwrite without force', () => {
    const dir = path.join(tmp, 'write')
    mkdirSync(dir, {recursive: true})
    // Given no hactl.yaml
    const r = importAnsibleInventory({inventory: path.join(fixtures, 'coreos.yml'), cwd: dir, now: NOW})
    // Then one is written and reads back
    assert.equal(r.output, path.join(dir, 'hactl.yaml'))
    assert.equal(readFileSync(r.output!, 'utf8'), r.text)
    assert.equal(loadConfig({cwd: dir, home: dir, env: {}}).nodes.length, 6)
    // And a second import refuses to replace it
    writeFileSync(r.output!, '# mine\n')
    const err = thrown(() => importAnsibleInventory({inventory: path.join(fixtures, 'coreos.yml'), cwd: dir}))
    assert.ok(err instanceof UserError)
    assert.equal(err.message, 'hactl.yaml already exists; not overwriting it')
    assert.equal(readFileSync(r.output!, 'utf8'), '# mine\n')
    // Unless forced
    importAnsibleInventory({
      inventory: path.join(fixtures, 'coreos.yml'),
      cwd: dir,
      force: true,
      cluster: 'prod',
    })
    assert.equal(loadConfig({cwd: dir, home: dir, env: {}}).cluster, 'prod')
  })

  test('output "-" writes nothing; a bad --cluster, a missing inventory and a missing directory are user errors', () => {
    const dir = path.join(tmp, 'stdout')
    mkdirSync(dir, {recursive: true})
    const r = importAnsibleInventory({inventory: path.join(fixtures, 'coreos.ini'), cwd: dir, output: '-'})
    assert.equal(r.output, null)
    assert.ok(!existsSync(path.join(dir, 'hactl.yaml')))
    assert.throws(
      () =>
        importAnsibleInventory({
          inventory: path.join(fixtures, 'coreos.ini'),
          cwd: dir,
          output: '-',
          cluster: 'a b',
        }),
      /--cluster "a b": expected letters/,
    )
    assert.throws(
      () => importAnsibleInventory({inventory: 'nope.ini', cwd: dir}),
      (e: unknown) =>
        e instanceof UserError && e.message === `inventory not found: ${path.join(dir, 'nope.ini')}`,
    )
    assert.throws(
      () =>
        importAnsibleInventory({
          inventory: path.join(fixtures, 'coreos.ini'),
          cwd: dir,
          output: 'no/such/dir/h.yaml',
        }),
      /directory .*no\/such\/dir does not exist/,
    )
  })

  test('inventory directories: .ini files are skipped as Ansible does; scripts and vaults are refused', () => {
    const dir = path.join(tmp, 'invdir')
    mkdirSync(dir, {recursive: true})
    writeFileSync(path.join(dir, 'hosts.ini'), '[asterisk]\nx1\n')
    writeFileSync(
      path.join(dir, 'main.yml'),
      'all:\n  children:\n    asterisk:\n      hosts:\n        a1: {ansible_host: 10.9.0.1}\n',
    )
    const inv = loadAnsibleInventory(dir)
    assert.deepEqual([...inv.hosts.keys()], ['a1'])
    assert.ok(
      inv.warnings.some((w) => w.includes('hosts.ini: Ansible ignores .ini files in an inventory directory')),
    )
    const script = path.join(tmp, 'ec2.py')
    writeFileSync(script, '#!/usr/bin/env python\n')
    assert.throws(() => loadAnsibleInventory(script), /is an inventory script/)
    const vault = path.join(tmp, 'vaulted')
    writeFileSync(vault, '$ANSIBLE_VAULT;1.1;AES256\n6162\n')
    assert.throws(() => loadAnsibleInventory(vault), /encrypted with ansible-vault/)
  })
})
