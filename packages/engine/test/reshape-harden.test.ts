// Online reshape, hardening (docs/reshape.md "Robustness"), in process through the embedding API:
// a hot spare waits while a volume reshapes and takes the failed leg after the finish (status
// says why it waits); a leg found stale at a restart mid-reshape (raid5, raid10) is rebuilt only
// after the finish; the rate limit given at the start is kept across a restart (reshape-jobs.json);
// `resume` is refused unless the job is paused. Imports the BUILT dist.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { Engine } from '../dist/index.js';
import { readSuperblockFile, writeSuperblockFile } from '../dist/meta/element-io.js';
import { encodeSuperblock } from '../dist/meta/superblock.js';
import { loadReshapeSettings, saveReshapeSettings } from '../dist/durable/reshape-settings.js';
import { equalBytes, MiB, pattern } from './datapath-harness.js';
import { DATA_BYTES, ReshapeFiles, until as untilShared, view } from './reshape-engine-harness.js';

const files = new ReshapeFiles('onestack-reshape-harden-', ['a', 'b', 'c', 'd', 'e', 'f']);
let lines: string[];
const log = (_level: string, line: string): void => { lines.push(line); };
beforeEach(() => { lines = []; });
const config = (volume: { layout: string; elements: string[]; spares?: string[] }, rateMiBPerSec = 0): unknown => files.config(volume, rateMiBPerSec);
/** A timeout shows the engine's log lines. */
const until = (what: string, cond: () => boolean, timeoutMs?: number): Promise<void> => untilShared(what, cond, timeoutMs, () => lines.join('\n'));

