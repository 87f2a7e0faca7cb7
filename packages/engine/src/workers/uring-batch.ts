// io_uring batches for the bottom loop: READ, WRITE (FUA as RWF_DSYNC) and FLUSH of local
// elements go into one submitAndWait per batch, so the kernel runs them together (O_DIRECT: in
// parallel on the device) while this thread waits once instead of once per sub. Buffers are the
// subs' slab ranges, named by offset into the data SAB the ring holds: still no copies.
import * as fs from 'node:fs';
import { constants } from 'node:os';
import { openUring, putUringRecord, UringOp, URING_RECORD_F64S, type UringOpCode, type UringRing } from '@onestack/native';
import { DescFlags, Op } from '@onestack/queue';
import { DataPathError, errnoCode, errnoFromError } from '../datapath/errno.js';
import { checkDirectRange, readFully, writeFully, type ElementHandle, type Scratch } from './element-io.js';

/** Subs the bottom loop pops per turn, and so the most one batch (and the ring) ever holds. */
export const BOTTOM_BATCH_MAX = 32;

/** Which local elements use the ring: every one, or only O_DIRECT ones (`cache: none`). */
export type UringScope = 'all' | 'direct';

/**
 * The default scope, by measurement (ARCHITECTURE.md, "The bottom driver"): on O_DIRECT elements
 * the ring gained or broke even in every workload (quiet machine: 4k randread QD32 +63 % at a
 * third less server CPU per op, 1M seq read +27 %; busy: 4k randwrite +55 %, 1M seq write
 * +33 %), while on page-cache elements it gained nothing (even when quiet, -22 % 4k randwrite
 * when busy): ext4 cannot do a buffered write without blocking, so io_uring hands each one to an
 * io-wq kernel thread, one more hop on 2 cores. ONESTACK_URING=all or =direct overrides it;
 * =off turns the ring off (openUring).
 */
export const DEFAULT_URING_SCOPE: UringScope = 'direct';

export function uringScope(): UringScope {
  const env = process.env['ONESTACK_URING'];
  return env === 'all' || env === 'direct' ? env : DEFAULT_URING_SCOPE;
}

const ERRNO_NAMES = new Map<number, string>(Object.entries(constants.errno).map(([name, n]) => [n, name]));

/** A kernel result -errno as the error the sync path would have thrown (errno.ts maps it). */
function kernelError(res: number): DataPathError {
  const name = ERRNO_NAMES.get(-res) ?? `E${-res}`;
  return new DataPathError(errnoFromError({ code: name }), `${name} from io_uring`);
}

function errnoOf(err: unknown): number {
  return errnoCode(err instanceof DataPathError ? err.errno : errnoFromError(err));
}

/** Finishes one sub (0 = success) that took `serviceUs` (< 0: not timed); true when that finalised its parent. */
export type FinishSub = (sub: number, errno: number, serviceUs: number) => boolean;

export class UringBatch {
  private readonly ops: Float64Array;
  private readonly results: Int32Array;
  /** Record i carries sub subOf[i] of element elementOf[i]: one record per sub (see ARCHITECTURE.md on coalescing). */
  private readonly subOf: Int32Array;
  private readonly elementOf: Int32Array;
  private count = 0;
  /** Why the ring was given up mid-run (null while it works); the batch then accepts nothing. */
  private broken: string | null = null;

  private constructor(private readonly ring: UringRing, private readonly data: SharedArrayBuffer, private readonly scope: UringScope) {
    this.ops = new Float64Array(ring.entries * URING_RECORD_F64S);
    this.results = new Int32Array(ring.entries);
    this.subOf = new Int32Array(ring.entries);
    this.elementOf = new Int32Array(ring.entries);
  }

  /** A batch over the data SAB, or null and why (no addon, ONESTACK_URING=off, kernel refusal). */
  static open(data: SharedArrayBuffer, scope: UringScope): { batch: UringBatch | null; reason: string } {
    const opened = openUring(BOTTOM_BATCH_MAX);
    if (opened.ring === null) return { batch: null, reason: opened.reason };
    try {
      opened.ring.registerSlab(new Uint8Array(data));
    } catch (err) {
      opened.ring.close();
      return { batch: null, reason: `registerSlab: ${String(err)}` };
    }
    return { batch: new UringBatch(opened.ring, data, scope), reason: opened.reason };
  }

  get size(): number {
    return this.count;
  }

  full(): boolean {
    return this.count === this.ring.entries;
  }

  /** READ, WRITE and FLUSH of an open element in scope go through the ring; the rest stays sync. */
  accepts(h: ElementHandle, op: number): boolean {
    if (this.broken !== null || h.fd < 0 || !(this.scope === 'all' || h.direct)) return false;
    return op === Op.READ || op === Op.WRITE || op === Op.FLUSH;
  }

