// Pure client codecs: greeting styles, option replies, export-name replies, block-size rules,
// structured reply chunks, errno names and device info — round trips against the server-side
// encoders, malformed input → NbdProtocolError (and nothing else), on random bytes too.

import { describe, expect, it } from 'vitest';
import {
  CLISERV_MAGIC, Errno, HandshakeFlag, Info, NBDMAGIC, NbdProtocolError, Opt, Rep, type ReplyHeader, ReplyFlag, ReplyType, TransmissionFlag,
  checkChunkHeader, classifyOptionReply, decodeDataChunkOffset, decodeExportNameReply, decodeOptionReply, decodeReplyHeader,
  decodeServerEntry, decodeServerGreeting, decodeSmallChunk, deviceInfoFrom, encodeChunkHeader, encodeDataChunkHeader, encodeErrorChunk,
  encodeExportNameReply, encodeGreeting, encodeInfoBlockSize, encodeInfoExport, encodeInfoString, encodeNoneChunk, encodeOptionError,
  encodeOptionReply, encodeServerEntry, errnoName, payloadLimitFrom, printable,
} from '../src/index.js';
import { rng } from './client-helpers.js';

type Structured = Extract<ReplyHeader, { kind: 'structured' }>;

function headerOf(bytes: Uint8Array): ReplyHeader {
  const d = decodeReplyHeader(bytes, 1 << 20);
  if (d.kind !== 'value') throw new Error(`no header: ${d.kind}`);
  return d.value;
}

function structured(bytes: Uint8Array): Structured {
  const h = headerOf(bytes);
  if (h.kind !== 'structured') throw new Error('not structured');
  return h;
}

function optionReply(bytes: Uint8Array): ReturnType<typeof classifyOptionReply> {
  const d = decodeOptionReply(bytes, 64 * 1024);
  if (d.kind !== 'value') throw new Error(`no option reply: ${d.kind}`);
  return classifyOptionReply(d.value, view(bytes).getUint32(8));
}

const view = (b: Uint8Array): DataView => new DataView(b.buffer, b.byteOffset, b.byteLength);

describe('greeting', () => {
  it('tells fixed newstyle, plain newstyle and oldstyle apart', () => {
    const fixed = decodeServerGreeting(encodeGreeting(HandshakeFlag.FIXED_NEWSTYLE | HandshakeFlag.NO_ZEROES));
    expect(fixed).toEqual({ kind: 'value', value: { style: 'fixed-newstyle', handshakeFlags: 3 }, consumedBytes: 18 });
    expect(decodeServerGreeting(encodeGreeting(0))).toMatchObject({ kind: 'value', value: { style: 'newstyle' } });
    const old = new Uint8Array(16);
    view(old).setBigUint64(0, NBDMAGIC);
    view(old).setBigUint64(8, CLISERV_MAGIC);
    expect(decodeServerGreeting(old)).toMatchObject({ kind: 'value', value: { style: 'oldstyle' }, consumedBytes: 16 });
  });

  it('asks for more bytes, and rejects a peer that is not NBD', () => {
    expect(decodeServerGreeting(encodeGreeting(1).subarray(0, 10))).toEqual({ kind: 'need', needBytes: 6 });
    expect(decodeServerGreeting(encodeGreeting(1).subarray(0, 16))).toEqual({ kind: 'need', needBytes: 2 });
    const http = new TextEncoder().encode('HTTP/1.1 400 Bad Request\r\n');
    const d = decodeServerGreeting(http);
    expect(d.kind).toBe('error');
    if (d.kind === 'error') expect(d.error).toBeInstanceOf(NbdProtocolError);
  });
});

