// The per-volume I/O API, upper half: range checks, splitting into slot-sized pieces, slot
// back-pressure, copying (embedding API) or zero-copy slot views (NBD), the write gate and the
// counters (volume-counters.ts); how a piece reaches the elements is the lower half,
// volume-piece-io.ts. Reads of fully cached ranges are served from the engine's RAM read cache
// (read-cache.ts); every op that changes data invalidates its range before it is submitted and
// again when it settles.
// Requests that are not multiples of the elements' block size are served through whole blocks:
// reads read the enclosing span, writes read-modify-write their edge blocks (unaligned.ts).
// Copies of payload bytes in user space are counted (stats().copies): NBD reads served from slab
// slots make none; the embedding API copies once each way.
import { DescFlags, Op, type OpCode, type RequestClass } from '@onestack/queue';
import type { NbdReadResult, NbdWriteBuffer } from '@onestack/nbd';
import { DataPathError, type DataPathErrno } from './errno.js';
import { nowUs } from './latency.js';
import type { FillTicket } from './read-cache.js';
import { once, settleAll } from './settle.js';
import { arraySource, chunksSource, isAligned, requestViews, rmwRange, spanFor, splitEdges, zeroSource, type ByteSource, type Span } from './unaligned.js';
import { inPieces, VolumePieceIo } from './volume-piece-io.js';
import type { GateMode } from './write-gate.js';

export type { VolumeBinding, VolumeCacheStats, VolumeIo, VolumeStats } from './volume-io-types.js';
import type { VolumeCacheStats, VolumeIo, VolumeStats } from './volume-io-types.js';

/** Ops without data are cut into pieces of at most this (LENGTH is an int32; keeps one sub bounded). */
const NODATA_PIECE_BYTES = 256 * 1024 * 1024;

export class VolumeIoImpl extends VolumePieceIo implements VolumeIo {
  private readonly writeBuffers = new WeakMap<NbdWriteBuffer, number[]>();

  get sizeBytes(): number {
    return this.b.sizeBytes;
  }

  get alignBytes(): number {
    return this.b.alignBytes;
  }

  stats(): VolumeStats {
    return this.counters.stats();
  }

  cacheStats(): VolumeCacheStats {
    return this.counters.cacheStats();
  }

  invalidateCache(off: number, len: number): void {
    this.readCache.invalidate(this.b.index, off, len);
  }

  async read(offsetBytes: number, lengthBytes: number, cls: RequestClass = 'local'): Promise<Uint8Array> {
    const startedUs = nowUs();
    this.check(offsetBytes, lengthBytes, 'EINVAL');
    const out = new Uint8Array(lengthBytes);
    if (this.cacheHit(offsetBytes, lengthBytes, out) !== null) return out;
    const span = this.spanOf(offsetBytes, lengthBytes);
    const fill = this.b.cacheReads === false ? null : this.readCache.beginFill(this.b.index, offsetBytes, lengthBytes);
    try {
      // Piece by piece through one slot each; an unaligned read's span is only its edge blocks wider.
      await this.counters.count('read', lengthBytes, inPieces(span.start, span.end - span.start, this.slab.slotBytes, async (off, len) => {
        const [slot] = await this.slots.acquire(1);
        try {
          await this.readVerified(off, len, slot!, cls, 0, false);
          const from = Math.max(off, offsetBytes);
          const to = Math.min(off + len, offsetBytes + lengthBytes);
          if (to > from) out.set(this.slab.view(slot!, from - off, to - from), from - offsetBytes);
        } finally {
          this.slots.release([slot!]);
        }
      }), startedUs);
    } catch (err) {
      this.readCache.endFill(fill, offsetBytes, null);
      throw err;
    }
    this.noteCopy(lengthBytes);
    this.endFill(fill, offsetBytes, [out]);
    return out;
  }

  async write(offsetBytes: number, data: Uint8Array, opts: { fua?: boolean } = {}, cls: RequestClass = 'local'): Promise<void> {
    const startedUs = nowUs();
    this.check(offsetBytes, data.length, 'ENOSPC');
    const flags = opts.fua === true ? DescFlags.FUA : 0;
    if (!isAligned(offsetBytes, data.length, this.b.alignBytes)) {
      await this.rmwWrite(offsetBytes, data.length, arraySource(data), flags, cls, startedUs);
      this.noteCopy(data.length); // the new bytes, into the slots that carry the span
      return;
    }
    await this.gated(offsetBytes, data.length, 'shared', () => this.counters.count('write', data.length, this.writeArray(offsetBytes, data, flags, cls), startedUs));
    this.noteCopy(data.length);
  }

