// The integrity map (integrity/map.ts, NBD x-onestack:integrity): per-block states, extents in
// order with equal flags merged and clipped to the query, the run cap merging coarsely without
// ever losing a bad mark, the counters' per-volume count(), the NBD adapter's context offer.
import { describe, expect, it } from 'vitest';
import { IntegrityCounters } from '../dist/integrity/counters.js';
import { IntegrityMap, IntegrityMaps } from '../dist/integrity/map.js';
import { INTEGRITY_CONTEXT, metaContextsFor } from '../dist/nbd-adapter.js';

const B = 4096;

describe('IntegrityMap', () => {
  it('reports nothing known as one flag-0 extent', () => {
    expect(new IntegrityMap().extents(0, 10 * B, 16)).toEqual([{ lengthBytes: 10 * B, flags: 0 }]);
  });

  it('a repaired block is flag 2 exactly at its 4 KiB, a lost one flag 1', () => {
    const m = new IntegrityMap();
    m.mark(3 * B + 17, 'mismatches');
    m.mark(3 * B, 'repaired');
    m.mark(7 * B, 'unrecoverable');
    expect(m.extents(0, 10 * B, 16)).toEqual([
      { lengthBytes: 3 * B, flags: 0 }, { lengthBytes: B, flags: 2 }, { lengthBytes: 3 * B, flags: 0 },
      { lengthBytes: B, flags: 1 }, { lengthBytes: 2 * B, flags: 0 },
    ]);
    // Unaligned query: the first extent starts at the offset, the last ends at offset + length.
    expect(m.extents(3 * B + 100, B, 16)).toEqual([{ lengthBytes: B - 100, flags: 2 }, { lengthBytes: 100, flags: 0 }]);
    // extentsMax cuts the answer short (the client asks again for the rest).
    expect(m.extents(0, 10 * B, 2)).toEqual([{ lengthBytes: 3 * B, flags: 0 }, { lengthBytes: B, flags: 2 }]);
  });

  it('a mismatch waiting for its repair is bad; an unrecoverable block stays bad', () => {
    const m = new IntegrityMap();
    m.mark(0, 'mismatches');
    expect(m.extents(0, B, 4)).toEqual([{ lengthBytes: B, flags: 1 }]);
    m.mark(0, 'unrecoverable');
    m.mark(0, 'repaired');
    expect(m.extents(0, B, 4)).toEqual([{ lengthBytes: B, flags: 1 }]);
    // A repaired block found bad again is bad until repaired again.
    m.mark(B, 'repaired');
    m.mark(B, 'mismatches');
    expect(m.extents(B, B, 4)).toEqual([{ lengthBytes: B, flags: 1 }]);
  });

  it('joins neighbours and splits runs', () => {
    const m = new IntegrityMap();
    for (let b = 0; b < 8; b++) m.mark(b * B, 'repaired');
    expect(m.runCount).toBe(1);
    m.mark(4 * B, 'unrecoverable');
    expect(m.runCount).toBe(3);
    expect(m.extents(0, 8 * B, 8).map((e) => [e.lengthBytes / B, e.flags])).toEqual([[4, 2], [1, 1], [3, 2]]);
  });

  it('past the cap merges the closest runs, never dropping a bad mark', () => {
    const m = new IntegrityMap(8);
    const bad: number[] = [];
    for (let k = 0; k < 100; k++) {
      const block = k * 37 + (k % 5);
      m.mark(block * B, k % 3 === 0 ? 'unrecoverable' : 'repaired');
      if (k % 3 === 0) bad.push(block);
      expect(m.runCount).toBeLessThanOrEqual(8);
    }
    for (const block of bad) expect(m.extents(block * B, B, 1)).toEqual([{ lengthBytes: B, flags: 1 }]);
  });

  it('IntegrityMaps keeps one map per volume and forgets a deleted one', () => {
    const maps = new IntegrityMaps();
    maps.mark('a', 0, 'repaired');
    expect(maps.extents('b', 0, B, 4)).toEqual([{ lengthBytes: B, flags: 0 }]);
    expect(maps.extents('a', 0, B, 4)).toEqual([{ lengthBytes: B, flags: 2 }]);
    maps.forget('a');
    expect(maps.extents('a', 0, B, 4)).toEqual([{ lengthBytes: B, flags: 0 }]);
  });

  it('counters.countFor counts per element and marks the volume map when the offset is known', () => {
    const c = new IntegrityCounters();
    const count = c.countFor('v');
    count(2, 'mismatches', 1, 5 * B);
    count(2, 'repaired', 1, 5 * B);
    count(2, 'repaired', 1); // no offset: counted only
    expect(c.snapshot(2)).toEqual({ mismatches: 1, repaired: 2, unrecoverable: 0 });
    expect(c.maps.extents('v', 5 * B, B, 4)).toEqual([{ lengthBytes: B, flags: 2 }]);
  });
});

describe('metaContextsFor', () => {
  const base = {
    allocation: () => Promise.resolve([]),
    checkpointNames: () => ['c1'],
    dirtyExtents: () => Promise.resolve([]),
  };

  it('offers x-onestack:integrity only with an integrity source', async () => {
    expect(metaContextsFor(base).names()).not.toContain(INTEGRITY_CONTEXT);
    const ctx = metaContextsFor({ ...base, integrityExtents: (off: number, len: number) => Promise.resolve([{ lengthBytes: len, flags: off === 0 ? 2 : 0 }]) });
    expect(ctx.names()).toEqual(['base:allocation', 'x-onestack:integrity', 'qemu:dirty-bitmap:c1']);
    expect(await ctx.blockStatus(INTEGRITY_CONTEXT, 0, B, 4)).toEqual([{ lengthBytes: B, flags: 2 }]);
    await expect(metaContextsFor(base).blockStatus(INTEGRITY_CONTEXT, 0, B, 4)).rejects.toMatchObject({ errno: 'EINVAL' });
  });
});
