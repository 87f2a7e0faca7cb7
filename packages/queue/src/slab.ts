// Data slab and index pools.
//
// The slab is its own SharedArrayBuffer of `slotCount` slots of `slotBytes` (a multiple of 4096)
// whose slots are 4096-aligned in REAL memory, as O_DIRECT and io_uring fixed buffers need. A
// SAB's backing store is not page aligned (seen: base ≡ 16 mod 4096), so the caller passes the
// real misalignment of byte 0 (from the native addon); the first slot starts at
// (4096 - misalignment) % 4096 and the SAB carries 4096 spare bytes to make room for that shift.
import { alignUp, assert, assertRegion } from './assert.js';
import { LifoStack } from './lifo.js';

export { alignUp };
export const PAGE_BYTES = 4096;
const SLAB_BYTES_MAX = Number.MAX_SAFE_INTEGER - PAGE_BYTES;

export class Slab {
  static sabBytesFor(slotCount: number, slotBytes: number): number {
    assert(Number.isInteger(slotCount) && slotCount > 0, `Slab: slotCount ${slotCount} must be a positive integer`);
    assert(
      Number.isInteger(slotBytes) && slotBytes > 0 && slotBytes % PAGE_BYTES === 0,
      `Slab: slotBytes ${slotBytes} must be a positive multiple of ${PAGE_BYTES}`,
    );
    assert(slotCount * slotBytes <= SLAB_BYTES_MAX, `Slab: ${slotCount} × ${slotBytes} bytes is too large`);
    return slotCount * slotBytes + PAGE_BYTES;
  }

  readonly slotCount: number;
  readonly slotBytes: number;
  readonly firstSlotOffsetBytes: number;
  private readonly sab: SharedArrayBuffer;
  private whole: Uint8Array | undefined;

  constructor(sab: SharedArrayBuffer, slotCount: number, slotBytes: number, baseMisalignmentBytes: number) {
    const bytes = Slab.sabBytesFor(slotCount, slotBytes);
    assert(
      Number.isInteger(baseMisalignmentBytes) && baseMisalignmentBytes >= 0 && baseMisalignmentBytes < PAGE_BYTES,
      `Slab: baseMisalignmentBytes ${baseMisalignmentBytes} outside [0, ${PAGE_BYTES})`,
    );
    assert(sab.byteLength >= bytes, `Slab: SAB has ${sab.byteLength} bytes, needs ${bytes} (use Slab.sabBytesFor)`);
    this.sab = sab;
    this.slotCount = slotCount;
    this.slotBytes = slotBytes;
    this.firstSlotOffsetBytes = (PAGE_BYTES - baseMisalignmentBytes) % PAGE_BYTES;
  }

  /** One view over the whole SAB, for callers that address slots by byteOffsetOf (native I/O). */
  wholeView(): Uint8Array {
    this.whole ??= new Uint8Array(this.sab);
    return this.whole;
  }

  byteOffsetOf(slot: number): number {
    assert(Number.isInteger(slot) && slot >= 0 && slot < this.slotCount, `Slab: slot ${slot} outside [0, ${this.slotCount})`);
    return this.firstSlotOffsetBytes + slot * this.slotBytes;
  }

  /** A view into one slot (no copy). Defaults to the rest of the slot from `offsetInSlotBytes`. */
  view(slot: number, offsetInSlotBytes = 0, lengthBytes?: number): Uint8Array {
    const base = this.byteOffsetOf(slot);
    assert(
      Number.isInteger(offsetInSlotBytes) && offsetInSlotBytes >= 0 && offsetInSlotBytes <= this.slotBytes,
      `Slab: offset ${offsetInSlotBytes} outside slot of ${this.slotBytes} bytes`,
    );
    const length = lengthBytes ?? this.slotBytes - offsetInSlotBytes;
    assert(
      Number.isInteger(length) && length >= 0 && offsetInSlotBytes + length <= this.slotBytes,
      `Slab: range [${offsetInSlotBytes}, +${length}) does not fit a slot of ${this.slotBytes} bytes`,
    );
    return new Uint8Array(this.sab, base + offsetInSlotBytes, length);
  }
}

/**
 * Lock-free free-list of indices in [0, count) (slab slots or descriptors).
 *
 * Built on LifoStack (pre-filled with 0..count-1) rather than on a Ring: a Vyukov ring reports
 * "full" while any consumer is preempted between claiming a cell and releasing it, even if the
 * ring is nearly empty, so free() could fail with the pool far from full (the stress test hit
 * it within seconds on 2 cores). The Treiber stack never blocks on a preempted thread, catches
 * a double free through its `present` flags, and hands back the most recently freed, cache-warm
 * index first.
 */
export class IndexPool {
  static bytesFor(count: number): number {
    return LifoStack.bytesFor(count);
  }

  readonly count: number;
  private readonly stack: LifoStack;

  /** byteOffset must be 8-aligned (see LifoStack). */
  constructor(sab: SharedArrayBuffer, byteOffset: number, count: number, init: boolean) {
    assertRegion(sab, byteOffset, IndexPool.bytesFor(count), 8, 'IndexPool');
    this.count = count;
    this.stack = new LifoStack(sab, byteOffset, count, init);
    if (init) {
      // Pushed in reverse so the first allocations come out as 0, 1, 2, ...
      for (let i = count - 1; i >= 0; i--) this.stack.tryPush(i);
    }
  }

  /** An index in [0, count), or -1 when all are in use. */
  tryAlloc(): number {
    return this.stack.tryPop();
  }

  /** Throws QueueError('double-free') if `index` is already in the pool. */
  free(index: number): void {
    assert(Number.isInteger(index) && index >= 0 && index < this.count, `IndexPool: index ${index} outside [0, ${this.count})`);
    this.stack.tryPush(index);
  }

  available(): number {
    return this.stack.size();
  }
}
