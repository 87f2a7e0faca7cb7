// Fuzzing of the NBD client's reply parser in place (issues 8, 9): a ClientConnection over a fake
// socket with requests in flight (reads, writes, flushes, trims, block status questions) is fed
// honest reply streams — simple, structured, or under extended headers — byte-mutated ones, and
// adversarial chunk layouts (overlaps, gaps, ranges outside the read), in random chunkings; plus
// the block status decoders against a reference model. Fixed seed in CI; FUZZ_SEED / FUZZ_RUNS
// override (test/lib/fuzz-run.ts).
import type { Socket } from 'node:net';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ByteAccumulator, Cmd, type NbdExtent, NbdProtocolError, ReplyFlag, ReplyType, encodeChunkHeader, encodeSimpleReply } from '../src/index.js';
import { ExtentCollector, decodeStatusChunkHead } from '../src/codec/client-status.js';
import { ClientConnection, type Part, STATUS_EXTENTS_KEPT_MAX } from '../src/client/connection.js';
import { RemoteError } from '../src/client/errors.js';
import { applyMutations, concatBytes, cuts, interestingU32, mutations, splitAt } from '../../../test/lib/fuzz-bytes.js';
import { fuzz, onlyTyped } from '../../../test/lib/fuzz-run.js';
import { extendedHeader } from './client-fake.js';
import { FakeSocket, rng } from './client-helpers.js';

const SENTINEL = 0x5a;
const GUARD = 0xc3;
const GUARD_BYTES = 64;
const READ_MAX_BYTES = 64 * 1024;
/** Both contexts are selected; each question wants one of them, the server answers both. */
const CONTEXTS = new Map([['base:allocation', 5], ['qemu:dirty-bitmap:b', 6]]);
const CONTEXT_NAMES = [...CONTEXTS.keys()];
const EXPORT_BYTES = 2 ** 31;

type Mode = 'simple' | 'structured' | 'extended';

interface FuzzPart extends Part {
  readonly id: number;
  /** The whole buffer around `target`: guard bytes on both sides catch writes outside it. */
  readonly whole: Uint8Array | undefined;
  /** BLOCK_STATUS: what was delivered, and how often. */
  got: NbdExtent[] | undefined;
  delivered: number;
}

/** Server data for offset `o`: never the sentinel, so a byte nobody wrote is recognisable. */
const dataAt = (o: number): number => (o * 7 + 3) % 251 === SENTINEL ? 1 : (o * 7 + 3) % 251;

interface PartSpec { readonly type: number; readonly offsetBytes: number; readonly lengthBytes: number; readonly abandoned: boolean; readonly context: number }

const partSpec: fc.Arbitrary<PartSpec> = fc.record({
  type: fc.constantFrom(Cmd.READ, Cmd.READ, Cmd.READ, Cmd.WRITE, Cmd.FLUSH, Cmd.TRIM, Cmd.BLOCK_STATUS, Cmd.BLOCK_STATUS),
  offsetBytes: fc.nat({ max: 1 << 30 }),
  lengthBytes: fc.oneof(fc.integer({ min: 1, max: 600 }), fc.integer({ min: 1, max: 16384 }), fc.constant(READ_MAX_BYTES)),
  // A quarter of the callers have gone (deadline passed): their replies are read and dropped.
  abandoned: fc.nat({ max: 3 }).map((n) => n === 0),
  context: fc.nat({ max: 1 }),
});

function makePart(spec: PartSpec, id: number, mode: Mode): FuzzPart {
  // Without structured replies nothing is selected, so the client never asks for block status.
  const type = mode === 'simple' && spec.type === Cmd.BLOCK_STATUS ? Cmd.FLUSH : spec.type;
  const read = type === Cmd.READ;
  const whole = read ? new Uint8Array(spec.lengthBytes + 2 * GUARD_BYTES).fill(GUARD) : undefined;
  const target = whole?.subarray(GUARD_BYTES, GUARD_BYTES + spec.lengthBytes).fill(SENTINEL);
  const payload = type === Cmd.WRITE ? new Uint8Array(spec.lengthBytes) : undefined;
  const hasLength = read || type === Cmd.WRITE || type === Cmd.BLOCK_STATUS;
  const part: FuzzPart = {
    id, type, flags: 0, offsetBytes: spec.offsetBytes, lengthBytes: hasLength ? spec.lengthBytes : 0, payload, target,
    abandoned: spec.abandoned, what: `part ${id}`, whole, got: undefined, delivered: 0,
    status: type !== Cmd.BLOCK_STATUS ? undefined : {
      context: CONTEXT_NAMES[spec.context]!,
      deliver: (extents) => { part.got = extents; part.delivered += 1; },
    },
  };
  return part;
}

