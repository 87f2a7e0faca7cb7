// Fuzzing of the NBD transmission codecs (issue 8): the server's request decoder and range checks,
// the reply encoders against the client's reply-header and chunk decoders, and the byte
// accumulator every parser reads from. Fixed seed in CI; FUZZ_SEED / FUZZ_RUNS override.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  BLOCK_STATUS_EXTENTS_MAX, ByteAccumulator, Cmd, CmdFlag, DATA_CHUNK_PREFIX_BYTES, EXTENDED_DATA_PREFIX_BYTES, EXTENDED_REQUEST_MAGIC, Errno,
  NbdProtocolError, REQUEST_MAGIC, ReplyFlag, ReplyType, SMALL_CHUNK_MAX_BYTES, Size, blockStatusChunkBytes, blockStatusQuery,
  checkChunkHeader, checkRequest, createMemoryExport, decodeBlockStatusPayload, decodeDataChunkOffset, decodeExtendedRequest,
  decodeReplyHeader, decodeRequest, decodeSmallChunk, encodeBlockStatusChunk, encodeChunkHeader, encodeDataChunkHeader,
  encodeErrorChunk, encodeExtendedDataHeader, encodeExtendedErrorChunk, encodeExtendedNoneChunk, encodeNoneChunk, encodeRequest,
  encodeSimpleReply, errnoName, extentsProblem, payloadLimitFrom, printable, type Decoded, type NbdExtent, type NbdRequest, type ReplyHeader,
} from '../src/index.js';
// The client's own extended-header codecs (not re-exported by the package yet): the other side of the round trips.
import { decodeExtendedReplyHeader, encodeExtendedRequest } from '../src/codec/client-extended.js';
import { applyMutations, cuts, embedded, interestingU32, mutations, randomBytes, splitAt, surround } from '../../../test/lib/fuzz-bytes.js';
import { fuzz } from '../../../test/lib/fuzz-run.js';

const u16 = fc.nat({ max: 0xffff });
const u32 = fc.nat({ max: 0xffffffff });
const u53 = fc.oneof(fc.constantFrom(0, 1, 4096, 2 ** 32 - 1, 2 ** 32, Number.MAX_SAFE_INTEGER), fc.nat({ max: Number.MAX_SAFE_INTEGER }));
const requestArb: fc.Arbitrary<NbdRequest> = fc.record({
  flags: u16, type: fc.oneof(fc.nat({ max: 8 }), u16), cookieHi: u32, cookieLo: u32, offsetBytes: u53, lengthBytes: interestingU32(),
});

function checkDecoded<T>(d: Decoded<T>, inputBytes: number, needBoundBytes: number): void {
  if (d.kind === 'need') expect(d.needBytes > 0 && inputBytes + d.needBytes <= needBoundBytes).toBe(true);
  else if (d.kind === 'value') expect(d.consumedBytes > 0 && d.consumedBytes <= inputBytes).toBe(true);
  else expect(d.error).toBeInstanceOf(NbdProtocolError);
}

