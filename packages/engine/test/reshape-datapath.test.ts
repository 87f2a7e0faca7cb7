// Reshape in the data path (docs/reshape.md), DataPath used directly over element files: a raid5
// of 3 grown to 4 with the old view journaling in the 'low' area and the new one in 'high', copied
// step by step (fence, read old, write new, advance) while client reads and writes cross the
// position; a simulated crash mid-way replays each view's journal from its own area; a raid5 of 2
// (the view a raid1 is copied through) reads, writes and rebuilds like a mirror. The leg files
// are checked with the tests' own md layout maths (raid56-ref.ts), not the engine's.
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { DataPath, type TopologyElement, type TopologyVolume } from '../dist/datapath/datapath.js';
import { decodeRecordHeader, arrayIdBytes } from '../src/datapath/journal-format.js';
import { JOURNAL_AREAS } from '../src/datapath/journal-area.js';
import { StripeJournal } from '../dist/datapath/stripe-journal.js';
import { DATA_OFFSET_BYTES } from '../src/meta/types.js';
import { elementsFor, equalBytes, KiB, MiB, pattern, sparseFiles, tempDir, within } from './datapath-harness.js';
import { readFileRange } from './helpers.js';
import { refPQ, refRoles } from './raid56-ref.js';

const CHUNK = 64 * KiB;
/** C0: what clients see during the reshape (raid5 of 3: 2 data chunks per row). */
const C0 = 3 * MiB;
/** C1: raid5 of 4 holds 3 chunks per row over the same rows. */
const C1 = (C0 / 2) * 3;
const NEW_ROW = 3 * CHUNK;

interface Rig {
  dp: DataPath;
  readonly dir: string;
  readonly paths: string[];
  readonly els: TopologyElement[];
  readonly arrayId: string;
}

async function start(dir: string, paths: string[], arrayId: string, failed: readonly number[] = [], readCacheMiB = 0): Promise<Rig> {
  const dp = await DataPath.start({ pools: { top: 1, middle: 1, bottom: 2, remote: 1 }, queue: { depth: 64, slots: 16, slotKiB: 256 }, probeDir: dir, readCacheMiB });
  const els = elementsFor(paths).map((e) => (failed.includes(e.index) ? { ...e, state: 'failed' as const } : e));
  return { dp, dir, paths, els, arrayId };
}

function vol(rig: Rig, index: number, layout: 'raid0' | 'raid1' | 'raid5', elements: readonly number[], sizeBytes: number, extra: Partial<TopologyVolume> = {}): TopologyVolume {
  return { index, name: `v${index}`, layout, chunkBytes: CHUNK, sizeBytes, order: 'fifo', elements, arrayId: rig.arrayId, ...extra };
}

/** The reshape topology: index 0 is the new raid5 of 4 ('high'), index 1 the internal old raid5 of 3 ('low'). */
function reshapeTopology(rig: Rig, positionBytes: number): TopologyVolume[] {
  return [
    vol(rig, 0, 'raid5', [0, 1, 2, 3], C1, { journal: 'high', reshape: { fromIndex: 1, positionBytes, exposedBytes: C0 } }),
    { ...vol(rig, 1, 'raid5', [0, 1, 2], C0, { journal: 'low', internal: true }), name: 'v0@old' },
  ];
}

function chunkOf(rig: Rig, role: number, row: number): Uint8Array {
  return readFileRange(rig.paths[role]!, DATA_OFFSET_BYTES + row * CHUNK, CHUNK);
}

/** Volume bytes [0, length) from the leg files, md left-symmetric raid5 over roles 0..n-1. */
function fromFiles(rig: Rig, n: number, lengthBytes: number): Uint8Array {
  const out = new Uint8Array(lengthBytes);
  for (let c = 0; c * CHUNK < lengthBytes; c++) {
    const row = Math.floor(c / (n - 1));
    const bytes = chunkOf(rig, refRoles(n, 1, row).data[c % (n - 1)]!, row);
    out.set(bytes.subarray(0, Math.min(CHUNK, lengthBytes - c * CHUNK)), c * CHUNK);
  }
  return out;
}

