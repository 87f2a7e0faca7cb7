// One checkpoint's dirty bitmap: in memory (allocated once), and in its bits file (format.ts).
// The rule is the write-intent bitmap's (durable/bitmap.ts): a bit that goes 0 -> 1 is on stable
// storage before the write that set it is submitted, so an acknowledged or in-flight write is
// never missing after a crash. Unlike that bitmap, bits are never cleared while the checkpoint
// lives: once a region's bit is durable, writes there cost one bit test.
// Page writes are group-committed: marks made while a round (pwrite of the changed pages, then
// one fdatasync) runs go to the next round, which starts when the running one ends, so writers
// of the same or different pages share one fdatasync. Invariant: a page whose bits in memory are
// not all durable is pending (next round) or in the running round.
import * as fs from 'node:fs/promises';
import { DataPathError, errnoFromError } from '../datapath/errno.js';
import { deferred, type Deferred } from '../durable/bitmap.js';
import {
  bitsBytesFor, CheckpointFormatError, decodeHeader, encodeHeader, encodePage, fileBytesFor, HEADER_BYTES, PAGE_BIT_BYTES, PAGE_BYTES, PAGE_REGIONS,
  pageIntact, pageOffsetBytes, pagesFor, type CheckpointHeader,
} from './format.js';
import type { BitmapView } from './extents.js';

/** The file under a checkpoint; tests wrap it to inject failures. */
export interface BitsFile {
  read(positionBytes: number, lengthBytes: number): Promise<Uint8Array>;
  write(bytes: Uint8Array, positionBytes: number): Promise<void>;
  /** fdatasync (fsync with `full`: after the file's size changed). */
  sync(full?: boolean): Promise<void>;
  close(): Promise<void>;
}

export type OpenBitsFile = (path: string, create: boolean) => Promise<BitsFile>;

/** Opens (or creates, mode 0600) a bits file with node:fs. */
export const openBitsFile: OpenBitsFile = async (path, create) => {
  const fh = await fs.open(path, create ? 'w+' : 'r+', 0o600);
  return {
    read: async (positionBytes, lengthBytes) => {
      const out = new Uint8Array(lengthBytes);
      const { bytesRead } = await fh.read(out, 0, lengthBytes, positionBytes);
      return out.subarray(0, bytesRead);
    },
    write: async (bytes, positionBytes) => {
      const { bytesWritten } = await fh.write(bytes, 0, bytes.length, positionBytes);
      if (bytesWritten !== bytes.length) throw new Error(`short write: ${bytesWritten} of ${bytes.length} bytes`);
    },
    sync: (full) => (full === true ? fh.sync() : fh.datasync()),
    close: () => fh.close(),
  };
};

const POPCOUNT = Uint8Array.from({ length: 256 }, (_, b) => [0, 1, 2, 3, 4, 5, 6, 7].reduce((n, i) => n + ((b >> i) & 1), 0));

/** What a loaded file held. */
export interface LoadedBits {
  readonly bits: CheckpointBits;
  /** Pages that failed their CRC (torn by a crash, or rotten): read as all dirty, rewritten. */
  readonly repairedPages: number;
}

export class CheckpointBits implements BitmapView {
  readonly regionBytes: number;
  readonly regionCount: number;
  readonly volumeSizeBytes: number;
  readonly bits: Uint8Array;
  /** The bits as the file holds them after the last good round. */
  private readonly durable: Uint8Array;
  private set = 0;
  private readonly pending = new Set<number>();
  private running: ReadonlySet<number> | null = null;
  private current: Deferred | null = null;
  private next: Deferred | null = null;
  private closed = false;

  private constructor(readonly header: CheckpointHeader, private readonly file: BitsFile, private readonly label: string) {
    this.regionBytes = header.regionBytes;
    this.regionCount = header.regionCount;
    this.volumeSizeBytes = header.volumeSizeBytes;
    this.bits = new Uint8Array(bitsBytesFor(this.regionCount));
    this.durable = new Uint8Array(this.bits.length);
  }

  /** Writes a new, clean bits file (header and zero pages, fsync'd); the caller fsyncs the directory. */
  static async create(file: BitsFile, header: CheckpointHeader, label: string): Promise<CheckpointBits> {
    const image = new Uint8Array(fileBytesFor(header.regionCount));
    image.set(encodeHeader(header), 0);
    const zero = encodePage(new Uint8Array(0), 0);
    for (let k = 0; k < pagesFor(header.regionCount); k++) image.set(zero, pageOffsetBytes(k));
    await file.write(image, 0);
    await file.sync(true);
    return new CheckpointBits(header, file, label);
  }

  /** Reads a bits file; throws CheckpointFormatError when it is not the checkpoint `expect` describes. */
  static async load(file: BitsFile, expect: Omit<CheckpointHeader, 'regionCount'>, label: string): Promise<LoadedBits> {
    const header = decodeHeader(await file.read(0, HEADER_BYTES));
    const mismatch = (Object.keys(expect) as (keyof typeof expect)[]).find((k) => header[k] !== expect[k]);
    if (mismatch !== undefined) throw new CheckpointFormatError('invalid-field', `${mismatch} ${String(header[mismatch])} in the file, ${String(expect[mismatch])} in the index`);
    const pages = pagesFor(header.regionCount);
    const body = await file.read(HEADER_BYTES, pages * PAGE_BYTES);
    if (body.length !== pages * PAGE_BYTES) throw new CheckpointFormatError('truncated', `bits file holds ${body.length} of ${pages * PAGE_BYTES} page bytes`);
    const b = new CheckpointBits(header, file, label);
    let repairedPages = 0;
    for (let k = 0; k < pages; k++) {
      const page = body.subarray(k * PAGE_BYTES, (k + 1) * PAGE_BYTES);
      if (pageIntact(page)) {
        b.bits.set(page.subarray(0, PAGE_BIT_BYTES), k * PAGE_BIT_BYTES);
        b.durable.set(page.subarray(0, PAGE_BIT_BYTES), k * PAGE_BIT_BYTES);
      } else {
        // Bits only go 0 -> 1: a page we cannot trust reads as all dirty (a superset is safe).
        b.bits.fill(0xff, k * PAGE_BIT_BYTES, (k + 1) * PAGE_BIT_BYTES);
        b.pending.add(k);
        repairedPages++;
      }
    }
    b.clearPastEnd();
    b.set = b.countSet();
    if (repairedPages > 0) await b.commit();
    return { bits: b, repairedPages };
  }