describe('fuzz: NBD request decoder (server side)', () => {
  it('any bytes: a request, "need N" up to 28 bytes, or bad-magic; fields in range; no read past the input', () => {
    fuzz('nbd decodeRequest random', fc.property(randomBytes(28, 80), surround(), fc.boolean(), (bytes, s, magic) => {
      if (magic && bytes.length >= 4) new DataView(bytes.buffer, bytes.byteOffset).setUint32(0, REQUEST_MAGIC);
      const d = decodeRequest(bytes);
      expect(decodeRequest(embedded(bytes, s))).toEqual(d);
      checkDecoded(d, bytes.length, Size.REQUEST);
      if (d.kind !== 'value') return;
      const r = d.value;
      expect(d.consumedBytes).toBe(Size.REQUEST);
      expect(Number.isSafeInteger(r.offsetBytes) && r.offsetBytes >= 0).toBe(true);
      expect(r.lengthBytes >= 0 && r.lengthBytes <= 0xffffffff && r.flags <= 0xffff && r.type <= 0xffff).toBe(true);
    }), 5000);
  });

  it('decode(encode(request)) == request; offsets past 2^53 saturate and are refused by every range check', () => {
    fuzz('nbd request round trip', fc.property(requestArb, fc.nat({ max: 0x1fffff }), fc.nat({ max: 0xffffffff }), (req, hiExtra, lo) => {
      const bytes = new Uint8Array(Size.REQUEST);
      expect(encodeRequest(bytes, 0, req)).toBe(Size.REQUEST);
      expect(decodeRequest(bytes)).toEqual({ kind: 'value', value: req, consumedBytes: Size.REQUEST });
      // An offset at or above 2^53 on the wire.
      new DataView(bytes.buffer).setUint32(16, 0x200000 + hiExtra);
      new DataView(bytes.buffer).setUint32(20, lo);
      const d = decodeRequest(bytes);
      if (d.kind !== 'value') throw new Error('request did not decode');
      expect(d.value.offsetBytes).toBe(Number.MAX_SAFE_INTEGER);
      const exp = createMemoryExport('x', 1 << 16, { writeBufferBytes: 64 << 20 });
      for (const type of [Cmd.READ, Cmd.WRITE, Cmd.TRIM, Cmd.WRITE_ZEROES, Cmd.CACHE]) {
        expect(checkRequest({ ...d.value, type, flags: 0 }, exp, true)).not.toBe(0);
      }
    }), 3000);
  });

  it('checkRequest: never throws; what it lets through is inside the export and within the block size', () => {
    const exports = [
      createMemoryExport('rw', 1 << 20, { writeBufferBytes: 64 << 20 }),
      createMemoryExport('ro', 12345, { readOnly: true, blockSize: { maximumBytes: 65536 }, writeBufferBytes: 1 << 20 }),
      createMemoryExport('empty', 0, { writeBufferBytes: 64 << 20 }),
    ];
    const near = fc.oneof(fc.constantFrom(0, 1, 4095, 4096, 12345, 1 << 20, (1 << 20) + 1), u53);
    fuzz('nbd checkRequest', fc.property(requestArb, near, fc.nat({ max: 2 }), fc.boolean(), fc.nat({ max: 2 }), (req, offsetBytes, which, structured, contexts) => {
      const exp = exports[which]!;
      const r = { ...req, offsetBytes };
      const errno = checkRequest(r, exp, structured, contexts);
      if (r.type === Cmd.BLOCK_STATUS && contexts === 0) expect(errno).toBe(Errno.EINVAL);
      expect(errno === 0 || (Object.values(Errno) as number[]).includes(errno)).toBe(true);
      if (errno !== 0 || r.type === Cmd.FLUSH) return;
      expect(r.lengthBytes).toBeGreaterThan(0);
      expect(r.offsetBytes + r.lengthBytes).toBeLessThanOrEqual(exp.sizeBytes);
      if (r.type === Cmd.READ || r.type === Cmd.WRITE) expect(r.lengthBytes).toBeLessThanOrEqual(exp.blockSize.maximumBytes);
      if (r.type !== Cmd.READ && r.type !== Cmd.CACHE && r.type !== Cmd.BLOCK_STATUS) expect(exp.readOnly).toBe(false);
    }), 5000);
  });

  it('a stream of requests in any chunking decodes to the same requests', () => {
    fuzz('nbd request stream', fc.property(fc.array(requestArb, { minLength: 1, maxLength: 20 }), cuts(16), (reqs, points) => {
      const stream = new Uint8Array(reqs.length * Size.REQUEST);
      reqs.forEach((r, i) => encodeRequest(stream, i * Size.REQUEST, r));
      const acc = new ByteAccumulator(1 << 20, 8);
      const got: NbdRequest[] = [];
      for (const piece of splitAt(stream, points)) {
        acc.push(piece);
        for (;;) {
          const d = decodeRequest(acc.peek(Math.min(acc.length, Size.REQUEST)));
          if (d.kind !== 'value') break;
          got.push(d.value);
          acc.consume(d.consumedBytes);
        }
      }
      expect(got).toEqual(reqs);
      expect(acc.length).toBe(0);
    }), 1500);
  });
});

