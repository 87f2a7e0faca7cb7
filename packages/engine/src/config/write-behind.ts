// volumes[].writeBehind: one raid1 or raid10 leg (usually a remote one) that gets client writes after they
// are acknowledged, with a bounded lag (docs/durability.md "Write-behind legs").
import type { Layout } from './types.js';
import { configError, show } from './errors.js';
import { join, readBool, readInt, readMap, readString } from './fields.js';

export interface WriteBehindConfig {
  /** The leg (an element of this volume) that is written behind. */
  readonly element: string;
  /** Bytes acknowledged but not yet on that leg, at most (the staging memory, allocated once). */
  readonly maxLagMiB: number;
  /** FLUSH waits until the leg has caught up and flushes it too (else FLUSH covers the other legs only). */
  readonly drainOnFlush: boolean;
}

export const WRITE_BEHIND_MAX_LAG_MIB = 1024;
export const WRITE_BEHIND_DEFAULT_LAG_MIB = 64;

export function normalizeWriteBehind(raw: unknown, field: string, layout: Layout, elements: readonly string[], _integrity = false): WriteBehindConfig {
  const map = readMap(raw, field, ['element', 'maxLagMiB', 'drainOnFlush']);
  if (layout !== 'raid1' && layout !== 'raid10') {
    throw configError(field, `write-behind legs are for raid1 and raid10 volumes (this one is ${layout})`, 'remove writeBehind, or use layout raid1');
  }
  if (map.element === undefined) throw configError(join(field, 'element'), 'missing (the name of the leg written behind)');
  const element = readString(map.element, join(field, 'element'), 64);
  if (!elements.includes(element)) throw configError(join(field, 'element'), `element ${show(element)} is not a leg of this volume`, `one of ${elements.join(', ')}`);
  if (elements.length < 2) throw configError(join(field, 'element'), 'the write-behind leg cannot be the only leg');
  const maxLagMiB = map.maxLagMiB === undefined ? WRITE_BEHIND_DEFAULT_LAG_MIB : readInt(map.maxLagMiB, join(field, 'maxLagMiB'), 1, WRITE_BEHIND_MAX_LAG_MIB);
  const drainOnFlush = map.drainOnFlush === undefined ? true : readBool(map.drainOnFlush, join(field, 'drainOnFlush'));
  return { element, maxLagMiB, drainOnFlush };
}

/** The data path's view (TopologyVolume.writeBehind); nothing when the leg is no longer a member (replaced or removed). */
export function writeBehindTopology(cfg: WriteBehindConfig | undefined, members: readonly string[], indexOf: (name: string) => number): { writeBehind?: { element: number; maxLagBytes: number; drainOnFlush: boolean } } {
  if (cfg === undefined || !members.includes(cfg.element)) return {};
  return { writeBehind: { element: indexOf(cfg.element), maxLagBytes: cfg.maxLagMiB * 1024 * 1024, drainOnFlush: cfg.drainOnFlush } };
}
