// Pure geometry of raid5/raid6 volumes (no I/O). Volume chunk c lives in row floor(c / k) at data
// index c % k, k = n - np data chunks per row. Parity rotates left-symmetric as md's default:
// P on role n-1-(row mod n), Q (raid6) on the next role, and data index j on role
// (P + np + j) mod n, so consecutive chunks land on consecutive roles. Inside a row every role
// holds its chunk at the same element offset: dataOffset + row * chunkBytes.
//
// "Index" space (used by parity.ts and the compute op): 0..k-1 data, k = P, k+1 = Q.
import type { Extent, VolumeGeometry } from './map.js';
import { checkRange } from './map.js';

export interface ParityGeometry {
  readonly n: number;
  /** Parity chunks per row: 1 (raid5) or 2 (raid6). */
  readonly np: 1 | 2;
  /** Data chunks per row. */
  readonly k: number;
  readonly chunkBytes: number;
  readonly sizeBytes: number;
  /** Per role: where the data area starts on the element. */
  readonly dataOffsets: readonly number[];
}

export function isParityLayout(layout: string): layout is 'raid5' | 'raid6' {
  return layout === 'raid5' || layout === 'raid6';
}

export function parityGeometry(g: VolumeGeometry): ParityGeometry {
  if (!isParityLayout(g.layout)) throw new RangeError(`layout ${g.layout} keeps no parity`);
  const np = g.layout === 'raid5' ? 1 : 2;
  const n = g.elements.length;
  if (n < parityMinElements(np)) throw new RangeError(`${g.layout} needs at least ${parityMinElements(np)} elements (got ${n})`);
  if (!(Number.isSafeInteger(g.chunkBytes) && g.chunkBytes > 0)) throw new RangeError(`${g.layout} chunk ${g.chunkBytes} must be a positive integer`);
  return { n, np, k: n - np, chunkBytes: g.chunkBytes, sizeBytes: g.sizeBytes, dataOffsets: g.elements.map((e) => e.dataOffsetBytes) };
}

/**
 * Fewest elements the data path serves: a raid5 of 2 is a mirror (parity = the one data chunk;
 * a raid1 being reshaped is read as one, docs/reshape.md). Config validation asks users for 3.
 */
export function parityMinElements(np: 1 | 2): number {
  return np === 1 ? 2 : 4;
}

/** Usable bytes: (n - np) whole chunks per row, rows limited by the smallest element. */
export function parityCapacityBytes(np: 1 | 2, elementDataSizes: readonly number[], chunkBytes: number): number {
  const n = elementDataSizes.length;
  if (n < parityMinElements(np)) throw new RangeError(`raid${np === 1 ? 5 : 6} needs at least ${parityMinElements(np)} elements (got ${n})`);
  return (n - np) * Math.floor(Math.min(...elementDataSizes) / chunkBytes) * chunkBytes;
}

export function pRole(g: ParityGeometry, row: number): number {
  return g.n - 1 - (row % g.n);
}

/** The role holding index e (data j < k, P = k, Q = k + 1) of a row. */
export function indexRole(g: ParityGeometry, row: number, e: number): number {
  if (!(Number.isInteger(e) && e >= 0 && e < g.n)) throw new RangeError(`stripe index ${e} outside [0, ${g.n})`);
  const p = pRole(g, row);
  if (e === g.k) return p;
  if (e === g.k + 1) return (p + 1) % g.n;
  return (p + g.np + e) % g.n;
}

/** Inverse of indexRole. */
export function roleIndex(g: ParityGeometry, row: number, role: number): number {
  const d = (role - pRole(g, row) + g.n) % g.n;
  if (d === 0) return g.k;
  if (g.np === 2 && d === 1) return g.k + 1;
  return d - g.np;
}

export function rowCount(g: ParityGeometry): number {
  return Math.ceil(g.sizeBytes / (g.k * g.chunkBytes));
}

/** Element offset of byte `within` of a row's chunk on `role`. */
export function elementOffset(g: ParityGeometry, role: number, row: number, within: number): number {
  return g.dataOffsets[role]! + row * g.chunkBytes + within;
}

