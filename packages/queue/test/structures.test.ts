import { describe, expect, it } from 'vitest';
import {
  createQueue,
  D,
  DESC_WORDS,
  DescriptorTable,
  LifoStack,
  PRIORITY_LEVELS,
  PriorityQueue,
  pushSure,
  queueBytes,
  QueueError,
  Ring,
  type QueuePolicy,
} from '../src/index.js';

describe('Ring (Vyukov MPMC FIFO)', () => {
  it('keeps FIFO order and reports full as false (back-pressure), empty as -1', () => {
    const ring = new Ring(new SharedArrayBuffer(Ring.bytesFor(8)), 0, 8, true);
    expect(ring.tryPop()).toBe(-1);
    for (let i = 0; i < 8; i++) expect(ring.tryPush(100 + i)).toBe(true);
    expect(ring.tryPush(999)).toBe(false);
    expect(ring.size()).toBe(8);
    for (let i = 0; i < 8; i++) expect(ring.tryPop()).toBe(100 + i);
    expect(ring.tryPop()).toBe(-1);
    expect(ring.size()).toBe(0);
  });

  it('survives int32 position wraparound past 2^31 (and past 2^32)', () => {
    for (const start of [2 ** 31 - 5, -3, 2 ** 32 - 3]) {
      const ring = new Ring(new SharedArrayBuffer(Ring.bytesFor(4)), 0, 4, true, start);
      let next = 0;
      let expected = 0;
      for (let round = 0; round < 50; round++) {
        // Fill to full, check back-pressure at the wrap, then drain part of it.
        while (ring.tryPush(next)) next++;
        expect(ring.size()).toBe(4);
        for (let k = 0; k < 3; k++) expect(ring.tryPop()).toBe(expected++);
      }
      while (expected < next) expect(ring.tryPop()).toBe(expected++);
      expect(ring.tryPop()).toBe(-1);
    }
  });

  it('attaches to an existing ring (init=false) and rejects a wrong shape', () => {
    const sab = new SharedArrayBuffer(Ring.bytesFor(16) + 64);
    const a = new Ring(sab, 64, 16, true);
    const b = new Ring(sab, 64, 16, false);
    a.tryPush(7);
    expect(b.tryPop()).toBe(7);
    expect(() => new Ring(sab, 64, 8, false)).toThrow(QueueError);
    expect(() => new Ring(sab, 0, 16, false)).toThrow(QueueError);
  });

  it('asserts capacity and value ranges', () => {
    expect(() => Ring.bytesFor(12)).toThrow(QueueError);
    expect(() => Ring.bytesFor(0)).toThrow(QueueError);
    expect(() => new Ring(new SharedArrayBuffer(64), 0, 16, true)).toThrow(QueueError);
    const ring = new Ring(new SharedArrayBuffer(Ring.bytesFor(2)), 0, 2, true);
    expect(() => ring.tryPush(-1)).toThrow(QueueError);
    expect(() => ring.tryPush(2 ** 31)).toThrow(QueueError);
    expect(() => ring.tryPush(1.5)).toThrow(QueueError);
  });
});

describe('LifoStack (tagged Treiber stack)', () => {
  it('keeps LIFO order; empty is -1', () => {
    const stack = new LifoStack(new SharedArrayBuffer(LifoStack.bytesFor(8)), 0, 8, true);
    expect(stack.tryPop()).toBe(-1);
    for (const v of [3, 0, 7, 5]) expect(stack.tryPush(v)).toBe(true);
    expect(stack.size()).toBe(4);
    expect([stack.tryPop(), stack.tryPop(), stack.tryPop(), stack.tryPop()]).toEqual([5, 7, 0, 3]);
    expect(stack.tryPop()).toBe(-1);
  });

  it('holds every index at once, rejects duplicates and out-of-range values', () => {
    const stack = new LifoStack(new SharedArrayBuffer(LifoStack.bytesFor(5)), 0, 5, true);
    for (let i = 0; i < 5; i++) stack.tryPush(i);
    expect(stack.size()).toBe(5);
    expect(() => stack.tryPush(2)).toThrow(QueueError);
    expect(() => stack.tryPush(5)).toThrow(QueueError);
    expect(() => stack.tryPush(-1)).toThrow(QueueError);
    expect(stack.tryPop()).toBe(4);
    expect(stack.tryPush(4)).toBe(true); // allowed again once popped
  });

  it('wraps the 32-bit ABA tag cleanly', () => {
    const stack = new LifoStack(new SharedArrayBuffer(LifoStack.bytesFor(4)), 0, 4, true, 2 ** 32 - 3);
    expect(stack.tag()).toBe(2 ** 32 - 3);
    for (let round = 0; round < 10; round++) {
      stack.tryPush(1);
      stack.tryPush(2);
      expect(stack.tryPop()).toBe(2);
      expect(stack.tryPop()).toBe(1);
    }
    expect(stack.tag()).toBe(37); // 40 successful CASes from 2^32 - 3
    expect(stack.tryPop()).toBe(-1);
  });

  it('attaches with init=false and requires 8-byte alignment', () => {
    const sab = new SharedArrayBuffer(LifoStack.bytesFor(4) + 8);
    const a = new LifoStack(sab, 8, 4, true);
    a.tryPush(3);
    expect(new LifoStack(sab, 8, 4, false).tryPop()).toBe(3);
    expect(() => new LifoStack(sab, 4, 4, true)).toThrow(QueueError);
  });
});

