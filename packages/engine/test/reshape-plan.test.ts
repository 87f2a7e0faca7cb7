// The reshape planner (meta/reshape-plan.ts, pure). A model check: for many geometries, walk every
// step from 0 to C0 over a simulated array (one cell per byte of each element, holding which
// volume byte it carries) and show that (a) after a step's new rows are written — the most a
// crash can leave behind — every byte the resumed step and the rest of the reshape still need
// reads back right: [P, B) from the backup, [B, C0) through the old view; (b) new rows never go
// past the window and never touch [0, P); (c) the final image is the new layout of the original
// data, parity cells included. Element offsets come from the data path's own maps.
import { describe, expect, it } from 'vitest';
import {
  BACKUP_AREA_BYTES, BACKUP_AREA_OFFSET_BYTES, backupExtents, copyGeometry, dataChunksPerRow, geometryCapacity, nextStep, reshapeFeatureRefusal, reshapeRefusal, stepWriteEndBytes,
  type ReshapeGeometry,
} from '../src/meta/reshape-plan.js';
import { layoutCapacityBytes } from '../src/meta/layout.js';
import type { Layout } from '../src/config/types.js';
import { checkOld, finishAndCheck, geo, initialImage, writeNew } from './reshape-model.js';

const KiB = 1024;
const MiB = 1024 * KiB;

interface ModelCase { readonly from: ReshapeGeometry; readonly to: ReshapeGeometry; readonly c0: number; readonly stepBytesMax: number }

/** Runs a whole reshape in the model; returns how many steps needed a backup. */
function runModel({ from: asIs, to, c0, stepBytesMax }: ModelCase, plan: typeof nextStep = nextStep, pad = true): { steps: number; backups: number } {
  const from = { ...copyGeometry(asIs, to), sizeBytes: c0 };
  const c = to.chunkBytes;
  const cells = initialImage(asIs, to, c0);
  const backupArea = new Map<number, number>();
  let p = 0;
  let steps = 0;
  let backups = 0;
  while (p < c0) {
    const step = plan(from, to, p, stepBytesMax);
    steps++;
    expect(step.startBytes).toBe(p);
    expect(step.endBytes).toBeGreaterThan(p);
    expect(step.endBytes === c0 || step.endBytes % (dataChunksPerRow(to.layout, to.count) * c) === 0).toBe(true);
    expect(step.endBytes - p).toBeLessThanOrEqual(Math.max(stepBytesMax, dataChunksPerRow(to.layout, to.count) * c));
    // Read the window through the old view (nothing of it destroyed yet).
    checkOld(from, cells, p, step.endBytes, `step at ${p}: window`);
    let safeFrom = p;
    if (step.backup !== null) {
      backups++;
      expect(step.backup.startBytes).toBe(p);
      expect(step.backup.endBytes).toBeLessThanOrEqual(step.endBytes);
      expect(step.backup.endBytes - p).toBeLessThanOrEqual(dataChunksPerRow(from.layout, from.count) * c);
      for (const ext of backupExtents(to, step.backup.endBytes - p)) {
        for (let i = 0; i < ext.lengthBytes; i++) backupArea.set(ext.role * BACKUP_AREA_BYTES + i, p + ext.bufferOffsetBytes + i + 1);
      }
      safeFrom = step.backup.endBytes;
    }
    const snapshotBelow = cells.map((e) => e.slice(0, (p / (dataChunksPerRow(to.layout, to.count) * c)) * c));
    const writeEnd = pad ? stepWriteEndBytes(to, step.endBytes) : step.endBytes;
    expect(writeEnd === step.endBytes || step.endBytes === c0).toBe(true);
    writeNew(to, cells, p, writeEnd, (x) => (x < c0 ? x + 1 : 0));
    // A crash now (or anywhere during the write: a subset of it) must leave every needed byte readable.
    if (step.backup !== null) {
      for (const ext of backupExtents(to, step.backup.endBytes - p)) {
        for (let i = 0; i < ext.lengthBytes; i++) expect(backupArea.get(ext.role * BACKUP_AREA_BYTES + i)).toBe(p + ext.bufferOffsetBytes + i + 1);
      }
    }
    checkOld(from, cells, safeFrom, c0, `step [${p}, ${step.endBytes}) (backup ${JSON.stringify(step.backup)})`);
    // Rows below P (already in the new geometry) untouched.
    snapshotBelow.forEach((s, role) => { if (!s.every((v, i) => cells[role]![i] === v)) throw new Error(`step at ${p} overwrote new rows below it on role ${role}`); });
    p = step.endBytes;
  }
  finishAndCheck(to, cells, c0);
  return { steps, backups };
}

