// Integrity on the data path (integrity/checksum-io.ts through volume-io.ts): checksums recorded
// on writes for every leg, verified reads that find a flipped byte in one leg's file, serve the
// good copy and rewrite the bad leg, EIO when no copy verifies, trims clearing checksums,
// unaligned writes through read-modify-write, and no checksum work on a volume without integrity.
// Imports the BUILT dist (workers are .js files).
import * as fs from 'node:fs';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { blockChecksums } from '@onestack/native';
import { DataPath } from '../dist/datapath/datapath.js';
import { flipFileBytes, readFileRange } from './helpers.js';
import { DATA_OFFSET_BYTES } from '../src/meta/types.js';
import type { IntegrityEvent } from '../src/integrity/checksum-io.js';
import { DATA_BYTES, KiB, MiB, elementsFor, equalBytes, pattern, sparseFiles, tempDir, volume } from './datapath-harness.js';
import { MemChecksumStore, PeekableMemStore } from './integrity-harness.js';
import { recomputingRaw } from '../dist/integrity/recompute.js';
import { sparseAwareRaw } from '../dist/durable/sparse-copy.js';

const BLOCK = 4096;

interface Rig {
  dp: DataPath;
  dir: string;
  paths: string[];
  store: MemChecksumStore;
  events: Map<string, number>;
  kernelCalls: { n: number };
  logs: string[];
}

async function start(): Promise<Rig> {
  const dir = tempDir();
  const paths = sparseFiles(dir, 4);
  const dp = await DataPath.start({ pools: { top: 1, middle: 1, bottom: 2, remote: 1 }, queue: { depth: 64, slots: 16, slotKiB: 256 }, probeDir: dir });
  const els = elementsFor(paths);
  // Volume 0: raid1 of e0+e1 with integrity; volume 1: raid1 of e2+e3 without.
  await dp.setTopology([volume(0, 'raid1', [0, 1], DATA_BYTES), volume(1, 'raid1', [2, 3], DATA_BYTES)], els);
  const store = new MemChecksumStore();
  const events = new Map<string, number>();
  const kernelCalls = { n: 0 };
  const logs: string[] = [];
  const { crc32cBlocks } = blockChecksums();
  dp.setIntegrity(0, {
    store,
    count: (el: number, ev: IntegrityEvent, n: number) => events.set(`${el}:${ev}`, (events.get(`${el}:${ev}`) ?? 0) + n),
    log: (l: string) => logs.push(l),
    crc32cBlocks: (d, b, o) => {
      kernelCalls.n++;
      return crc32cBlocks(d, b, o);
    },
  });
  return { dp, dir, paths, store, events, kernelCalls, logs };
}

function crcOf(bytes: Uint8Array): number {
  const out = new Uint32Array(1);
  blockChecksums().crc32cBlocks(bytes, BLOCK, out);
  return out[0] === 0 ? 1 : out[0]!;
}

function rawRead(path: string, volumeOffsetBytes: number, len: number): Uint8Array {
  return readFileRange(path, DATA_OFFSET_BYTES + volumeOffsetBytes, len);
}

/** Changes one byte of a leg file (through the page cache, which the data path reads from). */
function flip(path: string, volumeOffsetBytes: number): void {
  flipFileBytes(path, DATA_OFFSET_BYTES + volumeOffsetBytes, 1);
}

/** One rig per describe block, started before its tests and closed after them. */
function useRig(): () => Rig {
  let held: Rig | undefined;
  beforeAll(async () => {
    held = await start();
  });
  afterAll(async () => {
    await held?.dp.close();
    if (held !== undefined) fs.rmSync(held.dir, { recursive: true, force: true });
  });
  return () => {
    if (held === undefined) throw new Error('rig not started (see the beforeAll error)');
    return held;
  };
}

