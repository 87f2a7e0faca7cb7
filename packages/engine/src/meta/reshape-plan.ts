// Reshape planning, pure (no I/O): which reshapes are supported, the geometry a copy reads
// through, the capacity of a geometry, the next copy step with its backup, and where a backup
// lives on the elements. The model (docs/reshape.md): a forward copy with a persisted position P;
// [0, P) is held by the NEW geometry, [P, C0) by the OLD. Row-based layouts keep row r of every
// element at data offset r·c, with d data chunks per row (raid0 n, raid5 n-1, raid6 n-2, raid10
// n/2: near-2 is raid0 over the n/2 mirror pairs, each chunk on both legs of its pair).
import type { Layout } from '../config/types.js';
import { layoutCountProblem } from '../config/validate.js';
import { layoutCapacityBytes } from './layout.js';

export interface ReshapeGeometry {
  readonly layout: Layout;
  readonly count: number;
  readonly chunkBytes: number;
  /** Data-area bytes of each element (the smallest one's, as the superblocks say). */
  readonly dataSizeBytes: number;
  /**
   * The volume's size when it is below the capacity (a volume created or grown to a size);
   * absent = geometryCapacity. For `from` it is C0, the end of the copy.
   */
  readonly sizeBytes?: number;
}

export interface ReshapeStep {
  readonly startBytes: number;
  readonly endBytes: number;
  /** Volume bytes [startBytes, endBytes) to save in the backup area before the new rows are written. */
  readonly backup: { readonly startBytes: number; readonly endBytes: number } | null;
}

export interface BackupExtent {
  readonly role: number;
  /** Absolute on the element (the backup area starts at BACKUP_AREA_OFFSET_BYTES). */
  readonly elementOffsetBytes: number;
  readonly lengthBytes: number;
  readonly bufferOffsetBytes: number;
}

/** The raid1 bitmap area [64 KiB, 1 MiB) of the element header, unused by raid0/5/6. */
export const BACKUP_AREA_OFFSET_BYTES = 64 * 1024;
export const BACKUP_AREA_BYTES = 960 * 1024;

const WHAT_INSTEAD = 'supported: linear/raid0/raid5/raid6 with more elements, raid10 with more pairs, raid1 → raid5, raid1 → raid10, raid5 → raid6';

/** Data chunks per row of a row-based layout; 0 for linear/raid1. */
export function dataChunksPerRow(layout: Layout, count: number): number {
  switch (layout) {
    case 'raid0': return count;
    case 'raid5': return count - 1;
    case 'raid6': return count - 2;
    // Near-2: the pairs are the columns (roles 2k, 2k+1 both hold column k at the same offset).
    case 'raid10': return Math.floor(count / 2);
    default: return 0;
  }
}

/**
 * The geometry the copy reads through: a raid1 is a raid5 over its first 2 legs (a row = one chunk
 * + its copy) or, going to raid10 (`to`), a raid10 of one pair (legs 0 and 1, the same bytes at the
 * same offsets, no journal); others as they are.
 */
export function copyGeometry(from: ReshapeGeometry, to?: { readonly layout: Layout }): ReshapeGeometry {
  if (from.layout !== 'raid1') return from;
  return { ...from, layout: to?.layout === 'raid10' ? 'raid10' : 'raid5', count: 2 };
}

/** Usable bytes of a geometry whose elements all hold dataSizeBytes (layout.ts layoutCapacityBytes). */
export function geometryCapacity(g: ReshapeGeometry): number {
  return layoutCapacityBytes(g.layout, new Array<number>(g.count).fill(g.dataSizeBytes), g.chunkBytes);
}

/** The size the volume has in this geometry: sizeBytes when given, else the capacity. */
function sizeOf(g: ReshapeGeometry): number {
  return g.sizeBytes ?? geometryCapacity(g);
}

