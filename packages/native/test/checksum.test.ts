// Per-block checksums (issue 10): the JS CRC32C and the addon's crc32cBlocks / xxh64Blocks against
// independent bit-level references on random data, their argument errors (the same EINVAL text
// from both backends), reads in place over SharedArrayBuffers, and the fallback with the addon off.
import { existsSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it, vi } from 'vitest';

import { fuzz } from '../../../test/lib/fuzz-run.js';
import { blockChecksums, crc32cBlocksJs, type Crc32cBlocks, type Xxh64Blocks } from '../src/checksum.js';
import { crc32c } from '../src/crc32c.js';
import { addonFile } from './helpers.js';

const built = existsSync(addonFile) && process.env['ONESTACK_NATIVE'] !== 'off';
const skipReason = `addon not built (${addonFile} missing; run pnpm build:native) or ONESTACK_NATIVE=off`;

/** CRC32C one bit at a time, no tables: shares nothing with the code under test. */
function crc32cBitwise(bytes: Uint8Array): number {
  let c = -1;
  for (const byte of bytes) {
    c ^= byte;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0x82f63b78 & -(c & 1));
  }
  return ~c >>> 0;
}

/** XXH64 (seed 0) from the spec, in BigInt: slow, but independent of the crate it checks. */
function xxh64Reference(bytes: Uint8Array): bigint {
  const M = (1n << 64n) - 1n;
  const [P1, P2, P3, P4, P5] = [0x9e3779b185ebca87n, 0xc2b2ae3d27d4eb4fn, 0x165667b19e3779f9n, 0x85ebca77c2b2ae63n, 0x27d4eb2f165667c5n];
  const rotl = (x: bigint, r: bigint): bigint => ((x << r) | (x >> (64n - r))) & M;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const round = (acc: bigint, lane: bigint): bigint => (rotl((acc + lane * P2) & M, 31n) * P1) & M;
  const merge = (acc: bigint, v: bigint): bigint => (((acc ^ round(0n, v)) * P1) + P4) & M;
  let i = 0;
  let h: bigint;
  if (bytes.length >= 32) {
    const v = [(P1 + P2) & M, P2, 0n, (M + 1n - P1) & M];
    for (; i + 32 <= bytes.length; i += 32) {
      for (let lane = 0; lane < 4; lane++) v[lane] = round(v[lane]!, view.getBigUint64(i + lane * 8, true));
    }
    h = (rotl(v[0]!, 1n) + rotl(v[1]!, 7n) + rotl(v[2]!, 12n) + rotl(v[3]!, 18n)) & M;
    for (const lane of v) h = merge(h, lane);
  } else {
    h = P5;
  }
  h = (h + BigInt(bytes.length)) & M;
  for (; i + 8 <= bytes.length; i += 8) h = ((rotl(h ^ round(0n, view.getBigUint64(i, true)), 27n) * P1) + P4) & M;
  if (i + 4 <= bytes.length) { h = ((rotl(h ^ ((BigInt(view.getUint32(i, true)) * P1) & M), 23n) * P2) + P3) & M; i += 4; }
  for (; i < bytes.length; i++) h = (rotl(h ^ ((BigInt(bytes[i]!) * P5) & M), 11n) * P1) & M;
  h = ((h ^ (h >> 33n)) * P2) & M;
  h = ((h ^ (h >> 29n)) * P3) & M;
  return h ^ (h >> 32n);
}

/** Deterministic pseudo-random bytes (xorshift32), cheaper than fast-check arrays of 256 KiB. */
function fill(bytes: Uint8Array, seed: number): void {
  let x = seed | 1;
  for (let i = 0; i < bytes.length; i++) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
    bytes[i] = x & 0xff;
  }
}

/** `lengthBytes` random bytes at byte `offset` of a fresh (Shared)ArrayBuffer. */
function request(lengthBytes: number, offset: number, shared: boolean, seed: number): Uint8Array {
  const size = lengthBytes + offset + 8;
  const data = new Uint8Array(shared ? new SharedArrayBuffer(size) : new ArrayBuffer(size), offset, lengthBytes);
  fill(data, seed);
  return data;
}

const ascii = (text: string): Uint8Array => new TextEncoder().encode(text);
const geometry = fc.record({
  blockLog2: fc.integer({ min: 9, max: 16 }), blocks: fc.integer({ min: 1, max: 4 }),
  offset: fc.integer({ min: 0, max: 7 }), shared: fc.boolean(), seed: fc.integer(),
});

