#!/usr/bin/env node
// The lab's etcd discovery service, like the public discovery.etcd.io: `GET /new?size=N` creates a
// token in the v2 key space of the lab's own etcd (on the same host) and answers its URL,
// http://HOST-IP:2379/v2/keys/discovery/<token>, which `etcd --discovery URL` uses directly.
// Usage: discovery.mjs HOSTDIR   (listens on HOST-IP:8087)
import {randomBytes} from 'node:crypto'
import http from 'node:http'
import path from 'node:path'
import {log, readJson} from './lib.mjs'

const hostDir = process.argv[2] ?? process.env.HACTL_LAB_HOST_DIR
const host = readJson(path.join(hostDir, 'host.json'))
const BACKEND = 'http://127.0.0.1:2379'
const PORT = 8087

function putSize(token, size) {
  return new Promise((resolve, reject) => {
    const body = `value=${size}`
    const req = http.request(
      `${BACKEND}/v2/keys/discovery/${token}/_config/size`,
      {
        method: 'PUT',
        headers: {
          'Content-Type': 'application/x-www-form-urlencoded',
          'Content-Length': Buffer.byteLength(body),
        },
        timeout: 5000,
      },
      (res) => {
        res.resume()
        res.on('end', () =>
          res.statusCode === 200 || res.statusCode === 201
            ? resolve()
            : reject(new Error(`etcd answered ${res.statusCode}`)),
        )
      },
    )
    req.on('timeout', () => req.destroy(new Error('etcd did not answer')))
    req.on('error', reject)
    req.end(body)
  })
}

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url ?? '/', `http://${host.ip}:${PORT}`)
  if (req.method === 'GET' && url.pathname === '/new') {
    const raw = url.searchParams.get('size') ?? '3'
    const size = Number(raw)
    if (!Number.isInteger(size) || size < 1 || size > 100) {
      res.writeHead(400, {'Content-Type': 'text/plain'})
      res.end(`invalid size ${raw}\n`)
      return
    }
    const token = randomBytes(16).toString('hex')
    try {
      await putSize(token, size)
    } catch (error) {
      res.writeHead(500, {'Content-Type': 'text/plain'})
      res.end(`cannot create token: ${error.message}\n`)
      return
    }
    log(`new token ${token} size ${size}`)
    res.writeHead(200, {'Content-Type': 'text/plain'})
    res.end(`http://${host.ip}:2379/v2/keys/discovery/${token}`)
    return
  }
  if (req.method === 'GET' && url.pathname === '/health') {
    res.writeHead(200, {'Content-Type': 'text/plain'})
    res.end('OK\n')
    return
  }
  res.writeHead(404, {'Content-Type': 'text/plain'})
  res.end('not found\n')
})

server.listen(PORT, host.ip, () => log(`discovery service on http://${host.ip}:${PORT}`))
process.on('SIGTERM', () => server.close(() => process.exit(0)))