describe('PriorityQueue', () => {
  it('serves the highest level first and FIFO within a level', () => {
    const q = new PriorityQueue(new SharedArrayBuffer(PriorityQueue.bytesFor(4, 4)), 0, 4, 4, true);
    q.tryPush(10, 0);
    q.tryPush(30, 3);
    q.tryPush(11, 0);
    q.tryPush(20, 1);
    q.tryPush(31, 3);
    expect(q.size()).toBe(5);
    const out: number[] = [];
    for (let v = q.tryPop(); v >= 0; v = q.tryPop()) out.push(v);
    expect(out).toEqual([30, 31, 20, 10, 11]);
  });

  it('back-pressures per level and asserts the priority range', () => {
    const q = new PriorityQueue(new SharedArrayBuffer(PriorityQueue.bytesFor(2, 2)), 0, 2, 2, true);
    expect(q.tryPush(1, 1) && q.tryPush(2, 1)).toBe(true);
    expect(q.tryPush(3, 1)).toBe(false);
    expect(q.tryPush(3, 0)).toBe(true); // the other level still has room
    expect(() => q.tryPush(4, 2)).toThrow(QueueError);
    expect(() => q.tryPush(4, -1)).toThrow(QueueError);
  });
});

describe('createQueue', () => {
  const policies: QueuePolicy[] = ['fifo', 'lifo', 'priority'];
  it.each(policies)('%s: one interface, sizes aligned, attachable', (policy) => {
    const bytes = queueBytes(policy, 8);
    expect(bytes % 64).toBe(0);
    const sab = new SharedArrayBuffer(bytes * 2);
    const q = createQueue(policy, sab, bytes, 8, true);
    const other = createQueue(policy, sab, bytes, 8, false);
    expect(q.policy).toBe(policy);
    expect(q.capacity).toBe(8);
    for (let i = 0; i < 8; i++) expect(q.tryPush(i, i % PRIORITY_LEVELS)).toBe(true);
    expect(other.size()).toBe(8);
    const out: number[] = [];
    for (let v = other.tryPop(); v >= 0; v = other.tryPop()) out.push(v);
    const expected = { fifo: [0, 1, 2, 3, 4, 5, 6, 7], lifo: [7, 6, 5, 4, 3, 2, 1, 0], priority: [3, 7, 2, 6, 1, 5, 0, 4] };
    expect(out).toEqual(expected[policy]);
  });

  it('rejects an unknown policy', () => {
    expect(() => queueBytes('random' as never, 8)).toThrow(QueueError);
  });
});

describe('DescriptorTable', () => {
  it('lays out 16-word descriptors and round-trips 53-bit offsets', () => {
    const table = new DescriptorTable(new SharedArrayBuffer(DescriptorTable.bytesFor(4)), 0, 4);
    expect(DescriptorTable.bytesFor(4)).toBe(4 * 64);
    expect(table.base(3)).toBe(3 * DESC_WORDS);
    for (const off of [0, 4096, 2 ** 32 - 1, 2 ** 32, 2 ** 40 + 12345, Number.MAX_SAFE_INTEGER]) {
      table.setOffset(2, off);
      expect(table.getOffset(2)).toBe(off);
    }
    table.words[table.base(1) + D.LENGTH] = 512;
    table.reset(1);
    expect(table.words[table.base(1) + D.LENGTH]).toBe(0);
    expect(table.words[table.base(1) + D.PARENT]).toBe(-1);
    expect(() => table.base(4)).toThrow(QueueError);
    expect(() => table.setOffset(0, -1)).toThrow(QueueError);
  });
});

describe('pushSure', () => {
  it('pushes at once when there is room, gives up after the timeout when the ring stays full', () => {
    const sab = new SharedArrayBuffer(Ring.bytesFor(4));
    const ring = new Ring(sab, 0, 4, true);
    for (let i = 0; i < 4; i++) expect(pushSure(ring, i, undefined, 10)).toBe(true);
    const t0 = Date.now();
    expect(pushSure(ring, 9, undefined, 30)).toBe(false);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(25);
    expect(ring.tryPop()).toBe(0);
    expect(pushSure(ring, 9, undefined, 30)).toBe(true);
    expect([ring.tryPop(), ring.tryPop(), ring.tryPop(), ring.tryPop()]).toEqual([1, 2, 3, 9]);
  });
});
