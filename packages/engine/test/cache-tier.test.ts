// The cache tier of a remote element (workers/cache-tier.ts): its direct-mapped block map, hits
// and misses against a real local file, write-through invalidation and the races a read and a
// write (or two writes) can run, the I/O-error fallback, and the config field that enables it.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EngineError } from '../src/api-types.js';
import { loadConfig } from '../src/config/load.js';
import { normalizeElement } from '../src/config/validate.js';
import { BlockMap, CacheTier, TIER_COUNTER, tierCounters, tierStatus } from '../src/workers/cache-tier.js';

const BLOCK = 4096;
const FROM = 4 * 1024 * 1024; // an element's data area starts here; below it nothing is cached

let dir = '';
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'onestack-tier-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A tier of `slots` 4 KiB blocks over a fresh file, and the log lines it wrote. */
function tierOf(slots: number, name = `t${Math.random().toString(36).slice(2)}.cache`): { tier: CacheTier; logs: string[]; counters: Float64Array } {
  const logs: string[] = [];
  const spec = { path: path.join(dir, name), sizeBytes: slots * BLOCK, blockBytes: BLOCK, counters: tierCounters() };
  return { tier: new CacheTier(spec, FROM, (l) => logs.push(l)), logs, counters: new Float64Array(spec.counters) };
}

/** Bytes as the remote would hold them at [off, off + len): a function of the position and a version. */
function pattern(off: number, len: number, version: number): Uint8Array {
  const out = new Uint8Array(len);
  for (let i = 0; i < len; i++) out[i] = (Math.floor((off + i) / BLOCK) * 7 + version * 31 + off + i) & 0xff;
  return out;
}

/** A read through the tier: what it answered, or null on a miss (after which the caller "reads the remote"). */
function read(tier: CacheTier, off: number, len: number, live = true): Uint8Array | null {
  const view = new Uint8Array(len);
  return tier.read(off, view, live) ? view : null;
}

describe('BlockMap', () => {
  it('maps block b to slot b % slots; a conflicting block evicts the one there', () => {
    const map = new BlockMap(8);
    expect(map.has(3)).toBe(false);
    map.set(3);
    expect(map.has(3)).toBe(true);
    expect(map.covers(3, 3)).toBe(true);
    map.vacate(11); // 11 % 8 === 3: its bytes are about to replace block 3's
    map.set(11);
    expect(map.has(3)).toBe(false);
    expect(map.has(11)).toBe(true);
    expect(map.count()).toBe(1);
  });

  it('a range longer than the map is never covered; dropRange over it sweeps the map once', () => {
    const map = new BlockMap(4);
    for (let b = 0; b < 4; b++) map.set(b);
    expect(map.covers(0, 3)).toBe(true);
    expect(map.covers(0, 4)).toBe(false);
    map.set(100); // slot 0: block 0 is evicted
    map.dropRange(2, 1_000_000);
    expect(map.count()).toBe(1);
    expect(map.has(1)).toBe(true);
    expect(map.has(100)).toBe(false);
  });

  it('stamps: a read may fill only slots no write touched after its ticket', () => {
    const map = new BlockMap(16);
    const ticket = map.ticket();
    expect(map.fillable(5, ticket)).toBe(true);
    const stamp = map.stamp(5, 6);
    expect(map.fillable(5, ticket)).toBe(false);
    expect(map.fillable(7, ticket)).toBe(true);
    expect(map.untouchedSince(5, stamp)).toBe(true);
    map.stamp(6, 6);
    expect(map.untouchedSince(6, stamp)).toBe(false);
    expect(map.fillable(5, map.ticket())).toBe(true);
  });

  it('refuses an unbounded or empty map', () => {
    expect(() => new BlockMap(0)).toThrow(/slots/);
    expect(() => new BlockMap(2 ** 22)).toThrow(/slots/);
  });
});

