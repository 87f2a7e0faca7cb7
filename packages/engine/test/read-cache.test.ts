// The RAM read cache through the Engine: repeated reads hit (status counters), every
// data-changing op (write, NBD-path writeBuffer, trim, write-zeroes, raid5 writes, scrub repair)
// makes the next read return the new bytes, `cache.readMiB: 0` turns it off, and a small budget
// evicts instead of growing. Imports the BUILT dist (workers are .js files).
//
// These volumes sit on page-cache files, whose reads the fast lane serves inline (and then the
// cache stays off: it would double the page cache); the lane is turned off here so the cache is
// exercised, and the last test checks that it does stay off while the lane serves.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { preadNowait } from '@onestack/native';
import { Engine } from '../dist/index.js';
import { DATA_OFFSET_BYTES } from '../dist/meta/types.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const quiet = (): void => {};
let dir: string;
let engine: Engine | undefined;

const nowaitBefore = process.env['ONESTACK_NOWAIT'];
const laneAvailable = preadNowait() !== null;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'onestack-rcache-'));
  process.env['ONESTACK_NOWAIT'] = 'off';
});
afterEach(async () => {
  await engine?.close();
  engine = undefined;
  fs.rmSync(dir, { recursive: true, force: true });
  if (nowaitBefore === undefined) delete process.env['ONESTACK_NOWAIT'];
  else process.env['ONESTACK_NOWAIT'] = nowaitBefore;
});

async function open(readMiB: number | undefined, layout: 'raid1' | 'raid5' = 'raid1'): Promise<Engine> {
  const legs = layout === 'raid1' ? ['a', 'b'] : ['a', 'b', 'c'];
  engine = await Engine.open({
    log: quiet,
    config: {
      dataDir: dir, nbd: { listen: '127.0.0.1:0' },
      ...(readMiB !== undefined ? { cache: { readMiB } } : {}),
      elements: legs.map((name) => ({ name, uri: `file:${path.join(dir, `${name}.img`)}`, createSizeBytes: 16 * MiB })),
      volumes: [{ name: 'v', layout, elements: legs, chunkKiB: 64 }],
    },
  });
  return engine;
}

function pattern(length: number, seed: number): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => (i * 31 + seed) & 0xff);
}

function cacheOf(e: Engine): { hits: number; misses: number; hitRatio: number } {
  return e.status().volumes[0]!.cache!;
}

function same(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}

