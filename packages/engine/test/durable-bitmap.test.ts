// The write-intent bitmap: its pure codec (round trip, fuzz, region sizing), and the in-memory
// bitmap on a real data path: bits reach every leg BEFORE the client write is acknowledged,
// concurrent writers of one page share one page write, idle bits are cleared only when allowed.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WriteIntentBitmap, type BitmapLegs } from '../dist/durable/bitmap.js';
import { ChecksumPageCache, IntegrityStore } from '../dist/integrity/store.js';
import { integrityAreaBytes } from '../src/meta/layout.js';
import type { RawIo } from '../src/datapath/raw-io.js';
import {
  BITMAP_BITS_MAX_BYTES, BITMAP_HEADER_BYTES, BitmapError, bitmapBytesFor, bitPageOffsetBytes, countSet, decodeBitmapHeader, encodeBitmapHeader,
  regionBytesFor, regionCountFor, REGION_DEFAULT_BYTES, REGION_MIN_BYTES, setRuns, type BitmapHeader,
} from '../src/durable/bitmap-codec.js';
import { crc32c } from '../src/meta/superblock.js';
import { BITMAP_MAX_BYTES, BITMAP_OFFSET_BYTES, DATA_OFFSET_BYTES } from '../src/meta/types.js';
import { DATA_BYTES, KiB, MiB, pattern, startWith, stop, type Started } from './datapath-harness.js';
import { readFileRange, rng } from './helpers.js';

const SAMPLE: BitmapHeader = { arrayUuid: randomUUID(), regionBytes: 128 * KiB, regionCount: 8192, volumeSizeBytes: 1024 ** 3, eventsCleared: 2 ** 40 + 3 };

function kindOf(bytes: Uint8Array): string {
  try {
    const h = decodeBitmapHeader(bytes);
    return 'kind' in h ? h.kind : 'ok';
  } catch (err) {
    expect(err).toBeInstanceOf(BitmapError);
    return (err as BitmapError).kind;
  }
}

describe('bitmap codec', () => {
  it('round-trips the header and refuses damage by kind', () => {
    const bytes = encodeBitmapHeader(SAMPLE);
    expect(bytes.length).toBe(BITMAP_HEADER_BYTES);
    expect(decodeBitmapHeader(bytes)).toEqual(SAMPLE);
    expect(decodeBitmapHeader(new Uint8Array(BITMAP_HEADER_BYTES))).toEqual({ kind: 'blank' });
    const flipped = bytes.slice();
    flipped[40]! ^= 1;
    expect(kindOf(flipped)).toBe('bad-checksum');
    expect(kindOf(bytes.subarray(0, 100))).toBe('truncated');
    const wrongCount = bytes.slice();
    new DataView(wrongCount.buffer).setBigUint64(40, 8191n, true);
    new DataView(wrongCount.buffer).setUint32(BITMAP_HEADER_BYTES - 4, crc32c(wrongCount.subarray(0, BITMAP_HEADER_BYTES - 4)), true);
    expect(kindOf(wrongCount)).toBe('invalid-field');
    expect(() => encodeBitmapHeader({ ...SAMPLE, regionBytes: 96 * KiB })).toThrow(BitmapError);
  });

  it('survives 8000 random and mutated headers with BitmapError only', () => {
    const next = rng(0xb17);
    const good = encodeBitmapHeader(SAMPLE);
    const kinds = new Map<string, number>();
    for (let i = 0; i < 8000; i++) {
      const bytes = i % 2 === 0 ? good.slice() : Uint8Array.from({ length: next(5000) }, () => next(256));
      if (i % 2 === 0) for (let k = 0; k < 1 + next(4); k++) bytes[next(bytes.length)] = next(256);
      if (i % 4 === 0 && bytes.length >= BITMAP_HEADER_BYTES) {
        new DataView(bytes.buffer).setUint32(BITMAP_HEADER_BYTES - 4, crc32c(bytes.subarray(0, BITMAP_HEADER_BYTES - 4)), true);
      }
      if (i % 8 === 1 && bytes.length >= 8) bytes.set(new TextEncoder().encode('OSBITMAP'), 0);
      const kind = kindOf(bytes);
      kinds.set(kind, (kinds.get(kind) ?? 0) + 1);
    }
    for (const kind of ['truncated', 'bad-magic', 'bad-checksum', 'invalid-field']) expect(kinds.get(kind) ?? 0).toBeGreaterThan(0);
  });

  it('sizes regions so the bits fit the reserved area, from the configured minimum up', () => {
    expect(regionBytesFor(1024 ** 3)).toBe(REGION_DEFAULT_BYTES);
    expect(regionBytesFor(1024 ** 3, REGION_MIN_BYTES)).toBe(64 * KiB);
    expect(bitmapBytesFor(1024 ** 3, REGION_MIN_BYTES)).toBe(BITMAP_HEADER_BYTES + 4096); // 16384 regions: one page
    expect(() => regionBytesFor(MiB, 96 * KiB)).toThrow(RangeError);
    for (const min of [REGION_MIN_BYTES, REGION_DEFAULT_BYTES]) {
      for (const size of [0, MiB, 1024 ** 4, 16 * 1024 ** 4, 2 ** 52]) {
        const region = regionBytesFor(size, min);
        expect(Math.ceil(regionCountFor(size, region) / 8)).toBeLessThanOrEqual(BITMAP_BITS_MAX_BYTES);
        expect(region === min || Math.ceil(regionCountFor(size, region / 2) / 8) > BITMAP_BITS_MAX_BYTES).toBe(true);
        expect(bitmapBytesFor(size, min)).toBeLessThanOrEqual(BITMAP_MAX_BYTES);
      }
    }
  });

  it('finds runs of set bits', () => {
    const bits = new Uint8Array(8);
    for (const r of [0, 1, 2, 9, 16, 17, 18, 19, 20, 21, 22, 23, 24, 63]) bits[r >> 3]! |= 1 << (r & 7);
    expect([...setRuns(bits, 64)]).toEqual([{ firstRegion: 0, regions: 3 }, { firstRegion: 9, regions: 1 }, { firstRegion: 16, regions: 9 }, { firstRegion: 63, regions: 1 }]);
    expect([...setRuns(bits, 60)].at(-1)).toEqual({ firstRegion: 16, regions: 9 });
    expect(countSet(bits, 64)).toBe(14);
  });
});

