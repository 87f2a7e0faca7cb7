import { describe, expect, it } from 'vitest';
import {
  ByteAccumulator, Cmd, CmdFlag, Errno, IHAVEOPT, Info, NBDMAGIC, Opt, Rep, ReplyFlag, ReplyType, ServerHandshake,
  SIMPLE_REPLY_MAGIC, STRUCTURED_REPLY_MAGIC, Size, TransmissionFlag, checkRequest, createMemoryExport, createMemoryProvider,
  decodeClientFlags, decodeGreeting, decodeInfoReply, decodeOption, decodeOptionReply, decodeReplyHeader, decodeRequest,
  encodeClientFlags, encodeDataChunkHeader, encodeErrorChunk, encodeExportNameReply, encodeGreeting, encodeInfoOption,
  encodeNoneChunk, encodeOption, encodeRequest, encodeSimpleReply, type NbdRequest,
} from '../src/index.js';

const enc = new TextEncoder();

function request(type: number, offsetBytes: number, lengthBytes: number, flags = 0): NbdRequest {
  return { type, flags, cookieHi: 0xdeadbeef, cookieLo: 0x01020304, offsetBytes, lengthBytes };
}

describe('handshake codec', () => {
  it('encodes the greeting and a client can decode it', () => {
    const bytes = encodeGreeting(3);
    expect(bytes.length).toBe(18);
    const dv = new DataView(bytes.buffer);
    expect(dv.getBigUint64(0)).toBe(NBDMAGIC);
    expect(dv.getBigUint64(8)).toBe(IHAVEOPT);
    const decoded = decodeGreeting(bytes);
    expect(decoded).toMatchObject({ kind: 'value', value: { handshakeFlags: 3 }, consumedBytes: 18 });
    expect(decodeGreeting(bytes.subarray(0, 5))).toEqual({ kind: 'need', needBytes: 13 });
  });

  it('rejects unknown client flags with a typed error', () => {
    expect(decodeClientFlags(encodeClientFlags(3), 3)).toMatchObject({ kind: 'value', value: 3 });
    const bad = decodeClientFlags(encodeClientFlags(0x80), 3);
    expect(bad.kind).toBe('error');
    if (bad.kind === 'error') expect(bad.error.code).toBe('bad-client-flags');
    expect(decodeClientFlags(new Uint8Array(2), 3)).toEqual({ kind: 'need', needBytes: 2 });
  });

  it('parses options incrementally, byte by byte', () => {
    const bytes = encodeInfoOption(Opt.GO, 'disk0', [Info.NAME, Info.BLOCK_SIZE]);
    for (let n = 0; n < bytes.length; n++) {
      const partial = decodeOption(bytes.subarray(0, n), 65536);
      expect(partial.kind).toBe('need');
      if (partial.kind === 'need') expect(partial.needBytes).toBeGreaterThan(0);
    }
    expect(decodeOption(bytes, 65536)).toEqual({
      kind: 'value', consumedBytes: bytes.length, value: { type: 'go', name: 'disk0', infoRequests: [Info.NAME, Info.BLOCK_SIZE] },
    });
  });

  it('maps each option to a typed message', () => {
    const decode = (b: Uint8Array) => { const d = decodeOption(b, 65536); return d.kind === 'value' ? d.value : d; };
    expect(decode(encodeOption(Opt.EXPORT_NAME, enc.encode('x')))).toEqual({ type: 'export-name', name: 'x' });
    expect(decode(encodeOption(Opt.LIST))).toEqual({ type: 'list' });
    expect(decode(encodeOption(Opt.ABORT))).toEqual({ type: 'abort' });
    expect(decode(encodeOption(Opt.STARTTLS))).toEqual({ type: 'starttls' });
    expect(decode(encodeOption(Opt.STRUCTURED_REPLY))).toEqual({ type: 'structured-reply' });
    expect(decode(encodeOption(99))).toEqual({ type: 'unsupported', option: 99 });
    expect(decode(encodeOption(Opt.SET_META_CONTEXT, new Uint8Array(8)))).toEqual({ type: 'set-meta-context', name: '', queries: [] });
    expect(decode(encodeOption(Opt.EXTENDED_HEADERS))).toEqual({ type: 'extended-headers' });
  });

  it('flags malformed known options as invalid (connection survives) and bad framing as errors', () => {
    const decode = (b: Uint8Array) => { const d = decodeOption(b, 65536); return d.kind === 'value' ? d.value : d; };
    expect(decode(encodeOption(Opt.LIST, new Uint8Array(1)))).toMatchObject({ type: 'invalid', option: Opt.LIST });
    const shortGo = encodeInfoOption(Opt.GO, 'disk0', [Info.NAME]).subarray(16, 16 + 9);
    expect(decode(encodeOption(Opt.GO, shortGo))).toMatchObject({ type: 'invalid', option: Opt.GO });
    const lyingName = new Uint8Array(6);
    new DataView(lyingName.buffer).setUint32(0, 4000);
    expect(decode(encodeOption(Opt.INFO, lyingName))).toMatchObject({ type: 'invalid' });
    expect(decode(encodeOption(Opt.EXPORT_NAME, new Uint8Array([0x61, 0, 0x62])))).toMatchObject({ type: 'invalid' });
    expect(decode(encodeOption(Opt.EXPORT_NAME, new Uint8Array([0xff, 0xfe])))).toMatchObject({ type: 'invalid' });

    const badMagic = encodeOption(Opt.LIST);
    badMagic[0] = 0;
    expect(decode(badMagic)).toMatchObject({ kind: 'error', error: { code: 'bad-magic' } });
  });

  it('refuses oversized option lengths before any data arrives', () => {
    const header = encodeOption(Opt.EXPORT_NAME).slice();
    new DataView(header.buffer).setUint32(12, 0xffffffff);
    const d = decodeOption(header, 65536);
    expect(d).toMatchObject({ kind: 'error', error: { code: 'option-too-large', name: 'NbdProtocolError' } });
  });

  it('encodes option replies, info replies and the EXPORT_NAME reply', () => {
    const reply = decodeOptionReply(new ServerReplyProbe().go('disk0').output[0] as Uint8Array, 65536);
    expect(reply.kind).toBe('value');
    if (reply.kind === 'value') {
      expect(reply.value.replyType).toBe(Rep.INFO);
      expect(decodeInfoReply(reply.value.data)).toMatchObject({ info: 'export', sizeBytes: 1 << 20 });
    }
    expect(encodeExportNameReply(4096, 1, false).length).toBe(134);
    expect(encodeExportNameReply(4096, 1, true).length).toBe(10);
  });
});