interface Cookie { readonly cookieHi: number; readonly cookieLo: number; readonly offsetBytes: number }

interface Harness {
  readonly socket: FakeSocket;
  readonly conn: ClientConnection<FuzzPart>;
  readonly parts: FuzzPart[];
  /** Cookie of each part, as the client put it on the wire. */
  readonly cookies: Cookie[];
  readonly replies: Map<number, RemoteError | undefined>;
  readonly downs: FuzzPart[][];
}

function start(specs: readonly PartSpec[], mode: Mode): Harness {
  const socket = new FakeSocket();
  const replies = new Map<number, RemoteError | undefined>();
  const downs: FuzzPart[][] = [];
  const conn = new ClientConnection<FuzzPart>(socket as unknown as Socket, new ByteAccumulator(1024), {
    id: 1, where: 'fuzz', structuredReplies: mode !== 'simple', extendedHeaders: mode === 'extended', metaContexts: CONTEXTS,
    exportSizeBytes: EXPORT_BYTES, maxRequestBytes: READ_MAX_BYTES, inFlightMax: 8,
  }, {
    onReply: (part, err) => {
      expect(replies.has(part.id), `part ${part.id} replied twice`).toBe(false);
      replies.set(part.id, err);
    },
    onProgress: () => {},
    onDown: (_err, parts) => { downs.push(parts); },
  });
  const parts = specs.map((s, i) => makePart(s, i, mode));
  const cookies: Cookie[] = [];
  for (const part of parts) {
    const writes = socket.written.length;
    conn.send(part);
    const request = socket.written[writes] ?? new Uint8Array(0);
    expect(request.length).toBe(mode === 'extended' ? 32 : 28);
    const dv = new DataView(request.buffer, request.byteOffset, request.byteLength);
    cookies.push({ cookieHi: dv.getUint32(8), cookieLo: dv.getUint32(12), offsetBytes: part.offsetBytes });
  }
  return { socket, conn, parts, cookies, replies, downs };
}

/** What block status callers are promised: at least one extent, each > 0, within the request, neighbours differ. */
function checkExtentContract(part: FuzzPart): void {
  const got = part.got!;
  expect(got.length).toBeGreaterThan(0);
  expect(got.length).toBeLessThanOrEqual(STATUS_EXTENTS_KEPT_MAX);
  let total = 0;
  got.forEach((e, i) => {
    expect(e.lengthBytes).toBeGreaterThan(0);
    if (i > 0) expect(e.flags).not.toBe(got[i - 1]!.flags);
    total += e.lengthBytes;
  });
  expect(total).toBeLessThanOrEqual(part.lengthBytes);
}

/** The invariants that hold whatever the server sent. */
function checkAlways(h: Harness): void {
  const handedBack = h.downs.flat();
  expect(h.downs.length).toBeLessThanOrEqual(1);
  for (const part of h.parts) {
    const replied = h.replies.has(part.id);
    const back = handedBack.filter((p) => p.id === part.id).length;
    expect(back).toBeLessThanOrEqual(1);
    expect(replied && back > 0, `part ${part.id} both replied and handed back`).toBe(false);
    if (h.conn.alive) expect(back).toBe(0);
    if (part.whole !== undefined) {
      // Nothing outside the read's own view is ever written; an abandoned read's view is left alone.
      expect(part.whole.subarray(0, GUARD_BYTES).every((b) => b === GUARD)).toBe(true);
      expect(part.whole.subarray(GUARD_BYTES + part.lengthBytes).every((b) => b === GUARD)).toBe(true);
      if (part.abandoned) expect(part.target!.every((b) => b === SENTINEL)).toBe(true);
    }
    if (part.type === Cmd.BLOCK_STATUS) {
      // Extents go to the caller exactly when its question succeeded (and it still waits).
      const succeeded = replied && h.replies.get(part.id) === undefined && !part.abandoned;
      expect(part.delivered, `part ${part.id} deliveries`).toBe(succeeded ? 1 : 0);
      if (succeeded) checkExtentContract(part);
    }
  }
  if (h.conn.alive) expect(h.conn.load).toBe(h.parts.filter((p) => !h.replies.has(p.id)).length);
}