function modelCases(): ModelCase[] {
  const out: ModelCase[] = [];
  const c = 4;
  const pairs: Array<[Layout, number, Layout, number]> = [];
  for (let n = 2; n <= 4; n++) for (let m = n + 1; m <= n + 3; m++) pairs.push(['raid0', n, 'raid0', m]);
  for (let n = 3; n <= 5; n++) for (let m = n + 1; m <= n + 3; m++) pairs.push(['raid5', n, 'raid5', m]);
  for (let n = 4; n <= 6; n++) for (let m = n + 1; m <= n + 2; m++) pairs.push(['raid6', n, 'raid6', m]);
  for (let n = 3; n <= 5; n++) for (let m = n + 1; m <= n + 3; m++) pairs.push(['raid5', n, 'raid6', m]);
  for (let n = 2; n <= 3; n++) for (let m = Math.max(3, n); m <= 5; m++) pairs.push(['raid1', n, 'raid5', m]);
  // raid10 (near-2): n → m pairs grow like raid0 over the pairs, both legs written; raid1 is a raid10 of one pair.
  for (let n = 4; n <= 8; n += 2) for (let m = n + 2; m <= n + 6; m += 2) pairs.push(['raid10', n, 'raid10', m]);
  for (let n = 2; n <= 4; n++) for (let m = 4; m <= 8; m += 2) pairs.push(['raid1', n, 'raid10', m]);
  for (const [a, n, b, m] of pairs) {
    for (const rows of [5, 13, 31]) {
      const from = geo(a, n, c, rows * c);
      const to = geo(b, m, c, rows * c);
      const cap = geometryCapacity(copyGeometry(from, to));
      for (const c0 of [cap, cap - 3, Math.floor(cap / 2)]) {
        for (const stepBytesMax of [1, 3 * dataChunksPerRow(b, m) * c, 1 << 20]) out.push({ from, to, c0, stepBytesMax });
      }
    }
  }
  return out;
}

describe('reshape planner: model check of every step', () => {
  it('no step overwrites old data still needed unless backed up; the final image is the new layout', () => {
    const cases = modelCases();
    let backups = 0;
    let steps = 0;
    for (const k of cases) {
      expect(reshapeRefusal(k.from, k.to), `${k.from.layout}×${k.from.count} → ${k.to.layout}×${k.to.count}`).toBeNull();
      const r = runModel(k);
      steps += r.steps;
      backups += r.backups;
      expect(r.backups).toBeGreaterThan(0); // the first row always overlaps
    }
    expect(cases.length).toBeGreaterThan(400);
    expect(steps).toBeGreaterThan(backups);
  });

  it('the model notices a wrong rule: no backup, or a window one row past the free rows, destroys old data', () => {
    const k: ModelCase = { from: geo('raid5', 4, 4, 80), to: geo('raid5', 5, 4, 80), c0: 3 * 80, stepBytesMax: 1 << 20 };
    expect(runModel(k).backups).toBeGreaterThan(0);
    const noBackup: typeof nextStep = (...a) => ({ ...nextStep(...a), backup: null });
    expect(() => runModel(k, noBackup)).toThrow(/destroyed/);
    const greedy: typeof nextStep = (from, to, p, max) => {
      const s = nextStep(from, to, p, max);
      return s.backup !== null ? s : { ...s, endBytes: Math.min(k.c0, s.endBytes + 16) };
    };
    expect(() => runModel(k, greedy)).toThrow(/destroyed/);
    // A last step that ends inside a new row and is written only up to C0 leaves stale bytes (and, in
    // a real stripe, parity over them) in that row: the final image check sees them.
    const partial: ModelCase = { ...k, c0: 3 * 80 - 4 };
    expect(() => runModel(partial, nextStep, false)).toThrow(/deeply equal/);
    expect(runModel(partial).steps).toBeGreaterThan(0);
    expect(stepWriteEndBytes(k.to, 3 * 80 - 4)).toBe(3 * 80);
    expect(() => stepWriteEndBytes(geo('linear', 3), 4096)).toThrow(/no rows/);
  });

  it('raid10: the model notices a missing backup (on either leg) and a greedy window', () => {
    const k: ModelCase = { from: geo('raid10', 4, 4, 80), to: geo('raid10', 6, 4, 80), c0: 2 * 80, stepBytesMax: 1 << 20 };
    expect(runModel(k).backups).toBeGreaterThan(0);
    const noBackup: typeof nextStep = (...a) => ({ ...nextStep(...a), backup: null });
    expect(() => runModel(k, noBackup)).toThrow(/destroyed/);
    const greedy: typeof nextStep = (from, to, p, max) => {
      const s = nextStep(from, to, p, max);
      return s.backup !== null ? s : { ...s, endBytes: Math.min(k.c0, s.endBytes + 12) };
    };
    expect(() => runModel(k, greedy)).toThrow(/destroyed/);
    const r1: ModelCase = { from: geo('raid1', 2, 4, 80), to: geo('raid10', 4, 4, 80), c0: 80, stepBytesMax: 1 << 20 };
    // raid1 → raid10 overwrites only rows already copied (new row r puts chunk 2r where old chunk r
    // was) or, row 0, its own bytes in place: the planner's one-chunk backup there is spare caution.
    expect(runModel(r1, noBackup).backups).toBe(0);
    expect(runModel(r1)).toEqual({ steps: expect.any(Number), backups: 1 });
  });
});

