// ReadCache on its own: LRU order, lazy allocation within the budget, invalidation, and the
// generation check that keeps a fill racing a write from re-inserting stale bytes.
import { describe, expect, it } from 'vitest';
import { ReadCache } from '../src/datapath/read-cache.js';

const BS = 4096;

function bytes(len: number, fill: number): Uint8Array {
  return new Uint8Array(len).fill(fill);
}

/** Fills [off, +len) of `volume` as a completed read would. */
function fill(c: ReadCache, volume: number, off: number, data: Uint8Array): number {
  return c.endFill(c.beginFill(volume, off, data.length), off, [data]);
}

describe('ReadCache', () => {
  it('serves a filled range, including sub-block and unaligned pieces of it', () => {
    const c = new ReadCache(1024 * 1024);
    const data = new Uint8Array(4 * BS).map((_, i) => i % 251);
    expect(c.readInto(0, 0, BS)).toBeNull();
    expect(fill(c, 0, 0, data)).toBe(4);
    expect(c.readInto(0, 0, 4 * BS)).toEqual(data);
    expect(c.readInto(0, 100, 5000)).toEqual(data.subarray(100, 5100));
    expect(c.readInto(0, 3 * BS, 2 * BS)).toBeNull(); // the fifth block was never filled
    expect(c.readInto(1, 0, BS)).toBeNull(); // another volume
  });

  it('fills only whole blocks inside the read, across chunk boundaries', () => {
    const c = new ReadCache(1024 * 1024);
    const data = new Uint8Array(3 * BS).map((_, i) => (i * 7) % 256);
    // The read starts mid-block: only the blocks it covers entirely are kept.
    const ticket = c.beginFill(0, 512, 3 * BS - 512);
    const chunks = [data.subarray(512, 5000), data.subarray(5000)];
    expect(c.endFill(ticket, 512, chunks)).toBe(2);
    expect(c.readInto(0, BS, 2 * BS)).toEqual(data.subarray(BS));
    expect(c.readInto(0, 0, BS)).toBeNull();
  });

  it('evicts the least recently used block and never allocates past the budget', () => {
    const c = new ReadCache(3 * BS);
    for (let b = 0; b < 3; b++) fill(c, 0, b * BS, bytes(BS, b + 1));
    expect(c.allocatedBytes()).toBe(3 * BS);
    expect(c.readInto(0, 0, BS)).not.toBeNull(); // block 0 is now the most recent
    fill(c, 0, 3 * BS, bytes(BS, 4)); // evicts block 1
    expect(c.readInto(0, BS, BS)).toBeNull();
    expect(c.readInto(0, 0, BS)![0]).toBe(1);
    expect(c.readInto(0, 3 * BS, BS)![0]).toBe(4);
    for (let b = 10; b < 100; b++) fill(c, 2, b * BS, bytes(BS, b));
    expect(c.cachedBlocks()).toBe(3);
    expect(c.allocatedBytes()).toBe(3 * BS);
  });

  it('allocates lazily, in arenas within the budget', () => {
    const c = new ReadCache(64 * 1024 * 1024);
    expect(c.allocatedBytes()).toBe(0);
    fill(c, 0, 0, bytes(BS, 1));
    expect(c.allocatedBytes()).toBeGreaterThan(0);
    expect(c.allocatedBytes()).toBeLessThanOrEqual(1024 * 1024);
  });

  it('is off with a zero budget', () => {
    const c = new ReadCache(0);
    expect(c.enabled).toBe(false);
    expect(c.beginFill(0, 0, BS)).toBeNull();
    expect(fill(c, 0, 0, bytes(BS, 1))).toBe(0);
    expect(c.readInto(0, 0, BS)).toBeNull();
    expect(c.allocatedBytes()).toBe(0);
  });

  it('invalidate drops every block the range touches, and only those', () => {
    const c = new ReadCache(1024 * 1024);
    fill(c, 0, 0, bytes(8 * BS, 9));
    fill(c, 1, 0, bytes(8 * BS, 9));
    c.invalidate(0, 2 * BS + 1, 10); // touches block 2 only
    expect(c.readInto(0, 2 * BS, BS)).toBeNull();
    expect(c.readInto(0, 0, 2 * BS)).not.toBeNull();
    expect(c.readInto(0, 3 * BS, 5 * BS)).not.toBeNull();
    // A range far larger than what is cached takes the walk-the-cache path.
    c.invalidate(0, 4 * BS, 1024 * 1024 * 1024);
    expect(c.readInto(0, 4 * BS, BS)).toBeNull();
    expect(c.readInto(0, 3 * BS, BS)).not.toBeNull();
    expect(c.readInto(1, 0, 8 * BS)).not.toBeNull();
    c.invalidateVolume(1);
    expect(c.readInto(1, 0, BS)).toBeNull();
    expect(c.readInto(0, 0, BS)).not.toBeNull();
  });

  it('a fill started before a write completes is not inserted', () => {
    const c = new ReadCache(1024 * 1024);
    const ticket = c.beginFill(0, 0, 2 * BS); // read submitted, old bytes on the way
    c.invalidate(0, BS, BS); // a write to block 1 completes meanwhile
    expect(c.endFill(ticket, 0, [bytes(2 * BS, 0xaa)])).toBe(1); // block 0 only
    expect(c.readInto(0, 0, BS)).not.toBeNull();
    expect(c.readInto(0, BS, BS)).toBeNull();
  });

  it('a large invalidation (the walk path) also voids fills in flight', () => {
    const c = new ReadCache(1024 * 1024);
    const ticket = c.beginFill(3, 8 * BS, BS);
    c.invalidate(3, 0, 1024 * 1024 * 1024);
    expect(c.endFill(ticket, 8 * BS, [bytes(BS, 1)])).toBe(0);
    expect(c.readInto(3, 8 * BS, BS)).toBeNull();
  });

  it('overlapping fills: each keeps its own generation, a failed one inserts nothing', () => {
    const c = new ReadCache(1024 * 1024);
    const a = c.beginFill(0, 0, BS);
    c.invalidate(0, 0, BS);
    const b = c.beginFill(0, 0, BS); // started after the write: its bytes are current
    expect(c.endFill(a, 0, [bytes(BS, 1)])).toBe(0);
    expect(c.endFill(b, 0, null)).toBe(0);
    expect(c.readInto(0, 0, BS)).toBeNull();
    const d = c.beginFill(0, 0, BS);
    expect(c.endFill(d, 0, [bytes(BS, 2)])).toBe(1);
    expect(c.readInto(0, 0, BS)![0]).toBe(2);
  });

  it('large reads do not fill (a scan must not evict the hot set)', () => {
    const c = new ReadCache(64 * 1024 * 1024, { fillMaxBytes: 64 * 1024 });
    expect(c.beginFill(0, 0, 128 * 1024)).toBeNull();
    expect(c.beginFill(0, 0, 512)).toBeNull(); // no whole block
  });
});
