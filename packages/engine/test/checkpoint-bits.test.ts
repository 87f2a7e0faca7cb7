// Checkpoint dirty bitmaps below the Engine: the pure codec and extents (fuzzed against a naive
// reference), group commit of page writes, a failed bitmap write failing the client write with
// EIO through the real WriteGate, writes in flight when a checkpoint starts, and torn pages.
// Imports the BUILT dist (run tsc -b packages/engine first).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CheckpointBits, openBitsFile, type BitsFile, type OpenBitsFile } from '../dist/checkpoints/bits.js';
import { dirtyExtents } from '../dist/checkpoints/extents.js';
import {
  CheckpointFormatError, decodeHeader, encodeHeader, HEADER_BYTES, PAGE_BYTES, PAGE_REGIONS, regionBytesFor, regionCountFor, type CheckpointHeader,
} from '../dist/checkpoints/format.js';
import { VolumeCheckpoints } from '../dist/checkpoints/volume-checkpoints.js';
import { WriteGate } from '../dist/datapath/write-gate.js';
import { rng } from './helpers.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const quiet = (): void => {};
let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'onestack-ckpt-bits-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

/** The extents a naive per-byte walk gives: the reference for dirtyExtents. */
function reference(bits: Uint8Array, regionBytes: number, sizeBytes: number, off: number, len: number, max: number): { lengthBytes: number; flags: number }[] {
  const end = Math.min(off + len, sizeBytes);
  const out: { lengthBytes: number; flags: number }[] = [];
  for (let pos = off; pos < end;) {
    const r = Math.floor(pos / regionBytes);
    const flag = (bits[r >> 3]! >> (r & 7)) & 1;
    const next = Math.min(end, (r + 1) * regionBytes);
    const last = out[out.length - 1];
    if (last !== undefined && last.flags === flag) last.lengthBytes += next - pos;
    else out.push({ lengthBytes: next - pos, flags: flag });
    pos = next;
  }
  return out.slice(0, max);
}

describe('checkpoint format and extents (pure)', () => {
  it('region size is 64 KiB, doubled so the bits of a huge volume stay within 2 MiB', () => {
    expect(regionBytesFor(4 * GiB)).toBe(64 * KiB);
    expect(regionBytesFor(1024 * GiB)).toBe(64 * KiB);
    expect(regionBytesFor(1025 * GiB)).toBe(128 * KiB);
    expect(regionCountFor(64 * 1024 * GiB, regionBytesFor(64 * 1024 * GiB)) / 8).toBeLessThanOrEqual(2 * MiB);
  });

  it('header round-trips; a flipped byte, wrong magic or short input is a CheckpointFormatError', () => {
    const h: CheckpointHeader = { id: '0123456789abcdef0123456789abcdef', name: 'ckpt-1', regionBytes: 64 * KiB, regionCount: 16, volumeSizeBytes: MiB, createdMs: 1234 };
    const bytes = encodeHeader(h);
    expect(decodeHeader(bytes)).toEqual(h);
    const flipped = bytes.slice();
    flipped[40]! ^= 1;
    expect(() => decodeHeader(flipped)).toThrow(CheckpointFormatError);
    expect(() => decodeHeader(new Uint8Array(HEADER_BYTES))).toThrow(/not a onestack checkpoint/);
    expect(() => decodeHeader(bytes.subarray(0, 100))).toThrow(CheckpointFormatError);
    const next = rng(7);
    for (let i = 0; i < 300; i++) {
      const junk = bytes.slice();
      for (let k = 0; k < 4; k++) junk[8 + next(HEADER_BYTES - 8)] = next(256);
      try {
        decodeHeader(junk);
      } catch (err) {
        expect(err).toBeInstanceOf(CheckpointFormatError);
      }
    }
  });

  it('extents start at the offset, are clipped to the range and the volume, merge runs, and stop at extentsMax (fuzzed)', () => {
    const next = rng(99);
    for (let round = 0; round < 400; round++) {
      const regionBytes = 64 * KiB;
      const sizeBytes = (1 + next(300)) * 4096 * (1 + next(20));
      const regions = regionCountFor(sizeBytes, regionBytes);
      const bits = new Uint8Array(Math.ceil(regions / 8) + 8);
      const density = next(4);
      for (let r = 0; r < regions; r++) if (density === 3 ? next(10) > 0 : next(4) < density) bits[r >> 3]! |= 1 << (r & 7);
      const off = next(sizeBytes);
      const len = 1 + next(sizeBytes + 100000);
      const max = 1 + next(6);
      const got = dirtyExtents({ bits, regionBytes, regionCount: regions, volumeSizeBytes: sizeBytes }, off, len, max);
      expect(got).toEqual(reference(bits, regionBytes, sizeBytes, off, len, max));
      expect(got.length).toBeGreaterThanOrEqual(1);
      expect(got.every((e) => e.lengthBytes > 0)).toBe(true);
      expect(got.reduce((a, e) => a + e.lengthBytes, 0)).toBeLessThanOrEqual(Math.min(len, sizeBytes - off));
    }
  });

  it('a whole-volume question on a clean 1 TiB bitmap is one extent', () => {
    const regionBytes = regionBytesFor(1024 * GiB);
    const regionCount = regionCountFor(1024 * GiB, regionBytes);
    const bits = new Uint8Array(regionCount / 8);
    bits[regionCount / 8 - 1] = 0x80;
    const got = dirtyExtents({ bits, regionBytes, regionCount, volumeSizeBytes: 1024 * GiB }, 0, 1024 * GiB, 16);
    expect(got).toEqual([{ lengthBytes: 1024 * GiB - regionBytes, flags: 0 }, { lengthBytes: regionBytes, flags: 1 }]);
  });
});

