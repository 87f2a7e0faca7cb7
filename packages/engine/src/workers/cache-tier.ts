// A local cache tier for one remote element (config `elements[].cacheTier`), owned by the remote
// loop that serves the element, so nothing in it needs a lock. Write-through: a write completes
// only when the remote has it; the tier keeps copies of whole blocks the element read or wrote.
//
// The file is volatile: truncated at every start, the block map starts empty, so a crash leaves
// nothing to reconcile. Blocks are direct-mapped (block b lives in slot b % slots): consecutive
// blocks sit in consecutive slots, so a multi-block hit or fill is one or two syscalls.
//
// Stale bytes are kept out with stamps: every slot remembers the sequence number of the last write
// that started or ended on it. A read notes the sequence when it starts and fills only slots with
// no stamp after it; a write stamps its slots (and drops their blocks) before it is sent and
// again once it settles, and updates only slots nobody else stamped in between. So neither a read
// that raced a write nor two overlapping writes can leave bytes the remote does not hold.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ElementCacheTierStatus } from '../api-types.js';
import type { CacheTierConfig } from '../config/types.js';
import { CACHE_TIER_BLOCKS_MAX } from '../config/validate.js';
import type { TopologyCacheTier } from '../datapath/topology.js';

/** What the remote loop is told about an element's tier; `counters` is shared with the control plane. */
export type CacheTierSpec = TopologyCacheTier;

/** Word indices of a tier's counters: reads served from the tier, reads sent to the remote, tier off (1). */
export const TIER_COUNTER = { HITS: 0, MISSES: 1, DISABLED: 2 } as const;
export const TIER_COUNTER_BYTES = 4 * Float64Array.BYTES_PER_ELEMENT;

export function tierCounters(): SharedArrayBuffer {
  return new SharedArrayBuffer(TIER_COUNTER_BYTES);
}

/** Status of a tier from its config and counters (control plane; the words may be a turn behind the loop). */
export function tierStatus(config: CacheTierConfig, counters: SharedArrayBuffer): ElementCacheTierStatus {
  const w = new Float64Array(counters);
  const hits = w[TIER_COUNTER.HITS]!;
  const misses = w[TIER_COUNTER.MISSES]!;
  const reads = hits + misses;
  return { path: config.path, sizeMiB: config.sizeMiB, blockKiB: config.blockKiB, hits, misses, hitRatio: reads === 0 ? 0 : hits / reads, enabled: w[TIER_COUNTER.DISABLED] === 0 };
}

/** The tag and stamp arrays of a direct-mapped tier, allocated once; pure bookkeeping, no I/O. */
export class BlockMap {
  readonly slots: number;
  /** Block held by each slot; -1 = empty. */
  private readonly tags: Float64Array;
  /** Sequence number of the last write that started or ended on each slot (0 = none yet). */
  private readonly stamps: Float64Array;
  private seq = 0;

  constructor(slots: number) {
    if (!(Number.isSafeInteger(slots) && slots >= 1 && slots <= CACHE_TIER_BLOCKS_MAX)) throw new Error(`cache tier: ${slots} slots outside [1, ${CACHE_TIER_BLOCKS_MAX}]`);
    this.slots = slots;
    this.tags = new Float64Array(slots).fill(-1);
    this.stamps = new Float64Array(slots);
  }

  slotOf(block: number): number {
    return block % this.slots;
  }

  has(block: number): boolean {
    return this.tags[block % this.slots] === block;
  }

  /** True when every block first..last is present (a range longer than the map never is). */
  covers(first: number, last: number): boolean {
    if (last - first + 1 > this.slots) return false;
    for (let b = first; b <= last; b++) if (this.tags[b % this.slots] !== b) return false;
    return true;
  }

  /** A read's ticket: blocks may be filled for it only if no write touched their slot after this. */
  ticket(): number {
    return this.seq;
  }

  fillable(block: number, ticket: number): boolean {
    return this.stamps[block % this.slots]! <= ticket;
  }

  /** True when no other write started or ended on the block's slot since `stamp` was taken. */
  untouchedSince(block: number, stamp: number): boolean {
    return this.stamps[block % this.slots] === stamp;
  }

  /** The slot holds `block` from now on (its bytes were just written). */
  set(block: number): void {
    if (!(Number.isSafeInteger(block) && block >= 0)) throw new Error(`cache tier: bad block ${block}`);
    this.tags[block % this.slots] = block;
  }

  /** The slot's bytes are about to be overwritten: whatever it held is gone. */
  vacate(block: number): void {
    this.tags[block % this.slots] = -1;
  }