describe('reshape planner: steps and backups', () => {
  it('raid5 4 → 5 (64 KiB chunks): backups for the first rows, then growing windows capped by stepBytesMax', () => {
    const from = geo('raid5', 4);
    const to = geo('raid5', 5);
    const newRow = 4 * 64 * KiB;
    const oldRow = 3 * 64 * KiB;
    expect(nextStep(from, to, 0, 4 * MiB)).toEqual({ startBytes: 0, endBytes: newRow, backup: { startBytes: 0, endBytes: oldRow } });
    expect(nextStep(from, to, newRow, 4 * MiB)).toEqual({ startBytes: newRow, endBytes: 2 * newRow, backup: { startBytes: newRow, endBytes: 2 * oldRow } });
    expect(nextStep(from, to, 3 * newRow, 4 * MiB)).toEqual({ startBytes: 3 * newRow, endBytes: 4 * newRow, backup: null });
    expect(nextStep(from, to, 300 * newRow, 4 * MiB)).toEqual({ startBytes: 300 * newRow, endBytes: 316 * newRow, backup: null });
    expect(nextStep(from, to, 300 * newRow, 1)).toEqual({ startBytes: 300 * newRow, endBytes: 301 * newRow, backup: null });
  });

  it('raid5 n → raid6 n+1 keeps d: every step is one row with a backup of that row', () => {
    const from = geo('raid5', 4);
    const to = geo('raid6', 5);
    for (const row of [0, 1, 7, 100]) {
      const p = row * 3 * 64 * KiB;
      expect(nextStep(from, to, p, 4 * MiB)).toEqual({ startBytes: p, endBytes: p + 3 * 64 * KiB, backup: { startBytes: p, endBytes: p + 3 * 64 * KiB } });
    }
  });

  it('raid1 → raid5 reads as raid5 over 2; the last step ends at C0', () => {
    const from = geo('raid1', 2, 64 * KiB, 10 * 64 * KiB);
    const to = geo('raid5', 3, 64 * KiB, 10 * 64 * KiB);
    expect(copyGeometry(from)).toEqual({ ...from, layout: 'raid5', count: 2 });
    expect(copyGeometry(to)).toBe(to);
    expect(nextStep(from, to, 0, 4 * MiB).backup).toEqual({ startBytes: 0, endBytes: 64 * KiB });
    const c = 64 * KiB;
    // P = new row 1, old rows from 2: free, and the window stops at C0 (not a whole row).
    expect(nextStep({ ...from, sizeBytes: 2 * c + 4096 }, to, 2 * c, 4 * MiB)).toEqual({ startBytes: 2 * c, endBytes: 2 * c + 4096, backup: null });
    // raid5 4 → raid6 5 (d stays 3): the last, partial row is backed up up to C0.
    const end = nextStep({ ...geo('raid5', 4), sizeBytes: 6 * c + 4096 }, geo('raid6', 5), 6 * c, 4 * MiB);
    expect(end).toEqual({ startBytes: 6 * c, endBytes: 6 * c + 4096, backup: { startBytes: 6 * c, endBytes: 6 * c + 4096 } });
  });

  it('raid10 4 → 6: rows of 2 then 3 chunks (the pairs), backups for the first rows, windows after', () => {
    const from = geo('raid10', 4);
    const to = geo('raid10', 6);
    const c = 64 * KiB;
    expect(dataChunksPerRow('raid10', 4)).toBe(2);
    expect(copyGeometry(from, to)).toBe(from);
    expect(nextStep(from, to, 0, 4 * MiB)).toEqual({ startBytes: 0, endBytes: 3 * c, backup: { startBytes: 0, endBytes: 2 * c } });
    expect(nextStep(from, to, 3 * c, 4 * MiB)).toEqual({ startBytes: 3 * c, endBytes: 6 * c, backup: { startBytes: 3 * c, endBytes: 4 * c } });
    // P = new row 2 = old row 3: one free row, so no backup.
    expect(nextStep(from, to, 6 * c, 4 * MiB)).toEqual({ startBytes: 6 * c, endBytes: 9 * c, backup: null });
    expect(nextStep(from, to, 300 * 3 * c, 4 * MiB)).toEqual({ startBytes: 900 * c, endBytes: 900 * c + 21 * 3 * c, backup: null });
  });

  it('raid1 → raid10 reads as raid10 of one pair (legs 0 and 1), raid1 → raid5 still as raid5 over 2', () => {
    const from = geo('raid1', 3);
    expect(copyGeometry(from, geo('raid10', 4))).toEqual({ ...from, layout: 'raid10', count: 2 });
    expect(copyGeometry(from, geo('raid5', 4))).toEqual({ ...from, layout: 'raid5', count: 2 });
    expect(copyGeometry(from)).toEqual({ ...from, layout: 'raid5', count: 2 });
    const c = 64 * KiB;
    expect(nextStep(from, geo('raid10', 4), 0, 4 * MiB)).toEqual({ startBytes: 0, endBytes: 2 * c, backup: { startBytes: 0, endBytes: c } });
    // P = new row 1 = old row 3: old rows 1 and 2 are free, so two new rows.
    expect(nextStep(from, geo('raid10', 6), 3 * c, 4 * MiB)).toEqual({ startBytes: 3 * c, endBytes: 9 * c, backup: null });
  });

  it('refuses a position that is not a whole new row below C0, and layouts without rows', () => {
    const from = geo('raid5', 4);
    const to = geo('raid5', 5);
    for (const p of [-1, 4096, geometryCapacity(from), 1.5]) expect(() => nextStep(from, to, p, 4 * MiB)).toThrow(RangeError);
    expect(() => nextStep(geo('linear', 2), geo('linear', 3), 0, 4 * MiB)).toThrow(/not row-based/);
    expect(() => nextStep(geo('raid5', 5), geo('raid5', 4), 0, 4 * MiB)).toThrow(RangeError);
  });

  it('backupExtents fills the new roles in order, 960 KiB each, at 64 KiB on the element', () => {
    const to = geo('raid5', 5);
    expect(backupExtents(to, 0)).toEqual([]);
    expect(backupExtents(to, 192 * KiB)).toEqual([{ role: 0, elementOffsetBytes: BACKUP_AREA_OFFSET_BYTES, lengthBytes: 192 * KiB, bufferOffsetBytes: 0 }]);
    const big = backupExtents(to, 2 * BACKUP_AREA_BYTES + 4096);
    expect(big.map((e) => [e.role, e.lengthBytes, e.bufferOffsetBytes])).toEqual([[0, BACKUP_AREA_BYTES, 0], [1, BACKUP_AREA_BYTES, BACKUP_AREA_BYTES], [2, 4096, 2 * BACKUP_AREA_BYTES]]);
    expect(BACKUP_AREA_OFFSET_BYTES + BACKUP_AREA_BYTES).toBe(MiB);
    expect(() => backupExtents(to, 5 * BACKUP_AREA_BYTES + 1)).toThrow(RangeError);
  });
});

