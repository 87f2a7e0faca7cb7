// The small parts split out of datapath.ts and volume-io.ts, on their own: the waiting helpers
// (settle.ts), a volume's counters (volume-counters.ts), the start-up option checks
// (datapath-options.ts) and the topology checks (topology-check.ts). The data path tests
// (datapath.test.ts, unaligned.test.ts, ...) cover them wired together.
import { describe, expect, it } from 'vitest';
import { EngineError } from '../dist/api-types.js';
import { checkStartOptions, type DataPathOptions } from '../dist/datapath/datapath-options.js';
import { once, settleAll, settleValues, waitUntil } from '../dist/datapath/settle.js';
import { checkElementIndex, validateTopology, volumeAlignment, type TopologyLimits } from '../dist/datapath/topology-check.js';
import type { TopologyElement, TopologyVolume } from '../dist/datapath/topology.js';
import { VolumeCounters } from '../dist/datapath/volume-counters.js';

const MiB = 1024 * 1024;

function element(index: number, over: Partial<TopologyElement> = {}): TopologyElement {
  return { index, name: `e${index}`, kind: 'local', path: `/tmp/e${index}`, direct: false, dataOffsetBytes: 0, dataSizeBytes: 64 * MiB, state: 'active', blockSizeBytes: 1, ...over };
}

function volume(over: Partial<TopologyVolume> = {}): TopologyVolume {
  return { index: 0, name: 'v', layout: 'raid0', chunkBytes: 64 * 1024, sizeBytes: 64 * MiB, order: 'fifo', elements: [0, 1], ...over };
}

const LIMITS: TopologyLimits = { maxElements: 8, rawIndex: 4, misalignmentBytes: 0 };
const NO_PARITY = { validate: (): void => { throw new Error('not a parity volume'); } };

function topologyError(volumes: TopologyVolume[], elements: TopologyElement[], limits = LIMITS): string {
  try {
    validateTopology(volumes, elements, limits, NO_PARITY);
  } catch (err) {
    expect(err).toBeInstanceOf(EngineError);
    return (err as Error).message;
  }
  return 'accepted';
}

describe('settle helpers', () => {
  it('settleAll rejects with the first failure only after every sibling settled', async () => {
    let slowDone = false;
    const slow = new Promise<void>((resolve) => setTimeout(() => { slowDone = true; resolve(); }, 30));
    await expect(settleAll([Promise.reject(new Error('first')), slow, Promise.reject(new Error('second'))])).rejects.toThrow('first');
    expect(slowDone).toBe(true);
    await expect(settleAll([])).resolves.toBeUndefined();
  });

  it('settleValues answers in order; once runs its function once; waitUntil is bounded', async () => {
    expect(await settleValues([Promise.resolve(1), new Promise<number>((r) => setTimeout(() => r(2), 5)), Promise.resolve(3)])).toEqual([1, 2, 3]);
    let calls = 0;
    const release = once(() => calls++);
    release();
    release();
    expect(calls).toBe(1);
    const startedMs = Date.now();
    expect(await waitUntil(() => false, 30)).toBe(false);
    expect(Date.now() - startedMs).toBeGreaterThanOrEqual(25);
    let flag = false;
    setTimeout(() => { flag = true; }, 10);
    expect(await waitUntil(() => flag, 5000)).toBe(true);
  });
});

