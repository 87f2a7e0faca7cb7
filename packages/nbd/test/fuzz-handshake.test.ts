// Fuzzing of the NBD handshake (issue 8): the option codecs of both directions and the server's
// haggling machine (server/handshake.ts) fed random, valid and mutated client streams in random
// chunkings. Fixed seed in CI; FUZZ_SEED / FUZZ_RUNS override (test/lib/fuzz-run.ts).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  ByteAccumulator, Info, META_QUERIES_MAX, NbdProtocolError, Opt, Rep, STRING_MAX_BYTES, ServerHandshake, Size, classifyOptionReply,
  createMemoryExport, createMemoryProvider, decodeClientFlags, decodeExportNameReply, decodeGreeting, decodeInfoReply, decodeMetaContextReply,
  decodeMetaContextRequest, decodeOption, decodeOptionHeader, decodeOptionReply, decodeServerGreeting, encodeExportNameReply, encodeGreeting,
  encodeInfoBlockSize, encodeInfoExport, encodeInfoOption, encodeInfoString, encodeMetaContextOption, encodeMetaContextReply, encodeOption,
  encodeOptionReply, encodeServerEntry, type Decoded, type HandshakeConfig, type HandshakeStep, type TlsMode,
} from '../src/index.js';
import { applyMutations, concatBytes, cuts, embedded, interestingU32, mutations, randomBytes, splitAt, surround, type Surround } from '../../../test/lib/fuzz-bytes.js';
import { arrayBufferGrowth, fuzz } from '../../../test/lib/fuzz-run.js';

const enc = new TextEncoder();
const ERR_BIT = 0x80000000;

/** What every decoder of a stream prefix must return: need > 0 bytes, a value within the input, or NbdProtocolError. */
function checkDecoded<T>(d: Decoded<T>, inputBytes: number, needBoundBytes = Number.MAX_SAFE_INTEGER): void {
  if (d.kind === 'need') {
    expect(Number.isSafeInteger(d.needBytes) && d.needBytes > 0).toBe(true);
    expect(inputBytes + d.needBytes).toBeLessThanOrEqual(needBoundBytes);
  } else if (d.kind === 'value') {
    expect(d.consumedBytes).toBeGreaterThan(0);
    expect(d.consumedBytes).toBeLessThanOrEqual(inputBytes);
  } else {
    expect(d.error).toBeInstanceOf(NbdProtocolError);
  }
}

/** The same decoder over a tight copy and over a view inside a larger buffer: equal results (no read past the view). */
function sameWhenEmbedded<T>(decode: (b: Uint8Array) => T, bytes: Uint8Array, s: Surround): T {
  const tight = decode(bytes.slice());
  expect(decode(embedded(bytes, s))).toEqual(tight);
  return tight;
}

const stringNoNul = (maxLength: number): fc.Arbitrary<string> =>
  fc.string({ unit: 'binary', maxLength }).filter((s) => !s.includes('\0') && enc.encode(s).length <= STRING_MAX_BYTES);
const u16 = fc.nat({ max: 0xffff });
const u32 = fc.nat({ max: 0xffffffff });
const dataCaps = fc.constantFrom(16, 64, 4096, 65536);

