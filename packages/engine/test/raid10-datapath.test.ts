// raid10 through the real DataPath over 4 (or 6) element files: random I/O checked against a
// model, every leg file checked against where the layout puts each byte, degraded reads,
// failing legs, and EIO exactly when a pair has nothing left. Workers are .js files, so this
// imports the BUILT dist (run tsc -b packages/engine first).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataPath, type TopologyElement } from '../dist/datapath/datapath.js';
import { raid10Locate } from '../dist/datapath/map-raid10.js';
import { DATA_OFFSET_BYTES } from '../dist/meta/types.js';
import { rng, readFileRange } from './helpers.js';

const KiB = 1024;
const MiB = 1024 * 1024;
const CHUNK = 64 * KiB;
const FILE_BYTES = 20 * MiB;
const LEG_BYTES = FILE_BYTES - DATA_OFFSET_BYTES;

type Started = { dp: DataPath; dir: string; paths: string[]; sizeBytes: number };

function bytes(length: number, seed: number): Uint8Array {
  const next = rng(seed * 2654435761);
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = next(256);
  return out;
}

function same(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.length), Buffer.from(b.buffer, b.byteOffset, b.length)) === 0;
}

/** Rejects if `p` does not settle within `ms` (a hang is a failure, never a stuck test). */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms);
    }),
  ]);
}

async function start(count: number, opts: { bad?: readonly number[]; middle?: number } = {}): Promise<Started> {
  const root = fileURLToPath(new URL('../../../.tmp/', import.meta.url));
  fs.mkdirSync(root, { recursive: true });
  const dir = fs.mkdtempSync(path.join(root, 'raid10-'));
  const paths = Array.from({ length: count }, (_, i) => {
    const p = path.join(dir, `e${i}.img`);
    fs.writeFileSync(p, '');
    fs.truncateSync(p, FILE_BYTES);
    return p;
  });
  // A directory where the element file should be: open fails, so every I/O on that leg fails.
  for (const i of opts.bad ?? []) {
    fs.rmSync(paths[i]!);
    fs.mkdirSync(paths[i]!);
  }
  const dp = await DataPath.start({ pools: { top: 1, middle: opts.middle ?? 1, bottom: 2, remote: 1 }, queue: { depth: 64, slots: 16, slotKiB: 256 }, probeDir: dir });
  const elements: TopologyElement[] = paths.map((p, i) => ({
    index: i, name: `e${i}`, kind: 'local', path: p, direct: false, dataOffsetBytes: DATA_OFFSET_BYTES, dataSizeBytes: LEG_BYTES, state: 'active', blockSizeBytes: 1,
  }));
  const sizeBytes = (count / 2) * LEG_BYTES; // LEG_BYTES is a whole number of chunks
  await dp.setTopology([{ index: 0, name: 'r10', layout: 'raid10', chunkBytes: CHUNK, sizeBytes, order: 'fifo', elements: elements.map((e) => e.index) }], elements);
  return { dp, dir, paths, sizeBytes };
}

async function stop(s: Started | undefined): Promise<void> {
  if (s === undefined) return;
  await s.dp.close();
  fs.rmSync(s.dir, { recursive: true, force: true });
}

/** What each leg's data area must hold for volume contents `model`: chunk k at row floor(k / pairs) of both legs of pair k % pairs. */
function expectedLeg(model: Uint8Array, pairs: number, role: number): Uint8Array {
  const out = new Uint8Array(LEG_BYTES);
  for (let k = role >> 1, row = 0; k * CHUNK < model.length; k += pairs, row++) out.set(model.subarray(k * CHUNK, (k + 1) * CHUNK), row * CHUNK);
  return out;
}

/** Random writes (non-overlapping within a batch, so the model is exact), zeroes and trims. */
async function randomLoad(s: Started, model: Uint8Array, seed: number, batches: number): Promise<void> {
  const io = s.dp.volumeIo(0);
  const rand = rng(seed);
  const lanes = 8;
  const lane = Math.floor(s.sizeBytes / lanes);
  for (let b = 0; b < batches; b++) {
    const ops = Array.from({ length: lanes }, async (_, i) => {
      const len = 1 + rand(3 * CHUNK + 1000);
      const off = i * lane + rand(lane - len);
      const kind = rand(10);
      if (kind === 0) {
        model.fill(0, off, off + len);
        return io.writeZeroes(off, len);
      }
      if (kind === 1) {
        model.fill(0, off, off + len); // trim reads back as zeroes (punched or zero-filled)
        return io.trim(off, len);
      }
      const data = bytes(len, seed * 1000 + b * lanes + i);
      model.set(data, off);
      return io.write(off, data, { fua: kind === 2 });
    });
    await within(Promise.all(ops), 30_000, `batch ${b}`);
  }
  await io.flush();
}