describe('option replies', () => {
  it('classifies ACK, SERVER, INFO and errors (round trips with the server encoders)', () => {
    expect(optionReply(encodeOptionReply(Opt.GO, Rep.ACK))).toEqual({ kind: 'ack' });
    expect(optionReply(encodeServerEntry(Opt.LIST, 'disk0', 'scratch'))).toEqual({ kind: 'server', name: 'disk0', description: 'scratch' });
    expect(optionReply(encodeServerEntry(Opt.LIST, ''))).toEqual({ kind: 'server', name: '' });
    expect(optionReply(encodeInfoExport(Opt.GO, 2 ** 40, 0x1ff))).toEqual({
      kind: 'info', info: { info: 'export', sizeBytes: 2 ** 40, transmissionFlags: 0x1ff },
    });
    expect(optionReply(encodeInfoBlockSize(Opt.GO, 512, 4096, 1 << 20))).toEqual({
      kind: 'info', info: { info: 'block-size', minimumBytes: 512, preferredBytes: 4096, maximumBytes: 1 << 20 },
    });
    expect(optionReply(encodeInfoString(Opt.GO, Info.DESCRIPTION, 'hi'))).toEqual({ kind: 'info', info: { info: 'description', text: 'hi' } });
    expect(optionReply(encodeOptionError(Opt.GO, Rep.ERR_UNKNOWN, 'no such\nexport'))).toEqual({
      kind: 'error', replyType: Rep.ERR_UNKNOWN, message: 'no such export',
    });
  });

  it('rejects a reply to another option, ACK with data, and malformed INFO/SERVER', () => {
    const d = decodeOptionReply(encodeOptionReply(Opt.LIST, Rep.ACK), 1024);
    if (d.kind !== 'value') throw new Error('decode');
    expect(() => classifyOptionReply(d.value, Opt.GO)).toThrow(NbdProtocolError);
    expect(() => optionReply(encodeOptionReply(Opt.GO, Rep.ACK, new Uint8Array(1)))).toThrow(NbdProtocolError);
    expect(() => optionReply(encodeOptionReply(Opt.GO, Rep.INFO, new Uint8Array(5)))).toThrow(NbdProtocolError);
    expect(() => decodeServerEntry(new Uint8Array([0, 0, 0, 9, 65]))).toThrow(NbdProtocolError);
    expect(() => decodeServerEntry(new Uint8Array(2))).toThrow(NbdProtocolError);
    expect(() => decodeServerEntry(new Uint8Array([0, 0, 0, 1, 0xff]))).toThrow(NbdProtocolError);
  });

  it('caps option reply data', () => {
    const big = encodeOptionReply(Opt.LIST, Rep.SERVER, new Uint8Array(70_000));
    expect(decodeOptionReply(big, 64 * 1024).kind).toBe('error');
  });

  it('makes server text one safe, bounded line', () => {
    expect(printable(new TextEncoder().encode('a\u0000b\r\nc\u001b[31m'))).toBe('a b c [31m');
    expect(printable(new Uint8Array(1000).fill(65))).toHaveLength(201);
  });
});

describe('NBD_OPT_EXPORT_NAME reply', () => {
  it('round-trips with and without the 124 zero bytes', () => {
    expect(decodeExportNameReply(encodeExportNameReply(1 << 30, 0x43, true), true)).toEqual({
      kind: 'value', value: { sizeBytes: 1 << 30, transmissionFlags: 0x43 }, consumedBytes: 10,
    });
    const padded = encodeExportNameReply(4096, 1, false);
    expect(padded).toHaveLength(134);
    expect(decodeExportNameReply(padded.subarray(0, 100), false)).toEqual({ kind: 'need', needBytes: 34 });
    expect(decodeExportNameReply(padded, false)).toMatchObject({ kind: 'value', consumedBytes: 134 });
  });
});