describe('crc32c (JS)', () => {
  it('known vectors (RFC 3720 B.4), chaining through seed, any alignment', () => {
    expect(crc32c(ascii('123456789'))).toBe(0xe3069283);
    expect(crc32c(new Uint8Array(0))).toBe(0);
    expect(crc32c(new Uint8Array(32))).toBe(0x8a9136aa);
    expect(crc32c(new Uint8Array(32).fill(0xff))).toBe(0x62a8ab43);
    expect(crc32c(Uint8Array.from({ length: 32 }, (_, i) => i))).toBe(0x46dd794e);
    expect(crc32c(Uint8Array.from({ length: 32 }, (_, i) => 31 - i))).toBe(0x113fdb5c);
    const data = request(1000, 0, false, 42);
    expect(crc32c(data.subarray(300), crc32c(data.subarray(0, 300)))).toBe(crc32c(data));
    for (let offset = 0; offset < 8; offset++) {
      const moved = request(333, offset, offset % 2 === 1, 0);
      moved.set(data.subarray(0, 333));
      expect(crc32c(moved)).toBe(crc32cBitwise(data.subarray(0, 333)));
    }
  });

  it('fuzz: equals the bitwise reference at every length and alignment', () => {
    fuzz('crc32c js vs bitwise', fc.property(fc.integer({ min: 0, max: 300 }), fc.integer({ min: 0, max: 7 }), fc.integer(), (length, offset, seed) => {
      const data = request(length, offset, false, seed);
      expect(crc32c(data)).toBe(crc32cBitwise(data));
    }), 200);
  });

  it('xxh64Reference (the test oracle) gives the published vectors', () => {
    expect(xxh64Reference(new Uint8Array(0))).toBe(0xef46db3751d8e999n);
    expect(xxh64Reference(ascii('a'))).toBe(0xd24ec4f1a98c6e5bn);
    expect(xxh64Reference(ascii('abc'))).toBe(0x44bc2cf5ad770999n);
  });
});

/** Every call both backends must refuse, and the words of the refusal. */
function expectArgumentErrors(what: 'crc32cBlocks' | 'xxh64Blocks', call: (data: unknown, blockBytes: number, out: unknown) => number,
  slots: (n: number) => Uint32Array | BigUint64Array): void {
  const data = new Uint8Array(4 * 4096);
  const bad: [unknown, number, unknown, RegExp][] = [
    [data.subarray(0, 4097), 4096, slots(2), /data.length \(4097\) must be a positive multiple of blockBytes \(4096\)/],
    [data, 1000, slots(4), /blockBytes must be a power of two in 512\.\.65536, got 1000/],
    [data, 256, slots(64), /power of two/], [data, 131072, slots(4), /power of two/],
    [data, 4096.5, slots(4), /power of two/], [data, Number.NaN, slots(4), /power of two/],
    [data, 4096, slots(3), /out holds 3 checksums, needs 4 \(one per block\)/],
    [data, 4096, new Float64Array(4), /out must be a non-empty/],
    [Array.from(data), 4096, slots(4), /data must be a non-empty Uint8Array/],
    [new Uint16Array(8192), 4096, slots(4), /data must be a non-empty Uint8Array/],
  ];
  for (const [d, blockBytes, out, message] of bad) {
    expect(() => call(d, blockBytes, out), `${blockBytes} ${String(message)}`)
      .toThrow(expect.objectContaining({ code: 'EINVAL', message: expect.stringMatching(new RegExp(`^EINVAL: ${what}: .*${message.source}`)) }));
  }
  // Checksums written over the data they cover would corrupt the blocks still to be read.
  const shared = new Uint8Array(new ArrayBuffer(8192 + 64));
  const overlapping = what === 'crc32cBlocks' ? new Uint32Array(shared.buffer, 8192 - 4, 4) : new BigUint64Array(shared.buffer, 8192 - 8, 4);
  expect(() => call(shared.subarray(0, 8192), 4096, overlapping)).toThrow(/^EINVAL: \w+: out overlaps data/);
}

describe('crc32cBlocksJs (the fallback)', () => {
  it('fuzz: one CRC per block, equal to the bitwise reference, for 512..65536-byte blocks at any alignment', () => {
    fuzz('crc32cBlocks js', fc.property(geometry, ({ blockLog2, blocks, offset, shared, seed }) => {
      const blockBytes = 2 ** blockLog2;
      const data = request(blocks * blockBytes, offset, shared, seed);
      const out = new Uint32Array(blocks + 1).fill(7);
      expect(crc32cBlocksJs(data, blockBytes, out)).toBe(blocks);
      for (let b = 0; b < blocks; b++) expect(out[b]).toBe(crc32cBitwise(data.subarray(b * blockBytes, (b + 1) * blockBytes)));
      expect(out[blocks]).toBe(7); // slots past the last block are left alone
    }), 40);
  });

  it('refuses bad arguments with EINVAL errors that say what is wrong', () => {
    expectArgumentErrors('crc32cBlocks', crc32cBlocksJs as (d: unknown, b: number, o: unknown) => number, (n) => new Uint32Array(n));
  });
});