describe('integrity on a raid1 volume', () => {
  const rig = useRig();
  let r: Rig;
  beforeEach(() => {
    r = rig();
  });

  it('a write records each block\'s checksum on both legs, and reads verify', async () => {
    const io = r.dp.volumeIo(0);
    const data = pattern(1 * MiB, 1);
    const before = r.kernelCalls.n;
    await io.write(0, data);
    expect(r.kernelCalls.n - before).toBe(4); // one kernel call per 256 KiB slot of the request
    for (const el of [0, 1]) for (const b of [0, 17, 255]) expect(r.store.get(el, b)).toBe(crcOf(data.subarray(b * BLOCK, (b + 1) * BLOCK)));
    expect(equalBytes(await io.read(0, 1 * MiB), data)).toBe(true);
    const slots = await io.readSlots(64 * KiB, 128 * KiB);
    expect(equalBytes(Buffer.concat(slots.chunks), data.subarray(64 * KiB, 192 * KiB))).toBe(true);
    slots.release();
    expect(r.events.size).toBe(0);
  });

  it('a byte flipped in one leg file is caught, served from the other leg, counted and repaired', async () => {
    const io = r.dp.volumeIo(0);
    const data = pattern(256 * KiB, 2);
    await io.write(2 * MiB, data);
    await io.flush();
    flip(r.paths[0]!, 2 * MiB + 5 * BLOCK + 100);
    flip(r.paths[1]!, 2 * MiB + 9 * BLOCK + 7);
    // Read several times: whichever leg serves, the bytes are the original ones.
    for (let i = 0; i < 4; i++) expect(equalBytes(await io.read(2 * MiB, 256 * KiB), data)).toBe(true);
    expect(r.events.get('0:mismatches')).toBe(1);
    expect(r.events.get('0:repaired')).toBe(1);
    expect(r.events.get('1:mismatches')).toBe(1);
    expect(r.events.get('1:repaired')).toBe(1);
    expect(equalBytes(rawRead(r.paths[0]!, 2 * MiB, 256 * KiB), data)).toBe(true);
    expect(equalBytes(rawRead(r.paths[1]!, 2 * MiB, 256 * KiB), data)).toBe(true);
    expect(r.logs.some((l) => l.includes('failed its checksum'))).toBe(true);
  });

  it('both legs bad: EIO and unrecoverable, never the bad bytes', async () => {
    const io = r.dp.volumeIo(0);
    await io.write(4 * MiB, pattern(8 * KiB, 3));
    flip(r.paths[0]!, 4 * MiB + 10);
    flip(r.paths[1]!, 4 * MiB + 20);
    await expect(io.read(4 * MiB, 8 * KiB)).rejects.toMatchObject({ errno: 'EIO' });
    const nbd = io.readSlots(4 * MiB, 4 * KiB);
    await expect(nbd).rejects.toMatchObject({ errno: 'EIO' });
    expect(r.events.get('0:unrecoverable')).toBeGreaterThanOrEqual(1);
    expect(r.events.get('1:unrecoverable')).toBeGreaterThanOrEqual(1);
    // A fresh write makes the block good again.
    await io.write(4 * MiB, pattern(4 * KiB, 4));
    expect(equalBytes(await io.read(4 * MiB, 4 * KiB), pattern(4 * KiB, 4))).toBe(true);
  });

  it('trim and write-zeroes clear the checksums of the whole blocks they cover', async () => {
    const io = r.dp.volumeIo(0);
    await io.write(6 * MiB, pattern(64 * KiB, 5));
    await io.trim(6 * MiB, 16 * KiB);
    await io.writeZeroes(6 * MiB + 16 * KiB, 8 * KiB);
    for (const el of [0, 1]) {
      for (let b = 0; b < 6; b++) expect(r.store.get(el, (6 * MiB) / BLOCK + b)).toBe(0);
      expect(r.store.get(el, (6 * MiB) / BLOCK + 6)).not.toBe(0);
    }
    // A partial trim: its edge block is rewritten (zeros in part) by RMW, with a fresh checksum.
    await io.trim(6 * MiB + 40 * KiB + 100, 200);
    const blk = await io.read(6 * MiB + 40 * KiB, BLOCK);
    for (const el of [0, 1]) expect(r.store.get(el, (6 * MiB + 40 * KiB) / BLOCK)).toBe(crcOf(blk));
    expect(r.events.size).toBeGreaterThan(0); // from the tests before; none new below
  });

  it('unaligned writes keep the checksums right (read-modify-write of whole blocks)', async () => {
    const io = r.dp.volumeIo(0);
    const model = pattern(32 * KiB, 6);
    await io.write(8 * MiB, model);
    const patch = pattern(5000, 7);
    await io.write(8 * MiB + 3000, patch);
    model.set(patch, 3000);
    const small = pattern(512, 8);
    await io.write(8 * MiB + 20 * KiB + 512, small);
    model.set(small, 20 * KiB + 512);
    expect(equalBytes(await io.read(8 * MiB, 32 * KiB), model)).toBe(true);
    for (let b = 0; b < 8; b++) for (const el of [0, 1]) expect(r.store.get(el, (8 * MiB) / BLOCK + b)).toBe(crcOf(model.subarray(b * BLOCK, (b + 1) * BLOCK)));
    expect(io.alignBytes).toBe(BLOCK);
  });

  it('a volume without integrity does no checksum work', async () => {
    const io = r.dp.volumeIo(1);
    const calls = r.kernelCalls.n;
    const store = { ...r.store.calls };
    await io.write(0, pattern(1 * MiB, 9));
    await io.write(3000, pattern(100, 10));
    await io.read(0, 1 * MiB);
    await io.trim(2 * MiB, 64 * KiB);
    await io.flush();
    expect(r.kernelCalls.n).toBe(calls);
    expect(r.store.calls).toEqual(store);
    expect(io.alignBytes).toBe(1);
  });
});