const u64Length = fc.oneof(u53, fc.constantFrom(2 ** 32, 5 * 2 ** 30, 2 ** 52));

describe('fuzz: extended headers (issue 9)', () => {
  it('32-byte requests: any bytes give a request, "need N" up to 32 bytes, or bad-magic (a compact magic at once)', () => {
    fuzz('nbd decodeExtendedRequest random', fc.property(randomBytes(32, 80), surround(), fc.constantFrom(0, 1, 2), (bytes, s, magic) => {
      if (magic > 0 && bytes.length >= 4) new DataView(bytes.buffer, bytes.byteOffset).setUint32(0, magic === 1 ? EXTENDED_REQUEST_MAGIC : REQUEST_MAGIC);
      const d = decodeExtendedRequest(bytes);
      expect(decodeExtendedRequest(embedded(bytes, s))).toEqual(d);
      checkDecoded(d, bytes.length, Size.EXTENDED_REQUEST);
      if (magic === 2 && bytes.length >= 4) expect(d.kind).toBe('error');
      if (d.kind !== 'value') return;
      expect(d.consumedBytes).toBe(Size.EXTENDED_REQUEST);
      expect(Number.isSafeInteger(d.value.offsetBytes) && Number.isSafeInteger(d.value.lengthBytes) && d.value.lengthBytes >= 0).toBe(true);
    }), 5000);
  });

  it('the client\'s extended requests decode to what it encoded, in any chunking of a stream', () => {
    const reqArb = fc.record({ flags: u16, type: u16, cookieHi: u32, cookieLo: u32, offsetBytes: u53, lengthBytes: u64Length });
    fuzz('nbd extended request stream', fc.property(fc.array(reqArb, { minLength: 1, maxLength: 12 }), cuts(12), (reqs, points) => {
      const stream = new Uint8Array(reqs.length * Size.EXTENDED_REQUEST);
      reqs.forEach((r, i) => encodeExtendedRequest(stream, i * Size.EXTENDED_REQUEST, r));
      const acc = new ByteAccumulator(1 << 20, 8);
      const got: NbdRequest[] = [];
      for (const piece of splitAt(stream, points)) {
        acc.push(piece);
        for (;;) {
          const d = decodeExtendedRequest(acc.peek(Math.min(acc.length, Size.EXTENDED_REQUEST)));
          if (d.kind !== 'value') break;
          got.push(d.value);
          acc.consume(d.consumedBytes);
        }
      }
      expect(got).toEqual(reqs);
    }), 1500);
  });

  it('extended reply headers the server encodes decode in the client to the same fields', () => {
    fuzz('nbd extended reply round trip', fc.property(u32, u32, u53, fc.nat({ max: 1 << 25 }), fc.boolean(), u32.filter((e) => e !== 0), (hi, lo, off, dataBytes, done, errno) => {
      const buf = new Uint8Array(64);
      const at = 5;
      const header = (): Record<string, unknown> => {
        const d = decodeExtendedReplyHeader(buf.subarray(at, at + Size.EXTENDED_REPLY_HEADER));
        if (d.kind !== 'value') throw new Error('extended reply did not decode');
        return { ...d.value };
      };
      expect(encodeExtendedDataHeader(buf, at, hi, lo, off, dataBytes + 1, done)).toBe(EXTENDED_DATA_PREFIX_BYTES);
      expect(header()).toMatchObject({ flags: done ? ReplyFlag.DONE : 0, type: ReplyType.OFFSET_DATA, cookieHi: hi, cookieLo: lo, offsetBytes: off, payloadBytes: 8 + dataBytes + 1 });
      expect(decodeDataChunkOffset(buf.subarray(at + Size.EXTENDED_REPLY_HEADER, at + EXTENDED_DATA_PREFIX_BYTES))).toBe(off);
      const n = encodeExtendedErrorChunk(buf, at, hi, lo, off, errno);
      const err = header();
      expect(err).toMatchObject({ flags: ReplyFlag.DONE, type: ReplyType.ERROR, offsetBytes: off, payloadBytes: 6 });
      expect(decodeSmallChunk({ kind: 'structured', flags: ReplyFlag.DONE, type: ReplyType.ERROR, cookieHi: hi, cookieLo: lo, payloadBytes: 6 },
        buf.subarray(at + Size.EXTENDED_REPLY_HEADER, at + n))).toEqual({ kind: 'error', errno, message: '' });
      encodeExtendedNoneChunk(buf, at, hi, lo, off);
      expect(header()).toMatchObject({ flags: ReplyFlag.DONE, type: ReplyType.NONE, payloadBytes: 0, offsetBytes: off });
    }), 3000);
  });
});

