// How one stripe unit is written or read, from the states of its stripe indices (pure, so every
// rule is unit-tested). Entries are the compute op's buffer indices: 0..k-1 data, k = P,
// k + 1 = Q (the "current" bytes of each index), then k + np + j = the old bytes of data j (RMW).
//
// Writes, when every index is readable: reconstruct-write (read the untouched data, recompute
// parity) or read-modify-write (read the old touched data and parity, apply the difference),
// whichever reads less; a full-stripe write reads nothing. Degraded: no writable parity ->
// write the data alone; untouched data all readable -> reconstruct-write; else RMW if the
// touched data and the parity are readable; else rebuild the lost data first ("recon").
import { DataPathError } from './errno.js';
import { READABLE, WRITABLE } from './stripe-io.js';

export type WriteKind = 'rcw' | 'rmw' | 'recon' | 'direct';

export interface WritePlan {
  readonly kind: WriteKind;
  /** Scratch buffer number per entry, -1 = none. Length k + np + k. */
  readonly buf: readonly number[];
  readonly buffers: number;
  /** Entries read before computing (an old-data entry reads its data index's role). */
  readonly reads: readonly number[];
  /** recon: data indices rebuilt from parity before the new data goes in. */
  readonly lost: readonly number[];
  /** Parity indices recomputed (those that take writes). */
  readonly parityOut: readonly number[];
  /** Stripe indices journaled and written in place. */
  readonly writes: readonly number[];
}

export interface StripeShape {
  readonly k: number;
  readonly np: 1 | 2;
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

/**
 * Whether `lost` data indices can be rebuilt from the parity indices in `parity` (readable ones):
 * one needs P or Q, two need both.
 */
export function recoverable(shape: StripeShape, lost: readonly number[], parity: readonly number[]): boolean {
  if (lost.length === 0) return true;
  if (lost.length === 1) return parity.length >= 1;
  return lost.length === 2 && shape.np === 2 && parity.length === 2;
}

function bufferMap(shape: StripeShape, cur: readonly number[], old: readonly number[]): { buf: number[]; buffers: number } {
  const { k, np } = shape;
  const buf = new Array<number>(k + np + k).fill(-1);
  let next = 0;
  for (const e of cur) buf[e] = next++;
  for (const j of old) buf[k + np + j] = next++;
  return { buf, buffers: next };
}

/** The plan for writing `touched` data indices, given each index's state (ABSENT, WRITABLE, READABLE). */
export function planWrite(shape: StripeShape, touched: readonly number[], state: (e: number) => number): WritePlan {
  const { k, np } = shape;
  const all = range(k + np);
  const parity = all.slice(k);
  const lostCount = all.filter((e) => state(e) < WRITABLE).length;
  if (lostCount > np) throw new DataPathError('EIO', `stripe has ${lostCount} lost elements, parity covers ${np}`);
  const isTouched = new Set(touched);
  const untouched = range(k).filter((j) => !isTouched.has(j));
  const parityOut = parity.filter((e) => state(e) >= WRITABLE);
  const writes = [...touched, ...parity].filter((e) => state(e) >= WRITABLE);
  const readable = (e: number): boolean => state(e) === READABLE;
  const make = (kind: WriteKind, cur: readonly number[], old: readonly number[], reads: readonly number[], lost: readonly number[] = []): WritePlan => ({
    kind, ...bufferMap(shape, cur, old), reads, lost, parityOut, writes,
  });
  if (parityOut.length === 0) return make('direct', touched, [], []);
  const rcwOk = untouched.every(readable);
  const rmwOk = touched.every(readable) && parityOut.every(readable);
  const rcwReads = untouched.length;
  const rmwReads = touched.length + parityOut.length;
  if (rcwOk && (!rmwOk || rcwReads <= rmwReads)) return make('rcw', all, [], untouched);
  if (rmwOk) return make('rmw', [...touched, ...parityOut], touched, [...touched.map((j) => k + np + j), ...parityOut]);
  const lost = range(k).filter((j) => !readable(j));
  const parityIn = parity.filter(readable);
  if (!recoverable(shape, lost, parityIn)) throw new DataPathError('EIO', `stripe cannot rebuild data ${lost.join(', ')} from ${parityIn.length} readable parity`);
  return make('recon', all, [], all.filter(readable), lost);
}

export interface ReadPlan {
  /** All wanted data readable: read them straight into the destination. */
  readonly direct: boolean;
  /** Entries read into scratch (reconstruction). */
  readonly reads: readonly number[];
  /** Data indices rebuilt. */
  readonly lost: readonly number[];
}

/** How to read data indices `wanted` of a row: directly, or by rebuilding the lost data from P (and Q). */
export function planRead(shape: StripeShape, wanted: readonly number[], state: (e: number) => number): ReadPlan {
  const { k } = shape;
  const readable = (e: number): boolean => state(e) === READABLE;
  if (wanted.every(readable)) return { direct: true, reads: [], lost: [] };
  const lost = range(k).filter((j) => !readable(j));
  const parityIn = range(shape.np).map((i) => k + i).filter(readable);
  if (!recoverable(shape, lost, parityIn)) throw new DataPathError('EIO', `stripe cannot rebuild data ${lost.join(', ')}: too many elements lost`);
  // One lost data index needs one parity: P when it is there (XOR is cheaper than Q's maths).
  const use = lost.length === 2 ? parityIn : parityIn.slice(0, 1);
  return { direct: false, reads: [...range(k).filter(readable), ...use], lost };
}
