// The lower half of a volume's I/O (the upper half, volume-io.ts, checks, splits, gates, caches
// and counts requests): how one slot-sized piece reaches the elements through TOP, with a
// raid1 write-behind leg (write-behind-io.ts) and checksums (integrity/) where the volume has
// them. Layouts with a path of their own override the piece hooks (raid5/6: parity-volume-io.ts).
import { DescFlags, Op, type OpCode, type RequestClass, type Slab } from '@onestack/queue';
import { ReadCache } from './read-cache.js';
import { settleAll } from './settle.js';
import type { Top } from './top.js';
import { FLAG_SKIP_BEHIND } from './topology.js';
import { VolumeCounters } from './volume-counters.js';
import type { VolumeBinding } from './volume-io-types.js';
import type { SlotPool } from './waiters.js';
import { behindSums, writeWithBehind, type BehindLink } from './write-behind-io.js';
import { WriteGate } from './write-gate.js';
import { integrityBinding, type ReadVerifier, type VolumeIntegrity } from '../integrity/checksum-io.js';

/** The cache of volumes built without one (data-path tests): a zero budget, always off. */
const NO_CACHE = new ReadCache(0);

export abstract class VolumePieceIo {
  protected readonly counters = new VolumeCounters();
  /** Orders client writes against resync/rebuild copies, and runs the bitmap hook (write-gate.ts). */
  readonly gate = new WriteGate();
  /** Checksums of a raid1/raid10 volume with integrity (integrity/checksum-io.ts); null = no work at all. */
  protected integrity: VolumeIntegrity | null = null;
  /** What checks a read's blocks: the mirror integrity, or a raid5/6 volume's (integrity/parity-io.ts). */
  private verifier: ReadVerifier | null = null;
  /** The binding as the data path gave it (integrity may widen its alignment). */
  private bound: VolumeBinding;
  /** raid1 with a write-behind leg (write-behind.ts); null = every leg is written before the ack. */
  behindLink: BehindLink | null = null;

  constructor(
    protected b: VolumeBinding,
    protected readonly top: Top,
    protected readonly slots: SlotPool,
    protected readonly slab: Slab,
    protected readonly readCache: ReadCache = NO_CACHE,
  ) {
    this.bound = b;
    // A volume index may be reused after a delete: the old volume's blocks must not answer.
    readCache.invalidateVolume(b.index);
  }

  /** The control plane changed the volume's size or elements; counters carry on, cached blocks do not. */
  rebind(b: VolumeBinding): void {
    if (b.index !== this.b.index) throw new Error(`rebind: volume index ${b.index} is not ${this.b.index}`);
    this.bound = b;
    this.b = this.verifier === null ? b : integrityBinding(b);
    this.readCache.invalidateVolume(b.index);
  }

  /**
   * Turns checksums on (or off). Element I/O then moves whole 4 KiB blocks only (smaller or
   * unaligned requests take the read-modify-write path), so every block a leg sees is checksummed.
   */
  setIntegrity(integrity: VolumeIntegrity | null, verifier: ReadVerifier | null = integrity): void {
    this.integrity = integrity;
    this.verifier = verifier;
    this.b = verifier === null ? this.bound : integrityBinding(this.bound);
    this.readCache.invalidateVolume(this.b.index);
  }

  /** Attaches (or with null detaches) the write-behind writer; a replaced one stops (its queue is dropped, the bitmap keeps it). */
  setWriteBehind(link: BehindLink | null): void {
    if (this.behindLink !== null && this.behindLink.writer !== link?.writer) this.behindLink.writer.close();
    this.behindLink = link;
    this.gate.setLagging(link === null ? null : { ranges: () => link.writer.pendingRanges(), settle: (start, end) => link.writer.settle(start, end) });
  }

  /** Waits until the write-behind leg holds every write acknowledged so far (clean stop); at once without one. */
  async drainBehind(): Promise<void> {
    const wb = this.behindLink;
    if (wb === null) return;
    await wb.writer.drain();
    if (wb.legUp()) await wb.flushLeg();
  }

  // Hooks for layouts with a path of their own (raid5/6: parity-volume-io.ts). The public
  // methods (volume-io.ts) keep the checks, the write gate, slot handling and counters.

  protected async readPiece(off: number, len: number, slot: number, cls: RequestClass, slotOffset = 0): Promise<void> {
    // Only the write-behind leg is left: it must catch up before it answers.
    const wb = this.behindLink;
    if (wb !== null && wb.writer.lagBytes > 0 && !wb.otherActive()) await wb.writer.drain();
    return this.top.submit(this.b.index, Op.READ, off, len, 0, slot, cls, -1, slotOffset);
  }