describe('fuzz: block status (issue 9)', () => {
  const extentArb = (maxLength: number): fc.Arbitrary<NbdExtent> => fc.record({ lengthBytes: fc.integer({ min: 1, max: maxLength }), flags: u32 });

  it('chunks the server encodes decode to the same context and extents, compact and extended', () => {
    fuzz('nbd block status round trip', fc.property(fc.boolean(), u32, fc.array(extentArb(0xffffffff), { minLength: 1, maxLength: 40 }), fc.boolean(), u32, u53,
      (extended, id, extents, done, cookie, off) => {
        const buf = new Uint8Array(3 + blockStatusChunkBytes(extents.length, extended));
        const n = encodeBlockStatusChunk(buf, 3, { cookieHi: cookie, cookieLo: cookie, offsetBytes: off }, id, extents, done, extended);
        expect(n).toBe(buf.length - 3);
        const headerBytes = extended ? Size.EXTENDED_REPLY_HEADER : Size.STRUCTURED_HEADER;
        const payload = buf.subarray(3 + headerBytes);
        expect(decodeBlockStatusPayload(payload, extended)).toEqual({ kind: 'value', value: { contextId: id, extents }, consumedBytes: payload.length });
        if (extended) {
          const h = decodeExtendedReplyHeader(buf.subarray(3, 3 + headerBytes));
          expect(h.kind === 'value' && h.value).toMatchObject({ type: ReplyType.BLOCK_STATUS_EXT, flags: done ? ReplyFlag.DONE : 0, payloadBytes: payload.length, offsetBytes: off });
        } else {
          const h = decodeReplyHeader(buf.subarray(3, 3 + headerBytes), 1 << 30);
          expect(h.kind === 'value' && h.value).toMatchObject({ kind: 'structured', type: ReplyType.BLOCK_STATUS, flags: done ? ReplyFlag.DONE : 0, payloadBytes: payload.length });
        }
      }), 2000);
  });

  it('any payload bytes: extents or NbdProtocolError, every extent nonzero', () => {
    fuzz('nbd decodeBlockStatusPayload random', fc.property(randomBytes(40, 300), fc.boolean(), (bytes, extended) => {
      const d = decodeBlockStatusPayload(bytes, extended);
      checkDecoded(d, bytes.length, bytes.length);
      if (d.kind === 'value') for (const e of d.value.extents) expect(e.lengthBytes).toBeGreaterThan(0);
    }), 3000);
  });

  it('backend answers: extentsProblem never throws, and what it accepts encodes within the request and the bounds', () => {
    const junk = fc.oneof(fc.constant(null), fc.constant(undefined), fc.integer(), fc.string(), fc.object());
    const field = fc.oneof(fc.integer({ min: -2, max: 5000 }), fc.double(), fc.constantFrom(0, 2 ** 32, 2 ** 53, Number.NaN), junk);
    const answer = fc.oneof(
      { weight: 3, arbitrary: fc.array(fc.record({ lengthBytes: fc.integer({ min: 1, max: 3000 }), flags: fc.nat({ max: 3 }) }), { maxLength: 6 }) },
      { weight: 2, arbitrary: fc.array(fc.oneof(fc.record({ lengthBytes: field, flags: field }), junk), { maxLength: 6 }) },
      { weight: 1, arbitrary: junk },
    );
    fuzz('nbd extentsProblem', fc.property(answer, fc.integer({ min: 1, max: 6000 }), fc.integer({ min: 1, max: 8 }), fc.boolean(), (extents, len, max, extended) => {
      const problem = extentsProblem(extents, len, max);
      if (problem !== undefined) return;
      const ok = extents as NbdExtent[];
      expect(ok.length >= 1 && ok.length <= max).toBe(true);
      expect(ok.reduce((sum, e) => sum + e.lengthBytes, 0)).toBeLessThanOrEqual(len);
      const buf = new Uint8Array(blockStatusChunkBytes(ok.length, extended));
      encodeBlockStatusChunk(buf, 0, { cookieHi: 0, cookieLo: 1, offsetBytes: 0 }, 1, ok, true, extended);
    }), 4000);
  });

  it('what the backend is asked: at most the request, at least one block, REQ_ONE one extent, compact within u32', () => {
    fuzz('nbd blockStatusQuery', fc.property(u16, u64Length.filter((l) => l > 0), fc.constantFrom(1, 512, 4096, 65536), fc.integer({ min: 1, max: 64 }), fc.boolean(),
      (flags, lengthBytes, minimumBytes, contexts, extended) => {
        const len = extended ? lengthBytes : Math.min(lengthBytes, 0xffffffff);
        const q = blockStatusQuery({ type: Cmd.BLOCK_STATUS, flags, cookieHi: 0, cookieLo: 0, offsetBytes: 0, lengthBytes: len }, minimumBytes, contexts, extended);
        expect(q.lengthBytes >= 1 && q.lengthBytes <= len).toBe(true);
        if (!extended) expect(q.lengthBytes).toBeLessThanOrEqual(0xffffffff);
        if (q.lengthBytes < len) expect(q.lengthBytes % minimumBytes).toBe(0);
        expect(q.extentsMax).toBe((flags & CmdFlag.REQ_ONE) !== 0 ? 1 : Math.floor(BLOCK_STATUS_EXTENTS_MAX / contexts));
        expect(q.extentsMax * contexts).toBeLessThanOrEqual(Math.max(BLOCK_STATUS_EXTENTS_MAX, contexts));
      }), 3000);
  });
});

