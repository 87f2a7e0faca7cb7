// Lock-free Treiber stack of descriptor indices with a tagged 64-bit head against ABA.
//
// Memory layout (byteOffset must be 8-aligned for the BigInt64Array):
//   bytes 0..7      head: tag (upper 32 bits) | top + 1 (lower 32 bits; 0 = empty)
//   bytes 8..11     approximate count (for size())
//   bytes 12..15    capacity, 16..19 magic: checked when another thread attaches
//   bytes 64..      next[i]: Int32 × capacity, the index below i in the stack (-1 = bottom)
//   then            present[i]: Int32 × capacity, 1 while i is in the stack
//
// ABA: popper A reads head = X with next[X] = Y; B pops X, pops Y, pushes X back. Without a tag
// A's CAS (X → Y) would succeed and put the popped Y back on top. Every successful CAS bumps the
// 32-bit tag, so A's CAS fails; a false match would need exactly 2^32 operations in between.
//
// Values are distinct indices in [0, capacity): the stack can never be full, and `present`
// turns a double push (a double free of a descriptor) into an error instead of a corrupt list.
import { assert, assertRegion, CAS_RETRY_MAX, QueueError } from './assert.js';

const COUNT = 2; // Int32 word indices within the 64-byte header
const CAP = 3;
const MAGIC = 4;
const HEADER_BYTES = 64;
const LIFO_MAGIC = 0x4c49464f; // 'LIFO'
export const LIFO_CAPACITY_MAX = 2 ** 24;
const LOW32 = 0xffff_ffffn;

function encodeHead(tag: number, top1: number): bigint {
  // BigInt64Array is signed: asIntN maps tags >= 2^31 onto the negative range and back.
  return BigInt.asIntN(64, (BigInt(tag >>> 0) << 32n) | BigInt(top1));
}

export class LifoStack {
  static bytesFor(capacity: number): number {
    assert(
      Number.isInteger(capacity) && capacity > 0 && capacity <= LIFO_CAPACITY_MAX,
      `LifoStack: capacity ${capacity} outside [1, 2^24]`,
    );
    return HEADER_BYTES + Math.ceil((capacity * 8) / 64) * 64;
  }

  readonly policy = 'lifo' as const;
  readonly capacity: number;
  private readonly head: BigInt64Array;
  private readonly hdr: Int32Array;
  private readonly next: Int32Array;
  private readonly present: Int32Array;

  /** `initialTag` lets tests start the ABA tag near 2^32 to prove it wraps cleanly. */
  constructor(sab: SharedArrayBuffer, byteOffset: number, capacity: number, init: boolean, initialTag = 0) {
    assertRegion(sab, byteOffset, LifoStack.bytesFor(capacity), 8, 'LifoStack');
    this.capacity = capacity;
    this.head = new BigInt64Array(sab, byteOffset, 1);
    this.hdr = new Int32Array(sab, byteOffset, HEADER_BYTES / 4);
    this.next = new Int32Array(sab, byteOffset + HEADER_BYTES, capacity);
    this.present = new Int32Array(sab, byteOffset + HEADER_BYTES + capacity * 4, capacity);
    if (init) {
      assert(Number.isInteger(initialTag), `LifoStack: initialTag ${initialTag} is not an integer`);
      this.next.fill(-1);
      this.present.fill(0);
      Atomics.store(this.hdr, COUNT, 0);
      Atomics.store(this.head, 0, encodeHead(initialTag, 0));
      Atomics.store(this.hdr, CAP, capacity);
      Atomics.store(this.hdr, MAGIC, LIFO_MAGIC);
    } else {
      assert(
        Atomics.load(this.hdr, MAGIC) === LIFO_MAGIC && Atomics.load(this.hdr, CAP) === capacity,
        `LifoStack: no stack of capacity ${capacity} at offset ${byteOffset}`,
        'layout-mismatch',
      );
    }
  }

  /** Always true for a valid value (distinct values in [0, capacity) always fit). */
  tryPush(value: number): boolean {
    assert(Number.isInteger(value) && value >= 0 && value < this.capacity, `LifoStack: value ${value} outside [0, ${this.capacity})`);
    if (Atomics.compareExchange(this.present, value, 0, 1) !== 0) {
      throw new QueueError('double-free', `LifoStack: value ${value} pushed while already in the stack`);
    }
    for (let attempt = 0; attempt < CAS_RETRY_MAX; attempt++) {
      const h = Atomics.load(this.head, 0);
      const top1 = Number(h & LOW32);
      const tag = Number(BigInt.asUintN(64, h) >> 32n);
      // Written before the CAS publishes `value`; nobody else can touch next[value] meanwhile
      // because `value` is owned by this thread until it is on the stack.
      Atomics.store(this.next, value, top1 - 1);
      if (Atomics.compareExchange(this.head, 0, h, encodeHead(tag + 1, value + 1)) === h) {
        Atomics.add(this.hdr, COUNT, 1);
        return true;
      }
    }
    throw new QueueError('contention', `LifoStack.tryPush: ${CAS_RETRY_MAX} failed attempts`);
  }

  /** Returns the most recently pushed value, or -1 when empty. */
  tryPop(): number {
    for (let attempt = 0; attempt < CAS_RETRY_MAX; attempt++) {
      const h = Atomics.load(this.head, 0);
      const top1 = Number(h & LOW32);
      if (top1 === 0) return -1;
      const top = top1 - 1;
      // May be stale if `top` was popped meanwhile; then the tag has moved and the CAS fails.
      const below = Atomics.load(this.next, top);
      const tag = Number(BigInt.asUintN(64, h) >> 32n);
      if (Atomics.compareExchange(this.head, 0, h, encodeHead(tag + 1, below + 1)) === h) {
        Atomics.store(this.present, top, 0);
        Atomics.sub(this.hdr, COUNT, 1);
        return top;
      }
    }
    throw new QueueError('contention', `LifoStack.tryPop: ${CAS_RETRY_MAX} failed attempts`);
  }

  /** Approximate: the count is updated just after the head CAS. */
  size(): number {
    return Math.min(Math.max(Atomics.load(this.hdr, COUNT), 0), this.capacity);
  }

  /** Current ABA tag, for tests. */
  tag(): number {
    return Number(BigInt.asUintN(64, Atomics.load(this.head, 0)) >> 32n);
  }
}
