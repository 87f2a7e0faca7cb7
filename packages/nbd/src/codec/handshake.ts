// Pure codecs for the fixed-newstyle handshake and option haggling (both directions, so a
// client can reuse them). Decoders take a contiguous prefix of the stream and return a value,
// "need N more bytes", or a typed NbdProtocolError; they never throw on bad input.

import {
  ClientFlag, IHAVEOPT, Info, NBDMAGIC, OPTION_REPLY_MAGIC, Opt, Rep, STRING_MAX_BYTES, Size,
} from '../constants.js';
import { type Decoded, fail, need } from '../errors.js';
import { decodeString, encodeString, readU64, view, writeU64 } from './bytes.js';
import { decodeMetaContextRequest } from './meta-context.js';

export type NbdOption =
  | { readonly type: 'export-name'; readonly name: string }
  | { readonly type: 'abort' }
  | { readonly type: 'list' }
  | { readonly type: 'starttls' }
  | { readonly type: 'info' | 'go'; readonly name: string; readonly infoRequests: readonly number[] }
  | { readonly type: 'structured-reply' }
  | { readonly type: 'extended-headers' }
  /** LIST/SET_META_CONTEXT: the export they are about and the client's queries (bounded). */
  | { readonly type: 'list-meta-context' | 'set-meta-context'; readonly name: string; readonly queries: readonly string[] }
  /** A known option whose data is malformed: answer ERR_INVALID and keep going. */
  | { readonly type: 'invalid'; readonly option: number; readonly reason: string }
  /** An option this codec does not model: answer ERR_UNSUP and keep going. */
  | { readonly type: 'unsupported'; readonly option: number };

export interface OptionHeader {
  readonly option: number;
  readonly dataBytes: number;
}

export interface OptionReply {
  readonly option: number;
  readonly replyType: number;
  readonly data: Uint8Array;
}

// ---- server → client --------------------------------------------------------------------

export function encodeGreeting(handshakeFlags: number): Uint8Array {
  const out = new Uint8Array(Size.GREETING);
  const dv = view(out);
  dv.setBigUint64(0, NBDMAGIC);
  dv.setBigUint64(8, IHAVEOPT);
  dv.setUint16(16, handshakeFlags);
  return out;
}

export function encodeOptionReply(option: number, replyType: number, data?: Uint8Array): Uint8Array {
  const dataBytes = data?.length ?? 0;
  const out = new Uint8Array(Size.OPTION_REPLY_HEADER + dataBytes);
  const dv = view(out);
  dv.setBigUint64(0, OPTION_REPLY_MAGIC);
  dv.setUint32(8, option);
  dv.setUint32(12, replyType);
  dv.setUint32(16, dataBytes);
  if (data !== undefined) out.set(data, Size.OPTION_REPLY_HEADER);
  return out;
}

/** An error reply; `message` is shown to a human, so it must hold no secrets. */
export function encodeOptionError(option: number, replyType: number, message: string): Uint8Array {
  if (replyType < Rep.ERR_UNSUP) throw new RangeError(`not an error reply type: ${replyType}`);
  return encodeOptionReply(option, replyType, encodeString(message).subarray(0, STRING_MAX_BYTES));
}

export function encodeServerEntry(option: number, name: string, description?: string): Uint8Array {
  const nameBytes = encodeString(name);
  const descBytes = encodeString(description ?? '');
  const data = new Uint8Array(4 + nameBytes.length + descBytes.length);
  view(data).setUint32(0, nameBytes.length);
  data.set(nameBytes, 4);
  data.set(descBytes, 4 + nameBytes.length);
  return encodeOptionReply(option, Rep.SERVER, data);
}

export function encodeInfoExport(option: number, sizeBytes: number, transmissionFlags: number): Uint8Array {
  const data = new Uint8Array(12);
  const dv = view(data);
  dv.setUint16(0, Info.EXPORT);
  writeU64(dv, 2, sizeBytes);
  dv.setUint16(10, transmissionFlags);
  return encodeOptionReply(option, Rep.INFO, data);
}

export function encodeInfoString(option: number, info: typeof Info.NAME | typeof Info.DESCRIPTION, text: string): Uint8Array {
  const textBytes = encodeString(text).subarray(0, STRING_MAX_BYTES);
  const data = new Uint8Array(2 + textBytes.length);
  view(data).setUint16(0, info);
  data.set(textBytes, 2);
  return encodeOptionReply(option, Rep.INFO, data);
}

export function encodeInfoBlockSize(option: number, minimumBytes: number, preferredBytes: number, maximumBytes: number): Uint8Array {
  const data = new Uint8Array(14);
  const dv = view(data);
  dv.setUint16(0, Info.BLOCK_SIZE);
  dv.setUint32(2, minimumBytes);
  dv.setUint32(6, preferredBytes);
  dv.setUint32(10, maximumBytes);
  return encodeOptionReply(option, Rep.INFO, data);
}

