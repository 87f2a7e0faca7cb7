// Pure codecs for the transmission phase: request headers and reply headers, both directions.
// Encoders write into a caller-owned buffer (one slab per connection, no allocation per reply);
// payload bytes never pass through here, so replies can be sent as views over shared memory.

import { EXTENDED_REQUEST_MAGIC, Errno, type ErrnoName, REQUEST_MAGIC, ReplyFlag, ReplyType, SIMPLE_REPLY_MAGIC, STRUCTURED_REPLY_MAGIC, Size } from '../constants.js';
import { type Decoded, fail, need } from '../errors.js';
import { readU64, view, writeHead, writeU64 } from './bytes.js';

/** The 64-bit cookie ("handle") is opaque: kept as two u32 halves to avoid BigInt per request. */
export interface NbdRequest {
  readonly flags: number;
  readonly type: number;
  readonly cookieHi: number;
  readonly cookieLo: number;
  /** Saturates to MAX_SAFE_INTEGER past 2^53, which every range check rejects. */
  readonly offsetBytes: number;
  /** u32 in compact requests; u64 (saturating like the offset) with extended headers. */
  readonly lengthBytes: number;
}

export function decodeRequest(bytes: Uint8Array): Decoded<NbdRequest> {
  if (bytes.length < Size.REQUEST) return need(Size.REQUEST - bytes.length);
  const dv = view(bytes);
  const magic = dv.getUint32(0);
  if (magic === EXTENDED_REQUEST_MAGIC) return fail('bad-magic', 'extended request header without NBD_OPT_EXTENDED_HEADERS');
  if (magic !== REQUEST_MAGIC) return fail('bad-magic', `bad request magic 0x${magic.toString(16)}`);
  const value: NbdRequest = {
    flags: dv.getUint16(4),
    type: dv.getUint16(6),
    cookieHi: dv.getUint32(8),
    cookieLo: dv.getUint32(12),
    offsetBytes: readU64(dv, 16),
    lengthBytes: dv.getUint32(24),
  };
  return { kind: 'value', value, consumedBytes: Size.REQUEST };
}

/** Client side: writes a 28-byte request header at `at`; returns bytes written. */
export function encodeRequest(target: Uint8Array, at: number, request: NbdRequest): number {
  const dv = view(target);
  writeHead(dv, at, REQUEST_MAGIC, request.flags, request.type, request.cookieHi, request.cookieLo);
  writeU64(dv, at + 16, request.offsetBytes);
  dv.setUint32(at + 24, request.lengthBytes);
  return Size.REQUEST;
}

export function errnoValue(name: ErrnoName): number {
  return Errno[name];
}

/** Simple reply: magic, errno, cookie (16 bytes). */
export function encodeSimpleReply(target: Uint8Array, at: number, cookieHi: number, cookieLo: number, errno: number): number {
  const dv = view(target);
  dv.setUint32(at, SIMPLE_REPLY_MAGIC);
  dv.setUint32(at + 4, errno);
  dv.setUint32(at + 8, cookieHi);
  dv.setUint32(at + 12, cookieLo);
  return Size.SIMPLE_REPLY;
}

/** Structured chunk header (20 bytes); `payloadBytes` counts everything after it. */
export function encodeChunkHeader(
  target: Uint8Array, at: number, flags: number, type: number, cookieHi: number, cookieLo: number, payloadBytes: number,
): number {
  const dv = view(target);
  writeHead(dv, at, STRUCTURED_REPLY_MAGIC, flags, type, cookieHi, cookieLo);
  dv.setUint32(at + 16, payloadBytes);
  return Size.STRUCTURED_HEADER;
}

/** OFFSET_DATA chunk header plus its 8-byte offset (28 bytes); the data follows separately. */
export function encodeDataChunkHeader(
  target: Uint8Array, at: number, cookieHi: number, cookieLo: number, offsetBytes: number, dataBytes: number, done: boolean,
): number {
  encodeChunkHeader(target, at, done ? ReplyFlag.DONE : 0, ReplyType.OFFSET_DATA, cookieHi, cookieLo, 8 + dataBytes);
  writeU64(view(target), at + Size.STRUCTURED_HEADER, offsetBytes);
  return Size.STRUCTURED_HEADER + 8;
}

/** ERROR chunk with an empty message (26 bytes), marked DONE. */
export function encodeErrorChunk(target: Uint8Array, at: number, cookieHi: number, cookieLo: number, errno: number): number {
  encodeChunkHeader(target, at, ReplyFlag.DONE, ReplyType.ERROR, cookieHi, cookieLo, 6);
  const dv = view(target);
  dv.setUint32(at + Size.STRUCTURED_HEADER, errno);
  dv.setUint16(at + Size.STRUCTURED_HEADER + 4, 0);
  return Size.STRUCTURED_HEADER + 6;
}

/** NONE chunk marked DONE: success without payload (20 bytes). */
export function encodeNoneChunk(target: Uint8Array, at: number, cookieHi: number, cookieLo: number): number {
  return encodeChunkHeader(target, at, ReplyFlag.DONE, ReplyType.NONE, cookieHi, cookieLo, 0);
}

export type ReplyHeader =
  | { readonly kind: 'simple'; readonly errno: number; readonly cookieHi: number; readonly cookieLo: number }
  | {
      readonly kind: 'structured'; readonly flags: number; readonly type: number;
      readonly cookieHi: number; readonly cookieLo: number; readonly payloadBytes: number;
    };

/** Client side: decodes a simple (16) or structured (20) reply header; payload is left to the caller. */
export function decodeReplyHeader(bytes: Uint8Array, maxPayloadBytes: number): Decoded<ReplyHeader> {
  if (bytes.length < 4) return need(4 - bytes.length);
  const dv = view(bytes);
  const magic = dv.getUint32(0);
  if (magic === SIMPLE_REPLY_MAGIC) {
    if (bytes.length < Size.SIMPLE_REPLY) return need(Size.SIMPLE_REPLY - bytes.length);
    const value = { kind: 'simple', errno: dv.getUint32(4), cookieHi: dv.getUint32(8), cookieLo: dv.getUint32(12) } as const;
    return { kind: 'value', value, consumedBytes: Size.SIMPLE_REPLY };
  }
  if (magic !== STRUCTURED_REPLY_MAGIC) return fail('bad-reply-magic', `bad reply magic 0x${magic.toString(16)}`);
  if (bytes.length < Size.STRUCTURED_HEADER) return need(Size.STRUCTURED_HEADER - bytes.length);
  const payloadBytes = dv.getUint32(16);
  if (payloadBytes > maxPayloadBytes) return fail('reply-malformed', `reply chunk of ${payloadBytes} bytes`);
  const value = {
    kind: 'structured', flags: dv.getUint16(4), type: dv.getUint16(6),
    cookieHi: dv.getUint32(8), cookieLo: dv.getUint32(12), payloadBytes,
  } as const;
  return { kind: 'value', value, consumedBytes: Size.STRUCTURED_HEADER };
}
