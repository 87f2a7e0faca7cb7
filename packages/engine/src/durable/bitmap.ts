// The write-intent bitmap of a mirror volume (raid1, raid10), as Linux md keeps it: one bit per
// region, set in memory and written (FUA) to every active and rebuilding leg BEFORE a client
// write may touch the region, cleared lazily once the region has been idle for a while and every
// leg is active. After an unclean stop only the set regions can differ between legs; after a leg
// comes back, only the set regions changed while it was away (bitmap-codec.ts has the rule).
// The hook runs inside the volume's write gate, so the bits of admitted writes are visible to the
// sweep (gate.inFlightRanges) and a bit is never cleared under a write in flight.
// Page writes are serialised per page and coalesced: writers that need the same page wait for one
// write, which carries the page as it is when the write starts.
import { DataPathError } from '../datapath/errno.js';
import type { RawIo } from '../datapath/raw-io.js';
import type { WriteGate } from '../datapath/write-gate.js';
import { BITMAP_OFFSET_BYTES } from '../meta/types.js';
import {
  BITMAP_BITS_MAX_BYTES, BITMAP_HEADER_BYTES, BITMAP_PAGE_BYTES, bitPageOffsetBytes, bitPagesFor, BitmapError, countSet, decodeBitmapHeader,
  encodeBitmapHeader, regionCountFor, REGIONS_PER_PAGE, setRuns, type BitmapHeader,
} from './bitmap-codec.js';
import type { VolumeRange } from './units.js';
import { PageWriteQueue } from './page-queue.js';

export interface BitmapLegs {
  /** Elements the bitmap goes to now: the volume's active and rebuilding legs. */
  targets(): readonly number[];
  /** A bitmap write to `element` failed: take the leg out, as a failed data write would. */
  failLeg(element: number, err: unknown): void;
  /** Whether bits may be cleared now: every leg active and nothing being copied (md's rule). */
  canClear(): boolean;
  /** The volume's event counter now (recorded as eventsCleared when bits are cleared). */
  eventCount(): number;
}

export interface BitmapOptions {
  readonly raw: RawIo;
  readonly gate: WriteGate;
  readonly legs: BitmapLegs;
  readonly arrayUuid: string;
  readonly volumeSizeBytes: number;
  /** Region size (a loaded bitmap's, else regionBytesFor(volume size, the configured minimum)). */
  readonly regionBytes: number;
  /** How often idle regions are looked for (default 1000 ms; 0 = never, tests drive sweep()). */
  readonly sweepMs?: number;
  /** Sweeps a region must stay unwritten before its bit is cleared (default 3: 2 to 3 s idle). */
  readonly idleSweeps?: number;
  /**
   * Runs before a sweep clears bits and must make durable, on every leg, whatever a resync of
   * the regions would otherwise have to repair: an integrity volume's write-back checksum pages
   * (keeper.ts wires it to a flush of the volume's checksum store). A rejection clears nothing.
   */
  readonly beforeClear?: () => Promise<void>;
}

// The page queue is shared with the checksum store; re-exported for existing importers.
export { deferred, type Deferred } from './page-queue.js';

/** What was found on the legs at open. */
export interface LoadedBitmap {
  /** Set bits and eventsCleared from at least one leg matched this array and volume size. */
  readonly valid: boolean;
  /** The region size found on the legs (when valid), else the one asked for. */
  readonly regionBytes: number;
  readonly bits: Uint8Array;
  readonly eventsCleared: number;
  /** Legs whose bitmap could not be used, and why (for the log). */
  readonly problems: readonly string[];
}

const PAGE_SHIFT = Math.log2(REGIONS_PER_PAGE);