describe('fuzz: NBD reply codecs (client side)', () => {
  it('reply headers: any bytes give a header, "need N", or an NbdProtocolError; payloads are capped', () => {
    fuzz('nbd decodeReplyHeader random', fc.property(randomBytes(20, 60), surround(), fc.constantFrom(0, 1, 2), interestingU32(), (bytes, s, magic, cap) => {
      if (magic > 0 && bytes.length >= 4) new DataView(bytes.buffer, bytes.byteOffset).setUint32(0, magic === 1 ? 0x67446698 : 0x668e33ef);
      const d = decodeReplyHeader(bytes, cap);
      expect(decodeReplyHeader(embedded(bytes, s), cap)).toEqual(d);
      checkDecoded(d, bytes.length, Size.STRUCTURED_HEADER);
      if (d.kind === 'value' && d.value.kind === 'structured') expect(d.value.payloadBytes).toBeLessThanOrEqual(cap);
    }), 5000);
  });

  it('every chunk the server encodes decodes to what was encoded', () => {
    fuzz('nbd reply round trip', fc.property(u32, u32, u53, fc.nat({ max: 1 << 25 }), fc.boolean(), u32.filter((e) => e !== 0), (hi, lo, offsetBytes, dataBytes, done, errno) => {
      const buf = new Uint8Array(64);
      const at = 3; // encoders write at an offset of a shared buffer
      const header = (n: number): ReplyHeader => {
        const d = decodeReplyHeader(buf.subarray(at, at + n), 1 << 26);
        if (d.kind !== 'value') throw new Error(`reply did not decode: ${JSON.stringify(d)}`);
        expect(d.consumedBytes).toBe(n === Size.SIMPLE_REPLY ? n : Size.STRUCTURED_HEADER);
        return d.value;
      };
      expect(header(encodeSimpleReply(buf, at, hi, lo, errno))).toEqual({ kind: 'simple', errno, cookieHi: hi, cookieLo: lo });
      encodeDataChunkHeader(buf, at, hi, lo, offsetBytes, dataBytes + 1, done);
      const data = header(DATA_CHUNK_PREFIX_BYTES);
      expect(data).toEqual({ kind: 'structured', flags: done ? ReplyFlag.DONE : 0, type: ReplyType.OFFSET_DATA, cookieHi: hi, cookieLo: lo, payloadBytes: 8 + dataBytes + 1 });
      if (data.kind === 'structured') checkChunkHeader(data);
      expect(decodeDataChunkOffset(buf.subarray(at + Size.STRUCTURED_HEADER, at + DATA_CHUNK_PREFIX_BYTES))).toBe(offsetBytes);
      const errLength = encodeErrorChunk(buf, at, hi, lo, errno);
      const err = header(errLength);
      if (err.kind !== 'structured') throw new Error('error chunk is not structured');
      checkChunkHeader(err);
      expect(decodeSmallChunk(err, buf.subarray(at + Size.STRUCTURED_HEADER, at + errLength))).toEqual({ kind: 'error', errno, message: '' });
      const none = header(encodeNoneChunk(buf, at, hi, lo));
      if (none.kind !== 'structured') throw new Error('none chunk is not structured');
      checkChunkHeader(none);
      expect(decodeSmallChunk(none, new Uint8Array(0))).toEqual({ kind: 'none' });
    }), 3000);
  });

  it('chunk headers and payloads of any shape: a chunk or NbdProtocolError, nothing else', () => {
    const typeArb = fc.oneof(fc.constantFrom(ReplyType.NONE, ReplyType.OFFSET_DATA, ReplyType.OFFSET_HOLE, ReplyType.ERROR, ReplyType.ERROR_OFFSET, 3, 5, 0x8003, 0xffff), u16);
    const chunk = fc.record({ flags: fc.oneof(fc.constantFrom(0, 1, 2, 3), u16), type: typeArb, payload: fc.oneof(randomBytes(12, 200), fc.uint8Array({ minLength: 6, maxLength: 40 }).map(withMessageLength)) });
    fuzz('nbd small chunks', fc.property(chunk, u32, ({ flags, type, payload }, cookie) => {
      const header = { kind: 'structured' as const, flags, type, cookieHi: cookie, cookieLo: cookie, payloadBytes: payload.length };
      try {
        checkChunkHeader(header);
        if (type === ReplyType.OFFSET_DATA) return;
        expect(payload.length).toBeLessThanOrEqual(SMALL_CHUNK_MAX_BYTES);
        const c = decodeSmallChunk(header, payload);
        if (c.kind === 'hole') expect(c.lengthBytes).toBeGreaterThan(0);
        if (c.kind === 'error') {
          expect(c.errno).not.toBe(0);
          expect(c.message.length).toBeLessThanOrEqual(201);
          expect(() => errnoName(c.errno)).not.toThrow();
        }
      } catch (err) {
        expect(err).toBeInstanceOf(NbdProtocolError);
      }
    }), 5000);
  });

  it('mutated error chunks: decoded or refused, never a message read past the payload', () => {
    fuzz('nbd error chunk mutations', fc.property(u32.filter((e) => e !== 0), fc.string({ maxLength: 100 }), fc.boolean(), mutations(), (errno, message, withOffset, muts) => {
      const text = new TextEncoder().encode(message);
      const payload = new Uint8Array(6 + text.length + (withOffset ? 8 : 0));
      const dv = new DataView(payload.buffer);
      dv.setUint32(0, errno);
      dv.setUint16(4, text.length);
      payload.set(text, 6);
      const mutated = applyMutations(payload, muts);
      const header = { kind: 'structured' as const, flags: ReplyFlag.DONE, type: withOffset ? ReplyType.ERROR_OFFSET : ReplyType.ERROR, cookieHi: 0, cookieLo: 0, payloadBytes: mutated.length };
      try {
        checkChunkHeader(header);
        const c = decodeSmallChunk(header, mutated);
        if (c.kind === 'error') expect(c.message.length).toBeLessThanOrEqual(Math.max(0, mutated.length - 6) + 1);
      } catch (err) {
        expect(err).toBeInstanceOf(NbdProtocolError);
      }
    }), 3000);
  });

  it('block size limits: a spec-conforming limit or NbdProtocolError; the result is a multiple of the minimum within the cap', () => {
    const size = fc.oneof(fc.constantFrom(0, 1, 512, 4096, 65536, 131072, 0xffffffff, 32 << 20), u32);
    fuzz('nbd payloadLimitFrom', fc.property(size, size, size, fc.nat({ max: 1 << 26 }), (minimumBytes, preferredBytes, maximumBytes, capBytes) => {
      try {
        const limit = payloadLimitFrom({ minimumBytes, preferredBytes, maximumBytes }, capBytes);
        expect(limit % minimumBytes).toBe(0);
        expect(limit).toBeLessThanOrEqual(Math.min(capBytes, maximumBytes));
      } catch (err) {
        expect(err).toBeInstanceOf(NbdProtocolError);
      }
    }), 3000);
  });

  it('printable: any bytes give one bounded line without control characters', () => {
    fuzz('nbd printable', fc.property(randomBytes(64, 9000), fc.integer({ min: 1, max: 300 }), (bytes, maxChars) => {
      const line = printable(bytes, maxChars);
      expect(line.length).toBeLessThanOrEqual(maxChars + 1);
      // eslint-disable-next-line no-control-regex
      expect(/[\u0000-\u001f\u007f]/.test(line)).toBe(false);
    }), 2000);
  });
});