  drop(block: number): void {
    const slot = block % this.slots;
    if (this.tags[slot] === block) this.tags[slot] = -1;
  }

  /** Drops blocks first..last: walks the range or, when it is longer, the map once. */
  dropRange(first: number, last: number): void {
    if (!(last >= first)) throw new Error(`cache tier: empty range ${first}..${last}`);
    if (last - first + 1 < this.slots) {
      for (let b = first; b <= last; b++) this.drop(b);
      return;
    }
    for (let s = 0; s < this.slots; s++) {
      const tag = this.tags[s]!;
      if (tag >= first && tag <= last) this.tags[s] = -1;
    }
  }

  /** Stamps the slots of blocks first..last with a new sequence number and returns it. */
  stamp(first: number, last: number): number {
    if (!(last >= first)) throw new Error(`cache tier: empty range ${first}..${last}`);
    const stamp = ++this.seq;
    const n = Math.min(last - first + 1, this.slots);
    for (let i = 0; i < n; i++) this.stamps[(first + i) % this.slots] = stamp;
    return stamp;
  }

  /** Blocks present (walks the map: for tests and diagnostics). */
  count(): number {
    let n = 0;
    for (let s = 0; s < this.slots; s++) if (this.tags[s]! >= 0) n++;
    return n;
  }
}

/**
 * Calls `fn(a, b)` for each maximal run of blocks in first..last that satisfy `ok` and sit in
 * consecutive slots (a run breaks where the map wraps). Stops early when `fn` returns false.
 */
function forRuns(map: BlockMap, first: number, last: number, ok: (block: number) => boolean, fn: (a: number, b: number) => boolean): void {
  let a = -1;
  for (let b = first; b <= last + 1; b++) {
    const inRun = b <= last && ok(b) && (a < 0 || map.slotOf(b) !== 0);
    if (a >= 0 && !inRun) {
      if (!fn(a, b - 1)) return;
      a = -1;
    }
    if (a < 0 && b <= last && ok(b)) a = b;
  }
}

export type TierLog = (line: string) => void;

export class CacheTier {
  readonly blockBytes: number;
  readonly map: BlockMap;
  private fd = -1;
  private counters: Float64Array;

  /** Opens (creates, truncates) the file; a failure leaves the tier off, logged, never thrown. */
  constructor(
    readonly spec: CacheTierSpec,
    /** Element bytes below this (superblock, bitmap, journal) are never cached. */
    private readonly fromBytes: number,
    private readonly log: TierLog,
  ) {
    if (!(spec.blockBytes >= 4096 && (spec.blockBytes & (spec.blockBytes - 1)) === 0)) throw new Error(`cache tier: block ${spec.blockBytes} is not a power of two ≥ 4096`);
    this.blockBytes = spec.blockBytes;
    this.map = new BlockMap(Math.floor(spec.sizeBytes / spec.blockBytes));
    this.counters = new Float64Array(spec.counters);
    this.counters[TIER_COUNTER.DISABLED] = 0;
    try {
      fs.mkdirSync(path.dirname(spec.path), { recursive: true });
      // 0600: the file holds a copy of the element's data. 'w+' truncates: the map starts empty.
      this.fd = fs.openSync(spec.path, 'w+', 0o600);
      fs.ftruncateSync(this.fd, this.map.slots * this.blockBytes);
    } catch (err) {
      this.disable(err);
    }
  }

  get enabled(): boolean {
    return this.fd >= 0;
  }

  /** Status counters move to `counters` (a kept link under a new topology); the old totals carry over. */
  useCounters(counters: SharedArrayBuffer): void {
    const next = new Float64Array(counters);
    if (next.buffer !== this.counters.buffer) next.set(this.counters);
    this.counters = next;
  }

  /**
   * Copies [off, off + len) into `view` when every block it touches is present and `live` (the
   * remote answers: a tier is not a replica) and returns true; else false. Counts hits and misses.
   */
  read(off: number, view: Uint8Array, live: boolean): boolean {
    if (!this.enabled || off < this.fromBytes || view.length === 0) return false;
    const bs = this.blockBytes;
    const first = Math.floor(off / bs);
    const last = Math.floor((off + view.length - 1) / bs);
    if (!live || !this.map.covers(first, last)) {
      this.count(TIER_COUNTER.MISSES);
      return false;
    }
    let ok = true;
    forRuns(this.map, first, last, () => true, (a, b) => {
      const from = Math.max(off, a * bs);
      const to = Math.min(off + view.length, (b + 1) * bs);
      ok = this.io('read', view, from - off, to - from, this.map.slotOf(a) * bs + (from - a * bs));
      return ok;
    });
    this.count(ok ? TIER_COUNTER.HITS : TIER_COUNTER.MISSES);
    return ok;
  }

