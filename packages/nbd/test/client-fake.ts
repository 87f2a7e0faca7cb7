// A scriptable in-process NBD server for the client's fault tests: it can speak oldstyle, refuse
// GO (so the client falls back to EXPORT_NAME), refuse structured replies, stay silent, offer meta
// contexts (answering BLOCK_STATUS with "all data"), or misbehave on chosen requests. Real peers
// prove the protocol; this proves the error paths. Also encoders for block status chunks and
// extended reply headers, for tests that script replies byte by byte.

import { type Server, type Socket, createServer } from 'node:net';
import {
  ByteAccumulator, Cmd, EXTENDED_REPLY_MAGIC, Errno, HandshakeFlag, NBDMAGIC, type NbdExtent, Opt, Rep, ReplyFlag, ReplyType, Size,
  decodeOption, decodeRequest, encodeChunkHeader, encodeDataChunkHeader, encodeErrorChunk, encodeExportNameReply, encodeGreeting,
  encodeInfoExport, encodeNoneChunk, encodeOptionError, encodeOptionReply, encodeSimpleReply, type NbdRequest,
} from '../src/index.js';

export interface FakeReply {
  /** Send these bytes instead of the normal reply. */
  readonly bytes?: Uint8Array;
  /** Then drop the connection. */
  readonly drop?: boolean;
}

export interface FakeOptions {
  readonly sizeBytes: number;
  readonly oldstyle?: boolean;
  /** Accept TCP, then say nothing. */
  readonly silent?: boolean;
  readonly structured?: boolean;
  /** false: answer GO with ERR_UNSUP so the client uses EXPORT_NAME. */
  readonly go?: boolean;
  /** Meta contexts offered to SET_META_CONTEXT (ids 1, 2, ...); absent: the option is refused with ERR_UNSUP. */
  readonly metaContexts?: readonly string[];
  /** Answers SET_META_CONTEXT with these bytes instead (replies written by the test). */
  readonly onSetMetaContext?: (queries: readonly string[]) => Uint8Array;
  /** Called for each request; return a reply to misbehave, undefined to serve it normally. */
  readonly onRequest?: (req: NbdRequest, connection: number) => FakeReply | undefined;
}

export interface Fake {
  readonly port: number;
  readonly data: Uint8Array;
  readonly connections: number;
  close(): Promise<void>;
}

export async function startFake(opts: FakeOptions): Promise<Fake> {
  const data = new Uint8Array(opts.sizeBytes);
  const sockets = new Set<Socket>();
  let connections = 0;
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    serve(socket, opts, data, connections++);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  return {
    port,
    data,
    get connections() { return connections; },
    close: () => new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    }),
  };
}

const OPTION_OF = {
  'export-name': Opt.EXPORT_NAME, abort: Opt.ABORT, list: Opt.LIST, starttls: Opt.STARTTLS, info: Opt.INFO, go: Opt.GO, 'structured-reply': Opt.STRUCTURED_REPLY,
  'extended-headers': Opt.EXTENDED_HEADERS, 'list-meta-context': Opt.LIST_META_CONTEXT, 'set-meta-context': Opt.SET_META_CONTEXT,
} as const;

