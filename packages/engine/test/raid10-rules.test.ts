// The raid10 planner and the per-pair failure rule, driven deterministically in one thread: the
// test plays the bottom stage and finishes each sub with the errno and in the order it picks.
// "A write is acknowledged only when it is on every leg that the layout promises."
import { D, DESC_WORDS } from '@onestack/queue';
import { describe, expect, it } from 'vitest';
import { errnoCode } from '../src/datapath/errno.js';
import { CACHE, CHUNK, DATA_OFFSETS, FLUSH, Harness, MiB, READ, TRIM, WRITE, WRITE_ZEROES, type Sub } from './raid10-harness.js';

const EIO = errnoCode('EIO');
const EINVAL = errnoCode('EINVAL');

/** The sub that goes to `element` (exactly one expected). */
function on(subs: readonly Sub[], element: number): Sub {
  const mine = subs.filter((s) => s.element === element);
  expect(mine).toHaveLength(1);
  return mine[0]!;
}

/** A 2-chunk write at 0: chunk 0 on pair (0,1), chunk 1 on pair (2,3). */
function writeTwoPairs(h: Harness) {
  const r = h.submit(WRITE, 0, 2 * CHUNK);
  expect(r.planned).toBe(true);
  return r;
}

describe('raid10 planning', () => {
  it('writes each chunk to both legs of its pair, at the same leg offset, from the same buffer bytes', () => {
    const h = new Harness('raid10', 6);
    const r = h.submit(WRITE, CHUNK - 100, 3 * CHUNK + 200); // chunks 0..4: pairs 0,1,2,0,1
    const byChunk = [[0, 1, 0], [2, 3, 0], [4, 5, 0], [0, 1, CHUNK], [2, 3, CHUNK]];
    expect(r.subs).toHaveLength(2 * byChunk.length);
    for (const s of r.subs) h.finish(s, 0);
    expect(h.collect(r.parent)).toEqual({ result: 0, failedLegs: 0 });
    const pieces = r.subs.map((s) => [s.element, s.offsetBytes - DATA_OFFSETS[s.element]!, s.lengthBytes, s.slotOffsetBytes]);
    expect(pieces).toEqual([
      [0, CHUNK - 100, 100, 0], [1, CHUNK - 100, 100, 0],
      [2, 0, CHUNK, 100], [3, 0, CHUNK, 100],
      [4, 0, CHUNK, CHUNK + 100], [5, 0, CHUNK, CHUNK + 100],
      [0, CHUNK, CHUNK, 2 * CHUNK + 100], [1, CHUNK, CHUNK, 2 * CHUNK + 100],
      [2, CHUNK, 100, 3 * CHUNK + 100], [3, CHUNK, 100, 3 * CHUNK + 100],
    ]);
  });

  it('reads each chunk from one active leg, spreading ties, and from the survivor when degraded', () => {
    const h = new Harness();
    const r = h.submit(READ, 0, 8 * CHUNK); // 4 chunks per pair
    expect(r.subs).toHaveLength(8);
    const legsOf = (pair: number) => new Set(r.subs.filter((s) => s.element >> 1 === pair).map((s) => s.element));
    expect(legsOf(0)).toEqual(new Set([0, 1]));
    expect(legsOf(1)).toEqual(new Set([2, 3]));
    for (const s of r.subs) h.finish(s, 0);
    h.collect(r.parent);
    h.setState(0, 'failed');
    h.setState(3, 'failed');
    const d = h.submit(READ, 0, 8 * CHUNK);
    expect(d.subs.map((s) => s.element).sort()).toEqual([1, 1, 1, 1, 2, 2, 2, 2]);
    for (const s of d.subs) h.finish(s, 0);
    expect(h.collect(d.parent).result).toBe(0);
  });

  it('prefers the less-queued leg for reads', () => {
    const h = new Harness();
    Atomics.store(h.v.elemQueued, 0, 5); // leg 0 is busy
    for (let i = 0; i < 4; i++) {
      const r = h.submit(READ, 0, CHUNK);
      expect(r.subs.map((s) => s.element)).toEqual([1]);
      h.finish(r.subs[0]!, 0);
      h.collect(r.parent);
    }
    expect(Atomics.load(h.v.elemQueued, 1)).toBe(0); // each finished sub gave its count back
  });

  it('coalesces trims and zeroes per leg, sends flushes to every active leg, and caches from one leg per pair', () => {
    const h = new Harness();
    for (const op of [TRIM, WRITE_ZEROES]) {
      const r = h.submit(op, CHUNK / 2, 6 * CHUNK);
      expect(r.subs.map((s) => s.element).sort()).toEqual([0, 1, 2, 3]);
      for (const s of r.subs) expect(s.lengthBytes).toBe(3 * CHUNK);
      for (const s of r.subs) h.finish(s, 0);
      expect(h.collect(r.parent).result).toBe(0);
    }
    h.setState(2, 'failed');
    const f = h.submit(FLUSH, 0, 0);
    expect(f.subs.map((s) => [s.element, s.offsetBytes, s.lengthBytes])).toEqual([[0, 0, 0], [1, 0, 0], [3, 0, 0]]);
    for (const s of f.subs) h.finish(s, 0);
    expect(h.collect(f.parent).result).toBe(0);
    const c = h.submit(CACHE, 0, 8 * CHUNK);
    expect(c.subs).toHaveLength(2);
    expect(c.subs.find((s) => s.element >> 1 === 1)!.element).toBe(3);
    for (const s of c.subs) h.finish(s, 0);
    expect(h.collect(c.parent).result).toBe(0);
  });

  it('refuses a request that touches a pair with no active leg before any I/O; other pairs keep serving', () => {
    const h = new Harness();
    h.setState(0, 'failed');
    h.setState(1, 'stale');
    for (const [op, off, len] of [[WRITE, 0, 2 * CHUNK], [READ, CHUNK - 1, 2], [TRIM, 0, 4 * MiB], [FLUSH, 0, 0]] as const) {
      const r = h.submit(op, off, len);
      expect(r.planned).toBe(false);
      expect(h.collect(r.parent).result).toBe(-EIO);
    }
    const ok = h.submit(WRITE, CHUNK, CHUNK); // chunk 1: pair (2,3) only
    expect(ok.subs.map((s) => s.element)).toEqual([2, 3]);
    for (const s of ok.subs) h.finish(s, 0);
    expect(h.collect(ok.parent).result).toBe(0);
  });
});