async function expectReads(s: Started, model: Uint8Array, seed: number, count: number): Promise<void> {
  const io = s.dp.volumeIo(0);
  const rand = rng(seed);
  const ranges = Array.from({ length: count }, () => {
    const len = 1 + rand(5 * CHUNK);
    return [rand(s.sizeBytes - len), len] as const;
  });
  const got = await within(Promise.all(ranges.map(([off, len]) => io.read(off, len))), 30_000, 'reads');
  got.forEach((g, i) => {
    const [off, len] = ranges[i]!;
    expect(same(g, model.subarray(off, off + len)), `read [${off}, +${len})`).toBe(true);
  });
}

describe('raid10 over 4 files', () => {
  let s: Started;
  const model = new Uint8Array(2 * LEG_BYTES);
  beforeAll(async () => {
    s = await start(4);
  });
  afterAll(() => stop(s));

  it('serves random writes, zeroes and trims; reads match; every leg holds exactly its chunks; pairs are identical', async () => {
    await randomLoad(s, model, 1, 12);
    await expectReads(s, model, 2, 200);
    for (let role = 0; role < 4; role++) {
      const leg = readFileRange(s.paths[role]!, DATA_OFFSET_BYTES, LEG_BYTES);
      expect(same(leg, expectedLeg(model, 2, role)), `leg ${role} data area`).toBe(true);
    }
    for (const [a, b] of [[0, 1], [2, 3]] as const) {
      expect(same(readFileRange(s.paths[a]!, 0, FILE_BYTES), readFileRange(s.paths[b]!, 0, FILE_BYTES)), `legs ${a} and ${b}`).toBe(true);
    }
    const g = { layout: 'raid10' as const, chunkBytes: CHUNK, sizeBytes: s.sizeBytes, elements: s.paths.map(() => ({ dataOffsetBytes: DATA_OFFSET_BYTES, dataSizeBytes: LEG_BYTES })) };
    const at = raid10Locate(g, 5 * CHUNK + 77); // chunk 5: pair 1, row 2
    expect(at.legs.map((l) => [l.role, l.elementOffsetBytes])).toEqual([[2, DATA_OFFSET_BYTES + 2 * CHUNK + 77], [3, DATA_OFFSET_BYTES + 2 * CHUNK + 77]]);
    expect(s.dp.queueStatus().inFlight).toBe(0);
    expect([0, 1, 2, 3].map((e) => s.dp.elementState(e))).toEqual(['active', 'active', 'active', 'active']);
  });

  it('reads only from the surviving leg of each pair once one leg per pair is failed', async () => {
    s.dp.setElementState(0, 'failed');
    s.dp.setElementState(3, 'failed');
    // Garbage on the failed legs: a read served from either would not match the model.
    for (const role of [0, 3]) fs.writeFileSync(s.paths[role]!, bytes(FILE_BYTES, 77 + role));
    await expectReads(s, model, 3, 200);
    await randomLoad(s, model, 4, 4); // degraded writes go to the survivors and are acked
    await expectReads(s, model, 5, 100);
    expect(same(readFileRange(s.paths[1]!, DATA_OFFSET_BYTES, LEG_BYTES), expectedLeg(model, 2, 1))).toBe(true);
    expect(same(readFileRange(s.paths[2]!, DATA_OFFSET_BYTES, LEG_BYTES), expectedLeg(model, 2, 2))).toBe(true);
    expect(same(readFileRange(s.paths[0]!, 0, FILE_BYTES), bytes(FILE_BYTES, 77))).toBe(true); // untouched
    expect(s.dp.volumeIo(0).stats().errors).toBe(0);
  });
});