/** Data extents of a volume range (the read fast path): one per chunk touched, like raid0. */
export function mapParityData(g: ParityGeometry, offsetBytes: number, lengthBytes: number): Extent[] {
  checkRange(offsetBytes, lengthBytes, g.sizeBytes);
  const out: Extent[] = [];
  const end = offsetBytes + lengthBytes;
  for (let at = offsetBytes; at < end; ) {
    const c = Math.floor(at / g.chunkBytes);
    const within = at - c * g.chunkBytes;
    const len = Math.min(end - at, g.chunkBytes - within);
    const row = Math.floor(c / g.k);
    const role = indexRole(g, row, c % g.k);
    out.push({ role, elementOffsetBytes: elementOffset(g, role, row, within), lengthBytes: len, bufferOffsetBytes: at - offsetBytes });
    at += len;
  }
  return out;
}

/**
 * A piece of work on one row: bytes [a, b) of the row's chunks (the same offsets on every role,
 * since parity byte x depends only on byte x of each data chunk), and the data indices whose
 * bytes there the request covers (all of [a, b), by construction).
 */
export interface StripeUnit {
  readonly row: number;
  readonly a: number;
  readonly b: number;
  readonly touched: readonly number[];
}

/** Volume offset of byte `a` of data index j in `row`. */
export function volumeOffset(g: ParityGeometry, row: number, j: number, a: number): number {
  return (row * g.k + j) * g.chunkBytes + a;
}

/**
 * Units covering [offset, +length): per row, cut at every boundary of a touched interval and at
 * multiples of segmentBytes, so each unit has one touched set and fits the scratch buffers.
 */
export function unitsOf(g: ParityGeometry, offsetBytes: number, lengthBytes: number, segmentBytes: number): StripeUnit[] {
  checkRange(offsetBytes, lengthBytes, g.sizeBytes);
  if (!(Number.isSafeInteger(segmentBytes) && segmentBytes > 0)) throw new RangeError(`segment ${segmentBytes} must be a positive integer`);
  const out: StripeUnit[] = [];
  if (lengthBytes === 0) return out;
  const C = g.chunkBytes;
  const end = offsetBytes + lengthBytes;
  const rowBytes = g.k * C;
  for (let row = Math.floor(offsetBytes / rowBytes); row * rowBytes < end; row++) {
    const spans: { j: number; a: number; b: number }[] = [];
    const cuts = new Set<number>();
    for (let j = 0; j < g.k; j++) {
      const start = (row * g.k + j) * C;
      const a = Math.max(offsetBytes, start) - start;
      const b = Math.min(end, start + C) - start;
      if (a >= b) continue;
      spans.push({ j, a, b });
      cuts.add(a).add(b);
    }
    const lo = Math.min(...cuts);
    const hi = Math.max(...cuts);
    for (let x = (Math.floor(lo / segmentBytes) + 1) * segmentBytes; x < hi; x += segmentBytes) cuts.add(x);
    const sorted = [...cuts].sort((x, y) => x - y);
    for (let i = 0; i + 1 < sorted.length; i++) {
      const a = sorted[i]!;
      const b = sorted[i + 1]!;
      const touched = spans.filter((s) => s.a <= a && b <= s.b).map((s) => s.j);
      if (touched.length > 0) out.push({ row, a, b, touched });
    }
  }
  return out;
}

/** Scratch buffer bytes for a unit of `segmentBytes`: a 4 KiB journal header, then the data, page-aligned. */
export function bufferBytes(segmentBytes: number): number {
  return 4096 + Math.ceil(segmentBytes / 4096) * 4096;
}

/**
 * The largest unit length (a multiple of alignBytes, at most a chunk and maxBytes) whose n
 * scratch buffers fit in `slotsPerUnit` slots of slotBytes. 0 when even one page does not fit.
 */
export function segmentBytesFor(n: number, chunkBytes: number, slotBytes: number, slotsPerUnit: number, alignBytes: number, maxBytes: number): number {
  const align = Math.max(4096, alignBytes);
  for (let seg = Math.floor(Math.min(chunkBytes, maxBytes, slotBytes - 4096) / align) * align; seg >= align; seg -= align) {
    const perSlot = Math.floor(slotBytes / bufferBytes(seg));
    if (perSlot > 0 && Math.ceil(n / perSlot) <= slotsPerUnit && chunkBytes % seg === 0) return seg;
  }
  return 0;
}
