/**
 * The capacity guard of `hactl node drain`: never take so many Asterisk boxes out of service that
 * fewer than `asterisk.minInService` would be left to take calls. Pure: it works on facts.
 */

/** What the guard needs to know about one Asterisk box. */
export interface CapacityNode {
  name: string
  /** Asterisk running, not marked for maintenance, active on every Kamailio. */
  inService: boolean
}

export interface CapacityCheck {
  ok: boolean
  minInService: number
  /** Boxes in service now. */
  inService: string[]
  /** Boxes that would be in service once the drain is done. */
  remaining: string[]
  /** The boxes this drain takes out of service (in service now and drained by this run). */
  removing: string[]
  /** The boxes out of service now (drained, down, or out of rotation somewhere). */
  outOfService: string[]
  /** A sentence for the operator; says how many are in service and which. */
  message: string
}

/**
 * Check that draining `draining` leaves at least `minInService` boxes in service. Boxes that are
 * out of service already do not count against the guard: draining them removes no capacity.
 * When the drain removes nothing, it passes even if the cluster is already below the minimum.
 */
export function checkCapacity(
  nodes: CapacityNode[],
  draining: string[],
  minInService: number,
): CapacityCheck {
  const targets = new Set(draining)
  const inService = nodes.filter((n) => n.inService).map((n) => n.name)
  const outOfService = nodes.filter((n) => !n.inService).map((n) => n.name)
  const removing = inService.filter((n) => targets.has(n))
  const remaining = inService.filter((n) => !targets.has(n))
  const ok = removing.length === 0 || remaining.length >= minInService
  const now = `${inService.length} Asterisk ${plural(inService.length, 'box', 'boxes')} ${inService.length === 1 ? 'is' : 'are'} in service${inService.length > 0 ? ` (${inService.join(', ')})` : ''}`
  let message: string
  if (removing.length === 0) {
    message = `${now}; this drain takes none of them out of service`
  } else if (ok) {
    message = `${now}; ${remaining.length} will stay in service${remaining.length > 0 ? ` (${remaining.join(', ')})` : ''}, minInService is ${minInService}`
  } else {
    message =
      `draining ${removing.join(', ')} would leave ${remaining.length} Asterisk ${plural(remaining.length, 'box', 'boxes')} in service` +
      `${remaining.length > 0 ? ` (${remaining.join(', ')})` : ''}, fewer than minInService (${minInService}); ${now}`
  }
  return {ok, minInService, inService, remaining, removing, outOfService, message}
}

function plural(n: number, one: string, many: string): string {
  return n === 1 ? one : many
}
