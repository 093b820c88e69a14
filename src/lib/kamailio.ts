import type {HactlConfig, ResolvedNode} from './config/load.js'
import {HactlError, HostError} from './errors.js'
import {classifyKamcmdAnswer, parseDispatcherList, type DispatcherList} from './facts/kamailio.js'
import type {SshPool} from './ssh/pool.js'
import {shellQuote} from './ssh/quote.js'

/**
 * The Asterisk boxes as every Kamailio dispatcher sees them, and the one way hactl changes that:
 * `kamcmd dispatcher.set_state STATE SET URI`, read back with `dispatcher.list` in the same round
 * trip and verified.
 */

export interface KamailioDeps {
  config: HactlConfig
  pool: SshPool
}

export type DestinationState = 'active' | 'inactive' | 'trying' | 'disabled' | 'absent'

/** One Kamailio's view of one destination. */
export interface DestinationView {
  /** As kamcmd prints them (AP, IP, TP, DX...); null when the destination is not in the list. */
  flags: string | null
  state: DestinationState
}

/** `d` takes a box out of rotation for good (`i` would come back on the next OPTIONS reply); `ap` puts it back, probed. */
export type WantedState = 'd' | 'ap'

/** The dispatcher URI of an Asterisk box: its host and `asterisk.sipPort`. */
export function destinationUri(config: HactlConfig, node: ResolvedNode): string {
  const host = node.host.includes(':') && !node.host.startsWith('[') ? `[${node.host}]` : node.host
  return `sip:${host}:${config.asterisk.sipPort}`
}

function destinationKey(config: HactlConfig, node: ResolvedNode): string {
  return `${node.host.replace(/^\[(.*)\]$/, '$1')}:${config.asterisk.sipPort}`
}

export function kamcmd(config: HactlConfig, args: Array<string | number>): string {
  return `( ${config.kamailio.cli} ${args.map((a) => shellQuote(String(a))).join(' ')} ) </dev/null 2>&1`
}

/**
 * Find each node's destination in the set `kamailio.setId` of a `dispatcher.list` answer. Pure.
 * An empty dispatcher ("No Destination Sets") makes every node absent; any other error throws.
 */
export function viewsFromList(
  config: HactlConfig,
  kamailio: string,
  text: string,
  nodes: ResolvedNode[],
): Map<string, DestinationView> {
  let parsed: DispatcherList
  try {
    parsed = parseDispatcherList(text)
  } catch (error) {
    const answer = classifyKamcmdAnswer(text, 0)
    const detail = answer.kind === 'ok' ? (error as Error).message.split('\n')[0] : answer.message
    throw new HactlError(`${kamailio}: kamcmd dispatcher.list failed: ${detail}`, {
      suggestions: [
        `check that Kamailio runs and kamailio.cli in hactl.yaml is right: hactl exec ${kamailio} -- ${config.kamailio.cli} dispatcher.list`,
      ],
    })
  }
  const byKey = new Map<string, DestinationView>()
  for (const set of parsed.sets) {
    if (set.id !== config.kamailio.setId) continue
    for (const t of set.targets)
      byKey.set(`${t.host}:${t.port}`, {flags: t.flags, state: normalizeState(t.state)})
  }
  const out = new Map<string, DestinationView>()
  for (const n of nodes)
    out.set(n.name, byKey.get(destinationKey(config, n)) ?? {flags: null, state: 'absent'})
  return out
}

function normalizeState(s: string): DestinationState {
  return s === 'active' || s === 'inactive' || s === 'trying' || s === 'disabled' ? s : 'absent'
}

/** Read one Kamailio's dispatcher list: the view of each node. Throws HostError when it cannot be asked. */
export async function readDestinations(
  deps: KamailioDeps,
  kamailio: ResolvedNode,
  nodes: ResolvedNode[],
): Promise<Map<string, DestinationView>> {
  const r = await deps.pool.run(kamailio, kamcmd(deps.config, ['dispatcher.list']), {check: false})
  return viewsFromList(deps.config, kamailio.name, r.stdout, nodes)
}

