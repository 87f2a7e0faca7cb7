// Option haggling, client side: greeting (fixed newstyle only), client flags, STARTTLS first when
// TLS is wanted, EXTENDED_HEADERS or else STRUCTURED_REPLY, SET_META_CONTEXT when contexts are
// wanted, then GO with EXPORT and BLOCK_SIZE info requests (falling back to EXPORT_NAME only when
// the server answers GO with ERR_UNSUP). Also NBD_OPT_LIST.
// Every loop is bounded by a reply count, and the wire's deadline bounds the time.

import type { ConnectionOptions } from 'node:tls';
import { isIP } from 'node:net';
import { encodeString } from '../codec/bytes.js';
import {
  type BlockSizeLimits, type ClientOptionReply, classifyOptionReply, decodeExportNameReply, decodeServerGreeting, optionErrorName,
} from '../codec/client-handshake.js';
import { encodeMetaContextOption } from '../codec/meta-context.js';
import { decodeOptionReply, encodeClientFlags, encodeInfoOption, encodeOption } from '../codec/handshake.js';
import { ClientFlag, HandshakeFlag, Info, OPTION_DATA_MAX_BYTES, Opt, Rep, Size } from '../constants.js';
import { NbdProtocolError } from '../errors.js';
import { RemoteError, optionError, remoteError } from './errors.js';
import type { NbdClientTlsOptions, NbdExportListing } from './types.js';
import type { Wire } from './wire.js';

export interface Negotiated {
  readonly sizeBytes: number;
  readonly transmissionFlags: number;
  /** From NBD_INFO_BLOCK_SIZE; undefined when the server sent none (or EXPORT_NAME was used). */
  readonly blockSize: BlockSizeLimits | undefined;
  readonly structuredReplies: boolean;
  /** 32-byte requests and reply headers: NBD_OPT_EXTENDED_HEADERS was agreed. */
  readonly extendedHeaders: boolean;
  /** The meta contexts the server selected: name → this connection's context id. */
  readonly metaContexts: ReadonlyMap<string, number>;
  /** Why none could be selected (for messages), when the server refused. */
  readonly metaContextsRefused?: string;
}

/** A GO reply lists a handful of INFO items; more than this is a misbehaving server. */
const GO_REPLIES_MAX = 64;
/** Bounds the replies to NBD_OPT_SET_META_CONTEXT (one per context the queries match). */
const META_CONTEXT_REPLIES_MAX = 1024;
/** Bounds NBD_OPT_LIST (memory and time) against a server that never sends ACK. */
const LIST_ENTRIES_MAX = 16_384;

/** Greeting, client flags, and the TLS upgrade when asked for. Returns whether NO_ZEROES was agreed. */
export async function greet(wire: Wire, tls: NbdClientTlsOptions | undefined, host: string | undefined): Promise<{ noZeroes: boolean }> {
  const greeting = await wire.decode(decodeServerGreeting, Size.GREETING);
  if (greeting.style === 'oldstyle') {
    throw remoteError('EPROTO', 'the server speaks oldstyle NBD negotiation, which this client does not support (use a newstyle server)', wire.where);
  }
  if (greeting.style !== 'fixed-newstyle') {
    throw remoteError('EPROTO', 'the server does not support fixed newstyle NBD negotiation', wire.where);
  }
  const noZeroes = (greeting.handshakeFlags & HandshakeFlag.NO_ZEROES) !== 0;
  wire.write(encodeClientFlags(ClientFlag.FIXED_NEWSTYLE | (noZeroes ? ClientFlag.NO_ZEROES : 0)));
  if (tls !== undefined) await startTls(wire, tls, host);
  return { noZeroes };
}

async function startTls(wire: Wire, tls: NbdClientTlsOptions, host: string | undefined): Promise<void> {
  wire.write(encodeOption(Opt.STARTTLS));
  const reply = await readOptionReply(wire, Opt.STARTTLS);
  if (reply.kind === 'error') {
    const said = reply.message === '' ? '' : `: ${reply.message}`;
    throw remoteError('ETLS', `the server does not support TLS (it refused NBD_OPT_STARTTLS${said})`, wire.where);
  }
  if (reply.kind !== 'ack') throw remoteError('EPROTO', 'unexpected reply to NBD_OPT_STARTTLS', wire.where);
  await wire.startTls(tlsConnectOptions(tls, host));
  wire.phase = AFTER_TLS;
}

/** Until the first reply over TLS arrives: a server that dropped us then did not like our certificate. */
const AFTER_TLS = 'right after the TLS handshake';

/**
 * With TLS 1.3 the server checks our certificate after our side of the handshake is done;
 * GnuTLS servers (nbdkit --tls-verify-peer) then just close the connection. Say so.
 */