/** A bits file over a real file whose writes can be held or failed, counting syncs. */
function controlledFile(): { open: OpenBitsFile; syncs: () => number; fail: (on: boolean) => void; hold: () => () => void } {
  let syncs = 0;
  let failing = false;
  let gate: Promise<void> | null = null;
  const open: OpenBitsFile = async (p, create) => {
    const real = await openBitsFile(p, create);
    const f: BitsFile = {
      read: (pos, len) => real.read(pos, len),
      write: async (bytes, pos) => {
        await gate;
        if (failing) throw Object.assign(new Error('injected write failure'), { code: 'EIO' });
        return real.write(bytes, pos);
      },
      sync: async (full) => {
        syncs++;
        return real.sync(full);
      },
      close: () => real.close(),
    };
    return f;
  };
  return {
    open, syncs: () => syncs, fail: (on) => { failing = on; },
    hold: () => {
      let release = (): void => undefined;
      gate = new Promise((r) => { release = r; });
      return () => { gate = null; release(); };
    },
  };
}

const header = (sizeBytes: number): CheckpointHeader => {
  const regionBytes = regionBytesFor(sizeBytes);
  return { id: 'aa'.repeat(16), name: 'c', regionBytes, regionCount: regionCountFor(sizeBytes, regionBytes), volumeSizeBytes: sizeBytes, createdMs: 1 };
};

describe('CheckpointBits', () => {
  it('group-commits: many first writes share one fdatasync; a durable region costs nothing', async () => {
    const ctl = controlledFile();
    const file = path.join(dir, 'c.bits');
    const bits = await CheckpointBits.create(await ctl.open(file, true), header(64 * MiB), 'v/c');
    const synced = ctl.syncs();
    const release = ctl.hold();
    const first = bits.mark(0, 4096)!;
    // Marks while the first round is held go to one next round, whatever their pages.
    const rest = Array.from({ length: 50 }, (_, i) => bits.mark((i + 1) * 64 * KiB, 4096));
    expect(rest.every((p) => p !== undefined)).toBe(true);
    release();
    await Promise.all([first, ...rest]);
    expect(ctl.syncs() - synced).toBe(2);
    expect(bits.mark(0, 4096)).toBeUndefined();
    expect(bits.mark(64 * KiB, 50 * 64 * KiB)).toBeUndefined();
    expect(bits.dirtyRegions).toBe(51);
    await bits.close();
  });

  it('marks exactly the regions each range touches (fuzzed against a set of regions), and survive a reload', async () => {
    const size = 3 * GiB + 12345 * 4096; // a partial last region, two pages and more
    const h = header(size);
    const file = path.join(dir, 'f.bits');
    const bits = await CheckpointBits.create(await openBitsFile(file, true), h, 'v/f');
    const want = new Set<number>();
    const next = rng(5);
    for (let i = 0; i < 300; i++) {
      const off = next(size);
      const len = 1 + (next(4) === 0 ? next(size - off) : next(3 * MiB));
      await bits.mark(off, len);
      for (let r = Math.floor(off / h.regionBytes); r * h.regionBytes < Math.min(off + len, size); r++) want.add(r);
    }
    expect(bits.dirtyRegions).toBe(want.size);
    const ref = new Uint8Array(Math.ceil(h.regionCount / 8));
    for (const r of want) ref[r >> 3]! |= 1 << (r & 7);
    const view = { bits: ref, regionBytes: h.regionBytes, regionCount: h.regionCount, volumeSizeBytes: size };
    expect(dirtyExtents(bits, 0, size, 1 << 20)).toEqual(dirtyExtents(view, 0, size, 1 << 20));
    await bits.close();
    const again = await CheckpointBits.load(await openBitsFile(file, false), { id: h.id, name: h.name, regionBytes: h.regionBytes, volumeSizeBytes: size, createdMs: h.createdMs }, 'v/f');
    expect(again.repairedPages).toBe(0);
    expect(dirtyExtents(again.bits, 0, size, 1 << 20)).toEqual(dirtyExtents(view, 0, size, 1 << 20));
    await again.bits.close();
  });

  it('a write to a region set but not yet durable waits for the round carrying it', async () => {
    const ctl = controlledFile();
    const bits = await CheckpointBits.create(await ctl.open(path.join(dir, 'c.bits'), true), header(MiB), 'v/c');
    const release = ctl.hold();
    let firstDone = false;
    const first = bits.mark(0, 4096)!.then(() => { firstDone = true; });
    const second = bits.mark(4096, 4096);
    expect(second).toBeDefined();
    let secondDone = false;
    void second!.then(() => { secondDone = true; });
    await new Promise((r) => setTimeout(r, 20));
    expect([firstDone, secondDone]).toEqual([false, false]);
    release();
    await first;
    await second;
    expect(secondDone).toBe(true);
    await bits.close();
  });

  it('a torn page reads as all dirty (and is rewritten intact); a bad header is refused', async () => {
    const size = 4 * GiB; // 65536 regions: three pages
    const h = header(size);
    const file = path.join(dir, 'c.bits');
    const bits = await CheckpointBits.create(await openBitsFile(file, true), h, 'v/c');
    await bits.mark(0, 4096);
    await bits.mark(size - 4096, 4096);
    await bits.close();
    const fd = fs.openSync(file, 'r+');
    fs.writeSync(fd, new Uint8Array(512).fill(0x33), 0, 512, HEADER_BYTES + PAGE_BYTES + 1024); // tear page 1
    fs.closeSync(fd);
    const expect1 = { id: h.id, name: h.name, regionBytes: h.regionBytes, volumeSizeBytes: size, createdMs: h.createdMs };
    const loaded = await CheckpointBits.load(await openBitsFile(file, false), expect1, 'v/c');
    expect(loaded.repairedPages).toBe(1);
    const regions = h.regionCount;
    expect(loaded.bits.dirtyRegions).toBe(2 + Math.min(PAGE_REGIONS, regions - PAGE_REGIONS) - 0);
    const ext = dirtyExtents(loaded.bits, 0, size, 16);
    expect(ext[0]).toEqual({ lengthBytes: h.regionBytes, flags: 1 });
    expect(ext[2]).toEqual({ lengthBytes: PAGE_REGIONS * h.regionBytes, flags: 1 });
    await loaded.bits.close();
    // Rewritten: a second load finds every page intact with the same bits.
    const again = await CheckpointBits.load(await openBitsFile(file, false), expect1, 'v/c');
    expect(again.repairedPages).toBe(0);
    expect(again.bits.dirtyRegions).toBe(loaded.bits.dirtyRegions);
    await again.bits.close();
    await expect(CheckpointBits.load(await openBitsFile(file, false), { ...expect1, id: 'bb'.repeat(16) }, 'v/c')).rejects.toThrow(/id/);
  });
});