/** Rows [r0, r1) whose P in the leg files is not the XOR of their data (n roles). */
function badRows(rig: Rig, n: number, r0: number, r1: number): number[] {
  const bad: number[] = [];
  for (let row = r0; row < r1; row++) {
    const roles = refRoles(n, 1, row);
    if (!equalBytes(refPQ(roles.data.map((r) => chunkOf(rig, r, row))).p, chunkOf(rig, roles.p, row))) bad.push(row);
  }
  return bad;
}

/** One copy step over [p, e): fence, read old, retire the old journal, write new, flush, advance. */
async function step(rig: Rig, p: number, e: number): Promise<void> {
  const router = rig.dp.reshapeRouter(0)!;
  const release = await router.fence(p, e);
  try {
    const bytes = await router.oldIo.read(p, e - p);
    await rig.dp.checkpointJournal(1);
    await router.newIo.write(p, bytes);
    await router.newIo.flush();
    router.advance(e);
  } finally {
    release();
  }
}

/** Starts a reshape of the plain raid5 of 3 at index 0 as the engine does: pause, retire the journal, switch, resume. */
async function begin(rig: Rig): Promise<number> {
  const resume = await rig.dp.pauseVolume(0);
  try {
    const seq = await rig.dp.checkpointJournal(0);
    await rig.dp.setTopology(reshapeTopology(rig, 0), rig.els);
    return seq;
  } finally {
    resume();
  }
}

/** Ring records (seq, width) found in [offset, +bytes) of an element file. */
function recordsIn(rig: Rig, role: number, offsetBytes: number, bytes: number): { seq: number; width: number }[] {
  const ring = readFileRange(rig.paths[role]!, offsetBytes, bytes);
  const out: { seq: number; width: number }[] = [];
  for (let at = 0; at + 4096 <= ring.length; at += 4096) {
    const h = decodeRecordHeader(ring.subarray(at, at + 4096), arrayIdBytes(rig.arrayId));
    if (h !== null) out.push({ seq: h.seq, width: h.width });
  }
  return out;
}

