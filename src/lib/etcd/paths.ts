import path from 'node:path'
import {UserError} from '../errors.js'
import {shellQuote} from '../ssh/quote.js'

/**
 * The guard on what a rediscovery deletes. Two layers, because the laptop cannot see the host's
 * symlinks:
 *
 * 1. `wipePaths` (here, before anything runs): every configured sub-path must name something
 *    strictly inside the etcd data dir, lexically.
 * 2. `remoteWipeScript` (on the host, at the moment of deletion): every path, resolved with
 *    `realpath -m` (symlinks followed), must still be strictly inside the resolved data dir;
 *    otherwise nothing at all is removed.
 *
 * Remote paths are POSIX whatever the laptop runs, hence `path.posix`.
 */

const posix = path.posix

/** Exit status of the remote script when it refuses. */
export const WIPE_REFUSED_EXIT = 3

/**
 * The absolute paths a rediscovery removes: each of `subPaths` under `dataDir`. Throws
 * `UserError` for anything that is not strictly inside `dataDir`: an empty path, `.`, `/`, an
 * absolute path, one that climbs out with `..`, or one with control characters; and for a
 * `dataDir` that is relative or `/`.
 */
export function wipePaths(dataDir: string, subPaths: readonly string[]): string[] {
  const base = checkDataDir(dataDir)
  const out: string[] = []
  for (const sub of subPaths) {
    const bad = (why: string): UserError =>
      new UserError(`etcd.wipe: refusing ${JSON.stringify(sub)}: ${why}`, [
        `list sub-paths of etcd.dataDir (${base}) in etcd.wipe, for example [member]`,
      ])
    if (typeof sub !== 'string' || sub.trim() === '') throw bad('it is empty')
    // eslint-disable-next-line no-control-regex
    if (/[\u0000-\u001F\u007F]/.test(sub)) throw bad('it contains a control character')
    if (sub.startsWith('/')) throw bad('it is absolute; give a path relative to etcd.dataDir')
    const normal = posix.normalize(sub)
    if (normal === '.' || normal === './') throw bad('it is the data dir itself')
    if (normal === '..' || normal.startsWith('../')) throw bad('it leaves the data dir')
    const full = posix.join(base, normal).replace(/\/+$/, '')
    if (!isStrictlyInside(full, base)) throw bad('it is not inside the data dir')
    if (!out.includes(full)) out.push(full)
  }
  return out
}

function checkDataDir(dataDir: string): string {
  if (typeof dataDir !== 'string' || !dataDir.startsWith('/')) {
    throw new UserError(`etcd.dataDir must be an absolute path, got ${JSON.stringify(dataDir)}`)
  }
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001F\u007F]/.test(dataDir)) throw new UserError('etcd.dataDir contains a control character')
  const base = posix.normalize(dataDir).replace(/\/+$/, '')
  if (base === '') throw new UserError('etcd.dataDir is "/": hactl never wipes anything at the root')
  return base
}

function isStrictlyInside(p: string, dir: string): boolean {
  return p.startsWith(`${dir}/`) && p.length > dir.length + 1
}

/**
 * A POSIX sh script that removes `paths` on the host, after checking all of them: each must
 * resolve (`realpath -m`, so symlinks anywhere along the path are followed) to something strictly
 * inside the resolved `dataDir`, and so must its parent directory (rm removes a symlink itself, and
 * that symlink must not live outside either). On any refusal it prints why on stderr and exits 3
 * before removing anything. Prints `removed PATH` or `absent PATH` per path on stdout.
 *
 * `paths` are re-checked here (lexically inside `dataDir`), so a caller cannot skip `wipePaths`.
 */
export function remoteWipeScript(paths: readonly string[], dataDir: string): string {
  const base = checkDataDir(dataDir)
  if (paths.length === 0) throw new UserError('nothing to wipe: etcd.wipe is empty')
  for (const p of paths) {
    // eslint-disable-next-line no-control-regex
    if (
      typeof p !== 'string' ||
      /[\u0000-\u001F\u007F]/.test(p) ||
      posix.normalize(p) !== p ||
      !isStrictlyInside(p, base)
    ) {
      throw new UserError(
        `refusing to wipe ${JSON.stringify(p)}: not a normalized path strictly inside ${base}`,
      )
    }
  }
  const q = shellQuote
  // Variables are prefixed so the script cannot collide with anything in the login environment.
  return [
    'set -u',
    `hactl_refuse() { printf 'hactl: refusing to wipe %s: %s\\n' "$1" "$2" >&2; exit ${WIPE_REFUSED_EXIT}; }`,
    // busybox realpath has no -m; silently behaving differently would defeat the guard.
    `realpath -m / >/dev/null 2>&1 || hactl_refuse ${q(base)} 'realpath -m is not available on this host'`,
    `hactl_data=$(realpath -m -- ${q(base)}) || hactl_refuse ${q(base)} 'cannot resolve the data dir'`,
    `[ "$hactl_data" != / ] || hactl_refuse ${q(base)} 'the data dir resolves to /'`,
    'hactl_check() {',
    '  hactl_r=$(realpath -m -- "$1") || hactl_refuse "$1" "cannot resolve it"',
    '  case $hactl_r in',
    '    "$hactl_data"/?*) ;;',
    '    *) hactl_refuse "$1" "it resolves to $hactl_r, outside the data dir $hactl_data" ;;',
    '  esac',
    '  hactl_p=$(dirname -- "$1")',
    '  hactl_p=$(realpath -m -- "$hactl_p") || hactl_refuse "$1" "cannot resolve its directory"',
    '  case $hactl_p in',
    '    "$hactl_data" | "$hactl_data"/*) ;;',
    '    *) hactl_refuse "$1" "its directory resolves to $hactl_p, outside the data dir $hactl_data" ;;',
    '  esac',
    '}',
    // Check everything first: a refusal must leave every path in place.
    ...paths.map((p) => `hactl_check ${q(p)}`),
    'hactl_wipe() {',
    '  if [ -e "$1" ] || [ -L "$1" ]; then',
    '    hactl_r=$(realpath -m -- "$1")',
    // A symlink inside the data dir pointing elsewhere inside it: remove the data it points to
    // and the link, so etcd starts from an empty directory rather than a dangling link.
    '    if [ -L "$1" ]; then rm -rf -- "$hactl_r" || exit 1; fi',
    '    rm -rf -- "$1" || exit 1',
    '    printf \'removed %s\\n\' "$1"',
    '  else',
    '    printf \'absent %s\\n\' "$1"',
    '  fi',
    '}',
    ...paths.map((p) => `hactl_wipe ${q(p)}`),
    '',
  ].join('\n')
}
