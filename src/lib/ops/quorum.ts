/**
 * The quorum guard of `hactl node add` and `hactl node remove`: what an etcd membership change
 * does to the cluster's healthy majority. Pure: it works on the member list and health that
 * `etcdClusterHealth` returns.
 *
 * Removal rules, in order:
 * - a learner does not vote: removing one never changes the quorum;
 * - the last member, or a member of a 2-member cluster, is never removed (the second would have
 *   to apply the change alone; FACTS: "never remove from a 2-member cluster");
 * - the cluster must have a healthy majority now, or the removal cannot even be committed;
 * - the voters left must still have a healthy majority among them;
 * - fewer than 3 voters left (the cluster would survive no failure) needs `force`.
 *
 * Addition: only to a healthy cluster (every member answers, a leader, no learner waiting: etcd
 * 3.4 allows one learner at a time).
 */

export interface QuorumMember {
  /** Member ID in hex. */
  id: string
  /** Empty for a member that was added but never started. */
  name: string
  healthy: boolean
  isLearner: boolean
}

export interface RemovalCheck {
  ok: boolean
  /** True when only `force` stands between the plan and the removal. */
  needsForce: boolean
  voters: number
  healthyVoters: number
  votersAfter: number
  healthyVotersAfter: number
  /** The majority the cluster needs after the removal. */
  quorumAfter: number
  /** One sentence: why it is refused, or what the removal leaves. */
  message: string
}

export function majority(voters: number): number {
  return Math.floor(voters / 2) + 1
}

/** Whether removing member `targetId` leaves etcd a healthy majority (see the module comment). */
export function checkMemberRemoval(members: readonly QuorumMember[], targetId: string, opts: {force?: boolean} = {}): RemovalCheck {
  const target = members.find((m) => m.id === targetId)
  const voters = members.filter((m) => !m.isLearner)
  const healthyVoters = voters.filter((m) => m.healthy).length
  const base = {voters: voters.length, healthyVoters}
  const label = (m: QuorumMember) => m.name || m.id
  if (!target) {
    return {...base, ok: true, needsForce: false, votersAfter: voters.length, healthyVotersAfter: healthyVoters, quorumAfter: majority(voters.length), message: `member ${targetId} is not in the cluster: nothing to remove`}
  }
  if (target.isLearner) {
    return {
      ...base,
      ok: true,
      needsForce: false,
      votersAfter: voters.length,
      healthyVotersAfter: healthyVoters,
      quorumAfter: majority(voters.length),
      message: `${label(target)} is a learner: it does not vote, so removing it leaves the quorum as it is (${healthyVoters} of ${voters.length} voting members healthy)`,
    }
  }
  const votersAfter = voters.length - 1
  const healthyVotersAfter = healthyVoters - (target.healthy ? 1 : 0)
  const quorumAfter = majority(Math.max(votersAfter, 0))
  const after = {...base, votersAfter, healthyVotersAfter, quorumAfter}
  const refuse = (message: string, needsForce = false): RemovalCheck => ({...after, ok: Boolean(needsForce && opts.force), needsForce, message})
  if (voters.length <= 1) {
    return refuse(`${label(target)} is the only voting member: removing it would end the cluster`)
  }
  if (voters.length === 2) {
    return refuse(
      `etcd has 2 voting members: removing ${label(target)} would leave one member that must commit the change alone, and a 2-member cluster is never shrunk; add a member first`,
    )
  }
  if (healthyVoters < majority(voters.length)) {
    return refuse(
      `etcd has no healthy majority now (${healthyVoters} of ${voters.length} voting members healthy, ${majority(voters.length)} needed): a member removal cannot be committed`,
    )
  }
  if (healthyVotersAfter < quorumAfter) {
    return refuse(
      `removing ${label(target)} would leave ${healthyVotersAfter} healthy of ${votersAfter} voting members, fewer than the majority of ${quorumAfter}`,
    )
  }
  if (votersAfter < 3) {
    const message = `removing ${label(target)} would shrink etcd to ${votersAfter} voting members, which survive no member failure`
    return opts.force ? {...after, ok: true, needsForce: true, message: `${message} (--force)`} : refuse(message, true)
  }
  return {
    ...after,
    ok: true,
    needsForce: false,
    message: `${votersAfter} voting members stay (${healthyVotersAfter} healthy, ${quorumAfter} needed for a majority)`,
  }
}

export interface AdditionCheck {
  ok: boolean
  message: string
}

/** Whether a member may be added now: every member healthy, a leader, no learner. */
export function checkMemberAddition(members: readonly QuorumMember[], opts: {hasLeader: boolean}): AdditionCheck {
  const learners = members.filter((m) => m.isLearner)
  const unhealthy = members.filter((m) => !m.healthy)
  const label = (m: QuorumMember) => m.name || m.id
  if (members.length === 0) return {ok: false, message: 'etcd lists no members'}
  if (learners.length > 0) {
    return {
      ok: false,
      message: `etcd has a learner already (${learners.map(label).join(', ')}): one member is added at a time; promote or remove it first`,
    }
  }
  if (unhealthy.length > 0 || !opts.hasLeader) {
    const parts = [
      ...(unhealthy.length > 0 ? [`${unhealthy.map(label).join(', ')} ${unhealthy.length === 1 ? 'is' : 'are'} not healthy`] : []),
      ...(!opts.hasLeader ? ['there is no leader'] : []),
    ]
    return {ok: false, message: `etcd is not healthy (${parts.join('; ')}): a member is added only to a healthy cluster`}
  }
  const voters = members.length
  return {ok: true, message: `etcd is healthy: ${voters} voting members; with the new one ${voters + 1}, majority ${majority(voters + 1)}`}
}