/** A READ that completed without error has every byte of its view written by the server. */
function checkReadsComplete(h: Harness): void {
  for (const part of h.parts) {
    if (part.type !== Cmd.READ || part.abandoned || !h.replies.has(part.id) || h.replies.get(part.id) !== undefined) continue;
    const unwritten = part.target!.indexOf(SENTINEL);
    expect(unwritten, `part ${part.id}: READ succeeded with byte ${unwritten} never written`).toBe(-1);
  }
}

function feed(h: Harness, stream: Uint8Array, points: readonly number[]): void {
  for (const piece of splitAt(stream, points)) {
    if (!h.conn.alive) break;
    h.socket.emit('data', Buffer.from(piece));
  }
}

// ---- reply streams ----------------------------------------------------------------------------

/** One structured chunk (20-byte header) or, under extended headers, its 32-byte equivalent. */
function chunk(mode: Mode, flags: number, type: number, c: Cookie, payload: Uint8Array): Uint8Array {
  if (mode === 'extended') return concatBytes([extendedHeader(flags, type, c, payload.length), payload]);
  const head = new Uint8Array(20);
  encodeChunkHeader(head, 0, flags, type, c.cookieHi, c.cookieLo, payload.length);
  return concatBytes([head, payload]);
}

function u64(value: number): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(value));
  return b;
}

function errorPayload(errno: number): Uint8Array {
  const b = new Uint8Array(6);
  new DataView(b.buffer).setUint32(0, errno);
  return b;
}

function holePayload(offsetBytes: number, lengthBytes: number): Uint8Array {
  const b = new Uint8Array(12);
  b.set(u64(offsetBytes));
  new DataView(b.buffer).setUint32(8, lengthBytes);
  return b;
}

function readData(offsetBytes: number, lengthBytes: number): Uint8Array {
  const out = new Uint8Array(lengthBytes);
  for (let i = 0; i < lengthBytes; i++) out[i] = dataAt(offsetBytes + i);
  return out;
}

/** A status chunk's payload: compact (u32 id, u32 pairs) or extended (u32 id, u32 count, u64 pairs). */
function statusPayload(mode: Mode, contextId: number, extents: readonly NbdExtent[]): Uint8Array {
  const wide = mode === 'extended';
  const out = new Uint8Array((wide ? 8 : 4) + extents.length * (wide ? 16 : 8));
  const dv = new DataView(out.buffer);
  dv.setUint32(0, contextId);
  if (wide) dv.setUint32(4, extents.length);
  extents.forEach((e, i) => {
    if (wide) {
      dv.setBigUint64(8 + 16 * i, BigInt(e.lengthBytes));
      dv.setBigUint64(16 + 16 * i, BigInt(e.flags));
    } else {
      dv.setUint32(4 + 8 * i, e.lengthBytes);
      dv.setUint32(8 + 8 * i, e.flags);
    }
  });
  return out;
}

/** What an honest server may say about one context: 1..4 extents from the offset; only the last may run past the request. */
function honestExtents(rand: () => number, part: FuzzPart): NbdExtent[] {
  const out: NbdExtent[] = [];
  let left = rand() < 0.5 ? part.lengthBytes : 1 + Math.floor(rand() * part.lengthBytes);
  const pieces = 1 + Math.floor(rand() * 4);
  for (let i = 0; i < pieces && left > 0; i++) {
    const n = i === pieces - 1 ? left : Math.max(1, Math.floor(rand() * left));
    out.push({ lengthBytes: n, flags: Math.floor(rand() * 4) });
    left -= n;
  }
  const last = out[out.length - 1]!;
  if (left > 0 || rand() < 0.3) out[out.length - 1] = { lengthBytes: last.lengthBytes + left + Math.floor(rand() * 8192), flags: last.flags };
  return out;
}

