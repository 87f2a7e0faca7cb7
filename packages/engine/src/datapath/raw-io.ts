// Maintenance I/O on single elements through the common queue: the write-intent bitmap, resync,
// rebuild and scrub use it, so their data moves through the same rings, slab and drivers (local
// and remote) as client I/O, and back-pressure applies to both alike. Offsets are ELEMENT
// offsets (the header area included); element state is not checked (a rebuild writes to a leg
// that is not active). Control plane callers only: the NBD export never reaches this.
import { DescFlags, Op, type Slab } from '@onestack/queue';
import { DataPathError } from './errno.js';
import type { Top } from './top.js';
import type { SlotPool } from './waiters.js';

export interface RawIo {
  read(element: number, offsetBytes: number, lengthBytes: number): Promise<Uint8Array>;
  write(element: number, offsetBytes: number, data: Uint8Array, opts?: { fua?: boolean }): Promise<void>;
  flush(element: number): Promise<void>;
  /** Makes [offset, +length) of the element read as zeroes, punching a hole where it can (sparse rebuilds). */
  zero(element: number, offsetBytes: number, lengthBytes: number): Promise<void>;
  /** Copies [offset, +length) from one element to the same offsets of another, slot by slot (no extra copy). */
  copy(source: number, target: number, offsetBytes: number, lengthBytes: number): Promise<void>;
}

/** `raw` with its copy() replaced (rebuilds that compute or skip what they copy); the rest goes straight through. */
export function withCopy(raw: RawIo, copy: RawIo['copy']): RawIo {
  return {
    read: (element, off, len) => raw.read(element, off, len),
    write: (element, off, data, opts) => raw.write(element, off, data, opts),
    flush: (element) => raw.flush(element),
    zero: (element, off, len) => raw.zero(element, off, len),
    copy,
  };
}

export class RawIoImpl implements RawIo {
  constructor(
    private readonly top: Top,
    private readonly slots: SlotPool,
    private readonly slab: Slab,
    /** The raw pseudo-volume's index (one past the last user volume). */
    private readonly rawIndex: number,
  ) {}

  async read(element: number, offsetBytes: number, lengthBytes: number): Promise<Uint8Array> {
    check(offsetBytes, lengthBytes);
    const out = new Uint8Array(lengthBytes);
    await this.pieces(offsetBytes, lengthBytes, async (slot, off, len, at) => {
      await this.top.submit(this.rawIndex, Op.READ, off, len, 0, slot, 'local', element);
      out.set(this.slab.view(slot, 0, len), at);
    });
    return out;
  }

  async write(element: number, offsetBytes: number, data: Uint8Array, opts: { fua?: boolean } = {}): Promise<void> {
    check(offsetBytes, data.length);
    const flags = opts.fua === true ? DescFlags.FUA : 0;
    await this.pieces(offsetBytes, data.length, async (slot, off, len, at) => {
      this.slab.view(slot, 0, len).set(data.subarray(at, at + len));
      await this.top.submit(this.rawIndex, Op.WRITE, off, len, flags, slot, 'local', element);
    });
  }

  flush(element: number): Promise<void> {
    return this.top.submit(this.rawIndex, Op.FLUSH, 0, 0, 0, -1, 'local', element);
  }

  zero(element: number, offsetBytes: number, lengthBytes: number): Promise<void> {
    check(offsetBytes, lengthBytes);
    // No NO_HOLE flag: the bottom driver punches a hole (or zeroes the range where it cannot).
    return this.top.submit(this.rawIndex, Op.WRITE_ZEROES, offsetBytes, lengthBytes, 0, -1, 'local', element);
  }

  async copy(source: number, target: number, offsetBytes: number, lengthBytes: number): Promise<void> {
    check(offsetBytes, lengthBytes);
    if (source === target) throw new DataPathError('EINVAL', `copy from element ${source} onto itself`);
    await this.pieces(offsetBytes, lengthBytes, async (slot, off, len) => {
      await this.top.submit(this.rawIndex, Op.READ, off, len, 0, slot, 'local', source);
      await this.top.submit(this.rawIndex, Op.WRITE, off, len, 0, slot, 'local', target);
    });
  }

  /** One slot per piece, all pieces concurrently; settles only after every piece has (slots reused safely). */
  private async pieces(offsetBytes: number, lengthBytes: number, fn: (slot: number, off: number, len: number, at: number) => Promise<void>): Promise<void> {
    const pieceBytes = this.slab.slotBytes;
    const runs: Promise<void>[] = [];
    for (let at = 0; at < lengthBytes; at += pieceBytes) {
      const len = Math.min(pieceBytes, lengthBytes - at);
      runs.push((async () => {
        const [slot] = await this.slots.acquire(1, true); // maintenance slots: see SlotPool
        try {
          await fn(slot!, offsetBytes + at, len, at);
        } finally {
          this.slots.release([slot!]);
        }
      })());
    }
    const results = await Promise.allSettled(runs);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
  }
}

function check(offsetBytes: number, lengthBytes: number): void {
  if (!(Number.isSafeInteger(offsetBytes) && offsetBytes >= 0 && Number.isSafeInteger(lengthBytes) && lengthBytes >= 0)) {
    throw new DataPathError('EINVAL', `raw range [${offsetBytes}, +${lengthBytes}) is not a pair of non-negative integers`);
  }
}
