// raid10 reshape through the embedding API, in process (docs/reshape.md "raid10"): a leg failed in
// the middle of raid10 4→6 leaves the copy going on degraded (its partner serves both views) and
// every byte kept; a replace afterwards makes it optimal again. Imports the BUILT dist.
import { describe, expect, it } from 'vitest';
import { Engine } from '../dist/index.js';
import { equalBytes, MiB, pattern } from './datapath-harness.js';
import { DATA_BYTES, quiet, ReshapeFiles, until, view } from './reshape-engine-harness.js';

const files = new ReshapeFiles('onestack-reshape10-', ['a', 'b', 'c', 'd', 'e', 'f', 'g']);
const config = (rateMiBPerSec: number): unknown => files.config({ layout: 'raid10', elements: ['a', 'b', 'c', 'd'] }, rateMiBPerSec);

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