describe('CacheTier reads', () => {
  it('a miss, a fill of the whole blocks, then a hit with the same bytes', () => {
    const { tier, counters } = tierOf(64);
    const off = FROM + 5 * BLOCK;
    expect(read(tier, off, 2 * BLOCK)).toBeNull();
    tier.fill(tier.beginRead(), off, pattern(off, 2 * BLOCK, 1));
    expect(read(tier, off, 2 * BLOCK)).toEqual(pattern(off, 2 * BLOCK, 1));
    // a sub-range, unaligned, inside the cached blocks
    expect(read(tier, off + 100, 5000)).toEqual(pattern(off + 100, 5000, 1));
    expect([counters[TIER_COUNTER.HITS], counters[TIER_COUNTER.MISSES]]).toEqual([2, 1]);
    tier.close();
  });

  it('fills only whole blocks: a partial block stays a miss', () => {
    const { tier } = tierOf(64);
    const off = FROM + BLOCK + 512;
    tier.fill(tier.beginRead(), off, pattern(off, 2 * BLOCK, 1)); // covers block 2 (of the data area) whole, 1 and 3 partly
    expect(read(tier, FROM + 2 * BLOCK, BLOCK)).toEqual(pattern(FROM + 2 * BLOCK, BLOCK, 1));
    expect(read(tier, FROM + BLOCK + 512, 512)).toBeNull();
    expect(read(tier, FROM + 3 * BLOCK, 512)).toBeNull();
    tier.close();
  });

  it('a block that wraps the map is stored in two runs and read back whole', () => {
    const { tier } = tierOf(8);
    const off = FROM + 6 * BLOCK; // blocks 1030..1033 → slots 6, 7, 0, 1
    tier.fill(tier.beginRead(), off, pattern(off, 4 * BLOCK, 2));
    expect(read(tier, off, 4 * BLOCK)).toEqual(pattern(off, 4 * BLOCK, 2));
    tier.close();
  });

  it('evicts on conflict: the newer block wins its slot, the older one misses', () => {
    const { tier } = tierOf(8);
    const a = FROM;
    const b = FROM + 8 * BLOCK; // same slot
    tier.fill(tier.beginRead(), a, pattern(a, BLOCK, 1));
    tier.fill(tier.beginRead(), b, pattern(b, BLOCK, 1));
    expect(read(tier, a, BLOCK)).toBeNull();
    expect(read(tier, b, BLOCK)).toEqual(pattern(b, BLOCK, 1));
    tier.close();
  });

  it('never caches the header area, and does not count its reads', () => {
    const { tier, counters } = tierOf(64);
    tier.fill(tier.beginRead(), 0, pattern(0, 4 * BLOCK, 1));
    expect(read(tier, 0, BLOCK)).toBeNull();
    expect(tier.map.count()).toBe(0);
    expect(counters[TIER_COUNTER.MISSES]).toBe(0);
    tier.close();
  });

  it('serves nothing while the remote is not connected (a tier is not a replica)', () => {
    const { tier, counters } = tierOf(64);
    tier.fill(tier.beginRead(), FROM, pattern(FROM, BLOCK, 1));
    expect(read(tier, FROM, BLOCK, false)).toBeNull();
    expect(read(tier, FROM, BLOCK, true)).not.toBeNull();
    expect([counters[TIER_COUNTER.HITS], counters[TIER_COUNTER.MISSES]]).toEqual([1, 1]);
    tier.close();
  });
});

