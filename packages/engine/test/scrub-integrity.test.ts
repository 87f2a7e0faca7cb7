// Scrub of integrity mirrors through the Engine (issue 10): each leg's copy is judged by its
// stored checksums, so a corrupted leg 0 (the reference of the plain 2-way rule) is named and
// repaired FROM leg 1; copies that agree but fail their checksums are unrecoverable and left
// alone; blocks without checksums fall back to the plain rule; raid10 judges each pair.
// Imports the BUILT dist.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Engine } from '../dist/index.js';
import { DATA_OFFSET_BYTES } from '../dist/meta/types.js';
import { flipFileBytes, randomBytes, readFileRange, rng } from './helpers.js';

const MiB = 1024 * 1024;
const KiB = 1024;
const LEG_BYTES = 16 * MiB;
let dir: string;
let engine: Engine | undefined;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'onestack-scrub-integrity-'));
});
afterEach(async () => {
  await engine?.close();
  engine = undefined;
  fs.rmSync(dir, { recursive: true, force: true });
});

const image = (name: string): string => path.join(dir, `${name}.img`);

async function open(layout: 'raid1' | 'raid10', legs: readonly string[]): Promise<Engine> {
  engine = await Engine.open({
    log: () => undefined,
    config: {
      dataDir: dir, nbd: { listen: '127.0.0.1:0' }, cache: { readMiB: 0 },
      elements: legs.map((name) => ({ name, uri: `file:${image(name)}`, createSizeBytes: LEG_BYTES })),
      volumes: [{ name: 'v', layout, elements: [...legs], chunkKiB: 64, integrity: true }],
    },
  });
  return engine;
}

const random = randomBytes;

/** XORs `length` bytes of a leg's image at data offset `at` with 0xff, bypassing the engine. */
function corrupt(leg: string, at: number, length: number): void {
  flipFileBytes(image(leg), DATA_OFFSET_BYTES + at, length);
}

const legData = (leg: string, at: number, length: number): Buffer => Buffer.from(readFileRange(image(leg), DATA_OFFSET_BYTES + at, length));

function counters(e: Engine, role: number): unknown {
  return e.status().volumes.find((v) => v.name === 'v')!.elements[role]!.integrity;
}

