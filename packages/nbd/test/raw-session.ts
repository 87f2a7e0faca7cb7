// Raw-socket sessions for the block status and extended header tests: haggle options by hand
// (structured replies, extended headers, meta contexts), send compact or 32-byte requests, and
// read replies of every shape, each read bounded by RawClient's timeout.

import {
  ClientFlag, EXTENDED_REPLY_MAGIC, EXTENDED_REQUEST_MAGIC, Opt, Rep, STRUCTURED_REPLY_MAGIC, Size, decodeMetaContextReply,
  decodeOptionReply, encodeClientFlags, encodeInfoOption, encodeMetaContextOption, encodeOption, encodeRequest, type OptionReply,
} from '../src/index.js';
import { RawClient } from './helpers.js';

export async function readOptionReply(c: RawClient): Promise<OptionReply> {
  const header = await c.read(Size.OPTION_REPLY_HEADER);
  const len = new DataView(header.buffer).getUint32(16);
  if (len > 1 << 20) throw new Error(`option reply of ${len} bytes`);
  const all = new Uint8Array(header.length + len);
  all.set(header);
  all.set(await c.read(len), header.length);
  const d = decodeOptionReply(all, 1 << 20);
  if (d.kind !== 'value') throw new Error('bad option reply');
  return d.value;
}

/** Replies to one option up to its final one (ACK or an error); bounded. */
export async function optionReplies(c: RawClient): Promise<OptionReply[]> {
  const out: OptionReply[] = [];
  for (let i = 0; i < 256; i++) {
    const r = await readOptionReply(c);
    out.push(r);
    if (r.replyType === Rep.ACK || r.replyType >= Rep.ERR_UNSUP) return out;
  }
  throw new Error('no final option reply');
}

/** The (id, name) pairs of META_CONTEXT replies. */
export function contextsOf(replies: readonly OptionReply[]): { id: number; name: string }[] {
  return replies.filter((r) => r.replyType === Rep.META_CONTEXT).map((r) => {
    const d = decodeMetaContextReply(r.data);
    if (d === undefined) throw new Error('malformed META_CONTEXT reply');
    return { id: d.contextId, name: d.name };
  });
}

export interface RawSessionOptions {
  readonly name?: string;
  readonly structured?: boolean;
  readonly extended?: boolean;
  /** SET_META_CONTEXT queries (needs structured or extended). */
  readonly contexts?: readonly string[];
}

/** A raw client in transmission on `name` with what was asked for; returns the selected contexts too. */
export async function rawSession(port: number, opts: RawSessionOptions = {}): Promise<{ c: RawClient; contexts: { id: number; name: string }[] }> {
  const name = opts.name ?? 'disk0';
  const c = await RawClient.open(port);
  await c.read(Size.GREETING);
  c.write(encodeClientFlags(ClientFlag.FIXED_NEWSTYLE | ClientFlag.NO_ZEROES));
  const ack = async (option: number): Promise<void> => {
    c.write(encodeOption(option));
    const r = await readOptionReply(c);
    if (r.replyType !== Rep.ACK) throw new Error(`option ${option} refused: ${r.replyType}`);
  };
  if (opts.extended === true) await ack(Opt.EXTENDED_HEADERS);
  else if (opts.structured === true) await ack(Opt.STRUCTURED_REPLY);
  let contexts: { id: number; name: string }[] = [];
  if (opts.contexts !== undefined) {
    c.write(encodeMetaContextOption(Opt.SET_META_CONTEXT, name, opts.contexts));
    contexts = contextsOf(await optionReplies(c));
  }
  c.write(encodeInfoOption(Opt.GO, name, []));
  const go = await optionReplies(c);
  if (go.at(-1)?.replyType !== Rep.ACK) throw new Error('GO refused');
  return { c, contexts };
}

