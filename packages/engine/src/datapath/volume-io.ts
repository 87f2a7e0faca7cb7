// The per-volume I/O API: range checks, splitting into slot-sized pieces, slot back-pressure,
// copying (embedding API) or zero-copy slot views (NBD), and per-volume counters. Reads of fully
// cached ranges are served from the engine's RAM read cache (read-cache.ts); every op that
// changes data invalidates its range before it is submitted and again when it settles.
import { DescFlags, Op, type OpCode, type RequestClass, type Slab } from '@onestack/queue';
import type { NbdReadResult, NbdWriteBuffer } from '@onestack/nbd';
import { DataPathError, type DataPathErrno } from './errno.js';
import { ReadCache } from './read-cache.js';
import type { Top } from './top.js';
import type { SlotPool } from './waiters.js';
import { WriteGate } from './write-gate.js';

export interface VolumeStats {
  readOps: number;
  writeOps: number;
  readBytes: number;
  writeBytes: number;
  errors: number;
}

/** Read requests answered from the RAM read cache (hits) or the data path (misses); zeros when it is off. */
export interface VolumeCacheStats {
  hits: number;
  misses: number;
  /** hits / (hits + misses), 0 before the first read. */
  hitRatio: number;
}

export interface VolumeIo {
  readonly sizeBytes: number;
  /** Client writes pass it; resync/rebuild fence ranges with it (write-gate.ts). */
  readonly gate: WriteGate;
  /** Offsets and lengths of data requests must be multiples of this (the NBD minimum block size). */
  readonly alignBytes: number;
  read(offsetBytes: number, lengthBytes: number, cls?: RequestClass): Promise<Uint8Array>;
  write(offsetBytes: number, data: Uint8Array, opts?: { fua?: boolean }, cls?: RequestClass): Promise<void>;
  readSlots(offsetBytes: number, lengthBytes: number, cls?: RequestClass): Promise<NbdReadResult>;
  acquireWriteBuffer(lengthBytes: number): Promise<NbdWriteBuffer>;
  writeBuffer(offsetBytes: number, buf: NbdWriteBuffer, opts: { fua: boolean }, cls?: RequestClass): Promise<void>;
  flush(): Promise<void>;
  trim(off: number, len: number, opts?: { fua?: boolean }): Promise<void>;
  writeZeroes(off: number, len: number, opts?: { fua?: boolean; noHole?: boolean }): Promise<void>;
  cache(off: number, len: number): Promise<void>;
  stats(): VolumeStats;
  cacheStats(): VolumeCacheStats;
  /** Drops the range from the read cache: a scrub repair rewrote legs under it. */
  invalidateCache(off: number, len: number): void;
}

/** The cache of volumes built without one (data-path tests): a zero budget, always off. */
const NO_CACHE = new ReadCache(0);

/** Ops without data are cut into pieces of at most this (LENGTH is an int32; keeps one sub bounded). */
const NODATA_PIECE_BYTES = 256 * 1024 * 1024;

export interface VolumeBinding {
  readonly index: number;
  readonly name: string;
  readonly sizeBytes: number;
  /** Data ops (and WRITE_ZEROES) must be multiples of this: 4096 with O_DIRECT elements, else the largest remote block size, else 1. */
  readonly alignBytes: number;
  /** TRIM must be a multiple of this: the largest remote block size (a remote leg zeroes whole blocks). */
  readonly trimAlignBytes: number;
}

export class VolumeIoImpl implements VolumeIo {
  private readonly counters: VolumeStats = { readOps: 0, writeOps: 0, readBytes: 0, writeBytes: 0, errors: 0 };
  private readonly cacheCounters = { hits: 0, misses: 0 };
  private readonly writeBuffers = new WeakMap<NbdWriteBuffer, number[]>();
  /** Orders client writes against resync/rebuild copies, and runs the bitmap hook (write-gate.ts). */
  readonly gate = new WriteGate();

  constructor(
    protected b: VolumeBinding,
    protected readonly top: Top,
    protected readonly slots: SlotPool,
    protected readonly slab: Slab,
    protected readonly readCache: ReadCache = NO_CACHE,
  ) {
    // A volume index may be reused after a delete: the old volume's blocks must not answer.
    readCache.invalidateVolume(b.index);
  }

  /** The control plane changed the volume's size or elements; counters carry on, cached blocks do not. */
  rebind(b: VolumeBinding): void {
    if (b.index !== this.b.index) throw new Error(`rebind: volume index ${b.index} is not ${this.b.index}`);
    this.b = b;
    this.readCache.invalidateVolume(b.index);
  }

  get sizeBytes(): number {
    return this.b.sizeBytes;
  }

  get alignBytes(): number {
    return this.b.alignBytes;
  }

  stats(): VolumeStats {
    return { ...this.counters };
  }