export class WriteIntentBitmap {
  readonly regionBytes: number;
  readonly regionCount: number;
  readonly bitPages: number;
  private readonly bits: Uint8Array;
  /** The bits as last written to the legs (a writer passes only when its bit is set in both). */
  private readonly onDisk: Uint8Array;
  /** Sweeps since the region was last written (saturating). */
  private readonly idle: Uint8Array;
  /** Page writes (index 0 = header, k + 1 = bit page k), serialised and coalesced per page. */
  private readonly queues: PageWriteQueue<number>;
  /** Changes per page, so a leg seeded from a snapshot can catch up on what changed meanwhile. */
  private readonly gens: Uint32Array;
  private eventsCleared: number;
  private timer: NodeJS.Timeout | null = null;
  private sweeping: Promise<void> | null = null;
  private closed = false;

  constructor(private readonly o: BitmapOptions, loaded?: LoadedBitmap) {
    this.regionBytes = o.regionBytes;
    if (regionCountFor(o.volumeSizeBytes, this.regionBytes) > BITMAP_BITS_MAX_BYTES * 8) throw new Error(`${this.regionBytes}-byte regions: the bitmap of ${o.volumeSizeBytes} bytes does not fit`);
    this.regionCount = regionCountFor(o.volumeSizeBytes, this.regionBytes);
    this.bitPages = bitPagesFor(this.regionCount);
    this.bits = new Uint8Array(this.bitPages * BITMAP_PAGE_BYTES);
    if (loaded !== undefined) {
      if (loaded.bits.length !== this.bits.length) throw new Error(`loaded bitmap of ${loaded.bits.length} bytes, expected ${this.bits.length}`);
      this.bits.set(loaded.bits);
    }
    this.onDisk = this.bits.slice();
    this.idle = new Uint8Array(this.regionCount);
    this.queues = new PageWriteQueue((k) => this.writePage(k));
    this.gens = new Uint32Array(this.bitPages + 1);
    this.eventsCleared = loaded?.eventsCleared ?? o.legs.eventCount();
    const sweepMs = o.sweepMs ?? 1000;
    if (sweepMs > 0) this.timer = setInterval(() => void this.sweep().catch(() => undefined), sweepMs).unref();
  }

  /**
   * Reads the bitmaps of `sources`: the OR of the bits of every leg holding one of this array and
   * volume size (the first such leg fixes the region size; `wantRegionBytes` is for a new bitmap).
   */
  static async load(raw: RawIo, sources: readonly number[], arrayUuid: string, volumeSizeBytes: number, wantRegionBytes: number): Promise<LoadedBitmap> {
    let regionBytes = -1;
    let bits = new Uint8Array(0);
    const problems: string[] = [];
    let eventsCleared = -1;
    for (const source of sources) {
      try {
        const header = decodeBitmapHeader(await raw.read(source, BITMAP_OFFSET_BYTES, BITMAP_HEADER_BYTES));
        if ('kind' in header) throw new BitmapError('invalid-field', 'no bitmap yet');
        if (header.arrayUuid !== arrayUuid || header.volumeSizeBytes !== volumeSizeBytes || (regionBytes > 0 && header.regionBytes !== regionBytes)) {
          throw new BitmapError('invalid-field', `bitmap of another array or geometry (${header.arrayUuid}, ${header.regionBytes}-byte regions, ${header.volumeSizeBytes} bytes)`);
        }
        if (regionBytes < 0) {
          regionBytes = header.regionBytes;
          bits = new Uint8Array(bitPagesFor(header.regionCount) * BITMAP_PAGE_BYTES);
        }
        const own = await raw.read(source, bitPageOffsetBytes(0), bits.length);
        for (let i = 0; i < bits.length; i++) bits[i]! |= own[i]!;
        // The highest is the safe one: a leg must be at least that recent to trust the bits.
        eventsCleared = Math.max(eventsCleared, header.eventsCleared);
      } catch (err) {
        problems.push(`element index ${source}: ${(err as Error).message}`);
      }
    }
    const valid = eventsCleared >= 0;
    return { valid, regionBytes: valid ? regionBytes : wantRegionBytes, bits, eventsCleared: Math.max(0, eventsCleared), problems };
  }

