// The checksum store of one integrity volume (docs/integrity.md): each element's checksums live
// in its integrity area (one u32 per 4 KiB data block, 1024 per 4 KiB page), reached through the
// data path's maintenance channel (RawIo). Pages are cached in one LRU per engine
// (ChecksumPageCache, bounded in bytes) and their writes are serialised and coalesced per page
// exactly like the write-intent bitmap's (durable/page-queue.ts): N writers of one page cost at
// most two page writes. A dirty page always has its write queued, so eviction takes only clean
// pages (written before they go). A fresh area is sparse zeros = "no checksum": no initialisation.
import { endianness } from 'node:os';
import { DataPathError } from '../datapath/errno.js';
import type { RawIo } from '../datapath/raw-io.js';
import { PageWriteQueue } from '../durable/page-queue.js';
import { INTEGRITY_BLOCK_BYTES, INTEGRITY_SUM_BYTES, type ChecksumStore, type IntegrityArea } from './types.js';

export const CHECKSUM_PAGE_BYTES = 4096;
export const SUMS_PER_PAGE = CHECKSUM_PAGE_BYTES / INTEGRITY_SUM_BYTES;
/** Default bound of the engine's checksum page cache: 4096 pages, covering 16 GiB of data. */
export const DEFAULT_CHECKSUM_CACHE_BYTES = 16 * 1024 * 1024;

// Pages are Uint32Array views written as bytes: the on-disk format is little-endian.
if (endianness() !== 'LE') throw new Error('the checksum store assumes a little-endian host');

interface Page {
  readonly store: IntegrityStore;
  readonly element: number;
  readonly index: number;
  readonly sums: Uint32Array;
  /** Changes so far, and the change count the last successful write carried. */
  gen: number;
  writtenGen: number;
  /** A writer asked for FUA since the last write started. */
  fua: boolean;
  /** Readers/writers between load and use: never evicted meanwhile. */
  pins: number;
  /** Its last write failed: the memory copy is not on the element; dropped as soon as it is idle. */
  failed: boolean;
}

/** The LRU of checksum pages shared by every volume of an engine. */
export class ChecksumPageCache {
  /** Oldest first (a Set keeps insertion order; touch re-inserts). */
  private readonly lru = new Set<Page>();

  constructor(readonly limitBytes = DEFAULT_CHECKSUM_CACHE_BYTES) {
    if (!(Number.isSafeInteger(limitBytes) && limitBytes >= CHECKSUM_PAGE_BYTES)) throw new RangeError(`checksum cache of ${limitBytes} bytes: at least one ${CHECKSUM_PAGE_BYTES}-byte page`);
  }

  /** Bytes of pages held now (may exceed the limit only by pages pinned or being written). */
  get bytes(): number {
    return this.lru.size * CHECKSUM_PAGE_BYTES;
  }

  /** @internal */
  touch(page: Page): void {
    this.lru.delete(page);
    this.lru.add(page);
  }

  /** @internal */
  remove(page: Page): void {
    this.lru.delete(page);
  }

  /** @internal Evicts idle clean (or failed) pages, oldest first, until under the limit. */
  trim(): void {
    let over = this.lru.size - Math.floor(this.limitBytes / CHECKSUM_PAGE_BYTES);
    if (over <= 0) return;
    for (const page of this.lru) {
      if (over <= 0) break;
      if (!page.store.evictable(page)) continue;
      this.lru.delete(page);
      page.store.dropPage(page);
      over--;
    }
  }
}

export interface IntegrityStoreOptions {
  readonly raw: RawIo;
  readonly cache: ChecksumPageCache;
  /** The element's area now (data-path index; undefined = not an integrity element of this volume). */
  readonly areaOf: (element: number) => IntegrityArea | undefined;
  /** For messages. */
  readonly volume: string;
}

/** Waits for every promise (so no work outlives the call unseen), then throws the first rejection. */
async function settleAll(promises: readonly Promise<unknown>[]): Promise<void> {
  const results = await Promise.allSettled(promises);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
}

/** Page map key: element slot (< 2^20) and page index (< 2^32) in one safe integer. */
function keyOf(element: number, index: number): number {
  return element * 2 ** 32 + index;
}

