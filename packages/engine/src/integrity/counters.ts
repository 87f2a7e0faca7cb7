// Per-element integrity event counters (docs/integrity.md): blocks found bad while a good copy
// existed (mismatches: the checksum failed, or the bytes differed from the copy that verified),
// those rewritten from it (repaired), and blocks found bad with no good copy left (unrecoverable,
// counted there only, never also as mismatches). Keyed by data-path element index, kept since the daemon started, shown in the
// element's status. The data path counts through count(); status reads snapshot(). Events the
// data path places (a volume offset) also go to the volume's map (map.ts, NBD x-onestack:integrity).
import { IntegrityMaps } from './map.js';
import { INTEGRITY_BLOCK_BYTES } from './types.js';

export type IntegrityCounterName = 'mismatches' | 'repaired' | 'unrecoverable';

export interface IntegrityCounts {
  mismatches: number;
  repaired: number;
  unrecoverable: number;
}

export class IntegrityCounters {
  /** Only elements that had an event (at most one entry per element slot). */
  private readonly byElement = new Map<number, IntegrityCounts>();
  /** Per-volume block maps of the events with a volume offset. */
  readonly maps = new IntegrityMaps();

  /** Adds `blocks` to `event` of `element` (same shape as checksum-io's IntegrityCount; bind-free). */
  readonly count = (element: number, event: IntegrityCounterName, blocks: number): void => {
    if (!(Number.isInteger(element) && element >= 0) || !(Number.isSafeInteger(blocks) && blocks > 0)) return;
    let c = this.byElement.get(element);
    if (c === undefined) {
      c = { mismatches: 0, repaired: 0, unrecoverable: 0 };
      this.byElement.set(element, c);
    }
    c[event] += blocks;
  };

  /**
   * count() for one volume: an event given a volume offset (its first block's; the `blocks` are
   * consecutive from there) is also marked in the volume's map.
   */
  countFor(volume: string): (element: number, event: IntegrityCounterName, blocks: number, volumeOffsetBytes?: number) => void {
    return (element, event, blocks, volumeOffsetBytes) => {
      this.count(element, event, blocks);
      if (volumeOffsetBytes === undefined || !(Number.isSafeInteger(blocks) && blocks > 0)) return;
      for (let i = 0; i < blocks; i++) this.maps.mark(volume, volumeOffsetBytes + i * INTEGRITY_BLOCK_BYTES, event);
    };
  }

  /** A copy of `element`'s counters (zeros when nothing happened). */
  snapshot(element: number): IntegrityCounts {
    const c = this.byElement.get(element);
    return c === undefined ? { mismatches: 0, repaired: 0, unrecoverable: 0 } : { ...c };
  }

  /** The slot was freed (element removed): a new element in it starts from zero. */
  forget(element: number): void {
    this.byElement.delete(element);
  }
}
