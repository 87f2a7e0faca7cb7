// raid10 with a leg being rebuilt (or resynced): writes, trims, zeroes and flushes reach it so the
// part already copied stays current, reads never come from it, and it never counts as holding a
// write: the per-pair rule still needs the active partner (complete.ts checkPair).
import { describe, expect, it } from 'vitest';
import { errnoCode } from '../src/datapath/errno.js';
import { CHUNK, FLUSH, Harness, READ, TRIM, WRITE, WRITE_ZEROES, type Sub } from './raid10-harness.js';

const EIO = errnoCode('EIO');

function on(subs: readonly Sub[], element: number): Sub {
  const mine = subs.filter((s) => s.element === element);
  expect(mine).toHaveLength(1);
  return mine[0]!;
}

describe('raid10 with a rebuilding leg', () => {
  it('sends writes, trims, zeroes and flushes to the rebuilding leg, reads only to its partner', () => {
    const h = new Harness();
    h.setState(1, 'rebuilding');
    for (const op of [WRITE, TRIM, WRITE_ZEROES]) {
      const r = h.submit(op, 0, 2 * CHUNK);
      expect(r.subs.map((s) => s.element).sort()).toEqual([0, 1, 2, 3]);
      for (const s of r.subs) h.finish(s, 0);
      expect(h.collect(r.parent).result).toBe(0);
    }
    const f = h.submit(FLUSH, 0, 0);
    expect(f.subs.map((s) => s.element).sort()).toEqual([0, 1, 2, 3]);
    for (const s of f.subs) h.finish(s, 0);
    h.collect(f.parent);
    const rd = h.submit(READ, 0, 8 * CHUNK);
    expect(rd.subs.some((s) => s.element === 1)).toBe(false);
    for (const s of rd.subs) h.finish(s, 0);
    expect(h.collect(rd.parent).result).toBe(0);
  });

  it('a failing rebuilding leg does not fail the write (it held nothing yet); it is marked failed', () => {
    const h = new Harness();
    h.setState(1, 'rebuilding');
    const r = h.submit(WRITE, 0, 2 * CHUNK);
    h.finish(on(r.subs, 1), EIO);
    for (const e of [0, 2, 3]) h.finish(on(r.subs, e), 0);
    expect(h.collect(r.parent).result).toBe(0);
    expect(h.state(1)).toBe('failed');
  });

  it('fails the write when the active partner fails, whatever the rebuilding leg did and in either order', () => {
    for (const rebuildingFirst of [true, false]) {
      const h = new Harness();
      h.setState(1, 'rebuilding');
      const r = h.submit(WRITE, 0, 2 * CHUNK);
      const order = rebuildingFirst ? [1, 0] : [0, 1];
      for (const e of order) h.finish(on(r.subs, e), e === 0 ? EIO : 0);
      for (const e of [2, 3]) h.finish(on(r.subs, e), 0);
      expect(h.collect(r.parent).result, `rebuilding leg ended ${rebuildingFirst ? 'first' : 'last'}`).toBe(-EIO);
    }
  });

  it('refuses a request on a pair whose only other leg is rebuilding (no holder) before any I/O', () => {
    const h = new Harness();
    h.setState(0, 'failed');
    h.setState(1, 'rebuilding');
    for (const op of [WRITE, READ]) {
      const r = h.submit(op, 0, CHUNK);
      expect(r).toMatchObject({ planned: false, subs: [] });
      expect(h.collect(r.parent).result).toBe(-EIO);
    }
    const other = h.submit(WRITE, CHUNK, CHUNK); // chunk 1: pair (2,3)
    expect(other.subs.map((s) => s.element).sort()).toEqual([2, 3]);
    for (const s of other.subs) h.finish(s, 0);
    expect(h.collect(other.parent).result).toBe(0);
  });
});