describe('fuzz: NBD handshake codecs', () => {
  it('every decoder takes any bytes: a value, "need N", or NbdProtocolError; never reads past its input', () => {
    fuzz('nbd handshake decoders on random bytes', fc.property(randomBytes(40, 300), surround(), dataCaps, fc.boolean(), (bytes, s, cap, noZeroes) => {
      const n = bytes.length;
      checkDecoded(sameWhenEmbedded((b) => decodeClientFlags(b, 3), bytes, s), n, 4);
      checkDecoded(sameWhenEmbedded((b) => decodeOptionHeader(b, cap), bytes, s), n, Size.OPTION_HEADER);
      checkDecoded(sameWhenEmbedded((b) => decodeOption(b, cap), bytes, s), n, Size.OPTION_HEADER + cap);
      checkDecoded(sameWhenEmbedded(decodeGreeting, bytes, s), n, Size.GREETING);
      checkDecoded(sameWhenEmbedded(decodeServerGreeting, bytes, s), n, Size.GREETING);
      checkDecoded(sameWhenEmbedded((b) => decodeOptionReply(b, cap), bytes, s), n, Size.OPTION_REPLY_HEADER + cap);
      checkDecoded(sameWhenEmbedded((b) => decodeExportNameReply(b, noZeroes), bytes, s), n, 134);
      const info = sameWhenEmbedded(decodeInfoReply, bytes, s);
      if (info !== undefined) expect(['export', 'name', 'description', 'block-size', 'unknown']).toContain(info.info);
    }), 3000);
  });

  it('options round-trip: decode(encode(x)) == x, and a decoded option re-encodes to the same bytes', () => {
    const nameArb = stringNoNul(60);
    const option = fc.oneof(
      fc.record({ go: fc.boolean(), name: nameArb, infos: fc.array(u16, { maxLength: 12 }) }).map(({ go, name, infos }) => ({
        bytes: encodeInfoOption(go ? Opt.GO : Opt.INFO, name, infos), want: { type: go ? 'go' : 'info', name, infoRequests: infos },
      })),
      nameArb.map((name) => ({ bytes: encodeOption(Opt.EXPORT_NAME, enc.encode(name)), want: { type: 'export-name', name } })),
      fc.constantFrom(['abort', Opt.ABORT], ['list', Opt.LIST], ['starttls', Opt.STARTTLS], ['structured-reply', Opt.STRUCTURED_REPLY])
        .map(([type, code]) => ({ bytes: encodeOption(code as number), want: { type } })),
      fc.record({ option: u32.filter((o) => !([1, 2, 3, 5, 6, 7, 8, 9, 10, 11] as number[]).includes(o)), data: fc.uint8Array({ maxLength: 100 }) })
        .map(({ option: o, data }) => ({ bytes: encodeOption(o, data), want: { type: 'unsupported', option: o } })),
    );
    fuzz('nbd option round trip', fc.property(fc.array(option, { minLength: 1, maxLength: 6 }), cuts(), (options, points) => {
      // A stream of options, decoded one after the other from whatever has arrived.
      const stream = concatBytes(options.map((o) => o.bytes));
      const acc = new ByteAccumulator(1 << 20);
      for (const piece of splitAt(stream, points)) acc.push(piece);
      for (const o of options) {
        const d = decodeOption(acc.peek(Math.min(acc.length, o.bytes.length)), 65536);
        expect(d.kind).toBe('value');
        if (d.kind !== 'value') return;
        expect(d.value).toEqual(o.want);
        expect(d.consumedBytes).toBe(o.bytes.length);
        acc.consume(d.consumedBytes);
        // Every strict prefix asks for exactly the missing bytes once the header is complete.
        const cut = o.bytes.subarray(0, o.bytes.length - 1);
        const partial = decodeOption(cut, 65536);
        expect(partial).toEqual({ kind: 'need', needBytes: cut.length < Size.OPTION_HEADER ? Size.OPTION_HEADER - cut.length : 1 });
      }
      expect(acc.length).toBe(0);
    }), 1500);
  });

  it('mutated options: any bit flip, field edit or truncation is decoded or refused, and values are canonical', () => {
    const base = fc.oneof(
      fc.record({ go: fc.boolean(), name: fc.constantFrom('disk0', '', 'ä-name'), infos: fc.array(fc.constantFrom(0, 1, 2, 3), { maxLength: 4 }) })
        .map(({ go, name, infos }) => encodeInfoOption(go ? Opt.GO : Opt.INFO, name, infos)),
      fc.constantFrom(encodeOption(Opt.EXPORT_NAME, enc.encode('disk0')), encodeOption(Opt.LIST), encodeOption(Opt.STARTTLS)),
    );
    fuzz('nbd option mutations', fc.property(base, mutations(), dataCaps, surround(), (bytes, muts, cap, s) => {
      const input = applyMutations(bytes, muts);
      const d = sameWhenEmbedded((b) => decodeOption(b, cap), input, s);
      checkDecoded(d, input.length, Size.OPTION_HEADER + cap);
      if (d.kind !== 'value') return;
      const v = d.value;
      const consumed = input.subarray(0, d.consumedBytes);
      // What a server acts on must be exactly what the client sent: re-encoding gives the same bytes.
      if (v.type === 'go' || v.type === 'info') expect(encodeInfoOption(v.type === 'go' ? Opt.GO : Opt.INFO, v.name, v.infoRequests)).toEqual(consumed);
      if (v.type === 'export-name') expect(encodeOption(Opt.EXPORT_NAME, enc.encode(v.name))).toEqual(consumed);
      if (v.type === 'list' || v.type === 'starttls' || v.type === 'structured-reply') expect(consumed.length).toBe(Size.OPTION_HEADER);
    }), 4000);
  });

  it('declared option lengths above the cap are refused from the 16-byte header alone, without allocating them', () => {
    fuzz('nbd option length cap', fc.property(u32, interestingU32(), dataCaps, (option, dataBytes, cap) => {
      const header = encodeOption(option).slice();
      new DataView(header.buffer).setUint32(12, dataBytes);
      const { value: d, grownBytes } = arrayBufferGrowth(() => decodeOption(header, cap));
      expect(grownBytes).toBeLessThan(64 * 1024);
      if (dataBytes > cap) {
        expect(d.kind === 'error' && d.error.code === 'option-too-large').toBe(true);
      } else if (dataBytes > 0) {
        expect(d).toEqual({ kind: 'need', needBytes: dataBytes });
      }
    }), 3000);
  });

  it('replies round-trip through the client decoders', () => {
    fuzz('nbd option replies round trip', fc.property(
      u32, fc.nat({ max: Number.MAX_SAFE_INTEGER }), u16, stringNoNul(80), stringNoNul(80), fc.uint8Array({ maxLength: 200 }), u16, fc.boolean(),
      (option, sizeBytes, tflags, name, description, data, hflags, noZeroes) => {
        const reply = decodeOptionReply(encodeOptionReply(option, Rep.ACK + (option % 4), data), 4096);
        expect(reply.kind === 'value' && reply.value.option === option && reply.value.replyType === Rep.ACK + (option % 4)).toBe(true);
        if (reply.kind === 'value') expect(reply.value.data).toEqual(data);
        const entry = decodeOptionReply(encodeServerEntry(Opt.LIST, name, description), 65536);
        if (entry.kind !== 'value') throw new Error('server entry did not decode');
        expect(classifyOptionReply(entry.value, Opt.LIST)).toEqual({ kind: 'server', name, ...(description === '' ? {} : { description }) });
        const infoOf = (bytes: Uint8Array): unknown => {
          const r = decodeOptionReply(bytes, 65536);
          return r.kind === 'value' ? decodeInfoReply(r.value.data) : 'undecodable';
        };
        expect(infoOf(encodeInfoExport(Opt.GO, sizeBytes, tflags))).toEqual({ info: 'export', sizeBytes, transmissionFlags: tflags });
        expect(infoOf(encodeInfoString(Opt.GO, Info.NAME, name))).toEqual({ info: 'name', text: name });
        expect(infoOf(encodeInfoBlockSize(Opt.GO, 1, option, 0xffffffff - option))).toEqual({ info: 'block-size', minimumBytes: 1, preferredBytes: option, maximumBytes: 0xffffffff - option });
        expect(decodeGreeting(encodeGreeting(hflags))).toEqual({ kind: 'value', value: { handshakeFlags: hflags }, consumedBytes: Size.GREETING });
        const exportReply = encodeExportNameReply(sizeBytes, tflags, noZeroes);
        expect(decodeExportNameReply(exportReply, noZeroes)).toEqual({ kind: 'value', value: { sizeBytes, transmissionFlags: tflags }, consumedBytes: exportReply.length });
      }), 1500);
  });

  it('the client classifies any option reply or throws NbdProtocolError', () => {
    fuzz('nbd classifyOptionReply', fc.property(u32, fc.oneof(fc.constantFrom(1, 2, 3, 4, ERR_BIT + 1, ERR_BIT + 9), u32), randomBytes(16, 600), (option, replyType, data) => {
      try {
        const c = classifyOptionReply({ option, replyType, data }, option);
        if (c.kind === 'error') expect(c.message.length).toBeLessThanOrEqual(201);
      } catch (err) {
        expect(err).toBeInstanceOf(NbdProtocolError);
      }
    }), 3000);
  });
});