  /** Writes the whole bitmap to legs no writer can reach yet (volume attach); a leg that refuses it is failed. */
  async writeImage(elements: readonly number[]): Promise<void> {
    const image = this.image();
    const results = await Promise.allSettled(elements.map((el) => this.o.raw.write(el, BITMAP_OFFSET_BYTES, image, { fua: true })));
    results.forEach((r, i) => {
      if (r.status === 'rejected') this.o.legs.failLeg(elements[i]!, r.reason);
    });
  }

  /**
   * Seeds a leg that is about to take writes (made rebuilding by the caller after this resolves),
   * then hands back catchUp(): run it once the leg is a target, so pages changed meanwhile reach it.
   */
  async seedLeg(element: number): Promise<() => Promise<void>> {
    const gens = this.gens.slice();
    await this.o.raw.write(element, BITMAP_OFFSET_BYTES, this.image(), { fua: true });
    return async () => {
      const changed: Promise<void>[] = [];
      for (let k = 0; k < gens.length; k++) if (gens[k] !== this.gens[k]) changed.push(this.persist(k));
      await Promise.all(changed);
    };
  }

  /** The gate hook: sets the bits of [offset, +length) and waits until they are on the legs. */
  readonly hook = (offsetBytes: number, lengthBytes: number): Promise<void> | undefined => {
    if (this.closed || this.regionCount === 0) return undefined;
    const first = Math.floor(offsetBytes / this.regionBytes);
    const last = Math.min(this.regionCount - 1, Math.floor((offsetBytes + Math.max(lengthBytes, 1) - 1) / this.regionBytes));
    let waits: Promise<void>[] | null = null;
    let lastPage = -1;
    for (let r = first; r <= last; r++) {
      this.idle[r] = 0;
      const byte = r >> 3;
      const mask = 1 << (r & 7);
      if ((this.bits[byte]! & this.onDisk[byte]! & mask) !== 0) continue; // dirty and durable: no wait
      const page = r >> PAGE_SHIFT;
      if ((this.bits[byte]! & mask) === 0) {
        this.bits[byte]! |= mask;
        this.gens[page + 1]!++;
      }
      if (page !== lastPage) (waits ??= []).push(this.persist(page + 1));
      lastPage = page;
    }
    if (waits === null) return undefined;
    return waits.length === 1 ? waits[0] : Promise.all(waits).then(() => undefined);
  };

  /** Volume ranges of the set regions (clipped to the volume): what a resync copies. */
  dirtyRanges(): VolumeRange[] {
    const out: VolumeRange[] = [];
    for (const run of setRuns(this.bits, this.regionCount)) {
      const offsetBytes = run.firstRegion * this.regionBytes;
      out.push({ offsetBytes, lengthBytes: Math.min(run.regions * this.regionBytes, this.o.volumeSizeBytes - offsetBytes) });
    }
    return out;
  }

  get dirtyRegions(): number {
    return countSet(this.bits, this.regionCount);
  }

  get eventsClearedCount(): number {
    return this.eventsCleared;
  }

  /**
   * Clears the bits of regions idle for `idleSweeps` sweeps (or all with `everything`, at a clean
   * stop after a flush) when legs.canClear(), and writes the changed pages. One sweep at a time.
   */
  sweep(everything = false): Promise<void> {
    this.sweeping ??= this.sweepOnce(everything).finally(() => {
      this.sweeping = null;
    });
    return this.sweeping;
  }

