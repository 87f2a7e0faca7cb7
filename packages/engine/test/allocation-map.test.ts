// base:allocation through every layout (allocation/map-allocation.ts), checked against a
// byte-by-byte reference built on the data path's own read mapping: a volume byte is a hole
// only if every element byte a read of it may use is a hole.
import { describe, expect, it } from 'vitest';
import { allocationSegments, combineSegments, elementSpans, finishRuns, type AllocRun, type ElementRuns } from '../src/allocation/map-allocation.js';
import { mapLinear, mapRaid0, volumeCapacityBytes, type VolumeGeometry } from '../src/datapath/map.js';
import { elementOffset, mapParityData, parityGeometry } from '../src/datapath/map-parity.js';
import { raid10Locate } from '../src/datapath/map-raid10.js';
import type { Layout } from '../src/config/types.js';
import { rng } from './helpers.js';

const KiB = 1024;
/** Test granularity: holes come in units of this many bytes (every offset below is a multiple). */
const UNIT = 512;
const OFF = 4 * KiB; // a small data offset keeps the element maps small

function geometry(layout: Layout, n: number, chunkBytes: number, elementBytes: number): VolumeGeometry {
  const sizes = Array.from({ length: n }, () => elementBytes);
  return { layout, chunkBytes, sizeBytes: volumeCapacityBytes(layout, sizes, chunkBytes), elements: sizes.map((s) => ({ dataOffsetBytes: OFF, dataSizeBytes: s })) };
}

/** Per element, per UNIT of the whole element (data offset included): true = hole. */
type HoleMaps = boolean[][];

function randomHoles(g: VolumeGeometry, seed: number, dataPercent: number): HoleMaps {
  const next = rng(seed);
  return g.elements.map((e) => {
    const units = (e.dataOffsetBytes + e.dataSizeBytes) / UNIT;
    const out: boolean[] = [];
    // Runs of 1..8 units, so holes and data both come in stretches.
    while (out.length < units) {
      const hole = next(100) >= dataPercent;
      for (let k = 1 + next(8); k > 0 && out.length < units; k--) out.push(hole);
    }
    return out;
  });
}

/** What a read of volume byte v may come from, per the data path's mapping: hole only if all are. */
function referenceHole(g: VolumeGeometry, readable: readonly boolean[], holes: HoleMaps, v: number): boolean {
  const isHole = (role: number, elementOffset: number): boolean => holes[role]![Math.floor(elementOffset / UNIT)]!;
  const allHoles = (srcs: readonly { role: number; off: number }[]): boolean => srcs.length > 0 && srcs.every((s) => isHole(s.role, s.off));
  switch (g.layout) {
    case 'linear':
    case 'raid0': {
      const x = (g.layout === 'linear' ? mapLinear(g, v, 1) : mapRaid0(g, v, 1))[0]!;
      return readable[x.role]! && isHole(x.role, x.elementOffsetBytes);
    }
    case 'raid1':
      return allHoles(g.elements.map((e, role) => ({ role, off: e.dataOffsetBytes + v })).filter((s) => readable[s.role]));
    case 'raid10':
      return allHoles(raid10Locate(g, v).legs.filter((l) => readable[l.role]).map((l) => ({ role: l.role, off: l.elementOffsetBytes })));
    default: {
      const pg = parityGeometry(g);
      const x = mapParityData(pg, v, 1)[0]!;
      if (readable[x.role]) return isHole(x.role, x.elementOffsetBytes);
      if (readable.filter((r) => !r).length > pg.np) return false;
      const row = Math.floor(Math.floor(v / pg.chunkBytes) / pg.k);
      const within = v % pg.chunkBytes;
      return allHoles(readable.flatMap((r, role) => (r ? [{ role, off: elementOffset(pg, role, row, within) }] : [])));
    }
  }
}

/** An element's runs over [start, start + len) from its hole map (optionally cut after `cutRuns` runs). */
function runsFromMap(map: readonly boolean[], start: number, len: number, cutRuns = Infinity): ElementRuns {
  const runs: { lengthBytes: number; zero: boolean }[] = [];
  for (let at = start; at < start + len; at += UNIT) {
    const zero = map[at / UNIT]!;
    const last = runs[runs.length - 1];
    if (last !== undefined && last.zero === zero) last.lengthBytes += UNIT;
    else runs.push({ lengthBytes: UNIT, zero });
  }
  return { startBytes: start, runs: runs.slice(0, cutRuns) };
}

