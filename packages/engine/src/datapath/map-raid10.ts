// raid10 "near 2", as Linux md lays it out: roles (0,1), (2,3), ... are mirror pairs; the volume
// is striped in chunks across the n/2 pairs exactly like raid0 across n elements, and each chunk
// sits at the same offset on both legs of its pair. Pure mapping, no I/O (see map.ts).
import { checkRange, stripeCoalesced, stripeLocate, stripeSplit, type ColumnExtent, type Extent, type VolumeGeometry } from './map.js';

/** Mirror pairs of a raid10 geometry. An odd or tiny element count is a bug upstream (config refuses it). */
export function raid10Pairs(g: VolumeGeometry): number {
  const n = g.elements.length;
  if (!(n >= 2 && n % 2 === 0)) throw new RangeError(`raid10 needs an even number of elements, got ${n}`);
  if (!(Number.isSafeInteger(g.chunkBytes) && g.chunkBytes > 0)) throw new RangeError(`raid10 chunk ${g.chunkBytes} must be a positive integer`);
  return n / 2;
}

/** The partner of a raid10 role: 0↔1, 2↔3, ... */
export function raid10Partner(role: number): number {
  return role ^ 1;
}

/** Where volume byte `offsetBytes` lives: chunk k is on pair k % (n/2), row floor(k / (n/2)), both legs. */
export function raid10Locate(g: VolumeGeometry, offsetBytes: number): { pair: number; legs: [{ role: number; elementOffsetBytes: number }, { role: number; elementOffsetBytes: number }] } {
  const loc = stripeLocate(g.chunkBytes, raid10Pairs(g), offsetBytes);
  const leg = (role: number): { role: number; elementOffsetBytes: number } => ({ role, elementOffsetBytes: g.elements[role]!.dataOffsetBytes + loc.columnOffsetBytes });
  return { pair: loc.column, legs: [leg(2 * loc.column), leg(2 * loc.column + 1)] };
}

/** Pair-level pieces, one per chunk touched (data ops). `column` is the pair. */
export function mapRaid10Pairs(g: VolumeGeometry, offsetBytes: number, lengthBytes: number): ColumnExtent[] {
  checkRange(offsetBytes, lengthBytes, g.sizeBytes);
  return stripeSplit(g.chunkBytes, raid10Pairs(g), offsetBytes, lengthBytes);
}

/** Pair-level pieces for ops without data (trim, zeroes, cache): at most one per pair. */
export function mapRaid10PairsCoalesced(g: VolumeGeometry, offsetBytes: number, lengthBytes: number): ColumnExtent[] {
  checkRange(offsetBytes, lengthBytes, g.sizeBytes);
  return stripeCoalesced(g.chunkBytes, raid10Pairs(g), offsetBytes, lengthBytes);
}

/** Places a pair-level piece on one leg of its pair (legs may differ in data offset). */
export function raid10Leg(g: VolumeGeometry, x: ColumnExtent, role: number): Extent {
  if (role >> 1 !== x.column) throw new RangeError(`role ${role} is not a leg of pair ${x.column}`);
  return { role, elementOffsetBytes: g.elements[role]!.dataOffsetBytes + x.columnOffsetBytes, lengthBytes: x.lengthBytes, bufferOffsetBytes: x.bufferOffsetBytes };
}

/** Every leg of every piece: what a write with all legs active sends (data ops, per chunk). */
export function mapRaid10(g: VolumeGeometry, offsetBytes: number, lengthBytes: number): Extent[] {
  return mapRaid10Pairs(g, offsetBytes, lengthBytes).flatMap((x) => [raid10Leg(g, x, 2 * x.column), raid10Leg(g, x, 2 * x.column + 1)]);
}

/** Every leg of every pair touched, one extent per leg (trim, zeroes with all legs active). */
export function mapRaid10Coalesced(g: VolumeGeometry, offsetBytes: number, lengthBytes: number): Extent[] {
  return mapRaid10PairsCoalesced(g, offsetBytes, lengthBytes).flatMap((x) => [raid10Leg(g, x, 2 * x.column), raid10Leg(g, x, 2 * x.column + 1)]);
}