export class IntegrityStore implements ChecksumStore {
  readonly blockBytes = INTEGRITY_BLOCK_BYTES;
  private readonly pages = new Map<number, Page>();
  /** Page reads in progress, so concurrent users of one page share a single read. */
  private readonly loading = new Map<number, Promise<Page>>();
  private readonly queue = new PageWriteQueue<Page>((page) => this.writePage(page));
  /** Per element: write() calls not settled yet (what flush waits for). */
  private readonly pending = new Map<number, Set<Promise<void>>>();
  /** Per element: bumped by forget(), so a page read that started before it is not cached. */
  private readonly epochs = new Map<number, number>();

  constructor(private readonly o: IntegrityStoreOptions) {}

  async read(element: number, firstBlock: number, count: number): Promise<Uint32Array> {
    const area = this.check(element, firstBlock, count);
    const out = new Uint32Array(count);
    await this.eachPage(element, area, firstBlock, count, false, (page, from, to, at) => {
      out.set(page.sums.subarray(from, to), at);
    });
    return out;
  }

  write(element: number, firstBlock: number, sums: Uint32Array, opts: { fua?: boolean } = {}): Promise<void> {
    // Tracked from the call on: a flush() after it waits for it even while its pages still load.
    return this.track(element, this.writeNow(element, firstBlock, sums, opts));
  }

  private async writeNow(element: number, firstBlock: number, sums: Uint32Array, opts: { fua?: boolean }): Promise<void> {
    const area = this.check(element, firstBlock, sums.length);
    const writes: Promise<void>[] = [];
    await this.eachPage(element, area, firstBlock, sums.length, true, (page, from, to, at) => {
      page.sums.set(sums.subarray(at, at + (to - from)), from);
      page.gen++;
      if (opts.fua === true) page.fua = true;
      writes.push(this.queue.persist(page));
    });
    await settleAll(writes);
  }

  async flush(element: number): Promise<void> {
    await settleAll([...(this.pending.get(element) ?? [])]);
    await this.o.raw.flush(element);
  }

  forget(element: number): void {
    this.epochs.set(element, (this.epochs.get(element) ?? 0) + 1);
    for (const [key, page] of this.pages) {
      if (page.element !== element) continue;
      this.pages.delete(key);
      this.o.cache.remove(page);
    }
    this.pending.delete(element);
  }

  /** Drops every cached page (volume deleted or engine closing; wait for idle() first to keep writes). */
  forgetAll(): void {
    for (const element of new Set([...this.pages.values()].map((p) => p.element))) this.forget(element);
  }

  /** Resolves when every page write queued so far has settled (errors were reported to the writers). */
  async idle(): Promise<void> {
    await Promise.allSettled([...this.pending.values()].flatMap((set) => [...set]));
  }

  /** Pages of this store in the cache now (tests, status). */
  get cachedPages(): number {
    return this.pages.size;
  }

  /** @internal (ChecksumPageCache) Idle, and clean or known bad. */
  evictable(page: Page): boolean {
    return page.pins === 0 && (page.gen === page.writtenGen || page.failed) && !this.queue.busy(page);
  }

  /** @internal (ChecksumPageCache) */
  dropPage(page: Page): void {
    const key = keyOf(page.element, page.index);
    if (this.pages.get(key) === page) this.pages.delete(key);
  }

  private check(element: number, firstBlock: number, count: number): IntegrityArea {
    const area = this.o.areaOf(element);
    if (area === undefined) throw new DataPathError('EINVAL', `volume ${this.o.volume}: element index ${element} keeps no checksums here`);
    const blocks = area.sizeBytes / INTEGRITY_SUM_BYTES;
    if (!(Number.isSafeInteger(firstBlock) && firstBlock >= 0 && Number.isSafeInteger(count) && count >= 0 && firstBlock + count <= blocks)) {
      throw new DataPathError('EINVAL', `volume ${this.o.volume}: checksums of blocks [${firstBlock}, +${count}) of element index ${element}: the area holds ${blocks}`);
    }
    return area;
  }

