// VolumeIo of a raid5/6 volume: the checks, write gate, slots and counters of VolumeIoImpl, with
// the layout's own paths underneath. Reads go to the middle stage first (chunks on active
// elements are read directly); a read that fails there with EIO (an element lost or failing) is
// served again by the stripe engine, which rebuilds lost chunks from parity and fails elements
// that return errors. Writes, zeroes and flushes always go through the stripe engine.
import { Op, type OpCode, type RequestClass, type Slab } from '@onestack/queue';
import { DataPathError } from './errno.js';
import type { ReadCache } from './read-cache.js';
import type { StripeEngine } from './stripe-engine.js';
import type { Top } from './top.js';
import { VolumeIoImpl, type VolumeBinding } from './volume-io.js';
import type { SlotPool } from './waiters.js';

function isEio(err: unknown): boolean {
  return err instanceof DataPathError && err.errno === 'EIO';
}

export class ParityVolumeIo extends VolumeIoImpl {
  constructor(
    b: VolumeBinding,
    top: Top,
    slots: SlotPool,
    slab: Slab,
    readonly stripe: StripeEngine,
    readCache?: ReadCache,
  ) {
    super(b, top, slots, slab, readCache);
  }

  protected override async readPiece(off: number, len: number, slot: number, cls: RequestClass, slotOffset = 0): Promise<void> {
    await this.stripe.ready();
    try {
      await this.top.submit(this.b.index, Op.READ, off, len, 0, slot, cls, -1, slotOffset);
    } catch (err) {
      if (!isEio(err)) throw err;
      await this.stripe.read(off, len, slot, slotOffset);
    }
  }

  protected override async writeSlots(offsetBytes: number, chunks: readonly Uint8Array[]): Promise<void> {
    // FUA needs nothing more: the journal records are flushed before any write is acknowledged.
    await this.stripe.write(offsetBytes, chunks);
    // The stripe engine copies the new bytes into its scratch buffers (parity needs them there).
    this.noteCopy(chunks.reduce((a, c) => a + c.length, 0));
  }

  protected override writeArray(offsetBytes: number, data: Uint8Array): Promise<void> {
    return this.stripe.write(offsetBytes, [data]);
  }

  protected override flushAll(): Promise<void> {
    return this.stripe.flush();
  }

  protected override async noDataPiece(op: OpCode, off: number, len: number, flags: number): Promise<void> {
    if (op === Op.TRIM || op === Op.WRITE_ZEROES) return this.stripe.writeZeroes(off, len);
    if (op !== Op.CACHE) throw new DataPathError('EINVAL', `${this.b.name}: op ${op} has no raid5/6 path`);
    await this.stripe.ready();
    try {
      await this.top.submit(this.b.index, op, off, len, flags, -1, 'local');
    } catch (err) {
      if (!isEio(err)) throw err; // a hint only: with a chunk on a lost element there is nothing to warm
    }
  }
}