  cacheStats(): VolumeCacheStats {
    const { hits, misses } = this.cacheCounters;
    return { hits, misses, hitRatio: hits + misses === 0 ? 0 : hits / (hits + misses) };
  }

  invalidateCache(off: number, len: number): void {
    this.readCache.invalidate(this.b.index, off, len);
  }

  async read(offsetBytes: number, lengthBytes: number, cls: RequestClass = 'local'): Promise<Uint8Array> {
    this.check(offsetBytes, lengthBytes, 'EINVAL', this.b.alignBytes);
    const out = new Uint8Array(lengthBytes);
    if (this.cacheHit(offsetBytes, lengthBytes, out) !== null) return out;
    const fill = this.readCache.beginFill(this.b.index, offsetBytes, lengthBytes);
    try {
      await this.count('read', lengthBytes, this.pieces(offsetBytes, lengthBytes, this.slab.slotBytes, async (off, len, at) => {
        const [slot] = await this.slots.acquire(1);
        try {
          await this.readPiece(off, len, slot!, cls);
          out.set(this.slab.view(slot!, 0, len), at);
        } finally {
          this.slots.release([slot!]);
        }
      }));
    } catch (err) {
      this.readCache.endFill(fill, offsetBytes, null);
      throw err;
    }
    this.readCache.endFill(fill, offsetBytes, [out]);
    return out;
  }

  async write(offsetBytes: number, data: Uint8Array, opts: { fua?: boolean } = {}, cls: RequestClass = 'local'): Promise<void> {
    this.check(offsetBytes, data.length, 'ENOSPC', this.b.alignBytes);
    const flags = opts.fua === true ? DescFlags.FUA : 0;
    const release = await this.gate.enter(offsetBytes, data.length);
    try {
      await this.changing(offsetBytes, data.length, () => this.count('write', data.length, this.writeArray(offsetBytes, data, flags, cls)));
    } finally {
      release();
    }
  }

  // Hooks for layouts with a path of their own (raid5/6: parity-volume-io.ts). The public
  // methods keep the checks, the write gate, slot handling and counters.

  protected readPiece(off: number, len: number, slot: number, cls: RequestClass): Promise<void> {
    return this.top.submit(this.b.index, Op.READ, off, len, 0, slot, cls);
  }

  protected writeSlots(offsetBytes: number, chunks: readonly Uint8Array[], slots: readonly number[], flags: number, cls: RequestClass): Promise<void> {
    const sb = this.slab.slotBytes;
    return settleAll(chunks.map((c, i) => this.top.submit(this.b.index, Op.WRITE, offsetBytes + i * sb, c.length, flags, slots[i]!, cls)));
  }

  protected flushAll(): Promise<void> {
    return this.top.submit(this.b.index, Op.FLUSH, 0, 0, 0, -1, 'local');
  }

  protected noDataPiece(op: OpCode, off: number, len: number, flags: number): Promise<void> {
    return this.top.submit(this.b.index, op, off, len, flags, -1, 'local');
  }

  protected async writeArray(offsetBytes: number, data: Uint8Array, flags: number, cls: RequestClass): Promise<void> {
    await this.pieces(offsetBytes, data.length, this.slab.slotBytes, async (off, len, at) => {
      const [slot] = await this.slots.acquire(1);
      try {
        this.slab.view(slot!, 0, len).set(data.subarray(at, at + len));
        await this.top.submit(this.b.index, Op.WRITE, off, len, flags, slot!, cls);
      } finally {
        this.slots.release([slot!]);
      }
    });
  }

  async readSlots(offsetBytes: number, lengthBytes: number, cls: RequestClass = 'remote'): Promise<NbdReadResult> {
    this.check(offsetBytes, lengthBytes, 'EINVAL', this.b.alignBytes);
    // A hit answers with a copy from RAM; a miss stays zero-copy (slot views), the fill copies aside.
    const cached = this.cacheHit(offsetBytes, lengthBytes);
    if (cached !== null) return { chunks: [cached], release: () => {} };
    const fill = this.readCache.beginFill(this.b.index, offsetBytes, lengthBytes);
    const slots = lengthBytes === 0 ? [] : await this.slots.acquire(Math.ceil(lengthBytes / this.slab.slotBytes));
    const chunks = slots.map((s, i) => this.slab.view(s, 0, Math.min(this.slab.slotBytes, lengthBytes - i * this.slab.slotBytes)));
    try {
      await this.count('read', lengthBytes, settleAll(chunks.map((c, i) => this.readPiece(offsetBytes + i * this.slab.slotBytes, c.length, slots[i]!, cls))));
    } catch (err) {
      this.readCache.endFill(fill, offsetBytes, null);
      this.slots.release(slots);
      throw err;
    }
    this.readCache.endFill(fill, offsetBytes, chunks);
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
    try {
      const slots = this.writeBuffers.get(buf);
      if (slots === undefined) throw new DataPathError('EINVAL', 'write buffer was not acquired from this volume or was already released');
      const lengthBytes = buf.chunks.reduce((a, c) => a + c.length, 0);
      this.check(offsetBytes, lengthBytes, 'ENOSPC', this.b.alignBytes);
      const flags = opts.fua ? DescFlags.FUA : 0;
      const release = await this.gate.enter(offsetBytes, lengthBytes);
      try {
        await this.changing(offsetBytes, lengthBytes, () => this.count('write', lengthBytes, this.writeSlots(offsetBytes, buf.chunks, slots, flags, cls)));
      } finally {
        release();
      }
    } finally {
      buf.release();
    }
  }

