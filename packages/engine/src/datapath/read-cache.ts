// The engine's RAM read cache: one LRU over fixed, aligned blocks of every volume, owned by the
// main thread (every data-path promise settles there, so nothing needs a lock). Memory is taken
// lazily, arena by arena, up to the budget and never above it.
//
// Stale bytes are kept out with generations. A fill notes each block's generation when its read
// starts; an invalidation drops the blocks and bumps the generation of blocks with a fill in
// flight; the fill inserts only blocks whose generation did not move. So a read that raced a
// write cannot put the pre-write bytes back once the write's invalidation has run. Generations
// are kept only for blocks with a fill in flight, which bounds them by the reads in flight.

/** 4 KiB: the common client read size, so a 4k random read fills a block without reading more. */
export const READ_CACHE_BLOCK_BYTES = 4096;
/** Reads larger than this do not fill (a sequential scan would only evict the hot set). */
export const READ_CACHE_FILL_MAX_BYTES = 256 * 1024;
const ARENA_BYTES = 1024 * 1024;
/** Keys are block * VOLUME_KEYS + volume: a number key keeps the Map cheap. */
const VOLUME_KEYS = 4096;

/** What beginFill hands out: the whole blocks a read covers and their generations at its start. */
export interface FillTicket {
  readonly volume: number;
  readonly firstBlock: number;
  readonly gens: readonly number[];
}

interface Pending {
  gen: number;
  fills: number;
}

export interface ReadCacheOptions {
  readonly blockBytes?: number;
  readonly fillMaxBytes?: number;
}

export class ReadCache {
  readonly budgetBytes: number;
  readonly blockBytes: number;
  readonly fillMaxBytes: number;
  private readonly maxFrames: number;
  /** Frame index → its view into an arena; grows lazily to maxFrames. */
  private readonly frames: Uint8Array[] = [];
  private readonly free: number[] = [];
  /** key → frame of every cached block. */
  private readonly cached = new Map<number, number>();
  /**
   * The LRU order as an intrusive doubly linked list over frames (oldest at `head`). Not the
   * Map's insertion order: evicting through `keys().next()` walks the deleted entries a V8 Map
   * keeps at its front until it rehashes, which cost ~6 µs per fill under random reads.
   */
  private readonly order: FrameList;
  private readonly pending = new Map<number, Pending>();
  private arenaBytesTotal = 0;

  constructor(budgetBytes: number, opts: ReadCacheOptions = {}) {
    const blockBytes = opts.blockBytes ?? READ_CACHE_BLOCK_BYTES;
    if (!(Number.isSafeInteger(budgetBytes) && budgetBytes >= 0)) throw new Error(`read cache budget ${budgetBytes} is not a non-negative integer`);
    if (!(blockBytes >= 512 && blockBytes <= ARENA_BYTES && (blockBytes & (blockBytes - 1)) === 0)) throw new Error(`read cache block ${blockBytes} is not a power of two from 512 to ${ARENA_BYTES}`);
    this.budgetBytes = budgetBytes;
    this.blockBytes = blockBytes;
    this.fillMaxBytes = opts.fillMaxBytes ?? READ_CACHE_FILL_MAX_BYTES;
    this.maxFrames = Math.floor(budgetBytes / blockBytes);
    this.order = new FrameList(this.maxFrames);
  }

  get enabled(): boolean {
    return this.maxFrames > 0;
  }

  /** Bytes of block memory taken so far (≤ budgetBytes). */
  allocatedBytes(): number {
    return this.arenaBytesTotal;
  }

  cachedBlocks(): number {
    return this.cached.size;
  }