export function compactRequest(type: number, cookie: number, offsetBytes: number, lengthBytes: number, flags = 0): Uint8Array {
  const b = new Uint8Array(Size.REQUEST);
  encodeRequest(b, 0, { type, flags, cookieHi: 0, cookieLo: cookie, offsetBytes, lengthBytes });
  return b;
}

/** A 32-byte request, encoded here on its own (not with the package's codecs) so the test is independent of them. */
export function extendedRequest(type: number, cookie: number, offsetBytes: number, lengthBytes: number | bigint, flags = 0): Uint8Array {
  const b = new Uint8Array(Size.EXTENDED_REQUEST);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, EXTENDED_REQUEST_MAGIC);
  dv.setUint16(4, flags);
  dv.setUint16(6, type);
  dv.setBigUint64(8, BigInt(cookie));
  dv.setBigUint64(16, BigInt(offsetBytes));
  dv.setBigUint64(24, BigInt(lengthBytes));
  return b;
}

export interface RawChunk {
  readonly flags: number;
  readonly type: number;
  readonly cookie: number;
  /** Extended headers only: the offset field of the reply header. */
  readonly offsetBytes?: number;
  readonly payload: Uint8Array;
}

/** One reply chunk: a 20-byte structured header, or a 32-byte extended one; payloads up to 64 MiB. */
export async function readChunk(c: RawClient, extended: boolean): Promise<RawChunk> {
  const head = await c.read(extended ? Size.EXTENDED_REPLY_HEADER : Size.STRUCTURED_HEADER);
  const dv = new DataView(head.buffer);
  const magic = dv.getUint32(0);
  if (magic !== (extended ? EXTENDED_REPLY_MAGIC : STRUCTURED_REPLY_MAGIC)) throw new Error(`reply magic 0x${magic.toString(16)}`);
  const payloadBytes = extended ? Number(dv.getBigUint64(24)) : dv.getUint32(16);
  if (payloadBytes > 64 << 20) throw new Error(`payload of ${payloadBytes} bytes`);
  return {
    flags: dv.getUint16(4), type: dv.getUint16(6), cookie: Number(dv.getBigUint64(8)),
    ...(extended ? { offsetBytes: Number(dv.getBigUint64(16)) } : {}),
    payload: await c.read(payloadBytes),
  };
}

/** Chunks up to the one flagged DONE (bounded). */
export async function readReply(c: RawClient, extended: boolean): Promise<RawChunk[]> {
  const out: RawChunk[] = [];
  for (let i = 0; i < 1024; i++) {
    const chunk = await readChunk(c, extended);
    out.push(chunk);
    if ((chunk.flags & 1) !== 0) return out;
  }
  throw new Error('no DONE chunk');
}

/** The errno of an ERROR chunk (0 for any other chunk). */
export function errnoOf(chunk: RawChunk): number {
  return chunk.type === 0x8001 ? new DataView(chunk.payload.buffer, chunk.payload.byteOffset).getUint32(0) : 0;
}

/** Extents of a block status chunk (type 5 or 6), decoded here independently of the package's codecs. */
export function extentsOf(chunk: RawChunk): { contextId: number; extents: [number, number][] } {
  const p = chunk.payload;
  const dv = new DataView(p.buffer, p.byteOffset, p.byteLength);
  const extents: [number, number][] = [];
  if (chunk.type === 5) {
    for (let at = 4; at + 8 <= p.length; at += 8) extents.push([dv.getUint32(at), dv.getUint32(at + 4)]);
  } else if (chunk.type === 6) {
    const count = dv.getUint32(4);
    if (p.length !== 8 + 16 * count) throw new Error('extended block status count disagrees with its length');
    for (let at = 8; at < p.length; at += 16) extents.push([Number(dv.getBigUint64(at)), Number(dv.getBigUint64(at + 8))]);
  } else {
    throw new Error(`not a block status chunk: type ${chunk.type}`);
  }
  return { contextId: dv.getUint32(0), extents };
}