describe.skipIf(!built)('native kernels (skipped when the addon is not built: run pnpm build:native)', () => {
  function kernels(): { crc: Crc32cBlocks; xxh: Xxh64Blocks } {
    const k = blockChecksums();
    if (k.backend !== 'native' || k.xxh64Blocks === null) throw new Error(`${skipReason}: ${k.reason}`);
    return { crc: k.crc32cBlocks, xxh: k.xxh64Blocks };
  }

  it('are chosen when the addon is loaded', () => {
    expect(blockChecksums()).toMatchObject({ backend: 'native' });
  });

  it('fuzz: crc32cBlocks agrees with the fallback, xxh64Blocks with the spec, in place over (Shared)ArrayBuffers', () => {
    const { crc, xxh } = kernels();
    fuzz('checksum blocks native', fc.property(geometry, ({ blockLog2, blocks, offset, shared, seed }) => {
      const blockBytes = 2 ** blockLog2;
      const data = request(blocks * blockBytes, offset, shared, seed);
      const crcs = new Uint32Array(blocks);
      const fallback = new Uint32Array(blocks);
      const outBuffer = shared ? new SharedArrayBuffer(8 * (blocks + 2)) : new ArrayBuffer(8 * (blocks + 2));
      const xxhs = new BigUint64Array(outBuffer, 8, blocks + 1); // at an offset: written in place too
      expect(crc(data, blockBytes, crcs)).toBe(blocks);
      expect(crc32cBlocksJs(data, blockBytes, fallback)).toBe(blocks);
      expect(crcs).toEqual(fallback);
      expect(xxh(data, blockBytes, xxhs)).toBe(blocks);
      for (let b = 0; b < blocks; b++) expect(xxhs[b]).toBe(xxh64Reference(data.subarray(b * blockBytes, (b + 1) * blockBytes)));
      expect(xxhs[blocks]).toBe(0n);
    }), 30);
  });

  it('known vectors through the addon: 512 zero bytes and a 4 KiB counting pattern', () => {
    const { crc, xxh } = kernels();
    const zeros = new Uint8Array(512);
    const counting = Uint8Array.from({ length: 4096 }, (_, i) => i & 0xff);
    const c = new Uint32Array(1);
    const x = new BigUint64Array(1);
    crc(zeros, 512, c); expect(c[0]).toBe(crc32cBitwise(zeros));
    crc(counting, 4096, c); expect(c[0]).toBe(crc32cBitwise(counting));
    xxh(zeros, 512, x); expect(x[0]).toBe(xxh64Reference(zeros));
    xxh(counting, 4096, x); expect(x[0]).toBe(xxh64Reference(counting));
  });

  it('refuse bad arguments with the fallback\'s EINVAL errors', () => {
    const { crc, xxh } = kernels();
    expectArgumentErrors('crc32cBlocks', crc as (d: unknown, b: number, o: unknown) => number, (n) => new Uint32Array(n));
    expectArgumentErrors('xxh64Blocks', xxh as (d: unknown, b: number, o: unknown) => number, (n) => new BigUint64Array(n));
    expect(() => crc(new Uint8Array(4096), 4096, new BigUint64Array(1) as unknown as Uint32Array)).toThrow(/^EINVAL: crc32cBlocks: out must be a non-empty Uint32Array/);
  });
});

describe('ONESTACK_NATIVE=off', () => {
  it('selects the JS CRC32C, no xxh64, and says why', async () => {
    const before = process.env['ONESTACK_NATIVE'];
    process.env['ONESTACK_NATIVE'] = 'off';
    vi.resetModules(); // a fresh loader, which reads the variable on first use
    try {
      const fresh = await import('../src/checksum.js');
      const k = fresh.blockChecksums();
      expect(k).toMatchObject({ backend: 'js', xxh64Blocks: null, reason: 'ONESTACK_NATIVE=off' });
      const data = request(8192, 0, false, 5);
      const out = new Uint32Array(2);
      expect(k.crc32cBlocks(data, 4096, out)).toBe(2);
      expect(out[1]).toBe(crc32cBitwise(data.subarray(4096)));
    } finally {
      if (before === undefined) delete process.env['ONESTACK_NATIVE'];
      else process.env['ONESTACK_NATIVE'] = before;
      vi.resetModules();
    }
  });
});
