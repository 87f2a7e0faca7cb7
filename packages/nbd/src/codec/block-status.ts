// Pure codecs for NBD_CMD_BLOCK_STATUS replies: one chunk per meta context, compact (type 5:
// u32 context id, n × {u32 length, u32 flags}) or, with extended headers, type 6 (u32 context
// id, u32 count, n × {u64 length, u64 flags}). Encoders write header and payload into a
// caller-owned buffer sized with blockStatusChunkBytes().

import type { NbdExtent } from '../backend.js';
import { ReplyFlag, ReplyType, Size } from '../constants.js';
import { type Decoded, fail } from '../errors.js';
import { readU64, view, writeU64 } from './bytes.js';
import { encodeExtendedReplyHeader } from './extended.js';
import { encodeChunkHeader } from './transmission.js';

export interface BlockStatusPayload {
  readonly contextId: number;
  readonly extents: readonly NbdExtent[];
}

const U32_MAX = 0xffffffff;

export function blockStatusPayloadBytes(extentCount: number, extended: boolean): number {
  return extended ? 8 + 16 * extentCount : 4 + 8 * extentCount;
}

/** Header plus payload of one chunk. */
export function blockStatusChunkBytes(extentCount: number, extended: boolean): number {
  return (extended ? Size.EXTENDED_REPLY_HEADER : Size.STRUCTURED_HEADER) + blockStatusPayloadBytes(extentCount, extended);
}

export interface ChunkTarget {
  readonly cookieHi: number;
  readonly cookieLo: number;
  /** The request's offset (extended headers echo it). */
  readonly offsetBytes: number;
}

/**
 * Writes one block status chunk at `at`; returns the bytes written. Extents must already be
 * checked (nonzero; compact ones and flags within u32): a violation here is a programming error.
 */
export function encodeBlockStatusChunk(
  target: Uint8Array, at: number, reply: ChunkTarget, contextId: number, extents: readonly NbdExtent[], done: boolean, extended: boolean,
): number {
  const flags = done ? ReplyFlag.DONE : 0;
  const payloadBytes = blockStatusPayloadBytes(extents.length, extended);
  const dv = view(target);
  let p: number;
  if (extended) {
    p = at + encodeExtendedReplyHeader(target, at, flags, ReplyType.BLOCK_STATUS_EXT, reply.cookieHi, reply.cookieLo, reply.offsetBytes, payloadBytes);
    dv.setUint32(p, contextId);
    dv.setUint32(p + 4, extents.length);
    p += 8;
  } else {
    p = at + encodeChunkHeader(target, at, flags, ReplyType.BLOCK_STATUS, reply.cookieHi, reply.cookieLo, payloadBytes);
    dv.setUint32(p, contextId);
    p += 4;
  }
  for (const e of extents) {
    if (!(Number.isSafeInteger(e.lengthBytes) && e.lengthBytes > 0) || !(Number.isInteger(e.flags) && e.flags >= 0 && e.flags <= U32_MAX)) {
      throw new RangeError(`bad extent ${e.lengthBytes}/${e.flags}`);
    }
    if (extended) {
      writeU64(dv, p, e.lengthBytes);
      writeU64(dv, p + 8, e.flags);
      p += 16;
    } else {
      if (e.lengthBytes > U32_MAX) throw new RangeError(`extent of ${e.lengthBytes} bytes in a compact reply`);
      dv.setUint32(p, e.lengthBytes);
      dv.setUint32(p + 4, e.flags);
      p += 8;
    }
  }
  return p - at;
}

/** Client side: a whole block status payload (type 5 or 6); every extent nonzero. */
export function decodeBlockStatusPayload(payload: Uint8Array, extended: boolean): Decoded<BlockStatusPayload> {
  const dv = view(payload);
  const headBytes = extended ? 8 : 4;
  const extentBytes = extended ? 16 : 8;
  if (payload.length < headBytes + extentBytes || (payload.length - headBytes) % extentBytes !== 0) {
    return fail('reply-malformed', `block status payload of ${payload.length} bytes`);
  }
  const count = (payload.length - headBytes) / extentBytes;
  if (extended && dv.getUint32(4) !== count) return fail('reply-malformed', `block status count ${dv.getUint32(4)} for ${count} extents`);
  const extents: NbdExtent[] = [];
  // Bounded by the payload's length.
  for (let i = 0, p = headBytes; i < count; i++, p += extentBytes) {
    const lengthBytes = extended ? readU64(dv, p) : dv.getUint32(p);
    const flags = extended ? readU64(dv, p + 8) : dv.getUint32(p + 4);
    if (lengthBytes === 0) return fail('reply-malformed', `block status extent ${i} of length 0`);
    extents.push({ lengthBytes, flags });
  }
  return { kind: 'value', value: { contextId: dv.getUint32(0), extents }, consumedBytes: payload.length };
}
