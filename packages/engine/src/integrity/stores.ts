// The checksum stores of an engine's integrity volumes (one per volume, one page cache and one
// set of counters for all), attached where the other keepers attach volumes (engine.ts,
// volume-ops.ts). An element's area is looked up when used: a leg that replaced another (or a
// spare) has its area from the volume's geometry (meta/assemble.ts elementIntegrityArea).
import type { RawIo } from '../datapath/raw-io.js';
import { elementIntegrityArea } from '../meta/assemble.js';
import type { AssembledVolume } from '../meta/types.js';
import { IntegrityCounters } from './counters.js';
import { ChecksumPageCache, DEFAULT_CHECKSUM_CACHE_BYTES, IntegrityStore } from './store.js';
import type { IntegrityArea } from './types.js';

export interface IntegrityStoresOptions {
  readonly raw: () => RawIo;
  /** The volume as assembled now (its elements change with replaces). */
  readonly volume: (name: string) => AssembledVolume | undefined;
  /** An element's data-path index by name. */
  readonly elementIndex: (name: string) => number | undefined;
  readonly cacheBytes?: number;
}

export class IntegrityStores {
  readonly cache: ChecksumPageCache;
  readonly counters = new IntegrityCounters();
  private readonly stores = new Map<string, IntegrityStore>();

  constructor(private readonly o: IntegrityStoresOptions) {
    this.cache = new ChecksumPageCache(o.cacheBytes ?? DEFAULT_CHECKSUM_CACHE_BYTES);
  }

  /** Creates the store of `name` when it has integrity (idempotent); undefined without integrity. */
  attach(name: string): IntegrityStore | undefined {
    const existing = this.stores.get(name);
    if (existing !== undefined) return existing;
    const vol = this.o.volume(name);
    if (vol?.config.integrity !== true) return undefined;
    // Write-back: the keeper's bitmap sweep flushes the store before it clears a bit (keeper.ts).
    const store = new IntegrityStore({ raw: this.o.raw(), cache: this.cache, volume: name, writeBack: true, areaOf: (element) => this.areaOf(name, element) });
    this.stores.set(name, store);
    return store;
  }

  /** The store of an integrity volume (undefined: no such volume, or no integrity). */
  of(name: string): IntegrityStore | undefined {
    return this.stores.get(name);
  }

  /** The volume is deleted: waits for its page writes, drops its pages. */
  async detach(name: string): Promise<void> {
    const store = this.stores.get(name);
    this.stores.delete(name);
    this.counters.maps.forget(name); // a new volume with the name starts with a clean map
    if (store === undefined) return;
    await store.idle();
    store.forgetAll();
  }

  /**
   * Engine close (before the data path closes): the volumes' flushes made their pages durable;
   * pages changed after them (a repair) are flushed here. A failure leaves its regions' bits set
   * (the keeper cleared them only after its own flush), so the next open recomputes them.
   */
  async close(): Promise<void> {
    for (const [name, store] of [...this.stores]) {
      await store.flushAll().catch(() => undefined);
      await this.detach(name);
    }
  }

  private areaOf(name: string, element: number): IntegrityArea | undefined {
    const vol = this.o.volume(name);
    if (vol === undefined) return undefined;
    const member = vol.elements.find((e) => this.o.elementIndex(e.config.name) === element);
    return member === undefined ? undefined : elementIntegrityArea(vol, member);
  }
}
