// Checkpoints through the Engine: every data-changing path marks its regions (aligned and
// unaligned writes, trims, write-zeroes, scrub repairs; raid1 and raid5), names and limits, persistence across
// close/open, a corrupt bits file or a lost index reported unusable (and never offered), and a
// deleted volume taking its checkpoints with it. Imports the BUILT dist.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Engine } from '../dist/index.js';
import { DATA_OFFSET_BYTES } from '../dist/meta/types.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const REGION = 64 * KiB;
const quiet = (): void => {};
let dir: string;
let engine: Engine | undefined;
let logs: string[] = [];
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'onestack-ckpt-engine-'));
  logs = [];
});
afterEach(async () => {
  await engine?.close();
  engine = undefined;
  fs.rmSync(dir, { recursive: true, force: true });
});

async function open(layout: 'raid1' | 'raid5' | 'linear' = 'raid1'): Promise<Engine> {
  const legs = layout === 'raid5' ? ['a', 'b', 'c'] : layout === 'raid1' ? ['a', 'b'] : ['a'];
  engine = await Engine.open({
    log: (level, msg) => { logs.push(`${level}: ${msg}`); },
    config: {
      dataDir: dir, nbd: { listen: '127.0.0.1:0' },
      elements: legs.map((name) => ({ name, uri: `file:${path.join(dir, `${name}.img`)}`, createSizeBytes: 32 * MiB })),
      volumes: [{ name: 'v', layout, elements: legs, chunkKiB: 64 }],
    },
  });
  return engine;
}

/** Dirty regions of a checkpoint, as region numbers (from the extents over the whole volume). */
async function dirtyRegions(e: Engine, ckpt: string): Promise<number[]> {
  const size = e.volume('v').sizeBytes;
  const out: number[] = [];
  let pos = 0;
  for (let turns = 0; pos < size && turns < 10_000; turns++) {
    for (const x of await e.dirtyExtents('v', ckpt, pos, size - pos, 64)) {
      if (x.flags === 1) for (let r = pos / REGION; r < Math.ceil((pos + x.lengthBytes) / REGION); r++) out.push(r);
      pos += x.lengthBytes;
    }
  }
  return out;
}

const bytes = (n: number, fill: number): Uint8Array => new Uint8Array(n).fill(fill);