  get dirtyRegions(): number {
    return this.set;
  }

  /**
   * Sets the bits of [offset, +length) and resolves once they are in the file; undefined when
   * they already are (the steady state). A failed file write rejects with EIO.
   */
  mark(offsetBytes: number, lengthBytes: number): Promise<void> | undefined {
    if (this.closed || lengthBytes <= 0 || offsetBytes >= this.volumeSizeBytes) return undefined;
    const first = Math.floor(offsetBytes / this.regionBytes);
    const last = Math.min(this.regionCount - 1, Math.floor((offsetBytes + lengthBytes - 1) / this.regionBytes));
    let waitNext = false;
    let waitCurrent = false;
    // Bounded by the regions of the range; whole bytes at a time where the range covers them
    // (pages hold whole bytes, so a byte never straddles two).
    for (let r = first; r <= last;) {
      const byte = r >> 3;
      const whole = (r & 7) === 0 && r + 7 <= last;
      const mask = whole ? 0xff : 1 << (r & 7);
      r += whole ? 8 : 1;
      if ((this.durable[byte]! & mask) === mask) continue;
      const page = Math.floor((byte * 8) / PAGE_REGIONS);
      const old = this.bits[byte]!;
      if ((old & mask) !== mask) {
        this.bits[byte] = old | mask;
        this.set += POPCOUNT[(old | mask) ^ old]!;
        this.pending.add(page);
        waitNext = true;
      } else if (this.pending.has(page)) {
        waitNext = true;
      } else if (this.running?.has(page) === true) {
        waitCurrent = true; // set before the running round took its snapshot of the page
      } else {
        this.pending.add(page);
        waitNext = true;
      }
    }
    const a = waitCurrent ? this.current!.promise : undefined;
    const b = waitNext ? this.commit() : undefined;
    return a !== undefined && b !== undefined ? Promise.all([a, b]).then(() => undefined) : a ?? b;
  }

  /** Resolves once every mark made so far is in the file. */
  flushed(): Promise<void> {
    if (this.pending.size > 0) return this.commit();
    return this.current?.promise ?? Promise.resolve();
  }

  /** No more marks; waits for rounds in progress (their errors are their writers'), closes the file. */
  async close(): Promise<void> {
    this.closed = true;
    // Bounded: with no new marks, at most the running round and one queued behind it.
    for (let i = 0; i < 2 && (this.current !== null || this.next !== null); i++) await (this.current ?? this.next)!.promise.catch(() => undefined);
    await this.file.close();
  }

  private commit(): Promise<void> {
    const d = (this.next ??= deferred());
    if (this.current === null) this.startRound();
    return d.promise;
  }

  private startRound(): void {
    const round = this.next;
    if (round === null || this.current !== null) throw new Error('checkpoint bits: round started twice');
    this.next = null;
    const pages = [...this.pending].sort((x, y) => x - y);
    this.pending.clear();
    this.current = round;
    this.running = new Set(pages);
    // Snapshots taken now: every bit set before this line is in them.
    const images = pages.map((k) => encodePage(this.bits, k));
    this.writePages(pages, images).then(() => {
      images.forEach((img, i) => this.durable.set(img.subarray(0, PAGE_BIT_BYTES), pages[i]! * PAGE_BIT_BYTES));
      round.resolve();
    }, (err: unknown) => {
      for (const k of pages) this.pending.add(k); // not durable: the next writer there waits again
      round.reject(new DataPathError('EIO', `checkpoint ${this.label}: dirty bitmap not saved (${errnoFromError(err)}: ${(err as Error)?.message ?? String(err)})`));
    }).finally(() => {
      this.current = null;
      this.running = null;
      if (this.next !== null) this.startRound();
    });
  }

  /** One pwrite per run of consecutive pages, then one fdatasync. */
  private async writePages(pages: readonly number[], images: readonly Uint8Array[]): Promise<void> {
    if (pages.length === 0) return;
    const writes: Promise<void>[] = [];
    for (let i = 0; i < pages.length;) {
      let j = i + 1;
      while (j < pages.length && pages[j] === pages[j - 1]! + 1) j++;
      const run = new Uint8Array((j - i) * PAGE_BYTES);
      for (let n = i; n < j; n++) run.set(images[n]!, (n - i) * PAGE_BYTES);
      writes.push(this.file.write(run, pageOffsetBytes(pages[i]!)));
      i = j;
    }
    const results = await Promise.allSettled(writes);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
    await this.file.sync();
  }

  private clearPastEnd(): void {
    for (let r = this.regionCount; r < this.bits.length * 8 && (r & 7) !== 0; r++) this.bits[r >> 3]! &= ~(1 << (r & 7));
    this.bits.fill(0, Math.ceil(this.regionCount / 8));
  }

  private countSet(): number {
    let n = 0;
    for (const byte of this.bits) n += POPCOUNT[byte]!;
    return n;
  }
}