  flush(): Promise<void> {
    return this.count('other', 0, this.flushAll());
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

  private noData(op: OpCode, off: number, len: number, flags: number): Promise<void> {
    try {
      this.check(off, len, op === Op.CACHE ? 'EINVAL' : 'ENOSPC', op === Op.WRITE_ZEROES ? this.b.alignBytes : op === Op.TRIM ? this.b.trimAlignBytes : 1);
    } catch (err) {
      return Promise.reject(err);
    }
    const run = (): Promise<void> => this.count('other', 0, this.pieces(off, len, NODATA_PIECE_BYTES, (o, l) => this.noDataPiece(op, o, l, flags)));
    if (op === Op.CACHE) return run();
    // TRIM and WRITE_ZEROES change data: they pass the gate like writes.
    return this.gate.enter(off, len).then(async (release) => {
      try {
        await this.changing(off, len, run);
      } finally {
        release();
      }
    });
  }

  /** The bytes [off, +len) from the read cache (into `out` if given) when all of it is there, else null; counts hit or miss. */
  private cacheHit(off: number, len: number, out?: Uint8Array): Uint8Array | null {
    if (!this.readCache.enabled || len === 0) return null;
    const got = this.readCache.readInto(this.b.index, off, len, out);
    if (got === null) {
      this.cacheCounters.misses++;
      return null;
    }
    this.cacheCounters.hits++;
    this.counters.readOps++;
    this.counters.readBytes += len;
    return got;
  }

  /**
   * Runs a data-changing op with its range invalidated before it is submitted and again when it
   * settles (even failed: legs may be half written). The second pass voids fills that raced it.
   */
  private async changing(off: number, len: number, work: () => Promise<void>): Promise<void> {
    this.readCache.invalidate(this.b.index, off, len);
    try {
      await work();
    } finally {
      this.readCache.invalidate(this.b.index, off, len);
    }
  }

  /** Bad input gets a clear error before anything is queued. */
  private check(off: number, len: number, pastEnd: DataPathErrno, alignBytes: number): void {
    if (!(Number.isSafeInteger(off) && off >= 0 && Number.isSafeInteger(len) && len >= 0)) {
      throw new DataPathError('EINVAL', `${this.b.name}: range [${off}, +${len}) is not a pair of non-negative integers`);
    }
    if (off + len > this.b.sizeBytes) throw new DataPathError(pastEnd, `${this.b.name}: range [${off}, +${len}) ends past the volume size ${this.b.sizeBytes}`);
    if (alignBytes > 1 && (off % alignBytes !== 0 || len % alignBytes !== 0)) {
      throw new DataPathError('EINVAL', `${this.b.name}: offset and length must be multiples of ${alignBytes} bytes (its elements' block size)`);
    }
  }

  /** Runs `fn` on each piece concurrently; settles after all of them (no piece is left running). */
  private async pieces(off: number, len: number, pieceBytes: number, fn: (off: number, len: number, at: number) => Promise<void>): Promise<void> {
    const all: Promise<void>[] = [];
    for (let at = 0; at < len; at += pieceBytes) all.push(fn(off + at, Math.min(pieceBytes, len - at), at));
    await settleAll(all);
  }

  private async count(kind: 'read' | 'write' | 'other', bytes: number, work: Promise<unknown>): Promise<void> {
    try {
      await work;
    } catch (err) {
      this.counters.errors++;
      throw err;
    }
    if (kind === 'read') {
      this.counters.readOps++;
      this.counters.readBytes += bytes;
    } else if (kind === 'write') {
      this.counters.writeOps++;
      this.counters.writeBytes += bytes;
    }
  }
}

/** Like Promise.all, but waits for every promise: a slot is reused only when nothing touches it. */
async function settleAll(all: readonly Promise<unknown>[]): Promise<void> {
  const results = await Promise.allSettled(all);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
}

function once(fn: () => void): () => void {
  let done = false;
  return () => {
    if (done) return;
    done = true;
    fn();
  };
}
