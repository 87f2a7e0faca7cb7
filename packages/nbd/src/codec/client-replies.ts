// Pure client-side codecs for the transmission phase: structured reply chunk payloads (all but
// the data of OFFSET_DATA, which the caller copies straight from the socket into its target),
// and wire errno values as names. Malformed input throws NbdProtocolError, nothing else.

import { Errno, type ErrnoName, REPLY_TYPE_ERROR_BIT, ReplyFlag, ReplyType, STRING_MAX_BYTES, Size } from '../constants.js';
import { NbdProtocolError } from '../errors.js';
import { readU64, view } from './bytes.js';
import { printable } from './client-handshake.js';
import type { ReplyHeader } from './transmission.js';

/** Bytes of an OFFSET_DATA chunk read before its data: the header and the u64 offset. */
export const DATA_CHUNK_PREFIX_BYTES = Size.STRUCTURED_HEADER + 8;
/** Largest payload of a chunk other than OFFSET_DATA: an error with the longest legal message and an offset. */
export const SMALL_CHUNK_MAX_BYTES = 4 + 2 + STRING_MAX_BYTES + 8;

type StructuredHeader = Extract<ReplyHeader, { kind: 'structured' }>;

/** A chunk other than OFFSET_DATA, decoded from its whole payload. */
export type SmallChunk =
  | { readonly kind: 'none' }
  | { readonly kind: 'hole'; readonly offsetBytes: number; readonly lengthBytes: number }
  | { readonly kind: 'error'; readonly errno: number; readonly message: string; readonly offsetBytes?: number };

/** Whether a chunk of this type carries bulk data that must be streamed, not buffered. */
export function isDataChunk(header: StructuredHeader): boolean {
  return header.type === ReplyType.OFFSET_DATA;
}

/**
 * Checks the chunk header on its own: a length that fits the type, DONE where required.
 * OFFSET_DATA carries at most `dataPayloadMaxBytes`; block status chunks are streamed, so their
 * length is checked against their content (client-status.ts), not here.
 */
export function checkChunkHeader(header: StructuredHeader, dataPayloadMaxBytes = Number.MAX_SAFE_INTEGER): void {
  const bad = (why: string): never => { throw new NbdProtocolError('reply-malformed', why); };
  if ((header.flags & ~ReplyFlag.DONE) !== 0) bad(`unknown reply chunk flags 0x${header.flags.toString(16)}`);
  if (header.type === ReplyType.OFFSET_DATA) {
    if (header.payloadBytes <= 8) bad('OFFSET_DATA chunk without data');
    if (header.payloadBytes > dataPayloadMaxBytes) bad(`OFFSET_DATA chunk of ${header.payloadBytes} bytes`);
    return;
  }
  if (header.type === ReplyType.BLOCK_STATUS || header.type === ReplyType.BLOCK_STATUS_EXT) return;
  if (header.payloadBytes > SMALL_CHUNK_MAX_BYTES) bad(`chunk of type ${header.type} with ${header.payloadBytes} bytes`);
  if (header.type === ReplyType.NONE && !(header.payloadBytes === 0 && (header.flags & ReplyFlag.DONE) !== 0)) {
    bad('NONE chunk must be empty and final');
  }
}

/** Decodes the payload of a chunk whose header passed checkChunkHeader and is not OFFSET_DATA. */
export function decodeSmallChunk(header: StructuredHeader, payload: Uint8Array): SmallChunk {
  if (payload.length !== header.payloadBytes) throw new RangeError('payload length differs from the header');
  const dv = view(payload);
  switch (header.type) {
    case ReplyType.NONE:
      return { kind: 'none' };
    case ReplyType.OFFSET_HOLE: {
      if (payload.length !== 12) throw new NbdProtocolError('reply-malformed', 'OFFSET_HOLE chunk is not 12 bytes');
      const lengthBytes = dv.getUint32(8);
      if (lengthBytes === 0) throw new NbdProtocolError('reply-malformed', 'empty OFFSET_HOLE chunk');
      return { kind: 'hole', offsetBytes: readU64(dv, 0), lengthBytes };
    }
    case ReplyType.ERROR:
    case ReplyType.ERROR_OFFSET:
      return decodeErrorChunk(header, payload);
    default:
      // Unknown error types still carry errno and message; unknown others cannot be understood.
      if ((header.type & REPLY_TYPE_ERROR_BIT) !== 0) return decodeErrorChunk(header, payload);
      throw new NbdProtocolError('reply-malformed', `unknown reply chunk type ${header.type}`);
  }
}

function decodeErrorChunk(header: StructuredHeader, payload: Uint8Array): SmallChunk {
  if (payload.length < 6) throw new NbdProtocolError('reply-malformed', 'error chunk shorter than 6 bytes');
  const dv = view(payload);
  const errno = dv.getUint32(0);
  const messageBytes = dv.getUint16(4);
  const withOffset = header.type === ReplyType.ERROR_OFFSET;
  const expected = 6 + messageBytes + (withOffset ? 8 : 0);
  if (withOffset ? payload.length !== expected : payload.length < expected) {
    throw new NbdProtocolError('reply-malformed', 'error chunk length does not match its message');
  }
  if (errno === 0) throw new NbdProtocolError('reply-malformed', 'error chunk with errno 0');
  const message = printable(payload.subarray(6, 6 + messageBytes));
  if (!withOffset) return { kind: 'error', errno, message };
  return { kind: 'error', errno, message, offsetBytes: readU64(dv, 6 + messageBytes) };
}

/** The u64 offset that starts an OFFSET_DATA chunk's payload (pass the 8 bytes after the header). */
export function decodeDataChunkOffset(bytes: Uint8Array): number {
  if (bytes.length < 8) throw new RangeError('need the 8 offset bytes');
  return readU64(view(bytes), 0);
}

const byValue = new Map<number, ErrnoName>(Object.entries(Errno).map(([name, value]) => [value, name as ErrnoName]));

/** The name of a wire errno; values the spec does not list read as EIO (so says proto.md for clients). */
export function errnoName(errno: number): ErrnoName {
  if (errno === 0) throw new RangeError('errno 0 is success');
  // EDQUOT and EFBIG mean "out of space" to a block device, as ENOSPC does.
  if (errno === 27 || errno === 122) return 'ENOSPC';
  return byValue.get(errno) ?? 'EIO';
}
