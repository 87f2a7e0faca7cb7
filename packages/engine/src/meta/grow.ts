// Volume growth without restriping (engine volume-grow.ts): the pure part. Which element bytes a
// volume of a given size needs, which of them the old size already used, and the size the
// superblocks agree on at assembly (so a grow interrupted between superblock writes keeps the
// old size). No I/O here: every rule is unit-tested.
import type { Layout } from '../config/types.js';
import type { Superblock } from './superblock.js';

/** Data columns of one stripe row (0: the layout has no rows). */
function columnsOf(layout: Layout, n: number): number {
  switch (layout) {
    case 'raid0': return n;
    case 'raid10': return Math.floor(n / 2);
    case 'raid5': return n - 1;
    case 'raid6': return n - 2;
    default: return 0;
  }
}

/**
 * Bytes of each element's data area (by role) that a volume of `sizeBytes` maps onto, given the
 * elements' current data sizes. Linear: the elements before the last keep their sizes (the
 * mapping concatenates them, so only the last one may grow); raid1: every leg holds the whole
 * volume; striped layouts: whole rows, so every element holds ceil(size / row) chunks.
 */
export function bytesNeeded(layout: Layout, chunkBytes: number, current: readonly number[], sizeBytes: number): number[] {
  const n = current.length;
  if (layout === 'linear') {
    let start = 0;
    return current.map((d, role) => {
      const need = role === n - 1 ? Math.max(0, sizeBytes - start) : Math.min(d, Math.max(0, sizeBytes - start));
      start += d;
      return need;
    });
  }
  if (layout === 'raid1') return current.map(() => sizeBytes);
  const rowBytes = columnsOf(layout, n) * chunkBytes;
  const rows = Math.ceil(sizeBytes / rowBytes);
  return current.map(() => rows * chunkBytes);
}

/**
 * The largest volume the elements can hold when each may use up to `room[i]` bytes of data area
 * (linear: only the last element beyond its current size). Striped layouts: whole chunks of the
 * smallest room.
 */
export function capacityWithin(layout: Layout, chunkBytes: number, current: readonly number[], room: readonly number[]): number {
  const n = current.length;
  if (layout === 'linear') return current.slice(0, n - 1).reduce((a, b) => a + b, 0) + Math.max(current[n - 1] ?? 0, room[n - 1] ?? 0);
  const min = Math.min(...room.map((r, i) => Math.max(r, current[i] ?? 0)));
  if (layout === 'raid1') return min;
  return columnsOf(layout, n) * Math.floor(min / chunkBytes) * chunkBytes;
}

/** One element's part of a grow: its new data size, and the range [fromBytes, toBytes) of its data area to zero first. */
export interface ElementGrowth {
  readonly role: number;
  readonly dataSizeBytes: number;
  readonly fromBytes: number;
  readonly toBytes: number;
}

/**
 * Per element: the new data size (never smaller than now) and what to zero, from the end of what
 * the old size used (whole rows for striped layouts: a partly used row keeps its parity) to the
 * end of what the new size uses. New bytes read as zeroes, mirror legs agree on them and the
 * parity of zero rows is zero (raid5 XOR, raid6 P and Q alike).
 */
export function planGrowth(layout: Layout, chunkBytes: number, current: readonly number[], oldSizeBytes: number, newSizeBytes: number): ElementGrowth[] {
  const before = bytesNeeded(layout, chunkBytes, current, oldSizeBytes);
  const after = bytesNeeded(layout, chunkBytes, current, newSizeBytes);
  return current.map((d, role) => {
    const from = before[role] ?? 0;
    const to = after[role] ?? 0;
    return { role, dataSizeBytes: Math.max(d, to), fromBytes: Math.min(from, to), toBytes: to };
  });
}

/**
 * The volume size the superblocks agree on: the smallest among the up-to-date ones (the event
 * counter of the reference, not marked for rebuild). A grow writes the new size to every
 * element, one after the other, with the counter unchanged: until the last write, some element
 * still says the old size, and the old size wins.
 */
export function agreedSizeBytes(members: readonly Superblock[], ref: Superblock): number {
  let size = ref.volumeSizeBytes;
  for (const sb of members) {
    if (sb.needsRebuild || sb.eventCount !== ref.eventCount || sb.arrayUuid !== ref.arrayUuid) continue;
    size = Math.min(size, sb.volumeSizeBytes);
  }
  return size;
}