/** What the client must deliver for honest extents: clamped to the request, equal neighbours merged. */
function expectedExtents(part: FuzzPart, extents: readonly NbdExtent[]): NbdExtent[] {
  const out: NbdExtent[] = [];
  let left = part.lengthBytes;
  for (const e of extents) {
    const n = Math.min(e.lengthBytes, left);
    left -= n;
    const last = out[out.length - 1];
    if (last !== undefined && last.flags === e.flags) out[out.length - 1] = { lengthBytes: last.lengthBytes + n, flags: e.flags };
    else out.push({ lengthBytes: n, flags: e.flags });
    if (left === 0) break;
  }
  return out;
}

/** A status reply: one chunk per selected context in a random order, then maybe a NONE chunk. */
function statusReply(part: FuzzPart, c: Cookie, mode: Mode, seed: number): { bytes: Uint8Array; wanted: NbdExtent[] } {
  const rand = rng(seed);
  const ids = rand() < 0.5 ? [5, 6] : [6, 5];
  const trailingNone = rand() < 0.3;
  const type = mode === 'extended' ? ReplyType.BLOCK_STATUS_EXT : ReplyType.BLOCK_STATUS;
  let wanted: NbdExtent[] = [];
  const chunks = ids.map((id, i) => {
    const extents = honestExtents(rand, part);
    if (CONTEXTS.get(part.status!.context) === id) wanted = expectedExtents(part, extents);
    const done = i === ids.length - 1 && !trailingNone;
    return chunk(mode, done ? ReplyFlag.DONE : 0, type, c, statusPayload(mode, id, extents));
  });
  if (trailingNone) chunks.push(chunk(mode, ReplyFlag.DONE, ReplyType.NONE, c, new Uint8Array(0)));
  return { bytes: concatBytes(chunks), wanted };
}

/** What an honest server sends for one part: simple, or chunks (structured/extended), data in `pieces` chunks. */
function honestReply(part: FuzzPart, c: Cookie, mode: Mode, pieces: number, errno: number, seed: number): Uint8Array {
  if (mode === 'simple') {
    const head = new Uint8Array(16);
    encodeSimpleReply(head, 0, c.cookieHi, c.cookieLo, errno);
    return errno === 0 && part.type === Cmd.READ ? concatBytes([head, readData(part.offsetBytes, part.lengthBytes)]) : head;
  }
  if (errno !== 0) return chunk(mode, ReplyFlag.DONE, ReplyType.ERROR, c, errorPayload(errno));
  if (part.type === Cmd.BLOCK_STATUS) return statusReply(part, c, mode, seed).bytes;
  if (part.type !== Cmd.READ) return chunk(mode, ReplyFlag.DONE, ReplyType.NONE, c, new Uint8Array(0));
  const out: Uint8Array[] = [];
  const n = Math.min(pieces, part.lengthBytes);
  const step = Math.ceil(part.lengthBytes / n);
  for (let at = 0; at < part.lengthBytes; at += step) {
    const len = Math.min(step, part.lengthBytes - at);
    const last = at + len >= part.lengthBytes;
    out.push(chunk(mode, last ? ReplyFlag.DONE : 0, ReplyType.OFFSET_DATA, c, concatBytes([u64(part.offsetBytes + at), readData(part.offsetBytes + at, len)])));
  }
  return concatBytes(out);
}

interface ChunkSpec {
  readonly kind: 'data' | 'hole' | 'error' | 'none';
  /** Start and length as fractions of the read's length (a start below 0 or above 1 is outside it). */
  readonly start: number;
  readonly length: number;
  readonly done: boolean;
}

/** Chunks placed anywhere around the read: overlapping, leaving gaps, or outside it. */
function adversarialReply(part: FuzzPart, c: Cookie, mode: Mode, specs: readonly ChunkSpec[]): Uint8Array {
  const out: Uint8Array[] = [];
  for (const s of specs) {
    const offsetBytes = Math.max(0, part.offsetBytes + Math.floor(s.start * part.lengthBytes));
    const len = Math.max(1, Math.floor(s.length * part.lengthBytes));
    const flags = s.done ? ReplyFlag.DONE : 0;
    if (s.kind === 'data') out.push(chunk(mode, flags, ReplyType.OFFSET_DATA, c, concatBytes([u64(offsetBytes), readData(offsetBytes, len)])));
    else if (s.kind === 'hole') out.push(chunk(mode, flags, ReplyType.OFFSET_HOLE, c, holePayload(offsetBytes, len)));
    else if (s.kind === 'error') out.push(chunk(mode, flags, ReplyType.ERROR, c, errorPayload(5)));
    else out.push(chunk(mode, flags, ReplyType.NONE, c, new Uint8Array(0)));
    if (s.done) break;
  }
  return concatBytes(out);
}

