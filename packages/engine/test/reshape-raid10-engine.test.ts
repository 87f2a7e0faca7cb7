// raid10 reshape through the embedding API, in process (docs/reshape.md "raid10"): a leg failed in
// the middle of raid10 4→6 leaves the copy going on degraded (its partner serves both views) and
// every byte kept; a replace afterwards makes it optimal again. Imports the BUILT dist.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Engine, type EngineStatus } from '../dist/index.js';
import { DATA_OFFSET_BYTES } from '../dist/meta/types.js';
import { equalBytes, MiB, pattern } from './datapath-harness.js';

const DATA_BYTES = 4 * MiB;
const FILES = ['a', 'b', 'c', 'd', 'e', 'f', 'g'];
const quiet = (): void => undefined;

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'onestack-reshape10-'));
  for (const f of FILES) {
    const file = path.join(dir, `${f}.img`);
    fs.writeFileSync(file, '');
    fs.truncateSync(file, DATA_OFFSET_BYTES + DATA_BYTES);
  }
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

function config(rateMiBPerSec: number): unknown {
  return {
    dataDir: path.join(dir, 'data'), nbd: { listen: '127.0.0.1:0' }, rebuild: { maxMiBPerSec: rateMiBPerSec },
    elements: FILES.map((f) => ({ name: f, uri: `file:${path.join(dir, `${f}.img`)}` })),
    volumes: [{ name: 'v', chunkKiB: 64, layout: 'raid10', elements: ['a', 'b', 'c', 'd'] }],
  };
}

async function until(what: string, cond: () => boolean, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const view = (engine: Engine): EngineStatus['volumes'][number] => engine.status().volumes.find((v) => v.name === 'v')!;

describe('raid10 reshape (embedding API)', () => {
  it('raid10 4→6 loses a leg mid-way: the copy goes on degraded, every byte kept, a replace makes it optimal', async () => {
    const engine = await Engine.open({ config: config(2), log: quiet });
    try {
      const c0 = 2 * DATA_BYTES;
      const data = pattern(c0, 41);
      await engine.volume('v').write(0, data);
      const started = await engine.reshapeVolume('v', { add: ['e', 'f'] });
      expect(started).toMatchObject({ from: { layout: 'raid10', count: 4 }, to: { layout: 'raid10', count: 6 }, totalBytes: c0, sizeBytes: 3 * DATA_BYTES });
      await until('the copy to get going', () => (view(engine).reshape?.positionBytes ?? 0) > 0);
      await engine.failElement('c');
      expect(view(engine).reshape?.positionBytes, 'failed while the copy runs').toBeLessThan(c0);
      // A write during the degraded copy lands on whichever side of the position holds it.
      const late = pattern(128 * 1024, 42);
      await engine.volume('v').write(5 * MiB, late);
      data.set(late, 5 * MiB);
      await until('the reshape to finish', () => view(engine).reshape === null || view(engine).reshape?.error !== undefined);
      expect(view(engine).reshape ?? null, `no error: ${view(engine).reshape?.error}`).toBeNull();
      expect(view(engine)).toMatchObject({ layout: 'raid10', state: 'degraded', sizeBytes: 3 * DATA_BYTES });
      expect(equalBytes(await engine.volume('v').read(0, c0), data), 'every byte kept').toBe(true);
      expect(equalBytes(await engine.volume('v').read(c0, DATA_BYTES), new Uint8Array(DATA_BYTES)), 'the new tail reads as zeroes').toBe(true);
      await engine.replaceElement('v', 'c', 'g');
      await until('the rebuild of g', () => view(engine).state === 'optimal');
      // The rebuilt leg alone serves the pair now: its partner d fails, every byte still reads.
      await engine.failElement('d');
      expect(equalBytes(await engine.volume('v').read(0, c0), data), 'every byte from the rebuilt leg').toBe(true);
    } finally {
      await engine.close();
    }
  }, 120_000);
});
