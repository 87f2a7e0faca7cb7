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

export const SUPPORTED_LAYOUTS: readonly Layout[] = ['linear', 'raid0', 'raid1'];

function checkRange(offsetBytes: number, lengthBytes: number, sizeBytes: number): void {
  if (!(Number.isSafeInteger(offsetBytes) && offsetBytes >= 0 && Number.isSafeInteger(lengthBytes) && lengthBytes >= 0)) {
    throw new RangeError(`range [${offsetBytes}, +${lengthBytes}) is not a pair of non-negative integers`);
  }
  if (offsetBytes + lengthBytes > sizeBytes) {
    throw new RangeError(`range [${offsetBytes}, +${lengthBytes}) ends past the volume size ${sizeBytes}`);
  }
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
      if (!(Number.isSafeInteger(chunkBytes) && chunkBytes > 0)) throw new RangeError(`raid0 chunk ${chunkBytes} must be a positive integer`);
      return n * Math.floor(min / chunkBytes) * chunkBytes;
    case 'raid1':
      return min;
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

/** Where volume byte `offsetBytes` of a raid0 volume lives: chunk k is on element k % n at row floor(k / n). */
export function raid0Locate(g: VolumeGeometry, offsetBytes: number): { role: number; elementOffsetBytes: number } {
  const n = g.elements.length;
  const chunk = Math.floor(offsetBytes / g.chunkBytes);
  const role = chunk % n;
  const row = Math.floor(chunk / n);
  return { role, elementOffsetBytes: g.elements[role]!.dataOffsetBytes + row * g.chunkBytes + (offsetBytes % g.chunkBytes) };
}

/** raid0, one extent per chunk touched (data ops: the buffer is interleaved across elements). */
export function mapRaid0(g: VolumeGeometry, offsetBytes: number, lengthBytes: number): Extent[] {
  checkRange(offsetBytes, lengthBytes, g.sizeBytes);
  const out: Extent[] = [];
  const end = offsetBytes + lengthBytes;
  for (let at = offsetBytes; at < end; ) {
    const len = Math.min(end, (Math.floor(at / g.chunkBytes) + 1) * g.chunkBytes) - at;
    const loc = raid0Locate(g, at);
    out.push({ role: loc.role, elementOffsetBytes: loc.elementOffsetBytes, lengthBytes: len, bufferOffsetBytes: at - offsetBytes });
    at += len;
  }
  return out;
}

/**
 * raid0 for ops without data (trim, zeroes, cache): the chunks a range touches on one element are
 * contiguous there (rows follow each other), so each element gets at most one extent.
 * bufferOffsetBytes is -1: there is no buffer.
 */
export function mapRaid0Coalesced(g: VolumeGeometry, offsetBytes: number, lengthBytes: number): Extent[] {
  checkRange(offsetBytes, lengthBytes, g.sizeBytes);
  const n = g.elements.length;
  const firstByRole: ({ start: number; end: number } | undefined)[] = new Array(n).fill(undefined);
  const end = offsetBytes + lengthBytes;
  // Only the first n chunks and the last one decide each element's [start, end): O(n) not O(len).
  const firstChunk = Math.floor(offsetBytes / g.chunkBytes);
  const lastChunk = lengthBytes === 0 ? firstChunk - 1 : Math.floor((end - 1) / g.chunkBytes);
  for (let k = firstChunk; k <= lastChunk && k < firstChunk + n; k++) {
    const from = Math.max(offsetBytes, k * g.chunkBytes);
    const role = k % n;
    // The last chunk of this role in range: k + m*n <= lastChunk.
    const lastK = k + Math.floor((lastChunk - k) / n) * n;
    const to = Math.min(end, (lastK + 1) * g.chunkBytes);
    const a = raid0Locate(g, from).elementOffsetBytes;
    const b = raid0Locate(g, to - 1).elementOffsetBytes + 1;
    firstByRole[role] = { start: a, end: b };
  }
  const out: Extent[] = [];
  firstByRole.forEach((r, role) => {
    if (r !== undefined) out.push({ role, elementOffsetBytes: r.start, lengthBytes: r.end - r.start, bufferOffsetBytes: -1 });
  });
  return out;
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