const chunkSpec: fc.Arbitrary<ChunkSpec> = fc.record({
  kind: fc.constantFrom('data', 'data', 'data', 'hole', 'error', 'none'),
  start: fc.oneof({ weight: 3, arbitrary: fc.constantFrom(0, 0.25, 0.5, 0.75) }, { weight: 1, arbitrary: fc.double({ min: -0.1, max: 1.1, noNaN: true }) }),
  length: fc.oneof({ weight: 3, arbitrary: fc.constantFrom(0.25, 0.5, 1) }, { weight: 1, arbitrary: fc.double({ min: 0, max: 1.1, noNaN: true }) }),
  done: fc.boolean(),
}) as fc.Arbitrary<ChunkSpec>;

const scenario = fc.record({
  parts: fc.array(partSpec, { minLength: 1, maxLength: 6 }),
  mode: fc.constantFrom<Mode>('simple', 'structured', 'extended'),
  order: fc.array(fc.nat({ max: 5 }), { minLength: 6, maxLength: 6 }),
  pieces: fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 6, maxLength: 6 }),
  errnos: fc.array(fc.constantFrom(0, 0, 0, 0, 1, 5, 22, 28, 75, 95, 999), { minLength: 6, maxLength: 6 }),
  seeds: fc.array(fc.nat(), { minLength: 6, maxLength: 6 }),
  cuts: cuts(12),
});

/** Replies in a shuffled order (the server may complete requests in any order). */
function order<T>(items: readonly T[], keys: readonly number[]): T[] {
  return items.map((item, i) => ({ item, key: (keys[i] ?? 0) * 16 + i })).sort((a, b) => a.key - b.key).map((x) => x.item);
}

type Scenario = typeof scenario extends fc.Arbitrary<infer T> ? T : never;

function honestStream(h: Harness, s: Scenario): Uint8Array {
  return concatBytes(order(h.parts, s.order).map((p) => honestReply(p, h.cookies[p.id]!, s.mode, s.pieces[p.id]!, s.errnos[p.id]!, s.seeds[p.id]!)));
}

describe('fuzz: NBD client reply parsing (ClientConnection over a fake socket)', () => {
  it('honest reply streams in any order and chunking complete every request with the right bytes', () => {
    fuzz('nbd client honest replies', fc.property(scenario, (s) => {
      const h = start(s.parts, s.mode);
      feed(h, honestStream(h, s), s.cuts);
      checkAlways(h);
      expect(h.conn.alive).toBe(true);
      for (const part of h.parts) {
        expect(h.replies.has(part.id)).toBe(true);
        const errno = s.errnos[part.id]!;
        if (errno === 0) expect(h.replies.get(part.id)).toBeUndefined();
        else expect(h.replies.get(part.id)).toBeInstanceOf(RemoteError);
        if (part.type === Cmd.READ && !part.abandoned && errno === 0) {
          expect(Buffer.compare(part.target!, readData(part.offsetBytes, part.lengthBytes)), `part ${part.id} data`).toBe(0);
        }
        if (part.type === Cmd.BLOCK_STATUS && !part.abandoned && errno === 0) {
          const { wanted } = statusReply(part, h.cookies[part.id]!, s.mode, s.seeds[part.id]!);
          expect(part.got, `part ${part.id} extents`).toEqual(wanted);
        }
      }
    }), 1500);
  });

  it('byte-mutated reply streams: no exception escapes, each request ends once, no write outside its buffer', () => {
    fuzz('nbd client mutated replies', fc.property(scenario, mutations(4), (s, muts) => {
      const h = start(s.parts, s.mode);
      feed(h, applyMutations(honestStream(h, s), muts), s.cuts);
      checkAlways(h);
    }), 3000);
  });

  it('adversarial chunk layouts: a READ reported successful has every byte written, exactly once', () => {
    const layouts = fc.array(fc.array(chunkSpec, { minLength: 1, maxLength: 5 }), { minLength: 6, maxLength: 6 });
    fuzz('nbd client adversarial chunks', fc.property(scenario, layouts, fc.constantFrom<Mode>('structured', 'extended'), (s, ls, mode) => {
      const h = start(s.parts, mode);
      const stream = concatBytes(order(h.parts, s.order).map((p) => (p.type === Cmd.READ
        ? adversarialReply(p, h.cookies[p.id]!, mode, ls[p.id]!)
        : honestReply(p, h.cookies[p.id]!, mode, 1, 0, s.seeds[p.id]!))));
      feed(h, stream, s.cuts);
      checkAlways(h);
      checkReadsComplete(h);
    }), 3000);
  });
});