describe('fuzz: meta context codecs (issue 9)', () => {
  const metaOption = fc.constantFrom(Opt.LIST_META_CONTEXT, Opt.SET_META_CONTEXT);
  const queries = fc.array(stringNoNul(40), { maxLength: 8 });

  it('LIST/SET data: any bytes give a request or a reason, never an exception; a request re-encodes to the same bytes', () => {
    fuzz('nbd decodeMetaContextRequest random', fc.property(randomBytes(24, 400), surround(), metaOption, (bytes, s, option) => {
      const d = sameWhenEmbedded(decodeMetaContextRequest, bytes, s);
      if (d.kind === 'invalid') {
        expect(d.reason.length).toBeGreaterThan(0);
        return;
      }
      expect(d.value.queries.length).toBeLessThanOrEqual(META_QUERIES_MAX);
      expect(encodeMetaContextOption(option, d.value.name, d.value.queries).subarray(Size.OPTION_HEADER)).toEqual(bytes);
    }), 4000);
  });

  it('LIST/SET round-trip through decodeOption; mutated ones decode canonically or become "invalid"', () => {
    fuzz('nbd meta context option round trip', fc.property(metaOption, stringNoNul(40), queries, mutations(), dataCaps, (option, name, qs, muts, cap) => {
      const bytes = encodeMetaContextOption(option, name, qs);
      const type = option === Opt.LIST_META_CONTEXT ? 'list-meta-context' : 'set-meta-context';
      expect(decodeOption(bytes, 65536)).toEqual({ kind: 'value', value: { type, name, queries: qs }, consumedBytes: bytes.length });
      const input = applyMutations(bytes, muts);
      const d = decodeOption(input, cap);
      checkDecoded(d, input.length, Size.OPTION_HEADER + cap);
      if (d.kind !== 'value') return;
      const v = d.value;
      if (v.type === 'list-meta-context' || v.type === 'set-meta-context') {
        const code = v.type === 'list-meta-context' ? Opt.LIST_META_CONTEXT : Opt.SET_META_CONTEXT;
        expect(encodeMetaContextOption(code, v.name, v.queries)).toEqual(input.subarray(0, d.consumedBytes));
      }
    }), 3000);
  });

  it('META_CONTEXT replies round-trip; any reply data decodes to a context or undefined', () => {
    fuzz('nbd meta context reply', fc.property(u32, stringNoNul(60).filter((n) => n.length > 0), randomBytes(8, 80), (id, name, junk) => {
      const r = decodeOptionReply(encodeMetaContextReply(Opt.SET_META_CONTEXT, id, name), 65536);
      expect(r.kind === 'value' && r.value.replyType === Rep.META_CONTEXT && decodeMetaContextReply(r.value.data)).toEqual({ contextId: id, name });
      const any = decodeMetaContextReply(junk);
      if (any !== undefined) expect(4 + enc.encode(any.name).length).toBe(junk.length);
    }), 2000);
  });
});