function transitionRefusal(from: ReshapeGeometry, to: ReshapeGeometry): string | null {
  const a = from.layout;
  const b = to.layout;
  if (a === 'raid10' && b !== 'raid10') return `raid10 → ${b} is not supported yet (${WHAT_INSTEAD}); copy the data to a new ${b} volume instead`;
  if (b === 'raid10' && a !== 'raid10' && a !== 'raid1') return `${a} → raid10 is not supported yet (${WHAT_INSTEAD}); copy the data to a new raid10 volume instead`;
  if (to.count < from.count) return `removing elements (${from.count} → ${to.count}) is not supported yet: a volume cannot shrink; copy the data to a smaller new volume instead`;
  if (a === 'linear' && b !== 'linear') return `changing linear to ${b} is not supported yet; copy the data to a new ${b} volume instead`;
  if (a === b && from.count === to.count) return `volume is already ${a} over ${from.count} elements: nothing to change (add elements, or name another layout)`;
  if (a === 'raid1' && b === 'raid1') return 'a raid1 gains legs with `onestack volume add-member`, not by a reshape';
  if (a === 'raid1' && b !== 'raid5' && b !== 'raid10') return `raid1 → ${b} is not supported yet: migrate raid1 → raid5 first${b === 'raid6' ? ', then raid5 → raid6' : ''}`;
  if (a === 'raid1' && b === 'raid5' && to.count < 3) return 'raid1 → raid5 needs at least 3 elements: add one with --add';
  if (b === 'raid10' && (to.count < 4 || to.count % 2 !== 0)) {
    return `${a} → raid10 needs an even number of elements, at least 4 (mirror pairs); it would have ${to.count}: add ${to.count < 4 ? 4 - to.count : 1} more`;
  }
  const same = a === b && (a === 'linear' || a === 'raid0' || a === 'raid5' || a === 'raid6' || a === 'raid10');
  if (!same && !(a === 'raid1' && (b === 'raid5' || b === 'raid10')) && !(a === 'raid5' && b === 'raid6')) {
    return `${a} → ${b} is not supported yet (${WHAT_INSTEAD}); copy the data to a new ${b} volume instead`;
  }
  if (a === 'raid5' && b === 'raid6' && to.count - 2 < from.count - 1) {
    return `raid5 over ${from.count} → raid6 needs at least ${from.count + 1} elements (raid6 keeps one more parity chunk per row): add ${from.count + 1 - to.count} more`;
  }
  return null;
}

/**
 * null when the reshape is supported; else the reason, for the user (what is not supported and
 * what to do instead). `from` is the volume as it is (a raid1 as raid1). Integrity, checkpoints
 * and write-behind legs are not geometry: see reshapeFeatureRefusal.
 */
export function reshapeRefusal(from: ReshapeGeometry, to: ReshapeGeometry): string | null {
  if (from.chunkBytes !== to.chunkBytes) return `changing the chunk size (${from.chunkBytes / 1024} KiB → ${to.chunkBytes / 1024} KiB) is not supported yet; copy the data to a new volume instead`;
  const transition = transitionRefusal(from, to);
  if (transition !== null) return transition;
  const countProblem = layoutCountProblem(to.layout, to.count);
  if (countProblem !== undefined) return `the new geometry: ${countProblem}`;
  // Linear appends the new elements as they are (no copy, no rows).
  if (from.layout === 'linear') return null;
  if (to.dataSizeBytes < from.dataSizeBytes) {
    return `every element must hold at least ${from.dataSizeBytes} data bytes (as the current ones do); a new element holds only ${to.dataSizeBytes}: use a larger element`;
  }
  const c = copyGeometry(from, to);
  if (sizeOf(to) < sizeOf(c)) return `the new geometry holds ${sizeOf(to)} bytes, less than the volume's ${sizeOf(c)}: use larger elements`;
  // The largest backup is one old row (nextStep: a step that needs one is a single new row).
  const backupMax = dataChunksPerRow(c.layout, c.count) * c.chunkBytes;
  if (backupMax > to.count * BACKUP_AREA_BYTES) {
    return `a reshape step would back up ${backupMax} bytes, more than the backup areas of ${to.count} elements hold (${BACKUP_AREA_BYTES} bytes each): use a smaller chunk size`;
  }
  return null;
}

/** The non-geometry refusals: what the volume carries that a reshape does not handle yet. */
export function reshapeFeatureRefusal(v: { readonly integrity?: boolean; readonly checkpoints?: boolean; readonly writeBehind?: boolean }): string | null {
  if (v.integrity === true) return 'reshaping a volume with integrity is not supported yet; copy the data to a new volume instead';
  if (v.checkpoints === true) return 'reshaping a volume with checkpoints is not supported yet: delete its checkpoints first';
  if (v.writeBehind === true) return 'reshaping a volume with a write-behind leg is not supported yet: turn write-behind off for the reshape';
  return null;
}