describe('block sizes and device info', () => {
  it('takes the server maximum, capped and rounded to the minimum', () => {
    expect(payloadLimitFrom({ minimumBytes: 512, preferredBytes: 4096, maximumBytes: 1 << 20 }, 32 << 20)).toBe(1 << 20);
    expect(payloadLimitFrom({ minimumBytes: 1, preferredBytes: 4096, maximumBytes: 0xffffffff }, 32 << 20)).toBe(32 << 20);
    expect(payloadLimitFrom({ minimumBytes: 4096, preferredBytes: 4096, maximumBytes: 0xffffffff }, 1_000_000)).toBe(999_424);
  });

  it('rejects constraints the spec forbids', () => {
    for (const bad of [
      { minimumBytes: 3, preferredBytes: 4096, maximumBytes: 4096 },
      { minimumBytes: 128 * 1024, preferredBytes: 128 * 1024, maximumBytes: 128 * 1024 },
      { minimumBytes: 512, preferredBytes: 256, maximumBytes: 4096 },
      { minimumBytes: 512, preferredBytes: 4096, maximumBytes: 1000 },
      { minimumBytes: 512, preferredBytes: 4096, maximumBytes: 256 },
    ]) expect(() => payloadLimitFrom(bad, 32 << 20), JSON.stringify(bad)).toThrow(NbdProtocolError);
  });

  it('reads capabilities from the transmission flags only', () => {
    const all = TransmissionFlag.HAS_FLAGS | TransmissionFlag.SEND_FLUSH | TransmissionFlag.SEND_FUA | TransmissionFlag.SEND_TRIM
      | TransmissionFlag.SEND_WRITE_ZEROES | TransmissionFlag.CAN_MULTI_CONN;
    expect(deviceInfoFrom({ sizeBytes: 1 << 20, transmissionFlags: all, blockSize: undefined, structuredReplies: true })).toEqual({
      sizeBytes: 1 << 20, blockSizeBytes: 1, maxRequestBytes: 32 << 20, readOnly: false,
      canFlush: true, canFua: true, canTrim: true, canWriteZeroes: true, canMultiConn: true, canResize: false,
    });
    const ro = deviceInfoFrom({
      sizeBytes: 4096, transmissionFlags: TransmissionFlag.HAS_FLAGS | TransmissionFlag.READ_ONLY,
      blockSize: { minimumBytes: 512, preferredBytes: 4096, maximumBytes: 65536 }, structuredReplies: false,
    });
    expect(ro).toMatchObject({ readOnly: true, canFlush: false, canTrim: false, blockSizeBytes: 512, maxRequestBytes: 65536 });
    // Without HAS_FLAGS the field means nothing.
    expect(deviceInfoFrom({ sizeBytes: 0, transmissionFlags: 0xfffe, blockSize: undefined, structuredReplies: false }).canFlush).toBe(false);
  });
});

