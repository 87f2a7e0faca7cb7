// Block status and extended headers, client side, without sockets: the status chunk head, the
// extent collector's rules (clamp the final extent; refuse zero lengths, extents after the
// request's end or past the export's end), the 32-byte request and reply header codecs, the
// META_CONTEXT option reply, and ClientConnection over a fake socket in compact and extended mode.

import type { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import {
  ByteAccumulator, Cmd, EXTENDED_REQUEST_MAGIC, NbdProtocolError, Opt, Rep, ReplyFlag, ReplyType, encodeErrorChunk, encodeNoneChunk,
  encodeOptionReply, encodeSimpleReply, decodeOptionReply, classifyOptionReply,
} from '../src/index.js';
import { decodeExtendedReplyHeader, encodeExtendedRequest } from '../src/codec/client-extended.js';
import { ExtentCollector, STATUS_DESCRIPTORS_MAX, decodeStatusChunkHead, statusPrefixBytes } from '../src/codec/client-status.js';
import { ClientConnection, type Part, type StatusWanted } from '../src/client/connection.js';
import { RemoteError } from '../src/client/errors.js';
import { extendedHeader, extendedStatusChunk, statusChunk } from './client-fake.js';
import { FakeSocket } from './client-helpers.js';

const view = (b: Uint8Array): DataView => new DataView(b.buffer, b.byteOffset, b.byteLength);

function prefix(contextId: number, count?: number): Uint8Array {
  const b = new Uint8Array(8);
  view(b).setUint32(0, contextId);
  if (count !== undefined) view(b).setUint32(4, count);
  return b;
}

/** Descriptors as bytes: 8 (u32, u32) or 16 (u64, u64) each. */
function descriptors(list: ReadonlyArray<readonly [number, number]>, bytes: 8 | 16): Uint8Array {
  const out = new Uint8Array(list.length * bytes);
  const dv = view(out);
  list.forEach(([length, flags], i) => {
    if (bytes === 8) {
      dv.setUint32(8 * i, length);
      dv.setUint32(8 * i + 4, flags);
    } else {
      dv.setBigUint64(16 * i, BigInt(length));
      dv.setBigUint64(16 * i + 8, BigInt(flags));
    }
  });
  return out;
}

describe('status chunk head', () => {
  it('decodes compact (type 5) and extended (type 6) heads', () => {
    expect(statusPrefixBytes(ReplyType.BLOCK_STATUS)).toBe(4);
    expect(statusPrefixBytes(ReplyType.BLOCK_STATUS_EXT)).toBe(8);
    expect(decodeStatusChunkHead(ReplyType.BLOCK_STATUS, 4 + 3 * 8, prefix(9))).toEqual({ contextId: 9, descriptorCount: 3, descriptorBytes: 8 });
    expect(decodeStatusChunkHead(ReplyType.BLOCK_STATUS_EXT, 8 + 2 * 16, prefix(1, 2))).toEqual({ contextId: 1, descriptorCount: 2, descriptorBytes: 16 });
    expect(() => statusPrefixBytes(ReplyType.NONE)).toThrow(RangeError);
  });

  it('refuses lengths that are not a context id plus whole descriptors, counts that disagree, and huge chunks', () => {
    for (const payloadBytes of [0, 4, 5, 11, 13, 4 + 8 + 7]) {
      expect(() => decodeStatusChunkHead(ReplyType.BLOCK_STATUS, payloadBytes, prefix(1)), `${payloadBytes}`).toThrow(NbdProtocolError);
    }
    for (const payloadBytes of [8, 16, 23, 8 + 16 + 8]) {
      expect(() => decodeStatusChunkHead(ReplyType.BLOCK_STATUS_EXT, payloadBytes, prefix(1, 1)), `${payloadBytes}`).toThrow(NbdProtocolError);
    }
    expect(() => decodeStatusChunkHead(ReplyType.BLOCK_STATUS_EXT, 8 + 2 * 16, prefix(1, 3))).toThrow(/counts 3 descriptors but holds 2/);
    const huge = 4 + 8 * (STATUS_DESCRIPTORS_MAX + 1);
    expect(() => decodeStatusChunkHead(ReplyType.BLOCK_STATUS, huge, prefix(1))).toThrow(/descriptors/);
  });
});

describe('extent collector', () => {
  const request = { offsetBytes: 1 << 20, lengthBytes: 65536 };

  it('keeps extents from the request offset, merges equal neighbours, clamps the final extent to the request', () => {
    const c = new ExtentCollector(request, 1 << 30, 100);
    c.add(descriptors([[4096, 3], [4096, 3], [8192, 0]], 8), 8);
    c.add(descriptors([[1 << 20, 3]], 8), 8);
    expect(c.count).toBe(4);
    expect(c.extents()).toEqual([{ lengthBytes: 8192, flags: 3 }, { lengthBytes: 8192, flags: 0 }, { lengthBytes: 65536 - 16384, flags: 3 }]);
  });

  it('reads 64-bit lengths and keeps the low 32 bits of the flags', () => {
    const big = new ExtentCollector({ offsetBytes: 0, lengthBytes: 2 ** 40 }, 2 ** 41, 10);
    big.add(descriptors([[2 ** 33, 2 ** 32 + 1], [2 ** 34, 0]], 16), 16);
    expect(big.extents()).toEqual([{ lengthBytes: 2 ** 33, flags: 1 }, { lengthBytes: 2 ** 34, flags: 0 }]);
  });

  it('refuses zero lengths, extents after the request\'s end, and extents past the export\'s end', () => {
    expect(() => new ExtentCollector(request, 1 << 30, 1).add(descriptors([[0, 0]], 8), 8)).toThrow(/length 0/);
    expect(() => new ExtentCollector(request, 1 << 30, 1).add(descriptors([[65536, 0], [512, 0]], 8), 8)).toThrow(/after the end of the request/);
    expect(() => new ExtentCollector(request, 1 << 30, 1).add(descriptors([[70000, 0], [512, 0]], 8), 8)).toThrow(/after the end of the request/);
    expect(() => new ExtentCollector(request, (1 << 20) + 4096, 1).add(descriptors([[8192, 0]], 8), 8)).toThrow(/past the end of the export/);
    // A u64 length past 2^53 saturates, so it is always past the end.
    const wide = new Uint8Array(16);
    view(wide).setUint32(0, 0xffffffff);
    expect(() => new ExtentCollector(request, 1 << 30, 1).add(wide, 16)).toThrow(/past the end of the export/);
    expect(() => new ExtentCollector(request, 1 << 30, 1).add(new Uint8Array(12), 8)).toThrow(RangeError);
  });

  it('keeps at most keepMax extents (a prefix of the answer) but checks them all', () => {
    const c = new ExtentCollector({ offsetBytes: 0, lengthBytes: 1 << 20 }, 1 << 30, 2);
    c.add(descriptors([[512, 0], [512, 3], [512, 0], [512, 0]], 8), 8);
    expect(c.extents()).toEqual([{ lengthBytes: 512, flags: 0 }, { lengthBytes: 512, flags: 3 }]);
    expect(() => c.add(descriptors([[0, 0]], 8), 8)).toThrow(/length 0/);
    const none = new ExtentCollector({ offsetBytes: 0, lengthBytes: 4096 }, 1 << 30, 0);
    none.add(descriptors([[4096, 0]], 8), 8);
    expect(none.extents()).toEqual([]);
  });
});

describe('extended header codecs', () => {
  it('encodes a 32-byte request with a 64-bit length', () => {
    const b = new Uint8Array(40).fill(0xaa);
    expect(encodeExtendedRequest(b, 4, { flags: 8, type: Cmd.BLOCK_STATUS, cookieHi: 7, cookieLo: 9, offsetBytes: 2 ** 40, lengthBytes: 2 ** 33 + 5 })).toBe(32);
    const dv = view(b);
    expect(dv.getUint32(4)).toBe(EXTENDED_REQUEST_MAGIC);
    expect([dv.getUint16(8), dv.getUint16(10), dv.getUint32(12), dv.getUint32(16)]).toEqual([8, Cmd.BLOCK_STATUS, 7, 9]);
    expect([dv.getBigUint64(20), dv.getBigUint64(28)]).toEqual([2n ** 40n, 2n ** 33n + 5n]);
    expect(b[3]).toBe(0xaa);
    expect(b[36]).toBe(0xaa);
  });

  it('decodes a 32-byte reply header; asks for more bytes; names a compact header as such', () => {
    const h = extendedHeader(ReplyFlag.DONE, ReplyType.BLOCK_STATUS_EXT, { cookieHi: 1, cookieLo: 2, offsetBytes: 4096 }, 2 ** 33);
    expect(decodeExtendedReplyHeader(h)).toEqual({
      kind: 'value', consumedBytes: 32,
      value: { kind: 'structured', flags: 1, type: 6, cookieHi: 1, cookieLo: 2, offsetBytes: 4096, payloadBytes: 2 ** 33 },
    });
    expect(decodeExtendedReplyHeader(h.subarray(0, 2))).toEqual({ kind: 'need', needBytes: 2 });
    expect(decodeExtendedReplyHeader(h.subarray(0, 20))).toEqual({ kind: 'need', needBytes: 12 });
    const simple = new Uint8Array(16);
    encodeSimpleReply(simple, 0, 1, 2, 0);
    const d = decodeExtendedReplyHeader(simple);
    expect(d.kind === 'error' && d.error.message).toMatch(/compact reply header after extended headers/);
    expect(decodeExtendedReplyHeader(new Uint8Array(32)).kind).toBe('error');
    view(h).setUint32(24, 0xffffffff);
    const saturated = decodeExtendedReplyHeader(h);
    expect(saturated.kind === 'value' && saturated.value.payloadBytes).toBe(Number.MAX_SAFE_INTEGER);
  });
});

describe('NBD_REP_META_CONTEXT', () => {
  function classify(bytes: Uint8Array): ReturnType<typeof classifyOptionReply> {
    const d = decodeOptionReply(bytes, 64 * 1024);
    if (d.kind !== 'value') throw new Error('no reply');
    return classifyOptionReply(d.value, Opt.SET_META_CONTEXT);
  }

  it('classifies a context id and name; refuses a reply without a name', () => {
    const data = new Uint8Array(4 + 15);
    view(data).setUint32(0, 42);
    data.set(new TextEncoder().encode('base:allocation'), 4);
    expect(classify(encodeOptionReply(Opt.SET_META_CONTEXT, Rep.META_CONTEXT, data))).toEqual({ kind: 'meta-context', contextId: 42, name: 'base:allocation' });
    expect(() => classify(encodeOptionReply(Opt.SET_META_CONTEXT, Rep.META_CONTEXT, data.subarray(0, 4)))).toThrow(NbdProtocolError);
    expect(() => classify(encodeOptionReply(Opt.SET_META_CONTEXT, Rep.META_CONTEXT, new Uint8Array([0, 0, 0, 1, 0xff])))).toThrow(NbdProtocolError);
  });
});

// ---- ClientConnection over a fake socket ------------------------------------------------------

interface TestPart extends Part { got?: unknown }

function harness(extended: boolean): {
  socket: FakeSocket; conn: ClientConnection<TestPart>; replies: Map<TestPart, RemoteError | undefined>; downs: string[];
  ask(offsetBytes: number, lengthBytes: number, context: string): { part: TestPart; cookie: { cookieHi: number; cookieLo: number; offsetBytes: number } };
} {
  const socket = new FakeSocket();
  const replies = new Map<TestPart, RemoteError | undefined>();
  const downs: string[] = [];
  const conn = new ClientConnection<TestPart>(socket as unknown as Socket, new ByteAccumulator(1024), {
    id: 0, where: 'test', structuredReplies: true, extendedHeaders: extended, exportSizeBytes: 2 ** 40,
    metaContexts: new Map([['base:allocation', 5], ['qemu:dirty-bitmap:b', 6]]), maxRequestBytes: 1 << 20, inFlightMax: 4,
  }, {
    onReply: (part, err) => { replies.set(part, err); },
    onProgress: () => {},
    onDown: (err) => { downs.push(err.message); },
  });
  const ask = (offsetBytes: number, lengthBytes: number, context: string): ReturnType<ReturnType<typeof harness>['ask']> => {
    const part: TestPart = {
      type: Cmd.BLOCK_STATUS, flags: 0, offsetBytes, lengthBytes, payload: undefined, target: undefined, abandoned: false, what: 'status',
      status: { context, deliver: (e) => { part.got = e; } } satisfies StatusWanted,
    };
    const before = socket.written.length;
    conn.send(part);
    const req = socket.written[before]!;
    expect(req.length).toBe(extended ? 32 : 28);
    const dv = view(req);
    if (extended) expect(dv.getBigUint64(24)).toBe(BigInt(lengthBytes));
    else expect(dv.getUint32(24)).toBe(Math.min(lengthBytes, 2 ** 31)); // a status length is a hint: narrowed to fit
    return { part, cookie: { cookieHi: dv.getUint32(8), cookieLo: dv.getUint32(12), offsetBytes } };
  };
  return { socket, conn, replies, downs, ask };
}

/** Feeds bytes one at a time: every decoder must cope with any split. */
function feedBytewise(socket: FakeSocket, bytes: Uint8Array): void {
  for (let i = 0; i < bytes.length; i++) socket.emit('data', Buffer.from(bytes.subarray(i, i + 1)));
}

describe('ClientConnection: block status replies', () => {
  it('compact: both contexts answered, the asked one delivered, byte by byte', () => {
    const h = harness(false);
    const { part, cookie } = h.ask(4096, 65536, 'base:allocation');
    feedBytewise(h.socket, Buffer.concat([
      statusChunk(cookie, 6, [{ lengthBytes: 65536, flags: 1 }], false),
      statusChunk(cookie, 5, [{ lengthBytes: 512, flags: 0 }, { lengthBytes: 1 << 20, flags: 3 }], true),
    ]));
    expect(h.downs).toEqual([]);
    expect(h.replies.get(part)).toBeUndefined();
    expect(h.replies.has(part)).toBe(true);
    expect(part.got).toEqual([{ lengthBytes: 512, flags: 0 }, { lengthBytes: 65024, flags: 3 }]);
  });

  it('extended: type 6 chunks with 64-bit lengths, then a NONE chunk ends the reply', () => {
    const h = harness(true);
    const { part, cookie } = h.ask(0, 2 ** 33, 'qemu:dirty-bitmap:b');
    const none = extendedHeader(ReplyFlag.DONE, ReplyType.NONE, cookie, 0);
    feedBytewise(h.socket, Buffer.concat([extendedStatusChunk(cookie, 6, [{ lengthBytes: 2 ** 32, flags: 1 }, { lengthBytes: 2 ** 31, flags: 0 }], false), none]));
    expect(h.downs).toEqual([]);
    expect(h.replies.has(part)).toBe(true);
    expect(h.replies.get(part)).toBeUndefined();
    expect(part.got).toEqual([{ lengthBytes: 2 ** 32, flags: 1 }, { lengthBytes: 2 ** 31, flags: 0 }]);
  });

  it('compact headers narrow a long question to 2 GiB on the wire; extents are checked against that', () => {
    const h = harness(false);
    const { part, cookie } = h.ask(0, 2 ** 33, 'base:allocation');
    h.socket.emit('data', Buffer.from(statusChunk(cookie, 5, [{ lengthBytes: 2 ** 31, flags: 3 }], true)));
    expect(part.got).toEqual([{ lengthBytes: 2 ** 31, flags: 3 }]);
    const second = h.ask(0, 2 ** 33, 'base:allocation');
    h.socket.emit('data', Buffer.from(statusChunk(second.cookie, 5, [{ lengthBytes: 2 ** 31, flags: 3 }, { lengthBytes: 4096, flags: 0 }], true)));
    expect(h.downs.join('\n')).toMatch(/after the end of the request \(2147483648\)/);
  });

  it('an error chunk fails the request with its errno and keeps the connection', () => {
    const h = harness(false);
    const { part, cookie } = h.ask(0, 4096, 'base:allocation');
    const err = new Uint8Array(26);
    encodeErrorChunk(err, 0, cookie.cookieHi, cookie.cookieLo, 22);
    h.socket.emit('data', Buffer.from(err));
    expect(h.replies.get(part)?.code).toBe('EINVAL');
    expect(h.conn.alive).toBe(true);
  });

  it('a NONE-only or simple success reply holds no extents: EPROTO for the request, connection kept', () => {
    for (const reply of ['none', 'simple'] as const) {
      const h = harness(false);
      const { part, cookie } = h.ask(0, 4096, 'base:allocation');
      const b = new Uint8Array(20);
      const n = reply === 'none' ? encodeNoneChunk(b, 0, cookie.cookieHi, cookie.cookieLo) : encodeSimpleReply(b, 0, cookie.cookieHi, cookie.cookieLo, 0);
      h.socket.emit('data', Buffer.from(b.subarray(0, n)));
      expect(h.replies.get(part)?.code).toBe('EPROTO');
      expect(h.conn.alive).toBe(true);
    }
  });

  const dropped: Array<[string, boolean, (c: { cookieHi: number; cookieLo: number; offsetBytes: number }) => Uint8Array, RegExp]> = [
    ['a compact chunk under extended headers', true, (c) => statusChunk(c, 5, [{ lengthBytes: 512, flags: 0 }], true), /compact reply header/],
    ['an extended chunk type under compact headers', false, (c) => {
      const b = statusChunk(c, 5, [{ lengthBytes: 512, flags: 0 }], true);
      view(b).setUint16(6, ReplyType.BLOCK_STATUS_EXT);
      return b;
    }, /type 6 with compact headers/],
    ['an unknown context id', false, (c) => statusChunk(c, 99, [{ lengthBytes: 512, flags: 0 }], true), /context id 99/],
    ['a second chunk for one context', true, (c) => Buffer.concat([
      extendedStatusChunk(c, 5, [{ lengthBytes: 512, flags: 0 }], false), extendedStatusChunk(c, 5, [{ lengthBytes: 512, flags: 0 }], true),
    ]), /two block status chunks/],
    ['a zero-length extended extent', true, (c) => extendedStatusChunk(c, 5, [{ lengthBytes: 0, flags: 0 }], true), /length 0/],
  ];
  for (const [name, extended, reply, why] of dropped) {
    it(`drops the connection on ${name}, handing the request back`, () => {
      const h = harness(extended);
      const { part, cookie } = h.ask(0, 4096, 'base:allocation');
      h.socket.emit('data', Buffer.from(reply(cookie)));
      expect(h.conn.alive).toBe(false);
      expect(h.replies.has(part)).toBe(false);
      expect(h.downs.join('\n')).toMatch(why);
    });
  }

  it('a status chunk in reply to a READ drops the connection', () => {
    const h = harness(false);
    const target = new Uint8Array(512);
    const read: TestPart = { type: Cmd.READ, flags: 0, offsetBytes: 0, lengthBytes: 512, payload: undefined, target, abandoned: false, what: 'read' };
    h.conn.send(read);
    const dv = view(h.socket.written[0]!);
    h.socket.emit('data', Buffer.from(statusChunk({ cookieHi: dv.getUint32(8), cookieLo: dv.getUint32(12) }, 5, [{ lengthBytes: 512, flags: 0 }], true)));
    expect(h.downs.join('\n')).toMatch(/other than BLOCK_STATUS/);
  });

  it('an abandoned request\'s extents are read and dropped', () => {
    const h = harness(false);
    const { part, cookie } = h.ask(0, 4096, 'base:allocation');
    (part as { abandoned: boolean }).abandoned = true;
    h.socket.emit('data', Buffer.from(statusChunk(cookie, 5, [{ lengthBytes: 4096, flags: 0 }], true)));
    expect(part.got).toBeUndefined();
    expect(h.replies.has(part)).toBe(true);
    expect(h.conn.alive).toBe(true);
    expect(h.conn.hasContext('base:allocation')).toBe(true);
    expect(h.conn.hasContext('nope')).toBe(false);
  });

  it('DISC goes out in the agreed header size', async () => {
    for (const extended of [false, true]) {
      const h = harness(extended);
      const closing = h.conn.disconnect(10);
      expect(h.socket.written[0]!.length).toBe(extended ? 32 : 28);
      await closing;
    }
  });
});
