// raid5/raid6 through the Engine: volumes assemble, serve, close cleanly (the journal's
// checkpoint), reopen with the same data; scrub counts a corrupted chunk (raid5 blames parity,
// raid6 locates the chunk), repair fixes it, and a second check finds nothing; failing elements
// by request leaves the volume degraded with the same data. Imports the BUILT dist.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Engine } from '../dist/index.js';
import { decodeJournalHeader } from '../dist/datapath/journal-format.js';
import { DATA_OFFSET_BYTES, JOURNAL_OFFSET_BYTES } from '../dist/meta/types.js';
import { readFileRange, rng } from './helpers.js';
import { refRoles } from './raid56-ref.js';

const MiB = 1024 * 1024;
const KiB = 1024;
const LEG_BYTES = 16 * MiB;
const quiet = (): void => {};
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
let dir: string;
let engine: Engine | undefined;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'onestack-raid56-'));
});
afterEach(async () => {
  await engine?.close();
  engine = undefined;
  fs.rmSync(dir, { recursive: true, force: true });
});

const image = (name: string): string => path.join(dir, `${name}.img`);

async function open(layout: 'raid5' | 'raid6', legs: readonly string[]): Promise<Engine> {
  engine = await Engine.open({
    log: quiet,
    config: {
      dataDir: dir, nbd: { listen: '127.0.0.1:0' },
      elements: legs.map((name) => ({ name, uri: `file:${image(name)}`, createSizeBytes: LEG_BYTES })),
      volumes: [{ name: 'p', layout, elements: [...legs], chunkKiB: 64 }],
    },
  });
  return engine;
}

function random(length: number, seed: number): Uint8Array {
  const next = rng(seed);
  return Uint8Array.from({ length }, () => next(256));
}

function corrupt(leg: string, offsetBytes: number, bytes: number): void {
  const fd = fs.openSync(image(leg), 'r+');
  fs.writeSync(fd, new Uint8Array(bytes).fill(0x5a), 0, bytes, offsetBytes);
  fs.closeSync(fd);
}

describe('raid5/raid6 through the Engine', () => {
  it('raid5: sizes, serves, closes clean (checkpoint in every journal header) and reopens with the same data', async () => {
    const legs = ['a', 'b', 'c', 'd'];
    const e = await open('raid5', legs);
    const vol = e.volume('p');
    expect(vol.sizeBytes).toBe(3 * LEG_BYTES); // createSizeBytes counts data bytes (the header comes on top)
    expect(e.status().volumes[0]).toMatchObject({ layout: 'raid5', state: 'optimal' });
    const data = random(3 * MiB + 777, 1);
    await vol.write(12345, data);
    await e.close();
    engine = undefined;
    const seqs = legs.map((l) => decodeJournalHeader(readFileRange(image(l), JOURNAL_OFFSET_BYTES, 4096))?.checkpointSeq ?? -1);
    expect(new Set(seqs).size, `checkpoints ${seqs.join(', ')}`).toBe(1);
    expect(seqs[0]).toBeGreaterThan(0);
    const again = await open('raid5', legs);
    expect(sha(await again.volume('p').read(12345, data.length))).toBe(sha(data));
  });

  it('a raid6 volume created at run time over new files serves at once and survives a reopen', async () => {
    const e = await open('raid5', ['a', 'b', 'c']);
    const files = ['x0', 'x1', 'x2', 'x3'].map(image);
    const vol = await e.createVolume({ name: 'late', layout: 'raid6', elements: files, sizeBytes: 8 * MiB });
    expect(vol.sizeBytes).toBe(2 * 8 * MiB);
    const data = random(MiB, 6);
    await vol.write(5 * MiB + 3, data);
    expect(sha(await vol.read(5 * MiB + 3, data.length))).toBe(sha(data));
    await e.close();
    engine = await Engine.open({ log: quiet, dataDir: dir, config: { dataDir: dir, nbd: { listen: '127.0.0.1:0' }, elements: [], volumes: [] } });
    expect(sha(await engine.volume('late').read(5 * MiB + 3, data.length))).toBe(sha(data));
  });

  it('raid5 scrub: counts a corrupted data chunk, repair rewrites parity, a second check is clean', async () => {
    const e = await open('raid5', ['a', 'b', 'c']);
    await e.volume('p').write(0, random(2 * MiB, 2));
    const roles = refRoles(3, 1, 3);
    corrupt(['a', 'b', 'c'][roles.data[0]!]!, DATA_OFFSET_BYTES + 3 * 64 * KiB + 100, 10);
    expect(await e.scrub('p')).toMatchObject({ kind: 'check', outcome: 'done', mismatchedUnits: 1, mismatchedBytes: 10 });
    expect(await e.scrub('p', { repair: true })).toMatchObject({ mismatchedUnits: 1, repairedUnits: 1 });
    expect(await e.scrub('p')).toMatchObject({ mismatchedUnits: 0, mismatchedBytes: 0 });
  });

  it('raid6 scrub: a corrupted data chunk is located and repaired; data reads back as written', async () => {
    const legs = ['a', 'b', 'c', 'd', 'e'];
    const e = await open('raid6', legs);
    const data = random(3 * MiB, 3);
    await e.volume('p').write(0, data);
    const roles = refRoles(5, 2, 2);
    corrupt(legs[roles.data[1]!]!, DATA_OFFSET_BYTES + 2 * 64 * KiB + 4000, 33);
    expect(sha(await e.volume('p').read(0, data.length))).not.toBe(sha(data));
    expect(await e.scrub('p', { repair: true })).toMatchObject({ mismatchedUnits: 1, mismatchedBytes: 33, repairedUnits: 1 });
    expect(sha(await e.volume('p').read(0, data.length))).toBe(sha(data));
    expect(await e.scrub('p')).toMatchObject({ mismatchedUnits: 0 });
  });

  it('raid6: two elements failed by request leave it degraded with the same data; a third is refused', async () => {
    const legs = ['a', 'b', 'c', 'd'];
    const e = await open('raid6', legs);
    const data = random(MiB + 5, 4);
    await e.volume('p').write(100, data);
    await e.failElement('a');
    await e.failElement('c');
    expect(e.status().volumes[0]).toMatchObject({ state: 'degraded' });
    expect(sha(await e.volume('p').read(100, data.length))).toBe(sha(data));
    await expect(e.failElement('b')).rejects.toThrow(/without its data/);
    const more = random(200 * KiB, 5);
    await e.volume('p').write(50 * KiB, more);
    expect(sha(await e.volume('p').read(50 * KiB, more.length))).toBe(sha(more));
  });
});
