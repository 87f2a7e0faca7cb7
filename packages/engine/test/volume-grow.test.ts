// Growing volumes into room their elements have (volume-grow.ts, meta/grow.ts): the pure plan,
// then every layout through the Engine — the new size served and kept across a reopen, the new
// bytes zero, raid5/6 parity of the new rows checked by a scrub — and every refusal. A grow cut
// short between superblock writes reassembles at the old size. Imports the BUILT dist.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Engine, EngineError, decodeSuperblock, encodeSuperblock, type Superblock } from '../dist/index.js';
import { agreedSizeBytes, bytesNeeded, capacityWithin, planGrowth } from '../dist/meta/grow.js';
import { DATA_OFFSET_BYTES } from '../dist/meta/types.js';
import { randomBytes } from './helpers.js';

const MiB = 1024 * 1024;
const KiB = 1024;
const LEG_BYTES = 8 * MiB;
const quiet = (): void => {};
type Layout = 'linear' | 'raid0' | 'raid1' | 'raid10' | 'raid5' | 'raid6';

let dir: string;
let engine: Engine | undefined;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'onestack-grow-'));
});
afterEach(async () => {
  await engine?.close();
  engine = undefined;
  fs.rmSync(dir, { recursive: true, force: true });
});

const image = (name: string): string => path.join(dir, `${name}.img`);
const legsOf = (n: number): string[] => Array.from({ length: n }, (_, i) => `e${i}`);

async function open(layout: Layout, legs: readonly string[], extra: { integrity?: boolean } = {}): Promise<Engine> {
  engine = await Engine.open({
    log: quiet,
    config: {
      dataDir: dir, nbd: { listen: '127.0.0.1:0' },
      elements: legs.map((name) => ({ name, uri: `file:${image(name)}`, createSizeBytes: LEG_BYTES })),
      volumes: [{ name: 'v', layout, elements: [...legs], chunkKiB: 64, ...extra }],
    },
  });
  return engine;
}

async function reopen(layout: Layout, legs: readonly string[]): Promise<Engine> {
  await engine?.close();
  engine = undefined;
  return open(layout, legs);
}

/** Enlarges element files by `bytes` (what `truncate -s +N` does). */
function enlarge(legs: readonly string[], bytes: number): void {
  for (const leg of legs) fs.truncateSync(image(leg), fs.statSync(image(leg)).size + bytes);
}

/** Fills an element's bytes beyond its data area with garbage (different on each), so the zeroing of new rows is visible. */
function dirtyTail(legs: readonly string[], fromDataBytes: number, bytes: number): void {
  for (const [i, leg] of legs.entries()) {
    const fd = fs.openSync(image(leg), 'r+');
    fs.writeSync(fd, new Uint8Array(bytes).fill(0xa5 + i), 0, bytes, DATA_OFFSET_BYTES + fromDataBytes);
    fs.closeSync(fd);
  }
}