describe('reshape in the data path: raid5 of 3 -> raid5 of 4', () => {
  let rig: Rig | undefined;
  afterEach(async () => {
    await rig?.dp.close();
    if (rig !== undefined) fs.rmSync(rig.dir, { recursive: true, force: true });
    rig = undefined;
  });

  it('copies step by step under client I/O across the position, then finishes into one full-journal volume', async () => {
    const dir = tempDir();
    rig = await start(dir, sparseFiles(dir, 4), randomUUID(), [], 8); // the RAM read cache on: each view caches under its own index
    await rig.dp.setTopology([vol(rig, 0, 'raid5', [0, 1, 2], C0)], rig.els);
    const model = pattern(C0, 11);
    const io = rig.dp.volumeIo(0); // held across every topology below, like an NBD connection
    await io.write(0, model);
    // Switching the width while the journal holds unretired writes is refused (pause + checkpoint first).
    await io.write(0, model.subarray(0, 4 * KiB));
    await expect(rig.dp.setTopology(reshapeTopology(rig, 0), rig.els)).rejects.toThrow(/unretired/);
    await begin(rig);
    const router = rig.dp.reshapeRouter(0)!;
    expect(router).toBeDefined();
    expect(io.sizeBytes).toBe(C0);
    expect(rig.dp.volumeIo(0)).toBe(io);
    let stepNo = 0;
    for (let p = 0; p < C0; stepNo++) {
      const e = Math.min(C0, p + 2 * NEW_ROW);
      // A write inside the window waits for the step and lands in the new view after it.
      const release = await router.fence(p, e);
      const inside = pattern(8 * KiB, 100 + stepNo);
      let landed = false;
      const w = io.write(p + 4 * KiB, inside).then(() => { landed = true; });
      await new Promise((r) => setTimeout(r, 20));
      expect(landed).toBe(false);
      expect(router.load.waiting).toBe(1);
      const bytes = await router.oldIo.read(p, e - p);
      await rig.dp.checkpointJournal(1);
      await router.newIo.write(p, bytes);
      await router.newIo.flush();
      router.advance(e);
      release();
      await within(w, 10_000, 'fenced write');
      model.set(inside, p + 4 * KiB);
      p = e;
      // Across the position, both ways: a write then a read spanning it (unaligned edges too).
      if (p < C0) {
        const at = p - 10 * KiB - 512;
        const cross = pattern(30 * KiB + 1000, 200 + stepNo);
        await io.write(at, cross);
        model.set(cross, at);
        for (let i = 0; i < 2; i++) expect(equalBytes(await io.read(p - 64 * KiB, 128 * KiB), model.subarray(p - 64 * KiB, p + 64 * KiB))).toBe(true);
        const slots = await io.readSlots(at, cross.length);
        const joined = Buffer.concat(slots.chunks.map((c) => Buffer.from(c)));
        slots.release();
        expect(equalBytes(joined, cross)).toBe(true);
        // Zero-copy buffers: the router hands out the new view's, and copies when the write is above the position.
        const buf = await io.acquireWriteBuffer(16 * KiB);
        const z = pattern(16 * KiB, 300 + stepNo);
        let o = 0;
        for (const c of buf.chunks) {
          c.set(z.subarray(o, o + c.length));
          o += c.length;
        }
        await io.writeBuffer(p - 8 * KiB, buf, { fua: false });
        model.set(z, p - 8 * KiB);
        // Zeroes and trims split the same way.
        await io.writeZeroes(p - 12 * KiB, 24 * KiB);
        model.fill(0, p - 12 * KiB, p + 12 * KiB);
        await io.trim(p + 100 * KiB, 8 * KiB);
        model.fill(0, p + 100 * KiB, p + 108 * KiB);
        await io.cache(p - 4096, 8192);
        expect(equalBytes(await io.read(p - 16 * KiB, 128 * KiB), model.subarray(p - 16 * KiB, p + 112 * KiB))).toBe(true);
      }
    }
    expect(router.positionBytes).toBe(C0);
    expect(io.cacheStats().hits).toBeGreaterThan(0); // and the reads after the writes above saw the new bytes
    expect(() => router.advance(C0 + NEW_ROW)).toThrow(/forward/);
    expect(equalBytes(await io.read(0, C0), model)).toBe(true);
    expect(io.stats().writeOps).toBeGreaterThan(0);
    // Finish: zero the new capacity, pause, retire both journals, hand over to the full area.
    await router.newIo.writeZeroes(C0, C1 - C0);
    const resume = await rig.dp.pauseVolume(0);
    const held = io.read(0, 64 * KiB);
    const seq = Math.max(await rig.dp.checkpointJournal(0), await rig.dp.checkpointJournal(1)) + 1;
    await rig.dp.writeJournalHeader(0, 'full', seq);
    await rig.dp.setTopology([vol(rig, 0, 'raid5', [0, 1, 2, 3], C1)], rig.els);
    resume();
    expect(equalBytes(await within(held, 10_000, 'read held by the pause'), model.subarray(0, 64 * KiB))).toBe(true);
    expect(rig.dp.reshapeRouter(0)).toBeUndefined();
    expect(io.sizeBytes).toBe(C1);
    const all = await io.read(0, C1);
    expect(equalBytes(all.subarray(0, C0), model)).toBe(true);
    expect(all.subarray(C0).every((b) => b === 0)).toBe(true);
    await io.flush();
    // The leg files hold the md layout of the new geometry, parity right on every row.
    expect(equalBytes(fromFiles(rig, 4, C0), model)).toBe(true);
    expect(badRows(rig, 4, 0, C1 / NEW_ROW)).toEqual([]);
  });

  it('a crash mid-reshape: each view replays its own journal area, and the data is right', async () => {
    const dir = tempDir();
    const arrayId = randomUUID();
    rig = await start(dir, sparseFiles(dir, 4), arrayId);
    await rig.dp.setTopology([vol(rig, 0, 'raid5', [0, 1, 2], C0)], rig.els);
    const model = pattern(C0, 21);
    const io = rig.dp.volumeIo(0);
    await io.write(0, model);
    const startSeq = await begin(rig);
    let p = 0;
    for (; p < C0 / 2; p += 2 * NEW_ROW) await step(rig, p, p + 2 * NEW_ROW);
    // Writes on both sides of the position, acknowledged but never checkpointed (no flush).
    const below = pattern(100 * KiB, 31);
    const above = pattern(100 * KiB, 32);
    await io.write(64 * KiB, below);
    await io.write(p + 256 * KiB, above);
    model.set(below, 64 * KiB);
    model.set(above, p + 256 * KiB);
    // One more update each way stops half done: only the first role written gets its in-place bytes.
    const rowNew = Math.floor(200 * KiB / NEW_ROW);
    const rowOld = Math.floor((p + 640 * KiB) / (2 * CHUNK));
    let stuck = 0;
    rig.dp.stripe(0).faults = { afterJournal: (row, roles) => (row === rowNew ? (stuck++, roles.slice(0, 1)) : null) };
    rig.dp.stripe(1).faults = { afterJournal: (row, roles) => (row === rowOld ? (stuck++, roles.slice(0, 1)) : null) };
    const halfNew = pattern(CHUNK, 41);
    const halfOld = pattern(CHUNK, 42);
    void io.write(rowNew * NEW_ROW, halfNew).catch(() => undefined);
    void io.write(rowOld * 2 * CHUNK, halfOld).catch(() => undefined);
    for (let i = 0; i < 200 && stuck < 2; i++) await new Promise((r) => setTimeout(r, 10));
    expect(stuck).toBe(2);
    await new Promise((r) => setTimeout(r, 200));
    model.set(halfNew, rowNew * NEW_ROW);
    model.set(halfOld, rowOld * 2 * CHUNK);
    // Half done on disk: data and parity disagree in both rows until the journals are replayed.
    expect(badRows(rig, 4, rowNew, rowNew + 1)).toEqual([rowNew]);
    expect(badRows({ ...rig, paths: rig.paths.slice(0, 3) }, 3, rowOld, rowOld + 1)).toEqual([rowOld]);
    // Each view's records sit in its own area: the new view's (width 4) only in the high ring, the
    // old view's since the start (width 3, sequences from startSeq on) only in the low one; the
    // high ring may still hold the full journal's older records (below startSeq).
    for (const role of [0, 1, 2]) {
      const low = recordsIn(rig, role, JOURNAL_AREAS.low.ringOffsetBytes, JOURNAL_AREAS.low.ringBytes);
      const high = recordsIn(rig, role, JOURNAL_AREAS.high.ringOffsetBytes, JOURNAL_AREAS.high.ringBytes);
      expect(high.some((r) => r.width === 4)).toBe(true);
      expect(high.filter((r) => r.width === 3 && r.seq >= startSeq)).toEqual([]);
      expect(low.filter((r) => r.width === 4)).toEqual([]);
      expect(low.some((r) => r.width === 3 && r.seq >= startSeq)).toBe(true);
    }
    // The crash: drop the data path as it is; a new one binds both views at the persisted position.
    await rig.dp.close();
    rig = await start(dir, rig.paths, arrayId);
    await rig.dp.setTopology(reshapeTopology(rig, p), rig.els);
    expect(rig.dp.volumeOpenError(0)).toBeUndefined();
    expect(rig.dp.volumeOpenError(1)).toBeUndefined();
    const io2 = rig.dp.volumeIo(0);
    expect(equalBytes(await io2.read(0, C0), model)).toBe(true);
    // Replay made data and parity agree in both geometries' rows.
    expect(badRows(rig, 4, 0, p / NEW_ROW)).toEqual([]);
    expect(badRows({ ...rig, paths: rig.paths.slice(0, 3) }, 3, Math.ceil(C0 / 2 / (2 * CHUNK)) + 1, C0 / (2 * CHUNK))).toEqual([]);
    // The resumed copy finishes and the data is still right.
    for (; p < C0; p += 2 * NEW_ROW) await step(rig, p, Math.min(C0, p + 2 * NEW_ROW));
    expect(equalBytes(await io2.read(0, C0), model)).toBe(true);
    expect(equalBytes(fromFiles(rig, 4, C0), model)).toBe(true);
  });

  it('the router refuses bad fences and moves; a pause holds every request until resumed', async () => {
    const dir = tempDir();
    rig = await start(dir, sparseFiles(dir, 4), randomUUID());
    await rig.dp.setTopology(reshapeTopology(rig, NEW_ROW), rig.els);
    const router = rig.dp.reshapeRouter(0)!;
    expect(router.positionBytes).toBe(NEW_ROW);
    await expect(router.fence(5, 5)).rejects.toMatchObject({ errno: 'EINVAL' });
    expect(() => router.advance(2 * NEW_ROW)).toThrow(/held fence/);
    const release = await router.fence(NEW_ROW, 2 * NEW_ROW);
    expect(() => router.advance(0)).toThrow(/forward/);
    router.advance(2 * NEW_ROW);
    release();
    // A topology that keeps the reshape keeps the router and its position (the topology's is the start value only).
    await rig.dp.setTopology(reshapeTopology(rig, 0), rig.els);
    expect(rig.dp.reshapeRouter(0)).toBe(router);
    expect(router.positionBytes).toBe(2 * NEW_ROW);
    const io = rig.dp.volumeIo(0);
    await expect(io.read(C0 - 4096, 8192)).rejects.toMatchObject({ errno: 'EINVAL' });
    const resume = await rig.dp.pauseVolume(0);
    let done = false;
    const w = io.write(0, pattern(4096, 1)).then(() => { done = true; });
    await new Promise((r) => setTimeout(r, 30));
    expect(done).toBe(false);
    await expect(rig.dp.pauseVolume(0)).rejects.toThrow(/already paused/);
    resume();
    await within(w, 10_000, 'write held by the pause');
    // A bad reshape topology is refused before anything changes.
    await expect(rig.dp.setTopology([vol(rig, 0, 'raid5', [0, 1, 2, 3], C1, { journal: 'high', reshape: { fromIndex: 1, positionBytes: 0, exposedBytes: C0 } }), vol(rig, 1, 'raid5', [0, 1, 2], C0, { journal: 'high', internal: true })], rig.els)).rejects.toThrow(/journal in the high area/);
    await expect(rig.dp.setTopology([vol(rig, 0, 'raid5', [0, 1, 2, 3], C1, { reshape: { fromIndex: 1, positionBytes: 0, exposedBytes: C0 } }), vol(rig, 1, 'raid5', [0, 1, 2], C0, { journal: 'low' })], rig.els)).rejects.toThrow(/internal/);
    expect(rig.dp.reshapeRouter(0)).toBe(router);
  });
});

