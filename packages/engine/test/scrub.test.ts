// Scrub through the Engine: bytes corrupted straight in a leg's image file are counted exactly
// (units and bytes) by a check, fixed by a repair (majority with 3 legs, first role with 2, the
// partner on raid10), and the legs are identical afterwards. Client writes during a scrub stay
// correct and never show up as mismatches; one scrub per volume; cancel and close do not hang.
// Imports the BUILT dist (workers are .js files).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Engine, EngineError, type ScrubStatus } from '../dist/index.js';
import { differingBytes } from '../dist/durable/scrub-mirror.js';
import { DATA_OFFSET_BYTES } from '../dist/meta/types.js';
import { flipFileBytes, randomBytes, readFileRange, rng } from './helpers.js';

const MiB = 1024 * 1024;
const KiB = 1024;
const LEG_BYTES = 16 * MiB;
const quiet = (): void => {};
let dir: string;
let engine: Engine | undefined;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'onestack-scrub-'));
});
afterEach(async () => {
  await engine?.close();
  engine = undefined;
  fs.rmSync(dir, { recursive: true, force: true });
});

const image = (name: string): string => path.join(dir, `${name}.img`);

async function open(layout: 'raid1' | 'raid10' | 'raid0', legs: readonly string[], chunkKiB = 64): Promise<Engine> {
  engine = await Engine.open({
    log: quiet,
    config: {
      dataDir: dir, nbd: { listen: '127.0.0.1:0' },
      elements: legs.map((name) => ({ name, uri: `file:${image(name)}`, createSizeBytes: LEG_BYTES })),
      volumes: [{ name: 'm', layout, elements: [...legs], chunkKiB }],
    },
  });
  return engine;
}

const random = randomBytes;

/** Flips `length` bytes of a leg's image at volume-data offset `at` (XOR 0xff: every byte changes). */
function corrupt(leg: string, at: number, length: number): void {
  flipFileBytes(image(leg), DATA_OFFSET_BYTES + at, length);
}

function legsEqual(a: string, b: string, length: number): boolean {
  return Buffer.compare(readFileRange(image(a), DATA_OFFSET_BYTES, length), readFileRange(image(b), DATA_OFFSET_BYTES, length)) === 0;
}

async function expectCode(p: Promise<unknown>, code: string): Promise<void> {
  const err = await p.then(() => null, (e: unknown) => e);
  expect(err).toBeInstanceOf(EngineError);
  expect((err as EngineError).code).toBe(code);
}

