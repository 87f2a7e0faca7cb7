// Online reshape through the embedding API (durable/reshape*.ts), in process: raid5 → raid6 and
// raid6 4→5 keep every byte while writes go on, status and 'change' events follow the job, and an
// engine closed in the middle (clean stop) resumes at the next open from the position its
// superblocks kept; an element failed mid-way leaves the copy going on degraded. Imports the BUILT dist.
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Engine, type EngineStatus } from '../dist/index.js';
import { readSuperblockFile } from '../dist/meta/element-io.js';
import { equalBytes, MiB, pattern } from './datapath-harness.js';
import { DATA_BYTES, quiet, ReshapeFiles, until, view } from './reshape-engine-harness.js';

const files = new ReshapeFiles('onestack-reshape-', ['a', 'b', 'c', 'd', 'e', 'f']);
const config = (volume: { layout: string; elements: string[] }, rateMiBPerSec = 0): unknown => files.config(volume, rateMiBPerSec);

describe('online reshape (embedding API)', () => {
  it('raid5 over 4 → raid6 over 5 (a backup every row) keeps every byte while writes go on', async () => {
    const engine = await Engine.open({ config: config({ layout: 'raid5', elements: ['a', 'b', 'c', 'd'] }), log: quiet });
    try {
      const c0 = 3 * DATA_BYTES;
      const data = pattern(c0, 11);
      await engine.volume('v').write(0, data);
      const seen: string[] = [];
      engine.events.on('change', (s: EngineStatus) => { const r = s.volumes.find((v) => v.name === 'v')?.reshape; if (r) seen.push(r.state); });
      const started = await engine.reshapeVolume('v', { add: ['e'], layout: 'raid6' });
      expect(started).toMatchObject({ from: { layout: 'raid5', count: 4 }, to: { layout: 'raid6', count: 5 }, totalBytes: c0, sizeBytes: c0, state: 'running' });
      // A write in the middle of the copy lands wherever the position is.
      const late = pattern(256 * 1024, 12);
      await engine.volume('v').write(5 * MiB, late);
      data.set(late, 5 * MiB);
      await until('the reshape to finish', () => view(engine).reshape === null);
      const v = view(engine);
      expect(v).toMatchObject({ layout: 'raid6', state: 'optimal', sizeBytes: c0 });
      expect(v.elements.map((e) => e.name)).toEqual(['a', 'b', 'c', 'd', 'e']);
      expect(seen, 'change events followed the job').toContain('running');
      expect(equalBytes(await engine.volume('v').read(0, c0), data), 'every byte kept').toBe(true);
      const sb = await readSuperblockFile(path.join(files.dir, 'e.img'));
      expect(sb).toMatchObject({ layout: 'raid6', count: 5, role: 4, volumeSizeBytes: c0 });
      expect((sb as { reshape?: unknown }).reshape).toBeUndefined();
    } finally {
      await engine.close();
    }
  }, 120_000);

  it('raid6 4→5 closed mid-way (clean stop) resumes at the next open from its position and finishes', async () => {
    const cfg = config({ layout: 'raid6', elements: ['a', 'b', 'c', 'd'] }, 1);
    const c0 = 2 * DATA_BYTES;
    const data = pattern(c0, 21);
    let position = 0;
    const engine = await Engine.open({ config: cfg, log: quiet });
    try {
      await engine.volume('v').write(0, data);
      await engine.reshapeVolume('v', { add: ['e'] });
      await until('the copy to get going', () => (view(engine).reshape?.positionBytes ?? 0) > 0);
      position = view(engine).reshape!.positionBytes;
      expect(position).toBeLessThan(c0);
      await expect(engine.growVolume('v', { sizeBytes: 3 * DATA_BYTES })).rejects.toMatchObject({ code: 'conflict', message: expect.stringMatching(/a reshape runs/) });
      await expect(engine.startScrub('v')).rejects.toMatchObject({ code: 'conflict' });
      await expect(engine.reshapeVolume('v', { add: ['f'] })).rejects.toMatchObject({ code: 'conflict', message: expect.stringMatching(/a reshape runs already/) });
    } finally {
      await engine.close();
    }
    const sb = await readSuperblockFile(path.join(files.dir, 'e.img'));
    expect((sb as { reshape?: { positionBytes: number } }).reshape?.positionBytes, 'the superblocks keep the position').toBeGreaterThanOrEqual(position);
    const again = await Engine.open({ config: { ...(cfg as object), rebuild: { maxMiBPerSec: 0 } }, log: quiet });
    try {
      expect(view(again).layout, 'the state file keeps the new membership').toBe('raid6');
      await until('the resumed reshape to finish', () => view(again).reshape === null);
      expect(view(again)).toMatchObject({ layout: 'raid6', state: 'optimal', sizeBytes: 3 * DATA_BYTES });
      expect(equalBytes(await again.volume('v').read(0, c0), data), 'every byte kept').toBe(true);
      expect(equalBytes(await again.volume('v').read(c0, DATA_BYTES), new Uint8Array(DATA_BYTES)), 'the new tail reads as zeroes').toBe(true);
    } finally {
      await again.close();
    }
  }, 120_000);

  it('raid6 4→5 loses an element mid-way: the copy goes on degraded and every byte is kept', async () => {
    const engine = await Engine.open({ config: config({ layout: 'raid6', elements: ['a', 'b', 'c', 'd'] }, 2), log: quiet });
    try {
      const c0 = 2 * DATA_BYTES;
      const data = pattern(c0, 31);
      await engine.volume('v').write(0, data);
      await engine.reshapeVolume('v', { add: ['e'] });
      await until('the copy to get going', () => (view(engine).reshape?.positionBytes ?? 0) > 0);
      await engine.failElement('b');
      expect(view(engine).reshape?.positionBytes, 'failed while the copy runs').toBeLessThan(c0);
      await until('the reshape to finish', () => view(engine).reshape === null || view(engine).reshape?.error !== undefined);
      expect(view(engine).reshape ?? null, `no error: ${view(engine).reshape?.error}`).toBeNull();
      expect(view(engine)).toMatchObject({ layout: 'raid6', state: 'degraded', sizeBytes: 3 * DATA_BYTES });
      expect(equalBytes(await engine.volume('v').read(0, c0), data), 'every byte kept').toBe(true);
    } finally {
      await engine.close();
    }
  }, 120_000);
});