function serve(socket: Socket, opts: FakeOptions, data: Uint8Array, index: number): void {
  if (opts.silent === true) return;
  if (opts.oldstyle === true) {
    const hello = new Uint8Array(152);
    const dv = new DataView(hello.buffer);
    dv.setBigUint64(0, NBDMAGIC);
    dv.setBigUint64(8, 0x00420281861253n);
    socket.write(hello);
    return;
  }
  socket.write(encodeGreeting(HandshakeFlag.FIXED_NEWSTYLE | HandshakeFlag.NO_ZEROES));
  const acc = new ByteAccumulator(64 * 1024 * 1024);
  let phase: 'flags' | 'options' | 'transmission' = 'flags';
  let structured = false;
  const selected = new Map<number, string>();
  socket.on('data', (chunk: Buffer) => {
    acc.push(chunk);
    // Bounded: each pass consumes a whole message or stops.
    for (;;) {
      if (phase === 'flags') {
        if (acc.length < 4) return;
        acc.consume(4);
        phase = 'options';
      } else if (phase === 'options') {
        const d = decodeOption(acc.peek(Math.min(acc.length, 4096)), 4096);
        if (d.kind !== 'value') return;
        acc.consume(d.consumedBytes);
        const o = d.value;
        if (o.type === 'structured-reply' && opts.structured !== false) {
          structured = true;
          socket.write(encodeOptionReply(Opt.STRUCTURED_REPLY, Rep.ACK));
        } else if (o.type === 'go' && opts.go !== false) {
          socket.write(encodeInfoExport(Opt.GO, data.length, 1 | 4 | 8 | 32 | 64));
          socket.write(encodeOptionReply(Opt.GO, Rep.ACK));
          phase = 'transmission';
        } else if (o.type === 'set-meta-context' && opts.onSetMetaContext !== undefined) {
          socket.write(opts.onSetMetaContext(o.queries));
        } else if (o.type === 'set-meta-context' && opts.metaContexts !== undefined) {
          selected.clear();
          opts.metaContexts.forEach((name, i) => {
            if (!o.queries.includes(name)) return;
            selected.set(i + 1, name);
            socket.write(metaContextReply(i + 1, name));
          });
          socket.write(encodeOptionReply(Opt.SET_META_CONTEXT, Rep.ACK));
        } else if (o.type === 'export-name') {
          socket.write(encodeExportNameReply(data.length, 1 | 4 | 8 | 32 | 64, true));
          phase = 'transmission';
        } else {
          const option = 'option' in o ? o.option : OPTION_OF[o.type];
          socket.write(encodeOptionError(option, Rep.ERR_UNSUP, 'not here'));
        }
      } else if (!request(socket, acc, opts, data, index, structured, selected)) {
        return;
      }
    }
  });
}

/** Serves one request if it has fully arrived; false when more bytes are needed. */
function request(
  socket: Socket, acc: ByteAccumulator, opts: FakeOptions, data: Uint8Array, index: number, structured: boolean, selected: ReadonlyMap<number, string>,
): boolean {
  const d = decodeRequest(acc.peek(Math.min(acc.length, Size.REQUEST)));
  if (d.kind !== 'value') return false;
  const req = d.value;
  const payloadBytes = req.type === Cmd.WRITE ? req.lengthBytes : 0;
  if (acc.length < Size.REQUEST + payloadBytes) return false;
  acc.consume(Size.REQUEST);
  if (req.type === Cmd.DISC) {
    socket.end();
    return false;
  }
  if (payloadBytes > 0) acc.copyTo(data.subarray(req.offsetBytes, req.offsetBytes + payloadBytes));
  const custom = opts.onRequest?.(req, index);
  if (custom !== undefined) {
    if (custom.bytes !== undefined) socket.write(custom.bytes);
    if (custom.drop === true) socket.destroy();
    return custom.drop !== true;
  }
  const header = new Uint8Array(64);
  if (req.type === Cmd.BLOCK_STATUS) {
    // Everything is data, one extent per selected context.
    const ids = [...selected.keys()];
    if (ids.length === 0) socket.write(errorChunk(req, Errno.EINVAL));
    ids.forEach((id, i) => socket.write(statusChunk(req, id, [{ lengthBytes: req.lengthBytes, flags: 0 }], i === ids.length - 1)));
  } else if (req.type === Cmd.READ) {
    const n = structured
      ? encodeDataChunkHeader(header, 0, req.cookieHi, req.cookieLo, req.offsetBytes, req.lengthBytes, true)
      : encodeSimpleReply(header, 0, req.cookieHi, req.cookieLo, 0);
    socket.write(header.slice(0, n));
    socket.write(data.slice(req.offsetBytes, req.offsetBytes + req.lengthBytes));
  } else {
    if (req.type === Cmd.WRITE_ZEROES || req.type === Cmd.TRIM) data.fill(0, req.offsetBytes, req.offsetBytes + req.lengthBytes);
    const n = structured ? encodeNoneChunk(header, 0, req.cookieHi, req.cookieLo) : encodeSimpleReply(header, 0, req.cookieHi, req.cookieLo, 0);
    socket.write(header.slice(0, n));
  }
  return true;
}

