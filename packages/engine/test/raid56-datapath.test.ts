// raid5 over 3/4/5 and raid6 over 4/5/6 local files through the real data path (worker pools,
// slab, rings): random writes (aligned and unaligned, partial and full stripes, embedding and NBD
// paths) read back right; the leg files put together give the volume, and P/Q recomputed from
// them independently are right; with one (raid5) or two (raid6) elements failed every read
// returns the same bytes; degraded writes, rebuild onto the lost roles, write-zeroes and trim.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { parityRebuildBytes, runParityRecovery } from '../dist/durable/units-parity.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DATA_OFFSET_BYTES } from '../src/meta/types.js';
import { KiB, MiB, pattern, within } from './datapath-harness.js';
import { rng } from './helpers.js';
import { badParityRows, rowsIn, startParity, stopParity, volumeFromFiles, type ParityRig } from './raid56-harness.js';

const REGION = 3 * MiB + 36 * KiB;
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** One random write inside [lo, hi): full rows, 4 KiB-aligned pieces, unaligned bytes or wide spans. */
function randomWrite(next: (n: number) => number, rowBytes: number, lo: number, hi: number): { off: number; len: number } {
  const room = hi - lo;
  switch (next(4)) {
    case 0: {
      const first = Math.ceil(lo / rowBytes);
      const rows = Math.floor(hi / rowBytes) - first;
      if (rows >= 1) return { off: first * rowBytes, len: Math.min(rows, 1 + next(2)) * rowBytes };
      return { off: lo, len: Math.min(room, 4 * KiB) };
    }
    case 1: {
      const len = 4 * KiB * (1 + next(8));
      return { off: lo + 4 * KiB * next(Math.max(1, Math.floor((room - len) / (4 * KiB)))), len: Math.min(len, room) };
    }
    case 2: {
      const len = 1 + next(100 * KiB);
      return { off: lo + next(Math.max(1, room - len)), len: Math.min(len, room) };
    }
    default: {
      const len = Math.min(room, 64 * KiB + next(300 * KiB));
      return { off: lo + next(Math.max(1, room - len)), len };
    }
  }
}

async function nbdWrite(rig: ParityRig, off: number, data: Uint8Array): Promise<void> {
  const io = rig.dp.volumeIo(0);
  const buf = await io.acquireWriteBuffer(data.length);
  let at = 0;
  for (const c of buf.chunks) {
    c.set(data.subarray(at, at + c.length));
    at += c.length;
  }
  await io.writeBuffer(off, buf, { fua: false });
}

async function nbdRead(rig: ParityRig, off: number, len: number): Promise<Uint8Array> {
  const r = await rig.dp.volumeIo(0).readSlots(off, len);
  const out = Buffer.concat(r.chunks.map((c) => Buffer.from(c)));
  r.release();
  return out;
}

/** Batches of four concurrent writes in disjoint quarters of the region; the model follows. */
async function randomWrites(rig: ParityRig, model: Uint8Array, seed: number, batches: number): Promise<void> {
  const next = rng(seed);
  const rowBytes = (rig.n - rig.np) * rig.chunkBytes;
  const quarter = Math.floor(REGION / 4);
  for (let b = 0; b < batches; b++) {
    await Promise.all([0, 1, 2, 3].map(async (q) => {
      const { off, len } = randomWrite(next, rowBytes, q * quarter, (q + 1) * quarter);
      const data = pattern(len, seed * 1000 + b * 4 + q);
      model.set(data, off);
      if ((b + q) % 2 === 0) await rig.dp.volumeIo(0).write(off, data);
      else await nbdWrite(rig, off, data);
    }));
  }
}

const CONFIGS = [['raid5', 3], ['raid5', 4], ['raid5', 5], ['raid6', 4], ['raid6', 5], ['raid6', 6]] as const;

