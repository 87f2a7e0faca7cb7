// Write-behind legs on integrity volumes, in an in-process engine over local files (the remote,
// lagging case end to end is test/write-behind-integrity.test.ts): after a flush the write-behind
// leg's checksum area describes its data (its checksums followed its data), a flipped byte on the
// other leg is repaired from it, raid10 pairs agree, and createVolume takes `writeBehind` (the
// API's body goes there). Imports the BUILT dist.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { blockChecksums } from '@onestack/native';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Engine } from '../dist/index.js';
import { storedSums } from '../dist/integrity/types.js';
import { decodeSuperblock } from '../dist/meta/superblock.js';
import { DATA_OFFSET_BYTES } from '../dist/meta/types.js';
import { equalBytes, MiB, pattern } from './datapath-harness.js';
import { flipFileBytes, readFileRange } from './helpers.js';

const LEG_BYTES = 16 * MiB;
let dir: string;
let engine: Engine | undefined;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'onestack-wbi-'));
});
afterEach(async () => {
  await engine?.close();
  engine = undefined;
  fs.rmSync(dir, { recursive: true, force: true });
});

const file = (name: string): string => path.join(dir, `${name}.img`);

function images(names: readonly string[]): void {
  for (const n of names) {
    fs.writeFileSync(file(n), '');
    fs.truncateSync(file(n), DATA_OFFSET_BYTES + LEG_BYTES);
  }
}

/** The checksums stored in a leg's area for its data blocks [0, blocks), and the ones its data has. */
function legSums(name: string, blocks: number): { stored: number[]; computed: number[] } {
  const sb = decodeSuperblock(readFileRange(file(name), 0, 4096));
  if ('kind' in sb || sb.integrity === undefined) throw new Error(`${name}: no integrity superblock`);
  const raw = readFileRange(file(name), sb.integrity.offsetBytes, blocks * 4);
  const stored = Array.from(new Uint32Array(raw.buffer, raw.byteOffset, blocks));
  const computed = Array.from(storedSums(blockChecksums().crc32cBlocks, readFileRange(file(name), DATA_OFFSET_BYTES, blocks * 4096)));
  return { stored, computed };
}

function open(volumes: unknown[], names: readonly string[]): Promise<Engine> {
  return Engine.open({
    log: () => undefined,
    config: {
      dataDir: path.join(dir, 'data'), nbd: { listen: '127.0.0.1:0' }, cache: { readMiB: 0 }, pools: { middle: 1, bottom: 1 },
      elements: names.map((n) => ({ name: n, uri: `file:${file(n)}` })), volumes,
    },
  });
}

describe('write-behind leg on an integrity volume', () => {
  it('raid1: the write-behind leg\'s checksums follow its data; a flipped byte on the other leg is repaired from it', async () => {
    images(['a', 'b']);
    engine = await open([{ name: 'm', layout: 'raid1', elements: ['a', 'b'], bitmapRegionKiB: 64, integrity: true, writeBehind: { element: 'b', maxLagMiB: 1 } }], ['a', 'b']);
    const v = engine.volume('m');
    const data = pattern(2 * MiB, 5);
    await Promise.all(Array.from({ length: 32 }, (_, i) => v.write(i * 64 * 1024, data.subarray(i * 64 * 1024, (i + 1) * 64 * 1024))));
    // An unaligned write takes the read-modify-write path (verified read of its edge blocks under the gate).
    const patch = pattern(1000, 9);
    await v.write(5000, patch);
    data.set(patch, 5000);
    expect(engine.status().volumes[0]!.elements.find((e) => e.name === 'b')!.writeBehind).toMatchObject({ maxLagBytes: MiB });
    await v.flush();
    const blocks = (2 * MiB) / 4096;
    for (const leg of ['a', 'b']) {
      const { stored, computed } = legSums(leg, blocks);
      expect(stored, `leg ${leg}: stored checksums equal its data's`).toEqual(computed);
    }
    expect(equalBytes(readFileRange(file('b'), DATA_OFFSET_BYTES, 2 * MiB), data)).toBe(true);
    // Damage the local leg: the read is served from the write-behind leg, and the bad copy rewritten.
    flipFileBytes(file('a'), DATA_OFFSET_BYTES + 300 * 1024 + 17, 1);
    expect(equalBytes(await v.read(300 * 1024, 4096), data.subarray(300 * 1024, 304 * 1024))).toBe(true);
    const a = engine.status().volumes[0]!.elements.find((e) => e.name === 'a')!;
    expect(a.integrity).toMatchObject({ mismatches: 1, repaired: 1, unrecoverable: 0 });
    expect(equalBytes(readFileRange(file('a'), DATA_OFFSET_BYTES + 300 * 1024, 4096), data.subarray(300 * 1024, 304 * 1024))).toBe(true);
    const wb = engine.status().volumes[0]!.elements.find((e) => e.name === 'b')!.writeBehind!;
    expect(wb).toMatchObject({ lagBytes: 0, droppedWrites: 0 });
    expect(wb.writesDone, 'the writes went through the write-behind writer').toBeGreaterThanOrEqual(33);
  }, 60_000);

  it('raid10: the write-behind leg\'s pair agrees in data and checksums after a flush', async () => {
    const names = ['p', 'q', 'r', 's'];
    images(names);
    engine = await open([{ name: 't', layout: 'raid10', elements: names, chunkKiB: 64, bitmapRegionKiB: 64, integrity: true, writeBehind: { element: 's', maxLagMiB: 1 } }], names);
    const v = engine.volume('t');
    const data = pattern(4 * MiB, 13);
    await Promise.all(Array.from({ length: 32 }, (_, i) => v.write(i * 128 * 1024, data.subarray(i * 128 * 1024, (i + 1) * 128 * 1024))));
    await v.flush();
    const blocks = (2 * MiB) / 4096;
    const r = legSums('r', blocks);
    const s = legSums('s', blocks);
    expect(s.stored).toEqual(s.computed);
    expect(s.stored).toEqual(r.stored);
    expect(s.stored.every((x) => x !== 0)).toBe(true);
    expect(equalBytes(await v.read(0, 4 * MiB), data)).toBe(true);
  }, 60_000);

  it('createVolume takes writeBehind (the API body), checked like the config', async () => {
    images(['a', 'b', 'c', 'd']);
    engine = await open([], ['a', 'b', 'c', 'd']);
    await expect(engine.createVolume({ name: 'x', layout: 'raid1', elements: ['a', 'b'], writeBehind: { element: 'c' } })).rejects.toThrow(/not a leg of this volume/);
    await expect(engine.createVolume({ name: 'x', layout: 'raid1', elements: ['a', 'b'], writeBehind: { element: 'b', maxLagMiB: 4096 } })).rejects.toThrow(/maxLagMiB/);
    await engine.createVolume({ name: 'x', layout: 'raid1', elements: ['a', 'b'], integrity: true, writeBehind: { element: 'b', maxLagMiB: 8 } });
    const leg = engine.status().volumes.find((x) => x.name === 'x')!.elements.find((e) => e.name === 'b')!;
    expect(leg.writeBehind).toMatchObject({ maxLagBytes: 8 * MiB });
    // Saved with the run-time volume: the next start has the same write-behind leg.
    await engine.close();
    engine = await open([], ['a', 'b', 'c', 'd']);
    expect(engine.status().volumes.find((x) => x.name === 'x')!.elements.find((e) => e.name === 'b')!.writeBehind).toMatchObject({ maxLagBytes: 8 * MiB });
  }, 60_000);
});