/** Helpers for misbehaving replies. */
export function simpleReply(req: NbdRequest, errno: number, cookieLo = req.cookieLo): Uint8Array {
  const out = new Uint8Array(Size.SIMPLE_REPLY);
  encodeSimpleReply(out, 0, req.cookieHi, cookieLo, errno);
  return out;
}

export function errorChunk(req: NbdRequest, errno: number): Uint8Array {
  const out = new Uint8Array(26);
  encodeErrorChunk(out, 0, req.cookieHi, req.cookieLo, errno);
  return out;
}

export function dataChunk(req: NbdRequest, offsetBytes: number, dataBytes: number): Uint8Array {
  const out = new Uint8Array(Size.STRUCTURED_HEADER + 8 + dataBytes);
  encodeDataChunkHeader(out, 0, req.cookieHi, req.cookieLo, offsetBytes, dataBytes, true);
  return out;
}

/** A compact BLOCK_STATUS chunk (type 5) for `req`. */
export function statusChunk(req: { cookieHi: number; cookieLo: number }, contextId: number, extents: readonly NbdExtent[], done: boolean): Uint8Array {
  const payloadBytes = 4 + 8 * extents.length;
  const out = new Uint8Array(Size.STRUCTURED_HEADER + payloadBytes);
  encodeChunkHeader(out, 0, done ? ReplyFlag.DONE : 0, ReplyType.BLOCK_STATUS, req.cookieHi, req.cookieLo, payloadBytes);
  const dv = new DataView(out.buffer);
  dv.setUint32(Size.STRUCTURED_HEADER, contextId);
  extents.forEach((e, i) => {
    dv.setUint32(Size.STRUCTURED_HEADER + 4 + 8 * i, e.lengthBytes);
    dv.setUint32(Size.STRUCTURED_HEADER + 8 + 8 * i, e.flags);
  });
  return out;
}

/** A 32-byte extended reply header (as servers send after NBD_OPT_EXTENDED_HEADERS). */
export function extendedHeader(flags: number, type: number, req: { cookieHi: number; cookieLo: number; offsetBytes: number }, payloadBytes: number): Uint8Array {
  const out = new Uint8Array(Size.EXTENDED_REPLY_HEADER);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, EXTENDED_REPLY_MAGIC);
  dv.setUint16(4, flags);
  dv.setUint16(6, type);
  dv.setUint32(8, req.cookieHi);
  dv.setUint32(12, req.cookieLo);
  dv.setBigUint64(16, BigInt(req.offsetBytes));
  dv.setBigUint64(24, BigInt(payloadBytes));
  return out;
}

/** An extended BLOCK_STATUS chunk (type 6): header, context id, count, 16-byte descriptors. */
export function extendedStatusChunk(
  req: { cookieHi: number; cookieLo: number; offsetBytes: number }, contextId: number, extents: readonly NbdExtent[], done: boolean,
): Uint8Array {
  const payloadBytes = 8 + 16 * extents.length;
  const out = new Uint8Array(Size.EXTENDED_REPLY_HEADER + payloadBytes);
  out.set(extendedHeader(done ? ReplyFlag.DONE : 0, ReplyType.BLOCK_STATUS_EXT, req, payloadBytes));
  const dv = new DataView(out.buffer);
  dv.setUint32(32, contextId);
  dv.setUint32(36, extents.length);
  extents.forEach((e, i) => {
    dv.setBigUint64(40 + 16 * i, BigInt(e.lengthBytes));
    dv.setBigUint64(48 + 16 * i, BigInt(e.flags));
  });
  return out;
}

/** An NBD_REP_META_CONTEXT reply: context id and name. */
export function metaContextReply(contextId: number, name: string): Uint8Array {
  const nameBytes = new TextEncoder().encode(name);
  const data = new Uint8Array(4 + nameBytes.length);
  new DataView(data.buffer).setUint32(0, contextId);
  data.set(nameBytes, 4);
  return encodeOptionReply(Opt.SET_META_CONTEXT, Rep.META_CONTEXT, data);
}
