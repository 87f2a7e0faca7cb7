// A rebuild copies only what its source holds: holes of the source leg (SEEK_DATA) are zeroed
// on the new leg with WRITE_ZEROES (a punched hole) instead of being read and written, so a
// replaced leg stays as sparse as its source and base:allocation keeps telling holes apart.
// Imports the BUILT dist (workers are .js files).
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sparseSeekUnavailable } from '@onestack/native';
import { Engine } from '../dist/index.js';
import { DATA_OFFSET_BYTES } from '../dist/meta/types.js';

const MiB = 1024 * 1024;
const LEG_BYTES = 64 * MiB;
let dir: string;
let engine: Engine | undefined;
const logs: string[] = [];
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'onestack-sparse-rebuild-'));
  logs.length = 0;
});
afterEach(async () => {
  await engine?.close();
  engine = undefined;
  fs.rmSync(dir, { recursive: true, force: true });
});

const image = (name: string): string => path.join(dir, `${name}.img`);
const allocatedBytes = (file: string): number => fs.statSync(file).blocks * 512;
const sha = (file: string): string => createHash('sha256').update(fs.readFileSync(file).subarray(DATA_OFFSET_BYTES, DATA_OFFSET_BYTES + LEG_BYTES)).digest('hex');

async function rebuilt(e: Engine, volume: string, timeoutMs: number): Promise<void> {
  const started = Date.now();
  for (;;) {
    const v = e.status().volumes.find((x) => x.name === volume);
    if (v !== undefined && v.rebuild === null && v.state === 'optimal') return;
    if (Date.now() - started > timeoutMs) throw new Error(`rebuild of ${volume} not done after ${timeoutMs} ms: ${JSON.stringify(v?.rebuild)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const NO_SEEK = sparseSeekUnavailable();

describe.skipIf(NO_SEEK !== null)(`sparse rebuild (${NO_SEEK ?? 'SEEK_DATA via the addon'})`, () => {
  it('a replaced raid1 leg gets only the source\'s data: same bytes, few blocks, allocation unchanged', async () => {
    // An element no volume uses is not created at open: make the spare's image here.
    fs.writeFileSync(image('c'), '');
    fs.truncateSync(image('c'), DATA_OFFSET_BYTES + LEG_BYTES);
    engine = await Engine.open({
      log: (_level, msg) => logs.push(msg),
      config: {
        dataDir: dir, nbd: { listen: '127.0.0.1:0' },
        elements: ['a', 'b', 'c'].map((name) => ({ name, uri: `file:${image(name)}`, createSizeBytes: LEG_BYTES })),
        volumes: [{ name: 'm', layout: 'raid1', elements: ['a', 'b'], chunkKiB: 64 }],
      },
    });
    const vol = engine.volume('m');
    const data = new Uint8Array(MiB).map((_, i) => (i * 7 + 1) & 0xff);
    await vol.write(8 * MiB, data);
    await vol.write(40 * MiB, data.subarray(0, 256 * 1024));
    await vol.flush();
    const before = await engine.allocation('m', 0, vol.sizeBytes, 64);
    await engine.replaceElement('m', 'b', 'c');
    await rebuilt(engine, 'm', 30_000);
    // The new leg holds the source's bytes, and only about as many blocks as the data.
    expect(sha(image('c'))).toBe(sha(image('a')));
    expect(allocatedBytes(image('c'))).toBeLessThan(allocatedBytes(image('a')) + 2 * MiB);
    expect(allocatedBytes(image('c'))).toBeLessThan(8 * MiB);
    expect(await engine.allocation('m', 0, vol.sizeBytes, 64)).toEqual(before);
    expect(logs.some((l) => /1\.3 MiB copied, .* of source holes zeroed/.test(l)), logs.join('\n')).toBe(true);
    // Reads still see the data, and zeroes elsewhere.
    expect(Buffer.from(await vol.read(8 * MiB, MiB)).equals(Buffer.from(data))).toBe(true);
    expect((await vol.read(20 * MiB, 64 * 1024)).every((b) => b === 0)).toBe(true);
  });
});