// ---- block status decoders against a reference model ------------------------------------------

/** The rules, written plainly: undefined = a protocol error. */
function modelExtents(request: { offsetBytes: number; lengthBytes: number }, sizeBytes: number, list: readonly NbdExtent[], keepMax: number): NbdExtent[] | undefined {
  let at = request.offsetBytes;
  const end = request.offsetBytes + request.lengthBytes;
  const merged: NbdExtent[] = [];
  for (const e of list) {
    if (e.lengthBytes === 0 || at >= end || at + e.lengthBytes > sizeBytes) return undefined;
    const n = Math.min(e.lengthBytes, end - at);
    at += n;
    const last = merged[merged.length - 1];
    if (last !== undefined && last.flags === e.flags) merged[merged.length - 1] = { lengthBytes: last.lengthBytes + n, flags: e.flags };
    else merged.push({ lengthBytes: n, flags: e.flags });
  }
  return merged.slice(0, keepMax);
}

describe('fuzz: block status decoders', () => {
  it('the extent collector agrees with the reference model (compact and extended descriptors, any batching)', () => {
    const extent = fc.record({
      lengthBytes: fc.oneof(fc.constantFrom(0, 1, 512, 4096, 65536), fc.nat({ max: 70000 }), interestingU32()),
      flags: fc.nat({ max: 3 }),
    });
    fuzz('nbd client status collector', fc.property(
      fc.record({ offsetBytes: fc.nat({ max: 1 << 20 }), lengthBytes: fc.integer({ min: 1, max: 1 << 18 }) }),
      fc.integer({ min: 1 << 18, max: 2 ** 34 }), fc.array(extent, { minLength: 1, maxLength: 12 }), fc.integer({ min: 0, max: 6 }),
      fc.boolean(), fc.integer({ min: 1, max: 12 }),
      (request, sizeBytes, list, keepMax, wide, batch) => {
        const want = modelExtents(request, sizeBytes, list, keepMax);
        const d: 8 | 16 = wide ? 16 : 8;
        const bytes = new Uint8Array(list.length * d);
        const dv = new DataView(bytes.buffer);
        list.forEach((e, i) => {
          if (wide) {
            dv.setBigUint64(16 * i, BigInt(e.lengthBytes));
            dv.setBigUint64(16 * i + 8, BigInt(e.flags));
          } else {
            dv.setUint32(8 * i, e.lengthBytes);
            dv.setUint32(8 * i + 4, e.flags);
          }
        });
        const c = new ExtentCollector(request, sizeBytes, keepMax);
        let got: NbdExtent[] | undefined;
        try {
          for (let at = 0; at < bytes.length; at += batch * d) c.add(bytes.subarray(at, Math.min(bytes.length, at + batch * d)), d);
          got = c.extents();
        } catch (err) {
          onlyTyped(err, NbdProtocolError);
        }
        expect(got).toEqual(want);
      },
    ), 3000);
  });

  it('status chunk heads: any type, length and prefix give a head or an NbdProtocolError, nothing else', () => {
    fuzz('nbd client status chunk head', fc.property(
      fc.constantFrom(ReplyType.BLOCK_STATUS, ReplyType.BLOCK_STATUS_EXT), fc.oneof(interestingU32(), fc.nat({ max: 200 })), fc.uint8Array({ minLength: 8, maxLength: 8 }),
      (type, payloadBytes, prefix) => {
        try {
          const head = decodeStatusChunkHead(type, payloadBytes, prefix);
          const prefixBytes = type === ReplyType.BLOCK_STATUS ? 4 : 8;
          expect(head.descriptorCount).toBeGreaterThan(0);
          expect(prefixBytes + head.descriptorCount * head.descriptorBytes).toBe(payloadBytes);
        } catch (err) {
          onlyTyped(err, NbdProtocolError);
        }
      },
    ), 3000);
  });
});
