// An in-memory export for tests and examples. Reads return views straight into the backing
// store, split into pages so the server's multi-chunk path is exercised; write buffers come from
// a bounded page pool (acquire waits when it is empty), which is what a real backend does. It
// offers base:allocation, tracked per status block: fresh and trimmed blocks are holes that read
// as zeroes, written blocks are data, zeroed blocks are holes (or allocated zeroes with NO_HOLE).

import {
  type NbdBlockSize, NbdError, type NbdExport, type NbdExportInfo, type NbdExportProvider, type NbdExtent, type NbdMetaContexts,
  type NbdReadResult, type NbdWriteBuffer,
} from './backend.js';
import { AllocationFlag, MetaContext } from './constants.js';

/** Answers one extra meta context of a memory export (test hook). */
export type MemoryContextFn = (offsetBytes: number, lengthBytes: number, extentsMax: number) => Promise<readonly NbdExtent[]>;

export interface MemoryExportOptions {
  description?: string;
  readOnly?: boolean;
  blockSize?: Partial<NbdBlockSize>;
  /** Size of one chunk in read results and write buffers. Default 256 KiB. */
  pageBytes?: number;
  /** Total write-buffer space; acquire waits while it is used up. Default 2 × maximum block size. */
  writeBufferBytes?: number;
  /** false: no meta contexts at all, so BLOCK_STATUS is refused. Default true (base:allocation). */
  metaContexts?: boolean;
  /** Granularity of base:allocation tracking. Default 4096, at least the minimum block size. */
  statusBlockBytes?: number;
  /** Test hook: more contexts by name, answered as given (a fake dirty bitmap, a backend breaking the contract). */
  extraContexts?: Readonly<Record<string, MemoryContextFn>>;
}

export interface MemoryExport extends NbdExport {
  /** The backing store (tests inspect it). */
  readonly data: Uint8Array;
  /** Read results and write buffers handed out and not yet released: 0 when nothing leaks. */
  outstanding(): { reads: number; writeBuffers: number };
}

export function createMemoryExport(name: string, sizeBytes: number, opts: MemoryExportOptions = {}): MemoryExport {
  if (!(Number.isSafeInteger(sizeBytes) && sizeBytes >= 0)) throw new RangeError(`bad export size ${sizeBytes}`);
  const data = new Uint8Array(sizeBytes);
  const blockSize: NbdBlockSize = {
    minimumBytes: opts.blockSize?.minimumBytes ?? 1,
    preferredBytes: opts.blockSize?.preferredBytes ?? 4096,
    maximumBytes: opts.blockSize?.maximumBytes ?? 32 * 1024 * 1024,
  };
  const pageBytes = opts.pageBytes ?? 256 * 1024;
  const pool = new PagePool(pageBytes, Math.ceil((opts.writeBufferBytes ?? 2 * blockSize.maximumBytes) / pageBytes));
  if (pool.pagesMax * pageBytes < blockSize.maximumBytes) throw new RangeError('write buffer space below maximum block size');
  const allocation = new AllocationMap(sizeBytes, opts.statusBlockBytes ?? Math.max(4096, blockSize.minimumBytes));
  let reads = 0;

  return {
    name,
    description: opts.description,
    sizeBytes,
    readOnly: opts.readOnly ?? false,
    canFlush: true,
    canFua: true,
    canTrim: true,
    canWriteZeroes: true,
    canCache: true,
    canMultiConn: true,
    blockSize,
    data,
    outstanding: () => ({ reads, writeBuffers: pool.buffersOut }),
    async read(offsetBytes, lengthBytes): Promise<NbdReadResult> {
      const chunks: Uint8Array[] = [];
      for (let at = offsetBytes; at < offsetBytes + lengthBytes; at += pageBytes) {
        chunks.push(data.subarray(at, Math.min(at + pageBytes, offsetBytes + lengthBytes)));
      }
      reads += 1;
      let released = false;
      return {
        chunks,
        release: () => {
          if (released) throw new Error('read result released twice');
          released = true;
          reads -= 1;
        },
      };
    },
    acquireWriteBuffer: (lengthBytes) => pool.acquire(lengthBytes),
    async write(offsetBytes, buffer, _flags): Promise<void> {
      let at = offsetBytes;
      for (const chunk of buffer.chunks) {
        data.set(chunk, at);
        at += chunk.length;
      }
      allocation.mark(offsetBytes, at - offsetBytes, DATA);
      buffer.release();
    },
    async flush(): Promise<void> {},
    async trim(offsetBytes, lengthBytes): Promise<void> {
      data.fill(0, offsetBytes, offsetBytes + lengthBytes); // trimmed ranges read back as zeroes
      allocation.mark(offsetBytes, lengthBytes, HOLE);
    },
    async writeZeroes(offsetBytes, lengthBytes, flags): Promise<void> {
      data.fill(0, offsetBytes, offsetBytes + lengthBytes);
      allocation.mark(offsetBytes, lengthBytes, flags.noHole ? ZEROED : HOLE);
    },
    async cache(): Promise<void> {},
    ...(opts.metaContexts === false ? {} : { metaContexts: memoryContexts(allocation, opts.extraContexts ?? {}) }),
  };
}

function memoryContexts(allocation: AllocationMap, extra: Readonly<Record<string, MemoryContextFn>>): NbdMetaContexts {
  return {
    names: () => [MetaContext.BASE_ALLOCATION, ...Object.keys(extra)],
    blockStatus: async (context, offsetBytes, lengthBytes, extentsMax) => {
      if (context === MetaContext.BASE_ALLOCATION) return allocation.extents(offsetBytes, lengthBytes, extentsMax);
      const fn = Object.hasOwn(extra, context) ? extra[context] : undefined;
      if (fn === undefined) throw new NbdError('EINVAL', `no meta context ${JSON.stringify(context)}`);
      return fn(offsetBytes, lengthBytes, extentsMax);
    },
  };
}

