// Pure mapping from volume byte ranges onto element byte ranges. No I/O, no shared memory, so
// every layout rule is unit-tested here. Element offsets INCLUDE the element's dataOffsetBytes
// (the superblock area at the start of each element).
import type { Layout } from '../config/types.js';

export interface ElementGeometry {
  readonly dataOffsetBytes: number;
  readonly dataSizeBytes: number;
}

export interface VolumeGeometry {
  readonly layout: Layout;
  readonly chunkBytes: number;
  /** Exported size (may be capped below the layout's capacity). */
  readonly sizeBytes: number;
  /** By role. */
  readonly elements: readonly ElementGeometry[];
}

/** One element-side piece of a request. `bufferOffsetBytes` is relative to the request's buffer. */
export interface Extent {
  readonly role: number;
  readonly elementOffsetBytes: number;
  readonly lengthBytes: number;
  readonly bufferOffsetBytes: number;
}

export const SUPPORTED_LAYOUTS: readonly Layout[] = ['linear', 'raid0', 'raid1', 'raid10', 'raid5', 'raid6'];

export function checkRange(offsetBytes: number, lengthBytes: number, sizeBytes: number): void {
  if (!(Number.isSafeInteger(offsetBytes) && offsetBytes >= 0 && Number.isSafeInteger(lengthBytes) && lengthBytes >= 0)) {
    throw new RangeError(`range [${offsetBytes}, +${lengthBytes}) is not a pair of non-negative integers`);
  }
  if (offsetBytes + lengthBytes > sizeBytes) {
    throw new RangeError(`range [${offsetBytes}, +${lengthBytes}) ends past the volume size ${sizeBytes}`);
  }
}

function checkChunk(layout: Layout, chunkBytes: number): void {
  if (!(Number.isSafeInteger(chunkBytes) && chunkBytes > 0)) throw new RangeError(`${layout} chunk ${chunkBytes} must be a positive integer`);
}

/** Usable bytes of a volume built from elements with these data sizes (by role). */
export function volumeCapacityBytes(layout: Layout, elementDataSizes: readonly number[], chunkBytes: number): number {
  const n = elementDataSizes.length;
  if (n === 0) return 0;
  const min = Math.min(...elementDataSizes);
  switch (layout) {
    case 'linear':
      return elementDataSizes.reduce((a, b) => a + b, 0);
    case 'raid0':
      checkChunk(layout, chunkBytes);
      return n * Math.floor(min / chunkBytes) * chunkBytes;
    case 'raid1':
      return min;
    case 'raid10':
      // Near-2: n/2 mirror pairs striped like raid0, so every leg is cut to the same whole chunks.
      checkChunk(layout, chunkBytes);
      // 2 = one pair (a raid1's view while it becomes a raid10); topology-check.ts asks 4 of public volumes.
      if (n < 2 || n % 2 !== 0) throw new RangeError(`raid10 needs an even number of elements, at least 2 (got ${n})`);
      return (n / 2) * Math.floor(min / chunkBytes) * chunkBytes;
    case 'raid5':
    case 'raid6': {
      // n - 1 (raid5) or n - 2 (raid6) data chunks per row; map-parity.ts maps them.
      checkChunk(layout, chunkBytes);
      const np = layout === 'raid5' ? 1 : 2;
      // A raid5 of 2 is a mirror (map-parity.ts parityMinElements; config asks users for 3).
      const fewest = np === 1 ? 2 : 4;
      if (n < fewest) throw new RangeError(`${layout} needs at least ${fewest} elements (got ${n})`);
      return (n - np) * Math.floor(min / chunkBytes) * chunkBytes;
    }
    default:
      throw new RangeError(`layout ${layout} is not supported by the data path yet (supported: ${SUPPORTED_LAYOUTS.join(', ')})`);
  }
}

/** Linear: the volume is the concatenation of the elements' data areas, in role order. */
export function mapLinear(g: VolumeGeometry, offsetBytes: number, lengthBytes: number): Extent[] {
  checkRange(offsetBytes, lengthBytes, g.sizeBytes);
  const out: Extent[] = [];
  let start = 0; // volume offset where element `role` begins
  let at = offsetBytes;
  const end = offsetBytes + lengthBytes;
  for (let role = 0; role < g.elements.length && at < end; role++) {
    const e = g.elements[role]!;
    const stop = start + e.dataSizeBytes;
    if (at < stop) {
      const len = Math.min(end, stop) - at;
      out.push({ role, elementOffsetBytes: e.dataOffsetBytes + (at - start), lengthBytes: len, bufferOffsetBytes: at - offsetBytes });
      at += len;
    }
    start = stop;
  }
  if (at < end) throw new RangeError(`linear: range [${offsetBytes}, +${lengthBytes}) runs past the last element`);
  return out;
}

/**
 * One piece of a striped range, before it is placed on an element: `column` is the raid0 element
 * or the raid10 pair; `columnOffsetBytes` is relative to the column's data area.
 */
export interface ColumnExtent {
  readonly column: number;
  readonly columnOffsetBytes: number;
  readonly lengthBytes: number;
  readonly bufferOffsetBytes: number;
}

