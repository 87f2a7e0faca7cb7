// Pure client-side codecs for extended headers (NBD_OPT_EXTENDED_HEADERS): the 32-byte request
// and the 32-byte reply header. Once agreed, every reply uses that header (no simple replies, no
// 20-byte chunk headers), so it decodes into the same shape as a structured chunk header.

import { EXTENDED_REPLY_MAGIC, EXTENDED_REQUEST_MAGIC, SIMPLE_REPLY_MAGIC, STRUCTURED_REPLY_MAGIC, Size } from '../constants.js';
import { type Decoded, fail, need } from '../errors.js';
import { readU64, view, writeHead, writeU64 } from './bytes.js';
import type { NbdRequest, ReplyHeader } from './transmission.js';

export type ExtendedReplyHeader = Extract<ReplyHeader, { kind: 'structured' }> & {
  /** The offset of the request this replies to (informational). */
  readonly offsetBytes: number;
};

/** Writes a 32-byte request at `at` (u64 length: BLOCK_STATUS etc. may exceed 4 GiB); returns bytes written. */
export function encodeExtendedRequest(target: Uint8Array, at: number, request: NbdRequest): number {
  const dv = view(target);
  writeHead(dv, at, EXTENDED_REQUEST_MAGIC, request.flags, request.type, request.cookieHi, request.cookieLo);
  writeU64(dv, at + 16, request.offsetBytes);
  writeU64(dv, at + 24, request.lengthBytes);
  return Size.EXTENDED_REQUEST;
}

/** Decodes a 32-byte extended reply header; payloads past 2^53 bytes read as MAX_SAFE_INTEGER (always refused). */
export function decodeExtendedReplyHeader(bytes: Uint8Array): Decoded<ExtendedReplyHeader> {
  if (bytes.length < 4) return need(4 - bytes.length);
  const dv = view(bytes);
  const magic = dv.getUint32(0);
  if (magic === SIMPLE_REPLY_MAGIC || magic === STRUCTURED_REPLY_MAGIC) {
    return fail('bad-reply-magic', 'compact reply header after extended headers were agreed');
  }
  if (magic !== EXTENDED_REPLY_MAGIC) return fail('bad-reply-magic', `bad reply magic 0x${magic.toString(16)}`);
  if (bytes.length < Size.EXTENDED_REPLY_HEADER) return need(Size.EXTENDED_REPLY_HEADER - bytes.length);
  const value = {
    kind: 'structured', flags: dv.getUint16(4), type: dv.getUint16(6), cookieHi: dv.getUint32(8), cookieLo: dv.getUint32(12),
    offsetBytes: readU64(dv, 16), payloadBytes: readU64(dv, 24),
  } as const;
  return { kind: 'value', value, consumedBytes: Size.EXTENDED_REPLY_HEADER };
}