describe('checkpoints through the Engine', () => {
  it('marks aligned and unaligned writes, trims and write-zeroes; only writes after it count', async () => {
    const e = await open();
    const vol = e.volume('v');
    await vol.write(0, bytes(4096, 1)); // before any checkpoint: in none
    expect(await e.checkpoint('v')).toMatchObject({ name: 'ckpt-1', regionBytes: REGION, dirtyRegions: 0, dirtyBytes: 0 });
    await vol.write(1 * MiB, bytes(4096, 2));
    await vol.write(5 * MiB + 7, bytes(100, 3)); // read-modify-write
    await vol.trim(8 * MiB, 64 * KiB);
    await vol.writeZeroes(9 * MiB + 62 * KiB, 4 * KiB); // straddles two regions
    expect(await dirtyRegions(e, 'ckpt-1')).toEqual([16, 80, 128, 144, 145]);
    const second = await e.checkpoint('v', 'nightly.2024-01_x');
    expect(second.name).toBe('nightly.2024-01_x');
    await vol.write(20 * MiB, bytes(128 * KiB, 4));
    expect(await dirtyRegions(e, 'nightly.2024-01_x')).toEqual([320, 321]);
    expect(await dirtyRegions(e, 'ckpt-1')).toEqual([16, 80, 128, 144, 145, 320, 321]);
    const status = e.status().volumes.find((v) => v.name === 'v')!;
    expect(status.checkpoints?.map((c) => [c.name, c.dirtyRegions, c.dirtyBytes])).toEqual([['ckpt-1', 7, 7 * REGION], ['nightly.2024-01_x', 2, 2 * REGION]]);
    // A rewrite of a dirty region waits for nothing and changes nothing.
    await vol.write(20 * MiB + 8192, bytes(4096, 5));
    expect(e.checkpoints('v').map((c) => c.dirtyRegions)).toEqual([7, 2]);
  });

  it('names, duplicates, bad input and the limit of 8 give clear errors', async () => {
    const e = await open('linear');
    await e.checkpoint('v', 'a');
    await expect(e.checkpoint('v', 'a')).rejects.toMatchObject({ code: 'conflict' });
    await expect(e.checkpoint('v', 'a/b')).rejects.toMatchObject({ code: 'invalid' });
    await expect(e.checkpoint('v', 'x'.repeat(65))).rejects.toMatchObject({ code: 'invalid' });
    await expect(e.checkpoint('nope')).rejects.toMatchObject({ code: 'not-found' });
    await expect(e.deleteCheckpoint('v', 'zz')).rejects.toMatchObject({ code: 'not-found' });
    await expect(e.dirtyExtents('v', 'zz', 0, 4096, 1)).rejects.toMatchObject({ code: 'not-found' });
    await expect(e.dirtyExtents('v', 'a', 32 * MiB, 4096, 1)).rejects.toMatchObject({ code: 'invalid' });
    await expect(e.dirtyExtents('v', 'a', 0, 0, 1)).rejects.toMatchObject({ code: 'invalid' });
    for (let i = 0; i < 7; i++) await e.checkpoint('v');
    expect(e.checkpoints('v').map((c) => c.name)).toEqual(['a', 'ckpt-1', 'ckpt-2', 'ckpt-3', 'ckpt-4', 'ckpt-5', 'ckpt-6', 'ckpt-7']);
    await expect(e.checkpoint('v')).rejects.toMatchObject({ code: 'conflict', hint: expect.stringMatching(/checkpoint-delete v a/) });
    // Default names are never reused: after deleting ckpt-7 the next is ckpt-8.
    await e.deleteCheckpoint('v', 'ckpt-7');
    expect((await e.checkpoint('v')).name).toBe('ckpt-8');
    expect(e.volume('v').sizeBytes).toBeGreaterThan(0);
  });

  it('raid5: writes through the stripe engine (full and partial stripes, zeroes) are marked', async () => {
    const e = await open('raid5');
    await e.checkpoint('v', 'p');
    const vol = e.volume('v');
    await vol.write(0, bytes(128 * KiB, 7)); // a full stripe (2 data chunks of 64 KiB)
    await vol.write(3 * MiB + 512, bytes(1024, 8));
    await vol.writeZeroes(6 * MiB, 4096);
    expect(await dirtyRegions(e, 'p')).toEqual([0, 1, 48, 96]);
  });

  it('survive close and open; a corrupt file is unusable (status, log), never offered, and stays so until deleted', async () => {
    let e = await open();
    await e.checkpoint('v', 'good');
    await e.checkpoint('v', 'bad');
    await e.volume('v').write(2 * MiB, bytes(4096, 1));
    await e.close();
    const ckdir = path.join(dir, 'checkpoints', 'v');
    expect(fs.statSync(ckdir).mode & 0o777).toBe(0o700);
    expect(fs.statSync(path.join(ckdir, 'good.bits')).mode & 0o777).toBe(0o600);
    fs.writeFileSync(path.join(ckdir, 'bad.bits'), 'garbage');
    e = await open();
    expect(await dirtyRegions(e, 'good')).toEqual([32]);
    expect(e.checkpoints('v').map((c) => c.name)).toEqual(['good']);
    const all = e.status().volumes[0]!.checkpoints!;
    expect(all.map((c) => [c.name, c.unusable !== undefined])).toEqual([['good', false], ['bad', true]]);
    expect(all[1]!.unusable).toMatch(/cannot be used/);
    expect(logs.some((l) => /^error: volume v: checkpoint bad is unusable/.test(l))).toBe(true);
    await expect(e.dirtyExtents('v', 'bad', 0, 4096, 1)).rejects.toMatchObject({ code: 'not-found', message: expect.stringMatching(/unusable/) });
    await e.volume('v').write(3 * MiB, bytes(4096, 1));
    await e.close();
    // Even a good file in its place is not trusted again: writes went untracked meanwhile.
    fs.copyFileSync(path.join(ckdir, 'good.bits'), path.join(ckdir, 'bad.bits'));
    e = await open();
    expect(e.checkpoints('v').map((c) => c.name)).toEqual(['good']);
    expect(e.checkpoints('v', { all: true }).map((c) => c.name)).toEqual(['good', 'bad']);
    expect(await dirtyRegions(e, 'good')).toEqual([32, 48]);
    await e.deleteCheckpoint('v', 'bad');
    expect(e.checkpoints('v', { all: true }).map((c) => c.name)).toEqual(['good']);
    expect(fs.readdirSync(ckdir).sort()).toEqual(['good.bits', 'index.json']);
  });

  it('a lost index makes the checkpoints it named unusable; leftovers of a cut-short creation are removed', async () => {
    let e = await open('linear');
    await e.checkpoint('v', 'one');
    await e.close();
    const ckdir = path.join(dir, 'checkpoints', 'v');
    fs.writeFileSync(path.join(ckdir, 'index.json'), '{"version": 1, "arrayUuid": ');
    e = await open('linear');
    expect(e.checkpoints('v')).toEqual([]);
    expect(e.checkpoints('v', { all: true })).toMatchObject([{ name: 'one', unusable: 'the checkpoint index was lost' }]);
    expect(fs.readdirSync(ckdir).some((f) => f.startsWith('index.json.corrupt-'))).toBe(true);
    await e.deleteCheckpoint('v', 'one');
    await e.close();
    fs.writeFileSync(path.join(ckdir, 'half.bits'), 'x');
    e = await open('linear');
    expect(e.checkpoints('v', { all: true })).toEqual([]);
    expect(fs.existsSync(path.join(ckdir, 'half.bits'))).toBe(false);
  });

  it('a scrub repair that rewrites a leg counts as written (it changes what reads may return)', async () => {
    const e = await open();
    await e.volume('v').write(3 * MiB, bytes(MiB, 9));
    await e.volume('v').flush();
    await e.checkpoint('v', 's');
    const fd = fs.openSync(path.join(dir, 'b.img'), 'r+');
    fs.writeSync(fd, bytes(512, 0x5a), 0, 512, DATA_OFFSET_BYTES + 3 * MiB + 4096);
    fs.closeSync(fd);
    const result = await e.scrub('v', { repair: true });
    expect(result).toMatchObject({ outcome: 'done', repairedUnits: 1 });
    expect(await dirtyRegions(e, 's')).toEqual(Array.from({ length: 16 }, (_, i) => 48 + i)); // the 1 MiB unit
  });

  it('deleting the volume deletes its checkpoints', async () => {
    const e = await open('linear');
    await e.checkpoint('v');
    expect(fs.existsSync(path.join(dir, 'checkpoints', 'v', 'ckpt-1.bits'))).toBe(true);
    await e.deleteVolume('v');
    expect(fs.existsSync(path.join(dir, 'checkpoints', 'v'))).toBe(false);
    expect(e.checkpoints('v')).toEqual([]);
  });
});
