// The checksum store (integrity/store.ts) over a real data path on sparse files: fresh areas read
// as zeros, round trips across pages, per-page coalescing, the engine-wide LRU bound, FUA and
// flush, durability across a reopen, failures as EIO, forget().
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataPath } from '../dist/datapath/datapath.js';
import { ChecksumPageCache, IntegrityStore } from '../dist/integrity/store.js';
import type { RawIo } from '../src/datapath/raw-io.js';
import type { IntegrityArea } from '../src/integrity/types.js';
import { integrityAreaBytes } from '../src/meta/layout.js';
import { DATA_OFFSET_BYTES } from '../src/meta/types.js';
import { elementsFor, MiB, startWith, stop, volume, DATA_BYTES, type Started } from './datapath-harness.js';
import { readFileRange } from './helpers.js';

// An area after 32 MiB of data: 32 KiB = 8 pages of 1024 checksums.
const AREA: IntegrityArea = { offsetBytes: DATA_OFFSET_BYTES + 32 * MiB, sizeBytes: integrityAreaBytes(32 * MiB), blockBytes: 4096, algo: 1 };
const PAGES = AREA.sizeBytes / 4096;

interface PageWrite { element: number; page: number; fua: boolean }

/** A RawIo that delays and records writes to the checksum area (and can be told to fail them). */
function recordingRaw(raw: RawIo, log: PageWrite[], o: { delayMs: number; failWrites?: boolean; failReads?: boolean }): RawIo {
  return {
    read: (e, off, len) => (o.failReads === true ? Promise.reject(new Error('read refused')) : raw.read(e, off, len)),
    flush: (e) => raw.flush(e),
    zero: (e, off, len) => raw.zero(e, off, len),
    copy: (a, b, off, len) => raw.copy(a, b, off, len),
    write: async (e, off, data, opts) => {
      await new Promise((r) => setTimeout(r, o.delayMs));
      if (o.failWrites === true) throw new Error('disk gone');
      await raw.write(e, off, data, opts);
      log.push({ element: e, page: (off - AREA.offsetBytes) / 4096, fua: opts?.fua === true });
    },
  };
}

function storeOver(raw: RawIo, cache = new ChecksumPageCache(), writeBack = false): IntegrityStore {
  return new IntegrityStore({ raw, cache, volume: 'v', writeBack, areaOf: (e) => (e === 0 || e === 1 ? AREA : undefined) });
}

/** `raw` counting element flushes per element. */
function countingFlushes(raw: RawIo, flushes: number[]): RawIo {
  return { ...raw, read: (e, o, l) => raw.read(e, o, l), write: (e, o, d, opts) => raw.write(e, o, d, opts), zero: (e, o, l) => raw.zero(e, o, l), copy: (a, b, o, l) => raw.copy(a, b, o, l),
    flush: (e) => (flushes.push(e), raw.flush(e)) };
}

function sumsOnFile(path: string, firstBlock: number, count: number): number[] {
  const bytes = readFileRange(path, AREA.offsetBytes + firstBlock * 4, count * 4);
  return Array.from({ length: count }, (_, i) => new DataView(bytes.buffer, bytes.byteOffset).getUint32(i * 4, true));
}

const seq = (count: number, from: number): Uint32Array => Uint32Array.from({ length: count }, (_, i) => from + i);