  /**
   * Calls `use(page, from, to, at)` for each page the blocks span (sums [from, to) of the page are
   * blocks at..at+(to-from) of the request), each page pinned from its load to its use. `whole`:
   * a page the request covers entirely need not be read first (a writer replaces all of it).
   */
  private async eachPage(element: number, area: IntegrityArea, firstBlock: number, count: number, whole: boolean,
    use: (page: Page, from: number, to: number, at: number) => void): Promise<void> {
    if (count === 0) return;
    const firstPage = Math.floor(firstBlock / SUMS_PER_PAGE);
    const lastPage = Math.floor((firstBlock + count - 1) / SUMS_PER_PAGE);
    const runs: Promise<void>[] = [];
    for (let index = firstPage; index <= lastPage; index++) {
      const from = Math.max(firstBlock, index * SUMS_PER_PAGE) - index * SUMS_PER_PAGE;
      const to = Math.min(firstBlock + count, (index + 1) * SUMS_PER_PAGE) - index * SUMS_PER_PAGE;
      const at = index * SUMS_PER_PAGE + from - firstBlock;
      runs.push(this.pin(element, area, index, whole && from === 0 && to === SUMS_PER_PAGE).then((page) => {
        try {
          use(page, from, to, at);
        } finally {
          page.pins--;
        }
      }));
    }
    try {
      await settleAll(runs);
    } finally {
      this.o.cache.trim();
    }
  }

  /** The cached page (pinned), read from the element when missing; `blank`: start from zeros instead of reading. */
  private async pin(element: number, area: IntegrityArea, index: number, blank: boolean): Promise<Page> {
    const key = keyOf(element, index);
    for (;;) {
      const cached = this.pages.get(key);
      if (cached !== undefined) {
        cached.pins++;
        this.o.cache.touch(cached);
        return cached;
      }
      const loading = this.loading.get(key);
      if (loading === undefined) break;
      await loading.catch(() => undefined);
      if (this.pages.get(key) === undefined) break; // the read failed or was forgotten: try ourselves
    }
    const epoch = this.epochs.get(element) ?? 0;
    const load = (async (): Promise<Page> => {
      let sums: Uint32Array;
      if (blank) {
        sums = new Uint32Array(SUMS_PER_PAGE);
      } else {
        let bytes: Uint8Array;
        try {
          bytes = await this.o.raw.read(element, area.offsetBytes + index * CHECKSUM_PAGE_BYTES, CHECKSUM_PAGE_BYTES);
        } catch (err) {
          throw new DataPathError('EIO', `volume ${this.o.volume}: reading checksum page ${index} of element index ${element}: ${(err as Error).message}`);
        }
        sums = new Uint32Array(bytes.slice().buffer, 0, SUMS_PER_PAGE);
      }
      const fresh: Page = { store: this, element, index, sums, gen: 0, writtenGen: 0, fua: false, pins: 0, failed: false };
      // Cached only if no forget() came in between (the element may have left the volume).
      if ((this.epochs.get(element) ?? 0) === epoch && !this.pages.has(key)) {
        this.pages.set(key, fresh);
        this.o.cache.touch(fresh);
      }
      const page = this.pages.get(key) ?? fresh;
      page.pins++; // pinned in the same turn it is cached: no trim can take it before its use
      return page;
    })();
    this.loading.set(key, load);
    try {
      return await load;
    } finally {
      if (this.loading.get(key) === load) this.loading.delete(key);
    }
  }

  /** Keeps `done` in the element's pending set until it settles (what flush and idle wait for). */
  private track(element: number, done: Promise<void>): Promise<void> {
    let set = this.pending.get(element);
    if (set === undefined) {
      set = new Set();
      this.pending.set(element, set);
    }
    const tracked = set;
    tracked.add(done);
    const forgetIt = (): void => {
      tracked.delete(done);
      if (tracked.size === 0 && this.pending.get(element) === tracked) this.pending.delete(element);
    };
    done.then(forgetIt, forgetIt);
    return done;
  }

  /** One page write (PageWriteQueue): takes the page as it is now, before the first await. */
  private async writePage(page: Page): Promise<void> {
    const gen = page.gen;
    const fua = page.fua;
    page.fua = false;
    const bytes = new Uint8Array(page.sums.buffer.slice(0));
    const area = this.o.areaOf(page.element);
    try {
      if (area === undefined) throw new Error('the element keeps no checksums any more');
      await this.o.raw.write(page.element, area.offsetBytes + page.index * CHECKSUM_PAGE_BYTES, bytes, { fua });
    } catch (err) {
      page.failed = true;
      throw new DataPathError('EIO', `volume ${this.o.volume}: writing checksum page ${page.index} of element index ${page.element}: ${(err as Error).message}`);
    }
    if (gen > page.writtenGen) page.writtenGen = gen;
    if (page.gen === page.writtenGen) page.failed = false;
    this.o.cache.trim(); // pages that became clean may go now
  }
}
