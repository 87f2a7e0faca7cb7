// Requests that are not multiples of a volume's block size (alignBytes: 4096 with an O_DIRECT
// element, else the largest remote block size). Elements only take whole blocks, so:
//  - a read reads the enclosing aligned span and hands out (or copies out) the asked bytes;
//  - a write reads the partial head and tail blocks into the slot that will carry them, patches
//    the new bytes in and writes the whole span back (read-modify-write). The caller holds the
//    span `exclusive` at the write gate, so no other write lands on those blocks in between;
//  - write-zeroes and trim zero their partial edge blocks the same way, the aligned middle as usual.
// The maths here is pure; rmwPiece does the I/O of one slot-sized piece through the volume's hooks.
import { copyFromChunks } from './read-cache.js';
import type { Slab } from '@onestack/queue';
import { DataPathError } from './errno.js';
import type { SlotPool } from './waiters.js';

/** A byte range [start, end). */
export interface Span {
  readonly start: number;
  readonly end: number;
}

export function isAligned(offsetBytes: number, lengthBytes: number, alignBytes: number): boolean {
  return alignBytes <= 1 || lengthBytes === 0 || (offsetBytes % alignBytes === 0 && lengthBytes % alignBytes === 0);
}

/** The smallest aligned span holding [offset, +length) (itself when empty or aligned). */
export function alignedSpan(offsetBytes: number, lengthBytes: number, alignBytes: number): Span {
  if (!(alignBytes >= 1 && Number.isSafeInteger(offsetBytes) && offsetBytes >= 0 && lengthBytes >= 0)) {
    throw new RangeError(`alignedSpan: bad range [${offsetBytes}, +${lengthBytes}) or block ${alignBytes}`);
  }
  if (lengthBytes === 0) return { start: offsetBytes, end: offsetBytes };
  const start = offsetBytes - (offsetBytes % alignBytes);
  const end = Math.ceil((offsetBytes + lengthBytes) / alignBytes) * alignBytes;
  return { start, end };
}

/**
 * The span element I/O must cover for [offset, +length) of a volume: the range itself when
 * aligned, else its aligned span, which must stay inside the volume and be cut into whole blocks
 * by the slab's slots.
 */
export function spanFor(offsetBytes: number, lengthBytes: number, vol: { readonly name: string; readonly sizeBytes: number; readonly alignBytes: number }, slotBytes: number): Span {
  const a = vol.alignBytes;
  if (isAligned(offsetBytes, lengthBytes, a)) return { start: offsetBytes, end: offsetBytes + lengthBytes };
  const span = alignedSpan(offsetBytes, lengthBytes, a);
  if (span.end > vol.sizeBytes) throw new DataPathError('EINVAL', `${vol.name}: [${offsetBytes}, +${lengthBytes}) touches the partial last block (the size ${vol.sizeBytes} is not a multiple of ${a})`);
  if (slotBytes % a !== 0) throw new DataPathError('EINVAL', `${vol.name}: block size ${a} does not divide the slab slot (${slotBytes} bytes)`);
  return span;
}

/** Write-zeroes/trim of [offset, +length): partial head and tail blocks (zeroed by RMW) and the aligned middle. */
export interface EdgeSplit {
  readonly head: Span | null;
  readonly middle: Span | null;
  readonly tail: Span | null;
}

export function splitEdges(offsetBytes: number, lengthBytes: number, alignBytes: number): EdgeSplit {
  const end = offsetBytes + lengthBytes;
  const up = Math.ceil(offsetBytes / alignBytes) * alignBytes;
  const down = Math.floor(end / alignBytes) * alignBytes;
  if (lengthBytes === 0) return { head: null, middle: null, tail: null };
  // Inside one block, or touching no block boundary in between: all of it is one partial piece.
  if (down <= up) {
    if (up >= end || down <= offsetBytes) return { head: { start: offsetBytes, end }, middle: null, tail: null };
    return { head: { start: offsetBytes, end: up }, middle: null, tail: { start: up, end } };
  }
  const head = up > offsetBytes ? { start: offsetBytes, end: up } : null;
  const tail = end > down ? { start: down, end } : null;
  return { head, middle: { start: up, end: down }, tail };
}