describe('scrub of mirrors', () => {
  it('raid1 of 2: check counts exactly the corrupted units and bytes, repair makes the legs identical with leg 0 as reference', async () => {
    const e = await open('raid1', ['a', 'b']);
    const vol = e.volume('m');
    const data = random(8 * MiB, 1);
    await vol.write(0, data, { fua: true });
    corrupt('b', 512 * KiB, 100); // unit 0
    corrupt('b', 3 * MiB + 17, 1); // unit 3
    corrupt('b', 6 * MiB - 2048, 4096); // units 5 and 6
    const check = await e.scrub('m', { repair: false });
    expect(check).toMatchObject({ kind: 'check', outcome: 'done', mismatchedUnits: 4, mismatchedBytes: 100 + 1 + 4096, repairedUnits: 0, ioErrors: 0, skippedBytes: 0, checkedBytes: vol.sizeBytes });
    expect(legsEqual('a', 'b', LEG_BYTES - DATA_OFFSET_BYTES)).toBe(false);
    expect(e.status().volumes[0]).toMatchObject({ rebuild: null, scrub: check });

    const repair = await e.scrub('m', { repair: true });
    expect(repair).toMatchObject({ kind: 'repair', outcome: 'done', mismatchedUnits: 4, mismatchedBytes: 4197, repairedUnits: 4 });
    expect(legsEqual('a', 'b', vol.sizeBytes)).toBe(true);
    expect(Buffer.compare(await vol.read(0, data.length), data)).toBe(0);
    expect(await e.scrub('m')).toMatchObject({ kind: 'check', mismatchedUnits: 0, mismatchedBytes: 0 });
  });

  it('raid1 of 3: repair takes the copy most legs agree on, even when the odd one is role 0', async () => {
    const e = await open('raid1', ['a', 'b', 'c']);
    const data = random(2 * MiB, 2);
    await e.volume('m').write(MiB, data);
    corrupt('a', MiB + 5, 10);
    expect(await e.scrub('m', { repair: true })).toMatchObject({ mismatchedUnits: 1, mismatchedBytes: 10, repairedUnits: 1 });
    expect(legsEqual('a', 'b', e.volume('m').sizeBytes) && legsEqual('b', 'c', e.volume('m').sizeBytes)).toBe(true);
    expect(Buffer.compare(readFileRange(image('a'), DATA_OFFSET_BYTES + MiB, data.length), data)).toBe(0);
  });

  it('raid10: a corrupted chunk is one unit of its pair; repair copies it from the first leg of the pair', async () => {
    const e = await open('raid10', ['a', 'b', 'c', 'd'], 64);
    const vol = e.volume('m');
    const data = random(4 * MiB, 3);
    await vol.write(0, data);
    // Chunk 3 (volume [192 KiB, 256 KiB)) is on pair 1 (roles 2, 3) at row 1: element data offset 64 KiB.
    corrupt('d', 64 * KiB + 100, 50);
    const check = await e.scrub('m');
    expect(check).toMatchObject({ mismatchedUnits: 1, mismatchedBytes: 50, checkedBytes: vol.sizeBytes });
    await e.scrub('m', { repair: true });
    expect(legsEqual('c', 'd', vol.sizeBytes / 2) && legsEqual('a', 'b', vol.sizeBytes / 2)).toBe(true);
    expect(Buffer.compare(await vol.read(0, data.length), data)).toBe(0);
  });

  it('client writes during a repair stay correct and are never counted as mismatches', async () => {
    const e = await open('raid1', ['a', 'b']);
    const vol = e.volume('m');
    const model = random(vol.sizeBytes, 4);
    await vol.write(0, model);
    const changes: number[] = [];
    e.events.on('change', (st: { volumes: { rebuild: { kind: string } | null }[] }) => {
      if (st.volumes[0]?.rebuild?.kind === 'repair') changes.push(Date.now());
    });
    const scrub = await e.startScrub('m', { repair: true, maxMiBPerSec: 16 });
    expect(e.status().volumes[0]?.rebuild).toMatchObject({ kind: 'repair', element: null, totalBytes: vol.sizeBytes });
    await expectCode(e.startScrub('m'), 'conflict');
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
    const result: ScrubStatus = await scrub.done;
    expect(writes).toBeGreaterThan(5);
    expect(result).toMatchObject({ outcome: 'done', mismatchedUnits: 0, checkedBytes: vol.sizeBytes });
    expect(Buffer.compare(await vol.read(0, vol.sizeBytes), model)).toBe(0);
    expect(legsEqual('a', 'b', vol.sizeBytes)).toBe(true);
    expect(e.status().volumes[0]?.rebuild).toBeNull();
    // Progress reaches listeners (the API's SSE stream) at most every 250 ms: a one-second scrub gives a few.
    expect(changes.length).toBeGreaterThanOrEqual(3);
    const gaps = changes.slice(2, -1).map((t, i) => t - changes[i + 1]!);
    expect(Math.min(...gaps)).toBeGreaterThanOrEqual(240);
  });

  it('cancels on request and on close, and refuses what cannot be scrubbed', async () => {
    const e = await open('raid1', ['a', 'b']);
    const slow = await e.startScrub('m', { maxMiBPerSec: 1 });
    await new Promise((r) => setTimeout(r, 300));
    expect(await e.cancelScrub('m')).toBe(true);
    expect(await slow.done).toMatchObject({ outcome: 'cancelled', message: 'cancelled by request' });
    expect(await e.cancelScrub('m')).toBe(false);
    await expectCode(e.startScrub('nope'), 'not-found');
    await expectCode(e.startScrub('m', { maxMiBPerSec: -1 }), 'invalid');
    const again = await e.startScrub('m', { maxMiBPerSec: 1 });
    const startedMs = Date.now();
    await e.close();
    expect(Date.now() - startedMs).toBeLessThan(5000);
    expect(await again.done).toMatchObject({ outcome: 'cancelled', message: 'engine closing' });
  });

  it('refuses a raid0 volume (invalid) and a raid1 with one active leg (conflict)', async () => {
    const e0 = await open('raid0', ['a', 'b']);
    await expectCode(e0.startScrub('m'), 'invalid');
    await e0.close();
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(dir);
    const e1 = await open('raid1', ['a', 'b']);
    await e1.failElement('b');
    await expectCode(e1.startScrub('m'), 'conflict');
  });

  it('counts differing byte positions across any number of copies', () => {
    const a = new Uint8Array(10_000);
    const b = a.slice();
    const c = a.slice();
    b[5] = 1;
    c[5] = 2;
    c[9000] = 3;
    expect(differingBytes([a, b, c])).toBe(2);
    expect(differingBytes([a, a.slice()])).toBe(0);
  });
});