describe('structured reply chunks', () => {
  it('decodes NONE, ERROR (with message), ERROR_OFFSET and OFFSET_HOLE', () => {
    const none = new Uint8Array(20);
    encodeNoneChunk(none, 0, 1, 2);
    const h = structured(none);
    checkChunkHeader(h);
    expect(decodeSmallChunk(h, none.subarray(20))).toEqual({ kind: 'none' });

    const err = new Uint8Array(26);
    encodeErrorChunk(err, 0, 1, 2, Errno.ENOSPC);
    expect(decodeSmallChunk(structured(err), err.subarray(20))).toEqual({ kind: 'error', errno: Errno.ENOSPC, message: '' });

    const msg = new TextEncoder().encode('disk full');
    const withOffset = new Uint8Array(20 + 6 + msg.length + 8);
    encodeChunkHeader(withOffset, 0, ReplyFlag.DONE, ReplyType.ERROR_OFFSET, 1, 2, 6 + msg.length + 8);
    view(withOffset).setUint32(20, Errno.EIO);
    view(withOffset).setUint16(24, msg.length);
    withOffset.set(msg, 26);
    view(withOffset).setUint32(26 + msg.length + 4, 8192);
    expect(decodeSmallChunk(structured(withOffset), withOffset.subarray(20))).toEqual({ kind: 'error', errno: Errno.EIO, message: 'disk full', offsetBytes: 8192 });

    const hole = new Uint8Array(32);
    encodeChunkHeader(hole, 0, 0, ReplyType.OFFSET_HOLE, 1, 2, 12);
    view(hole).setUint32(24, 4096);
    view(hole).setUint32(28, 512);
    expect(decodeSmallChunk(structured(hole), hole.subarray(20))).toEqual({ kind: 'hole', offsetBytes: 4096, lengthBytes: 512 });
  });

  it('reads the offset of an OFFSET_DATA chunk', () => {
    const data = new Uint8Array(28);
    encodeDataChunkHeader(data, 0, 1, 2, 12345, 100, true);
    const h = structured(data);
    checkChunkHeader(h);
    expect(h.payloadBytes).toBe(108);
    expect(decodeDataChunkOffset(data.subarray(20))).toBe(12345);
  });

  it('rejects malformed chunks with NbdProtocolError', () => {
    const chunk = (flags: number, type: number, payload: Uint8Array): [Structured, Uint8Array] => {
      const b = new Uint8Array(20 + payload.length);
      encodeChunkHeader(b, 0, flags, type, 1, 2, payload.length);
      b.set(payload, 20);
      return [structured(b), b.subarray(20)];
    };
    const bad: [Structured, Uint8Array][] = [
      chunk(0, ReplyType.NONE, new Uint8Array(0)), // NONE must be final
      chunk(ReplyFlag.DONE | 4, ReplyType.NONE, new Uint8Array(0)), // unknown flag
      chunk(ReplyFlag.DONE, ReplyType.OFFSET_DATA, new Uint8Array(8)), // data chunk without data
      chunk(ReplyFlag.DONE, ReplyType.OFFSET_HOLE, new Uint8Array(8)), // wrong size
      chunk(ReplyFlag.DONE, ReplyType.OFFSET_HOLE, new Uint8Array(12)), // empty hole
      chunk(ReplyFlag.DONE, ReplyType.ERROR, new Uint8Array([0, 0, 0, 5, 0, 9])), // message longer than the chunk
      chunk(ReplyFlag.DONE, ReplyType.ERROR, new Uint8Array(6)), // errno 0
      chunk(ReplyFlag.DONE, ReplyType.ERROR_OFFSET, new Uint8Array([0, 0, 0, 5, 0, 0])), // missing offset
      chunk(ReplyFlag.DONE, 77, new Uint8Array(4)), // unknown non-error type
      chunk(ReplyFlag.DONE, ReplyType.ERROR, new Uint8Array(9000)), // longer than any legal error
    ];
    for (const [h, payload] of bad) {
      expect(() => { checkChunkHeader(h); decodeSmallChunk(h, payload); }, `type ${h.type} flags ${h.flags} len ${h.payloadBytes}`).toThrow(NbdProtocolError);
    }
    // An unknown *error* type still reads as an error.
    const [h, payload] = chunk(ReplyFlag.DONE, 0x8077, new Uint8Array([0, 0, 0, 28, 0, 0]));
    expect(decodeSmallChunk(h, payload)).toEqual({ kind: 'error', errno: 28, message: '' });
  });

  it('survives random bytes: values or NbdProtocolError, nothing else', () => {
    const rand = rng(42);
    for (let i = 0; i < 2000; i++) {
      const b = new Uint8Array(Math.floor(rand() * 40));
      for (let j = 0; j < b.length; j++) b[j] = Math.floor(rand() * 256);
      if (b.length >= 8 && rand() < 0.5) view(b).setUint32(0, 0x668e33ef);
      const d = decodeReplyHeader(b, 1 << 20);
      if (d.kind === 'value' && d.value.kind === 'structured' && b.length >= 20 + Math.min(d.value.payloadBytes, 20)) {
        const h = d.value;
        try {
          checkChunkHeader(h);
          if (h.type !== ReplyType.OFFSET_DATA && b.length - 20 >= h.payloadBytes) decodeSmallChunk(h, b.subarray(20, 20 + h.payloadBytes));
        } catch (err) {
          expect(err).toBeInstanceOf(NbdProtocolError);
        }
      }
      try {
        const o = decodeOptionReply(b, 64);
        if (o.kind === 'value') classifyOptionReply(o.value, o.value.option);
      } catch (err) {
        expect(err).toBeInstanceOf(NbdProtocolError);
      }
      expect(['value', 'need', 'error']).toContain(decodeServerGreeting(b).kind);
    }
  });
});

describe('errno names', () => {
  it('maps the spec values, treats quota/too-big as ENOSPC and unknown values as EIO', () => {
    expect(errnoName(Errno.EPERM)).toBe('EPERM');
    expect(errnoName(Errno.ESHUTDOWN)).toBe('ESHUTDOWN');
    expect(errnoName(Errno.EOVERFLOW)).toBe('EOVERFLOW');
    expect(errnoName(27)).toBe('ENOSPC');
    expect(errnoName(122)).toBe('ENOSPC');
    expect(errnoName(9999)).toBe('EIO');
    expect(() => errnoName(0)).toThrow(RangeError);
  });
});