describe('IntegrityStore on a data path', () => {
  let s: Started;
  const log: PageWrite[] = [];
  const knobs = { delayMs: 0, failWrites: false, failReads: false };
  let raw: RawIo;
  beforeAll(async () => {
    s = await startWith('raid1', 2);
    raw = recordingRaw(s.dp.raw, log, knobs);
  });
  afterAll(async () => {
    await stop(s);
  });

  it('reads a fresh (sparse) area as zeros: no checksum, no initialisation', async () => {
    const store = storeOver(raw);
    const sums = await store.read(0, 500, 3000);
    expect(sums.length).toBe(3000);
    expect(sums.every((x) => x === 0)).toBe(true);
    expect(log).toEqual([]);
  });

  it('round-trips checksums across page boundaries, little-endian on the element, zeros around them', async () => {
    const store = storeOver(raw);
    await store.write(0, 1000, seq(2100, 1));
    const back = await store.read(0, 990, 2200);
    expect(Array.from(back.subarray(0, 10))).toEqual(new Array(10).fill(0));
    expect(Array.from(back.subarray(10, 2110))).toEqual(Array.from(seq(2100, 1)));
    expect(Array.from(back.subarray(2110))).toEqual(new Array(90).fill(0));
    expect(new Set(log.map((w) => w.page))).toEqual(new Set([0, 1, 2, 3])); // blocks 1000..3099
    expect(sumsOnFile(s.paths[0]!, 1023, 3)).toEqual([24, 25, 26]);
    expect(sumsOnFile(s.paths[1]!, 1000, 1), 'only the element named is written').toEqual([0]);
    // A fresh store (empty cache) reads what the element holds.
    expect(Array.from(await storeOver(raw).read(0, 2047, 3))).toEqual([1048, 1049, 1050]);
  });

  it('peek answers from cached pages only, synchronously; an uncached page or a bad range says false', async () => {
    const store = storeOver(raw);
    const out = new Uint32Array(4);
    expect(store.peek(0, 5000, 4, out)).toBe(false); // nothing cached yet
    await store.write(0, 5000, seq(4, 7));
    expect(store.peek(0, 5000, 4, out)).toBe(true);
    expect(Array.from(out)).toEqual(Array.from(seq(4, 7)));
    expect(store.peek(0, 1022, 4, out)).toBe(false); // pages 0 and 1 never loaded
    expect(store.peek(0, -1, 1, out)).toBe(false);
    expect(store.peek(0, 5000, 8, out)).toBe(false); // out too small
    await store.flush(0);
    store.forget(0); // the cache is shared by the tests of this file
    expect(store.peek(0, 5000, 4, out)).toBe(false);
  });

  it('coalesces concurrent writers of one page into at most two page writes', async () => {
    const store = storeOver(raw);
    await store.read(1, 0, 1); // page cached: the writers below only wait for page writes
    log.length = 0;
    knobs.delayMs = 20;
    try {
      await Promise.all(Array.from({ length: 50 }, (_, i) => store.write(1, i * 10, Uint32Array.of(7000 + i))));
    } finally {
      knobs.delayMs = 0;
    }
    expect(log.length, `${log.length} page writes for 50 writers`).toBeGreaterThanOrEqual(1);
    expect(log.length).toBeLessThanOrEqual(2);
    expect(log.every((w) => w.element === 1 && w.page === 0 && !w.fua)).toBe(true);
    expect(sumsOnFile(s.paths[1]!, 0, 491).filter((_, i) => i % 10 === 0)).toEqual(Array.from({ length: 50 }, (_, i) => 7000 + i));
  });

  it('issues FUA page writes for fua writes; flush waits for page writes in flight', async () => {
    const store = storeOver(raw);
    log.length = 0;
    await store.write(0, 5000, Uint32Array.of(11, 12), { fua: true });
    expect(log).toEqual([{ element: 0, page: 4, fua: true }]);
    knobs.delayMs = 30;
    try {
      const pending = store.write(0, 6200, Uint32Array.of(13));
      await store.flush(0); // must not resolve before the page write queued above
      expect(log.at(-1)).toEqual({ element: 0, page: 6, fua: false });
      await pending;
    } finally {
      knobs.delayMs = 0;
    }
  });

  it('keeps the engine-wide cache within its bound (clean pages evicted, re-read when needed)', async () => {
    const cache = new ChecksumPageCache(3 * 4096);
    const a = storeOver(raw, cache);
    const b = storeOver(raw, cache);
    for (let page = 0; page < PAGES; page++) {
      await a.write(0, page * 1024 + 1, Uint32Array.of(100 + page));
      expect(cache.bytes).toBeLessThanOrEqual(3 * 4096);
    }
    await Promise.all(Array.from({ length: PAGES }, (_, page) => b.read(1, page * 1024, 1)));
    expect(cache.bytes).toBeLessThanOrEqual(3 * 4096);
    expect(a.cachedPages + b.cachedPages).toBeLessThanOrEqual(3);
    for (let page = 0; page < PAGES; page++) expect(Array.from(await a.read(0, page * 1024 + 1, 1))).toEqual([100 + page]);
    expect(() => new ChecksumPageCache(100)).toThrow(RangeError);
  });

  it('rejects a failed page write or read with EIO, and bad ranges or elements with EINVAL', async () => {
    const store = storeOver(raw);
    knobs.failWrites = true;
    try {
      await expect(store.write(0, 7000, Uint32Array.of(1))).rejects.toMatchObject({ errno: 'EIO', message: expect.stringMatching(/checksum page 6 of element index 0: disk gone/) });
    } finally {
      knobs.failWrites = false;
    }
    knobs.failReads = true;
    try {
      await expect(storeOver(raw).read(0, 0, 1)).rejects.toMatchObject({ errno: 'EIO' });
    } finally {
      knobs.failReads = false;
    }
    await expect(store.read(0, PAGES * 1024 - 1, 2)).rejects.toMatchObject({ errno: 'EINVAL' });
    await expect(store.read(0, -1, 1)).rejects.toMatchObject({ errno: 'EINVAL' });
    await expect(store.read(5, 0, 1)).rejects.toMatchObject({ errno: 'EINVAL', message: expect.stringMatching(/element index 5 keeps no checksums/) });
    expect(Array.from(await store.read(0, 0, 0))).toEqual([]);
  });

  it('forget() drops an element\'s cached pages (the next read goes to the element)', async () => {
    const store = storeOver(raw);
    await store.write(0, 3, Uint32Array.of(99));
    await store.read(1, 3, 1);
    expect(store.cachedPages).toBe(2);
    store.forget(0);
    expect(store.cachedPages).toBe(1);
    const reads: number[] = [];
    const counting: RawIo = { ...raw, read: (e, off, len) => (reads.push(e), raw.read(e, off, len)) };
    const again = new IntegrityStore({ raw: counting, cache: new ChecksumPageCache(), volume: 'v', areaOf: () => AREA });
    expect(Array.from(await again.read(0, 3, 1))).toEqual([99]);
    again.forget(0);
    expect(Array.from(await again.read(0, 3, 1))).toEqual([99]);
    expect(reads).toEqual([0, 0]);
  });

  it('flushed checksums survive closing the data path and opening a new one over the same files', async () => {
    const store = storeOver(s.dp.raw);
    await store.write(1, 7800, seq(300, 500_000));
    await store.flush(1);
    await s.dp.close();
    const dp = await DataPath.start({ pools: { top: 1, middle: 1, bottom: 2, remote: 1 }, queue: { depth: 64, slots: 16, slotKiB: 256 }, probeDir: s.dir });
    s = { ...s, dp };
    const els = elementsFor(s.paths);
    await dp.setTopology([volume(0, 'raid1', els.map((e) => e.index), DATA_BYTES)], els);
    expect(Array.from(await storeOver(dp.raw).read(1, 7800, 300))).toEqual(Array.from(seq(300, 500_000)));
  });

  describe('write-back mode', () => {
    beforeAll(() => {
      raw = recordingRaw(s.dp.raw, log, knobs); // the test above reopened the data path
    });

    it('writes no page until flush; flush writes each dirty page once, then syncs the element once', async () => {
      const flushes: number[] = [];
      const store = storeOver(countingFlushes(raw, flushes), new ChecksumPageCache(), true);
      await store.read(0, 0, 1); // page 0 cached (a write-back write of part of a page needs it)
      log.length = 0;
      for (let i = 0; i < 20; i++) await store.write(0, 100 + i, Uint32Array.of(40_000 + i));
      await store.write(0, 2 * 1024, seq(1024, 50_000)); // a whole page: no read first
      expect(log, 'no page write before the flush').toEqual([]);
      expect(store.dirtyPages).toBe(2);
      expect(Array.from(await store.read(0, 100, 2)), 'readers see the cached change').toEqual([40_000, 40_001]);
      expect(sumsOnFile(s.paths[0]!, 100, 1)).toEqual([0]);
      await store.flush(0);
      expect(log.map((w) => w.page).sort()).toEqual([0, 2]);
      expect(flushes).toEqual([0]);
      expect(store.dirtyPages).toBe(0);
      expect(sumsOnFile(s.paths[0]!, 100, 20)).toEqual(Array.from(seq(20, 40_000)));
      await store.flush(0);
      expect(flushes, 'nothing written since: no second element sync').toEqual([0]);
      await store.writeBack(0);
      expect(log.length).toBe(2);
    });

    it('FUA writes through: the page goes out with FUA before the write resolves', async () => {
      const store = storeOver(raw, new ChecksumPageCache(), true);
      log.length = 0;
      await store.write(1, 3 * 1024 + 5, Uint32Array.of(77), { fua: true });
      expect(log).toEqual([{ element: 1, page: 3, fua: true }]);
      expect(store.dirtyPages).toBe(0);
      expect(sumsOnFile(s.paths[1]!, 3 * 1024 + 5, 1)).toEqual([77]);
    });

    it('writes a dirty page before it is evicted', async () => {
      const cache = new ChecksumPageCache(2 * 4096);
      const store = storeOver(raw, cache, true);
      log.length = 0;
      await store.write(1, 4 * 1024 + 1, Uint32Array.of(4401));
      expect(log).toEqual([]);
      // Two more pages, busy with their (slow) FUA write: only the dirty page 4 can make room.
      knobs.delayMs = 20;
      try {
        await store.write(1, 5 * 1024 + 1, seq(1024, 5501), { fua: true });
      } finally {
        knobs.delayMs = 0;
      }
      expect(log.find((w) => w.page === 4), 'page 4 written for its eviction, before any flush').toEqual({ element: 1, page: 4, fua: false });
      await store.writeBack(1);
      expect(cache.bytes).toBeLessThanOrEqual(2 * 4096);
      expect(sumsOnFile(s.paths[1]!, 4 * 1024 + 1, 1)).toEqual([4401]);
      expect(Array.from(await store.read(1, 4 * 1024 + 1, 1))).toEqual([4401]);
    });

    it('bounds dirty pages: writers over half the cache wait for write-back, nothing is dropped', async () => {
      const cache = new ChecksumPageCache(4 * 4096); // at most 2 dirty pages
      const store = storeOver(raw, cache, true);
      expect(cache.dirtyLimitPages).toBe(2);
      log.length = 0;
      knobs.delayMs = 10;
      try {
        for (let page = 0; page < PAGES; page++) {
          await store.write(0, page * 1024 + 9, Uint32Array.of(900 + page));
          expect(cache.dirtyPages, `after page ${page}`).toBeLessThanOrEqual(2);
        }
      } finally {
        knobs.delayMs = 0;
      }
      expect(log.length).toBeGreaterThanOrEqual(PAGES - 2);
      await store.flush(0);
      for (let page = 0; page < PAGES; page++) expect(sumsOnFile(s.paths[0]!, page * 1024 + 9, 1)).toEqual([900 + page]);
    });

    it('keeps a page whose write-back failed dirty: flush reports it, a later flush writes it', async () => {
      const store = storeOver(raw, new ChecksumPageCache(), true);
      await store.write(0, 6 * 1024 + 2, Uint32Array.of(6602));
      knobs.failWrites = true;
      try {
        await expect(store.flush(0)).rejects.toMatchObject({ errno: 'EIO' });
      } finally {
        knobs.failWrites = false;
      }
      expect(store.dirtyPages).toBe(1);
      await store.flush(0);
      expect(sumsOnFile(s.paths[0]!, 6 * 1024 + 2, 1)).toEqual([6602]);
    });

    it('flushAll() makes every element durable: a new data path over the files reads the checksums', async () => {
      const store = storeOver(s.dp.raw, new ChecksumPageCache(), true);
      await store.write(0, 7 * 1024 + 3, Uint32Array.of(7703));
      await store.write(1, 7 * 1024 + 4, Uint32Array.of(7704));
      await store.flushAll();
      expect(store.dirtyPages).toBe(0);
      await s.dp.close();
      const dp = await DataPath.start({ pools: { top: 1, middle: 1, bottom: 2, remote: 1 }, queue: { depth: 64, slots: 16, slotKiB: 256 }, probeDir: s.dir });
      s = { ...s, dp };
      const els = elementsFor(s.paths);
      await dp.setTopology([volume(0, 'raid1', els.map((e) => e.index), DATA_BYTES)], els);
      raw = recordingRaw(s.dp.raw, log, knobs);
      expect(Array.from(await storeOver(dp.raw).read(0, 7 * 1024 + 3, 1))).toEqual([7703]);
      expect(Array.from(await storeOver(dp.raw).read(1, 7 * 1024 + 4, 1))).toEqual([7704]);
    });
  });
});
