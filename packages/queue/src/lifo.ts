// Lock-free Treiber stack of descriptor indices with a tagged 64-bit head against ABA.
//
// Memory layout (byteOffset must be 8-aligned for the BigInt64Array):
//   Int32 word 0    head: top + 1 (0 = empty)      } one 64-bit word, always changed by one
//   Int32 word 1    head: ABA tag                  } Atomics.compareExchange on a BigInt64Array
//   Int32 word 2    approximate count (for size())
//   Int32 word 3, 4 capacity, magic: checked when another thread attaches
//   bytes 64..      next[i]: Int32 × capacity, the index below i in the stack (-1 = bottom)
//   then            present[i]: Int32 × capacity, 1 while i is in the stack
//
// ABA: popper A reads head = X with next[X] = Y; B pops X, pops Y, pushes X back. Without a tag
// A's CAS (X → Y) would succeed and put the popped Y back on top. Every successful CAS bumps the
// 32-bit tag, so A's CAS fails; a false match would need exactly 2^32 operations in between.
//
// Speed: decoding the head with BigInt arithmetic cost ~140 ns per operation. Instead the two
// halves are read as Int32 words and the 64-bit CAS operands are assembled in a thread-local
// scratch BigInt64Array (~40 ns). That is endianness-neutral (the scratch has the same word order
// as the head). The two reads may tear, but then the CAS fails; if it succeeds, the tag read
// first was still current, so no CAS happened in between and top/next[top] were consistent.
//
// Values are distinct indices in [0, capacity): the stack can never be full, and `present`
// turns a double push (a double free of a descriptor) into an error instead of a corrupt list.
import { assert, assertRegion, CAS_RETRY_MAX, QueueError } from './assert.js';

const TOP1 = 0; // Int32 word indices within the 64-byte header
const TAG = 1;
const COUNT = 2;
const CAP = 3;
const MAGIC = 4;
const HEADER_BYTES = 64;
const LIFO_MAGIC = 0x4c49464f; // 'LIFO'
export const LIFO_CAPACITY_MAX = 2 ** 24;

// Per-thread scratch (each worker has its own module instance): [expected, replacement].
const scratch64 = new BigInt64Array(2);
const scratch32 = new Int32Array(scratch64.buffer);

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
      Atomics.store(this.hdr, TOP1, 0);
      Atomics.store(this.hdr, TAG, initialTag | 0);
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
    const hdr = this.hdr;
    for (let attempt = 0; attempt < CAS_RETRY_MAX; attempt++) {
      const tag = Atomics.load(hdr, TAG);
      const top1 = Atomics.load(hdr, TOP1);
      // Written before the CAS publishes `value`; nobody else touches next[value] meanwhile
      // because this thread owns `value` until it is on the stack.
      Atomics.store(this.next, value, top1 - 1);
      if (this.casHead(tag, top1, value + 1)) {
        Atomics.add(hdr, COUNT, 1);
        return true;
      }
    }
    throw new QueueError('contention', `LifoStack.tryPush: ${CAS_RETRY_MAX} failed attempts`);
  }

  /** Returns the most recently pushed value, or -1 when empty. */
  tryPop(): number {
    const hdr = this.hdr;
    for (let attempt = 0; attempt < CAS_RETRY_MAX; attempt++) {
      const tag = Atomics.load(hdr, TAG); // before next[top]: see the tearing note at the top
      const top1 = Atomics.load(hdr, TOP1);
      if (top1 === 0) return -1;
      const top = top1 - 1;
      if (top >= this.capacity) continue; // torn read; the CAS could not succeed with it
      // May be stale if `top` was popped meanwhile; then the tag has moved and the CAS fails.
      const below = Atomics.load(this.next, top);
      if (this.casHead(tag, top1, below + 1)) {
        Atomics.store(this.present, top, 0);
        Atomics.sub(hdr, COUNT, 1);
        return top;
      }
    }
    throw new QueueError('contention', `LifoStack.tryPop: ${CAS_RETRY_MAX} failed attempts`);
  }

  /** CAS head (tag, top1) → (tag + 1, newTop1); the tag wraps modulo 2^32. */
  private casHead(tag: number, top1: number, newTop1: number): boolean {
    scratch32[TOP1] = top1;
    scratch32[TAG] = tag;
    scratch32[2 + TOP1] = newTop1;
    scratch32[2 + TAG] = (tag + 1) | 0;
    const expected = scratch64[0]!;
    return Atomics.compareExchange(this.head, 0, expected, scratch64[1]!) === expected;
  }

  /** Approximate: the count is updated just after the head CAS. */
  size(): number {
    return Math.min(Math.max(Atomics.load(this.hdr, COUNT), 0), this.capacity);
  }

  /** Current ABA tag, for tests. */
  tag(): number {
    return Atomics.load(this.hdr, TAG) >>> 0;
  }
}