describe('reshape planner: capacity and refusals', () => {
  it('geometryCapacity agrees with layoutCapacityBytes', () => {
    for (const layout of ['linear', 'raid0', 'raid1', 'raid10', 'raid5', 'raid6'] as const) {
      for (const count of [4, 6]) {
        const g = geo(layout, count, 64 * KiB, 10 * MiB + 4096);
        expect(geometryCapacity(g)).toBe(layoutCapacityBytes(layout, new Array<number>(count).fill(g.dataSizeBytes), g.chunkBytes));
      }
    }
    expect(geometryCapacity(copyGeometry(geo('raid1', 3, 64 * KiB, 10 * MiB)))).toBe(geometryCapacity(geo('raid1', 3, 64 * KiB, 10 * MiB)));
  });

  it('accepts the supported reshapes', () => {
    const ok: Array<[ReshapeGeometry, ReshapeGeometry]> = [
      [geo('raid5', 4), geo('raid5', 5)], [geo('raid0', 2), geo('raid0', 3)], [geo('raid6', 4), geo('raid6', 6)],
      [geo('raid5', 3), geo('raid6', 4)], [geo('raid5', 4), geo('raid6', 6)], [geo('raid1', 2), geo('raid5', 3)],
      [geo('raid1', 3), geo('raid5', 3)], [geo('linear', 1), geo('linear', 3, 64 * KiB, 1 * MiB)],
      [geo('raid10', 4), geo('raid10', 6)], [geo('raid10', 4), geo('raid10', 8)], [geo('raid1', 2), geo('raid10', 4)],
      [geo('raid1', 3), geo('raid10', 4)], [geo('raid1', 4), geo('raid10', 4)],
    ];
    for (const [from, to] of ok) expect(reshapeRefusal(from, to), `${from.layout}×${from.count} → ${to.layout}×${to.count}`).toBeNull();
  });

  it('refuses the rest with what is not supported and what to do instead', () => {
    const no: Array<[ReshapeGeometry, ReshapeGeometry, RegExp]> = [
      [geo('raid5', 4), geo('raid5', 5, 128 * KiB), /chunk size .* not supported yet.*new volume/],
      [geo('raid5', 5), geo('raid5', 4), /removing elements .* not supported yet/],
      [geo('raid10', 4), geo('raid5', 5), /raid10 → raid5 is not supported yet/],
      [geo('raid0', 2), geo('raid10', 4), /raid0 → raid10 is not supported yet/],
      [geo('raid5', 3), geo('raid10', 4), /raid5 → raid10 is not supported yet/],
      [geo('raid10', 4), geo('raid10', 5), /even number of elements.*add 1 more/],
      [geo('raid1', 2), geo('raid10', 2), /even number of elements, at least 4.*add 2 more/],
      [geo('raid1', 2), geo('raid10', 3), /even number of elements, at least 4/],
      [geo('raid10', 6), geo('raid10', 4), /removing elements .* not supported yet/],
      [geo('raid10', 4), geo('raid10', 4), /nothing to change/],
      [geo('raid10', 4), geo('raid10', 6, 128 * KiB), /chunk size/],
      [geo('linear', 2), geo('raid5', 3), /linear to raid5 is not supported yet/],
      [geo('raid5', 4), geo('raid5', 4), /nothing to change/],
      [geo('raid1', 2), geo('raid1', 3), /add-member/],
      [geo('raid1', 2), geo('raid6', 4), /raid5 first, then raid5 → raid6/],
      [geo('raid1', 2), geo('raid5', 2), /at least 3 elements/],
      [geo('raid0', 3), geo('raid5', 4), /raid0 → raid5 is not supported yet/],
      [geo('raid6', 5), geo('raid5', 6), /raid6 → raid5 is not supported yet/],
      [geo('raid5', 4), geo('raid6', 4), /at least 5 elements/],
      [geo('raid5', 4), geo('raid5', 5, 64 * KiB, 32 * MiB), /at least .* data bytes.*larger element/],
      [geo('raid5', 4, 512 * MiB, 1024 * MiB), geo('raid5', 5, 512 * MiB, 1024 * MiB), /back up .*smaller chunk/],
    ];
    for (const [from, to, message] of no) expect(reshapeRefusal(from, to), `${from.layout}×${from.count} → ${to.layout}×${to.count}`).toMatch(message);
    expect(reshapeFeatureRefusal({ integrity: true })).toMatch(/integrity is not supported yet/);
    expect(reshapeFeatureRefusal({ checkpoints: true })).toMatch(/checkpoints/);
    expect(reshapeFeatureRefusal({ writeBehind: true })).toMatch(/write-behind/);
    expect(reshapeFeatureRefusal({})).toBeNull();
  });
});