describe('scrub of integrity mirrors', () => {
  it('raid1: a corrupted leg 0 is named with its block count, repaired from leg 1, and a second scrub finds nothing', async () => {
    const e = await open('raid1', ['a0', 'a1']);
    const data = random(4 * MiB, 7);
    await e.volume('v').write(0, data, { fua: true });
    corrupt('a0', MiB + 100, 1); // unit 1, one block
    corrupt('a0', 2 * MiB - 10, 20); // the last block of unit 1 and the first of unit 2
    const check = await e.scrub('v');
    expect(check).toMatchObject({ kind: 'check', outcome: 'done', mismatchedUnits: 2, mismatchedBytes: 21, repairedUnits: 0 });
    expect(check.byElement).toEqual([{ element: 'a0', badBlocks: 3, repairedBlocks: 0, unrecoverableBlocks: 0 }]);
    expect(counters(e, 0)).toEqual({ mismatches: 3, repaired: 0, unrecoverable: 0 });
    expect(counters(e, 1)).toEqual({ mismatches: 0, repaired: 0, unrecoverable: 0 });
    expect(legData('a0', 0, 4 * MiB).equals(data)).toBe(false);
    // The findings are placed in the volume's map (NBD x-onestack:integrity): flag 1 = bad, not repaired.
    const map = (): unknown => e.integrity.counters.maps.extents('v', MiB, 2 * MiB, 100);
    expect(map()).toEqual([{ lengthBytes: 4096, flags: 1 }, { lengthBytes: MiB - 2 * 4096, flags: 0 }, { lengthBytes: 8192, flags: 1 }, { lengthBytes: MiB - 4096, flags: 0 }]);

    const repair = await e.scrub('v', { repair: true });
    expect(repair).toMatchObject({ kind: 'repair', outcome: 'done', mismatchedUnits: 2, repairedUnits: 2, ioErrors: 0 });
    expect(repair.byElement).toEqual([{ element: 'a0', badBlocks: 3, repairedBlocks: 3, unrecoverableBlocks: 0 }]);
    // a0 was fixed from a1, not the reverse (the plain rule would have copied a0 over a1).
    expect(legData('a0', 0, 4 * MiB).equals(data)).toBe(true);
    expect(legData('a1', 0, 4 * MiB).equals(data)).toBe(true);
    expect(counters(e, 0)).toEqual({ mismatches: 6, repaired: 3, unrecoverable: 0 });
    expect(map()).toEqual([{ lengthBytes: 4096, flags: 2 }, { lengthBytes: MiB - 2 * 4096, flags: 0 }, { lengthBytes: 8192, flags: 2 }, { lengthBytes: MiB - 4096, flags: 0 }]);
    // The rewritten blocks' checksums are a1's: a read verifies on either leg.
    const store = e.integrityStoreOf('v')!;
    expect(Array.from(await store.read(0, 255, 259))).toEqual(Array.from(await store.read(1, 255, 259)));
    expect(Buffer.from(await e.volume('v').read(0, 4 * MiB)).equals(data)).toBe(true);

    const again = await e.scrub('v');
    expect(again).toMatchObject({ outcome: 'done', mismatchedUnits: 0, repairedUnits: 0 });
    expect(again.byElement).toEqual([]);
  });

  it('raid1: copies that agree but fail their checksums are unrecoverable: reported, nothing rewritten', async () => {
    const e = await open('raid1', ['a0', 'a1']);
    const data = random(2 * MiB, 9);
    await e.volume('v').write(0, data, { fua: true });
    corrupt('a0', 512 * KiB, 8);
    corrupt('a1', 512 * KiB, 8); // the same flip: the legs agree byte for byte
    const before = legData('a0', 0, 2 * MiB);
    const repair = await e.scrub('v', { repair: true });
    expect(repair).toMatchObject({ outcome: 'done', mismatchedUnits: 1, mismatchedBytes: 0, repairedUnits: 0 });
    expect(repair.byElement).toEqual([
      { element: 'a0', badBlocks: 1, repairedBlocks: 0, unrecoverableBlocks: 1 },
      { element: 'a1', badBlocks: 1, repairedBlocks: 0, unrecoverableBlocks: 1 },
    ]);
    expect(legData('a0', 0, 2 * MiB).equals(before)).toBe(true);
    expect(legData('a1', 0, 2 * MiB).equals(before)).toBe(true);
    expect(counters(e, 0)).toEqual({ mismatches: 0, repaired: 0, unrecoverable: 1 });
    expect(counters(e, 1)).toEqual({ mismatches: 0, repaired: 0, unrecoverable: 1 });
  });

  it('raid1 of 3: the one copy that verifies wins over two that agree but fail (majority is not asked)', async () => {
    const e = await open('raid1', ['a0', 'a1', 'a2']);
    const data = random(2 * MiB, 13);
    await e.volume('v').write(0, data, { fua: true });
    corrupt('a0', 300 * KiB, 2);
    corrupt('a1', 300 * KiB, 2); // same flip: a0 and a1 agree, a2 is the odd one out but the good one
    const repair = await e.scrub('v', { repair: true });
    expect(repair).toMatchObject({ mismatchedUnits: 1, repairedUnits: 1 });
    expect(repair.byElement).toEqual([
      { element: 'a0', badBlocks: 1, repairedBlocks: 1, unrecoverableBlocks: 0 },
      { element: 'a1', badBlocks: 1, repairedBlocks: 1, unrecoverableBlocks: 0 },
    ]);
    for (const leg of ['a0', 'a1', 'a2']) expect(legData(leg, 0, 2 * MiB).equals(data)).toBe(true);
  });

  it('raid1: blocks without checksums (never written) fall back to the plain rule and are not checksum events', async () => {
    const e = await open('raid1', ['a0', 'a1']);
    corrupt('a1', 10 * MiB + 5, 3); // zeros on a0, no checksum on either leg
    const check = await e.scrub('v');
    expect(check).toMatchObject({ mismatchedUnits: 1, mismatchedBytes: 3 });
    expect(check.byElement).toEqual([]);
    const repair = await e.scrub('v', { repair: true });
    expect(repair).toMatchObject({ mismatchedUnits: 1, repairedUnits: 1 });
    expect(legData('a1', 10 * MiB, 4096).equals(Buffer.alloc(4096))).toBe(true);
    expect(counters(e, 1)).toEqual({ mismatches: 0, repaired: 0, unrecoverable: 0 });
    expect((await e.scrub('v')).mismatchedUnits).toBe(0);
  });

  it('raid1: client writes during a repair stay correct and are never judged bad (data and checksums settle under the fence)', async () => {
    const e = await open('raid1', ['a0', 'a1']);
    const vol = e.volume('v');
    const model = random(vol.sizeBytes, 4);
    await vol.write(0, model);
    const scrub = await e.startScrub('v', { repair: true, maxMiBPerSec: 16 });
    const next = rng(5);
    let writes = 0;
    let settled = false;
    void scrub.done.then(() => { settled = true; });
    // Bounded: the scrub takes about one second at 16 MiB/s; at most 400 writes.
    for (; writes < 400 && !settled; writes++) {
      const off = next(vol.sizeBytes / 4096 - 64) * 4096;
      const chunk = random((1 + next(64)) * 4096, 100 + writes);
      model.set(chunk, off);
      await vol.write(off, chunk);
    }
    const result = await scrub.done;
    expect(writes).toBeGreaterThan(5);
    expect(result).toMatchObject({ outcome: 'done', mismatchedUnits: 0, checkedBytes: vol.sizeBytes, byElement: [] });
    expect(Buffer.compare(await vol.read(0, vol.sizeBytes), model)).toBe(0);
    expect(counters(e, 0)).toEqual({ mismatches: 0, repaired: 0, unrecoverable: 0 });
    expect(counters(e, 1)).toEqual({ mismatches: 0, repaired: 0, unrecoverable: 0 });
  });

  it('raid10: each pair is judged by checksums; bad copies on both pairs are fixed from their partners', async () => {
    const e = await open('raid10', ['b0', 'b1', 'b2', 'b3']);
    const data = random(2 * MiB, 11);
    await e.volume('v').write(0, data, { fua: true });
    // Chunk 0 lives at row 0 on b0/b1, chunk 1 at row 0 on b2/b3 (64 KiB chunks).
    corrupt('b0', 100, 1);
    corrupt('b3', 8 * KiB + 1, 4097); // two blocks of chunk 1
    const check = await e.scrub('v');
    expect(check).toMatchObject({ mismatchedUnits: 2 });
    expect(check.byElement).toEqual([
      { element: 'b0', badBlocks: 1, repairedBlocks: 0, unrecoverableBlocks: 0 },
      { element: 'b3', badBlocks: 2, repairedBlocks: 0, unrecoverableBlocks: 0 },
    ]);
    const repair = await e.scrub('v', { repair: true });
    expect(repair).toMatchObject({ mismatchedUnits: 2, repairedUnits: 2 });
    expect(repair.byElement?.map((b) => [b.element, b.repairedBlocks])).toEqual([['b0', 1], ['b3', 2]]);
    expect(legData('b0', 0, 64 * KiB).equals(Buffer.from(data.subarray(0, 64 * KiB)))).toBe(true);
    expect(legData('b3', 0, 64 * KiB).equals(Buffer.from(data.subarray(64 * KiB, 128 * KiB)))).toBe(true);
    expect(legData('b1', 0, 64 * KiB).equals(legData('b0', 0, 64 * KiB))).toBe(true);
    expect(Buffer.from(await e.volume('v').read(0, 2 * MiB)).equals(data)).toBe(true);
    const again = await e.scrub('v');
    expect(again.mismatchedUnits).toBe(0);
    expect(again.byElement).toEqual([]);
  });
});