function answer(g: VolumeGeometry, readable: readonly boolean[], holes: HoleMaps, off: number, len: number, segmentsMax = 1 << 20, cutRuns = Infinity): AllocRun[] {
  const segments = allocationSegments(g, readable, off, len, segmentsMax);
  const byRole = new Map([...elementSpans(segments)].map(([role, s]) => [role, runsFromMap(holes[role]!, s.startBytes, s.endBytes - s.startBytes, cutRuns)] as const));
  return combineSegments(segments, byRole);
}

/** Expands runs to one flag per UNIT from `off`. */
function perUnit(runs: readonly AllocRun[]): boolean[] {
  return runs.flatMap((r) => {
    expect(r.lengthBytes % UNIT).toBe(0);
    return Array.from({ length: r.lengthBytes / UNIT }, () => r.zero);
  });
}

const CASES: { layout: Layout; n: number; chunk: number }[] = [
  { layout: 'linear', n: 3, chunk: 0 },
  { layout: 'raid0', n: 3, chunk: 2 * KiB },
  { layout: 'raid1', n: 3, chunk: 0 },
  { layout: 'raid10', n: 4, chunk: 2 * KiB },
  { layout: 'raid5', n: 4, chunk: 2 * KiB },
  { layout: 'raid6', n: 5, chunk: 2 * KiB },
];

describe('allocation through every layout matches the byte-by-byte reference', () => {
  for (const c of CASES) {
    it(`${c.layout}: random holes, every readable set with at most two legs missing, random ranges`, () => {
      const g = geometry(c.layout, c.n, c.chunk, 32 * KiB);
      const next = rng(7 + c.n);
      for (let round = 0; round < 12; round++) {
        const holes = randomHoles(g, 100 * round + c.n, [10, 50, 90][round % 3]!);
        for (let mask = 0; mask < 1 << c.n; mask++) {
          const readable = Array.from({ length: c.n }, (_, i) => (mask & (1 << i)) === 0);
          if (readable.filter((r) => !r).length > 2) continue;
          const off = next(g.sizeBytes / UNIT) * UNIT;
          const len = (1 + next((g.sizeBytes - off) / UNIT)) * UNIT;
          const got = perUnit(answer(g, readable, holes, off, len));
          const want = Array.from({ length: len / UNIT }, (_, i) => referenceHole(g, readable, holes, off + i * UNIT));
          expect(got, `${c.layout} readable ${readable.join(',')} [${off}, +${len})`).toEqual(want);
        }
      }
    });
  }
});

describe('allocation never claims more than it knows', () => {
  it('a segment limit or an element answer cut short yields a correct prefix that makes progress', () => {
    for (const c of CASES) {
      const g = geometry(c.layout, c.n, c.chunk, 32 * KiB);
      const holes = randomHoles(g, 42, 50);
      const readable = Array.from({ length: c.n }, () => true);
      const got = perUnit(answer(g, readable, holes, 0, g.sizeBytes, 3, 2));
      expect(got.length, c.layout).toBeGreaterThan(0);
      expect(got.length * UNIT).toBeLessThanOrEqual(g.sizeBytes);
      got.forEach((hole, i) => expect(hole, `${c.layout} unit ${i}`).toBe(referenceHole(g, readable, holes, i * UNIT)));
    }
  });

  it('no readable leg, or a raid5 missing two, is data', () => {
    const r1 = geometry('raid1', 2, 0, 32 * KiB);
    const allHoles = r1.elements.map((e) => Array.from({ length: (e.dataOffsetBytes + e.dataSizeBytes) / UNIT }, () => true));
    expect(answer(r1, [false, false], allHoles, 0, r1.sizeBytes)).toEqual([{ lengthBytes: r1.sizeBytes, zero: false }]);
    expect(answer(r1, [true, false], allHoles, 0, r1.sizeBytes)).toEqual([{ lengthBytes: r1.sizeBytes, zero: true }]);
    const r5 = geometry('raid5', 4, 2 * KiB, 32 * KiB);
    const holes5 = r5.elements.map((e) => Array.from({ length: (e.dataOffsetBytes + e.dataSizeBytes) / UNIT }, () => true));
    expect(perUnit(answer(r5, [false, false, true, true], holes5, 0, r5.sizeBytes)).some((h) => h)).toBe(true); // chunks on readable roles
    expect(perUnit(answer(r5, [false, false, true, true], holes5, 0, r5.sizeBytes)).every((h) => h)).toBe(false);
  });

  it('raid5 degraded: a missing unit is a hole only if the parity of its row is one too', () => {
    const g = geometry('raid5', 3, 2 * KiB, 8 * KiB);
    const pg = parityGeometry(g);
    // Every element all holes, except the parity chunk of row 0 (data was written to role-of-chunk-0 there).
    const holes = g.elements.map((e) => Array.from({ length: (e.dataOffsetBytes + e.dataSizeBytes) / UNIT }, () => true));
    const pRole0 = pg.n - 1;
    holes[pRole0]![(OFF + 512) / UNIT] = false;
    const row0Data = mapParityData(pg, 0, 1)[0]!.role;
    const readable = g.elements.map((_, role) => role !== row0Data);
    const got = perUnit(answer(g, readable, holes, 0, 2 * 2 * KiB));
    // Chunk 0 (missing) is data at byte 512 of the row (parity there is data); chunk 1 is read directly: all hole.
    expect(got.map((h, i) => (h ? '.' : `${i}`)).filter((x) => x !== '.')).toEqual(['1']);
  });
});

