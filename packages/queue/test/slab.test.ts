import { describe, expect, it } from 'vitest';
import { alignUp, IndexPool, QueueError, Slab } from '../src/index.js';

describe('Slab', () => {
  it.each([
    [0, 0],
    [16, 4080],
    [4080, 16],
  ])('misalignment %i puts the first slot at SAB offset %i (page aligned in real memory)', (mis, first) => {
    const slotBytes = 8192;
    const bytes = Slab.sabBytesFor(3, slotBytes);
    expect(bytes).toBe(3 * slotBytes + 4096);
    const slab = new Slab(new SharedArrayBuffer(bytes), 3, slotBytes, mis);
    expect(slab.firstSlotOffsetBytes).toBe(first);
    for (let slot = 0; slot < 3; slot++) {
      const off = slab.byteOffsetOf(slot);
      expect((mis + off) % 4096).toBe(0); // real address = base + off
      expect(off + slotBytes).toBeLessThanOrEqual(bytes);
    }
  });

  it('gives bounded views into a slot and shares memory', () => {
    const sab = new SharedArrayBuffer(Slab.sabBytesFor(2, 4096));
    const slab = new Slab(sab, 2, 4096, 16);
    const v = slab.view(1, 100, 8);
    v[0] = 0xab;
    expect(new Uint8Array(sab)[slab.byteOffsetOf(1) + 100]).toBe(0xab);
    expect(slab.view(0).byteLength).toBe(4096);
    expect(slab.view(0, 4000).byteLength).toBe(96);
    expect(() => slab.view(2)).toThrow(QueueError);
    expect(() => slab.view(0, 4000, 97)).toThrow(QueueError);
    expect(() => slab.view(0, -1)).toThrow(QueueError);
  });

  it('rejects bad geometry', () => {
    expect(() => Slab.sabBytesFor(1, 1000)).toThrow(QueueError);
    expect(() => new Slab(new SharedArrayBuffer(4096), 1, 4096, 0)).toThrow(QueueError); // no spare page
    expect(() => new Slab(new SharedArrayBuffer(8192), 1, 4096, 4096)).toThrow(QueueError);
  });
});

describe('IndexPool', () => {
  it('hands out every index once, then -1; catches double free', () => {
    const pool = new IndexPool(new SharedArrayBuffer(IndexPool.bytesFor(5)), 0, 5, true);
    expect(pool.available()).toBe(5);
    const got = new Set<number>();
    for (let i = 0; i < 5; i++) got.add(pool.tryAlloc());
    expect([...got].sort()).toEqual([0, 1, 2, 3, 4]);
    expect(pool.tryAlloc()).toBe(-1);
    pool.free(3);
    expect(() => pool.free(3)).toThrow(QueueError);
    expect(() => pool.free(5)).toThrow(QueueError);
    expect(pool.available()).toBe(1);
    expect(pool.tryAlloc()).toBe(3);
  });

  it('attaches with init=false', () => {
    const sab = new SharedArrayBuffer(IndexPool.bytesFor(3));
    const a = new IndexPool(sab, 0, 3, true);
    const b = new IndexPool(sab, 0, 3, false);
    const i = a.tryAlloc();
    b.free(i);
    expect(b.available()).toBe(3);
  });
});

describe('alignUp', () => {
  it('rounds up to the alignment', () => {
    expect(alignUp(0, 64)).toBe(0);
    expect(alignUp(1, 64)).toBe(64);
    expect(alignUp(4096, 4096)).toBe(4096);
    expect(alignUp(4097, 4096)).toBe(8192);
    expect(() => alignUp(1, 0)).toThrow(QueueError);
  });
});