describe('VolumeCheckpoints on a real WriteGate', () => {
  const open = (gate: InstanceType<typeof WriteGate>, openFile: OpenBitsFile, log = quiet): Promise<InstanceType<typeof VolumeCheckpoints>> =>
    VolumeCheckpoints.open({ dir: path.join(dir, 'checkpoints', 'v'), volume: 'v', arrayUuid: '11111111-2222-3333-4444-555555555555', sizeBytes: 256 * MiB, gate, log, openFile });

  /** A client write as the volume does it: through the gate, "submitted" once admitted. */
  async function write(gate: InstanceType<typeof WriteGate>, off: number, len: number, submitted: [number, number][]): Promise<void> {
    const release = await gate.enter(off, len);
    submitted.push([off, len]);
    release();
  }

  it('a failed bitmap write fails the client write with EIO before it is submitted; later writes retry', async () => {
    const gate = new WriteGate();
    const ctl = controlledFile();
    const set = await open(gate, ctl.open);
    await set.create('c1');
    const submitted: [number, number][] = [];
    ctl.fail(true);
    await expect(write(gate, 10 * MiB, 4096, submitted)).rejects.toMatchObject({ errno: 'EIO' });
    expect(submitted).toEqual([]);
    expect(gate.writesInFlight).toBe(0);
    ctl.fail(false);
    await write(gate, 10 * MiB, 4096, submitted);
    expect(submitted).toEqual([[10 * MiB, 4096]]);
    expect(set.extents('c1', 0, 256 * MiB, 8)).toEqual([{ lengthBytes: 10 * MiB, flags: 0 }, { lengthBytes: 64 * KiB, flags: 1 }, { lengthBytes: 246 * MiB - 64 * KiB, flags: 0 }]);
    await set.close();
  });

  it('writes in flight when a checkpoint starts are marked in it; a checkpoint costs nothing once deleted', async () => {
    const gate = new WriteGate();
    const set = await open(gate, openBitsFile);
    const release = await gate.enter(3 * MiB, 128 * KiB); // admitted, not finished
    const status = await set.create();
    release();
    expect(status).toMatchObject({ name: 'ckpt-1', regionBytes: 64 * KiB, dirtyRegions: 2, dirtyBytes: 128 * KiB });
    expect(set.extents('ckpt-1', 3 * MiB - 4096, 8192 + 128 * KiB, 8)).toEqual([{ lengthBytes: 4096, flags: 0 }, { lengthBytes: 128 * KiB, flags: 1 }, { lengthBytes: 4096, flags: 0 }]);
    await set.delete('ckpt-1');
    expect(set.list(true)).toEqual([]);
    await set.close();
    expect(fs.readdirSync(path.join(dir, 'checkpoints', 'v'))).toEqual(['index.json']);
  });
});
