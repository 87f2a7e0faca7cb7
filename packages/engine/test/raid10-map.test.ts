// raid10 ("near 2") placement rules, checked byte by byte against a direct model of the layout,
// plus capacity and the survival rules the control plane uses for volume state.
import { describe, expect, it } from 'vitest';
import { mapRaid0, mapRaid0Coalesced, volumeCapacityBytes, type VolumeGeometry } from '../src/datapath/map.js';
import { mapRaid10, mapRaid10Coalesced, mapRaid10Pairs, raid10Locate, raid10Partner } from '../src/datapath/map-raid10.js';
import { layoutCapacityBytes, layoutSurvives, volumeHealth } from '../src/meta/layout.js';
import { volumeState } from '../src/state/registry.js';
import { rng } from './helpers.js';

const KiB = 1024;
const MiB = 1024 * 1024;

/** The layout written out longhand: volume byte b → (pair, offset inside each leg's data area). */
function model(chunkBytes: number, pairs: number, b: number): { pair: number; legOffsetBytes: number } {
  const k = Math.floor(b / chunkBytes);
  return { pair: k % pairs, legOffsetBytes: Math.floor(k / pairs) * chunkBytes + (b % chunkBytes) };
}

function geometry(count: number, chunkBytes: number, legBytes: number): VolumeGeometry {
  // Different data offsets per leg: a leg placed with its partner's offset would show.
  const elements = Array.from({ length: count }, (_, i) => ({ dataOffsetBytes: 4 * MiB + i * 4096, dataSizeBytes: legBytes }));
  return { layout: 'raid10', chunkBytes, sizeBytes: volumeCapacityBytes('raid10', elements.map((e) => e.dataSizeBytes), chunkBytes), elements };
}

describe('raid10 capacity', () => {
  it('is n/2 × the smallest leg, rounded down to whole chunks, and agrees with assembly', () => {
    const sizes = [10 * MiB + 5000, 6 * MiB + 100, 8 * MiB, 9 * MiB];
    expect(volumeCapacityBytes('raid10', sizes, 64 * KiB)).toBe(2 * 6 * MiB);
    expect(volumeCapacityBytes('raid10', [100 * KiB, 200 * KiB, 300 * KiB, 400 * KiB, 150 * KiB, 130 * KiB], 64 * KiB)).toBe(3 * 64 * KiB);
    for (const chunk of [4 * KiB, 64 * KiB, 512 * KiB]) {
      const rounded = sizes.map(() => Math.floor(Math.min(...sizes) / chunk) * chunk);
      expect(volumeCapacityBytes('raid10', sizes, chunk)).toBe(layoutCapacityBytes('raid10', rounded, chunk));
    }
  });
  it('refuses odd counts, fewer than 2 elements and bad chunks', () => {
    expect(() => volumeCapacityBytes('raid10', [MiB, MiB, MiB], 64 * KiB)).toThrow(/even number/);
    // One pair is served (a raid1's view while it becomes a raid10); public volumes need 4 (topology-check.ts).
    expect(volumeCapacityBytes('raid10', [MiB, MiB], 64 * KiB)).toBe(MiB);
    expect(() => volumeCapacityBytes('raid10', [MiB], 64 * KiB)).toThrow(/at least 2/);
    expect(() => volumeCapacityBytes('raid10', [MiB, MiB, MiB, MiB, MiB], 64 * KiB)).toThrow(/even number/);
    expect(() => volumeCapacityBytes('raid10', [MiB, MiB, MiB, MiB], 0)).toThrow(/chunk/);
  });
});