/** Legs 0 and 1 of the harness volume; `order` records when bitmap page writes finish. */
function legsOf(s: Started, clear: { allowed: boolean; events: number }): BitmapLegs {
  return {
    targets: () => [0, 1].filter((i) => s.dp.elementState(i) === 'active' || s.dp.elementState(i) === 'rebuilding'),
    failLeg: (i) => s.dp.setElementState(i, 'failed'),
    canClear: () => clear.allowed,
    eventCount: () => clear.events,
  };
}

/** A RawIo that delays and records bitmap writes. */
function recordingRaw(raw: RawIo, log: string[], delayMs: number): RawIo {
  return {
    ...raw,
    read: (e, o, l) => raw.read(e, o, l),
    flush: (e) => raw.flush(e),
    copy: (a, b, o, l) => raw.copy(a, b, o, l),
    write: async (e, o, d, opts) => {
      await new Promise((r) => setTimeout(r, delayMs));
      await raw.write(e, o, d, opts);
      log.push(`bitmap ${e}@${o - BITMAP_OFFSET_BYTES}`);
    },
  };
}

const bitOnLeg = (path: string, region: number): boolean => (readFileRange(path, bitPageOffsetBytes(0) + (region >> 3), 1)[0]! & (1 << (region & 7))) !== 0;

