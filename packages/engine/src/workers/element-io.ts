// Synchronous element I/O for the bottom loop, straight into and out of slab views (no copies).
// Each bottom worker owns its fds: one per local element, opened when the topology arrives.
// READ/WRITE/FLUSH may instead go through io_uring in batches (uring-batch.ts); this file is
// then their fallback (no ring here) and the finisher of short transfers the kernel returned.
import * as fs from 'node:fs';
import { openFile, punchHole, zeroRange } from '@onestack/native';
import { DescFlags, Op } from '@onestack/queue';
import { DataPathError } from '../datapath/errno.js';
import { DIRECT_ALIGN_BYTES, type TopologyElement } from '../datapath/topology.js';

export interface ElementHandle {
  readonly path: string;
  readonly direct: boolean;
  readonly fd: number;
  /**
   * A second fd with O_DSYNC, opened on the first FUA write (page-cache elements only): a FUA
   * write then flushes its own range, not every dirty page of the file as fdatasync would.
   * Bitmap pages and superblock-like header writes are FUA and frequent.
   */
  readonly dsync: { fd: number };
  /** Why fd is -1 (open failed, or the kind is not served here yet). */
  readonly reason?: string;
}

export interface SubRequest {
  readonly op: number;
  readonly flags: number;
  readonly offsetBytes: number;
  readonly lengthBytes: number;
  /** The data view for READ/WRITE; null for the other ops. */
  readonly view: Uint8Array | null;
}

/** Bounded chunks for zero writes and cache reads, so one sub never allocates. */
export interface Scratch {
  readonly zeros: Uint8Array;
  readonly cache: Uint8Array;
  /** Real address of the slab SAB's byte 0 mod 4096 (views' byteOffset is relative to it). */
  readonly slabMisalignmentBytes: number;
}

/** Bound on read/write syscalls per sub: a file that keeps returning short counts is an error. */
const SYSCALLS_MAX = 1 << 16;

/** Reuses `old` when path and mode match; otherwise opens anew (the caller closes `old`). */
export function openElement(e: TopologyElement, old: ElementHandle | undefined): ElementHandle {
  if (e.kind !== 'local' || e.path === undefined) {
    return { path: '', direct: e.direct, fd: -1, dsync: { fd: -1 }, reason: `${e.kind} elements are not served by the bottom driver yet` };
  }
  if (old !== undefined && old.path === e.path && old.direct === e.direct && old.fd >= 0) return old;
  try {
    return { path: e.path, direct: e.direct, fd: openFile(e.path, { direct: e.direct, write: true }), dsync: { fd: -1 } };
  } catch (err) {
    return { path: e.path, direct: e.direct, fd: -1, dsync: { fd: -1 }, reason: `open ${e.path}${e.direct ? ' (O_DIRECT)' : ''}: ${String(err)}` };
  }
}

export function closeElement(h: ElementHandle): void {
  for (const fd of [h.fd, h.dsync.fd]) {
    if (fd < 0) continue;
    try {
      fs.closeSync(fd);
    } catch {
      // Nothing to do: the fd is gone either way.
    }
  }
}

/** The O_DSYNC fd of a page-cache element, or -1 (then the caller writes and fdatasyncs). */
function dsyncFd(h: ElementHandle): number {
  if (h.direct) return -1;
  if (h.dsync.fd < 0) {
    try {
      h.dsync.fd = fs.openSync(h.path, fs.constants.O_RDWR | fs.constants.O_DSYNC);
    } catch {
      return -1;
    }
  }
  return h.dsync.fd;
}

/**
 * O_DIRECT needs file offset, length and memory address aligned; `slabByteOffset` is the
 * buffer's offset in the slab SAB (null: no buffer). Throws EINVAL, as the kernel would.
 */
export function checkDirectRange(h: ElementHandle, offsetBytes: number, lengthBytes: number, slabByteOffset: number | null, s: Scratch): void {
  const addressMod = slabByteOffset === null ? 0 : (s.slabMisalignmentBytes + slabByteOffset) % DIRECT_ALIGN_BYTES;
  const unaligned = offsetBytes % DIRECT_ALIGN_BYTES !== 0 || lengthBytes % DIRECT_ALIGN_BYTES !== 0 || addressMod !== 0;
  if (unaligned) throw new DataPathError('EINVAL', `O_DIRECT element ${h.path}: offset/length must be ${DIRECT_ALIGN_BYTES}-aligned`);
}