  private async sweepOnce(everything: boolean): Promise<void> {
    if (this.closed && !everything) return;
    if (!this.o.legs.canClear()) return;
    const idleSweeps = everything ? 0 : this.o.idleSweeps ?? 3;
    const candidates: number[] = [];
    for (const run of setRuns(this.bits, this.regionCount)) {
      for (let r = run.firstRegion; r < run.firstRegion + run.regions; r++) {
        if (this.idle[r]! < 255) this.idle[r]!++;
        if (this.idle[r]! >= idleSweeps) candidates.push(r);
      }
    }
    if (candidates.length === 0) return;
    // THE INVARIANT of write-back checksums (integrity/store.ts): a bit is cleared only after the
    // checksum pages of every write that finished in its region are durable on every leg, since
    // after a crash only set regions get their checksums recomputed. beforeClear flushes every
    // page changed so far; a write still in flight now may finish after that flush, and one
    // admitted later resets its region's idle count (hook): both regions stay set this time.
    const busyBefore = this.o.gate.inFlightRanges();
    await this.o.beforeClear?.();
    // The header first: once a cleared bit is on a leg, eventsCleared must already say since when.
    const now = this.o.legs.eventCount();
    if (now !== this.eventsCleared) {
      this.eventsCleared = now;
      this.gens[0]!++;
      await this.persist(0);
    }
    // Synchronous from here to the last bit change: no writer can slip in between the check and the clear.
    if (!this.o.legs.canClear() || this.o.legs.eventCount() !== this.eventsCleared) return;
    const busy = [...busyBefore, ...this.o.gate.inFlightRanges()];
    const pages = new Set<number>();
    for (const r of candidates) {
      const start = r * this.regionBytes;
      if (this.idle[r]! < idleSweeps) continue; // written since the scan above
      if (busy.some((b) => b.start < start + this.regionBytes && start < b.end)) continue;
      const byte = r >> 3;
      const mask = 1 << (r & 7);
      if ((this.bits[byte]! & mask) === 0) continue;
      this.bits[byte]! &= ~mask;
      this.gens[(r >> PAGE_SHIFT) + 1]!++;
      pages.add((r >> PAGE_SHIFT) + 1);
    }
    await Promise.all([...pages].map((k) => this.persist(k)));
  }

  /** Stops the sweep timer; waits for page writes in progress. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    await this.sweeping?.catch(() => undefined);
  }

  /** Header + bit pages as one buffer (what a leg holds from BITMAP_OFFSET_BYTES on). */
  private image(): Uint8Array {
    const out = new Uint8Array(BITMAP_HEADER_BYTES + this.bits.length);
    out.set(encodeBitmapHeader(this.header()), 0);
    out.set(this.bits, BITMAP_HEADER_BYTES);
    return out;
  }

  private header(): BitmapHeader {
    return { arrayUuid: this.o.arrayUuid, regionBytes: this.regionBytes, regionCount: this.regionCount, volumeSizeBytes: this.o.volumeSizeBytes, eventsCleared: this.eventsCleared };
  }

  /** Resolves when page k as it is now (or later) is on the legs. */
  private persist(k: number): Promise<void> {
    if (!(Number.isInteger(k) && k >= 0 && k <= this.bitPages)) throw new Error(`bitmap page ${k} out of range`);
    return this.queues.persist(k);
  }

  /** One page write, as the page is when it starts: every change made before now is in it. */
  private async writePage(k: number): Promise<void> {
    const bytes = k === 0 ? encodeBitmapHeader(this.header()) : this.bits.slice((k - 1) * BITMAP_PAGE_BYTES, k * BITMAP_PAGE_BYTES);
    const offset = k === 0 ? BITMAP_OFFSET_BYTES : bitPageOffsetBytes(k - 1);
    await this.writeToLegs(offset, bytes);
    if (k > 0) this.onDisk.set(bytes, (k - 1) * BITMAP_PAGE_BYTES);
  }

  private async writeToLegs(offsetBytes: number, bytes: Uint8Array): Promise<void> {
    const targets = this.o.legs.targets();
    if (targets.length === 0) throw new DataPathError('EIO', 'write-intent bitmap: no active leg to hold it');
    const results = await Promise.allSettled(targets.map((el) => this.o.raw.write(el, offsetBytes, bytes, { fua: true })));
    let written = 0;
    results.forEach((r, i) => {
      if (r.status === 'fulfilled') written++;
      else this.o.legs.failLeg(targets[i]!, r.reason);
    });
    if (written === 0) {
      const why = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')?.reason as Error | undefined;
      throw new DataPathError('EIO', `write-intent bitmap: no leg took the update (${why?.message ?? 'unknown'})`);
    }
  }
}
