// The LRU of checksum pages shared by every integrity volume of an engine (integrity/store.ts
// owns the pages and their writes): bounded in bytes, with the dirty pages of write-back stores
// tracked oldest first, so eviction and back-pressure write the oldest changes back first.
import type { IntegrityStore } from './store.js';

export const CHECKSUM_PAGE_BYTES = 4096;
/** Default bound of the engine's checksum page cache: 4096 pages, covering 16 GiB of data. */
export const DEFAULT_CHECKSUM_CACHE_BYTES = 16 * 1024 * 1024;

/** @internal One cached checksum page (store.ts). */
export interface Page {
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
  /** Its last write failed: the memory copy is not on the element (write-through: dropped once idle; write-back: kept dirty). */
  failed: boolean;
  /** The write-back asked for at change count `gen` (joined instead of queueing another write). */
  persisting: { readonly gen: number; readonly done: Promise<void> } | null;
}

export const isDirty = (page: Page): boolean => page.gen !== page.writtenGen;

/** The LRU of checksum pages shared by every volume of an engine. */
export class ChecksumPageCache {
  /** Oldest first (a Set keeps insertion order; touch re-inserts). */
  private readonly lru = new Set<Page>();
  /** Pages changed since their last successful write, oldest change first (write-back order). */
  private readonly dirty = new Set<Page>();
  /** Dirty pages above which write-back writers wait (half the cache: the rest stays for reads). */
  readonly dirtyLimitPages: number;

  constructor(readonly limitBytes = DEFAULT_CHECKSUM_CACHE_BYTES) {
    if (!(Number.isSafeInteger(limitBytes) && limitBytes >= CHECKSUM_PAGE_BYTES)) throw new RangeError(`checksum cache of ${limitBytes} bytes: at least one ${CHECKSUM_PAGE_BYTES}-byte page`);
    this.dirtyLimitPages = Math.max(1, Math.floor(limitBytes / CHECKSUM_PAGE_BYTES / 2));
  }

  /** Pages changed and not written yet (status, tests). */
  get dirtyPages(): number {
    return this.dirty.size;
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
    this.dirty.delete(page);
  }

  /** @internal The page changed (it stays in the dirty set until a write carries the change). */
  markDirty(page: Page): void {
    if (!this.dirty.has(page)) this.dirty.add(page);
  }

  /** @internal A write carried the page's last change. */
  markClean(page: Page): void {
    this.dirty.delete(page);
  }

  /** @internal Dirty pages of one store's element (what its flush writes). */
  dirtyOf(store: IntegrityStore, element: number): Page[] {
    return [...this.dirty].filter((p) => p.store === store && p.element === element);
  }

  /**
   * @internal Evicts idle clean pages, oldest first, until under the limit; when that is not
   * enough, starts the write-back of the oldest idle dirty pages (each is evicted by the trim
   * that follows its write). A failed write-back leaves the page dirty for flush() to report.
   */
  trim(): void {
    let over = this.lru.size - Math.floor(this.limitBytes / CHECKSUM_PAGE_BYTES);
    if (over <= 0) return;
    const dirtyIdle: Page[] = [];
    for (const page of this.lru) {
      if (over <= 0) break;
      if (!page.store.evictable(page)) {
        if (page.pins === 0 && isDirty(page) && !page.failed && page.persisting === null && dirtyIdle.length < over) dirtyIdle.push(page);
        continue;
      }
      this.lru.delete(page);
      this.dirty.delete(page);
      page.store.dropPage(page);
      over--;
    }
    for (const page of dirtyIdle.slice(0, Math.max(over, 0))) page.store.writeBackPage(page).catch(() => undefined);
  }

  /**
   * Back-pressure for write-back writers: while more pages are dirty than the bound, writes back
   * the oldest ones and waits. Pages whose write failed are left to flush() (it reports them), so
   * a broken element does not stall writers of the others.
   */
  async relieve(): Promise<void> {
    while (this.dirty.size > this.dirtyLimitPages) {
      const batch: Promise<void>[] = [];
      let excess = this.dirty.size - this.dirtyLimitPages;
      for (const page of this.dirty) {
        if (excess <= 0) break;
        if (page.failed) continue;
        batch.push(page.store.writeBackPage(page));
        excess--;
      }
      if (batch.length === 0) return;
      await Promise.allSettled(batch);
    }
  }
}