// ---- the server's haggling machine ----------------------------------------------------------

const noContext = async (): Promise<never> => { throw new Error('not called'); };
const disk0 = createMemoryExport('disk0', 1 << 20, { description: 'fuzz disk', writeBufferBytes: 64 << 20, extraContexts: { 'qemu:dirty-bitmap:a': noContext } });
const blk = createMemoryExport('blk', 1 << 20, { blockSize: { minimumBytes: 512 }, writeBufferBytes: 64 << 20 });
const provider = createMemoryProvider([disk0, blk]);

interface Driven {
  /** Messages the server sent, in order; `tlsAt` = how many of them preceded the first STARTTLS step. */
  readonly messages: Uint8Array[];
  readonly tlsAt: number;
  readonly final: HandshakeStep;
  readonly sawStartTls: boolean;
}

/** Feeds `pieces` to a fresh machine the way connection.ts does, checking the per-step invariants. */
function drive(config: HandshakeConfig, pieces: readonly Uint8Array[]): Driven {
  const hs = new ServerHandshake(config);
  const acc = new ByteAccumulator(1 << 24);
  const messages: Uint8Array[] = [];
  let tlsAt = -1;
  let final: HandshakeStep = { kind: 'need-more' };
  for (const piece of pieces) {
    acc.push(piece);
    final = hs.advance(acc);
    messages.push(...hs.output.splice(0));
    // Never waits while holding a whole message: what it waits for is bounded by the option cap.
    if (final.kind === 'need-more') expect(acc.length).toBeLessThan(Size.OPTION_HEADER + config.optionDataMaxBytes);
    if (final.kind === 'starttls' && tlsAt < 0) tlsAt = messages.length;
    if (final.kind === 'close' || final.kind === 'transmission') break;
  }
  return { messages, tlsAt: tlsAt < 0 ? messages.length : tlsAt, final, sawStartTls: tlsAt >= 0 };
}

