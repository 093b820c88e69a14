import assert from 'node:assert/strict'
import {readFileSync} from 'node:fs'
import path from 'node:path'
import {describe, test} from 'node:test'
import {parseConfig} from '../../src/lib/config/load.js'
import {maskSecrets, renderShownConfig, SECRET_MASK, showConfig} from '../../src/lib/config/show.js'

const good = path.resolve(import.meta.dirname, '../fixtures/config/good')

describe('config show', () => {
  const config = parseConfig(readFileSync(path.join(good, 'mixed.yaml'), 'utf8'), 'mixed.yaml')

  test('masks etcd.auth.password and nothing else', () => {
    const shown = showConfig(config)
    assert.deepEqual(shown.etcd.auth, {username: 'hactl', password: SECRET_MASK})
    assert.equal(config.etcd.auth?.password, 's3cret: with colon', 'the config itself is untouched')
    assert.ok(!JSON.stringify(shown).includes('s3cret'))
    assert.ok(!renderShownConfig(shown, config).includes('s3cret'))
  })

  test('maskSecrets masks any password, secret or token key at any depth', () => {
    assert.deepEqual(maskSecrets({a: {password: 'x', token: 'y', list: [{clientSecret: 'z'}], port: 1}}), {
      a: {password: SECRET_MASK, token: SECRET_MASK, list: [{clientSecret: SECRET_MASK}], port: 1},
    })
  })

  test('is resolved: defaults filled in, per-node port and user, durations as written units', () => {
    const shown = showConfig(config)
    assert.equal(shown.ssh.connectTimeout, '1500ms')
    assert.equal(shown.ssh.commandTimeout, '2m')
    assert.equal(shown.asterisk.drainTimeout, '1h')
    assert.equal(shown.kamailio.listFile, '/etc/kamailio/dispatcher.list')
    assert.deepEqual(shown.nodes['kam-1'], {
      host: 'kam1.example.net',
      port: 2222,
      user: 'core',
      roles: ['kamailio'],
    })
  })

  for (const file of ['lab.yaml', 'mixed.yaml', 'full.yaml', 'anchors.yaml', 'minimal.yaml']) {
    test(`the YAML output of ${file} is a hactl.yaml that reads back the same (but the password)`, () => {
      const c = parseConfig(readFileSync(path.join(good, file), 'utf8'), file)
      const text = renderShownConfig(showConfig(c), c)
      assert.match(
        text,
        new RegExp(`^# Resolved from ${file.replace('.', '\\.')}: defaults filled in, secrets masked\\.`),
      )
      const again = parseConfig(text, 'shown.yaml')
      const strip = (x: typeof c) => ({
        ...x,
        file: '',
        etcd: {...x.etcd, auth: x.etcd.auth ? {...x.etcd.auth, password: ''} : undefined},
      })
      assert.deepEqual(strip(again), strip(c))
    })
  }

  test('the header names derived etcd endpoints', () => {
    const c = parseConfig(readFileSync(path.join(good, 'lab.yaml'), 'utf8'), 'lab.yaml')
    assert.match(
      renderShownConfig(showConfig(c), c),
      /^# etcd endpoints \(derived from the etcd nodes\): http:\/\/10\.77\.0\.21:2379$/m,
    )
  })
})