describe('raid10 with legs that fail I/O', () => {
  it('retries reads on the partner, fails the broken legs, and keeps serving from one leg per pair', async () => {
    const s = await start(4, { bad: [1, 2] });
    try {
      const io = s.dp.volumeIo(0);
      // 16 chunks: both pairs, both read legs chosen in turn, so the broken ones get hit.
      const reads = await within(Promise.all(Array.from({ length: 16 }, (_, i) => io.read(i * CHUNK + 100, 4096))), 30_000, 'reads');
      for (const r of reads) expect(same(r, new Uint8Array(4096))).toBe(true);
      expect([0, 1, 2, 3].map((e) => s.dp.elementState(e))).toEqual(['active', 'failed', 'failed', 'active']);
      expect(s.dp.elementErrors(1) + s.dp.elementErrors(2)).toBeGreaterThan(0);
      const data = bytes(4 * CHUNK, 9);
      await io.write(CHUNK / 2, data);
      expect(same(await io.read(CHUNK / 2, data.length), data)).toBe(true);
      expect(same(readFileRange(s.paths[0]!, DATA_OFFSET_BYTES + CHUNK / 2, CHUNK / 2), data.subarray(0, CHUNK / 2))).toBe(true);
      expect(same(readFileRange(s.paths[3]!, DATA_OFFSET_BYTES, CHUNK), data.subarray(CHUNK / 2, 3 * CHUNK / 2))).toBe(true);
      await io.flush();
    } finally {
      await stop(s);
    }
  });

  it('acks a write that loses one leg of a pair during the write', async () => {
    const s = await start(4, { bad: [0] });
    try {
      const io = s.dp.volumeIo(0);
      const data = bytes(2 * CHUNK, 10);
      await io.write(0, data); // chunk 0 on (0,1): leg 0 fails, leg 1 has it; chunk 1 on (2,3)
      expect(s.dp.elementState(0)).toBe('failed');
      expect(same(readFileRange(s.paths[1]!, DATA_OFFSET_BYTES, CHUNK), data.subarray(0, CHUNK))).toBe(true);
      expect(same(await io.read(0, data.length), data)).toBe(true);
    } finally {
      await stop(s);
    }
  });

  it('fails with EIO when both legs of one pair fail, while the other pair keeps serving', async () => {
    const s = await start(4, { bad: [0, 1] });
    try {
      const io = s.dp.volumeIo(0);
      const ok = bytes(CHUNK, 11);
      await io.write(CHUNK, ok); // chunk 1: pair (2,3)
      await expect(within(io.write(0, bytes(4096, 12)), 30_000, 'write')).rejects.toMatchObject({ errno: 'EIO' });
      expect([0, 1].map((e) => s.dp.elementState(e))).toEqual(['failed', 'failed']);
      // Now the planner refuses anything touching pair (0,1) before any I/O: pair (2,3) is not half-written.
      await expect(io.write(CHUNK / 2, bytes(CHUNK, 13))).rejects.toMatchObject({ errno: 'EIO' });
      expect(same(readFileRange(s.paths[2]!, DATA_OFFSET_BYTES, CHUNK), ok)).toBe(true);
      await expect(io.read(0, 4096)).rejects.toMatchObject({ errno: 'EIO' });
      await expect(io.flush()).rejects.toMatchObject({ errno: 'EIO' });
      await expect(io.trim(0, 4 * CHUNK)).rejects.toMatchObject({ errno: 'EIO' });
      expect(same(await io.read(CHUNK, CHUNK), ok)).toBe(true);
      expect(same(await io.read(3 * CHUNK, CHUNK), new Uint8Array(CHUNK))).toBe(true);
      expect([2, 3].map((e) => s.dp.elementState(e))).toEqual(['active', 'active']);
      expect(s.dp.queueStatus().inFlight).toBe(0);
    } finally {
      await stop(s);
    }
  });

  it('fails with EIO when the only leg of a degraded pair fails', async () => {
    const s = await start(4, { bad: [1] });
    try {
      s.dp.setElementState(0, 'failed'); // taken out by the control plane before the write
      await expect(within(s.dp.volumeIo(0).write(0, bytes(8192, 14)), 30_000, 'write')).rejects.toMatchObject({ errno: 'EIO' });
      expect(s.dp.elementState(1)).toBe('failed');
      await s.dp.volumeIo(0).write(CHUNK, bytes(8192, 15));
    } finally {
      await stop(s);
    }
  });
});

describe('raid10 with the middle stage inline (pools.middle = 0) and 6 elements', () => {
  it('maps, mirrors and degrades the same way', async () => {
    const s = await start(6, { middle: 0 });
    try {
      const model = new Uint8Array(s.sizeBytes);
      await randomLoad(s, model, 21, 6);
      await expectReads(s, model, 22, 100);
      for (let role = 0; role < 6; role++) {
        expect(same(readFileRange(s.paths[role]!, DATA_OFFSET_BYTES, LEG_BYTES), expectedLeg(model, 3, role)), `leg ${role}`).toBe(true);
      }
      for (const role of [1, 2, 5]) s.dp.setElementState(role, 'failed');
      await expectReads(s, model, 23, 100);
      s.dp.setElementState(4, 'failed');
      await expect(s.dp.volumeIo(0).read(2 * CHUNK, 10)).rejects.toMatchObject({ errno: 'EIO' }); // chunk 2: pair (4,5)
      expect(same(await s.dp.volumeIo(0).read(CHUNK, CHUNK), model.subarray(CHUNK, 2 * CHUNK))).toBe(true);
    } finally {
      await stop(s);
    }
  });
});

describe('raid10 topology checks', () => {
  it('refuses an odd element count and a chunk that is not a multiple of 512', async () => {
    const s = await start(4);
    try {
      const els: TopologyElement[] = s.paths.map((p, i) => ({ index: i, name: `e${i}`, kind: 'local', path: p, direct: false, dataOffsetBytes: DATA_OFFSET_BYTES, dataSizeBytes: LEG_BYTES, state: 'active', blockSizeBytes: 1 }));
      const vol = { index: 0, name: 'r10', layout: 'raid10' as const, chunkBytes: CHUNK, sizeBytes: LEG_BYTES, order: 'fifo' as const, elements: [0, 1, 2] };
      await expect(s.dp.setTopology([vol], els)).rejects.toThrow(/even number/);
      await expect(s.dp.setTopology([{ ...vol, elements: [0, 1, 2, 3], chunkBytes: 1000 }], els)).rejects.toThrow(/chunk/);
      await expect(s.dp.setTopology([{ ...vol, elements: [0, 1, 2, 3], sizeBytes: 2 * LEG_BYTES + CHUNK }], els)).rejects.toThrow(/capacity/);
    } finally {
      await stop(s);
    }
  });
});
