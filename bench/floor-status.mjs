// A floor for `hactl status`: the least a status run of hactl's design can take on this machine,
// measured by bench.mjs next to the real command. It is hactl's own pipeline stripped to the parts
// no status can do without: Node, hactl.yaml (through the config cache), the SSH pool opening a
// fresh connection to every host, the one-round-trip probe on each, and the table. No oclif, no
// etcd (no etcd3 client, no etcd facts), no early start: what a status would cost if the two
// libraries hactl must use (oclif and etcd3) were free.
//
// Usage: HACTL_CONFIG=FILE node bench/floor-status.mjs   (exit 0 when every host answered)
const root = new URL('../dist/', import.meta.url)
const {loadConfigCached} = await import(new URL('lib/config/cache.js', root))
const config = await loadConfigCached({})
const {SshPool} = await import(new URL('lib/ssh/pool.js', root))
const pool = new SshPool(config, {concurrency: config.concurrency, interactive: false})
const {gatherStatus} = await import(new URL('lib/ops/status.js', root))
const noEtcd = Promise.resolve({
  summary: {reachable: false, healthy: 0, total: 0, alarms: []},
  memberRoles: new Map(),
  marks: new Map(),
})
const status = await gatherStatus(config, pool, {nodes: config.nodes, bin: 'hactl', etcd: noEtcd})
const {renderStatus} = await import(new URL('ui/status-view.js', root))
process.stdout.write(`${await renderStatus(status, {color: false})}\n`)
await pool.close()
process.exitCode = status.nodes.every((n) => n.ssh.ok) ? 0 : 1
