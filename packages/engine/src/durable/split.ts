// The split rule at run time (docs/durability.md "Which side is newer"): a remote leg that answers
// again with an event counter HIGHER than the volume's counter when the leg went away has taken
// writes this volume never saw (it was the only leg of another run while this one served without
// it): the two sides diverged. The side that is serving wins (clients have read its data since),
// and the returning leg is rebuilt in full, never resynced from the bitmap (which knows nothing of
// its own writes), so the legs never serve a mix of the two histories. Runs inside exclusive().
// Rule 6: a leg whose counter is not higher but whose history id differs from the one this volume
// wrote at that counter (meta/history.ts) diverged too — the two sides reached the same counter.
import { markNeedsRebuild } from '../meta/assemble.js';
import { historyAt, historyVerdict } from '../meta/history.js';
import { decodeSuperblock, type Superblock } from '../meta/superblock.js';
import type { AssembledElement } from '../meta/types.js';
import type { KeeperHost } from './host.js';
import { canRebuild, type Keep, type MirrorKeeper } from './keeper.js';

/** The superblock in `bytes` when it belongs to `arrayUuid` and is not marked needs-rebuild; else undefined. */
function usable(bytes: Uint8Array, arrayUuid: string): Superblock | undefined {
  try {
    const sb = decodeSuperblock(bytes);
    if ('kind' in sb) return undefined; // blank
    return sb.arrayUuid === arrayUuid && !sb.needsRebuild && sb.faulty !== true ? sb : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Whether a returning leg's superblock says it diverged: same array, not marked for rebuild, a
 * counter above `leftEvents` (the volume's counter when the leg went away) or another history id
 * than the volume wrote at the leg's counter, and a leg of its mirror group still active (else
 * the keeper's rule 3 decides: the newer leg comes back as it is).
 */
export function diverged(host: KeeperHost, keeper: MirrorKeeper, keep: Keep, name: string, bytes: Uint8Array, leftEvents: number): Superblock | undefined {
  const entry = host.registry.volumes.get(keep.name);
  if (entry === undefined) return undefined;
  const sb = usable(bytes, entry.assembled.arrayUuid);
  const role = entry.assembled.config.elements.indexOf(name);
  if (sb === undefined || role < 0) return undefined;
  if (sb.eventCount <= leftEvents && historyVerdict(entry.assembled.history, sb.eventCount, sb.historyId) !== 'other') return undefined;
  return canRebuild(entry.assembled, role, (n) => keeper.liveState(n)) ? sb : undefined;
}

/** Takes a diverged leg back as a full-rebuild target of the serving side; throws when it must stay out. */
export async function rejoinDiverged(host: KeeperHost, keeper: MirrorKeeper, keep: Keep, name: string, sb: Superblock, leftEvents: number): Promise<void> {
  const entry = host.registry.volumes.get(keep.name);
  const role = entry?.assembled.config.elements.indexOf(name) ?? -1;
  const index = host.registry.elements.get(name)?.index ?? -1;
  if (entry === undefined || role < 0 || index < 0 || host.dataPath.elementState(index) !== 'failed') return;
  const vol = entry.assembled;
  // Written first: should we crash before the copy ends, the leg must never pass for current.
  if (!(await markNeedsRebuild(vol, role, 0))) throw new Error('cannot mark its superblock for rebuild');
  if (!(await keeper.addTarget(keep, { role, element: index, name, full: true }))) throw new Error('it refused its bitmap');
  const why = sb.eventCount > leftEvents ? `diverged (event counter ${sb.eventCount} > ${leftEvents} when it left): rebuilt from the serving legs`
    : `diverged (history ${sb.historyId ?? 'none'} at event counter ${sb.eventCount}, where this volume wrote ${historyAt(vol.history, sb.eventCount) ?? 'another'}): rebuilt from the serving legs`;
  const setMember = (e: AssembledElement): AssembledElement => (e.role === role ? { ...e, state: 'stale', reason: why, syncedEvents: 0 } : e);
  entry.assembled = { ...vol, elements: vol.elements.map(setMember) };
  host.log('warn', `volume ${keep.name}: element ${name} answers again but ${why}; the writes it took alone are discarded`);
  keeper.kick(keep);
  host.changed();
}