describe('finishRuns', () => {
  const r = (lengthBytes: number, zero: boolean): AllocRun => ({ lengthBytes, zero });
  it('merges neighbours and keeps holes to the 4 KiB grid inside the answer', () => {
    expect(finishRuns([r(4096, true), r(4096, true), r(8192, false)], 0, 4096, 16)).toEqual([{ lengthBytes: 8192, flags: 3 }, { lengthBytes: 8192, flags: 0 }]);
    // A hole from 1000 to 10000 inside data shrinks to [4096, 8192).
    expect(finishRuns([r(1000, false), r(9000, true), r(2288, false)], 0, 4096, 16)).toEqual([{ lengthBytes: 4096, flags: 0 }, { lengthBytes: 4096, flags: 3 }, { lengthBytes: 4096, flags: 0 }]);
    // Too narrow for the grid: data.
    expect(finishRuns([r(5000, false), r(2000, true), r(5000, false)], 0, 4096, 16)).toEqual([{ lengthBytes: 12000, flags: 0 }]);
    // At the answer's start and end the hole keeps its exact edge (the request decided those).
    expect(finishRuns([r(3000, true), r(4096, false), r(100, true)], 1096, 4096, 16)).toEqual([{ lengthBytes: 3000, flags: 3 }, { lengthBytes: 4096, flags: 0 }, { lengthBytes: 100, flags: 3 }]);
  });
  it('keeps at most extentsMax runs, covering a prefix', () => {
    const runs = Array.from({ length: 10 }, (_, i) => r(4096, i % 2 === 0));
    expect(finishRuns(runs, 0, 4096, 3)).toEqual([{ lengthBytes: 4096, flags: 3 }, { lengthBytes: 4096, flags: 0 }, { lengthBytes: 4096, flags: 3 }]);
    expect(finishRuns(runs, 0, 4096, 1)).toEqual([{ lengthBytes: 4096, flags: 3 }]);
  });
  it('refuses nonsense bounds', () => {
    expect(() => finishRuns([], 0, 0, 1)).toThrow(RangeError);
    expect(() => finishRuns([], 0, 4096, 0)).toThrow(RangeError);
  });
});

describe('allocationSegments bounds', () => {
  it('cuts a huge striped range at segmentsMax chunks and refuses bad input', () => {
    const g = geometry('raid0', 2, 512, 1024 * KiB);
    const segs = allocationSegments(g, [true, true], 100, g.sizeBytes - 100, 4);
    expect(segs.map((s) => [s.volumeOffsetBytes, s.lengthBytes])).toEqual([[100, 412], [512, 512], [1024, 512], [1536, 512]]);
    expect(() => allocationSegments(g, [true, true], 0, g.sizeBytes + 1, 4)).toThrow(RangeError);
    expect(() => allocationSegments(g, [true], 0, 512, 4)).toThrow(RangeError);
    expect(() => allocationSegments(g, [true, true], 0, 512, 0)).toThrow(RangeError);
    expect(allocationSegments(g, [true, true], 0, 0, 4)).toEqual([]);
  });
});