describe('online reshape, hardening (embedding API)', () => {
  it('a hot spare waits while the volume reshapes (status says why) and takes the failed leg after the finish', async () => {
    // 2 MiB/s: the 12 MiB copy takes about 6 s, long enough to fail a leg and look at it waiting.
    const engine = await Engine.open({ config: config({ layout: 'raid5', elements: ['a', 'b', 'c', 'd'], spares: ['f'] }, 2), log });
    try {
      const c0 = 3 * DATA_BYTES;
      const data = pattern(c0, 41);
      await engine.volume('v').write(0, data);
      await engine.reshapeVolume('v', { add: ['e'] });
      await until('the copy to get going', () => (view(engine).reshape?.positionBytes ?? 0) > 0);
      await engine.failElement('b');
      // The leg watch ticks every second: give it three looks at the failed leg.
      await new Promise((r) => setTimeout(r, 3000));
      const mid = view(engine);
      expect(mid.reshape, 'still reshaping').not.toBeNull();
      expect(mid.elements.map((e) => e.name), 'the spare was not taken').toEqual(['a', 'b', 'c', 'd', 'e']);
      expect(mid.reshape?.waiting, 'status says why it waits').toEqual(['b failed: a hot spare or its return waits for the reshape to finish']);
      expect(lines.join('\n')).toMatch(/volume v: b failed; a hot spare or its return waits for the reshape to finish/);
      await until('the reshape to finish', () => view(engine).reshape === null || view(engine).reshape?.error !== undefined);
      expect(view(engine).reshape ?? null, `no error: ${view(engine).reshape?.error}`).toBeNull();
      await until('the spare to be rebuilt after the finish', () => view(engine).state === 'optimal');
      const v = view(engine);
      expect(v).toMatchObject({ layout: 'raid5', sizeBytes: 4 * DATA_BYTES });
      expect(v.elements.map((e) => [e.name, e.state])).toEqual([['a', 'active'], ['f', 'active'], ['c', 'active'], ['d', 'active'], ['e', 'active']]);
      expect(equalBytes(await engine.volume('v').read(0, c0), data), 'every byte kept').toBe(true);
      expect(equalBytes(await engine.volume('v').read(c0, DATA_BYTES), new Uint8Array(DATA_BYTES)), 'the new tail reads as zeroes').toBe(true);
    } finally {
      await engine.close();
    }
  }, 120_000);

  for (const layout of ['raid5', 'raid10'] as const) {
    it(`${layout}: a leg found stale at a restart mid-reshape waits (status says so) and is rebuilt in full after the finish`, async () => {
      const cfg = config({ layout, elements: ['a', 'b', 'c', 'd'] }, 2);
      const add = layout === 'raid10' ? ['e', 'f'] : ['e'];
      const c0 = (layout === 'raid10' ? 2 : 3) * DATA_BYTES;
      const data = pattern(c0, 61);
      const engine = await Engine.open({ config: cfg, log });
      try {
        await engine.volume('v').write(0, data);
        await engine.reshapeVolume('v', { add });
        await until('the copy to get going', () => (view(engine).reshape?.positionBytes ?? 0) > 0);
      } finally {
        await engine.close();
      }
      // Leg b as if it had missed writes: marked for rebuild, an older event counter.
      const file = path.join(files.dir, 'b.img');
      const sb = await readSuperblockFile(file);
      if (!('eventCount' in sb)) throw new Error('no superblock on b');
      await writeSuperblockFile(file, encodeSuperblock({ ...sb, needsRebuild: true, eventCount: sb.eventCount - 1 }));
      const again = await Engine.open({ config: { ...(cfg as object), rebuild: { maxMiBPerSec: 0 } }, log });
      try {
        const mid = view(again);
        expect(mid.reshape, 'resumed mid-way').not.toBeNull();
        expect(mid.reshape?.waiting, 'status says why it waits').toEqual(['b: its rebuild waits for the reshape to finish']);
        expect(lines.join('\n')).toMatch(/volume v: the rebuild of b waits for the reshape to finish/);
        await until('the reshape to finish', () => view(again).reshape === null || view(again).reshape?.error !== undefined);
        expect(view(again).reshape ?? null, `no error: ${view(again).reshape?.error}`).toBeNull();
        await until('b to be rebuilt after the finish', () => view(again).state === 'optimal');
        expect(lines.join('\n')).toMatch(/the reshape finished; the held b start now/);
        expect(view(again).elements.map((e) => e.state)).toEqual(['a', 'b', 'c', 'd', ...add].map(() => 'active'));
        expect(equalBytes(await again.volume('v').read(0, c0), data), 'every byte kept').toBe(true);
      } finally {
        await again.close();
      }
    }, 120_000);
  }

  it('the rate limit given at the start is kept across a restart; resume is refused unless paused', async () => {
    const cfg = config({ layout: 'raid6', elements: ['a', 'b', 'c', 'd'] }, 0);
    const c0 = 2 * DATA_BYTES;
    const data = pattern(c0, 51);
    const engine = await Engine.open({ config: cfg, log });
    try {
      await engine.volume('v').write(0, data);
      const started = await engine.reshapeVolume('v', { add: ['e'], maxMiBPerSec: 2 });
      expect(started?.maxMiBPerSec).toBe(2);
      await until('the copy to get going', () => (view(engine).reshape?.positionBytes ?? 0) > 0);
      await expect(engine.reshapeVolume('v', { add: [], resume: true })).rejects.toMatchObject({ code: 'conflict', message: expect.stringMatching(/its reshape is running, not paused/) });
      await expect(engine.reshapeVolume('v', { add: ['f'], resume: true })).rejects.toMatchObject({ code: 'invalid', message: expect.stringMatching(/--resume takes no elements/) });
    } finally {
      await engine.close();
    }
    expect(fs.existsSync(path.join(files.dir, 'data', 'reshape-jobs.json')), 'the settings are saved').toBe(true);
    // The config says unthrottled: the resumed job keeps the 2 MiB/s it was started with.
    const again = await Engine.open({ config: cfg, log });
    try {
      expect(view(again).reshape).toMatchObject({ maxMiBPerSec: 2, state: 'running' });
      const t0 = Date.now();
      const left = c0 - view(again).reshape!.positionBytes;
      await until('the resumed reshape to finish', () => view(again).reshape === null);
      // 2 MiB/s for what was left (≥ 1 MiB here): generous margin, unthrottled would take well under it.
      expect(Date.now() - t0, 'throttled as started').toBeGreaterThanOrEqual((left / MiB / 2) * 1000 * 0.5);
      expect(equalBytes(await again.volume('v').read(0, c0), data), 'every byte kept').toBe(true);
      await expect(again.reshapeVolume('v', { add: [], resume: true })).rejects.toMatchObject({ code: 'conflict', message: expect.stringMatching(/no reshape to resume/) });
    } finally {
      await again.close();
    }
    expect(fs.existsSync(path.join(files.dir, 'data', 'reshape-jobs.json')), 'forgotten once finished').toBe(false);
  }, 120_000);

  it('reshape settings: saved per volume, tied to the reshape start time, unreadable files warn', () => {
    const data = path.join(files.dir, 'data');
    saveReshapeSettings(data, 'v', { startedMs: 1000, maxMiBPerSec: 7 });
    saveReshapeSettings(data, 'w', { startedMs: 2000, maxMiBPerSec: 0 });
    const warned: string[] = [];
    expect(loadReshapeSettings(data, 'v', 1000, (l) => warned.push(l))).toEqual({ startedMs: 1000, maxMiBPerSec: 7 });
    expect(loadReshapeSettings(data, 'v', 1001, (l) => warned.push(l)), 'another reshape of v').toBeUndefined();
    expect(loadReshapeSettings(data, 'w', 2000, (l) => warned.push(l))).toEqual({ startedMs: 2000, maxMiBPerSec: 0 });
    saveReshapeSettings(data, 'v', null);
    expect(loadReshapeSettings(data, 'v', 1000, (l) => warned.push(l))).toBeUndefined();
    saveReshapeSettings(data, 'w', null);
    expect(fs.existsSync(path.join(data, 'reshape-jobs.json')), 'empty: removed').toBe(false);
    fs.writeFileSync(path.join(data, 'reshape-jobs.json'), '{not json');
    expect(loadReshapeSettings(data, 'v', 1000, (l) => warned.push(l))).toBeUndefined();
    expect(warned.join('\n')).toMatch(/the saved reshape settings cannot be read/);
    saveReshapeSettings(data, 'v', { startedMs: 3, maxMiBPerSec: 1 });
    expect(loadReshapeSettings(data, 'v', 3, (l) => warned.push(l)), 'an unreadable file is replaced').toEqual({ startedMs: 3, maxMiBPerSec: 1 });
  });
});