/** The reply to NBD_OPT_EXPORT_NAME: size, flags, and 124 zeroes unless NO_ZEROES was agreed. */
export function encodeExportNameReply(sizeBytes: number, transmissionFlags: number, noZeroes: boolean): Uint8Array {
  const out = new Uint8Array(Size.EXPORT_NAME_REPLY + (noZeroes ? 0 : Size.EXPORT_NAME_ZEROES));
  const dv = view(out);
  writeU64(dv, 0, sizeBytes);
  dv.setUint16(8, transmissionFlags);
  return out;
}

// ---- client → server, decoded by the server ------------------------------------------------

export function decodeClientFlags(bytes: Uint8Array, allowedFlags: number): Decoded<number> {
  if (bytes.length < Size.CLIENT_FLAGS) return need(Size.CLIENT_FLAGS - bytes.length);
  const flags = view(bytes).getUint32(0);
  if ((flags & ~allowedFlags) !== 0) return fail('bad-client-flags', `unknown client flags 0x${flags.toString(16)}`);
  return { kind: 'value', value: flags, consumedBytes: Size.CLIENT_FLAGS };
}

export function decodeOptionHeader(bytes: Uint8Array, maxDataBytes: number): Decoded<OptionHeader> {
  if (bytes.length < Size.OPTION_HEADER) return need(Size.OPTION_HEADER - bytes.length);
  const dv = view(bytes);
  if (dv.getBigUint64(0) !== IHAVEOPT) return fail('bad-magic', 'option does not start with IHAVEOPT');
  const option = dv.getUint32(8);
  const dataBytes = dv.getUint32(12);
  if (dataBytes > maxDataBytes) return fail('option-too-large', `option ${option} carries ${dataBytes} bytes (cap ${maxDataBytes})`);
  return { kind: 'value', value: { option, dataBytes }, consumedBytes: Size.OPTION_HEADER };
}

/** Decodes one whole option (header and data) from the front of `bytes`. */
export function decodeOption(bytes: Uint8Array, maxDataBytes: number): Decoded<NbdOption> {
  const header = decodeOptionHeader(bytes, maxDataBytes);
  if (header.kind !== 'value') return header;
  const total = Size.OPTION_HEADER + header.value.dataBytes;
  if (bytes.length < total) return need(total - bytes.length);
  const value = parseOptionData(header.value.option, bytes.subarray(Size.OPTION_HEADER, total));
  return { kind: 'value', value, consumedBytes: total };
}

function parseOptionData(option: number, data: Uint8Array): NbdOption {
  const invalid = (reason: string): NbdOption => ({ type: 'invalid', option, reason });
  switch (option) {
    case Opt.EXPORT_NAME: {
      const name = data.length <= STRING_MAX_BYTES ? decodeString(data) : undefined;
      return name === undefined ? invalid('export name is not a valid string') : { type: 'export-name', name };
    }
    case Opt.ABORT:
      return { type: 'abort' };
    case Opt.LIST:
      return data.length === 0 ? { type: 'list' } : invalid('NBD_OPT_LIST carries no data');
    case Opt.STARTTLS:
      return data.length === 0 ? { type: 'starttls' } : invalid('NBD_OPT_STARTTLS carries no data');
    case Opt.STRUCTURED_REPLY:
      return data.length === 0 ? { type: 'structured-reply' } : invalid('NBD_OPT_STRUCTURED_REPLY carries no data');
    case Opt.EXTENDED_HEADERS:
      return data.length === 0 ? { type: 'extended-headers' } : invalid('NBD_OPT_EXTENDED_HEADERS carries no data');
    case Opt.INFO:
    case Opt.GO:
      return parseInfoRequest(option, data);
    case Opt.LIST_META_CONTEXT:
    case Opt.SET_META_CONTEXT: {
      const request = decodeMetaContextRequest(data);
      if (request.kind === 'invalid') return invalid(request.reason);
      const type = option === Opt.LIST_META_CONTEXT ? 'list-meta-context' : 'set-meta-context';
      return { type, name: request.value.name, queries: request.value.queries };
    }
    default:
      return { type: 'unsupported', option };
  }
}

/** INFO/GO data: u32 name length, name, u16 count, count × u16 info types. */
function parseInfoRequest(option: number, data: Uint8Array): NbdOption {
  const invalid = (reason: string): NbdOption => ({ type: 'invalid', option, reason });
  if (data.length < 6) return invalid('info request too short');
  const dv = view(data);
  const nameBytes = dv.getUint32(0);
  if (nameBytes > STRING_MAX_BYTES || 4 + nameBytes + 2 > data.length) return invalid('bad name length');
  const name = decodeString(data.subarray(4, 4 + nameBytes));
  if (name === undefined) return invalid('export name is not a valid string');
  const count = dv.getUint16(4 + nameBytes);
  if (data.length !== 4 + nameBytes + 2 + 2 * count) return invalid('info request count does not match length');
  const infoRequests: number[] = [];
  for (let i = 0; i < count; i++) infoRequests.push(dv.getUint16(4 + nameBytes + 2 + 2 * i));
  return { type: option === Opt.GO ? 'go' : 'info', name, infoRequests };
}

