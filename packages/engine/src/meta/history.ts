// History ids (docs/durability.md "Which side is newer", rule 6). Event counters alone cannot
// tell two sides of a split apart once they reach the same counter, so every superblock also
// carries the id of the history it was written in (bytes 284..292): a random u64 chosen again
// whenever the set of active legs changes — it shrinks (a leg failed, or a run starts without
// one) or a leg returns. Two legs with the same counter and the same id went through the same
// history; the same counter with another id means one of them took writes the other never saw.
import { randomBytes } from 'node:crypto';

/** Ids remembered per volume by event counter (newest last); older ones are simply not known. */
const REMEMBERED = 64;

export interface VolumeHistory {
  /** The id the volume's superblocks are written with now. */
  readonly id: string;
  /** The legs (names, sorted) that were active when it was chosen: another set chooses a new id. */
  readonly legs: readonly string[];
  /** [event counter, id] this run wrote or found at assembly, oldest first, at most REMEMBERED. */
  readonly byEvent: readonly (readonly [number, string])[];
}

/** A random non-zero u64 as 16 lower-case hex digits (zero on disk means "none"). */
export function newHistoryId(): string {
  for (;;) {
    const id = randomBytes(8).toString('hex');
    if (id !== '0000000000000000') return id;
  }
}

function sameLegs(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function remember(byEvent: readonly (readonly [number, string])[], eventCount: number, id: string): (readonly [number, string])[] {
  const kept = byEvent.filter(([c]) => c !== eventCount);
  kept.push([eventCount, id]);
  return kept.slice(-REMEMBERED);
}

/**
 * At assembly: the freshest superblock's id, counted as the history of every leg of the array
 * (so a run that starts with fewer legs chooses a new one at its first write). None when the
 * superblocks are older than history ids: the first write chooses one.
 */
export function historyAtAssembly(ref: { readonly eventCount: number; readonly historyId?: string }, legs: readonly string[]): VolumeHistory | undefined {
  if (ref.historyId === undefined) return undefined;
  return { id: ref.historyId, legs: [...legs].sort(), byEvent: [[ref.eventCount, ref.historyId]] };
}

/** The history the superblocks written with `eventCount` carry: the same id while the same legs are active, else a new one. */
export function historyFor(prev: VolumeHistory | undefined, activeLegs: readonly string[], eventCount: number): VolumeHistory {
  const legs = [...activeLegs].sort();
  const id = prev !== undefined && sameLegs(prev.legs, legs) ? prev.id : newHistoryId();
  return { id, legs, byEvent: remember(prev?.byEvent ?? [], eventCount, id) };
}

/**
 * What the volume's history says of a leg that answers with (eventCount, historyId): `same` (it
 * was written in this volume's history at that counter), `other` (this volume wrote another id at
 * that counter: the leg took writes in a history of its own), `unknown` (no id, or a counter this
 * run does not remember).
 */
export function historyVerdict(h: VolumeHistory | undefined, eventCount: number, historyId: string | undefined): 'same' | 'other' | 'unknown' {
  if (h === undefined || historyId === undefined) return 'unknown';
  const ours = h.byEvent.find(([c]) => c === eventCount)?.[1];
  if (ours === undefined) return 'unknown';
  return ours === historyId ? 'same' : 'other';
}

/** The id this volume wrote at `eventCount`, if remembered (for messages). */
export function historyAt(h: VolumeHistory | undefined, eventCount: number): string | undefined {
  return h?.byEvent.find(([c]) => c === eventCount)?.[1];
}
