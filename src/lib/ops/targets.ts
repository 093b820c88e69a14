import type {HactlConfig, ResolvedNode} from '../config/load.js'

/**
 * The hosts an operation talks to over SSH, in config order. The operations use these, and so
 * does the early start (`src/prestart.ts`), which opens the same connections before oclif has
 * loaded: the two must never disagree.
 */

/** `hactl status`: the nodes shown, and every Kamailio (for the dispatcher columns). */
export function statusProbeNodes(config: HactlConfig, shown: ResolvedNode[]): ResolvedNode[] {
  const kamailio = config.nodes.filter((n) => n.roles.includes('kamailio'))
  const seen = new Set<string>()
  return [...shown, ...kamailio].filter((n) => (seen.has(n.name) ? false : (seen.add(n.name), true)))
}

/**
 * `hactl node drain` / `undrain`: the targets, every Kamailio, and, when the capacity guard is on
 * (minInService > 0), every other Asterisk box: the guard counts the boxes in service.
 */
export function drainProbedNodes(
  config: HactlConfig,
  targets: ResolvedNode[],
  minInService: number,
): ResolvedNode[] {
  const names = new Set(targets.map((t) => t.name))
  // Without a capacity guard the other boxes do not matter: do not spend connections on them.
  return config.nodes.filter(
    (n) =>
      (n.roles.includes('asterisk') && (minInService > 0 || names.has(n.name))) ||
      n.roles.includes('kamailio'),
  )
}
