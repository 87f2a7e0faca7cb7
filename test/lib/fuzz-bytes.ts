// Arbitraries and helpers shared by the codec fuzz tests: mutations of a valid encoding (bit flips,
// byte and length-field edits, truncation, insertion, deletion), random chunkings of a stream, and
// a view of the input inside a larger buffer (a decoder that reads past its view sees other bytes).
import fc from 'fast-check';

/** Values that break length and offset checks more often than uniform random ones. */
export const INTERESTING_U32: readonly number[] = [
  0, 1, 2, 3, 4, 7, 8, 15, 16, 17, 28, 48, 255, 256, 4095, 4096, 4097, 0x7fff, 0x8000, 0xffff, 0x10000, 0xffffff, 0x1000000,
  0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff,
];

export const interestingU32 = (): fc.Arbitrary<number> =>
  fc.oneof({ arbitrary: fc.constantFrom(...INTERESTING_U32), weight: 2 }, { arbitrary: fc.nat({ max: 0xffffffff }), weight: 1 });

export type Mutation =
  | { readonly op: 'flip'; readonly at: number; readonly bit: number }
  | { readonly op: 'set'; readonly at: number; readonly value: number }
  | { readonly op: 'u32'; readonly at: number; readonly value: number; readonly littleEndian: boolean }
  | { readonly op: 'u16'; readonly at: number; readonly value: number; readonly littleEndian: boolean }
  | { readonly op: 'truncate'; readonly at: number }
  | { readonly op: 'insert'; readonly at: number; readonly bytes: Uint8Array }
  | { readonly op: 'delete'; readonly at: number; readonly count: number }
  | { readonly op: 'duplicate'; readonly at: number; readonly count: number };

// Positions are drawn as plain numbers and taken modulo the input length when applied.
const pos = fc.nat({ max: 1 << 20 });

export const mutation = (): fc.Arbitrary<Mutation> =>
  fc.oneof(
    { weight: 4, arbitrary: fc.record({ op: fc.constant('flip' as const), at: pos, bit: fc.nat({ max: 7 }) }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('set' as const), at: pos, value: fc.constantFrom(0, 1, 0x7f, 0x80, 0xff) }) },
    { weight: 3, arbitrary: fc.record({ op: fc.constant('u32' as const), at: pos, value: interestingU32(), littleEndian: fc.boolean() }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('u16' as const), at: pos, value: fc.constantFrom(0, 1, 0x7fff, 0x8000, 0xffff), littleEndian: fc.boolean() }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('truncate' as const), at: pos }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('insert' as const), at: pos, bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('delete' as const), at: pos, count: fc.integer({ min: 1, max: 16 }) }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('duplicate' as const), at: pos, count: fc.integer({ min: 1, max: 64 }) }) },
  );

export const mutations = (maxLength = 4): fc.Arbitrary<Mutation[]> => fc.array(mutation(), { minLength: 1, maxLength });

/** Applies mutations to a copy of `input`; `fieldsEnd` confines positions to the first bytes (headers). */
export function applyMutations(input: Uint8Array, list: readonly Mutation[], fieldsEnd = input.length): Uint8Array {
  let out: Uint8Array = input.slice();
  for (const m of list) {
    const span = Math.max(1, Math.min(fieldsEnd, out.length));
    const at = m.at % span;
    switch (m.op) {
      case 'flip':
        if (out.length > 0) out[at] = out[at]! ^ (1 << m.bit);
        break;
      case 'set':
        if (out.length > 0) out[at] = m.value;
        break;
      case 'u32':
      case 'u16': {
        const width = m.op === 'u32' ? 4 : 2;
        if (out.length < width) break;
        const where = Math.min(at, out.length - width);
        const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
        if (width === 4) dv.setUint32(where, m.value >>> 0, m.littleEndian);
        else dv.setUint16(where, m.value & 0xffff, m.littleEndian);
        break;
      }
      case 'truncate':
        out = out.slice(0, at % (out.length + 1));
        break;
      case 'insert':
        out = concatBytes([out.subarray(0, at), m.bytes, out.subarray(at)]);
        break;
      case 'delete':
        out = concatBytes([out.subarray(0, at), out.subarray(at + m.count)]);
        break;
      case 'duplicate':
        out = concatBytes([out.subarray(0, at + m.count), out.subarray(at, at + m.count), out.subarray(at + m.count)]);
        break;
    }
  }
  return out;
}

export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Cut points for splitting a stream; taken modulo the stream length when applied. */
export const cuts = (maxCuts = 8): fc.Arbitrary<number[]> => fc.array(fc.nat({ max: 1 << 20 }), { maxLength: maxCuts });

/** Splits `bytes` at the given cut points (sorted, deduplicated); every piece is non-empty. */
export function splitAt(bytes: Uint8Array, points: readonly number[]): Uint8Array[] {
  if (bytes.length === 0) return [];
  const at = [...new Set(points.map((p) => p % bytes.length).filter((p) => p > 0))].sort((a, b) => a - b);
  const pieces: Uint8Array[] = [];
  let from = 0;
  for (const p of [...at, bytes.length]) {
    pieces.push(bytes.slice(from, p));
    from = p;
  }
  return pieces;
}

export interface Surround {
  readonly before: Uint8Array;
  readonly after: Uint8Array;
}

export const surround = (): fc.Arbitrary<Surround> =>
  fc.record({ before: fc.uint8Array({ maxLength: 24 }), after: fc.uint8Array({ minLength: 1, maxLength: 4200 }) });

/** `bytes` as a view in the middle of a larger buffer whose other bytes are `s`. */
export function embedded(bytes: Uint8Array, s: Surround): Uint8Array {
  const whole = concatBytes([s.before, bytes, s.after]);
  return whole.subarray(s.before.length, s.before.length + bytes.length);
}

/** Random bytes, biased towards short inputs and towards lengths around `typical`. */
export const randomBytes = (typical: number, maxLength = typical * 2 + 64): fc.Arbitrary<Uint8Array> =>
  fc.oneof(
    fc.uint8Array({ maxLength: Math.min(maxLength, 64) }),
    fc.uint8Array({ minLength: typical, maxLength: typical }),
    fc.uint8Array({ maxLength }),
  );