function checkDirect(h: ElementHandle, r: SubRequest, s: Scratch): void {
  checkDirectRange(h, r.offsetBytes, r.lengthBytes, r.view === null ? null : r.view.byteOffset, s);
}

/** Reads until `view` is full; past the element's end the rest reads as zeroes. */
export function readFully(fd: number, view: Uint8Array, position: number): void {
  let done = 0;
  for (let i = 0; i < SYSCALLS_MAX && done < view.length; i++) {
    const n = fs.readSync(fd, view, done, view.length - done, position + done);
    if (n === 0) break; // past the element's end: the rest reads as zeroes
    done += n;
  }
  if (done < view.length) view.fill(0, done);
}

export function writeFully(fd: number, view: Uint8Array, position: number): void {
  let done = 0;
  for (let i = 0; i < SYSCALLS_MAX && done < view.length; i++) {
    done += fs.writeSync(fd, view, done, view.length - done, position + done);
  }
  if (done < view.length) throw new DataPathError('EIO', `short write: ${done} of ${view.length} bytes`);
}

function writeZeroes(fd: number, zeros: Uint8Array, position: number, lengthBytes: number): void {
  for (let done = 0; done < lengthBytes; ) {
    const n = Math.min(zeros.length, lengthBytes - done);
    writeFully(fd, zeros.subarray(0, n), position + done);
    done += n;
  }
}

/** WRITE_ZEROES (and TRIM): punch, else zero the range in the file system, else write zeroes. */
function zeroOut(h: ElementHandle, r: SubRequest, s: Scratch): void {
  const { offsetBytes: off, lengthBytes: len } = r;
  if (len === 0) return;
  if ((r.flags & DescFlags.NO_HOLE) !== 0) {
    if (zeroRange(h.fd, off, len)) return;
  } else if (punchHole(h.fd, off, len) || zeroRange(h.fd, off, len)) {
    return;
  }
  if (h.direct) checkDirect(h, r, s);
  writeZeroes(h.fd, s.zeros, off, len);
}

function cacheRange(h: ElementHandle, r: SubRequest, s: Scratch): void {
  if (h.direct) return; // nothing to warm: O_DIRECT bypasses the page cache
  for (let done = 0; done < r.lengthBytes; ) {
    const n = Math.min(s.cache.length, r.lengthBytes - done);
    const got = fs.readSync(h.fd, s.cache, 0, n, r.offsetBytes + done);
    if (got === 0) return; // past the end
    done += got;
  }
}

/** Runs one sub. Throws on failure (fs errors carry .code; ours are DataPathError). */
export function runSub(h: ElementHandle, r: SubRequest, s: Scratch): void {
  if (h.fd < 0) throw new DataPathError('EIO', h.reason ?? 'element not open');
  const fua = (r.flags & DescFlags.FUA) !== 0;
  switch (r.op) {
    case Op.READ:
      if (h.direct) checkDirect(h, r, s);
      readFully(h.fd, r.view!, r.offsetBytes);
      return;
    case Op.WRITE: {
      if (h.direct) checkDirect(h, r, s);
      const sync = fua ? dsyncFd(h) : -1;
      writeFully(sync >= 0 ? sync : h.fd, r.view!, r.offsetBytes);
      if (sync >= 0) return; // O_DSYNC: on stable storage when the write returns
      break;
    }
    case Op.FLUSH:
      fs.fdatasyncSync(h.fd);
      return;
    case Op.TRIM:
    // TRIM punches a hole; where that is unsupported it zeroes instead, so that mirror legs on
    // different file systems or devices still read the same after a trim.
    case Op.WRITE_ZEROES:
      zeroOut(h, r, s);
      break;
    case Op.CACHE:
      cacheRange(h, r, s);
      return;
    default:
      throw new DataPathError('EINVAL', `unknown op ${r.op}`);
  }
  if (fua) fs.fdatasyncSync(h.fd);
}