describe('VolumeCounters', () => {
  it('counts successful reads and writes with latency, failures as errors, copies and rmw', async () => {
    const c = new VolumeCounters();
    await c.count('read', 4096, Promise.resolve());
    await c.count('write', 8192, Promise.resolve());
    await c.count('other', 0, Promise.resolve());
    await expect(c.count('write', 512, Promise.reject(new Error('EIO')))).rejects.toThrow('EIO');
    c.noteCopy(0); // nothing copied: not a pass
    c.noteCopy(100);
    c.noteRmw();
    const s = c.stats();
    expect(s).toMatchObject({ readOps: 1, readBytes: 4096, writeOps: 1, writeBytes: 8192, errors: 1, rmwOps: 1, copies: 1, bytesCopied: 100 });
    expect(s.readLatencyUs.count).toBe(1);
    expect(s.writeLatencyUs.count).toBe(1);
  });

  it('a cache hit is a read and a copy; the hit ratio is 0 before the first read', () => {
    const c = new VolumeCounters();
    expect(c.cacheStats()).toEqual({ hits: 0, misses: 0, hitRatio: 0 });
    c.noteCacheMiss();
    c.noteCacheHit(4096, performance.now() * 1000);
    expect(c.cacheStats()).toEqual({ hits: 1, misses: 1, hitRatio: 0.5 });
    expect(c.stats()).toMatchObject({ readOps: 1, readBytes: 4096, copies: 1, bytesCopied: 4096 });
  });
});

describe('start-up option checks', () => {
  const good: DataPathOptions = { pools: { top: 1, middle: 0, bottom: 1, remote: 1 }, queue: { depth: 64, slots: 16, slotKiB: 128 }, probeDir: '/tmp' };

  it('accepts good sizes and names the key of a bad one', () => {
    expect(() => checkStartOptions(good)).not.toThrow();
    const bad: [Partial<DataPathOptions>, string][] = [
      [{ queue: { ...good.queue, depth: 48 } }, 'queue.depth'],
      [{ queue: { ...good.queue, slotKiB: 6 } }, 'queue.slotKiB'],
      [{ queue: { ...good.queue, slots: 0 } }, 'queue.slots'],
      [{ pools: { ...good.pools, remote: 9 } }, 'pools.remote'],
      [{ pools: { ...good.pools, middle: -1 } }, 'pools.middle'],
      [{ pools: { ...good.pools, bottom: 0 } }, 'pools.bottom'],
    ];
    for (const [over, key] of bad) {
      let caught: unknown;
      try {
        checkStartOptions({ ...good, ...over });
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(EngineError);
      expect((caught as EngineError).code).toBe('config');
      expect((caught as EngineError).where).toBe(key);
    }
  });
});

describe('topology checks', () => {
  it('accepts a good topology and refuses bad ones with a clear reason', () => {
    const els = [element(0), element(1), element(2), element(3)];
    expect(topologyError([volume()], els)).toBe('accepted');
    expect(topologyError([volume()], [element(0), element(0)])).toMatch(/appears twice/);
    expect(topologyError([volume()], [element(0), element(9)])).toMatch(/outside \[0, 8\)/);
    expect(topologyError([volume({ index: 4 })], els)).toMatch(/out of range or used twice/);
    expect(topologyError([volume(), volume({ name: 'w' })], els)).toMatch(/out of range or used twice/);
    expect(topologyError([volume({ elements: [0, 7] })], els)).toMatch(/missing from the topology/);
    expect(topologyError([volume({ layout: 'raid10', elements: [0, 1, 2] })], els)).toMatch(/even number of elements/);
    expect(topologyError([volume({ chunkBytes: 1000 })], els)).toMatch(/positive multiple of 512/);
    expect(topologyError([volume({ sizeBytes: 200 * MiB })], els)).toMatch(/exceeds the layout's capacity/);
    expect(topologyError([volume()], [element(0, { direct: true }), element(1)], { ...LIMITS, misalignmentBytes: null })).toMatch(/O_DIRECT/);
  });

  it('checks element indices and derives request alignment from the elements', () => {
    expect(checkElementIndex(7, 8)).toBe(7);
    expect(() => checkElementIndex(8, 8)).toThrow(EngineError);
    expect(() => checkElementIndex(1.5, 8)).toThrow(EngineError);
    expect(volumeAlignment([element(0), element(1)])).toEqual({ alignBytes: 1, trimAlignBytes: 1 });
    expect(volumeAlignment([element(0, { direct: true }), element(1)])).toEqual({ alignBytes: 4096, trimAlignBytes: 1 });
    expect(volumeAlignment([element(0), element(1, { kind: 'nbd', blockSizeBytes: 512 })])).toEqual({ alignBytes: 512, trimAlignBytes: 512 });
  });
});