describe('raid10 mapping', () => {
  const cases: [count: number, chunkBytes: number][] = [[4, 4 * KiB], [6, 64 * KiB], [8, 512]];
  for (const [count, chunkBytes] of cases) {
    it(`every byte of random ranges lands on both legs of the right pair (${count} elements, ${chunkBytes} B chunks)`, () => {
      const g = geometry(count, chunkBytes, 40 * chunkBytes + 777);
      const pairs = count / 2;
      const rand = rng(count * 7919 + chunkBytes);
      for (let t = 0; t < 200; t++) {
        const off = rand(g.sizeBytes);
        const len = Math.min(g.sizeBytes - off, rand(t % 4 === 0 ? 5 * pairs * chunkBytes : 3 * chunkBytes) + (t % 10 === 0 ? 0 : 1));
        // hits[i] counts, per buffer byte, the leg-0 and leg-1 copies that cover it.
        const hits = new Uint8Array(2 * len);
        for (const x of mapRaid10(g, off, len)) {
          expect(x.lengthBytes).toBeGreaterThan(0);
          expect(x.bufferOffsetBytes + x.lengthBytes).toBeLessThanOrEqual(len);
          // A piece never crosses a chunk, so its first byte places all of it.
          const m = model(chunkBytes, pairs, off + x.bufferOffsetBytes);
          const last = model(chunkBytes, pairs, off + x.bufferOffsetBytes + x.lengthBytes - 1);
          expect(last.legOffsetBytes - m.legOffsetBytes).toBe(x.lengthBytes - 1);
          expect(x.role >> 1).toBe(m.pair);
          expect(x.elementOffsetBytes).toBe(g.elements[x.role]!.dataOffsetBytes + m.legOffsetBytes);
          for (let j = 0; j < x.lengthBytes; j++) hits[2 * (x.bufferOffsetBytes + j) + (x.role & 1)]!++;
        }
        expect(hits.every((h) => h === 1)).toBe(true);
      }
    });
  }

  it('is raid0 over the pairs, with each piece on both legs at the same offset', () => {
    const g = geometry(6, 64 * KiB, 2 * MiB);
    const pairsAsRaid0: VolumeGeometry = { layout: 'raid0', chunkBytes: g.chunkBytes, sizeBytes: g.sizeBytes, elements: [0, 2, 4].map((r) => g.elements[r]!) };
    for (const [off, len] of [[0, 1], [64 * KiB - 10, 64 * KiB + 20], [5 * 64 * KiB + 3, 700 * KiB], [g.sizeBytes - 100, 100]] as const) {
      const legs = mapRaid10(g, off, len);
      const stripes = mapRaid0(pairsAsRaid0, off, len);
      expect(legs.filter((x) => x.role % 2 === 0)).toEqual(stripes.map((s) => ({ ...s, role: 2 * s.role })));
      const odd = legs.filter((x) => x.role % 2 === 1);
      expect(odd.map((x) => [x.role - 1, x.elementOffsetBytes - g.elements[x.role]!.dataOffsetBytes, x.lengthBytes, x.bufferOffsetBytes]))
        .toEqual(stripes.map((s) => [2 * s.role, s.elementOffsetBytes - g.elements[2 * s.role]!.dataOffsetBytes, s.lengthBytes, s.bufferOffsetBytes]));
    }
    expect(raid10Locate(g, 7 * 64 * KiB + 5)).toEqual({
      pair: 1,
      legs: [{ role: 2, elementOffsetBytes: g.elements[2]!.dataOffsetBytes + 2 * 64 * KiB + 5 }, { role: 3, elementOffsetBytes: g.elements[3]!.dataOffsetBytes + 2 * 64 * KiB + 5 }],
    });
    expect([0, 1, 2, 3, 4, 5].map(raid10Partner)).toEqual([1, 0, 3, 2, 5, 4]);
  });

  it('coalesces trims and zeroes to one extent per leg that covers exactly that leg’s chunks', () => {
    const g = geometry(4, 4 * KiB, 256 * KiB);
    const rand = rng(99);
    for (let t = 0; t < 100; t++) {
      const off = rand(g.sizeBytes);
      const len = rand(g.sizeBytes - off + 1);
      const fine = mapRaid10(g, off, len);
      const coarse = mapRaid10Coalesced(g, off, len);
      expect(new Set(coarse.map((x) => x.role)).size).toBe(coarse.length);
      for (let role = 0; role < 4; role++) {
        const mine = fine.filter((x) => x.role === role);
        const c = coarse.find((x) => x.role === role);
        if (mine.length === 0) {
          expect(c).toBeUndefined();
          continue;
        }
        const last = mine[mine.length - 1]!;
        expect(c).toEqual({ role, elementOffsetBytes: mine[0]!.elementOffsetBytes, lengthBytes: last.elementOffsetBytes + last.lengthBytes - mine[0]!.elementOffsetBytes, bufferOffsetBytes: -1 });
        expect(c!.lengthBytes).toBe(mine.reduce((a, x) => a + x.lengthBytes, 0)); // contiguous: no gap, no overlap
      }
    }
  });

  it('raid0 still maps as before (shared stripe arithmetic)', () => {
    const g: VolumeGeometry = { layout: 'raid0', chunkBytes: 64 * KiB, sizeBytes: 3 * MiB, elements: [0, 1, 2].map(() => ({ dataOffsetBytes: 4 * MiB, dataSizeBytes: MiB })) };
    expect(mapRaid0(g, 64 * KiB - 10, 64 * KiB + 20).map((x) => x.role)).toEqual([0, 1, 2]);
    expect(mapRaid0Coalesced(g, 0, 3 * MiB).map((x) => [x.role, x.lengthBytes])).toEqual([[0, MiB], [1, MiB], [2, MiB]]);
  });

  it('rejects ranges past the end and geometries that are not pairs', () => {
    const g = geometry(4, 64 * KiB, MiB);
    expect(() => mapRaid10(g, g.sizeBytes - 1, 2)).toThrow(RangeError);
    expect(() => mapRaid10(g, -1, 1)).toThrow(RangeError);
    expect(() => mapRaid10Pairs({ ...g, elements: g.elements.slice(0, 3) }, 0, 1)).toThrow(/even number/);
  });
});

describe('raid10 survival and volume state', () => {
  const A = 'active' as const;
  const F = 'failed' as const;
  it('survives while every pair keeps an active leg', () => {
    expect(layoutSurvives('raid10', [A, A, A, A])).toBe(true);
    expect(layoutSurvives('raid10', [F, A, A, F])).toBe(true);
    expect(layoutSurvives('raid10', [A, F, F, A, A, 'stale'])).toBe(true);
    expect(layoutSurvives('raid10', [F, F, A, A])).toBe(false);
    expect(layoutSurvives('raid10', [A, A, 'stale', 'rebuilding'])).toBe(false);
    expect(layoutSurvives('raid10', [A, A, A, A, F, 'spare'])).toBe(false);
  });
  it('is optimal, degraded or failed accordingly', () => {
    expect(volumeHealth('raid10', [A, A, A, A])).toBe('optimal');
    expect(volumeHealth('raid10', [A, F, F, A])).toBe('degraded');
    expect(volumeHealth('raid10', [A, A, F, F])).toBe('failed');
    expect(volumeState('raid10', [A, 'rebuilding', A, A])).toBe('rebuilding');
    expect(volumeState('raid10', [F, A, F, A])).toBe('degraded');
    expect(volumeState('raid10', [F, F, A, A])).toBe('failed');
  });
});