/** Stripe arithmetic shared by raid0 and raid10: chunk k lives in column k % width at row floor(k / width). */
export function stripeLocate(chunkBytes: number, width: number, offsetBytes: number): { column: number; columnOffsetBytes: number } {
  const chunk = Math.floor(offsetBytes / chunkBytes);
  return { column: chunk % width, columnOffsetBytes: Math.floor(chunk / width) * chunkBytes + (offsetBytes % chunkBytes) };
}

/** One piece per chunk touched (data ops: the buffer is interleaved across columns). */
export function stripeSplit(chunkBytes: number, width: number, offsetBytes: number, lengthBytes: number): ColumnExtent[] {
  const out: ColumnExtent[] = [];
  const end = offsetBytes + lengthBytes;
  for (let at = offsetBytes; at < end; ) {
    const len = Math.min(end, (Math.floor(at / chunkBytes) + 1) * chunkBytes) - at;
    const loc = stripeLocate(chunkBytes, width, at);
    out.push({ column: loc.column, columnOffsetBytes: loc.columnOffsetBytes, lengthBytes: len, bufferOffsetBytes: at - offsetBytes });
    at += len;
  }
  return out;
}

/**
 * For ops without data (trim, zeroes, cache): the chunks a range touches in one column are
 * contiguous there (rows follow each other), so each column gets at most one piece, in column
 * order. bufferOffsetBytes is -1: there is no buffer.
 */
export function stripeCoalesced(chunkBytes: number, width: number, offsetBytes: number, lengthBytes: number): ColumnExtent[] {
  const byColumn: (ColumnExtent | undefined)[] = new Array(width).fill(undefined);
  const end = offsetBytes + lengthBytes;
  // Only the first `width` chunks and the last one decide each column's [start, end): O(width) not O(len).
  const firstChunk = Math.floor(offsetBytes / chunkBytes);
  const lastChunk = lengthBytes === 0 ? firstChunk - 1 : Math.floor((end - 1) / chunkBytes);
  for (let k = firstChunk; k <= lastChunk && k < firstChunk + width; k++) {
    const from = Math.max(offsetBytes, k * chunkBytes);
    // The last chunk of this column in range: k + m*width <= lastChunk.
    const lastK = k + Math.floor((lastChunk - k) / width) * width;
    const to = Math.min(end, (lastK + 1) * chunkBytes);
    const a = stripeLocate(chunkBytes, width, from);
    const b = stripeLocate(chunkBytes, width, to - 1).columnOffsetBytes + 1;
    byColumn[a.column] = { column: a.column, columnOffsetBytes: a.columnOffsetBytes, lengthBytes: b - a.columnOffsetBytes, bufferOffsetBytes: -1 };
  }
  return byColumn.filter((x): x is ColumnExtent => x !== undefined);
}

/** Where volume byte `offsetBytes` of a raid0 volume lives: chunk k is on element k % n at row floor(k / n). */
export function raid0Locate(g: VolumeGeometry, offsetBytes: number): { role: number; elementOffsetBytes: number } {
  const loc = stripeLocate(g.chunkBytes, g.elements.length, offsetBytes);
  return { role: loc.column, elementOffsetBytes: g.elements[loc.column]!.dataOffsetBytes + loc.columnOffsetBytes };
}

function onRaid0Element(g: VolumeGeometry, x: ColumnExtent): Extent {
  return { role: x.column, elementOffsetBytes: g.elements[x.column]!.dataOffsetBytes + x.columnOffsetBytes, lengthBytes: x.lengthBytes, bufferOffsetBytes: x.bufferOffsetBytes };
}

/** raid0, one extent per chunk touched (data ops: the buffer is interleaved across elements). */
export function mapRaid0(g: VolumeGeometry, offsetBytes: number, lengthBytes: number): Extent[] {
  checkRange(offsetBytes, lengthBytes, g.sizeBytes);
  return stripeSplit(g.chunkBytes, g.elements.length, offsetBytes, lengthBytes).map((x) => onRaid0Element(g, x));
}

/** raid0 for ops without data (trim, zeroes, cache): at most one extent per element, see stripeCoalesced. */
export function mapRaid0Coalesced(g: VolumeGeometry, offsetBytes: number, lengthBytes: number): Extent[] {
  checkRange(offsetBytes, lengthBytes, g.sizeBytes);
  return stripeCoalesced(g.chunkBytes, g.elements.length, offsetBytes, lengthBytes).map((x) => onRaid0Element(g, x));
}

/** raid1: the same range on each given leg (roles). */
export function mapRaid1(g: VolumeGeometry, legs: readonly number[], offsetBytes: number, lengthBytes: number): Extent[] {
  checkRange(offsetBytes, lengthBytes, g.sizeBytes);
  return legs.map((role) => ({ role, elementOffsetBytes: g.elements[role]!.dataOffsetBytes + offsetBytes, lengthBytes, bufferOffsetBytes: 0 }));
}

/**
 * raid1 read leg: the least-queued active leg; ties go round-robin from `rotation`.
 * Returns -1 when no leg is active (the caller fails the request with EIO).
 */
export function pickReadLeg(activeRoles: readonly number[], queued: (role: number) => number, rotation: number): number {
  const n = activeRoles.length;
  if (n === 0) return -1;
  let best = -1;
  let bestQueued = Infinity;
  for (let i = 0; i < n; i++) {
    const role = activeRoles[(rotation + i) % n]!;
    const q = queued(role);
    if (q < bestQueued) {
      best = role;
      bestQueued = q;
    }
  }
  return best;
}