for (const [layout, n] of CONFIGS) {
  describe(`${layout} over ${n} local files`, () => {
    let rig: ParityRig;
    const model = new Uint8Array(REGION);
    const lost = layout === 'raid5' ? [1] : [0, n - 2];
    beforeAll(async () => {
      // raid6 over 5 runs its parity maths inline (pools.middle = 0), the others in a middle worker.
      rig = await startParity(layout, n, { middle: layout === 'raid6' && n === 5 ? 0 : 1 });
    });
    afterAll(() => stopParity(rig));

    it('random writes read back right, and the leg files hold the data and right P/Q', async () => {
      await within(randomWrites(rig, model, n * 7 + (layout === 'raid6' ? 1 : 0), 12), 60_000, 'random writes');
      expect(sha(await rig.dp.volumeIo(0).read(0, REGION))).toBe(sha(model));
      expect(sha(await nbdRead(rig, 0, REGION))).toBe(sha(model));
      expect(sha(volumeFromFiles(rig, REGION)), 'data chunks where md puts them').toBe(sha(model));
      expect(badParityRows(rig, rowsIn(rig, REGION))).toEqual([]);
    });

    it(`with ${lost.length} element(s) failed every read returns the same bytes`, async () => {
      for (const role of lost) rig.dp.setElementState(role, 'failed');
      expect(sha(await rig.dp.volumeIo(0).read(0, REGION))).toBe(sha(model));
      expect(sha(await nbdRead(rig, 0, REGION))).toBe(sha(model));
      const next = rng(n);
      for (let i = 0; i < 20; i++) {
        const off = next(REGION - 1);
        const len = 1 + next(Math.min(REGION - off, 200 * KiB));
        expect(sha(await rig.dp.volumeIo(0).read(off, len)), `read [${off}, +${len})`).toBe(sha(model.subarray(off, off + len)));
      }
    });

    it('takes writes while degraded, and a rebuild of the lost roles makes the leg files right again', async () => {
      await within(randomWrites(rig, model, 500 + n, 6), 60_000, 'degraded writes');
      expect(sha(await rig.dp.volumeIo(0).read(0, REGION))).toBe(sha(model));
      expect(badParityRows(rig, rowsIn(rig, REGION), lost)).toEqual([]);
      const rows = rowsIn(rig, REGION);
      for (const role of lost) rig.dp.setElementState(role, 'rebuilding');
      for (const role of lost) await rig.dp.stripe(0).reconstructElementRange(role, DATA_OFFSET_BYTES, rows * rig.chunkBytes);
      for (const role of lost) rig.dp.setElementState(role, 'active');
      expect(badParityRows(rig, rows)).toEqual([]);
      expect(sha(volumeFromFiles(rig, REGION))).toBe(sha(model));
      for (let row = 0; row < rows; row += 7) expect(await rig.dp.stripe(0).checkStripe(row)).toMatchObject({ compared: true, ok: true });
    });

    it('write-zeroes and trim over partial and whole rows keep parity right', async () => {
      const rowBytes = (n - rig.np) * rig.chunkBytes;
      const io = rig.dp.volumeIo(0);
      await io.writeZeroes(rowBytes + 1000, 3 * rowBytes);
      model.fill(0, rowBytes + 1000, 4 * rowBytes + 1000);
      await io.trim(6 * rowBytes, 2 * rowBytes);
      model.fill(0, 6 * rowBytes, 8 * rowBytes);
      await io.flush();
      expect(sha(await io.read(0, REGION))).toBe(sha(model));
      expect(badParityRows(rig, rowsIn(rig, REGION))).toEqual([]);
    });
  });
}

describe('scrub check and repair of a raid6 row', () => {
  let rig: ParityRig;
  beforeAll(async () => {
    rig = await startParity('raid6', 5);
  });
  afterAll(() => stopParity(rig));

  it('finds a corrupted data chunk by its syndrome, repairs it, and blames parity in raid5 terms otherwise', async () => {
    const io = rig.dp.volumeIo(0);
    const data = pattern(3 * 64 * KiB, 77);
    await io.write(0, data);
    // Corrupt data index 1 of row 0 behind the engine's back (raw element write).
    const role = (rig.n - 1 + 2 + 1) % rig.n;
    await rig.dp.raw.write(role, DATA_OFFSET_BYTES + 4096, new Uint8Array(16).fill(0xee));
    const check = await rig.dp.stripe(0).checkStripe(0);
    expect(check).toMatchObject({ compared: true, ok: false, badRoles: [role], repaired: false });
    expect(await rig.dp.stripe(0).checkStripe(0, true)).toMatchObject({ repaired: true });
    expect(await rig.dp.stripe(0).checkStripe(0)).toMatchObject({ ok: true });
    expect(sha(await io.read(0, data.length))).toBe(sha(data));
    expect(badParityRows(rig, 1)).toEqual([]);
  });
});

