// Pure client-side codecs for the handshake: the server greeting (refusing oldstyle by name),
// option replies classified for the client (META_CONTEXT included), NBD_REP_SERVER entries, the
// NBD_OPT_EXPORT_NAME reply, and the block-size sanity rules. Decoders return Decoded<T> (stream
// prefixes) or throw NbdProtocolError (whole messages); nothing here touches a socket.

import { CLISERV_MAGIC, HandshakeFlag, IHAVEOPT, NBDMAGIC, Rep, STRING_MAX_BYTES, Size } from '../constants.js';
import { type Decoded, NbdProtocolError, fail, need } from '../errors.js';
import { decodeString, readU64, view } from './bytes.js';
import { type InfoReply, type OptionReply, decodeInfoReply } from './handshake.js';
import { decodeMetaContextReply } from './meta-context.js';

/** The first 16 bytes tell the styles apart: NBDMAGIC then IHAVEOPT (newstyle) or CLISERV (oldstyle). */
export const GREETING_PREFIX_BYTES = 16;

export type ServerGreeting =
  | { readonly style: 'fixed-newstyle'; readonly handshakeFlags: number }
  | { readonly style: 'newstyle'; readonly handshakeFlags: number }
  | { readonly style: 'oldstyle' };

/**
 * Decodes the server's greeting. Oldstyle is reported (after 16 bytes) rather than parsed: the
 * caller refuses it with a clear message. Newstyle needs the 2 handshake-flag bytes as well.
 */
export function decodeServerGreeting(bytes: Uint8Array): Decoded<ServerGreeting> {
  if (bytes.length < GREETING_PREFIX_BYTES) return need(GREETING_PREFIX_BYTES - bytes.length);
  const dv = view(bytes);
  if (dv.getBigUint64(0) !== NBDMAGIC) return fail('bad-magic', 'the peer is not an NBD server (bad greeting magic)');
  const second = dv.getBigUint64(8);
  if (second === CLISERV_MAGIC) return { kind: 'value', value: { style: 'oldstyle' }, consumedBytes: GREETING_PREFIX_BYTES };
  if (second !== IHAVEOPT) return fail('bad-magic', 'unknown NBD negotiation style');
  if (bytes.length < Size.GREETING) return need(Size.GREETING - bytes.length);
  const handshakeFlags = dv.getUint16(16);
  const style = (handshakeFlags & HandshakeFlag.FIXED_NEWSTYLE) !== 0 ? 'fixed-newstyle' : 'newstyle';
  return { kind: 'value', value: { style, handshakeFlags }, consumedBytes: Size.GREETING };
}

/** What a client does with one option reply. */
export type ClientOptionReply =
  | { readonly kind: 'ack' }
  | { readonly kind: 'server'; readonly name: string; readonly description?: string }
  | { readonly kind: 'info'; readonly info: InfoReply }
  | { readonly kind: 'meta-context'; readonly contextId: number; readonly name: string }
  | { readonly kind: 'error'; readonly replyType: number; readonly message: string }
  | { readonly kind: 'other'; readonly replyType: number };

/**
 * Classifies a decoded option reply for the option the client sent. A reply to another option,
 * or an ACK/INFO/SERVER with malformed data, breaks the protocol.
 */
export function classifyOptionReply(reply: OptionReply, sentOption: number): ClientOptionReply {
  if (reply.option !== sentOption) {
    throw new NbdProtocolError('reply-malformed', `reply to option ${reply.option} while waiting for option ${sentOption}`);
  }
  const { replyType, data } = reply;
  if (replyType >= Rep.ERR_UNSUP) return { kind: 'error', replyType, message: printable(data) };
  switch (replyType) {
    case Rep.ACK:
      if (data.length !== 0) throw new NbdProtocolError('reply-malformed', 'NBD_REP_ACK with data');
      return { kind: 'ack' };
    case Rep.SERVER:
      return { kind: 'server', ...decodeServerEntry(data) };
    case Rep.INFO: {
      const info = decodeInfoReply(data);
      if (info === undefined) throw new NbdProtocolError('reply-malformed', 'malformed NBD_REP_INFO');
      return { kind: 'info', info };
    }
    case Rep.META_CONTEXT: {
      const context = decodeMetaContextReply(data);
      if (context === undefined) throw new NbdProtocolError('reply-malformed', 'malformed NBD_REP_META_CONTEXT');
      return { kind: 'meta-context', ...context };
    }
    default:
      return { kind: 'other', replyType };
  }
}