/** Error payloads whose message length field fits the bytes that follow (so some decode cleanly). */
function withMessageLength(bytes: Uint8Array): Uint8Array {
  const out = bytes.slice();
  new DataView(out.buffer).setUint16(4, out.length - 6);
  if (out[0] === 0 && out[1] === 0 && out[2] === 0 && out[3] === 0) out[3] = 5;
  return out;
}

describe('fuzz: the byte accumulator', () => {
  type Op = { op: 'push'; bytes: Uint8Array } | { op: 'peek' | 'consume' | 'copy'; n: number };
  const op: fc.Arbitrary<Op> = fc.oneof(
    { weight: 3, arbitrary: fc.uint8Array({ maxLength: 100 }).map((bytes) => ({ op: 'push' as const, bytes })) },
    { weight: 2, arbitrary: fc.record({ op: fc.constantFrom('peek' as const, 'consume' as const, 'copy' as const), n: fc.nat({ max: 300 }) }) },
  );
  it('agrees with a plain array model under any push/peek/consume/copyTo sequence', () => {
    fuzz('nbd ByteAccumulator model', fc.property(fc.array(op, { maxLength: 80 }), fc.integer({ min: 1, max: 128 }), (ops, scratch) => {
      const acc = new ByteAccumulator(1 << 20, scratch);
      let model: number[] = [];
      for (const o of ops) {
        if (o.op === 'push') {
          acc.push(o.bytes.slice());
          model.push(...o.bytes);
        } else if (o.op === 'peek') {
          if (o.n > model.length) expect(() => acc.peek(o.n)).toThrow(RangeError);
          else expect([...acc.peek(o.n)]).toEqual(model.slice(0, o.n));
        } else if (o.op === 'consume') {
          if (o.n > model.length) expect(() => acc.consume(o.n)).toThrow(RangeError);
          else { acc.consume(o.n); model = model.slice(o.n); }
        } else {
          const target = new Uint8Array(o.n);
          const n = acc.copyTo(target);
          expect(n).toBe(Math.min(o.n, model.length));
          expect([...target.subarray(0, n)]).toEqual(model.slice(0, n));
          model = model.slice(n);
        }
        expect(acc.length).toBe(model.length);
      }
    }), 2000);
  });
});
