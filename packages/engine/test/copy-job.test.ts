// The write gate (fences against client writes) and the copy job behind resync and rebuild.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCopyJob, CopyAborted, type CopyUnit } from '../dist/durable/copy-job.js';
import { WriteGate } from '../src/datapath/write-gate.js';
import { DATA_OFFSET_BYTES } from '../src/meta/types.js';
import { equalBytes, KiB, MiB, pattern, startWith, stop, type Started } from './datapath-harness.js';
import { readFileRange } from './helpers.js';

describe('WriteGate', () => {
  it('a fence waits for overlapping writes in flight, and holds back new ones until lifted', async () => {
    const gate = new WriteGate();
    const events: string[] = [];
    const releaseA = await gate.enter(0, 100);
    const releaseFar = await gate.enter(1000, 100);
    const fenced = gate.fence(50, 100).then((lift) => { events.push('fenced'); return lift; });
    await new Promise((r) => setTimeout(r, 10));
    expect(events).toEqual([]); // write A still in flight
    const blocked = gate.enter(120, 10).then((release) => { events.push('B admitted'); return release; });
    const free = await gate.enter(500, 10); // outside the fence: admitted at once
    free();
    releaseA();
    const lift = await fenced;
    await new Promise((r) => setTimeout(r, 10));
    expect(events).toEqual(['fenced']);
    lift();
    (await blocked)();
    releaseFar();
    expect(events).toEqual(['fenced', 'B admitted']);
    expect(gate.writesInFlight).toBe(0);
  });

  it('a failing hook releases the write and passes the error on', async () => {
    const gate = new WriteGate();
    gate.setHook(() => Promise.reject(new Error('bitmap write failed')));
    await expect(gate.enter(0, 10)).rejects.toThrow('bitmap write failed');
    expect(gate.writesInFlight).toBe(0);
  });
});

describe('runCopyJob over the raw channel (raid1 of 2)', () => {
  let s: Started;
  beforeAll(async () => {
    s = await startWith('raid1', 2);
  });
  afterAll(() => stop(s));

  const units = (from: number, count: number, unitBytes: number): CopyUnit[] => Array.from({ length: count }, (_, i) => ({
    source: 0, target: 1, elementOffsetBytes: DATA_OFFSET_BYTES + from + i * unitBytes, lengthBytes: unitBytes,
    volumeOffsetBytes: from + i * unitBytes, volumeLengthBytes: unitBytes,
  }));

  it('copies every unit, reports progress to 100 %, and respects a MiB/s limit', async () => {
    const data = pattern(4 * MiB, 9);
    s.dp.setElementState(1, 'failed'); // writes reach leg 0 only
    await s.dp.volumeIo(0).write(0, data);
    s.dp.setElementState(1, 'rebuilding');
    const seen: number[] = [];
    const started = Date.now();
    const final = await runCopyJob({
      raw: s.dp.raw, gate: s.dp.volumeIo(0).gate, units: units(0, 16, 256 * KiB), totalBytes: 4 * MiB,
      maxMiBPerSec: 8, onProgress: (p) => seen.push(p.percent), progressEveryMs: 0,
    });
    s.dp.setElementState(1, 'active');
    expect(final).toMatchObject({ doneBytes: 4 * MiB, percent: 100 });
    expect(Date.now() - started, '4 MiB at 8 MiB/s takes about half a second').toBeGreaterThanOrEqual(350);
    expect(seen.at(-1)).toBe(100);
    expect(equalBytes(readFileRange(s.paths[1]!, DATA_OFFSET_BYTES, data.length), data)).toBe(true);
  });

  it('stops on abort with CopyAborted', async () => {
    const ac = new AbortController();
    ac.abort('operator cancelled');
    await expect(runCopyJob({ raw: s.dp.raw, gate: s.dp.volumeIo(0).gate, units: units(0, 4, 64 * KiB), totalBytes: 256 * KiB, signal: ac.signal }))
      .rejects.toBeInstanceOf(CopyAborted);
  });
});

describe('mirrorUnits', () => {
  const geometry = (layout: 'raid1' | 'raid10', n: number) => ({
    layout, chunkBytes: 64 * KiB, sizeBytes: 8 * MiB,
    elements: Array.from({ length: n }, () => ({ dataOffsetBytes: DATA_OFFSET_BYTES, dataSizeBytes: 16 * MiB })),
  });

  it('raid10: only the chunks of the target pair, copied from the partner at the same element offset', async () => {
    const { mirrorUnits } = await import('../dist/durable/units.js');
    const units = [...mirrorUnits({ geometry: geometry('raid10', 4), elements: [10, 11, 12, 13], targetRole: 2, pickSource: (c) => c[0] ?? -1 },
      [{ offsetBytes: 0, lengthBytes: 512 * KiB }])];
    expect(units.map((u) => [u.source, u.target, u.elementOffsetBytes - DATA_OFFSET_BYTES, u.volumeOffsetBytes])).toEqual([
      [13, 12, 0, 64 * KiB], [13, 12, 64 * KiB, 192 * KiB], [13, 12, 128 * KiB, 320 * KiB], [13, 12, 192 * KiB, 448 * KiB],
    ]);
  });

  it('raid1: 1 MiB units from the picked leg, ranges clipped to the volume', async () => {
    const { mirrorUnits, mirrorUnitBytes } = await import('../dist/durable/units.js');
    const t = { geometry: geometry('raid1', 3), elements: [0, 1, 2], targetRole: 1, pickSource: (c: readonly number[]) => c.at(-1) ?? -1 };
    const units = [...mirrorUnits(t, [{ offsetBytes: 7 * MiB + 4096, lengthBytes: 4 * MiB }])];
    expect(units.map((u) => [u.source, u.target, u.volumeOffsetBytes, u.lengthBytes])).toEqual([[2, 1, 7 * MiB + 4096, MiB - 4096]]);
    expect(mirrorUnitBytes(t, [{ offsetBytes: 0, lengthBytes: 3 * MiB + 5 }])).toBe(3 * MiB + 5);
  });
});
