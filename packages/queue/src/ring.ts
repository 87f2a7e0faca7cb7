// Bounded lock-free MPMC FIFO of non-negative int32 values: Dmitry Vyukov's per-cell sequence
// algorithm over a SharedArrayBuffer, so producers and consumers may live in different threads.
//
// Memory layout (Int32 words, byteOffset must be 4-aligned; 64-aligned recommended):
//   word 0            enqueue position (producers CAS it)
//   word 1, 2         capacity, magic: checked when another thread attaches (init=false)
//   word 16           dequeue position (consumers CAS it) — own cache line, away from producers
//   word 32 + 2*i     cell i: sequence
//   word 33 + 2*i     cell i: value
//
// A cell's sequence says whose turn it is: seq == pos → free for the producer at position pos;
// seq == pos + 1 → holds the value for the consumer at pos; the consumer then sets
// seq = pos + capacity, handing the cell to the producer one lap later.
//
// Positions are int32 and wrap past 2^31. Comparisons use the signed difference `(a - b) | 0`
// instead of `a < b`: any two live positions are within `capacity` (≤ 2^30) of each other, so
// the 32-bit difference is exact even when one side has wrapped and the other has not.
// `pos & mask` is the cell index for negative positions too (two's complement, mask < 2^31).
//
// Not strictly lock-free at the edges: a producer preempted between claiming a position and
// publishing its cell makes consumers see "empty" (-1) although later cells are full, and a
// consumer preempted mid-pop makes producers see "full" (false) even if the ring is nearly
// empty. Both are transient; the stalled thread finishes its operation and then rings its
// Doorbell, so callers treat -1/false as "sleep on the doorbell and retry", never as final.
import { assert, assertRegion, CAS_RETRY_MAX, isPowerOfTwo, QueueError } from './assert.js';

const ENQ = 0;
const CAP = 1;
const MAGIC = 2;
const DEQ = 16;
const CELLS = 32;
const HEADER_BYTES = CELLS * 4;
const RING_MAGIC = 0x52494e47; // 'RING'
export const RING_CAPACITY_MAX = 2 ** 30;

export class Ring {
  static bytesFor(capacity: number): number {
    assert(isPowerOfTwo(capacity) && capacity <= RING_CAPACITY_MAX, `Ring: capacity ${capacity} is not a power of two in [1, 2^30]`);
    return HEADER_BYTES + capacity * 8;
  }

  readonly policy = 'fifo' as const;
  readonly capacity: number;
  private readonly mask: number;
  private readonly w: Int32Array;

  /**
   * @param init true: format the region (one thread, before sharing); false: attach to a region
   *   another thread formatted. `initialPosition` exists so tests can start near 2^31 and prove
   *   wraparound without pushing two billion values.
   */
  constructor(sab: SharedArrayBuffer, byteOffset: number, capacity: number, init: boolean, initialPosition = 0) {
    const bytes = Ring.bytesFor(capacity);
    assertRegion(sab, byteOffset, bytes, 4, 'Ring');
    this.capacity = capacity;
    this.mask = capacity - 1;
    this.w = new Int32Array(sab, byteOffset, bytes / 4);
    if (init) {
      this.format(initialPosition);
    } else {
      assert(
        Atomics.load(this.w, MAGIC) === RING_MAGIC && Atomics.load(this.w, CAP) === capacity,
        `Ring: no ring of capacity ${capacity} at offset ${byteOffset} (init=false attaches to an initialised ring)`,
        'layout-mismatch',
      );
    }
  }

  private format(initialPosition: number): void {
    assert(Number.isInteger(initialPosition), `Ring: initialPosition ${initialPosition} is not an integer`);
    const start = initialPosition | 0;
    for (let c = 0; c < this.capacity; c++) {
      // The first position >= start that maps to cell c; that producer is first in line.
      Atomics.store(this.w, CELLS + 2 * c, (start + ((c - start) & this.mask)) | 0);
      this.w[CELLS + 2 * c + 1] = 0;
    }
    Atomics.store(this.w, ENQ, start);
    Atomics.store(this.w, DEQ, start);
    Atomics.store(this.w, CAP, this.capacity);
    Atomics.store(this.w, MAGIC, RING_MAGIC); // last: an attacher that sees the magic sees the rest
  }

  /** Returns false when full (back-pressure): the caller keeps the value, nothing is dropped. */
  tryPush(value: number): boolean {
    assert((value | 0) === value && value >= 0, `Ring: value ${value} is not a non-negative int32`);
    const w = this.w;
    let pos = Atomics.load(w, ENQ);
    for (let attempt = 0; attempt < CAS_RETRY_MAX; attempt++) {
      const cell = CELLS + 2 * (pos & this.mask);
      const dif = (Atomics.load(w, cell) - pos) | 0;
      if (dif === 0) {
        const seen = Atomics.compareExchange(w, ENQ, pos, (pos + 1) | 0);
        if (seen === pos) {
          // Plain write is enough: the seq_cst store below publishes it to the consumer.
          w[cell + 1] = value;
          Atomics.store(w, cell, (pos + 1) | 0);
          return true;
        }
        pos = seen;
      } else if (dif < 0) {
        // The cell still holds last lap's value: full (or its consumer is mid-pop).
        return false;
      } else {
        pos = Atomics.load(w, ENQ); // another producer took this position
      }
    }
    throw new QueueError('contention', `Ring.tryPush: ${CAS_RETRY_MAX} failed attempts`);
  }

  /** Returns -1 when empty (or when the next producer has claimed but not yet filled its cell). */
  tryPop(): number {
    const w = this.w;
    let pos = Atomics.load(w, DEQ);
    for (let attempt = 0; attempt < CAS_RETRY_MAX; attempt++) {
      const cell = CELLS + 2 * (pos & this.mask);
      const dif = (Atomics.load(w, cell) - ((pos + 1) | 0)) | 0;
      if (dif === 0) {
        const seen = Atomics.compareExchange(w, DEQ, pos, (pos + 1) | 0);
        if (seen === pos) {
          const value = w[cell + 1]!;
          Atomics.store(w, cell, (pos + this.capacity) | 0);
          return value;
        }
        pos = seen;
      } else if (dif < 0) {
        return -1;
      } else {
        pos = Atomics.load(w, DEQ);
      }
    }
    throw new QueueError('contention', `Ring.tryPop: ${CAS_RETRY_MAX} failed attempts`);
  }

  /** Approximate (the two positions are read at different moments); for status and metrics. */
  size(): number {
    const n = (Atomics.load(this.w, ENQ) - Atomics.load(this.w, DEQ)) | 0;
    return Math.min(Math.max(n, 0), this.capacity);
  }
}