describe('CacheTier write-through', () => {
  it('a write drops its blocks before it is sent and stores whole blocks once it succeeded', () => {
    const { tier } = tierOf(64);
    const off = FROM + 4 * BLOCK;
    tier.fill(tier.beginRead(), off, pattern(off, 4 * BLOCK, 1));
    const data = pattern(off + BLOCK, 2 * BLOCK + 100, 2); // blocks 5, 6 whole, 7 partly
    const stamp = tier.beginWrite(off + BLOCK, data.length);
    expect(read(tier, off + BLOCK, BLOCK)).toBeNull(); // in flight: never the old bytes
    tier.endWrite(stamp, off + BLOCK, data.length, data);
    expect(read(tier, off + BLOCK, 2 * BLOCK)).toEqual(data.subarray(0, 2 * BLOCK));
    expect(read(tier, off + 3 * BLOCK, BLOCK)).toBeNull(); // the partial block is dropped, not patched
    expect(read(tier, off, BLOCK)).toEqual(pattern(off, BLOCK, 1)); // untouched neighbour stays
    tier.close();
  });

  it('a failed write, a trim or write-zeroes leaves its whole range dropped', () => {
    const { tier } = tierOf(64);
    tier.fill(tier.beginRead(), FROM, pattern(FROM, 8 * BLOCK, 1));
    const stamp = tier.beginWrite(FROM, 2 * BLOCK);
    tier.endWrite(stamp, FROM, 2 * BLOCK, null); // failed (or zeroes)
    expect(read(tier, FROM, BLOCK)).toBeNull();
    expect(read(tier, FROM + BLOCK, BLOCK)).toBeNull();
    const zeroes = tier.beginWrite(FROM + 2 * BLOCK, 1 << 30); // longer than the map: one sweep
    tier.endWrite(zeroes, FROM + 2 * BLOCK, 1 << 30, null);
    expect(tier.map.count()).toBe(0);
    tier.close();
  });

  it('race: a read sent before a write cannot fill the old bytes back in after it', () => {
    const { tier } = tierOf(64);
    const ticket = tier.beginRead(); // read sent, remote answers with version 1...
    const stamp = tier.beginWrite(FROM, BLOCK);
    tier.endWrite(stamp, FROM, BLOCK, pattern(FROM, BLOCK, 2));
    tier.fill(ticket, FROM, pattern(FROM, BLOCK, 1)); // ...and lands after the write
    expect(read(tier, FROM, BLOCK)).toEqual(pattern(FROM, BLOCK, 2));
    tier.close();
  });

  it('race: a read sent while a write is in flight may fill, but the write ending replaces or drops it', () => {
    const { tier } = tierOf(64);
    const off = FROM;
    const stamp = tier.beginWrite(off, BLOCK + 512);
    const ticket = tier.beginRead(); // the remote may answer with the old bytes
    tier.fill(ticket, off, pattern(off, 2 * BLOCK, 1));
    tier.endWrite(stamp, off, BLOCK + 512, pattern(off, BLOCK + 512, 2));
    expect(read(tier, off, BLOCK)).toEqual(pattern(off, BLOCK, 2));
    expect(read(tier, off + BLOCK, BLOCK)).toBeNull();
    // a read that began during the write and lands after it fills nothing
    const late = tier.beginRead();
    const stamp2 = tier.beginWrite(off, BLOCK);
    const during = tier.beginRead();
    tier.endWrite(stamp2, off, BLOCK, null);
    tier.fill(during, off, pattern(off, 2 * BLOCK, 1));
    tier.fill(late, off, pattern(off, 2 * BLOCK, 1));
    expect(read(tier, off, BLOCK)).toBeNull(); // the written block: no fill from either read
    expect(read(tier, off + BLOCK, BLOCK)).toEqual(pattern(off + BLOCK, BLOCK, 1)); // its neighbour was not written: filled
    tier.close();
  });

  it('race: two overlapping writes in flight leave the range dropped, whichever ends first', () => {
    for (const firstEnds of [1, 2]) {
      const { tier } = tierOf(64);
      const s1 = tier.beginWrite(FROM, BLOCK);
      const s2 = tier.beginWrite(FROM, BLOCK);
      const end1 = (): void => tier.endWrite(s1, FROM, BLOCK, pattern(FROM, BLOCK, 1));
      const end2 = (): void => tier.endWrite(s2, FROM, BLOCK, pattern(FROM, BLOCK, 2));
      if (firstEnds === 1) { end1(); end2(); } else { end2(); end1(); }
      // the remote's order of the two is unknown: only a drop is safe
      expect(read(tier, FROM, BLOCK), `write ${firstEnds} ended first`).toBeNull();
      tier.close();
    }
  });
});

describe('CacheTier errors', () => {
  it('a cache file that cannot be opened leaves the tier off (logged once), requests unaffected', () => {
    const blocker = path.join(dir, 'not-a-dir');
    fs.writeFileSync(blocker, 'x');
    const logs: string[] = [];
    const spec = { path: path.join(blocker, 'r0.cache'), sizeBytes: 64 * BLOCK, blockBytes: BLOCK, counters: tierCounters() };
    const tier = new CacheTier(spec, FROM, (l) => logs.push(l));
    expect(tier.enabled).toBe(false);
    expect(read(tier, FROM, BLOCK)).toBeNull();
    tier.fill(tier.beginRead(), FROM, pattern(FROM, BLOCK, 1));
    tier.endWrite(tier.beginWrite(FROM, BLOCK), FROM, BLOCK, pattern(FROM, BLOCK, 1));
    expect(logs).toHaveLength(1);
    expect(logs[0]).toMatch(/cache tier .*r0\.cache: .*the tier is off/);
    expect(new Float64Array(spec.counters)[TIER_COUNTER.DISABLED]).toBe(1);
  });

  it('an I/O error later turns the tier off: a hit falls back to the remote', () => {
    const { tier, logs, counters } = tierOf(64);
    tier.fill(tier.beginRead(), FROM, pattern(FROM, BLOCK, 1));
    fs.closeSync((tier as unknown as { fd: number }).fd); // the file goes bad under the tier
    expect(read(tier, FROM, BLOCK)).toBeNull();
    expect(tier.enabled).toBe(false);
    expect(read(tier, FROM, BLOCK)).toBeNull();
    expect(logs).toHaveLength(1);
    expect(counters[TIER_COUNTER.DISABLED]).toBe(1);
  });

  it('status reads the counters: hit ratio, enabled', () => {
    const counters = tierCounters();
    const w = new Float64Array(counters);
    w[TIER_COUNTER.HITS] = 3;
    w[TIER_COUNTER.MISSES] = 1;
    expect(tierStatus({ path: '/x', sizeMiB: 16, blockKiB: 4 }, counters)).toEqual({ path: '/x', sizeMiB: 16, blockKiB: 4, hits: 3, misses: 1, hitRatio: 0.75, enabled: true });
  });
});