  /**
   * True when the sub must not run alongside a record already batched: same element and
   * overlapping ranges with a write among them, or a FLUSH and a WRITE. Submitted together they
   * could complete in either order; the sync path ran them in ring order.
   */
  conflicts(element: number, op: number, offsetBytes: number, lengthBytes: number): boolean {
    const ops = this.ops;
    for (let i = 0; i < this.count; i++) {
      if (this.elementOf[i] !== element) continue;
      const at = i * URING_RECORD_F64S;
      const other = ops[at]!;
      const otherWrites = other === UringOp.WRITE || other === UringOp.WRITE_DSYNC;
      if (op === Op.FLUSH || other === UringOp.FDATASYNC) {
        if (op === Op.WRITE || otherWrites) return true;
        continue;
      }
      const overlap = offsetBytes < ops[at + 4]! + ops[at + 3]! && ops[at + 4]! < offsetBytes + lengthBytes;
      if (overlap && (op === Op.WRITE || otherWrites)) return true;
    }
    return false;
  }

  /** Queues one sub; throws EINVAL (nothing queued) for a misaligned O_DIRECT request. */
  add(sub: number, element: number, h: ElementHandle, op: number, flags: number, offsetBytes: number, lengthBytes: number,
    slabByteOffset: number, s: Scratch): void {
    if (this.full()) throw new Error('UringBatch.add: batch is full (run it first)');
    if (!this.accepts(h, op)) throw new Error(`UringBatch.add: op ${op} on ${h.path} does not go through the ring`);
    let code: UringOpCode = UringOp.FDATASYNC;
    if (op !== Op.FLUSH) {
      if (h.direct) checkDirectRange(h, offsetBytes, lengthBytes, slabByteOffset, s);
      code = op === Op.READ ? UringOp.READ : (flags & DescFlags.FUA) !== 0 ? UringOp.WRITE_DSYNC : UringOp.WRITE;
    }
    const i = this.count;
    if (code === UringOp.FDATASYNC) putUringRecord(this.ops, i, code, h.fd, 0, 0, 0);
    else putUringRecord(this.ops, i, code, h.fd, slabByteOffset, lengthBytes, offsetBytes);
    this.subOf[i] = sub;
    this.elementOf[i] = element;
    this.count = i + 1;
  }

  /** Submits the batch, waits for all of it, finishes every sub. Returns true if a parent got finalised. */
  run(finish: FinishSub): boolean {
    const count = this.count;
    if (count === 0) return false;
    this.count = 0;
    let fallback = false;
    // The batch completes as one: each record's service time is the batch's (submit to last CQE).
    const t0 = performance.now();
    try {
      this.ring.submitAndWait(this.ops, count, this.results);
    } catch (err) {
      // Nothing was submitted (a refused batch, or a ring the addon had to close): run these
      // subs the sync way and stop using the ring, saying why once.
      this.broken = String(err);
      this.ring.close();
      fs.writeSync(2, `onestack: bottom worker: io_uring given up (${this.broken}); element I/O is synchronous from now on\n`);
      fallback = true;
    }
    let completed = false;
    const serviceUs = fallback ? -1 : (performance.now() - t0) * 1000;
    for (let i = 0; i < count; i++) {
      let errno = 0;
      try {
        if (fallback) this.runSync(i);
        else this.complete(i, this.results[i]!);
      } catch (err) {
        errno = errnoOf(err);
      }
      if (finish(this.subOf[i]!, errno, serviceUs)) completed = true;
    }
    return completed;
  }

  /** Record i's kernel result: an error, done, or a short transfer finished synchronously. */
  private complete(i: number, res: number): void {
    if (res < 0) throw kernelError(res);
    const at = i * URING_RECORD_F64S;
    const code = this.ops[at]!;
    if (code === UringOp.FDATASYNC) return;
    const lengthBytes = this.ops[at + 3]!;
    if (res === lengthBytes) return;
    if (res > lengthBytes) throw new Error(`io_uring record ${i}: ${res} bytes done of ${lengthBytes}`);
    // Short: past the element's end (reads) or an interrupted transfer; go on from where the kernel stopped.
    const fd = this.ops[at + 1]!;
    const view = new Uint8Array(this.data, this.ops[at + 2]! + res, lengthBytes - res);
    const position = this.ops[at + 4]! + res;
    if (code === UringOp.READ) {
      readFully(fd, view, position);
      return;
    }
    writeFully(fd, view, position);
    if (code === UringOp.WRITE_DSYNC) fs.fdatasyncSync(fd);
  }

  /** Record i through plain syscalls (the ring failed before it was submitted). */
  private runSync(i: number): void {
    const at = i * URING_RECORD_F64S;
    const [code, fd, slabByteOffset, lengthBytes, position] = [this.ops[at]!, this.ops[at + 1]!, this.ops[at + 2]!, this.ops[at + 3]!, this.ops[at + 4]!];
    if (code === UringOp.FDATASYNC) {
      fs.fdatasyncSync(fd);
      return;
    }
    const view = new Uint8Array(this.data, slabByteOffset, lengthBytes);
    if (code === UringOp.READ) {
      readFully(fd, view, position);
      return;
    }
    writeFully(fd, view, position);
    if (code === UringOp.WRITE_DSYNC) fs.fdatasyncSync(fd);
  }

  close(): void {
    this.count = 0;
    this.ring.close();
  }
}
