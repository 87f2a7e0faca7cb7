// Pure mapping rules: where each volume byte lives on which element.
import { describe, expect, it } from 'vitest';
import { DATA_OFFSET_BYTES } from '../src/meta/types.js';
import { mapLinear, mapRaid0, mapRaid0Coalesced, mapRaid1, pickReadLeg, raid0Locate, volumeCapacityBytes, type VolumeGeometry } from '../src/datapath/map.js';

const MiB = 1024 * 1024;
const KiB = 1024;
const el = (dataSizeBytes: number) => ({ dataOffsetBytes: DATA_OFFSET_BYTES, dataSizeBytes });

describe('volumeCapacityBytes', () => {
  it('linear sums, raid0 is n × min rounded down to the chunk, raid1 is min', () => {
    expect(volumeCapacityBytes('linear', [10 * MiB, 6 * MiB], 64 * KiB)).toBe(16 * MiB);
    expect(volumeCapacityBytes('raid0', [10 * MiB + 5000, 6 * MiB + 100], 64 * KiB)).toBe(12 * MiB);
    expect(volumeCapacityBytes('raid0', [100 * KiB, 200 * KiB, 300 * KiB], 64 * KiB)).toBe(3 * 64 * KiB);
    expect(volumeCapacityBytes('raid1', [10 * MiB, 6 * MiB, 8 * MiB], 64 * KiB)).toBe(6 * MiB);
    expect(volumeCapacityBytes('raid0', [], 64 * KiB)).toBe(0);
  });
  it('raid5 keeps n - 1 and raid6 n - 2 whole chunks per row; too few elements are refused', () => {
    expect(volumeCapacityBytes('raid5', [MiB, MiB + 5000, 2 * MiB], 64 * KiB)).toBe(2 * MiB);
    expect(volumeCapacityBytes('raid6', [MiB + 100, MiB, MiB, MiB], 64 * KiB)).toBe(2 * MiB);
    expect(() => volumeCapacityBytes('raid6', [MiB, MiB, MiB], 64 * KiB)).toThrow(/at least 4/);
  });
});

describe('linear', () => {
  const g: VolumeGeometry = { layout: 'linear', chunkBytes: 0, sizeBytes: 3 * MiB, elements: [el(MiB), el(2 * MiB)] };
  it('maps inside one element, data offset included', () => {
    expect(mapLinear(g, 4096, 8192)).toEqual([{ role: 0, elementOffsetBytes: DATA_OFFSET_BYTES + 4096, lengthBytes: 8192, bufferOffsetBytes: 0 }]);
    expect(mapLinear(g, MiB + 10, 5)).toEqual([{ role: 1, elementOffsetBytes: DATA_OFFSET_BYTES + 10, lengthBytes: 5, bufferOffsetBytes: 0 }]);
  });
  it('splits a range that crosses the element boundary', () => {
    expect(mapLinear(g, MiB - 100, 300)).toEqual([
      { role: 0, elementOffsetBytes: DATA_OFFSET_BYTES + MiB - 100, lengthBytes: 100, bufferOffsetBytes: 0 },
      { role: 1, elementOffsetBytes: DATA_OFFSET_BYTES, lengthBytes: 200, bufferOffsetBytes: 100 },
    ]);
  });
  it('rejects ranges past the end', () => {
    expect(() => mapLinear(g, 3 * MiB - 1, 2)).toThrow(RangeError);
    expect(() => mapLinear(g, -1, 2)).toThrow(RangeError);
  });
});

describe('raid0', () => {
  const chunk = 64 * KiB;
  const n = 3;
  const g: VolumeGeometry = { layout: 'raid0', chunkBytes: chunk, sizeBytes: n * MiB, elements: [el(MiB), el(MiB), el(MiB)] };
  it('chunk k lives on element k % n at row floor(k / n)', () => {
    for (let k = 0; k < 3 * 16; k++) {
      const loc = raid0Locate(g, k * chunk + 123);
      expect(loc.role).toBe(k % n);
      expect(loc.elementOffsetBytes).toBe(DATA_OFFSET_BYTES + Math.floor(k / n) * chunk + 123);
    }
  });
  it('splits at chunk boundaries and keeps buffer offsets', () => {
    const x = mapRaid0(g, chunk - 10, chunk + 20);
    expect(x).toEqual([
      { role: 0, elementOffsetBytes: DATA_OFFSET_BYTES + chunk - 10, lengthBytes: 10, bufferOffsetBytes: 0 },
      { role: 1, elementOffsetBytes: DATA_OFFSET_BYTES, lengthBytes: chunk, bufferOffsetBytes: 10 },
      { role: 2, elementOffsetBytes: DATA_OFFSET_BYTES, lengthBytes: 10, bufferOffsetBytes: chunk + 10 },
    ]);
    expect(x.reduce((a, e) => a + e.lengthBytes, 0)).toBe(chunk + 20);
  });
  it('coalesced mapping covers exactly the bytes of the per-chunk mapping, one extent per element', () => {
    for (const [off, len] of [[0, 3 * MiB], [chunk - 1, 5 * chunk + 7], [7 * chunk + 5, 1], [100, 2 * chunk], [2 * chunk, 0]] as const) {
      const fine = mapRaid0(g, off, len);
      const coarse = mapRaid0Coalesced(g, off, len);
      expect(new Set(coarse.map((e) => e.role)).size).toBe(coarse.length);
      for (let role = 0; role < n; role++) {
        const mine = fine.filter((e) => e.role === role);
        const c = coarse.find((e) => e.role === role);
        if (mine.length === 0) {
          expect(c).toBeUndefined();
          continue;
        }
        expect(c!.elementOffsetBytes).toBe(mine[0]!.elementOffsetBytes);
        expect(c!.lengthBytes).toBe(mine.reduce((a, e) => a + e.lengthBytes, 0));
        const last = mine[mine.length - 1]!;
        expect(c!.elementOffsetBytes + c!.lengthBytes).toBe(last.elementOffsetBytes + last.lengthBytes);
      }
    }
  });
});

describe('raid1', () => {
  const g: VolumeGeometry = { layout: 'raid1', chunkBytes: 0, sizeBytes: MiB, elements: [el(MiB), el(2 * MiB)] };
  it('maps the same range onto every given leg', () => {
    expect(mapRaid1(g, [0, 1], 4096, 512)).toEqual([
      { role: 0, elementOffsetBytes: DATA_OFFSET_BYTES + 4096, lengthBytes: 512, bufferOffsetBytes: 0 },
      { role: 1, elementOffsetBytes: DATA_OFFSET_BYTES + 4096, lengthBytes: 512, bufferOffsetBytes: 0 },
    ]);
  });
  it('reads pick the least-queued active leg, round-robin on ties, none when no leg is active', () => {
    const q0 = () => 0;
    expect([0, 1, 2, 3].map((r) => pickReadLeg([0, 1], q0, r))).toEqual([0, 1, 0, 1]);
    expect(pickReadLeg([0, 1], (role) => (role === 0 ? 5 : 1), 0)).toBe(1);
    expect(pickReadLeg([1], q0, 7)).toBe(1);
    expect(pickReadLeg([], q0, 0)).toBe(-1);
  });
});