/**
 * The step at position P, a window [P, E) of whole new rows (the last one ends at C0, which need
 * not be a whole row), and what it must back up first.
 *
 * Why the backup rule holds. Old byte x lives in old row floor(x / (d0·c)), new byte x in new row
 * floor(x / (d1·c)); row r is at data offset r·c on every element. The step writes new rows
 * [P/(d1·c), R) with R = ceil(E / (d1·c)). Data the old view must still serve after a crash is
 * every byte ≥ P (the resumed step re-reads from P), and it sits in old rows from
 * floor(P / (d0·c)) up. If R ≤ floor(P / (d0·c)) the new rows land only on old rows whose bytes
 * are all < P (already copied): no backup. Otherwise old rows [floor(P/(d0·c)), R) are
 * overwritten; the bytes ≥ P among them are [P, B) with B = min(C0, R·d0·c). As d0 ≤ d1,
 * R·d0·c ≤ E (or B = C0 = E at the end), so B ≤ E: the backup lies inside the window, and no
 * byte ≥ E is ever overwritten. A step that needs a backup is one new row (so the backup is at
 * most one old row, d0·c); without one it spans up to stepBytesMax, still below floor(P/(d0·c)).
 * The last step may end at C0 inside a new row: see stepWriteEndBytes for how that row is written.
 */
export function nextStep(fromIn: ReshapeGeometry, to: ReshapeGeometry, positionBytes: number, stepBytesMax: number): ReshapeStep {
  const from = copyGeometry(fromIn, to);
  const d0 = dataChunksPerRow(from.layout, from.count);
  const d1 = dataChunksPerRow(to.layout, to.count);
  if (d0 === 0 || d1 === 0) throw new RangeError(`no copy step for ${from.layout} → ${to.layout} (not row-based)`);
  if (from.chunkBytes !== to.chunkBytes || d1 < d0) throw new RangeError(`reshape ${from.layout}×${from.count} → ${to.layout}×${to.count}: needs the same chunk and no fewer data chunks per row`);
  const c = to.chunkBytes;
  const newRow = d1 * c;
  const oldRow = d0 * c;
  const c0 = sizeOf(from);
  const p = positionBytes;
  if (!Number.isSafeInteger(p) || p < 0 || p >= c0 || p % newRow !== 0) throw new RangeError(`reshape position ${p} is not a whole new row (${newRow} bytes) below ${c0}`);
  const first = p / newRow;
  const firstOldRow = Math.floor(p / oldRow);
  const rowsMax = Math.max(1, Math.floor(stepBytesMax / newRow));
  const free = firstOldRow - first;
  if (free >= 1) return { startBytes: p, endBytes: Math.min(c0, p + Math.min(free, rowsMax) * newRow), backup: null };
  const end = Math.min(c0, p + newRow);
  return { startBytes: p, endBytes: end, backup: { startBytes: p, endBytes: Math.min(c0, (first + 1) * oldRow) } };
}

/**
 * Where the new-view write of a step ending at `endBytes` ends: at whole new rows. Only the last
 * step can end inside a row (at C0); the job writes that row whole, [C0, row end) as zeroes, so
 * the row's parity is computed over them (not over stale old-geometry bytes still there) and they
 * read as zeroes, like the tail the finish zeroes from the next row on.
 */
export function stepWriteEndBytes(to: ReshapeGeometry, endBytes: number): number {
  const newRow = dataChunksPerRow(to.layout, to.count) * to.chunkBytes;
  if (newRow === 0) throw new RangeError(`${to.layout} has no rows`);
  return Math.ceil(endBytes / newRow) * newRow;
}

/**
 * Where a backup of `lengthBytes` goes: the backup area of the NEW geometry's roles in role order,
 * filling each (BACKUP_AREA_BYTES at most) before the next. Throws when it does not fit.
 */
export function backupExtents(to: ReshapeGeometry, lengthBytes: number): BackupExtent[] {
  if (!Number.isSafeInteger(lengthBytes) || lengthBytes < 0 || lengthBytes > to.count * BACKUP_AREA_BYTES) {
    throw new RangeError(`a backup of ${lengthBytes} bytes does not fit ${to.count} backup areas of ${BACKUP_AREA_BYTES} bytes`);
  }
  const out: BackupExtent[] = [];
  for (let role = 0, done = 0; done < lengthBytes; role++) {
    const len = Math.min(BACKUP_AREA_BYTES, lengthBytes - done);
    out.push({ role, elementOffsetBytes: BACKUP_AREA_OFFSET_BYTES, lengthBytes: len, bufferOffsetBytes: done });
    done += len;
  }
  return out;
}
