// Pure codecs for meta contexts: the data of NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT
// (both directions) and the NBD_REP_META_CONTEXT reply. Bounded: a request names at most
// META_QUERIES_MAX queries of at most STRING_MAX_BYTES each; anything else is 'invalid'.

import { Opt, Rep, STRING_MAX_BYTES } from '../constants.js';
import { decodeString, encodeString, view } from './bytes.js';
import { encodeOption, encodeOptionReply } from './handshake.js';

/** Queries per LIST/SET option we accept; real clients send one or two. */
export const META_QUERIES_MAX = 64;

export interface MetaContextRequest {
  readonly name: string;
  readonly queries: readonly string[];
}

export type MetaContextDecoded =
  | { readonly kind: 'value'; readonly value: MetaContextRequest }
  | { readonly kind: 'invalid'; readonly reason: string };

const invalid = (reason: string): MetaContextDecoded => ({ kind: 'invalid', reason });

/** Option data: u32 export name length, name, u32 query count, count × (u32 length, query). */
export function decodeMetaContextRequest(data: Uint8Array): MetaContextDecoded {
  const dv = view(data);
  if (data.length < 8) return invalid('meta context request too short');
  const nameBytes = dv.getUint32(0);
  if (nameBytes > STRING_MAX_BYTES || 4 + nameBytes + 4 > data.length) return invalid('bad export name length');
  const name = decodeString(data.subarray(4, 4 + nameBytes));
  if (name === undefined) return invalid('export name is not a valid string');
  let at = 4 + nameBytes;
  const count = dv.getUint32(at);
  at += 4;
  if (count > META_QUERIES_MAX) return invalid(`${count} queries (at most ${META_QUERIES_MAX})`);
  if (count * 4 > data.length - at) return invalid('query count does not match length');
  const queries: string[] = [];
  // Bounded by META_QUERIES_MAX.
  for (let i = 0; i < count; i++) {
    if (at + 4 > data.length) return invalid('query count does not match length');
    const queryBytes = dv.getUint32(at);
    at += 4;
    if (queryBytes > STRING_MAX_BYTES || at + queryBytes > data.length) return invalid(`bad length of query ${i}`);
    const query = decodeString(data.subarray(at, at + queryBytes));
    if (query === undefined) return invalid(`query ${i} is not a valid string`);
    queries.push(query);
    at += queryBytes;
  }
  if (at !== data.length) return invalid('trailing bytes after the queries');
  return { kind: 'value', value: { name, queries } };
}

/** Client side: the whole LIST/SET_META_CONTEXT option (header included). */
export function encodeMetaContextOption(
  option: typeof Opt.LIST_META_CONTEXT | typeof Opt.SET_META_CONTEXT, name: string, queries: readonly string[],
): Uint8Array {
  const nameBytes = encodeString(name);
  const queryBytes = queries.map((q) => encodeString(q));
  const data = new Uint8Array(4 + nameBytes.length + 4 + queryBytes.reduce((sum, q) => sum + 4 + q.length, 0));
  const dv = view(data);
  dv.setUint32(0, nameBytes.length);
  data.set(nameBytes, 4);
  let at = 4 + nameBytes.length;
  dv.setUint32(at, queryBytes.length);
  at += 4;
  for (const q of queryBytes) {
    dv.setUint32(at, q.length);
    data.set(q, at + 4);
    at += 4 + q.length;
  }
  return encodeOption(option, data);
}

/** NBD_REP_META_CONTEXT: u32 context id, then the context's name. */
export function encodeMetaContextReply(option: number, contextId: number, name: string): Uint8Array {
  const nameBytes = encodeString(name);
  if (nameBytes.length > STRING_MAX_BYTES) throw new RangeError('meta context name above 4096 bytes');
  const data = new Uint8Array(4 + nameBytes.length);
  view(data).setUint32(0, contextId);
  data.set(nameBytes, 4);
  return encodeOptionReply(option, Rep.META_CONTEXT, data);
}

export interface MetaContextReply {
  readonly contextId: number;
  readonly name: string;
}

/** Client side: the data of an NBD_REP_META_CONTEXT reply; undefined when malformed. */
export function decodeMetaContextReply(data: Uint8Array): MetaContextReply | undefined {
  if (data.length < 5 || data.length > 4 + STRING_MAX_BYTES) return undefined;
  const name = decodeString(data.subarray(4));
  return name === undefined ? undefined : { contextId: view(data).getUint32(0), name };
}
