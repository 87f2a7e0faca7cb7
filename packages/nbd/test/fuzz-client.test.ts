// Fuzzing of the NBD client's reply parser in place (issue 8): a ClientConnection over a fake
// socket with requests in flight is fed honest reply streams, byte-mutated ones, and adversarial
// chunk layouts (overlaps, gaps, ranges outside the read), in random chunkings. Fixed seed in
// CI; FUZZ_SEED / FUZZ_RUNS override (test/lib/fuzz-run.ts).
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  ByteAccumulator, Cmd, ReplyFlag, ReplyType, Size, decodeRequest, encodeChunkHeader, encodeDataChunkHeader, encodeErrorChunk, encodeNoneChunk,
  encodeSimpleReply,
} from '../src/index.js';
import { ClientConnection, type Part } from '../src/client/connection.js';
import { RemoteError } from '../src/client/errors.js';
import { applyMutations, concatBytes, cuts, mutations, splitAt } from '../../../test/lib/fuzz-bytes.js';
import { fuzz } from '../../../test/lib/fuzz-run.js';

const SENTINEL = 0x5a;
const GUARD = 0xc3;
const GUARD_BYTES = 64;
const READ_MAX_BYTES = 64 * 1024;

/** Only what ClientConnection uses of a Socket. */
class FakeSocket extends EventEmitter {
  readonly written: Uint8Array[] = [];
  destroyed = false;
  write(bytes: Uint8Array): boolean { this.written.push(bytes.slice()); return true; }
  end(bytes?: Uint8Array): void { if (bytes !== undefined) this.written.push(bytes.slice()); }
  cork(): void {}
  uncork(): void {}
  destroy(): void { this.destroyed = true; }
}

interface FuzzPart extends Part {
  readonly id: number;
  /** The whole buffer around `target`: guard bytes on both sides catch writes outside it. */
  readonly whole: Uint8Array | undefined;
}

/** Server data for offset `o`: never the sentinel, so a byte nobody wrote is recognisable. */
const dataAt = (o: number): number => (o * 7 + 3) % 251 === SENTINEL ? 1 : (o * 7 + 3) % 251;

interface PartSpec { readonly type: number; readonly offsetBytes: number; readonly lengthBytes: number; readonly abandoned: boolean }

const partSpec: fc.Arbitrary<PartSpec> = fc.record({
  type: fc.constantFrom(Cmd.READ, Cmd.READ, Cmd.READ, Cmd.WRITE, Cmd.FLUSH, Cmd.TRIM),
  offsetBytes: fc.nat({ max: 1 << 30 }),
  lengthBytes: fc.oneof(fc.integer({ min: 1, max: 600 }), fc.integer({ min: 1, max: 16384 }), fc.constant(READ_MAX_BYTES)),
  // A quarter of the callers have gone (deadline passed): their replies are read and dropped.
  abandoned: fc.nat({ max: 3 }).map((n) => n === 0),
});

function makePart(spec: PartSpec, id: number): FuzzPart {
  const read = spec.type === Cmd.READ;
  const whole = read ? new Uint8Array(spec.lengthBytes + 2 * GUARD_BYTES).fill(GUARD) : undefined;
  const target = whole?.subarray(GUARD_BYTES, GUARD_BYTES + spec.lengthBytes).fill(SENTINEL);
  const payload = spec.type === Cmd.WRITE ? new Uint8Array(spec.lengthBytes) : undefined;
  return { id, type: spec.type, flags: 0, offsetBytes: spec.offsetBytes, lengthBytes: read || spec.type === Cmd.WRITE ? spec.lengthBytes : 0, payload, target, abandoned: spec.abandoned, what: `part ${id}`, whole };
}

interface Harness {
  readonly socket: FakeSocket;
  readonly conn: ClientConnection<FuzzPart>;
  readonly parts: FuzzPart[];
  /** Cookie of each part, as the client put it on the wire. */
  readonly cookies: Array<{ hi: number; lo: number }>;
  readonly replies: Map<number, RemoteError | undefined>;
  readonly downs: FuzzPart[][];
}