  /**
   * When every block [off, off + len) of `volume` touches is cached: copies the range into `out`
   * (or a new array: nothing is allocated on a miss), makes the blocks the most recent and
   * returns the bytes. Otherwise null, nothing copied.
   */
  readInto(volume: number, off: number, len: number, into?: Uint8Array): Uint8Array | null {
    if (!this.enabled || len === 0) return null;
    if (into !== undefined && into.length < len) throw new Error(`read cache: out has ${into.length} bytes, ${len} asked`);
    const bs = this.blockBytes;
    const first = Math.floor(off / bs);
    const last = Math.floor((off + len - 1) / bs);
    for (let b = first; b <= last; b++) if (!this.cached.has(this.key(volume, b))) return null;
    const out = into ?? new Uint8Array(len);
    for (let b = first; b <= last; b++) {
      const key = this.key(volume, b);
      const frame = this.cached.get(key)!;
      this.order.moveToTail(frame);
      const from = Math.max(off, b * bs);
      const to = Math.min(off + len, (b + 1) * bs);
      out.set(this.frames[frame]!.subarray(from - b * bs, to - b * bs), from - off);
    }
    return out;
  }

  /** Starts a fill for a read of [off, off + len); null when it covers no whole block (or is too large). */
  beginFill(volume: number, off: number, len: number): FillTicket | null {
    if (!this.enabled || len > this.fillMaxBytes) return null;
    const first = Math.ceil(off / this.blockBytes);
    const end = Math.floor((off + len) / this.blockBytes);
    if (end <= first) return null;
    const gens: number[] = [];
    for (let b = first; b < end; b++) {
      const key = this.key(volume, b);
      let p = this.pending.get(key);
      if (p === undefined) {
        p = { gen: 0, fills: 0 };
        this.pending.set(key, p);
      }
      p.fills++;
      gens.push(p.gen);
    }
    return { volume, firstBlock: first, gens };
  }

  /**
   * Ends a fill: `data` holds the read's bytes from `off` in order (slot views or one array), or
   * is null when the read failed. Inserts the blocks not invalidated since beginFill; returns how many.
   */
  endFill(ticket: FillTicket | null, off: number, data: readonly Uint8Array[] | null): number {
    if (ticket === null) return 0;
    let inserted = 0;
    for (let i = 0; i < ticket.gens.length; i++) {
      const b = ticket.firstBlock + i;
      const key = this.key(ticket.volume, b);
      const p = this.pending.get(key);
      if (p === undefined) throw new Error(`read cache: block ${b} of volume ${ticket.volume} has no fill in flight`);
      if (--p.fills === 0) this.pending.delete(key);
      if (data === null || p.gen !== ticket.gens[i]) continue;
      copyFromChunks(data, b * this.blockBytes - off, this.frameFor(key));
      inserted++;
    }
    return inserted;
  }

  /** Drops the blocks [off, off + len) touches and voids the fills in flight over them. */
  invalidate(volume: number, off: number, len: number): void {
    if (!this.enabled || len === 0) return;
    const first = Math.floor(off / this.blockBytes);
    const last = Math.floor((off + len - 1) / this.blockBytes);
    // Walk whichever is shorter: the range's blocks, or what is cached and in flight.
    if (last - first + 1 <= this.cached.size + this.pending.size) {
      for (let b = first; b <= last; b++) this.drop(this.key(volume, b));
      return;
    }
    const hit = (key: number): boolean => key % VOLUME_KEYS === volume && Math.floor(key / VOLUME_KEYS) >= first && Math.floor(key / VOLUME_KEYS) <= last;
    for (const key of [...this.cached.keys()].filter(hit)) this.drop(key);
    for (const key of [...this.pending.keys()].filter(hit)) this.drop(key);
  }

  /** Drops every block of `volume` (rebound, deleted, or a scrub repair rewrote its legs). */
  invalidateVolume(volume: number): void {
    if (!this.enabled) return;
    const mine = (key: number): boolean => key % VOLUME_KEYS === volume;
    for (const key of [...this.cached.keys()].filter(mine)) this.drop(key);
    for (const key of [...this.pending.keys()].filter(mine)) this.drop(key);
  }