describe('rebuild onto a blank replacement with the mirrors\' copy loop (runParityRecovery over runCopyJob)', () => {
  let rig: ParityRig;
  beforeAll(async () => {
    rig = await startParity('raid5', 5);
  });
  afterAll(() => stopParity(rig));

  it('fences, throttles and reports progress while computing the lost role row by row; a client write meanwhile lands right', async () => {
    const io = rig.dp.volumeIo(0);
    const data = pattern(4 * MiB, 9);
    await io.write(0, data);
    const role = 2;
    rig.dp.setElementState(role, 'failed');
    // The replacement: the same file with its data area blank (zeroes) again.
    fs.truncateSync(rig.paths[role]!, DATA_OFFSET_BYTES);
    fs.truncateSync(rig.paths[role]!, DATA_OFFSET_BYTES + 60 * MiB);
    expect(badParityRows(rig, 4)).not.toEqual([]);
    rig.dp.setElementState(role, 'rebuilding');
    const geometry = { layout: 'raid5' as const, chunkBytes: rig.chunkBytes, sizeBytes: 8 * MiB, elements: rig.paths.map(() => ({ dataOffsetBytes: DATA_OFFSET_BYTES, dataSizeBytes: 60 * MiB })) };
    const elements = rig.paths.map((_, i) => i);
    const reports: number[] = [];
    const writing = io.write(MiB + 100, pattern(5000, 10)); // a client write during the rebuild
    const startedMs = Date.now();
    const done = await runParityRecovery({ volume: 'v0', geometry, elements, targetRoles: [role] }, {
      raw: rig.dp.raw, gate: io.gate, stripe: rig.dp.stripe(0), state: (e) => rig.dp.elementState(e),
      maxMiBPerSec: 20, signal: new AbortController().signal, onProgress: (p) => reports.push(p.percent),
    });
    expect(done.totalBytes).toBe(parityRebuildBytes(geometry, elements, role));
    await writing;
    rig.dp.setElementState(role, 'active');
    expect(done.percent).toBe(100);
    expect(reports.at(-1)).toBe(100);
    expect(Date.now() - startedMs, '2 MiB at 20 MiB/s').toBeGreaterThanOrEqual(80);
    data.set(pattern(5000, 10), MiB + 100);
    expect(badParityRows(rig, rowsIn(rig, 8 * MiB))).toEqual([]);
    expect(sha(volumeFromFiles(rig, data.length))).toBe(sha(data));
  });
});

describe('raid6 over O_DIRECT elements (cache: none)', () => {
  let rig: ParityRig | undefined;
  beforeAll(async () => {
    try {
      rig = await startParity('raid6', 4, { direct: true });
    } catch (err) {
      // Needs the slab's real alignment (native addon or an O_DIRECT-capable probe dir).
      if (!/alignment is unknown/.test(String(err))) throw err;
    }
  });
  afterAll(() => stopParity(rig));

  it('4 KiB-aligned writes (RMW, RCW, full rows) and degraded reads work with aligned scratch buffers', async (ctx) => {
    if (rig === undefined) return ctx.skip();
    const io = rig.dp.volumeIo(0);
    const model = new Uint8Array(MiB);
    const next = rng(44);
    for (let i = 0; i < 30; i++) {
      const len = 4 * KiB * (1 + next(40));
      const off = 4 * KiB * next((MiB - len) / (4 * KiB));
      const data = pattern(len, 300 + i);
      model.set(data, off);
      await io.write(off, data);
    }
    // Below the 4 KiB block: served by read-modify-write of the block (unaligned.test.ts has more).
    const small = pattern(10, 399);
    model.set(small, 100);
    await io.write(100, small);
    expect(badParityRows(rig, rowsIn(rig, MiB))).toEqual([]);
    rig.dp.setElementState(0, 'failed');
    rig.dp.setElementState(3, 'failed');
    expect(sha(await io.read(0, MiB))).toBe(sha(model));
  });
});