  protected writeSlots(offsetBytes: number, chunks: readonly Uint8Array[], slots: readonly number[], flags: number, cls: RequestClass): Promise<void> {
    const wb = this.behindLink;
    const all = (): Promise<void> => this.writeAllSlots(offsetBytes, chunks, slots, flags, cls);
    if (wb === null) return all();
    const sb = this.slab.slotBytes;
    const mine = wb.piecesOf(offsetBytes, chunks, sb);
    // Integrity: the write-behind leg's checksums follow its data (write-behind-io.ts behindSums).
    const sums = behindSums(this.integrity, wb.element, offsetBytes, chunks, mine);
    const skipping = (): Promise<void> => settleAll([...chunks.map((c, i) => this.top.submit(this.b.index, Op.WRITE, offsetBytes + i * sb, c.length, flags | FLAG_SKIP_BEHIND, slots[i]!, cls)),
      ...(sums === null ? [] : [sums.record((flags & DescFlags.FUA) !== 0)])]);
    return writeWithBehind(wb, mine.chunks, mine.offsets, skipping, all, sums?.afters);
  }

  private writeAllSlots(offsetBytes: number, chunks: readonly Uint8Array[], slots: readonly number[], flags: number, cls: RequestClass): Promise<void> {
    const sb = this.slab.slotBytes;
    // Checksums from the slots before the subs are queued; recorded alongside the data writes.
    const sums = this.integrity?.sumsOf(chunks);
    const data = chunks.map((c, i) => this.top.submit(this.b.index, Op.WRITE, offsetBytes + i * sb, c.length, flags, slots[i]!, cls));
    return settleAll(sums === undefined ? data : [...data, this.integrity!.record(offsetBytes, sums, (flags & DescFlags.FUA) !== 0)]);
  }

  protected async flushAll(): Promise<void> {
    const wb = this.behindLink;
    // drainOnFlush: the leg catches up first (its checksums with it) and is flushed with the others; else the others only.
    if (wb !== null && (wb.drainOnFlush || !wb.otherActive())) await wb.writer.drain();
    // Checksum pages next: the elements' flush then makes them durable with the data.
    if (this.integrity !== null) await this.integrity.flush();
    if (wb === null) return this.top.submit(this.b.index, Op.FLUSH, 0, 0, 0, -1, 'local');
    return this.top.submit(this.b.index, Op.FLUSH, 0, 0, wb.drainOnFlush || !wb.otherActive() ? 0 : FLAG_SKIP_BEHIND, -1, 'local');
  }

  /** A read piece, checked against its checksums (and repaired) when the volume has them. */
  protected async readVerified(off: number, len: number, slot: number, cls: RequestClass, slotOffset: number, gateHeld: boolean): Promise<void> {
    await this.readPiece(off, len, slot, cls, slotOffset);
    const checked = this.verifier?.verify(off, this.slab.view(slot, slotOffset, len), gateHeld);
    if (checked !== undefined) await checked;
  }

  protected async noDataPiece(op: OpCode, off: number, len: number, flags: number): Promise<void> {
    // Trims and zeroes reach every leg at once (rare): after the write-behind queue, for order.
    const wb = this.behindLink;
    if (wb !== null && op !== Op.CACHE && wb.writer.lagBytes > 0) await wb.writer.drain();
    return this.top.submit(this.b.index, op, off, len, flags, -1, 'local');
  }

  protected async writeArray(offsetBytes: number, data: Uint8Array, flags: number, cls: RequestClass): Promise<void> {
    await inPieces(offsetBytes, data.length, this.slab.slotBytes, async (off, len, at) => {
      const [slot] = await this.slots.acquire(1);
      try {
        this.slab.view(slot!, 0, len).set(data.subarray(at, at + len));
        await this.writeSlots(off, [this.slab.view(slot!, 0, len)], [slot!], flags, cls);
      } finally {
        this.slots.release([slot!]);
      }
    });
  }

  /** Counts a pass over `bytes` payload bytes in user space (subclasses: the stripe engine's copy). */
  protected noteCopy(bytes: number): void {
    this.counters.noteCopy(bytes);
  }
}

/** Runs `fn` on each piece of at most `pieceBytes` concurrently; settles after all of them (no piece is left running). */
export async function inPieces(off: number, len: number, pieceBytes: number, fn: (off: number, len: number, at: number) => Promise<void>): Promise<void> {
  const all: Promise<void>[] = [];
  for (let at = 0; at < len; at += pieceBytes) all.push(fn(off + at, Math.min(pieceBytes, len - at), at));
  await settleAll(all);
}