describe('resync and rebuild recompute checksums from the source', () => {
  const rig = useRig();
  let r: Rig;
  beforeEach(() => {
    r = rig();
  });

  it('a copied unit gets the source data\'s checksums on both legs; holes get none; flush flushes them', async () => {
    const io = r.dp.volumeIo(0);
    await io.write(0, pattern(256 * KiB, 11));
    // As after a crash: leg 0 holds newer data than the checksums say, leg 1 older data.
    const newer = pattern(64 * KiB, 12);
    await r.dp.raw.write(0, DATA_OFFSET_BYTES + 64 * KiB, newer);
    expect(r.store.get(0, 16)).not.toBe(crcOf(newer.subarray(0, BLOCK)));
    const { raw, holeOf } = recomputingRaw(r.dp.raw, r.store, () => DATA_OFFSET_BYTES);
    await raw.copy(0, 1, DATA_OFFSET_BYTES, 256 * KiB);
    for (let b = 16; b < 32; b++) for (const el of [0, 1]) expect(r.store.get(el, b)).toBe(crcOf(newer.subarray((b - 16) * BLOCK, (b - 15) * BLOCK)));
    expect(equalBytes(rawRead(r.paths[1]!, 64 * KiB, 64 * KiB), newer)).toBe(true);
    // Reads verify on either leg now.
    for (let i = 0; i < 4; i++) expect(equalBytes(await io.read(64 * KiB, 64 * KiB), newer)).toBe(true);
    expect(r.events.size).toBe(0);
    // The sparse copy zeroes the source's holes on the target: no checksum on either leg there.
    const stats = { holeBytes: 0, copiedBytes: 0 };
    const sparse = sparseAwareRaw(raw, async (_el: number, start: number, len: number) => ({ startBytes: start, runs: [{ lengthBytes: len, zero: true }] }), stats, holeOf);
    await sparse.copy(0, 1, DATA_OFFSET_BYTES + 128 * KiB, 64 * KiB);
    expect(stats.holeBytes).toBe(64 * KiB);
    for (let b = 32; b < 48; b++) for (const el of [0, 1]) expect(r.store.get(el, b)).toBe(0);
    const flushes = r.store.calls.flush;
    await raw.flush(1);
    expect(r.store.calls.flush - flushes).toBe(2); // source and target checksums
  });
});