  private drop(key: number): void {
    const frame = this.cached.get(key);
    if (frame !== undefined) {
      this.cached.delete(key);
      this.order.unlink(frame);
      this.free.push(frame);
    }
    const p = this.pending.get(key);
    if (p !== undefined) p.gen++;
  }

  private key(volume: number, block: number): number {
    if (!(volume >= 0 && volume < VOLUME_KEYS)) throw new Error(`read cache: volume index ${volume} out of range`);
    return block * VOLUME_KEYS + volume;
  }

  /** The frame for `key`, now the most recent: its own, a free one, a new one, or the oldest evicted. */
  private frameFor(key: number): Uint8Array {
    let frame = this.cached.get(key);
    if (frame === undefined) {
      frame = this.free.pop() ?? this.grow() ?? this.evictOldest();
      this.cached.set(key, frame);
      this.order.keyOf[frame] = key;
      this.order.pushTail(frame);
    } else {
      this.order.moveToTail(frame);
    }
    return this.frames[frame]!;
  }

  private grow(): number | undefined {
    if (this.frames.length >= this.maxFrames) return undefined;
    const arenaFrames = Math.min(ARENA_BYTES / this.blockBytes, this.maxFrames - this.frames.length);
    const arena = new Uint8Array(arenaFrames * this.blockBytes);
    this.arenaBytesTotal += arena.length;
    if (this.arenaBytesTotal > this.budgetBytes) throw new Error('read cache: arena past the budget');
    for (let i = 0; i < arenaFrames; i++) this.frames.push(arena.subarray(i * this.blockBytes, (i + 1) * this.blockBytes));
    for (let f = this.frames.length - 1; f > this.frames.length - arenaFrames; f--) this.free.push(f);
    return this.frames.length - arenaFrames;
  }

  private evictOldest(): number {
    const frame = this.order.head;
    if (frame < 0) throw new Error('read cache: nothing to evict with every frame taken');
    const key = this.order.keyOf[frame]!;
    if (this.cached.get(key) !== frame) throw new Error(`read cache: LRU head frame ${frame} is not cached under its key`);
    this.cached.delete(key);
    this.order.unlink(frame);
    return frame;
  }
}

/** Doubly linked list over frame indices in typed arrays allocated once (no per-block objects). */
class FrameList {
  head = -1;
  private tail = -1;
  private readonly prev: Int32Array;
  private readonly next: Int32Array;
  /** The cache key each linked frame holds (keys are integers below 2^53). */
  readonly keyOf: Float64Array;

  constructor(frames: number) {
    this.prev = new Int32Array(frames).fill(-1);
    this.next = new Int32Array(frames).fill(-1);
    this.keyOf = new Float64Array(frames);
  }

  pushTail(f: number): void {
    this.prev[f] = this.tail;
    this.next[f] = -1;
    if (this.tail >= 0) this.next[this.tail] = f;
    else this.head = f;
    this.tail = f;
  }

  unlink(f: number): void {
    const p = this.prev[f]!;
    const n = this.next[f]!;
    if (p >= 0) this.next[p] = n;
    else this.head = n;
    if (n >= 0) this.prev[n] = p;
    else this.tail = p;
    this.prev[f] = -1;
    this.next[f] = -1;
  }

  moveToTail(f: number): void {
    if (this.tail === f) return;
    this.unlink(f);
    this.pushTail(f);
  }
}

/** Copies dst.length bytes starting `at` bytes into the concatenation of `chunks` into `dst`. */
export function copyFromChunks(chunks: readonly Uint8Array[], at: number, dst: Uint8Array): void {
  let skip = at;
  let done = 0;
  for (const c of chunks) {
    if (done === dst.length) return;
    if (skip >= c.length) {
      skip -= c.length;
      continue;
    }
    const n = Math.min(c.length - skip, dst.length - done);
    dst.set(c.subarray(skip, skip + n), done);
    done += n;
    skip = 0;
  }
  if (done !== dst.length) throw new RangeError(`chunks end ${dst.length - done} bytes short of [${at}, +${dst.length})`);
}