function start(specs: readonly PartSpec[], structuredReplies: boolean): Harness {
  const socket = new FakeSocket();
  const replies = new Map<number, RemoteError | undefined>();
  const downs: FuzzPart[][] = [];
  const conn = new ClientConnection<FuzzPart>(socket as unknown as Socket, new ByteAccumulator(1024), {
    id: 1, where: 'fuzz', structuredReplies, maxRequestBytes: READ_MAX_BYTES, inFlightMax: 8,
  }, {
    onReply: (part, err) => {
      expect(replies.has(part.id), `part ${part.id} replied twice`).toBe(false);
      replies.set(part.id, err);
    },
    onProgress: () => {},
    onDown: (_err, parts) => { downs.push(parts); },
  });
  const parts = specs.map(makePart);
  const cookies: Array<{ hi: number; lo: number }> = [];
  for (const part of parts) {
    const writes = socket.written.length;
    conn.send(part);
    const d = decodeRequest(socket.written[writes] ?? new Uint8Array(0));
    if (d.kind !== 'value') throw new Error('request header not written');
    cookies.push({ hi: d.value.cookieHi, lo: d.value.cookieLo });
  }
  return { socket, conn, parts, cookies, replies, downs };
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

interface ChunkSpec {
  readonly kind: 'data' | 'hole' | 'error' | 'none';
  /** Start and length as fractions of the read's length (a start below 0 or above 1 is outside it). */
  readonly start: number;
  readonly length: number;
  readonly done: boolean;
}

function header(size: number, fill: (b: Uint8Array) => number): Uint8Array {
  const b = new Uint8Array(size);
  return b.subarray(0, fill(b));
}

function readData(offsetBytes: number, lengthBytes: number): Uint8Array {
  const out = new Uint8Array(lengthBytes);
  for (let i = 0; i < lengthBytes; i++) out[i] = dataAt(offsetBytes + i);
  return out;
}

/** What an honest server sends for one part: simple, or structured in `pieces` chunks. */
function honestReply(part: FuzzPart, c: { hi: number; lo: number }, structured: boolean, pieces: number, errno: number): Uint8Array {
  if (!structured) {
    const head = header(16, (b) => encodeSimpleReply(b, 0, c.hi, c.lo, errno));
    return errno === 0 && part.type === Cmd.READ ? concatBytes([head, readData(part.offsetBytes, part.lengthBytes)]) : head;
  }
  if (errno !== 0) return header(64, (b) => encodeErrorChunk(b, 0, c.hi, c.lo, errno));
  if (part.type !== Cmd.READ) return header(32, (b) => encodeNoneChunk(b, 0, c.hi, c.lo));
  const out: Uint8Array[] = [];
  const n = Math.min(pieces, part.lengthBytes);
  const step = Math.ceil(part.lengthBytes / n);
  for (let at = 0; at < part.lengthBytes; at += step) {
    const len = Math.min(step, part.lengthBytes - at);
    const last = at + len >= part.lengthBytes;
    out.push(header(32, (b) => encodeDataChunkHeader(b, 0, c.hi, c.lo, part.offsetBytes + at, len, last)), readData(part.offsetBytes + at, len));
  }
  return concatBytes(out);
}

/** Chunks placed anywhere around the read: overlapping, leaving gaps, or outside it. */
function adversarialReply(part: FuzzPart, c: { hi: number; lo: number }, specs: readonly ChunkSpec[]): Uint8Array {
  const out: Uint8Array[] = [];
  for (const s of specs) {
    const offsetBytes = Math.max(0, part.offsetBytes + Math.floor(s.start * part.lengthBytes));
    const len = Math.max(1, Math.floor(s.length * part.lengthBytes));
    const flags = s.done ? ReplyFlag.DONE : 0;
    if (s.kind === 'data') {
      out.push(header(32, (b) => encodeDataChunkHeader(b, 0, c.hi, c.lo, offsetBytes, len, s.done)), readData(offsetBytes, len));
    } else if (s.kind === 'hole') {
      out.push(header(32, (b) => {
        encodeChunkHeader(b, 0, flags, ReplyType.OFFSET_HOLE, c.hi, c.lo, 12);
        const dv = new DataView(b.buffer);
        dv.setUint32(20, Math.floor(offsetBytes / 2 ** 32));
        dv.setUint32(24, offsetBytes >>> 0);
        dv.setUint32(28, len);
        return 32;
      }));
    } else if (s.kind === 'error') {
      out.push(header(64, (b) => { const n = encodeErrorChunk(b, 0, c.hi, c.lo, 5); b[4] = 0; b[5] = flags; return n; }));
    } else {
      out.push(header(32, (b) => encodeChunkHeader(b, 0, flags, ReplyType.NONE, c.hi, c.lo, 0)));
    }
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
  structured: fc.boolean(),
  order: fc.array(fc.nat({ max: 5 }), { minLength: 6, maxLength: 6 }),
  pieces: fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 6, maxLength: 6 }),
  errnos: fc.array(fc.constantFrom(0, 0, 0, 0, 1, 5, 22, 28, 75, 95, 999), { minLength: 6, maxLength: 6 }),
  cuts: cuts(12),
});

/** Replies in a shuffled order (the server may complete requests in any order). */
function order<T>(items: readonly T[], keys: readonly number[]): T[] {
  return items.map((item, i) => ({ item, key: (keys[i] ?? 0) * 16 + i })).sort((a, b) => a.key - b.key).map((x) => x.item);
}

describe('fuzz: NBD client reply parsing (ClientConnection over a fake socket)', () => {
  it('honest reply streams in any order and chunking complete every request with the right bytes', () => {
    fuzz('nbd client honest replies', fc.property(scenario, (s) => {
      const h = start(s.parts, s.structured);
      const stream = concatBytes(order(h.parts, s.order).map((p) => honestReply(p, h.cookies[p.id]!, s.structured, s.pieces[p.id]!, s.errnos[p.id]!)));
      feed(h, stream, s.cuts);
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
      }
    }), 1500);
  });

  it('byte-mutated reply streams: no exception escapes, each request ends once, no write outside its buffer', () => {
    fuzz('nbd client mutated replies', fc.property(scenario, mutations(4), (s, muts) => {
      const h = start(s.parts, s.structured);
      const stream = concatBytes(order(h.parts, s.order).map((p) => honestReply(p, h.cookies[p.id]!, s.structured, s.pieces[p.id]!, s.errnos[p.id]!)));
      feed(h, applyMutations(stream, muts), s.cuts);
      checkAlways(h);
    }), 3000);
  });

  it('adversarial chunk layouts: a READ reported successful has every byte written, exactly once', () => {
    fuzz('nbd client adversarial chunks', fc.property(scenario, fc.array(fc.array(chunkSpec, { minLength: 1, maxLength: 5 }), { minLength: 6, maxLength: 6 }), (s, layouts) => {
      const h = start(s.parts, true);
      const stream = concatBytes(order(h.parts, s.order).map((p) => (p.type === Cmd.READ ? adversarialReply(p, h.cookies[p.id]!, layouts[p.id]!) : honestReply(p, h.cookies[p.id]!, true, 1, 0))));
      feed(h, stream, s.cuts);
      checkAlways(h);
      checkReadsComplete(h);
    }), 3000);
  });
});