describe('integrity on a raid10 volume', () => {
  it('checksums follow the pairs; a flipped byte in one leg is served from its partner and repaired', async () => {
    const dir = tempDir();
    const paths = sparseFiles(dir, 4);
    const dp = await DataPath.start({ pools: { top: 1, middle: 1, bottom: 2, remote: 1 }, queue: { depth: 64, slots: 16, slotKiB: 256 }, probeDir: dir });
    try {
      const els = elementsFor(paths);
      await dp.setTopology([volume(0, 'raid10', [0, 1, 2, 3], 2 * DATA_BYTES, 64 * KiB)], els);
      const store = new PeekableMemStore(); // the synchronous check (the raid1 tests use read())
      const events = new Map<string, number>();
      dp.setIntegrity(0, { store, count: (el: number, ev: IntegrityEvent, n: number) => events.set(`${el}:${ev}`, (events.get(`${el}:${ev}`) ?? 0) + n), log: () => {} });
      const io = dp.volumeIo(0);
      const data = pattern(1 * MiB, 21);
      await io.write(0, data);
      // Chunk 1 (volume [64K, 128K)) is pair 1 (legs 2, 3) at column offset 0: element blocks 0..15.
      for (const el of [2, 3]) expect(store.get(el, 0)).toBe(crcOf(data.subarray(64 * KiB, 64 * KiB + BLOCK)));
      for (const el of [0, 1]) expect(store.get(el, 0)).toBe(crcOf(data.subarray(0, BLOCK)));
      // Leg 3 at column offsets 100 (row 0: volume 64K + 100) and 64K + 100 (row 1: volume 192K + 100).
      // A read takes one leg per chunk (ties alternate by row): at least one of the two blocks is read from leg 3.
      flip(paths[3]!, 100);
      flip(paths[3]!, 64 * KiB + 100);
      for (let i = 0; i < 4; i++) expect(equalBytes(await io.read(0, 1 * MiB), data)).toBe(true);
      const caught = events.get('3:mismatches') ?? 0;
      expect(caught).toBeGreaterThanOrEqual(1);
      expect(events.get('3:repaired')).toBe(caught);
      const fixed = [[0, 64 * KiB], [64 * KiB, 192 * KiB]].filter(([col, vol]) => equalBytes(rawRead(paths[3]!, col!, BLOCK), data.subarray(vol!, vol! + BLOCK)));
      expect(fixed.length).toBe(caught);
      expect([...events.keys()].filter((k) => !k.startsWith('3:'))).toEqual([]);
      expect(store.peeks).toBeGreaterThan(0);
    } finally {
      await dp.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('a leg whose checksum pages cannot be written', () => {
  it('is failed (its checksums would no longer describe its data); the volume flush succeeds on the other leg', async () => {
    const { DataPathError } = await import('../dist/datapath/errno.js');
    const dir = tempDir();
    const paths = sparseFiles(dir, 2);
    const dp = await DataPath.start({ pools: { top: 1, middle: 1, bottom: 2, remote: 1 }, queue: { depth: 64, slots: 16, slotKiB: 256 }, probeDir: dir });
    try {
      await dp.setTopology([volume(0, 'raid1', [0, 1], DATA_BYTES)], elementsFor(paths));
      // A store whose page writes for element 1 fail as a dying device's would.
      const store = new (class extends MemChecksumStore {
        override async flush(element: number): Promise<void> {
          if (element === 1) throw new DataPathError('EIO', 'checksum page write failed (test)');
        }
      })();
      const logs: string[] = [];
      await dp.setIntegrity(0, { store, count: () => undefined, log: (l: string) => logs.push(l) });
      const io = dp.volumeIo(0);
      await io.write(0, pattern(64 * KiB, 9));
      await io.flush();
      expect(dp.elementState(1)).toBe('failed');
      expect(dp.elementState(0)).toBe('active');
      expect(logs.some((l) => /element index 1 failed: its checksum pages could not be written/.test(l))).toBe(true);
      expect(equalBytes(await io.read(0, 64 * KiB), pattern(64 * KiB, 9))).toBe(true);
    } finally {
      await dp.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