describe('WriteIntentBitmap on a raid1 data path', () => {
  let s: Started;
  const clear = { allowed: false, events: 7 };
  let log: string[];
  let bitmap: WriteIntentBitmap;
  beforeAll(async () => {
    s = await startWith('raid1', 2);
    log = [];
    bitmap = new WriteIntentBitmap({ raw: recordingRaw(s.dp.raw, log, 20), gate: s.dp.volumeIo(0).gate, legs: legsOf(s, clear), arrayUuid: SAMPLE.arrayUuid, volumeSizeBytes: DATA_BYTES, regionBytes: 64 * KiB, sweepMs: 0, idleSweeps: 1 });
    await bitmap.writeImage([0, 1]);
    s.dp.volumeIo(0).gate.setHook(bitmap.hook);
  });
  afterAll(async () => {
    await bitmap.close();
    await stop(s);
  });

  it('writes the bit to every leg before the write is acknowledged; a dirty region then passes without a page write', async () => {
    const io = s.dp.volumeIo(0);
    log.length = 0;
    const region = 5;
    await io.write(region * 64 * KiB + 4096, pattern(8192, 1)).then(() => log.push('write acked'));
    expect(log).toEqual(expect.arrayContaining(['bitmap 0@4096', 'bitmap 1@4096']));
    expect(log.at(-1)).toBe('write acked');
    for (const path of s.paths) expect(bitOnLeg(path, region)).toBe(true);
    log.length = 0;
    await io.write(region * 64 * KiB, pattern(4096, 2));
    expect(log, 'region already dirty and durable').toEqual([]);
    expect(bitmap.dirtyRegions).toBe(1);
  });

  it('coalesces concurrent writers of one page into a couple of page writes', async () => {
    const io = s.dp.volumeIo(0);
    log.length = 0;
    await Promise.all(Array.from({ length: 40 }, (_, i) => io.write((100 + i) * 64 * KiB, pattern(4096, i))));
    const pageWrites = log.filter((l) => l === 'bitmap 0@4096').length;
    expect(pageWrites).toBeGreaterThanOrEqual(1);
    expect(pageWrites, `${pageWrites} page writes for 40 writers`).toBeLessThanOrEqual(3);
    for (let i = 0; i < 40; i++) expect(bitOnLeg(s.paths[1]!, 100 + i)).toBe(true);
    expect(bitmap.dirtyRanges()).toEqual([{ offsetBytes: 5 * 64 * KiB, lengthBytes: 64 * KiB }, { offsetBytes: 100 * 64 * KiB, lengthBytes: 40 * 64 * KiB }]);
  });

  it('clears idle bits only when allowed, never under a write in flight, and records eventsCleared first', async () => {
    await bitmap.sweep();
    expect(bitmap.dirtyRegions, 'clearing not allowed (a leg missing)').toBe(41);
    clear.allowed = true;
    const io = s.dp.volumeIo(0);
    const release = await io.gate.enter(5 * 64 * KiB, 4096); // a write in flight on region 5 (its bit is set already)
    await bitmap.sweep();
    expect(bitmap.dirtyRegions).toBe(1);
    expect(bitOnLeg(s.paths[0]!, 120)).toBe(false);
    expect(bitOnLeg(s.paths[0]!, 5)).toBe(true);
    const header = decodeBitmapHeader(readFileRange(s.paths[1]!, BITMAP_OFFSET_BYTES, BITMAP_HEADER_BYTES));
    expect(header).toMatchObject({ arrayUuid: SAMPLE.arrayUuid, eventsCleared: 7, regionBytes: 64 * KiB });
    release();
    await bitmap.sweep();
    expect(bitmap.dirtyRegions).toBe(0);
    expect(bitOnLeg(s.paths[1]!, 5)).toBe(false);
    clear.allowed = false;
  });

  it('loads the OR of the legs\' bitmaps, and treats another array\'s bitmap as unusable', async () => {
    const io = s.dp.volumeIo(0);
    await io.write(3 * 64 * KiB, pattern(4096, 3));
    s.dp.setElementState(1, 'failed');
    await io.write(9 * 64 * KiB, pattern(4096, 4)); // only leg 0 hears of region 9
    s.dp.setElementState(1, 'active');
    expect(bitOnLeg(s.paths[1]!, 9)).toBe(false);
    const loaded = await WriteIntentBitmap.load(s.dp.raw, [1, 0], SAMPLE.arrayUuid, DATA_BYTES, REGION_DEFAULT_BYTES);
    expect(loaded).toMatchObject({ valid: true, regionBytes: 64 * KiB }); // the legs' region size wins
    expect(countSet(loaded.bits, 1024)).toBe(2);
    const foreign = await WriteIntentBitmap.load(s.dp.raw, [0], randomUUID(), DATA_BYTES, REGION_DEFAULT_BYTES);
    expect(foreign).toMatchObject({ valid: false, regionBytes: REGION_DEFAULT_BYTES });
    expect(foreign.problems[0]).toMatch(/another array/);
    expect(readFileRange(s.paths[0]!, DATA_OFFSET_BYTES + 9 * 64 * KiB, 4)).toEqual(pattern(4096, 4).subarray(0, 4));
  });

  it('fails the client write with EIO when no leg takes the bitmap update', async () => {
    const failing: RawIo = { ...s.dp.raw, read: s.dp.raw.read.bind(s.dp.raw), flush: s.dp.raw.flush.bind(s.dp.raw), copy: s.dp.raw.copy.bind(s.dp.raw), zero: s.dp.raw.zero.bind(s.dp.raw), write: () => Promise.reject(new Error('disk gone')) };
    const legs = legsOf(s, clear);
    const broken = new WriteIntentBitmap({ raw: failing, gate: s.dp.volumeIo(0).gate, legs: { ...legs, failLeg: () => undefined }, arrayUuid: SAMPLE.arrayUuid, volumeSizeBytes: DATA_BYTES, regionBytes: 64 * KiB, sweepMs: 0 });
    s.dp.volumeIo(0).gate.setHook(broken.hook);
    try {
      await expect(s.dp.volumeIo(0).write(900 * 64 * KiB, pattern(4096, 5))).rejects.toMatchObject({ errno: 'EIO' });
      expect(s.dp.volumeIo(0).gate.writesInFlight).toBe(0);
    } finally {
      s.dp.volumeIo(0).gate.setHook(bitmap.hook);
      await broken.close();
    }
  });
});

