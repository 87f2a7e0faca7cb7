// The checksum store of one integrity volume (docs/integrity.md): each element's checksums live
// in its integrity area (one u32 per 4 KiB data block, 1024 per 4 KiB page), reached through the
// data path's maintenance channel (RawIo). Pages are cached in one LRU per engine
// (ChecksumPageCache, bounded in bytes) and their writes are serialised and coalesced per page
// exactly like the write-intent bitmap's (durable/page-queue.ts): N writers of one page cost at
// most two page writes. A fresh area is sparse zeros = "no checksum": no initialisation.
//
// Two modes. Write-through (the default): write() queues the page write and resolves once the
// page is on the element. Write-back (`writeBack: true`, what integrity volumes use): write()
// updates the cached page, marks it dirty and resolves at once (FUA writes still go through and
// wait); dirty pages are written on flush(), before they are evicted, and when the dirty pages
// exceed half the cache (writers then wait for write-back: back-pressure, never a drop).
// A random 4 KiB write then costs no checksum page write of its own, which is most of what
// integrity cost a raid1. Crash safety comes from the write-intent bitmap, not from the order of
// page writes: a region's bit is cleared only after its checksum pages are durable on every leg
// (durable/bitmap.ts beforeClear, wired in durable/keeper.ts), and resync recomputes the
// checksums of every set region (integrity/recompute.ts). A dirty page is never dropped, even
// when its write failed: flush() reports the failure until a write succeeds.
import { endianness } from 'node:os';
import { DataPathError } from '../datapath/errno.js';
import type { RawIo } from '../datapath/raw-io.js';
import { settleAll } from '../datapath/settle.js';
import { PageWriteQueue } from '../durable/page-queue.js';
import { CHECKSUM_PAGE_BYTES, ChecksumPageCache, DEFAULT_CHECKSUM_CACHE_BYTES, isDirty, type Page } from './page-cache.js';
import { INTEGRITY_BLOCK_BYTES, INTEGRITY_SUM_BYTES, type ChecksumStore, type IntegrityArea } from './types.js';

export const SUMS_PER_PAGE = CHECKSUM_PAGE_BYTES / INTEGRITY_SUM_BYTES;
export { CHECKSUM_PAGE_BYTES, ChecksumPageCache, DEFAULT_CHECKSUM_CACHE_BYTES };

// Pages are Uint32Array views written as bytes: the on-disk format is little-endian.
if (endianness() !== 'LE') throw new Error('the checksum store assumes a little-endian host');

export interface IntegrityStoreOptions {
  readonly raw: RawIo;
  readonly cache: ChecksumPageCache;
  /** The element's area now (data-path index; undefined = not an integrity element of this volume). */
  readonly areaOf: (element: number) => IntegrityArea | undefined;
  /** For messages. */
  readonly volume: string;
  /** Write-back mode (see the top of this file); default write-through. */
  readonly writeBack?: boolean;
}