/**
 * Views of the bytes [offset, +length) over consecutive buffers holding the span from `spanStart`
 * (slot views of an aligned read): no copy, empty pieces left out.
 */
export function requestViews(spanViews: readonly Uint8Array[], spanStart: number, offsetBytes: number, lengthBytes: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  const end = offsetBytes + lengthBytes;
  let at = spanStart;
  for (const v of spanViews) {
    const from = Math.max(at, offsetBytes);
    const to = Math.min(at + v.length, end);
    if (to > from) out.push(v.subarray(from - at, to - at));
    at += v.length;
  }
  const got = out.reduce((a, v) => a + v.length, 0);
  if (got !== lengthBytes) throw new RangeError(`requestViews: ${got} bytes of [${offsetBytes}, +${lengthBytes}) inside the span from ${spanStart}`);
  return out;
}

/** Where a write's new bytes come from: fills `into` with request bytes [at, at + into.length). */
export type ByteSource = (at: number, into: Uint8Array) => void;

export const zeroSource: ByteSource = (_at, into) => {
  into.fill(0);
};

export function arraySource(data: Uint8Array): ByteSource {
  return (at, into) => into.set(data.subarray(at, at + into.length));
}

/** A source over consecutive buffers (an NBD write's payload slots). */
export function chunksSource(chunks: readonly Uint8Array[]): ByteSource {
  return (at, into) => copyFromChunks(chunks, at, into);
}

/** The volume's element I/O, as VolumeIoImpl's hooks do it (raid5/6 included). */
export interface BlockPorts {
  readonly slab: Slab;
  readonly slots: SlotPool;
  /** Reads volume bytes [off, +len) into `slot` at `slotOffset`. */
  read(offsetBytes: number, lengthBytes: number, slot: number, slotOffset: number): Promise<void>;
  /** Writes `slot` bytes [0, len) to volume bytes [off, +len). */
  write(offsetBytes: number, lengthBytes: number, slot: number): Promise<void>;
}

/**
 * One slot-sized piece [piece.start, piece.end) of the aligned span of a write of `req`: reads the
 * partial head/tail block the piece holds straight into its place in the slot, patches the new
 * bytes in, writes the piece. The slot comes from the maintenance reserve: the caller holds the
 * span at the write gate, and plain writes queued there hold slots of their own.
 */
export async function rmwPiece(io: BlockPorts, piece: Span, span: Span, req: Span, alignBytes: number, src: ByteSource): Promise<void> {
  const len = piece.end - piece.start;
  if (!(len > 0 && len <= io.slab.slotBytes && piece.start % alignBytes === 0 && len % alignBytes === 0)) {
    throw new RangeError(`rmwPiece: piece [${piece.start}, ${piece.end}) is not whole ${alignBytes}-byte blocks within a slot`);
  }
  const [slot] = await io.slots.acquire(1, true);
  try {
    const headPartial = piece.start === span.start && req.start > span.start;
    const tailPartial = piece.end === span.end && req.end < span.end;
    const reads: Promise<void>[] = [];
    if (headPartial) reads.push(io.read(piece.start, alignBytes, slot!, 0));
    // One block holding both ends is read once.
    if (tailPartial && !(headPartial && len === alignBytes)) reads.push(io.read(piece.end - alignBytes, alignBytes, slot!, len - alignBytes));
    const results = await Promise.allSettled(reads);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
    const from = Math.max(piece.start, req.start);
    const to = Math.min(piece.end, req.end);
    if (to > from) src(from - req.start, io.slab.view(slot!, from - piece.start, to - from));
    await io.write(piece.start, len, slot!);
  } finally {
    io.slots.release([slot!]);
  }
}

/** Read-modify-write of `req` over its aligned `span`: every slot-sized piece at once; settles after all of them. */
export async function rmwRange(io: BlockPorts, span: Span, req: Span, alignBytes: number, src: ByteSource): Promise<void> {
  if (!(span.start <= req.start && req.end <= span.end)) throw new RangeError(`rmwRange: [${req.start}, ${req.end}) outside its span`);
  const all: Promise<void>[] = [];
  const sb = io.slab.slotBytes;
  for (let at = span.start; at < span.end; at += sb) all.push(rmwPiece(io, { start: at, end: Math.min(at + sb, span.end) }, span, req, alignBytes, src));
  const results = await Promise.allSettled(all);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
}