/** Drives the server's option state machine without a socket. */
class ServerReplyProbe {
  readonly provider = createMemoryProvider([createMemoryExport('disk0', 1 << 20, { description: 'd' })]);
  readonly machine = new ServerHandshake({ provider: this.provider, optionDataMaxBytes: 65536, optionsMax: 16, tls: 'none' });
  readonly acc = new ByteAccumulator(1 << 20);
  output: Uint8Array[] = [];

  feed(bytes: Uint8Array) {
    this.acc.push(bytes);
    const step = this.machine.advance(this.acc);
    this.output = this.machine.output.splice(0);
    return step;
  }

  go(name: string): this {
    this.feed(encodeClientFlags());
    this.feed(encodeInfoOption(Opt.GO, name, []));
    return this;
  }
}

function replyTypes(output: readonly Uint8Array[]): number[] {
  return output.map((b) => new DataView(b.buffer, b.byteOffset).getUint32(12));
}

describe('server handshake state machine', () => {
  it('answers LIST, unknown options, STARTTLS, then GO with the export info', () => {
    const p = new ServerReplyProbe();
    expect(p.feed(encodeClientFlags()).kind).toBe('need-more');
    p.feed(encodeOption(Opt.LIST));
    expect(replyTypes(p.output)).toEqual([Rep.SERVER, Rep.ACK]);
    p.feed(encodeOption(77));
    expect(replyTypes(p.output)).toEqual([Rep.ERR_UNSUP]);
    p.feed(encodeOption(Opt.STARTTLS));
    expect(replyTypes(p.output)).toEqual([Rep.ERR_UNSUP]);
    p.feed(encodeOption(Opt.STRUCTURED_REPLY));
    expect(replyTypes(p.output)).toEqual([Rep.ACK]);
    p.feed(encodeInfoOption(Opt.INFO, 'missing', []));
    expect(replyTypes(p.output)).toEqual([Rep.ERR_UNKNOWN]);
    const step = p.feed(encodeInfoOption(Opt.GO, '', [Info.NAME, Info.DESCRIPTION, Info.BLOCK_SIZE]));
    expect(replyTypes(p.output)).toEqual([Rep.INFO, Rep.INFO, Rep.INFO, Rep.INFO, Rep.ACK]);
    expect(step.kind).toBe('transmission');
    if (step.kind === 'transmission') {
      expect(step.setup.structuredReplies).toBe(true);
      expect(step.setup.transmissionFlags & TransmissionFlag.CAN_MULTI_CONN).toBeTruthy();
      expect(step.setup.transmissionFlags & TransmissionFlag.SEND_DF).toBeTruthy();
    }
  });

  it('handles options split across arbitrary chunk boundaries (and sends the 124 zeroes without NO_ZEROES)', () => {
    const p = new ServerReplyProbe();
    const all = [encodeClientFlags(1), encodeOption(Opt.LIST), encodeOption(Opt.EXPORT_NAME, enc.encode('disk0'))];
    const stream = new Uint8Array(all.reduce((n, b) => n + b.length, 0));
    let at = 0;
    for (const b of all) { stream.set(b, at); at += b.length; }
    let last;
    const seen: Uint8Array[] = [];
    for (let i = 0; i < stream.length; i += 3) {
      last = p.feed(stream.subarray(i, Math.min(i + 3, stream.length)));
      seen.push(...p.output);
    }
    expect(last?.kind).toBe('transmission');
    expect(seen.at(-1)?.length).toBe(Size.EXPORT_NAME_REPLY + Size.EXPORT_NAME_ZEROES);
  });

  it('closes on EXPORT_NAME of an unknown export, ABORT (after ack) and garbage', () => {
    expect(new ServerReplyProbe().feed(new Uint8Array([...encodeClientFlags(), ...encodeOption(Opt.EXPORT_NAME, enc.encode('zz'))])).kind).toBe('close');
    const abort = new ServerReplyProbe();
    abort.feed(encodeClientFlags());
    expect(abort.feed(encodeOption(Opt.ABORT)).kind).toBe('close');
    expect(replyTypes(abort.output)).toEqual([Rep.ACK]);
    const garbage = new ServerReplyProbe();
    expect(garbage.feed(enc.encode('GET / HTTP/1.1\r\nHost: x\r\n\r\n')).kind).toBe('close');
  });
});