export function explainHandshakeFailure(err: RemoteError, wire: Wire, tls: NbdClientTlsOptions | undefined): RemoteError {
  if (wire.phase !== AFTER_TLS || err.code !== 'ECONNRESET') return err;
  const why = tls?.cert === undefined
    ? 'it requires a client certificate (set tls.cert and tls.key)'
    : 'it did not accept the client certificate';
  return remoteError('EAUTH', `the server closed the connection right after the TLS handshake: ${why}`, wire.where);
}

/** node:tls options: verification always on; SNI only for DNS names (RFC 6066 forbids IP addresses). */
export function tlsConnectOptions(tls: NbdClientTlsOptions, host: string | undefined): ConnectionOptions {
  const name = tls.servername ?? host ?? 'localhost';
  const options: ConnectionOptions = { rejectUnauthorized: true, host: name };
  if (isIP(name) === 0) options.servername = name;
  if (tls.ca !== undefined) options.ca = tls.ca;
  if (tls.cert !== undefined) options.cert = tls.cert;
  if (tls.key !== undefined) options.key = tls.key;
  return options;
}

/** What the client asks for beyond the export itself. */
export interface HandshakeWants {
  /** Meta contexts to select with NBD_OPT_SET_META_CONTEXT (none: the option is not sent). */
  readonly metaContexts: readonly string[];
  /** Try NBD_OPT_EXTENDED_HEADERS first. */
  readonly extendedHeaders: boolean;
}

const NO_WANTS: HandshakeWants = { metaContexts: [], extendedHeaders: false };

/**
 * After greet(): extended headers or structured replies, the meta contexts, then GO (or
 * EXPORT_NAME); the connection is then in transmission.
 */
export async function chooseExport(wire: Wire, exportName: string, noZeroes: boolean, wants: HandshakeWants = NO_WANTS): Promise<Negotiated> {
  const style = await replyStyle(wire, wants.extendedHeaders);
  const meta = wants.metaContexts.length === 0
    ? { selected: new Map<string, number>() }
    : style.structuredReplies
      ? await selectMetaContexts(wire, exportName, wants.metaContexts)
      : { selected: new Map<string, number>(), refused: 'the server does not support structured replies' };
  const extra = { ...style, metaContexts: meta.selected, ...(meta.refused === undefined ? {} : { metaContextsRefused: meta.refused }) };

  wire.write(encodeInfoOption(Opt.GO, exportName, [Info.EXPORT, Info.BLOCK_SIZE]));
  let exportInfo: { sizeBytes: number; transmissionFlags: number } | undefined;
  let blockSize: BlockSizeLimits | undefined;
  for (let i = 0; i < GO_REPLIES_MAX; i++) {
    const reply = await readOptionReply(wire, Opt.GO);
    if (reply.kind === 'info') {
      if (reply.info.info === 'export') exportInfo = reply.info;
      if (reply.info.info === 'block-size') blockSize = reply.info;
      continue; // NAME, DESCRIPTION and unknown items are not needed
    }
    if (reply.kind === 'ack') {
      if (exportInfo === undefined) throw remoteError('EPROTO', 'the server finished NBD_OPT_GO without NBD_INFO_EXPORT', wire.where);
      return { ...exportInfo, blockSize, ...extra };
    }
    if (reply.kind === 'error' && reply.replyType === Rep.ERR_UNSUP) return { ...(await exportNameFallback(wire, exportName, noZeroes)), ...extra };
    if (reply.kind === 'error') throw optionError(reply.replyType, reply.message, `export ${JSON.stringify(exportName)}`, wire.where);
    throw remoteError('EPROTO', `unexpected reply type ${reply.kind === 'other' ? reply.replyType : reply.kind} to NBD_OPT_GO`, wire.where);
  }
  throw remoteError('EPROTO', `more than ${GO_REPLIES_MAX} replies to NBD_OPT_GO`, wire.where);
}

/** Extended headers when wanted and offered (they imply structured replies), else structured replies if offered. */
async function replyStyle(wire: Wire, tryExtended: boolean): Promise<{ structuredReplies: boolean; extendedHeaders: boolean }> {
  if (tryExtended) {
    wire.write(encodeOption(Opt.EXTENDED_HEADERS));
    const eh = await readOptionReply(wire, Opt.EXTENDED_HEADERS);
    if (eh.kind === 'ack') return { structuredReplies: true, extendedHeaders: true };
    if (eh.kind === 'error' && eh.replyType === Rep.ERR_TLS_REQD) throw optionError(eh.replyType, eh.message, 'NBD_OPT_EXTENDED_HEADERS', wire.where);
    // Any other refusal (ERR_UNSUP from servers that predate it): fall back to compact headers.
    if (eh.kind !== 'error') throw remoteError('EPROTO', 'unexpected reply to NBD_OPT_EXTENDED_HEADERS', wire.where);
  }
  wire.write(encodeOption(Opt.STRUCTURED_REPLY));
  const sr = await readOptionReply(wire, Opt.STRUCTURED_REPLY);
  if (sr.kind === 'error' && sr.replyType === Rep.ERR_TLS_REQD) throw optionError(sr.replyType, sr.message, 'NBD_OPT_STRUCTURED_REPLY', wire.where);
  if (sr.kind !== 'ack' && sr.kind !== 'error') throw remoteError('EPROTO', 'unexpected reply to NBD_OPT_STRUCTURED_REPLY', wire.where);
  return { structuredReplies: sr.kind === 'ack', extendedHeaders: false };
}