describe('WriteIntentBitmap with write-back checksum pages (beforeClear)', () => {
  // Checksums of the first 32 MiB of data, in an area after it (inside the 64 MiB files).
  const AREA = { offsetBytes: DATA_OFFSET_BYTES + 32 * MiB, sizeBytes: integrityAreaBytes(32 * MiB), blockBytes: 4096, algo: 1 };
  let s: Started;
  const clear = { allowed: true, events: 9 };
  const log: string[] = [];
  let store: IntegrityStore;
  let bitmap: WriteIntentBitmap;
  let failFlush = false;
  let duringFlush: (() => Promise<void>) | null = null;
  beforeAll(async () => {
    s = await startWith('raid1', 2);
    const raw = s.dp.raw;
    const tracing: RawIo = {
      ...raw, read: (e, o, l) => raw.read(e, o, l), copy: (a, b, o, l) => raw.copy(a, b, o, l), zero: (e, o, l) => raw.zero(e, o, l),
      write: async (e, o, d, opts) => {
        await raw.write(e, o, d, opts);
        log.push(o >= AREA.offsetBytes ? `sums ${e}` : `bitmap ${e}`);
      },
      flush: async (e) => {
        if (failFlush) throw new Error('flush refused');
        await raw.flush(e);
        log.push(`flush ${e}`);
      },
    };
    store = new IntegrityStore({ raw: tracing, cache: new ChecksumPageCache(), volume: 'v', writeBack: true, areaOf: () => AREA });
    bitmap = new WriteIntentBitmap({
      raw: tracing, gate: s.dp.volumeIo(0).gate, legs: legsOf(s, clear), arrayUuid: SAMPLE.arrayUuid, volumeSizeBytes: DATA_BYTES, regionBytes: 64 * KiB, sweepMs: 0, idleSweeps: 1,
      beforeClear: async () => {
        await duringFlush?.();
        await Promise.all([0, 1].map((e) => store.flush(e)));
      },
    });
    await bitmap.writeImage([0, 1]);
    s.dp.volumeIo(0).gate.setHook(bitmap.hook);
  });
  afterAll(async () => {
    await bitmap.close();
    await stop(s);
  });

  /** A client write of region `r` with its checksums recorded write-back on both legs (as checksum-io does). */
  const writeRegion = async (r: number, seed: number): Promise<void> => {
    await s.dp.volumeIo(0).write(r * 64 * KiB, pattern(4096, seed));
    await Promise.all([0, 1].map((e) => store.write(e, (r * 64 * KiB) / 4096, Uint32Array.of(1000 + seed))));
  };

  it('clears a bit only after its region\'s dirty checksum pages are written and flushed on every leg', async () => {
    await writeRegion(12, 1);
    expect(store.dirtyPages).toBe(2);
    expect(bitOnLeg(s.paths[0]!, 12)).toBe(true);
    log.length = 0;
    await bitmap.sweep();
    expect(bitmap.dirtyRegions).toBe(0);
    expect(store.dirtyPages).toBe(0);
    const lastBitmap = log.lastIndexOf('bitmap 0');
    for (const e of [0, 1]) {
      expect(log.indexOf(`sums ${e}`), `${log.join(', ')}`).toBeGreaterThanOrEqual(0);
      expect(log.indexOf(`flush ${e}`)).toBeGreaterThan(log.indexOf(`sums ${e}`));
      expect(log.indexOf(`flush ${e}`), 'the element flush comes before the bit is cleared on the legs').toBeLessThan(lastBitmap);
    }
    for (const path of s.paths) {
      expect(bitOnLeg(path, 12)).toBe(false);
      expect(readFileRange(path, AREA.offsetBytes + ((12 * 64 * KiB) / 4096) * 4, 4)).toEqual(Uint8Array.of(1001 & 0xff, 1001 >> 8, 0, 0));
    }
  });

  it('keeps the bit set when the checksum pages cannot be made durable', async () => {
    await writeRegion(13, 2);
    failFlush = true;
    try {
      await expect(bitmap.sweep()).rejects.toThrow(/flush refused/);
    } finally {
      failFlush = false;
    }
    expect(bitmap.dirtyRegions).toBe(1);
    expect(bitOnLeg(s.paths[1]!, 13)).toBe(true);
    await bitmap.sweep();
    expect(bitmap.dirtyRegions).toBe(0);
  });

  it('keeps the bit of a region written while the pages were being flushed (its pages may be dirty again)', async () => {
    await writeRegion(14, 3);
    await writeRegion(15, 4);
    duringFlush = async () => {
      duringFlush = null;
      await writeRegion(15, 5); // lands after the sweep chose its candidates
    };
    await bitmap.sweep();
    expect(bitmap.dirtyRanges()).toEqual([{ offsetBytes: 15 * 64 * KiB, lengthBytes: 64 * KiB }]);
    expect(bitOnLeg(s.paths[0]!, 15)).toBe(true);
    await bitmap.sweep();
    expect(bitmap.dirtyRegions).toBe(0);
    expect(store.dirtyPages).toBe(0);
  });
});