describe('transmission codec', () => {
  it('round-trips a request and parses it byte by byte', () => {
    const bytes = new Uint8Array(28);
    const req = request(Cmd.WRITE, 2 ** 40 + 5, 65536, CmdFlag.FUA);
    expect(encodeRequest(bytes, 0, req)).toBe(28);
    for (let n = 0; n < 28; n++) expect(decodeRequest(bytes.subarray(0, n))).toEqual({ kind: 'need', needBytes: 28 - n });
    expect(decodeRequest(bytes)).toEqual({ kind: 'value', value: req, consumedBytes: 28 });
  });

  it('rejects bad magic and saturates offsets beyond 2^53', () => {
    const bytes = new Uint8Array(28);
    encodeRequest(bytes, 0, request(Cmd.READ, 0, 1));
    new DataView(bytes.buffer).setUint32(16, 0xffffffff);
    const huge = decodeRequest(bytes);
    expect(huge.kind === 'value' && huge.value.offsetBytes).toBe(Number.MAX_SAFE_INTEGER);
    bytes[0] = 0x99;
    expect(decodeRequest(bytes)).toMatchObject({ kind: 'error', error: { code: 'bad-magic' } });
  });

  it('encodes simple and structured replies that a client decodes', () => {
    const slab = new Uint8Array(64);
    expect(encodeSimpleReply(slab, 4, 1, 2, Errno.EIO)).toBe(16);
    expect(new DataView(slab.buffer).getUint32(4)).toBe(SIMPLE_REPLY_MAGIC);
    expect(decodeReplyHeader(slab.subarray(4), 1 << 20)).toMatchObject({ kind: 'value', value: { kind: 'simple', errno: 5, cookieHi: 1, cookieLo: 2 } });

    expect(encodeDataChunkHeader(slab, 0, 7, 8, 4096, 512, true)).toBe(28);
    expect(new DataView(slab.buffer).getUint32(0)).toBe(STRUCTURED_REPLY_MAGIC);
    expect(decodeReplyHeader(slab, 1 << 20)).toMatchObject({
      kind: 'value', value: { kind: 'structured', flags: ReplyFlag.DONE, type: ReplyType.OFFSET_DATA, payloadBytes: 520 },
    });
    expect(encodeErrorChunk(slab, 0, 7, 8, Errno.EINVAL)).toBe(26);
    expect(decodeReplyHeader(slab, 1 << 20)).toMatchObject({ value: { type: ReplyType.ERROR, payloadBytes: 6 } });
    expect(new DataView(slab.buffer).getUint32(20)).toBe(Errno.EINVAL);
    expect(encodeNoneChunk(slab, 0, 7, 8)).toBe(20);
    expect(decodeReplyHeader(slab, 1 << 20)).toMatchObject({ value: { type: ReplyType.NONE, flags: ReplyFlag.DONE, payloadBytes: 0 } });
    slab[0] = 0;
    expect(decodeReplyHeader(slab, 1 << 20)).toMatchObject({ kind: 'error', error: { code: 'bad-reply-magic' } });
  });

  it('checks ranges, sizes and permissions per proto.md', () => {
    const exp = createMemoryExport('d', 1 << 20, { blockSize: { maximumBytes: 65536 } });
    const ro = createMemoryExport('r', 1 << 20, { readOnly: true, blockSize: { maximumBytes: 65536 } });
    expect(checkRequest(request(Cmd.READ, 0, 4096), exp, false)).toBe(0);
    expect(checkRequest(request(Cmd.READ, (1 << 20) - 1, 2), exp, false)).toBe(Errno.EINVAL);
    expect(checkRequest(request(Cmd.READ, 0, 0), exp, false)).toBe(Errno.EINVAL);
    expect(checkRequest(request(Cmd.READ, 0, 65537), exp, true)).toBe(Errno.EOVERFLOW);
    expect(checkRequest(request(Cmd.READ, 0, 1, CmdFlag.DF), exp, false)).toBe(Errno.EINVAL);
    expect(checkRequest(request(Cmd.WRITE, (1 << 20) - 1, 2), exp, false)).toBe(Errno.ENOSPC);
    expect(checkRequest(request(Cmd.WRITE, 0, 65537), exp, false)).toBe(Errno.EOVERFLOW);
    expect(checkRequest(request(Cmd.WRITE, 0, 1), ro, false)).toBe(Errno.EPERM);
    expect(checkRequest(request(Cmd.TRIM, 0, 1 << 20), exp, false)).toBe(0); // beyond max block size is fine
    expect(checkRequest(request(Cmd.WRITE_ZEROES, 0, 1, CmdFlag.FAST_ZERO), exp, false)).toBe(Errno.ENOTSUP);
    expect(checkRequest(request(Cmd.BLOCK_STATUS, 0, 1), exp, true)).toBe(Errno.EINVAL);
    expect(checkRequest(request(42, 0, 1), exp, false)).toBe(Errno.EINVAL);
    expect(checkRequest(request(Cmd.READ, Number.MAX_SAFE_INTEGER, 1), exp, false)).toBe(Errno.EINVAL);
  });
});

describe('ByteAccumulator', () => {
  it('peeks across chunks, consumes, copies, and enforces its capacity', () => {
    const acc = new ByteAccumulator(16);
    acc.push(new Uint8Array([1, 2, 3]));
    acc.push(new Uint8Array([4, 5]));
    expect([...acc.peek(4)]).toEqual([1, 2, 3, 4]);
    acc.consume(2);
    const out = new Uint8Array(10);
    expect(acc.copyTo(out)).toBe(3);
    expect([...out.subarray(0, 3)]).toEqual([3, 4, 5]);
    expect(acc.length).toBe(0);
    expect(() => acc.push(new Uint8Array(17))).toThrow(RangeError);
  });
});