const nameArb = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('disk0', 'blk', '', 'missing') },
  { weight: 2, arbitrary: fc.string({ maxLength: 20 }) },
  { weight: 1, arbitrary: fc.constant('n'.repeat(STRING_MAX_BYTES + 1)) },
);
const infoRequests = fc.array(fc.oneof(fc.constantFrom(Info.EXPORT, Info.NAME, Info.DESCRIPTION, Info.BLOCK_SIZE), u16), { maxLength: 5 });
const validOption = fc.oneof(
  { weight: 4, arbitrary: fc.record({ go: fc.boolean(), name: nameArb, infos: infoRequests }).map(({ go, name, infos }) => encodeInfoOption(go ? Opt.GO : Opt.INFO, name, infos)) },
  { weight: 1, arbitrary: nameArb.map((name) => encodeOption(Opt.EXPORT_NAME, enc.encode(name))) },
  {
    weight: 4,
    arbitrary: fc.constantFrom(Opt.ABORT, Opt.LIST, Opt.STARTTLS, Opt.STRUCTURED_REPLY, Opt.LIST_META_CONTEXT, Opt.SET_META_CONTEXT, Opt.EXTENDED_HEADERS, 4, 0, 0xffffffff)
      .map((o) => encodeOption(o)),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      option: fc.constantFrom(Opt.LIST_META_CONTEXT, Opt.SET_META_CONTEXT), name: nameArb,
      queries: fc.array(fc.constantFrom('base:allocation', 'base:', 'qemu:', 'qemu:dirty-bitmap:', 'qemu:dirty-bitmap:a', 'x'), { maxLength: 4 }),
    }).map(({ option, name, queries }) => encodeMetaContextOption(option, name, queries)),
  },
  { weight: 1, arbitrary: fc.record({ o: fc.constantFrom(Opt.LIST, Opt.STARTTLS, Opt.STRUCTURED_REPLY, 0x7a7a), data: fc.uint8Array({ maxLength: 40 }) }).map(({ o, data }) => encodeOption(o, data)) },
);
const clientMessage = fc.oneof(
  { weight: 8, arbitrary: validOption },
  { weight: 3, arbitrary: fc.tuple(validOption, mutations(3)).map(([b, m]) => applyMutations(b, m)) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 48 }) },
  { weight: 1, arbitrary: fc.record({ o: u32, len: interestingU32() }).map(({ o, len }) => { const h = encodeOption(o).slice(); new DataView(h.buffer).setUint32(12, len); return h; }) },
);
const clientFlags = fc.oneof({ weight: 10, arbitrary: fc.constantFrom(0, 1, 2, 3) }, { weight: 1, arbitrary: u32 });
const clientStream = fc.record({ flags: clientFlags, messages: fc.array(clientMessage, { maxLength: 10 }), cuts: cuts(12) }).map(({ flags, messages, cuts: c }) => {
  const head = new Uint8Array(4);
  new DataView(head.buffer).setUint32(0, flags);
  return { bytes: concatBytes([head, ...messages]), cuts: c };
});
const machineConfig = fc.record({
  optionDataMaxBytes: dataCaps, optionsMax: fc.oneof(fc.integer({ min: 1, max: 8 }), fc.constant(256)), tls: fc.constantFrom<TlsMode>('none', 'optional', 'required'),
}).map((c) => ({ ...c, provider }));

interface Reply { readonly option: number; readonly type: number; readonly data: Uint8Array }

/** Every message is one whole option reply, except an EXPORT_NAME reply that ends the handshake. */
function parseReplies(d: Driven): Reply[] {
  const replies: Reply[] = [];
  d.messages.forEach((m, i) => {
    const last = i === d.messages.length - 1;
    if (last && d.final.kind === 'transmission' && (m.length === 10 || m.length === 134) && decodeOptionReply(m, 65536).kind !== 'value') return;
    const r = decodeOptionReply(m, 2 * STRING_MAX_BYTES + 64);
    expect(r.kind === 'value' && r.consumedBytes === m.length, `message ${i} is not one option reply`).toBe(true);
    if (r.kind === 'value') replies.push({ option: r.value.option, type: r.value.replyType, data: r.value.data });
  });
  return replies;
}