/** NBD_REP_SERVER data: u32 name length, name, then an optional human-readable description. */
export function decodeServerEntry(data: Uint8Array): { name: string; description?: string } {
  if (data.length < 4) throw new NbdProtocolError('reply-malformed', 'NBD_REP_SERVER shorter than 4 bytes');
  const nameBytes = view(data).getUint32(0);
  if (nameBytes > data.length - 4 || nameBytes > STRING_MAX_BYTES) throw new NbdProtocolError('reply-malformed', 'NBD_REP_SERVER name length out of range');
  const name = decodeString(data.subarray(4, 4 + nameBytes));
  const rest = data.subarray(4 + nameBytes);
  const description = rest.length === 0 ? undefined : decodeString(rest.subarray(0, STRING_MAX_BYTES));
  if (name === undefined) throw new NbdProtocolError('reply-malformed', 'NBD_REP_SERVER name is not valid UTF-8');
  return description === undefined || description === '' ? { name } : { name, description };
}

/** Name of an option error reply type, for messages. */
export function optionErrorName(replyType: number): string {
  const names: Record<number, string> = {
    [Rep.ERR_UNSUP]: 'NBD_REP_ERR_UNSUP', [Rep.ERR_POLICY]: 'NBD_REP_ERR_POLICY', [Rep.ERR_INVALID]: 'NBD_REP_ERR_INVALID',
    [Rep.ERR_PLATFORM]: 'NBD_REP_ERR_PLATFORM', [Rep.ERR_TLS_REQD]: 'NBD_REP_ERR_TLS_REQD', [Rep.ERR_UNKNOWN]: 'NBD_REP_ERR_UNKNOWN',
    [Rep.ERR_SHUTDOWN]: 'NBD_REP_ERR_SHUTDOWN', [Rep.ERR_BLOCK_SIZE_REQD]: 'NBD_REP_ERR_BLOCK_SIZE_REQD', [Rep.ERR_TOO_BIG]: 'NBD_REP_ERR_TOO_BIG',
  };
  return names[replyType] ?? `option error 0x${replyType.toString(16)}`;
}

export interface ExportNameReply {
  readonly sizeBytes: number;
  readonly transmissionFlags: number;
}

/** The reply to NBD_OPT_EXPORT_NAME: u64 size, u16 flags, and 124 zeroes unless NO_ZEROES was agreed. */
export function decodeExportNameReply(bytes: Uint8Array, noZeroes: boolean): Decoded<ExportNameReply> {
  const total = Size.EXPORT_NAME_REPLY + (noZeroes ? 0 : Size.EXPORT_NAME_ZEROES);
  if (bytes.length < total) return need(total - bytes.length);
  const dv = view(bytes);
  return { kind: 'value', value: { sizeBytes: readU64(dv, 0), transmissionFlags: dv.getUint16(8) }, consumedBytes: total };
}

export interface BlockSizeLimits {
  readonly minimumBytes: number;
  readonly preferredBytes: number;
  readonly maximumBytes: number;
}

const BLOCK_MIN_MAX_BYTES = 64 * 1024;
const isPowerOfTwo = (n: number): boolean => n > 0 && (n & (n - 1)) === 0;

/**
 * Checks NBD_INFO_BLOCK_SIZE against the spec (minimum a power of two ≤ 64 KiB, preferred a power
 * of two ≥ minimum, maximum ≥ minimum and a multiple of it or 0xffffffff) and returns the maximum
 * payload a client should send: the server's maximum, capped at `capBytes`, rounded down to the minimum.
 */
export function payloadLimitFrom(limits: BlockSizeLimits, capBytes: number): number {
  const { minimumBytes: min, preferredBytes: pref, maximumBytes: max } = limits;
  if (!(isPowerOfTwo(min) && min <= BLOCK_MIN_MAX_BYTES)) throw new NbdProtocolError('reply-malformed', `bad minimum block size ${min}`);
  if (!(isPowerOfTwo(pref) && pref >= min)) throw new NbdProtocolError('reply-malformed', `bad preferred block size ${pref}`);
  if (!(max >= min && (max % min === 0 || max === 0xffffffff))) throw new NbdProtocolError('reply-malformed', `bad maximum block size ${max}`);
  const capped = Math.min(max, capBytes);
  return capped - (capped % min);
}

const lenientUtf8 = new TextDecoder('utf-8');

/** Server text (error messages, descriptions) made safe for one log line: no control characters, bounded. */
export function printable(data: Uint8Array, maxChars = 200): string {
  const text = lenientUtf8.decode(data.subarray(0, STRING_MAX_BYTES));
  // eslint-disable-next-line no-control-regex
  const flat = text.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim();
  return flat.length > maxChars ? `${flat.slice(0, maxChars)}…` : flat;
}
