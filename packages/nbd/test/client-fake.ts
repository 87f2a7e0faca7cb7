// A scriptable in-process NBD server for the client's fault tests: it can speak oldstyle, refuse
// GO (so the client falls back to EXPORT_NAME), refuse structured replies, stay silent, or
// misbehave on chosen requests. Real peers prove the protocol; this proves the error paths.

import { type Server, type Socket, createServer } from 'node:net';
import {
  ByteAccumulator, Cmd, HandshakeFlag, NBDMAGIC, Opt, Rep, Size, decodeOption, decodeRequest, encodeDataChunkHeader, encodeErrorChunk,
  encodeExportNameReply, encodeGreeting, encodeInfoExport, encodeNoneChunk, encodeOptionError, encodeOptionReply, encodeSimpleReply,
  type NbdRequest,
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
        } else if (o.type === 'export-name') {
          socket.write(encodeExportNameReply(data.length, 1 | 4 | 8 | 32 | 64, true));
          phase = 'transmission';
        } else {
          const option = 'option' in o ? o.option : OPTION_OF[o.type];
          socket.write(encodeOptionError(option, Rep.ERR_UNSUP, 'not here'));
        }
      } else if (!request(socket, acc, opts, data, index, structured)) {
        return;
      }
    }
  });
}

/** Serves one request if it has fully arrived; false when more bytes are needed. */
function request(socket: Socket, acc: ByteAccumulator, opts: FakeOptions, data: Uint8Array, index: number, structured: boolean): boolean {
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
  if (req.type === Cmd.READ) {
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