/**
 * NBD_OPT_SET_META_CONTEXT: the contexts the server selects (name → this connection's id). A
 * refusal selects none and is not an error (servers without block status answer ERR_UNSUP).
 */
async function selectMetaContexts(wire: Wire, exportName: string, queries: readonly string[]): Promise<{ selected: Map<string, number>; refused?: string }> {
  wire.write(encodeMetaContextOption(Opt.SET_META_CONTEXT, exportName, queries));
  const selected = new Map<string, number>();
  const ids = new Set<number>();
  for (let i = 0; i <= META_CONTEXT_REPLIES_MAX; i++) {
    const reply = await readOptionReply(wire, Opt.SET_META_CONTEXT);
    if (reply.kind === 'ack') return { selected };
    if (reply.kind === 'meta-context') {
      if (selected.has(reply.name) || ids.has(reply.contextId)) {
        throw remoteError('EPROTO', `the server selected meta context ${JSON.stringify(reply.name)} (id ${reply.contextId}) twice`, wire.where);
      }
      selected.set(reply.name, reply.contextId);
      ids.add(reply.contextId);
      continue;
    }
    if (reply.kind === 'error') {
      if (reply.replyType === Rep.ERR_TLS_REQD || reply.replyType === Rep.ERR_SHUTDOWN) {
        throw optionError(reply.replyType, reply.message, 'NBD_OPT_SET_META_CONTEXT', wire.where);
      }
      const said = reply.message === '' ? optionErrorName(reply.replyType) : `${optionErrorName(reply.replyType)}: ${reply.message}`;
      return { selected: new Map(), refused: `the server refused NBD_OPT_SET_META_CONTEXT [${said}]` };
    }
    throw remoteError('EPROTO', 'unexpected reply to NBD_OPT_SET_META_CONTEXT', wire.where);
  }
  throw remoteError('EPROTO', `more than ${META_CONTEXT_REPLIES_MAX} replies to NBD_OPT_SET_META_CONTEXT`, wire.where);
}

/** Old servers: EXPORT_NAME cannot carry an error, so a closed connection means "no such export". */
async function exportNameFallback(wire: Wire, exportName: string, noZeroes: boolean): Promise<{ sizeBytes: number; transmissionFlags: number; blockSize: undefined }> {
  wire.write(encodeOption(Opt.EXPORT_NAME, encodeString(exportName)));
  try {
    const reply = await wire.decode((b) => decodeExportNameReply(b, noZeroes), Size.EXPORT_NAME_REPLY + Size.EXPORT_NAME_ZEROES);
    return { ...reply, blockSize: undefined };
  } catch (err) {
    if (err instanceof RemoteError && err.code === 'ECONNRESET') {
      throw remoteError('ENOENT', `export ${JSON.stringify(exportName)} not found (the server closed the connection on NBD_OPT_EXPORT_NAME)`, wire.where);
    }
    throw err;
  }
}

/** NBD_OPT_LIST after greet(), then NBD_OPT_ABORT. */
export async function listExports(wire: Wire): Promise<NbdExportListing[]> {
  wire.write(encodeOption(Opt.LIST));
  const exports: NbdExportListing[] = [];
  for (let i = 0; i <= LIST_ENTRIES_MAX; i++) {
    const reply = await readOptionReply(wire, Opt.LIST);
    if (reply.kind === 'ack') {
      wire.write(encodeOption(Opt.ABORT));
      return exports;
    }
    if (reply.kind === 'error') throw optionError(reply.replyType, reply.message, 'listing exports', wire.where);
    if (reply.kind !== 'server') throw remoteError('EPROTO', 'unexpected reply to NBD_OPT_LIST', wire.where);
    exports.push(reply.description === undefined ? { name: reply.name } : { name: reply.name, description: reply.description });
  }
  throw remoteError('ENOMEM', `the server listed more than ${LIST_ENTRIES_MAX} exports`, wire.where);
}

export async function readOptionReply(wire: Wire, sentOption: number): Promise<ClientOptionReply> {
  const reply = await wire.decode((b) => decodeOptionReply(b, OPTION_DATA_MAX_BYTES), Size.OPTION_REPLY_HEADER + OPTION_DATA_MAX_BYTES);
  if (wire.phase === AFTER_TLS) wire.phase = 'during the handshake (over TLS)';
  try {
    // Classified at once: the reply's data is a view that the next read may overwrite.
    return classifyOptionReply(reply, sentOption);
  } catch (err) {
    if (err instanceof NbdProtocolError) throw remoteError('EPROTO', `protocol error ${wire.phase}: ${err.message}`, wire.where);
    throw err;
  }
}
