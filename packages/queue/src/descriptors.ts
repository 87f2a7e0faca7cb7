// Fixed-size request descriptors in a SharedArrayBuffer: 16 Int32 words = 64 bytes = one cache
// line each, so two threads working on neighbouring descriptors do not false-share.
// Fields are plain (non-atomic) words: ownership of a descriptor passes between threads only
// through a Ring/LifoStack/IndexPool, whose seq_cst Atomics operations order these writes.
import { assert, assertRegion } from './assert.js';

export const DESC_WORDS = 16;
export const DESC_BYTES = DESC_WORDS * 4;
export const D = {
  ID_HI: 0,
  ID_LO: 1,
  OFFSET_HI: 2,
  OFFSET_LO: 3,
  LENGTH: 4,
  SLOT: 5,
  SLOT_OFFSET: 6,
  FLAGS: 7,
  STATUS: 8,
  RESULT: 9,
  PARENT: 10,
  PENDING: 11,
  TARGET: 12,
  OP: 13,
  AUX: 14,
  SPARE: 15,
} as const;
export const DescStatus = { FREE: 0, QUEUED: 1, RUNNING: 2, DONE: 3 } as const;
export const DescFlags = { FUA: 1, NO_HOLE: 2 } as const;

const TWO_32 = 2 ** 32;
/** Descriptor count bound: word indices must stay well inside int32 range. */
const DESC_COUNT_MAX = 2 ** 24;

export class DescriptorTable {
  static bytesFor(count: number): number {
    assert(Number.isInteger(count) && count > 0 && count <= DESC_COUNT_MAX, `DescriptorTable: count ${count} outside [1, 2^24]`);
    return count * DESC_BYTES;
  }

  readonly count: number;
  readonly words: Int32Array;

  /** Attaches a view; does not clear memory (the creator calls resetAll once). */
  constructor(sab: SharedArrayBuffer, byteOffset: number, count: number) {
    const bytes = DescriptorTable.bytesFor(count);
    assertRegion(sab, byteOffset, bytes, 4, 'DescriptorTable');
    this.count = count;
    this.words = new Int32Array(sab, byteOffset, count * DESC_WORDS);
  }

  base(index: number): number {
    assert(Number.isInteger(index) && index >= 0 && index < this.count, `DescriptorTable: index ${index} outside [0, ${this.count})`);
    return index * DESC_WORDS;
  }

  getOffset(index: number): number {
    const b = this.base(index);
    // Both halves are stored signed in Int32 words; `>>> 0` reads them back unsigned.
    return (this.words[b + D.OFFSET_HI]! >>> 0) * TWO_32 + (this.words[b + D.OFFSET_LO]! >>> 0);
  }

  setOffset(index: number, offsetBytes: number): void {
    const b = this.base(index);
    assert(Number.isSafeInteger(offsetBytes) && offsetBytes >= 0, `DescriptorTable: offset ${offsetBytes} is not a non-negative safe integer`);
    this.words[b + D.OFFSET_HI] = Math.floor(offsetBytes / TWO_32);
    this.words[b + D.OFFSET_LO] = offsetBytes >>> 0;
  }

  /** Zeroes every field; PARENT = -1 means "no parent request". */
  reset(index: number): void {
    const b = this.base(index);
    this.words.fill(0, b, b + DESC_WORDS);
    this.words[b + D.PARENT] = -1;
  }

  resetAll(): void {
    for (let i = 0; i < this.count; i++) this.reset(i);
  }
}