describe('grow plan (meta/grow.ts)', () => {
  it('linear grows only its last element; raid1 every leg; striped layouts whole rows', () => {
    expect(bytesNeeded('linear', 65536, [8 * MiB, 8 * MiB], 20 * MiB)).toEqual([8 * MiB, 12 * MiB]);
    expect(bytesNeeded('linear', 65536, [8 * MiB, 8 * MiB], 4 * MiB)).toEqual([4 * MiB, 0]);
    expect(bytesNeeded('raid1', 65536, [8 * MiB, 8 * MiB], 9 * MiB)).toEqual([9 * MiB, 9 * MiB]);
    // raid5 over 3: 2 data chunks a row; 1 byte past 16 MiB needs one more row (64 KiB on each).
    expect(bytesNeeded('raid5', 65536, [8 * MiB, 8 * MiB, 8 * MiB], 16 * MiB + 1)).toEqual([8 * MiB + 64 * KiB, 8 * MiB + 64 * KiB, 8 * MiB + 64 * KiB]);
    expect(bytesNeeded('raid10', 65536, [8 * MiB, 8 * MiB, 8 * MiB, 8 * MiB], 20 * MiB)).toEqual(Array(4).fill(10 * MiB));
    expect(bytesNeeded('raid6', 65536, Array(4).fill(8 * MiB), 20 * MiB)).toEqual(Array(4).fill(10 * MiB));
  });

  it('zeroes from the end of the last used row to the end of the new size', () => {
    const plan = planGrowth('raid5', 65536, [8 * MiB, 8 * MiB, 8 * MiB], 16 * MiB - 64 * KiB, 20 * MiB);
    // The old size ends mid-row: that row (parity included) is kept, zeroing starts after it.
    expect(plan).toEqual([0, 1, 2].map((role) => ({ role, dataSizeBytes: 10 * MiB, fromBytes: 8 * MiB, toBytes: 10 * MiB })));
    const lin = planGrowth('linear', 65536, [8 * MiB, 8 * MiB], 12 * MiB, 20 * MiB);
    expect(lin).toEqual([{ role: 0, dataSizeBytes: 8 * MiB, fromBytes: 8 * MiB, toBytes: 8 * MiB }, { role: 1, dataSizeBytes: 12 * MiB, fromBytes: 4 * MiB, toBytes: 12 * MiB }]);
  });

  it('capacity within the room each element has', () => {
    expect(capacityWithin('linear', 65536, [8 * MiB, 8 * MiB], [100 * MiB, 10 * MiB])).toBe(18 * MiB);
    expect(capacityWithin('raid1', 65536, [8 * MiB, 8 * MiB], [12 * MiB, 10 * MiB])).toBe(10 * MiB);
    expect(capacityWithin('raid5', 65536, Array(3).fill(8 * MiB), [12 * MiB, 10 * MiB + 1000, 11 * MiB])).toBe(20 * MiB);
  });

  it('the agreed size is the smallest among the up-to-date superblocks', () => {
    const sb = (volumeSizeBytes: number, eventCount = 5, needsRebuild = false): Superblock => ({ volumeSizeBytes, eventCount, needsRebuild, arrayUuid: 'a' } as unknown as Superblock);
    const ref = sb(20);
    expect(agreedSizeBytes([ref, sb(20), sb(16)], ref)).toBe(16); // a grow cut short: the old size
    expect(agreedSizeBytes([ref, sb(20), sb(10, 4), sb(8, 5, true)], ref)).toBe(20); // stale or rebuilding legs do not count
  });
});

