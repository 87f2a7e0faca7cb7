// Pure server-side codecs for extended headers (NBD_OPT_EXTENDED_HEADERS): the 32-byte request
// with its 64-bit length, and the 32-byte reply header used for every reply once they are
// negotiated. Encoders write into a caller-owned buffer, like the compact ones in transmission.ts.
// The client's side (encoding requests, decoding replies) is in client-extended.ts.

import { EXTENDED_REPLY_MAGIC, EXTENDED_REQUEST_MAGIC, REQUEST_MAGIC, ReplyFlag, ReplyType, Size } from '../constants.js';
import { type Decoded, fail, need } from '../errors.js';
import { readU64, view, writeHead, writeU64 } from './bytes.js';
import type { NbdRequest } from './transmission.js';

/** An OFFSET_DATA header plus its 8-byte offset: what precedes read data (40 bytes). */
export const EXTENDED_DATA_PREFIX_BYTES = Size.EXTENDED_REPLY_HEADER + 8;
/** An ERROR chunk with an empty message (38 bytes). */
export const EXTENDED_ERROR_CHUNK_BYTES = Size.EXTENDED_REPLY_HEADER + 6;

/**
 * Server side: a 32-byte request. The magic is checked as soon as 4 bytes are there, so a client
 * that sends a 28-byte compact request after negotiating extended headers is refused at once
 * instead of leaving the server waiting for 4 bytes that never come.
 */
export function decodeExtendedRequest(bytes: Uint8Array): Decoded<NbdRequest> {
  if (bytes.length < 4) return need(Size.EXTENDED_REQUEST - bytes.length);
  const dv = view(bytes);
  const magic = dv.getUint32(0);
  if (magic === REQUEST_MAGIC) return fail('bad-magic', 'compact request header after extended headers were negotiated');
  if (magic !== EXTENDED_REQUEST_MAGIC) return fail('bad-magic', `bad extended request magic 0x${magic.toString(16)}`);
  if (bytes.length < Size.EXTENDED_REQUEST) return need(Size.EXTENDED_REQUEST - bytes.length);
  const value: NbdRequest = {
    flags: dv.getUint16(4),
    type: dv.getUint16(6),
    cookieHi: dv.getUint32(8),
    cookieLo: dv.getUint32(12),
    offsetBytes: readU64(dv, 16),
    lengthBytes: readU64(dv, 24),
  };
  return { kind: 'value', value, consumedBytes: Size.EXTENDED_REQUEST };
}

/** 32-byte reply header; `offsetBytes` echoes the request's, `payloadBytes` counts what follows. */
export function encodeExtendedReplyHeader(
  target: Uint8Array, at: number, flags: number, type: number, cookieHi: number, cookieLo: number, offsetBytes: number, payloadBytes: number,
): number {
  const dv = view(target);
  writeHead(dv, at, EXTENDED_REPLY_MAGIC, flags, type, cookieHi, cookieLo);
  writeU64(dv, at + 16, offsetBytes);
  writeU64(dv, at + 24, payloadBytes);
  return Size.EXTENDED_REPLY_HEADER;
}

/** OFFSET_DATA header plus the data's offset (40 bytes); the data follows separately. */
export function encodeExtendedDataHeader(
  target: Uint8Array, at: number, cookieHi: number, cookieLo: number, offsetBytes: number, dataBytes: number, done: boolean,
): number {
  encodeExtendedReplyHeader(target, at, done ? ReplyFlag.DONE : 0, ReplyType.OFFSET_DATA, cookieHi, cookieLo, offsetBytes, 8 + dataBytes);
  writeU64(view(target), at + Size.EXTENDED_REPLY_HEADER, offsetBytes);
  return EXTENDED_DATA_PREFIX_BYTES;
}

/** ERROR chunk with an empty message (38 bytes), marked DONE. */
export function encodeExtendedErrorChunk(
  target: Uint8Array, at: number, cookieHi: number, cookieLo: number, offsetBytes: number, errno: number,
): number {
  encodeExtendedReplyHeader(target, at, ReplyFlag.DONE, ReplyType.ERROR, cookieHi, cookieLo, offsetBytes, 6);
  const dv = view(target);
  dv.setUint32(at + Size.EXTENDED_REPLY_HEADER, errno);
  dv.setUint16(at + Size.EXTENDED_REPLY_HEADER + 4, 0);
  return EXTENDED_ERROR_CHUNK_BYTES;
}

/** NONE chunk marked DONE: success without payload (32 bytes). */
export function encodeExtendedNoneChunk(target: Uint8Array, at: number, cookieHi: number, cookieLo: number, offsetBytes: number): number {
  return encodeExtendedReplyHeader(target, at, ReplyFlag.DONE, ReplyType.NONE, cookieHi, cookieLo, offsetBytes, 0);
}