describe('reshape in the data path: raid0 of 2 -> raid0 of 3 (reads served by the fast lane)', () => {
  let rig: Rig | undefined;
  afterEach(async () => {
    await rig?.dp.close();
    if (rig !== undefined) fs.rmSync(rig.dir, { recursive: true, force: true });
    rig = undefined;
  });

  it('reads across the position come from both geometries, page-cache hits included', async () => {
    const dir = tempDir();
    rig = await start(dir, sparseFiles(dir, 3), randomUUID());
    const S0 = 2 * MiB;
    const S1 = 3 * MiB;
    await rig.dp.setTopology([vol(rig, 0, 'raid0', [0, 1], S0)], rig.els);
    const io = rig.dp.volumeIo(0);
    const model = pattern(S0, 77);
    await io.write(0, model);
    const resume = await rig.dp.pauseVolume(0);
    await rig.dp.setTopology([
      vol(rig, 0, 'raid0', [0, 1, 2], S1, { reshape: { fromIndex: 1, positionBytes: 0, exposedBytes: S0 } }),
      { ...vol(rig, 1, 'raid0', [0, 1], S0, { internal: true }), name: 'v0@old' },
    ], rig.els);
    resume();
    const router = rig.dp.reshapeRouter(0)!;
    const lane0 = rig.dp.fastLaneStats();
    for (let p = 0; p < S0; p += 6 * CHUNK) {
      const e = Math.min(S0, p + 6 * CHUNK);
      const release = await router.fence(p, e);
      const bytes = await router.oldIo.read(p, e - p);
      await router.newIo.write(p, bytes);
      router.advance(e);
      release();
      // Twice: the second read of the same bytes is a page-cache hit where the lane serves it.
      for (let i = 0; i < 2; i++) expect(equalBytes(await io.read(Math.max(0, e - 100 * KiB), Math.min(200 * KiB, S0 - Math.max(0, e - 100 * KiB))), model.subarray(Math.max(0, e - 100 * KiB), Math.min(S0, e + 100 * KiB)))).toBe(true);
    }
    if (lane0 !== null) expect(rig.dp.fastLaneStats()!.hits).toBeGreaterThan(lane0.hits);
    expect(equalBytes(await io.read(0, S0), model)).toBe(true);
    // The element files hold raid0 over 3 now: chunk c on element c mod 3 at row floor(c / 3).
    for (let c = 0; c < S0 / CHUNK; c++) {
      const onDisk = readFileRange(rig.paths[c % 3]!, DATA_OFFSET_BYTES + Math.floor(c / 3) * CHUNK, CHUNK);
      expect(equalBytes(onDisk, model.subarray(c * CHUNK, (c + 1) * CHUNK))).toBe(true);
    }
  });
});

