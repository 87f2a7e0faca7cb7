// A model of a reshape for tests (reshape-plan.test.ts, reshape-meta.test.ts): one cell per byte of
// each element's data area, holding which volume byte it carries (x + 1), a parity tag, or garbage.
// Element offsets come from the data path's own maps (imported read-only).
import { expect } from 'vitest';
import type { Layout } from '../src/config/types.js';
import { indexRole, type ParityGeometry } from '../src/datapath/map-parity.js';
import { stripeLocate, type VolumeGeometry } from '../src/datapath/map.js';
import { raid10Locate } from '../src/datapath/map-raid10.js';
import { dataChunksPerRow, geometryCapacity, stepWriteEndBytes, type ReshapeGeometry } from '../src/meta/reshape-plan.js';

const KiB = 1024;
const MiB = 1024 * KiB;
export const geo = (layout: Layout, count: number, chunkBytes = 64 * KiB, dataSizeBytes = 64 * MiB): ReshapeGeometry => ({ layout, count, chunkBytes, dataSizeBytes });

/** Where volume byte x lives in a row-based geometry: role and element data offset (raid10: the first leg). */
export function locate(g: ReshapeGeometry, x: number): { role: number; offset: number } {
  const c = g.chunkBytes;
  if (g.layout === 'raid0') {
    const at = stripeLocate(c, g.count, x);
    return { role: at.column, offset: at.columnOffsetBytes };
  }
  if (g.layout === 'raid10') return locateAll(g, x)[0]!;
  const pg = parityGeom(g);
  const chunk = Math.floor(x / c);
  const row = Math.floor(chunk / pg.k);
  return { role: indexRole(pg, row, chunk % pg.k), offset: row * c + (x % c) };
}

/** Every copy of volume byte x: raid10 both legs of its pair (from the data path's raid10Locate), others one. */
export function locateAll(g: ReshapeGeometry, x: number): { role: number; offset: number }[] {
  if (g.layout !== 'raid10') return [locate(g, x)];
  const vg = { elements: new Array(g.count).fill(0).map(() => ({ dataOffsetBytes: 0 })), chunkBytes: g.chunkBytes, sizeBytes: geometryCapacity(g) } as unknown as VolumeGeometry;
  return raid10Locate(vg, x).legs.map((l) => ({ role: l.role, offset: l.elementOffsetBytes }));
}

// Built by hand, not by parityGeometry(): the copy geometry of a raid1 is a raid5 over 2 (the data path allows it).
function parityGeom(g: ReshapeGeometry): ParityGeometry {
  const np = g.layout === 'raid6' ? 2 : 1;
  return { n: g.count, np, k: g.count - np, chunkBytes: g.chunkBytes, sizeBytes: geometryCapacity(g), dataOffsets: new Array<number>(g.count).fill(0) };
}

export const GARBAGE = -7;
const P_TAG = -1_000_000;
const Q_TAG = -2_000_000;

/**
 * Writes volume bytes [s, e) (token = byte + 1, or 0 past C0) through the new geometry; touched rows
 * get their parity tags, i.e. parity recomputed from the row as it is on disk (a full-row or
 * reconstruct write: what the last step's partial row needs, see nextStep).
 */
export function writeNew(to: ReshapeGeometry, cells: Int32Array[], s: number, e: number, token: (x: number) => number): void {
  const c = to.chunkBytes;
  const d1 = dataChunksPerRow(to.layout, to.count);
  for (let x = s; x < e; x++) {
    for (const at of locateAll(to, x)) cells[at.role]![at.offset] = token(x);
  }
  if (to.layout === 'raid0' || to.layout === 'raid10' || e <= s) return;
  const pg = parityGeom(to);
  for (let row = Math.floor(s / (d1 * c)); row < Math.ceil(e / (d1 * c)); row++) {
    for (let i = 0; i < c; i++) {
      cells[indexRole(pg, row, pg.k)]![row * c + i] = P_TAG - row;
      if (pg.np === 2) cells[indexRole(pg, row, pg.k + 1)]![row * c + i] = Q_TAG - row;
    }
  }
}

/** Every volume byte of [s, e) still reads back through the old view. */
export function checkOld(from: ReshapeGeometry, cells: Int32Array[], s: number, e: number, what: string): void {
  // Every copy: a mirror read may go to either leg.
  for (let x = s; x < e; x++) {
    for (const at of locateAll(from, x)) if (cells[at.role]![at.offset] !== x + 1) throw new Error(`${what}: old byte ${x} destroyed (role ${at.role})`);
  }
}

/** The original image: a raid1 as every leg holding byte x at offset x; else the old layout. `to` sizes the elements. */
export function initialImage(asIs: ReshapeGeometry, to: ReshapeGeometry, c0: number): Int32Array[] {
  const cells = Array.from({ length: to.count }, () => new Int32Array(to.dataSizeBytes).fill(GARBAGE));
  if (asIs.layout === 'raid1') for (let r = 0; r < asIs.count; r++) for (let x = 0; x < c0; x++) cells[r]![x] = x + 1;
  else writeNew(asIs, cells, 0, c0, (x) => x + 1);
  return cells;
}

/**
 * The FINISH: zero the new rows after the one holding C0 (as the job's zeroTail: [C0, that row's
 * end) is the last step's job, stepWriteEndBytes); then the whole image must be the new layout of
 * the data, zeroes past C0.
 */
export function finishAndCheck(to: ReshapeGeometry, cells: Int32Array[], c0: number): void {
  const c1 = geometryCapacity(to);
  writeNew(to, cells, stepWriteEndBytes(to, c0), c1, () => 0);
  const expected = Array.from({ length: to.count }, () => new Int32Array(to.dataSizeBytes).fill(GARBAGE));
  writeNew(to, expected, 0, c1, (x) => (x < c0 ? x + 1 : 0));
  const rows = c1 / (dataChunksPerRow(to.layout, to.count) * to.chunkBytes);
  expected.forEach((e, role) => expect(cells[role]!.subarray(0, rows * to.chunkBytes)).toEqual(e.subarray(0, rows * to.chunkBytes)));
}

export type { Layout };
