// Pure client-side codecs for NBD_CMD_BLOCK_STATUS replies: the head of a status chunk (context
// id and descriptor count; compact type 5 or extended type 6) and a collector that checks the
// descriptors as they arrive and keeps a bounded number of extents, so a reply of any length
// costs bounded memory. Malformed input throws NbdProtocolError, nothing else.

import type { NbdExtent } from '../backend.js';
import { ReplyType } from '../constants.js';
import { NbdProtocolError } from '../errors.js';
import { readU64, view } from './bytes.js';

/** Descriptors in one status chunk beyond this are refused (a 4 GiB compact chunk holds 2^29). */
export const STATUS_DESCRIPTORS_MAX = 1 << 24;

export interface StatusChunkHead {
  readonly contextId: number;
  readonly descriptorCount: number;
  /** 8 (u32 length, u32 flags) or 16 (u64 length, u64 flags). */
  readonly descriptorBytes: 8 | 16;
}

const bad = (why: string): never => {
  throw new NbdProtocolError('reply-malformed', why);
};

export function isStatusChunk(type: number): boolean {
  return type === ReplyType.BLOCK_STATUS || type === ReplyType.BLOCK_STATUS_EXT;
}

/** Bytes before the descriptors: u32 context id (compact), plus u32 count (extended). */
export function statusPrefixBytes(type: number): 4 | 8 {
  if (!isStatusChunk(type)) throw new RangeError(`not a block status chunk type: ${type}`);
  return type === ReplyType.BLOCK_STATUS ? 4 : 8;
}

/** Checks a status chunk's payload length against its type, and decodes the prefix. */
export function decodeStatusChunkHead(type: number, payloadBytes: number, prefix: Uint8Array): StatusChunkHead {
  const prefixBytes = statusPrefixBytes(type);
  if (prefix.length < prefixBytes) throw new RangeError(`need the ${prefixBytes} prefix bytes`);
  const dv = view(prefix);
  const descriptorBytes = type === ReplyType.BLOCK_STATUS ? 8 : 16;
  const listBytes = payloadBytes - prefixBytes;
  if (!(listBytes >= descriptorBytes && listBytes % descriptorBytes === 0)) {
    bad(`block status chunk of ${payloadBytes} bytes is not a context id plus whole ${descriptorBytes}-byte descriptors`);
  }
  const descriptorCount = listBytes / descriptorBytes;
  if (type === ReplyType.BLOCK_STATUS_EXT && dv.getUint32(4) !== descriptorCount) {
    bad(`extended block status chunk counts ${dv.getUint32(4)} descriptors but holds ${descriptorCount}`);
  }
  if (descriptorCount > STATUS_DESCRIPTORS_MAX) bad(`block status chunk with ${descriptorCount} descriptors`);
  return { contextId: dv.getUint32(0), descriptorCount, descriptorBytes };
}

/**
 * Checks the descriptors of one context's chunk against the request and the export, and keeps
 * the first `keepMax` extents (equal neighbours merged). Rules: no zero length; only the final
 * descriptor may run past the request's end (it is clamped to it); nothing past the export's end.
 */
export class ExtentCollector {
  private readonly kept: { lengthBytes: number; flags: number }[] = [];
  private readonly requestEndBytes: number;
  private positionBytes: number;
  /** Set once an extent was not kept: later ones must not merge across the gap. */
  private full = false;
  private seen = 0;

  constructor(
    request: { readonly offsetBytes: number; readonly lengthBytes: number },
    private readonly exportSizeBytes: number,
    private readonly keepMax: number,
  ) {
    if (!(request.lengthBytes > 0 && keepMax >= 0)) throw new RangeError('bad extent collector arguments');
    this.positionBytes = request.offsetBytes;
    this.requestEndBytes = request.offsetBytes + request.lengthBytes;
  }

  /** Descriptors checked so far. */
  get count(): number {
    return this.seen;
  }

  /** Checks (and keeps) whole descriptors; `bytes` holds a multiple of `descriptorBytes`. */
  add(bytes: Uint8Array, descriptorBytes: 8 | 16): void {
    if (bytes.length % descriptorBytes !== 0) throw new RangeError('partial descriptor');
    const dv = view(bytes);
    for (let at = 0; at < bytes.length; at += descriptorBytes) {
      const lengthBytes = descriptorBytes === 8 ? dv.getUint32(at) : readU64(dv, at);
      // Flags: the low 32 bits; every context this code knows defines no others.
      const flags = dv.getUint32(at + descriptorBytes - 4);
      this.take(lengthBytes, flags);
    }
  }

  private take(lengthBytes: number, flags: number): void {
    const at = this.positionBytes;
    if (lengthBytes === 0) bad(`block status extent of length 0 at ${at}`);
    if (at >= this.requestEndBytes) bad(`block status extent at ${at}, after the end of the request (${this.requestEndBytes})`);
    if (lengthBytes > this.exportSizeBytes - at) bad(`block status extent [${at}, +${lengthBytes}) runs past the end of the export (${this.exportSizeBytes})`);
    const keptBytes = Math.min(lengthBytes, this.requestEndBytes - at);
    this.positionBytes = at + keptBytes;
    this.seen += 1;
    const last = this.kept[this.kept.length - 1];
    if (!this.full && last !== undefined && last.flags === flags) last.lengthBytes += keptBytes;
    else if (this.kept.length < this.keepMax && !this.full) this.kept.push({ lengthBytes: keptBytes, flags });
    else this.full = true;
  }

  /** The kept extents, starting at the request's offset (at least one when keepMax > 0 and a descriptor came). */
  extents(): NbdExtent[] {
    return this.kept.map((e) => ({ lengthBytes: e.lengthBytes, flags: e.flags }));
  }
}