describe('read cache through the Engine', () => {
  it('repeated reads hit (default 64 MiB), status and stats count them', async () => {
    const e = await open(undefined);
    const vol = e.volume('v');
    const data = pattern(64 * KiB, 3);
    await vol.write(MiB, data);
    expect(same(await vol.read(MiB, data.length), data)).toBe(true);
    expect(cacheOf(e)).toEqual({ hits: 0, misses: 1, hitRatio: 0 });
    for (let i = 0; i < 3; i++) expect(same(await vol.read(MiB, data.length), data)).toBe(true);
    // A sub-range and an unaligned piece inside cached blocks hit too.
    expect(same(await vol.read(MiB + 4096, 8192), data.subarray(4096, 12288))).toBe(true);
    expect(same(await vol.read(MiB + 512, 1024), data.subarray(512, 1536))).toBe(true);
    expect(cacheOf(e)).toEqual({ hits: 5, misses: 1, hitRatio: 5 / 6 });
    expect(e.status().volumes[0]!.stats.readOps).toBe(6);
  });

  it('the NBD path: a hit answers with a copy, a miss with slot views; writeBuffer invalidates', async () => {
    const e = await open(64);
    const io = e.volume('v').io;
    await io.write(0, pattern(8192, 1));
    const miss = await io.readSlots(0, 8192);
    expect(same(Buffer.concat(miss.chunks), pattern(8192, 1))).toBe(true);
    miss.release();
    const hit = await io.readSlots(0, 8192);
    expect(hit.chunks).toHaveLength(1);
    expect(same(hit.chunks[0]!, pattern(8192, 1))).toBe(true);
    hit.release();
    expect(cacheOf(e)).toMatchObject({ hits: 1, misses: 1 });
    const buf = await io.acquireWriteBuffer(4096);
    buf.chunks[0]!.set(pattern(4096, 2));
    await io.writeBuffer(4096, buf, { fua: false });
    const after = await io.readSlots(0, 8192);
    expect(same(Buffer.concat(after.chunks), Buffer.concat([pattern(4096, 1).subarray(0, 4096), pattern(4096, 2)]))).toBe(true);
    after.release();
  });

  it('write, trim and write-zeroes invalidate: the next read returns the new bytes', async () => {
    const e = await open(64);
    const vol = e.volume('v');
    await vol.write(0, pattern(32 * KiB, 1));
    await vol.read(0, 32 * KiB);
    await vol.write(8 * KiB, pattern(4 * KiB, 2));
    const expected = pattern(32 * KiB, 1);
    expected.set(pattern(4 * KiB, 2), 8 * KiB);
    expect(same(await vol.read(0, 32 * KiB), expected)).toBe(true);
    await vol.read(0, 32 * KiB); // cached again
    const hitsBefore = cacheOf(e).hits;
    await vol.trim(16 * KiB, 4 * KiB);
    expected.fill(0, 16 * KiB, 20 * KiB);
    expect(same(await vol.read(0, 32 * KiB), expected)).toBe(true);
    await vol.writeZeroes(0, 4 * KiB);
    expected.fill(0, 0, 4 * KiB);
    expect(same(await vol.read(0, 32 * KiB), expected)).toBe(true);
    // Each of the two reads after trim/zeroes missed (its blocks were dropped).
    expect(cacheOf(e).hits).toBe(hitsBefore);
  });

  it('raid5 writes invalidate too', async () => {
    const e = await open(64, 'raid5');
    const vol = e.volume('v');
    await vol.write(0, pattern(128 * KiB, 5));
    await vol.read(0, 128 * KiB);
    expect(same(await vol.read(0, 128 * KiB), pattern(128 * KiB, 5))).toBe(true);
    expect(cacheOf(e).hits).toBe(1);
    await vol.write(64 * KiB, pattern(4 * KiB, 6));
    const expected = pattern(128 * KiB, 5);
    expected.set(pattern(4 * KiB, 6), 64 * KiB);
    expect(same(await vol.read(0, 128 * KiB), expected)).toBe(true);
  });

  it('a scrub repair that rewrites a leg drops the cached bytes', async () => {
    const e = await open(64);
    const vol = e.volume('v');
    await vol.write(0, pattern(64 * KiB, 7));
    await vol.read(0, 64 * KiB);
    await vol.flush();
    // Corrupt both legs differently behind the engine's back: whichever copy the repair keeps,
    // the volume's bytes change, and the read after it must show them, not the cached ones.
    for (const [leg, fill] of [['a', 0x11], ['b', 0x22]] as const) {
      const fd = fs.openSync(path.join(dir, `${leg}.img`), 'r+');
      fs.writeSync(fd, new Uint8Array(4096).fill(fill), 0, 4096, DATA_OFFSET_BYTES);
      fs.closeSync(fd);
    }
    const result = await e.scrub('v', { repair: true });
    expect(result.repairedUnits).toBeGreaterThan(0);
    const got = await vol.read(0, 4096);
    expect(got[0] === 0x11 || got[0] === 0x22).toBe(true);
    expect(got.every((b) => b === got[0])).toBe(true);
  });

  it('readMiB 0 turns it off: reads still correct, counters stay at zero', async () => {
    const e = await open(0);
    const vol = e.volume('v');
    await vol.write(0, pattern(8192, 4));
    for (let i = 0; i < 3; i++) expect(same(await vol.read(0, 8192), pattern(8192, 4))).toBe(true);
    expect(cacheOf(e)).toEqual({ hits: 0, misses: 0, hitRatio: 0 });
    expect(e.status().volumes[0]!.stats.readOps).toBe(3);
  });

  it('a 1 MiB budget evicts the oldest blocks instead of growing', async () => {
    const e = await open(1);
    const vol = e.volume('v');
    // 2 MiB of 64 KiB reads: twice the budget.
    for (let off = 0; off < 2 * MiB; off += 64 * KiB) await vol.read(off, 64 * KiB);
    const before = cacheOf(e);
    await vol.read(2 * MiB - 64 * KiB, 64 * KiB); // the newest is cached
    await vol.read(0, 64 * KiB); // the oldest was evicted
    expect(cacheOf(e)).toEqual({ hits: before.hits + 1, misses: before.misses + 1, hitRatio: expect.any(Number) as number });
  });

  it.skipIf(!laneAvailable)(`stays off for page-cache volumes while the fast lane serves their reads (no second copy of the page cache)${laneAvailable ? '' : ' (skipped: no fast lane: native addon not built, or ONESTACK_NOWAIT/ONESTACK_NATIVE=off)'}`, async () => {
    process.env['ONESTACK_NOWAIT'] = nowaitBefore ?? 'on';
    const e = await open(64);
    const vol = e.volume('v');
    await vol.write(0, pattern(8192, 5));
    for (let i = 0; i < 3; i++) expect(same(await vol.read(0, 8192), pattern(8192, 5))).toBe(true);
    expect(cacheOf(e)).toEqual({ hits: 0, misses: 0, hitRatio: 0 });
    expect(e.status().io?.fastLane?.hits).toBeGreaterThanOrEqual(3);
  });
});