  async readSlots(offsetBytes: number, lengthBytes: number, cls: RequestClass = 'remote'): Promise<NbdReadResult> {
    const startedUs = nowUs();
    this.check(offsetBytes, lengthBytes, 'EINVAL');
    // A hit answers with a copy from RAM; a miss stays zero-copy (slot views), the fill copies aside.
    const cached = this.cacheHit(offsetBytes, lengthBytes);
    if (cached !== null) return { chunks: [cached], release: () => {} };
    const span = this.spanOf(offsetBytes, lengthBytes);
    const sb = this.slab.slotBytes;
    const spanBytes = span.end - span.start;
    const fill = this.b.cacheReads === false ? null : this.readCache.beginFill(this.b.index, offsetBytes, lengthBytes);
    const slots = spanBytes === 0 ? [] : await this.slots.acquire(Math.ceil(spanBytes / sb));
    const views = slots.map((s, i) => this.slab.view(s, 0, Math.min(sb, spanBytes - i * sb)));
    let chunks: Uint8Array[];
    try {
      await this.counters.count('read', lengthBytes, settleAll(views.map((v, i) => this.readVerified(span.start + i * sb, v.length, slots[i]!, cls, 0, false))), startedUs);
      // Unaligned: views of the asked bytes inside the span's slots, still no copy.
      chunks = span.start === offsetBytes && spanBytes === lengthBytes ? views : requestViews(views, span.start, offsetBytes, lengthBytes);
    } catch (err) {
      this.readCache.endFill(fill, offsetBytes, null);
      this.slots.release(slots);
      throw err;
    }
    this.endFill(fill, offsetBytes, chunks);
    return { chunks, release: once(() => this.slots.release(slots)) };
  }

  async acquireWriteBuffer(lengthBytes: number): Promise<NbdWriteBuffer> {
    if (!(Number.isSafeInteger(lengthBytes) && lengthBytes >= 0)) throw new DataPathError('EINVAL', `write length ${lengthBytes} is not a non-negative integer`);
    const slots = lengthBytes === 0 ? [] : await this.slots.acquire(Math.ceil(lengthBytes / this.slab.slotBytes));
    const chunks = slots.map((s, i) => this.slab.view(s, 0, Math.min(this.slab.slotBytes, lengthBytes - i * this.slab.slotBytes)));
    const buf: NbdWriteBuffer = {
      chunks,
      release: once(() => {
        this.writeBuffers.delete(buf);
        this.slots.release(slots);
      }),
    };
    this.writeBuffers.set(buf, slots);
    return buf;
  }

  async writeBuffer(offsetBytes: number, buf: NbdWriteBuffer, opts: { fua: boolean }, cls: RequestClass = 'remote'): Promise<void> {
    const startedUs = nowUs();
    try {
      const slots = this.writeBuffers.get(buf);
      if (slots === undefined) throw new DataPathError('EINVAL', 'write buffer was not acquired from this volume or was already released');
      const lengthBytes = buf.chunks.reduce((a, c) => a + c.length, 0);
      this.check(offsetBytes, lengthBytes, 'ENOSPC');
      const flags = opts.fua ? DescFlags.FUA : 0;
      if (!isAligned(offsetBytes, lengthBytes, this.b.alignBytes)) {
        // The payload sits at slot offsets the request's offset does not match: bounce it into
        // slots laid out like the span (the client did not align; qemu and friends do).
        await this.rmwWrite(offsetBytes, lengthBytes, chunksSource(buf.chunks), flags, cls, startedUs);
        this.noteCopy(lengthBytes);
        return;
      }
      await this.gated(offsetBytes, lengthBytes, 'shared', () => this.counters.count('write', lengthBytes, this.writeSlots(offsetBytes, buf.chunks, slots, flags, cls), startedUs));
    } finally {
      buf.release();
    }
  }

  flush(): Promise<void> {
    return this.counters.count('other', 0, this.flushAll());
  }

  trim(off: number, len: number, opts: { fua?: boolean } = {}): Promise<void> {
    return this.noData(Op.TRIM, off, len, opts.fua === true ? DescFlags.FUA : 0);
  }

  writeZeroes(off: number, len: number, opts: { fua?: boolean; noHole?: boolean } = {}): Promise<void> {
    const flags = (opts.fua === true ? DescFlags.FUA : 0) | (opts.noHole === true ? DescFlags.NO_HOLE : 0);
    return this.noData(Op.WRITE_ZEROES, off, len, flags);
  }

  cache(off: number, len: number): Promise<void> {
    return this.noData(Op.CACHE, off, len, 0);
  }

  private async noData(op: OpCode, off: number, len: number, flags: number): Promise<void> {
    this.check(off, len, op === Op.CACHE ? 'EINVAL' : 'ENOSPC');
    const pieces = (o: number, l: number): Promise<void> => inPieces(o, l, NODATA_PIECE_BYTES, (po, pl) => this.noDataPiece(op, po, pl, flags));
    // Zeroed or trimmed whole blocks carry no checksum any more (partial ones are written by RMW).
    const integrity = op === Op.CACHE ? null : this.integrity;
    const run = integrity === null ? pieces : (o: number, l: number): Promise<void> => settleAll([pieces(o, l), integrity.clear(o, l, (flags & DescFlags.FUA) !== 0)]);
    if (op === Op.CACHE) return this.counters.count('other', 0, run(off, len));
    // Whole blocks only: a remote leg zeroes blocks of its size, an O_DIRECT leg may have to write
    // zeroes, the stripe engine reads old bytes; a trim's partial blocks are zeroed like write-zeroes'.
    if (!isAligned(off, len, this.b.alignBytes)) return this.zeroEdges(op, off, len, flags, run);
    // TRIM and WRITE_ZEROES change data: they pass the gate like writes.
    await this.gated(off, len, 'shared', () => this.counters.count('other', 0, run(off, len)));
  }