// ---- client side: what a client sends and decodes -------------------------------------------

export interface Greeting {
  readonly handshakeFlags: number;
}

export function decodeGreeting(bytes: Uint8Array): Decoded<Greeting> {
  if (bytes.length < Size.GREETING) return need(Size.GREETING - bytes.length);
  const dv = view(bytes);
  if (dv.getBigUint64(0) !== NBDMAGIC || dv.getBigUint64(8) !== IHAVEOPT) return fail('bad-magic', 'not a newstyle NBD server');
  return { kind: 'value', value: { handshakeFlags: dv.getUint16(16) }, consumedBytes: Size.GREETING };
}

export function encodeClientFlags(flags: number = ClientFlag.FIXED_NEWSTYLE | ClientFlag.NO_ZEROES): Uint8Array {
  const out = new Uint8Array(Size.CLIENT_FLAGS);
  view(out).setUint32(0, flags);
  return out;
}

export function encodeOption(option: number, data?: Uint8Array): Uint8Array {
  const dataBytes = data?.length ?? 0;
  const out = new Uint8Array(Size.OPTION_HEADER + dataBytes);
  const dv = view(out);
  dv.setBigUint64(0, IHAVEOPT);
  dv.setUint32(8, option);
  dv.setUint32(12, dataBytes);
  if (data !== undefined) out.set(data, Size.OPTION_HEADER);
  return out;
}

export function encodeInfoOption(option: typeof Opt.INFO | typeof Opt.GO, name: string, infoRequests: readonly number[]): Uint8Array {
  const nameBytes = encodeString(name);
  const data = new Uint8Array(4 + nameBytes.length + 2 + 2 * infoRequests.length);
  const dv = view(data);
  dv.setUint32(0, nameBytes.length);
  data.set(nameBytes, 4);
  dv.setUint16(4 + nameBytes.length, infoRequests.length);
  infoRequests.forEach((info, i) => dv.setUint16(4 + nameBytes.length + 2 + 2 * i, info));
  return encodeOption(option, data);
}

export function decodeOptionReply(bytes: Uint8Array, maxDataBytes: number): Decoded<OptionReply> {
  if (bytes.length < Size.OPTION_REPLY_HEADER) return need(Size.OPTION_REPLY_HEADER - bytes.length);
  const dv = view(bytes);
  if (dv.getBigUint64(0) !== OPTION_REPLY_MAGIC) return fail('bad-reply-magic', 'bad option reply magic');
  const dataBytes = dv.getUint32(16);
  if (dataBytes > maxDataBytes) return fail('reply-malformed', `option reply of ${dataBytes} bytes`);
  const total = Size.OPTION_REPLY_HEADER + dataBytes;
  if (bytes.length < total) return need(total - bytes.length);
  const value = { option: dv.getUint32(8), replyType: dv.getUint32(12), data: bytes.subarray(Size.OPTION_REPLY_HEADER, total) };
  return { kind: 'value', value, consumedBytes: total };
}

export type InfoReply =
  | { readonly info: 'export'; readonly sizeBytes: number; readonly transmissionFlags: number }
  | { readonly info: 'name' | 'description'; readonly text: string }
  | { readonly info: 'block-size'; readonly minimumBytes: number; readonly preferredBytes: number; readonly maximumBytes: number }
  | { readonly info: 'unknown'; readonly type: number };

/** Decodes the data of an NBD_REP_INFO reply. */
export function decodeInfoReply(data: Uint8Array): InfoReply | undefined {
  if (data.length < 2) return undefined;
  const dv = view(data);
  const type = dv.getUint16(0);
  if (type === Info.EXPORT) {
    return data.length === 12 ? { info: 'export', sizeBytes: readU64(dv, 2), transmissionFlags: dv.getUint16(10) } : undefined;
  }
  if (type === Info.NAME || type === Info.DESCRIPTION) {
    const text = decodeString(data.subarray(2));
    return text === undefined ? undefined : { info: type === Info.NAME ? 'name' : 'description', text };
  }
  if (type === Info.BLOCK_SIZE) {
    if (data.length !== 14) return undefined;
    return { info: 'block-size', minimumBytes: dv.getUint32(2), preferredBytes: dv.getUint32(6), maximumBytes: dv.getUint32(10) };
  }
  return { info: 'unknown', type };
}