describe('raid5 of 2 elements (a mirror: how a raid1 is copied)', () => {
  let rig: Rig | undefined;
  afterEach(async () => {
    await rig?.dp.close();
    if (rig !== undefined) fs.rmSync(rig.dir, { recursive: true, force: true });
    rig = undefined;
  });
  const SIZE = 2 * MiB;

  it('reads and writes, both legs equal, degraded reads and writes with either leg gone', async () => {
    const dir = tempDir();
    const arrayId = randomUUID();
    rig = await start(dir, sparseFiles(dir, 2), arrayId);
    await rig.dp.setTopology([vol(rig, 0, 'raid5', [0, 1], SIZE)], rig.els);
    const model = pattern(SIZE, 5);
    const io = rig.dp.volumeIo(0);
    await io.write(0, model);
    const odd = pattern(70 * KiB + 3, 6);
    await io.write(100 * KiB + 1, odd);
    model.set(odd, 100 * KiB + 1);
    expect(equalBytes(await io.read(0, SIZE), model)).toBe(true);
    await io.flush();
    const leg0 = readFileRange(rig.paths[0]!, DATA_OFFSET_BYTES, SIZE);
    expect(equalBytes(leg0, model)).toBe(true);
    expect(equalBytes(readFileRange(rig.paths[1]!, DATA_OFFSET_BYTES, SIZE), model)).toBe(true);
    for (const gone of [0, 1]) {
      await rig.dp.close();
      rig = await start(dir, rig.paths, arrayId, [gone]);
      await rig.dp.setTopology([vol(rig, 0, 'raid5', [0, 1], SIZE)], rig.els);
      const d = rig.dp.volumeIo(0);
      expect(equalBytes(await d.read(0, SIZE), model)).toBe(true);
      const patch = pattern(3 * CHUNK, 50 + gone);
      await d.write(CHUNK / 2, patch);
      model.set(patch, CHUNK / 2);
      expect(equalBytes(await d.read(0, SIZE), model)).toBe(true);
      await d.flush();
      expect(equalBytes(readFileRange(rig.paths[1 - gone]!, DATA_OFFSET_BYTES, SIZE), model)).toBe(true);
      // Bring the lost leg back up to date through the stripe engine's rebuild (k = 1: P is the copy).
      await rig.dp.close();
      rig = await start(dir, rig.paths, arrayId);
      await rig.dp.setTopology([vol(rig, 0, 'raid5', [0, 1], SIZE)], rig.els);
      rig.dp.setElementState(gone, 'rebuilding');
      await rig.dp.stripe(0).reconstructElementRange(gone, DATA_OFFSET_BYTES, SIZE);
      rig.dp.setElementState(gone, 'active');
      expect(equalBytes(readFileRange(rig.paths[gone]!, DATA_OFFSET_BYTES, SIZE), model)).toBe(true);
    }
    // Scrub with k = 1: a clean row checks clean, a corrupted copy is found.
    expect((await rig.dp.stripe(0).checkStripe(3)).ok).toBe(true);
    await rig.dp.close();
    const fd = fs.openSync(rig.paths[1]!, 'r+');
    fs.writeSync(fd, new Uint8Array(512).fill(0xa5), 0, 512, DATA_OFFSET_BYTES + 3 * CHUNK + 4096);
    fs.closeSync(fd);
    rig = await start(dir, rig.paths, arrayId);
    await rig.dp.setTopology([vol(rig, 0, 'raid5', [0, 1], SIZE)], rig.els);
    const verdict = await rig.dp.stripe(0).checkStripe(3);
    expect(verdict.ok).toBe(false);
    expect(verdict.mismatchedBytes).toBeGreaterThan(0);
  });

  it('a raid1 written through the raid1 path has the same leg bytes as a raid5 of 2, and reads back through one', async () => {
    const dir = tempDir();
    const arrayId = randomUUID();
    rig = await start(dir, sparseFiles(dir, 4), arrayId);
    await rig.dp.setTopology([vol(rig, 0, 'raid1', [0, 1], SIZE), vol(rig, 1, 'raid5', [2, 3], SIZE)], rig.els);
    const model = pattern(SIZE, 9);
    for (const index of [0, 1]) {
      const io = rig.dp.volumeIo(index);
      await io.write(0, model);
      await io.writeZeroes(300 * KiB, 200 * KiB);
      await io.write(777, pattern(5000, 3));
      await io.flush();
    }
    const legs = rig.paths.map((p) => readFileRange(p, DATA_OFFSET_BYTES, SIZE));
    for (const leg of legs.slice(1)) expect(equalBytes(leg, legs[0]!)).toBe(true);
    const expected = legs[0]!;
    // The raid1's legs, bound as a raid5 of 2 (the old view of a raid1 -> raid5 reshape), read the same bytes.
    await rig.dp.setTopology([], rig.els);
    await rig.dp.setTopology([{ ...vol(rig, 0, 'raid5', [0, 1], SIZE, { journal: 'low', internal: true }), name: 'v0@old' }], rig.els);
    expect(equalBytes(await rig.dp.volumeIo(0).read(0, SIZE), expected)).toBe(true);
  });
});

describe('StripeJournal.retireAll (checkpointJournal)', () => {
  it('waits for every transaction begun before it, then persists a checkpoint above them', async () => {
    const persisted: number[] = [];
    const j = new StripeJournal(3, async (seq) => {
      persisted.push(seq);
    }, 16, JOURNAL_AREAS.low.ringBytes);
    j.reset(10);
    const a = await j.begin([{ role: 0, bytes: 8192 }]);
    const b = await j.begin([{ role: 1, bytes: 8192 }]);
    let done = false;
    const retired = j.retireAll().then((next) => {
      done = true;
      return next;
    });
    const tick = (): Promise<void> => new Promise((r) => setTimeout(r, 10));
    await tick();
    expect(done).toBe(false);
    j.end(b);
    await tick();
    expect(done).toBe(false);
    const c = await j.begin([{ role: 2, bytes: 4096 }]); // begun after the call: not waited for
    j.end(a);
    expect(await retired).toBe(13);
    expect(j.checkpointSeq).toBe(12);
    expect(persisted).toContain(12);
    j.end(c);
    expect(await j.retireAll()).toBe(13);
    expect(j.checkpointSeq).toBe(13);
  });
});