describe('fuzz: the server handshake machine', () => {
  it('random and mutated client streams: no exception, well-formed bounded replies, bounded waiting', () => {
    fuzz('nbd ServerHandshake streams', fc.property(machineConfig, clientStream, (config, stream) => {
      const d = drive(config, splitAt(stream.bytes, stream.cuts));
      const replies = parseReplies(d);
      expect(replies.length).toBeLessThanOrEqual(6 * config.optionsMax + 1);
      for (const r of replies) if (r.type >= ERR_BIT) expect(r.data.length).toBeLessThanOrEqual(STRING_MAX_BYTES);
      if (d.final.kind === 'transmission') {
        expect([disk0, blk]).toContain(d.final.setup.export);
        // Structured replies hold iff acknowledged (or implied by extended headers) after the last
        // STARTTLS: nothing survives the upgrade.
        const lastTls = replies.map((r) => r.option === Opt.STARTTLS && r.type === Rep.ACK).lastIndexOf(true);
        const acked = (option: number): boolean => replies.slice(lastTls + 1).some((r) => r.option === option && r.type === Rep.ACK);
        const setup = d.final.setup;
        expect(setup.extendedHeaders).toBe(acked(Opt.EXTENDED_HEADERS));
        expect(setup.structuredReplies).toBe(acked(Opt.STRUCTURED_REPLY) || acked(Opt.EXTENDED_HEADERS));
        // Selected contexts: ones the export offers, with distinct ids the client was told in a SET reply.
        const told = replies.slice(lastTls + 1).filter((r) => r.option === Opt.SET_META_CONTEXT && r.type === Rep.META_CONTEXT)
          .map((r) => decodeMetaContextReply(r.data));
        const offered = setup.export.metaContexts?.names() ?? [];
        for (const c of setup.metaContexts) {
          expect(offered).toContain(c.name);
          expect(told).toContainEqual({ contextId: c.id, name: c.name });
        }
        expect(new Set(setup.metaContexts.map((c) => c.id)).size).toBe(setup.metaContexts.length);
        if (setup.metaContexts.length > 0) expect(setup.structuredReplies).toBe(true);
      }
    }), 3000);
  });

  it('the outcome does not depend on how the stream is chunked', () => {
    fuzz('nbd ServerHandshake chunking', fc.property(machineConfig, clientStream, (config, stream) => {
      const plain = { ...config, tls: 'none' as const };
      const whole = drive(plain, [stream.bytes]);
      const pieces = drive(plain, splitAt(stream.bytes, stream.cuts));
      expect(concatBytes(pieces.messages)).toEqual(concatBytes(whole.messages));
      expect(pieces.final.kind).toBe(whole.final.kind);
    }), 2000);
  });

  it('TLS required: before STARTTLS nothing but errors and the ACKs of ABORT and STARTTLS, and no transmission', () => {
    fuzz('nbd ServerHandshake tls required', fc.property(machineConfig, clientStream, (config, stream) => {
      const d = drive({ ...config, tls: 'required' }, splitAt(stream.bytes, stream.cuts));
      const before = parseReplies({ ...d, messages: d.messages.slice(0, d.tlsAt) });
      for (const r of before) {
        const allowedAck = r.type === Rep.ACK && (r.option === Opt.ABORT || r.option === Opt.STARTTLS);
        expect(r.type >= ERR_BIT || allowedAck, `reply ${r.type} to option ${r.option} before STARTTLS`).toBe(true);
      }
      if (!d.sawStartTls) expect(d.final.kind).not.toBe('transmission');
    }), 2000);
  });

  it('a declared option length above the cap closes at once with NBD_REP_ERR_TOO_BIG', () => {
    fuzz('nbd ServerHandshake oversized option', fc.property(machineConfig, u32, interestingU32(), (config, option, len) => {
      fc.pre(len > config.optionDataMaxBytes);
      const header = encodeOption(option).slice();
      new DataView(header.buffer).setUint32(12, len);
      const { value: d, grownBytes } = arrayBufferGrowth(() => drive({ ...config, tls: 'none' }, [new Uint8Array([0, 0, 0, 3]), header]));
      expect(grownBytes).toBeLessThan(256 * 1024);
      expect(d.final.kind).toBe('close');
      const replies = parseReplies(d);
      expect(replies.at(-1)).toMatchObject({ option, type: Rep.ERR_TOO_BIG });
    }), 1000);
  });
});