// Block states and their base:allocation flags.
const HOLE = 0;
const DATA = 1;
const ZEROED = 2;
const STATE_FLAGS = [AllocationFlag.HOLE | AllocationFlag.ZERO, 0, AllocationFlag.ZERO] as const;

/** One state per status block; a block changes only when a request covers it whole, except that any write makes it data. */
class AllocationMap {
  private readonly states: Uint8Array;

  constructor(private readonly sizeBytes: number, private readonly blockBytes: number) {
    if (!(Number.isSafeInteger(blockBytes) && blockBytes > 0)) throw new RangeError(`bad status block size ${blockBytes}`);
    this.states = new Uint8Array(Math.ceil(sizeBytes / blockBytes)); // HOLE
  }

  mark(offsetBytes: number, lengthBytes: number, state: number): void {
    if (lengthBytes <= 0) return;
    const end = offsetBytes + lengthBytes;
    const B = this.blockBytes;
    // Data taints every block it touches; a hole or zero needs the whole block (the export's last one may be short).
    const first = state === DATA ? Math.floor(offsetBytes / B) : Math.ceil(offsetBytes / B);
    const last = state === DATA || end === this.sizeBytes ? Math.ceil(end / B) : Math.floor(end / B);
    this.states.fill(state, first, Math.max(first, last));
  }

  /** Extents from `offsetBytes`, merged by flags, at most `extentsMax`, within `lengthBytes`. */
  extents(offsetBytes: number, lengthBytes: number, extentsMax: number): NbdExtent[] {
    const B = this.blockBytes;
    const end = Math.min(offsetBytes + lengthBytes, this.sizeBytes);
    const flagsAt = (at: number): number => STATE_FLAGS[this.states[Math.floor(at / B)] as 0 | 1 | 2];
    const out: NbdExtent[] = [];
    let at = offsetBytes;
    // Bounded by the blocks in the range.
    while (at < end && out.length < extentsMax) {
      const flags = flagsAt(at);
      let next = Math.min((Math.floor(at / B) + 1) * B, end);
      while (next < end && flagsAt(next) === flags) next = Math.min(next + B, end);
      out.push({ lengthBytes: next - at, flags });
      at = next;
    }
    return out;
  }
}

/** Fixed-size pages, allocated on first use and then reused; FIFO waiters when exhausted. */
class PagePool {
  private readonly free: Uint8Array[] = [];
  private allocated = 0;
  private readonly waiters: { pages: number; lengthBytes: number; resolve: (b: NbdWriteBuffer) => void }[] = [];
  buffersOut = 0;

  constructor(readonly pageBytes: number, readonly pagesMax: number) {
    if (!(pageBytes > 0 && pagesMax > 0)) throw new RangeError('bad page pool');
  }

  async acquire(lengthBytes: number): Promise<NbdWriteBuffer> {
    const pages = Math.ceil(lengthBytes / this.pageBytes);
    if (pages > this.pagesMax) throw new RangeError(`write of ${lengthBytes} bytes exceeds the buffer pool`);
    if (this.waiters.length === 0 && this.available(pages)) return this.take(pages, lengthBytes);
    return new Promise((resolve) => this.waiters.push({ pages, lengthBytes, resolve }));
  }

  /** Synchronous, so pages handed to a woken waiter cannot be taken by anyone else first. */
  private take(pages: number, lengthBytes: number): NbdWriteBuffer {
    const taken: Uint8Array[] = [];
    for (let i = 0; i < pages; i++) taken.push(this.free.pop() ?? this.allocate());
    const chunks = taken.map((page, i) => page.subarray(0, Math.min(this.pageBytes, lengthBytes - i * this.pageBytes)));
    this.buffersOut += 1;
    let released = false;
    return {
      chunks,
      release: () => {
        if (released) throw new Error('write buffer released twice');
        released = true;
        this.buffersOut -= 1;
        for (const page of taken) this.free.push(page);
        this.wake();
      },
    };
  }

  private available(pages: number): boolean {
    return this.free.length + (this.pagesMax - this.allocated) >= pages;
  }

  private allocate(): Uint8Array {
    if (this.allocated >= this.pagesMax) throw new Error('page pool invariant: over budget');
    this.allocated += 1;
    return new Uint8Array(this.pageBytes);
  }

  private wake(): void {
    // Bounded by the number of waiters; stops at the first that does not fit (FIFO, no overtaking).
    while (this.waiters.length > 0) {
      const next = this.waiters[0] as (typeof this.waiters)[number];
      if (!this.available(next.pages)) return;
      this.waiters.shift();
      next.resolve(this.take(next.pages, next.lengthBytes));
    }
  }
}

/** Serves the given exports; the empty name opens `defaultName` (else the first export). */
export function createMemoryProvider(exports: readonly NbdExport[], opts: { defaultName?: string } = {}): NbdExportProvider {
  const byName = new Map(exports.map((e) => [e.name, e]));
  const defaultName = opts.defaultName ?? exports[0]?.name;
  return {
    list: (): readonly NbdExportInfo[] => exports.map((e) => ({ name: e.name, description: e.description })),
    open: (name) => byName.get(name === '' && defaultName !== undefined ? defaultName : name),
  };
}