describe('grow through the Engine', () => {
  const cases: { layout: Layout; n: number; before: number; grow: number; after: number }[] = [
    { layout: 'linear', n: 2, before: 16 * MiB, grow: 4 * MiB, after: 20 * MiB },
    { layout: 'raid1', n: 2, before: 8 * MiB, grow: 4 * MiB, after: 12 * MiB },
    { layout: 'raid0', n: 2, before: 16 * MiB, grow: 4 * MiB, after: 24 * MiB },
    { layout: 'raid10', n: 4, before: 16 * MiB, grow: 4 * MiB, after: 24 * MiB },
    { layout: 'raid5', n: 3, before: 16 * MiB, grow: 4 * MiB, after: 24 * MiB },
    { layout: 'raid6', n: 4, before: 16 * MiB, grow: 4 * MiB, after: 24 * MiB },
  ];
  for (const c of cases) {
    it(`${c.layout} over ${c.n}: grows into enlarged files, new bytes zero, data kept, size survives a reopen`, async () => {
      const legs = legsOf(c.n);
      const e = await open(c.layout, legs);
      const vol = e.volume('v');
      expect(vol.sizeBytes).toBe(c.before);
      const head = randomBytes(256 * KiB, 1);
      await vol.write(c.before - head.length, head);
      enlarge(legs, c.grow);
      // Garbage where the new rows go: the grow must zero it (parity and mirrors must agree).
      dirtyTail(legs, LEG_BYTES, c.grow);
      const result = await e.growVolume('v', { sizeBytes: c.after });
      expect(result).toEqual({ name: 'v', previousBytes: c.before, sizeBytes: c.after });
      expect(vol.sizeBytes).toBe(c.after);
      expect(e.status().volumes[0]).toMatchObject({ sizeBytes: c.after, state: 'optimal' });
      expect((await vol.read(c.before, c.after - c.before)).every((b) => b === 0)).toBe(true);
      const tail = randomBytes(128 * KiB, 2);
      await vol.write(c.after - tail.length, tail);
      expect(Buffer.from(await vol.read(c.after - tail.length, tail.length)).equals(tail)).toBe(true);
      await expect(vol.read(c.after, 4096)).rejects.toThrow();
      if (c.layout !== 'linear' && c.layout !== 'raid0') {
        const scrub = await e.scrub('v');
        expect(scrub, `${c.layout} scrub after grow`).toMatchObject({ outcome: 'done', checkedBytes: c.after, mismatchedUnits: 0, ioErrors: 0 });
      }
      const again = await reopen(c.layout, legs);
      const v2 = again.volume('v');
      expect(v2.sizeBytes).toBe(c.after);
      expect(Buffer.from(await v2.read(c.before - head.length, head.length)).equals(head)).toBe(true);
      expect(Buffer.from(await v2.read(c.after - tail.length, tail.length)).equals(tail)).toBe(true);
    });
  }

  it('raid1: the write-intent bitmap covers the new size', async () => {
    const legs = legsOf(2);
    const e = await open('raid1', legs);
    enlarge(legs, 24 * MiB);
    await e.growVolume('v', { sizeBytes: 32 * MiB });
    const bitmap = e.status().volumes[0]?.bitmap;
    expect(bitmap).toBeDefined();
    expect(bitmap!.regions * bitmap!.regionBytes).toBeGreaterThanOrEqual(32 * MiB);
  });

  it('refuses clearly: more than the elements hold (naming it), shrinking, misalignment; the same size is a no-op', async () => {
    const legs = legsOf(2);
    const e = await open('raid1', legs);
    const err = await e.growVolume('v', { sizeBytes: 64 * MiB }).catch((x: unknown) => x);
    expect(err).toBeInstanceOf(EngineError);
    expect((err as Error).message).toMatch(/more than its elements hold: at most 8388608 bytes as raid1/);
    await expect(e.growVolume('v', { sizeBytes: 4 * MiB })).rejects.toThrow(/shrinking is not supported/);
    await expect(e.growVolume('v', { sizeBytes: 8 * MiB + 512 })).rejects.toThrow(/multiple of 4096/);
    await expect(e.growVolume('nope', { sizeBytes: 8 * MiB })).rejects.toThrow(/no volume named nope/);
    expect(await e.growVolume('v', { sizeBytes: 8 * MiB })).toEqual({ name: 'v', previousBytes: 8 * MiB, sizeBytes: 8 * MiB });
    expect(e.volume('v').sizeBytes).toBe(8 * MiB);
  });

  it('refuses integrity volumes, volumes with checkpoints, and a volume with a failed element', async () => {
    const legs = legsOf(2);
    let e = await open('raid1', legs, { integrity: true });
    enlarge(legs, 4 * MiB);
    await expect(e.growVolume('v', { sizeBytes: 12 * MiB })).rejects.toThrow(/integrity volume is not supported yet: its checksum area/);
    await engine!.close();
    engine = undefined;
    for (const leg of legs) fs.rmSync(image(leg));
    fs.rmSync(path.join(dir, 'checkpoints'), { recursive: true, force: true });
    e = await open('raid1', legs);
    enlarge(legs, 4 * MiB);
    await e.checkpoint('v', 'c1');
    await expect(e.growVolume('v', { sizeBytes: 12 * MiB })).rejects.toThrow(/checkpoints/);
    await e.deleteCheckpoint('v', 'c1');
    await e.failElement('e1');
    await expect(e.growVolume('v', { sizeBytes: 12 * MiB })).rejects.toThrow(/element e1 is failed; a grow needs every element active/);
    expect(e.volume('v').sizeBytes).toBe(8 * MiB);
  });

  it('a grow cut short after some superblocks took the new size reassembles at the old size', async () => {
    const legs = legsOf(2);
    const e = await open('raid1', legs);
    enlarge(legs, 4 * MiB);
    await e.growVolume('v', { sizeBytes: 12 * MiB });
    await engine!.close();
    engine = undefined;
    // As if the crash came before the second superblock write: e1 still says the old size.
    const fd = fs.openSync(image('e1'), 'r+');
    const bytes = new Uint8Array(4096);
    fs.readSync(fd, bytes, 0, 4096, 0);
    const sb = decodeSuperblock(bytes) as Superblock;
    fs.writeSync(fd, encodeSuperblock({ ...sb, volumeSizeBytes: 8 * MiB }), 0, 4096, 0);
    fs.closeSync(fd);
    const again = await open('raid1', legs);
    expect(again.volume('v').sizeBytes).toBe(8 * MiB);
    // ... and it can be grown again.
    await again.growVolume('v', { sizeBytes: 12 * MiB });
    expect(again.volume('v').sizeBytes).toBe(12 * MiB);
  });

  it('a run-time volume created with --size grows and keeps its size after a reopen', async () => {
    const e = await open('raid1', legsOf(2));
    const files = ['x0', 'x1'].map(image);
    for (const f of files) {
      fs.writeFileSync(f, '');
      fs.truncateSync(f, DATA_OFFSET_BYTES + 16 * MiB);
    }
    await e.createVolume({ name: 'late', layout: 'raid1', elements: files, sizeBytes: 8 * MiB });
    await e.growVolume('late', { sizeBytes: 16 * MiB });
    const again = await reopen('raid1', legsOf(2));
    expect(again.volume('late').sizeBytes).toBe(16 * MiB);
  });
});