/** Waits for every promise (so no work outlives the call unseen), then throws the first rejection. */
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
  /** Per element: page writes that succeeded so far, and how many of them an element flush covered. */
  private readonly writtenPages = new Map<number, number>();
  private readonly flushedPages = new Map<number, number>();

  constructor(private readonly o: IntegrityStoreOptions) {}

  async read(element: number, firstBlock: number, count: number): Promise<Uint32Array> {
    const area = this.check(element, firstBlock, count);
    const out = new Uint32Array(count);
    await this.eachPage(element, area, firstBlock, count, false, (page, from, to, at) => {
      out.set(page.sums.subarray(from, to), at);
    });
    return out;
  }

  /**
   * Synchronous read from cached pages only (checksum-io.ts PeekableStore): true and `out` filled
   * when every page is cached, false (nothing promised) otherwise — the caller then awaits read().
   * A passing 4 KiB read then costs a map look-up instead of a promise and a settleAll.
   */
  peek(element: number, firstBlock: number, count: number, out: Uint32Array): boolean {
    const area = this.o.areaOf(element);
    if (area === undefined || count === 0 || out.length < count || firstBlock < 0 || firstBlock + count > area.sizeBytes / INTEGRITY_SUM_BYTES) return false;
    const firstPage = Math.floor(firstBlock / SUMS_PER_PAGE);
    const lastPage = Math.floor((firstBlock + count - 1) / SUMS_PER_PAGE);
    for (let index = firstPage; index <= lastPage; index++) if (!this.pages.has(keyOf(element, index))) return false;
    for (let index = firstPage; index <= lastPage; index++) {
      const page = this.pages.get(keyOf(element, index))!;
      const from = Math.max(firstBlock, index * SUMS_PER_PAGE) - index * SUMS_PER_PAGE;
      const to = Math.min(firstBlock + count, (index + 1) * SUMS_PER_PAGE) - index * SUMS_PER_PAGE;
      out.set(page.sums.subarray(from, to), index * SUMS_PER_PAGE + from - firstBlock);
      this.o.cache.touch(page);
    }
    return true;
  }

  write(element: number, firstBlock: number, sums: Uint32Array, opts: { fua?: boolean } = {}): Promise<void> {
    // Tracked from the call on: a flush() after it waits for it even while its pages still load.
    return this.track(element, this.writeNow(element, firstBlock, sums, opts));
  }

  private async writeNow(element: number, firstBlock: number, sums: Uint32Array, opts: { fua?: boolean }): Promise<void> {
    const area = this.check(element, firstBlock, sums.length);
    const writes: Promise<void>[] = [];
    const through = this.o.writeBack !== true || opts.fua === true;
    await this.eachPage(element, area, firstBlock, sums.length, true, (page, from, to, at) => {
      page.sums.set(sums.subarray(at, at + (to - from)), from);
      page.gen++;
      this.o.cache.markDirty(page);
      if (!through) return;
      if (opts.fua === true) page.fua = true;
      writes.push(this.writeBackPage(page));
    });
    if (writes.length > 0) await settleAll(writes);
    else await this.o.cache.relieve();
  }

  /**
   * Writes every page changed by write() calls so far on `element` (waiting for those still
   * loading their pages), without flushing the element: for a caller that flushes the element
   * itself next (a volume FLUSH), so the element is synced once, not twice.
   */
  async writeBack(element: number): Promise<void> {
    await settleAll([...(this.pending.get(element) ?? [])]);
    await settleAll(this.o.cache.dirtyOf(this, element).map((page) => this.writeBackPage(page)));
  }

  /** writeBack(), then the element flush unless no page write succeeded since the last one. */
  async flush(element: number): Promise<void> {
    await this.writeBack(element);
    const written = this.writtenPages.get(element) ?? 0;
    if (written === (this.flushedPages.get(element) ?? 0)) return;
    await this.o.raw.flush(element);
    // Every page write counted in `written` had completed before the flush started.
    if (written > (this.flushedPages.get(element) ?? 0)) this.flushedPages.set(element, written);
  }

  /** flush() of every element with pages changed or being written (engine close, bitmap sweep). */
  async flushAll(): Promise<void> {
    const elements = new Set([...this.pending.keys(), ...[...this.pages.values()].filter((p) => isDirty(p)).map((p) => p.element)]);
    await settleAll([...elements].map((el) => this.flush(el)));
  }

  /** Pages of this store changed and not written yet (tests, status). */
  get dirtyPages(): number {
    let n = 0;
    for (const page of this.pages.values()) if (isDirty(page)) n++;
    return n;
  }

  /**
   * @internal Resolves when the page as it is now is written: joins the write already asked
   * for at the same change count, else queues one (coalesced per page by the queue).
   */
  writeBackPage(page: Page): Promise<void> {
    const asked = page.persisting;
    if (asked !== null && asked.gen === page.gen) return asked.done;
    const entry = { gen: page.gen, done: this.queue.persist(page) };
    page.persisting = entry;
    const settled = (): void => {
      if (page.persisting === entry) page.persisting = null;
    };
    entry.done.then(settled, settled);
    return entry.done;
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

  /**
   * @internal (ChecksumPageCache) Idle, and clean (a write of it may still be finishing: it
   * carried every change), or (write-through only) known bad with no write queued: its writer was told.
   */
  evictable(page: Page): boolean {
    return page.pins === 0 && (!isDirty(page) || (page.failed && this.o.writeBack !== true && !this.queue.busy(page)));
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
      const fresh: Page = { store: this, element, index, sums, gen: 0, writtenGen: 0, fua: false, pins: 0, failed: false, persisting: null };
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
    this.writtenPages.set(page.element, (this.writtenPages.get(page.element) ?? 0) + 1);
    if (page.gen === page.writtenGen) {
      page.failed = false;
      this.o.cache.markClean(page);
    }
    this.o.cache.trim(); // pages that became clean may go now
  }
}