  /** WRITE_ZEROES/TRIM not on block boundaries: the partial edge blocks are zeroed by read-modify-write, the middle as usual. */
  private async zeroEdges(op: OpCode, off: number, len: number, flags: number, run: (o: number, l: number) => Promise<void>): Promise<void> {
    const a = this.b.alignBytes;
    if (a % this.b.trimAlignBytes !== 0) throw new DataPathError('EINVAL', `${this.b.name}: block size ${a} is not a multiple of the trim unit ${this.b.trimAlignBytes}`);
    const span = this.spanOf(off, len);
    const { head, middle, tail } = splitEdges(off, len, a);
    const fua = flags & DescFlags.FUA;
    if (op !== Op.TRIM && op !== Op.WRITE_ZEROES) throw new Error(`zeroEdges: op ${op} changes no data`);
    await this.gated(span.start, span.end - span.start, 'exclusive', () => this.counters.count('other', 0, settleAll([
      ...[head, tail].filter((e): e is Span => e !== null).map((e) => this.rmwSpan(e, zeroSource, fua, 'local')),
      ...(middle === null ? [] : [run(middle.start, middle.end - middle.start)]),
    ])));
    this.counters.noteRmw();
  }

  /** A write not on block boundaries: the span's blocks, exclusive at the gate, partial edges read first. */
  private async rmwWrite(off: number, len: number, src: ByteSource, flags: number, cls: RequestClass, startedUs: number): Promise<void> {
    const span = this.spanOf(off, len);
    await this.gated(span.start, span.end - span.start, 'exclusive', () => this.counters.count('write', len, this.rmwSpan({ start: off, end: off + len }, src, flags, cls), startedUs));
    this.counters.noteRmw();
  }

  /** Writes `src` over the bytes `req` through the whole blocks around it (unaligned.ts). */
  private rmwSpan(req: Span, src: ByteSource, flags: number, cls: RequestClass): Promise<void> {
    return rmwRange({
      slab: this.slab,
      slots: this.slots,
      read: (o, l, slot, slotOffset) => this.readVerified(o, l, slot, cls, slotOffset, true),
      write: (o, l, slot) => this.writeSlots(o, [this.slab.view(slot, 0, l)], [slot], flags, cls),
    }, this.spanOf(req.start, req.end - req.start), req, this.b.alignBytes, src);
  }

  private spanOf(off: number, len: number): Span {
    return spanFor(off, len, this.b, this.slab.slotBytes);
  }

  /** Ends a read's fill and counts its copy into the cache. */
  private endFill(fill: FillTicket | null, off: number, data: readonly Uint8Array[]): void {
    this.noteCopy(this.readCache.endFill(fill, off, data) * this.readCache.blockBytes);
  }

  /** The bytes [off, +len) from the read cache (into `out` if given) when all of it is there, else null; counts hit or miss. */
  private cacheHit(off: number, len: number, out?: Uint8Array): Uint8Array | null {
    if (!this.readCache.enabled || len === 0 || this.b.cacheReads === false) return null;
    const startedUs = nowUs();
    const got = this.readCache.readInto(this.b.index, off, len, out);
    if (got === null) {
      this.counters.noteCacheMiss();
      return null;
    }
    this.counters.noteCacheHit(len, startedUs);
    return got;
  }

  /**
   * Runs a data-changing op admitted by the write gate (`exclusive`: a read-modify-write of whole
   * blocks), with its range invalidated in the read cache before it is submitted and again when it
   * settles (even failed: legs may be half written). The second pass voids fills that raced it.
   */
  private async gated(off: number, len: number, mode: GateMode, work: () => Promise<void>): Promise<void> {
    const release = await this.gate.enter(off, len, mode);
    try {
      this.readCache.invalidate(this.b.index, off, len);
      await work();
    } finally {
      this.readCache.invalidate(this.b.index, off, len);
      release();
    }
  }

  /** Bad input gets a clear error before anything is queued. */
  private check(off: number, len: number, pastEnd: DataPathErrno): void {
    if (!(Number.isSafeInteger(off) && off >= 0 && Number.isSafeInteger(len) && len >= 0)) {
      throw new DataPathError('EINVAL', `${this.b.name}: range [${off}, +${len}) is not a pair of non-negative integers`);
    }
    if (off + len > this.b.sizeBytes) throw new DataPathError(pastEnd, `${this.b.name}: range [${off}, +${len}) ends past the volume size ${this.b.sizeBytes}`);
  }
}
