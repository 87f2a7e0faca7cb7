// The reshape route of the API server in front of a real Engine (embedded default: raid1
// `default` over two sparse 1 GiB images): bad bodies and methods answer 400/405, an unknown
// volume 404, unsupported reshapes 400 with the planner's reason; and the status text line.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { reshapeLine, shortBytes } from '../src/render-reshape.js';
import { EngineApi } from './engine-api.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const h = new EngineApi();
const api = (method: string, path: string, body?: unknown): Promise<Response> => h.api(method, path, body);
beforeAll(() => h.start('onestack-cli-reshape-', { tiny: 8 * MiB, big: GiB + 4 * MiB }));
afterAll(() => h.stop());

describe('API: volume reshape', () => {
  it('refuses bad bodies, methods and names with clear errors', async () => {
    expect((await api('GET', '/volumes/default/reshape')).status).toBe(405);
    expect((await api('POST', '/volumes/default/reshape', { add: 'big' })).status).toBe(400);
    expect((await api('POST', '/volumes/default/reshape', { add: ['big', 'big'] })).status).toBe(400);
    expect((await api('POST', '/volumes/default/reshape', { add: ['big'], layout: 'raid7' })).status).toBe(400);
    expect((await api('POST', '/volumes/default/reshape', { add: ['big'], maxMiBPerSec: -1 })).status).toBe(400);
    expect((await api('POST', '/volumes/default/reshape', { add: ['big'], extra: 1 })).status).toBe(400);
    expect((await api('POST', '/volumes/nope/reshape', { add: ['big'] })).status).toBe(404);
  });

  it('answers an unsupported or impossible reshape with the reason, and changes nothing', async () => {
    const raid6 = await api('POST', '/volumes/default/reshape', { add: ['big'], layout: 'raid6' });
    expect(raid6.status).toBe(400);
    expect(await raid6.json()).toMatchObject({ error: expect.stringMatching(/raid1 → raid6 is not supported yet: migrate raid1 → raid5 first, then raid5 → raid6/) });
    const small = await api('POST', '/volumes/default/reshape', { add: ['tiny'] });
    expect(small.status).toBe(400);
    expect(await small.json()).toMatchObject({ error: expect.stringMatching(/every element must hold at least \d+ data bytes/) });
    const v = h.engine.status().volumes.find((x) => x.name === 'default')!;
    expect(v.layout).toBe('raid1');
    expect(v.elements).toHaveLength(2);
    expect(v.reshape).toBeNull();
    expect(h.engine.status().elements.find((e) => e.name === 'big')).toMatchObject({ state: 'spare', volume: null });
  });
});

describe('status text', () => {
  const base = { from: { layout: 'raid5' as const, count: 4 }, to: { layout: 'raid5' as const, count: 5 }, totalBytes: 3 * 1024 ** 3, sizeBytes: 4 * 1024 ** 3,
    state: 'running' as const, backupSteps: 3, startedMs: 0 };
  it('one line: shape, percent, position of the old size, rate', () => {
    expect(reshapeLine({ ...base, positionBytes: 1.2 * 1024 ** 3, percent: 40, rateMiBps: 85.2 })).toBe('reshape raid5 4→5: 40% (1.2 GiB of 3 GiB), 85 MiB/s');
    expect(reshapeLine({ ...base, from: { layout: 'raid1', count: 2 }, to: { layout: 'raid5', count: 3 }, positionBytes: 0, percent: 0, rateMiBps: 0, state: 'paused', error: 'EIO' }))
      .toBe('reshape raid1 2→raid5 3 paused: 0% (0 B of 3 GiB), 0 MiB/s (stopped: EIO)');
    expect(shortBytes(96 * 1024 * 1024)).toBe('96 MiB');
  });
});
