// raid10 through the Engine: a config volume and a run-time volume (what `onestack volume create
// --layout raid10` calls), superblocks with layout and role, volume state optimal → degraded →
// failed, and reassembly after a restart. Imports the BUILT dist (workers are .js files).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Engine } from '../dist/index.js';
import type { DataPath } from '../dist/datapath/datapath.js';
import { readSuperblockFile } from '../dist/meta/element-io.js';
import { DATA_OFFSET_BYTES } from '../dist/meta/types.js';

const MiB = 1024 * 1024;
const LEG_BYTES = 8 * MiB;
const quiet = (): void => {};
let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'onestack-raid10-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

function pattern(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = (i * 131 + seed * 7 + (i >> 12)) & 0xff;
  return out;
}

function expectBytes(actual: Uint8Array, expected: Uint8Array): void {
  expect(actual.length).toBe(expected.length);
  expect(Buffer.compare(actual, expected)).toBe(0);
}

function config(): object {
  return {
    dataDir: dir,
    nbd: { listen: '127.0.0.1:0' },
    elements: ['a', 'b', 'c', 'd'].map((name) => ({ name, uri: `file:${path.join(dir, `${name}.img`)}`, createSizeBytes: LEG_BYTES })),
    volumes: [{ name: 'r10', layout: 'raid10', elements: ['a', 'b', 'c', 'd'], chunkKiB: 64 }],
  };
}

/**
 * Marks an element failed in the data path, as an I/O error on that leg would. A healthy local
 * file cannot be made to fail I/O under an open descriptor, so the test sets the state word.
 */
function failInDataPath(engine: Engine, element: string): void {
  const index = engine.status().elements.findIndex((e) => e.name === element);
  (engine as unknown as { dataPath: DataPath }).dataPath.setElementState(index, 'failed');
}

describe('raid10 volumes in the engine', () => {
  it('serves a config volume: optimal, degraded after failing a leg per pair, reassembled degraded after a restart, failed when a pair is lost', async () => {
    const engine = await Engine.open({ config: config(), log: quiet });
    const vol = engine.volume('r10');
    expect(vol.sizeBytes).toBe(2 * LEG_BYTES);
    const data = pattern(3 * MiB + 12345, 1);
    await vol.write(MiB - 100, data, { fua: true });
    expectBytes(await vol.read(MiB - 100, data.length), data);
    for (const [i, name] of ['a', 'b', 'c', 'd'].entries()) {
      expect(await readSuperblockFile(path.join(dir, `${name}.img`))).toMatchObject({ layout: 'raid10', role: i, count: 4, chunkBytes: 64 * 1024 });
    }
    const state = (): string => engine.status().volumes[0]!.state;
    expect(state()).toBe('optimal');
    expect(engine.status().volumes[0]!.elements.map((e) => [e.name, e.role, e.state])).toEqual([['a', 0, 'active'], ['b', 1, 'active'], ['c', 2, 'active'], ['d', 3, 'active']]);

    await engine.failElement('a');
    expect(state()).toBe('degraded');
    await expect(engine.failElement('b')).rejects.toMatchObject({ code: 'conflict' }); // would empty pair (a,b)
    await engine.failElement('d');
    expect(state()).toBe('degraded');
    expectBytes(await vol.read(MiB - 100, data.length), data); // from b and c only
    const more = pattern(256 * 1024, 2);
    await vol.write(5 * MiB, more);
    await engine.close();

    // Reassembly from the superblocks: a and d were marked for rebuild, b and c carry the data.
    const again = await Engine.open({ config: config(), log: quiet });
    const status = (): { state: string; elements: { name: string; state: string }[] } => again.status().volumes[0]!;
    expect(status().elements.map((e) => [e.name, e.state])).toEqual([['a', 'stale'], ['b', 'active'], ['c', 'active'], ['d', 'stale']]);
    expect(status().state).toBe('degraded');
    const vol2 = again.volume('r10');
    expectBytes(await vol2.read(MiB - 100, data.length), data);
    expectBytes(await vol2.read(5 * MiB, more.length), more);

    failInDataPath(again, 'b');
    expect(status().state).toBe('failed');
    await expect(vol2.read(0, 4096)).rejects.toMatchObject({ errno: 'EIO' }); // chunk 0: pair (a,b)
    await expect(vol2.write(0, pattern(4096, 4))).rejects.toMatchObject({ errno: 'EIO' });
    const chunk17 = 17 * 64 * 1024; // pair (c,d) still serves its chunks
    expectBytes(await vol2.read(chunk17, 64 * 1024), data.subarray(chunk17 - (MiB - 100), chunk17 - (MiB - 100) + 64 * 1024));
    await again.close();
  });

  it('creates a run-time raid10 volume (the API behind `onestack volume create --layout raid10`) and refuses bad counts', async () => {
    const engine = await Engine.open({ config: { dataDir: dir, nbd: { listen: '127.0.0.1:0' } }, log: quiet });
    try {
      const files = ['w', 'x', 'y', 'z'].map((n) => path.join(dir, `${n}.img`));
      for (const f of files) {
        fs.writeFileSync(f, '');
        fs.truncateSync(f, DATA_OFFSET_BYTES + LEG_BYTES + 4096); // not a whole chunk: rounded down
      }
      await expect(engine.createVolume({ name: 'odd', layout: 'raid10', elements: files.slice(0, 3) })).rejects.toMatchObject({ code: 'invalid', message: expect.stringMatching(/at least 4/) });
      const vol = await engine.createVolume({ name: 'fast', layout: 'raid10', elements: files, chunkKiB: 128 });
      expect(vol.sizeBytes).toBe(2 * LEG_BYTES);
      const data = pattern(MiB, 3);
      await vol.write(LEG_BYTES - 512 * 1024, data); // crosses rows and both pairs
      expectBytes(await vol.read(LEG_BYTES - 512 * 1024, data.length), data);
      expect(engine.status().volumes.find((v) => v.name === 'fast')).toMatchObject({ layout: 'raid10', state: 'optimal', chunkKiB: 128 });
    } finally {
      await engine.close();
    }
  });
});