describe('raid10 per-pair failure rule', () => {
  it('acks a write when one leg of a pair fails and marks that leg failed', () => {
    const h = new Harness();
    const r = writeTwoPairs(h);
    h.finish(on(r.subs, 0), EIO);
    for (const e of [1, 2, 3]) h.finish(on(r.subs, e), 0);
    expect(h.collect(r.parent)).toEqual({ result: 0, failedLegs: 1 });
    expect([0, 1, 2, 3].map((e) => h.state(e))).toEqual(['failed', 'active', 'active', 'active']);
  });

  it('acks a write that loses one leg in each pair', () => {
    const h = new Harness();
    const r = writeTwoPairs(h);
    h.finish(on(r.subs, 1), EIO);
    h.finish(on(r.subs, 2), EIO);
    h.finish(on(r.subs, 0), 0);
    h.finish(on(r.subs, 3), 0);
    expect(h.collect(r.parent)).toEqual({ result: 0, failedLegs: 2 });
  });

  // Every order in which the 4 subs can end, with both legs of pair (0,1) failing.
  const orders = permutations([0, 1, 2, 3]);
  it(`fails a write with EIO when both legs of one pair fail, whatever the order (${orders.length} orders)`, () => {
    const h = new Harness();
    for (const order of orders) {
      for (const e of [0, 1, 2, 3]) h.setState(e, 'active');
      const r = writeTwoPairs(h);
      for (const e of order) h.finish(on(r.subs, e), e < 2 ? EIO : 0);
      expect(h.collect(r.parent).result).toBe(-EIO);
      expect([2, 3].map((e) => h.state(e))).toEqual(['active', 'active']);
    }
  });

  it('fails a write whose surviving leg was failed by another request (before or after this leg ended)', () => {
    const h = new Harness();
    for (const peerFirst of [true, false]) {
      for (const e of [0, 1, 2, 3]) h.setState(e, 'active');
      const r = writeTwoPairs(h);
      const other = h.submit(WRITE, 0, CHUNK); // another request on pair (0,1)
      if (peerFirst) {
        h.finish(on(r.subs, 1), 0); // our copy landed on leg 1 ...
        h.finish(on(other.subs, 1), EIO); // ... then the other request fails leg 1
        h.finish(on(r.subs, 0), EIO); // and our leg 0 fails: no active leg holds our chunk
      } else {
        h.finish(on(r.subs, 0), EIO); // leg 0 fails first (leg 1 still active and running)
        h.finish(on(other.subs, 1), EIO); // the other request fails leg 1
        h.finish(on(r.subs, 1), 0); // our write lands on a leg that is out of the array
      }
      h.finish(on(other.subs, 0), 0);
      for (const e of [2, 3]) h.finish(on(r.subs, e), 0);
      const results = [h.collect(other.parent), h.collect(r.parent)].map((x) => x.result);
      expect(results).toEqual([-EIO, -EIO]);
    }
  });

  it('acks a write whose leg failed elsewhere when its partner still holds the chunk', () => {
    const h = new Harness();
    const r = writeTwoPairs(h);
    h.setState(1, 'failed'); // failed by someone else while our subs run
    for (const e of [0, 1, 2, 3]) h.finish(on(r.subs, e), 0);
    expect(h.collect(r.parent).result).toBe(0);
  });

  it('fails a write on a degraded pair when its only leg fails, even if the partner comes back meanwhile', () => {
    const h = new Harness();
    h.setState(1, 'failed');
    const r = writeTwoPairs(h);
    expect(r.subs.map((s) => s.element).sort()).toEqual([0, 2, 3]); // leg 1 gets no copy
    h.setState(1, 'active'); // e.g. the control plane re-activates it: it still lacks this write
    h.finish(on(r.subs, 0), EIO);
    for (const e of [2, 3]) h.finish(on(r.subs, e), 0);
    expect(h.collect(r.parent).result).toBe(-EIO);
    // ... and the degraded pair acks a write that its one leg takes.
    h.setState(0, 'active');
    h.setState(1, 'failed');
    const ok = writeTwoPairs(h);
    for (const s of ok.subs) h.finish(s, 0);
    expect(h.collect(ok.parent).result).toBe(0);
  });

  it('treats EINVAL as a request error, not a leg failure', () => {
    const h = new Harness();
    const r = writeTwoPairs(h);
    h.finish(on(r.subs, 0), EINVAL);
    for (const e of [1, 2, 3]) h.finish(on(r.subs, e), 0);
    expect(h.collect(r.parent)).toEqual({ result: -EINVAL, failedLegs: 0 });
    expect(h.state(0)).toBe('active');
  });

  it('fails a flush when both legs of a pair fail to flush, not when one does', () => {
    const h = new Harness();
    const one = h.submit(FLUSH, 0, 0);
    for (const s of one.subs) h.finish(s, s.element === 2 ? EIO : 0);
    expect(h.collect(one.parent).result).toBe(0);
    const both = h.submit(FLUSH, 0, 0); // pair (2,3) now has only leg 3
    expect(both.subs.map((s) => s.element)).toEqual([0, 1, 3]);
    for (const s of both.subs) h.finish(s, s.element === 3 ? EIO : 0);
    expect(h.collect(both.parent).result).toBe(-EIO);
  });

  it('fails a read whose leg fails (a hole in the buffer) and counts the leg, so Top retries on the partner', () => {
    const h = new Harness();
    const r = h.submit(READ, 0, 2 * CHUNK);
    const first = r.subs[0]!;
    h.finish(first, EIO);
    for (const s of r.subs.slice(1)) h.finish(s, 0);
    expect(h.collect(r.parent)).toEqual({ result: -EIO, failedLegs: 1 });
    expect(h.state(first.element)).toBe('failed');
    const retry = h.submit(READ, 0, 2 * CHUNK);
    expect(retry.subs.map((s) => s.element)).toContain(first.element ^ 1);
    for (const s of retry.subs) h.finish(s, 0);
    expect(h.collect(retry.parent).result).toBe(0);
  });

  it('leaves raid1 on the counting rule: one leg may fail, all legs failing fails the write', () => {
    const h = new Harness('raid1', 2, MiB);
    const one = h.submit(WRITE, 0, 4096);
    h.finish(on(one.subs, 0), EIO);
    h.finish(on(one.subs, 1), 0);
    expect(h.collect(one.parent)).toEqual({ result: 0, failedLegs: 1 });
    h.setState(0, 'active');
    const both = h.submit(WRITE, 0, 4096);
    for (const s of both.subs) h.finish(s, EIO);
    expect(h.collect(both.parent)).toEqual({ result: -EIO, failedLegs: 2 });
    const sb = both.subs[0]!.index * DESC_WORDS;
    expect(h.v.words[sb + D.PARENT]).toBe(-1); // subs were freed
  });
});

function permutations<T>(xs: readonly T[]): T[][] {
  if (xs.length <= 1) return [xs.slice()];
  return xs.flatMap((x, i) => permutations([...xs.slice(0, i), ...xs.slice(i + 1)]).map((rest) => [x, ...rest]));
}