/** Whether a view is what `wanted` should have produced. */
export function matchesWanted(view: DestinationView, wanted: WantedState): boolean {
  if (wanted === 'd') return view.state === 'disabled'
  return view.state === 'active' && (view.flags ?? '').slice(1).includes('P')
}

/** The set_state argument that restores a view (for a rollback): `AX` → `a`, `IP` → `ip`. */
export function stateArgOf(view: DestinationView): string | undefined {
  if (!view.flags || view.state === 'absent') return undefined
  const first = view.flags[0]?.toLowerCase() ?? ''
  if (!'aitd'.includes(first) || first === '') return undefined
  return `${first}${view.flags.slice(1).includes('P') ? 'p' : ''}`
}

const MARK = '@@hactl-kam@@'

export interface SetStateResult {
  kamailio: string
  /** What `dispatcher.list` showed right after, for the node. */
  view: DestinationView
  /** set_state's own answer (`Ok. Dispatcher state updated.`). */
  answer: string
}

/**
 * Set one node's destination to `state` on one Kamailio and read it back, in one round trip.
 * Throws when the Kamailio cannot be asked or the read-back is not what was wanted.
 */
export async function setDestinationState(
  deps: KamailioDeps,
  kamailio: ResolvedNode,
  node: ResolvedNode,
  state: WantedState | string,
): Promise<SetStateResult> {
  const uri = destinationUri(deps.config, node)
  const cmd = `${kamcmd(deps.config, ['dispatcher.set_state', state, deps.config.kamailio.setId, uri])}; echo "${MARK}rc $?"; ${kamcmd(deps.config, ['dispatcher.list'])}`
  const r = await deps.pool.run(kamailio, cmd, {check: false})
  const m = new RegExp(`^${MARK}rc (\\d+)$`, 'm').exec(r.stdout)
  const answerText = (m ? r.stdout.slice(0, m.index) : r.stdout).trim()
  const answer = classifyKamcmdAnswer(answerText, m ? Number(m[1]) : null)
  const list = m ? r.stdout.slice(m.index + m[0].length + 1) : ''
  const view = viewsFromList(deps.config, kamailio.name, list, [node]).get(node.name) ?? {
    flags: null,
    state: 'absent' as const,
  }
  const ok = answer.kind === 'ok' && (state === 'd' || state === 'ap' ? matchesWanted(view, state) : true)
  if (!ok) {
    throw new HactlError(
      `${kamailio.name}: could not set ${node.name} (${uri}) to ${state === 'd' ? 'disabled' : state === 'ap' ? 'active+probing' : state}: ` +
        `${answer.kind === 'ok' ? answer.text.split('\n')[0] || '(no answer)' : answer.message}; dispatcher.list shows ${view.flags ?? 'no such destination'}`,
      {
        suggestions:
          view.state === 'absent'
            ? [`${node.name} is not in ${kamailio.name}'s dispatcher list: hactl dispatcher sync`]
            : [`hactl exec ${kamailio.name} -- ${deps.config.kamailio.cli} dispatcher.list`],
      },
    )
  }
  return {kamailio: kamailio.name, view, answer: answer.kind === 'ok' ? answer.text : ''}
}

export interface RotationChange {
  kamailio: string
  ok: boolean
  /** The view after the change (or the last one read, on failure). */
  view?: DestinationView
  error?: {kind: string; message: string}
}

/**
 * Set the node's destination to `state` on each of `kamailios`, in parallel, and verify each.
 * Returns every Kamailio's outcome; the caller decides what a partial success means.
 */
export async function setStateEverywhere(
  deps: KamailioDeps,
  kamailios: ResolvedNode[],
  node: ResolvedNode,
  state: WantedState | string,
): Promise<RotationChange[]> {
  return Promise.all(
    kamailios.map(async (k): Promise<RotationChange> => {
      try {
        const r = await setDestinationState(deps, k, node, state)
        return {kamailio: k.name, ok: true, view: r.view}
      } catch (error) {
        const kind = error instanceof HostError ? error.kind : 'set-state-failed'
        return {kamailio: k.name, ok: false, error: {kind, message: (error as Error).message}}
      }
    }),
  )
}