describe('config elements[].cacheTier', () => {
  const el = (extra: Record<string, unknown>, uri = 'nbd://127.0.0.1:10810/disk'): unknown => ({ name: 'r0', uri, ...extra });
  const fieldOf = (fn: () => unknown): string => {
    try {
      fn();
    } catch (err) {
      expect(err).toBeInstanceOf(EngineError);
      return (err as EngineError).message;
    }
    throw new Error('expected a config error');
  };

  it('normalizes path (relative to the config), size and a block that keeps the map bounded', () => {
    const e = normalizeElement(el({ cacheTier: { path: 'cache/r0.cache', sizeMiB: 1024 } }), 'elements[0]', dir);
    expect(e.cacheTier).toEqual({ path: path.join(dir, 'cache/r0.cache'), sizeMiB: 1024, blockKiB: 4 });
    expect(normalizeElement(el({ cacheTier: { path: '/c', sizeMiB: 65536 } }), 'e', dir).cacheTier?.blockKiB).toBe(32);
    expect(normalizeElement(el({ cacheTier: { path: '/c', sizeMiB: 64, blockKiB: 64 } }), 'e', dir).cacheTier?.blockKiB).toBe(64);
  });

  it('names the field in its errors', () => {
    expect(fieldOf(() => normalizeElement(el({ cacheTier: { path: '/c', sizeMiB: 64 } }, 'file:/tmp/x.img'), 'elements[2]', dir))).toMatch(/^elements\[2\]\.cacheTier: .*nbd/);
    expect(fieldOf(() => normalizeElement(el({ cacheTier: { path: '/c' } }), 'elements[0]', dir))).toMatch(/^elements\[0\]\.cacheTier\.sizeMiB: missing/);
    expect(fieldOf(() => normalizeElement(el({ cacheTier: { sizeMiB: 1 } }), 'elements[0]', dir))).toMatch(/^elements\[0\]\.cacheTier\.path: missing/);
    expect(fieldOf(() => normalizeElement(el({ cacheTier: { path: '/c', sizeMiB: 64, blockKiB: 48 } }), 'elements[0]', dir))).toMatch(/blockKiB: 48 is not a power of two/);
    expect(fieldOf(() => normalizeElement(el({ cacheTier: { path: '/c', sizeMiB: 65536, blockKiB: 4 } }), 'elements[0]', dir))).toMatch(/blockKiB: .*more than 2097152 blocks/);
    expect(fieldOf(() => normalizeElement(el({ cacheTier: { path: '/c', sizeMiB: 0 } }), 'elements[0]', dir))).toMatch(/sizeMiB: 0 is out of range/);
    expect(fieldOf(() => normalizeElement(el({ cacheTier: { path: '/c', sizeMiB: 1, size: 2 } }), 'elements[0]', dir))).toMatch(/cacheTier\.size: unknown key/);
  });

  it('refuses two elements sharing a cache file (with the line of the second)', () => {
    const file = path.join(dir, 'dup.yaml');
    fs.writeFileSync(file, [
      'elements:',
      '  - { name: r0, uri: nbd://127.0.0.1:1/a, cacheTier: { path: ./c.cache, sizeMiB: 8 } }',
      '  - { name: r1, uri: nbd://127.0.0.1:1/b, cacheTier: { path: ./c.cache, sizeMiB: 8 } }',
      '',
    ].join('\n'));
    const message = fieldOf(() => loadConfig({ path: file }));
    expect(message).toMatch(/elements\[1\]\.cacheTier\.path: same file as elements\[0\]/);
  });
});