  /** Taken before a read goes to the remote; hand it to fill(). */
  beginRead(): number {
    return this.map.ticket();
  }

  /** After a remote read of [off, off + view.length) succeeded: keeps the whole blocks no write touched since `ticket`. */
  fill(ticket: number, off: number, view: Uint8Array): void {
    if (!this.enabled || off < this.fromBytes) return;
    const bs = this.blockBytes;
    const first = Math.ceil(off / bs);
    const last = Math.floor((off + view.length) / bs) - 1;
    if (last < first) return;
    const map = this.map;
    forRuns(map, first, last, (b) => map.fillable(b, ticket) && !map.has(b), (a, b) => this.store(a, b, view, a * bs - off));
  }

  /** Before a WRITE, TRIM or WRITE_ZEROES of [off, off + len) is sent: drops its blocks; hand the stamp to endWrite(). */
  beginWrite(off: number, len: number): number {
    const range = this.blocksOf(off, len);
    if (range === null) return 0;
    this.map.dropRange(range.first, range.last);
    return this.map.stamp(range.first, range.last);
  }

  /**
   * Once the write settled: `data` (its bytes; null for zeroes or a failure) goes into the whole
   * blocks no other write touched meanwhile; the rest of the range is dropped again, since a read
   * that ran beside the write may have filled it with the bytes from before.
   */
  endWrite(stamp: number, off: number, len: number, data: Uint8Array | null): void {
    const range = this.blocksOf(off, len);
    if (range === null) return;
    const { first, last } = range;
    const map = this.map;
    map.dropRange(first, last);
    if (data !== null) {
      if (data.length !== len) throw new Error(`cache tier: ${data.length} bytes for a write of ${len}`);
      const bs = this.blockBytes;
      const whole = (b: number): boolean => b * bs >= off && (b + 1) * bs <= off + len && b * bs >= this.fromBytes && map.untouchedSince(b, stamp);
      forRuns(map, first, last, whole, (a, b) => this.store(a, b, data, a * bs - off));
    }
    map.stamp(first, last); // reads that began before this point must not fill the range
  }

  private count(word: number): void {
    this.counters[word] = this.counters[word]! + 1;
  }

  /** Shuts the file. Later calls are no-ops: in-flight requests of a closed link may still end. */
  close(): void {
    const fd = this.fd;
    this.fd = -1;
    try {
      if (fd >= 0) fs.closeSync(fd);
    } catch {
      // nothing to do: the descriptor is gone either way, and the tier holds nothing durable
    }
  }

  /** The cacheable blocks [off, off + len) touches, or null (tier off, header area, empty). */
  private blocksOf(off: number, len: number): { first: number; last: number } | null {
    if (!this.enabled || len <= 0 || off + len <= this.fromBytes) return null;
    return { first: Math.floor(off / this.blockBytes), last: Math.floor((off + len - 1) / this.blockBytes) };
  }

  /** Writes blocks a..b from `src` (block a at src[at]) into their slots and marks them present. */
  private store(a: number, b: number, src: Uint8Array, at: number): boolean {
    for (let k = a; k <= b; k++) this.map.vacate(k);
    if (!this.io('write', src, at, (b - a + 1) * this.blockBytes, this.map.slotOf(a) * this.blockBytes)) return false;
    for (let k = a; k <= b; k++) this.map.set(k);
    return true;
  }

  private io(kind: 'read' | 'write', buf: Uint8Array, at: number, len: number, position: number): boolean {
    try {
      // Synchronous on purpose: the loop's other work waits a few µs for the page cache, and
      // no two tier I/Os ever overlap, so their order is the order they were issued in.
      const n = kind === 'read' ? fs.readSync(this.fd, buf, at, len, position) : fs.writeSync(this.fd, buf, at, len, position);
      if (n !== len) throw new Error(`short ${kind}: ${n} of ${len} bytes at ${position}`);
      return true;
    } catch (err) {
      this.disable(err);
      return false;
    }
  }

  /** Any cache-file error turns the tier off for this element (once, logged); requests go to the remote. */
  private disable(err: unknown): void {
    const wasOn = this.counters[TIER_COUNTER.DISABLED] === 0;
    this.counters[TIER_COUNTER.DISABLED] = 1;
    this.close();
    if (wasOn) this.log(`cache tier ${this.spec.path}: ${(err as Error).message ?? String(err)}; the tier is off, reads go to the remote`);
  }
}
