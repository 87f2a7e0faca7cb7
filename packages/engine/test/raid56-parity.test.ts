// Pure raid5/6 maths: GF(2^8) against known vectors and a bitwise reference, P/Q generation and
// every recovery case on seeded random data (word and byte paths), read-modify-write, the
// syndrome check that locates a bad data chunk, and the stripe geometry and unit planning.
import { describe, expect, it } from 'vitest';
import { gfDiv, gfInv, gfLog, gfMul, gfPow2, mulRow } from '../src/datapath/gf256.js';
import { checkParity, reconstruct, rmwUpdate, syndromes } from '../src/datapath/parity.js';
import { indexRole, mapParityData, parityGeometry, roleIndex, segmentBytesFor, unitsOf } from '../src/datapath/map-parity.js';
import { planRead, planWrite } from '../src/datapath/stripe-plan.js';
import { ABSENT, READABLE, WRITABLE } from '../src/datapath/stripe-io.js';
import { rng } from './helpers.js';
import { refMul, refPQ, refPow2, refRoles } from './raid56-ref.js';

const KiB = 1024;

function randomBytes(next: (bound: number) => number, len: number): Uint8Array {
  return Uint8Array.from({ length: len }, () => next(256));
}

/** Buffers carved from one ArrayBuffer at `shift` (1: unaligned, byte path; 0: word path). */
function buffers(count: number, len: number, shift: number): Uint8Array[] {
  const stride = len + 8;
  const mem = new ArrayBuffer(count * stride + 8);
  return Array.from({ length: count }, (_, i) => new Uint8Array(mem, i * stride + shift, len));
}

describe('GF(2^8), polynomial 0x11d, generator 2', () => {
  it('matches the Linux raid6 exponent table and a bitwise multiply for all 65536 products', () => {
    expect(Array.from({ length: 16 }, (_, i) => gfPow2(i))).toEqual([1, 2, 4, 8, 16, 32, 64, 128, 0x1d, 0x3a, 0x74, 0xe8, 0xcd, 0x87, 0x13, 0x26]);
    expect(gfPow2(255)).toBe(1);
    expect(gfPow2(-1)).toBe(gfInv(2));
    expect(gfInv(2)).toBe(0x8e);
    expect(gfLog(0x1d)).toBe(8);
    for (let a = 0; a < 256; a++) {
      const row = mulRow(a);
      for (let b = 0; b < 256; b++) {
        const want = refMul(a, b);
        if (gfMul(a, b) !== want || row[b] !== want) throw new Error(`${a} * ${b}: got ${gfMul(a, b)}/${row[b]}, want ${want}`);
      }
    }
    for (let a = 1; a < 256; a++) expect(gfMul(a, gfInv(a))).toBe(1);
    expect(gfDiv(gfMul(0x53, 0xca), 0xca)).toBe(0x53);
    expect(() => gfInv(0)).toThrow(/inverse of 0/);
  });
});

describe('P and Q', () => {
  for (const shift of [0, 1]) {
    it(`generation equals the reference (${shift === 0 ? 'word' : 'byte'} path, odd lengths)`, () => {
      const next = rng(11 + shift);
      for (let round = 0; round < 20; round++) {
        const k = 1 + next(9);
        const len = 1 + next(3000);
        const bufs = buffers(k + 2, len, shift);
        for (let j = 0; j < k; j++) bufs[j]!.set(randomBytes(next, len));
        syndromes(bufs.slice(0, k), bufs[k]!, bufs[k + 1]!);
        const ref = refPQ(bufs.slice(0, k));
        expect(Buffer.compare(bufs[k]!, ref.p)).toBe(0);
        expect(Buffer.compare(bufs[k + 1]!, ref.q)).toBe(0);
      }
    });
  }

  it('recovers every loss the parity covers (raid5: 1; raid6: 2 of data/P/Q), seeded random', () => {
    const next = rng(99);
    for (let round = 0; round < 40; round++) {
      const np = (1 + next(2)) as 1 | 2;
      const k = 2 + next(7);
      const len = 4 * (1 + next(512)) + (round % 3);
      const bufs = buffers(k + np, len, round % 2);
      for (let j = 0; j < k; j++) bufs[j]!.set(randomBytes(next, len));
      syndromes(bufs.slice(0, k), bufs[k]!, np === 2 ? bufs[k + 1]! : null);
      const good = bufs.map((b) => b.slice());
      const lost: number[][] = [];
      for (let a = 0; a < k + np; a++) {
        lost.push([a]);
        if (np === 2) for (let b = a + 1; b < k + np; b++) lost.push([a, b]);
      }
      for (const fails of lost) {
        for (const f of fails) bufs[f]!.fill(0xa5);
        reconstruct(bufs, k, np, fails);
        for (let e = 0; e < k + np; e++) expect(Buffer.compare(bufs[e]!, good[e]!), `k=${k} np=${np} fails=${fails.join(',')} index ${e}`).toBe(0);
      }
    }
  });

  it('a lost data chunk comes back from Q alone when P is lost too (data + P case)', () => {
    const next = rng(5);
    const k = 5;
    const bufs = buffers(k + 2, 1000, 0);
    for (let j = 0; j < k; j++) bufs[j]!.set(randomBytes(next, 1000));
    syndromes(bufs.slice(0, k), bufs[k]!, bufs[k + 1]!);
    const want = bufs[3]!.slice();
    bufs[3]!.fill(0);
    reconstruct([...bufs.slice(0, k), null, bufs[k + 1]!], k, 2, [3]);
    expect(Buffer.compare(bufs[3]!, want)).toBe(0);
    expect(() => reconstruct([...bufs.slice(0, k), null, null], k, 2, [3])).toThrow(/needs P or Q/);
  });

  it('read-modify-write of one data chunk gives the parity of the new data', () => {
    const next = rng(7);
    for (let round = 0; round < 20; round++) {
      const k = 2 + next(6);
      const len = 1 + next(2000);
      const bufs = buffers(k + 2, len, round % 2);
      for (let j = 0; j < k; j++) bufs[j]!.set(randomBytes(next, len));
      syndromes(bufs.slice(0, k), bufs[k]!, bufs[k + 1]!);
      const j = next(k);
      const old = bufs[j]!.slice();
      bufs[j]!.set(randomBytes(next, len));
      rmwUpdate(bufs[k]!, bufs[k + 1]!, old, bufs[j]!, j);
      const ref = refPQ(bufs.slice(0, k));
      expect(Buffer.compare(bufs[k]!, ref.p)).toBe(0);
      expect(Buffer.compare(bufs[k + 1]!, ref.q)).toBe(0);
    }
  });

  it('the check finds a wrong P, a wrong Q, and locates a wrong data chunk (raid6)', () => {
    const next = rng(3);
    const k = 4;
    const len = 512;
    const bufs = buffers(k + 4, len, 0);
    for (let j = 0; j < k; j++) bufs[j]!.set(randomBytes(next, len));
    syndromes(bufs.slice(0, k), bufs[k]!, bufs[k + 1]!);
    const data = bufs.slice(0, k);
    const run = () => checkParity(data, bufs[k]!, bufs[k + 1]!, bufs[k + 2]!, bufs[k + 3]!);
    expect(run()).toEqual({ pBad: false, qBad: false, badData: [], unlocatable: false, mismatchedBytes: 0 });
    bufs[k]![10] ^= 1;
    expect(run()).toMatchObject({ pBad: true, qBad: false, badData: [] });
    bufs[k]![10] ^= 1;
    bufs[k + 1]![20] ^= 0x40;
    expect(run()).toMatchObject({ pBad: false, qBad: true, badData: [] });
    bufs[k + 1]![20] ^= 0x40;
    bufs[2]![300] ^= 0x77;
    expect(run()).toMatchObject({ pBad: false, qBad: false, badData: [2], mismatchedBytes: 1 });
    expect(checkParity(data, bufs[k]!, null, bufs[k + 2]!, null)).toMatchObject({ pBad: true });
  });
});

describe('raid5/6 geometry and planning', () => {
  const geom = (layout: 'raid5' | 'raid6', n: number, chunk = 64 * KiB) => parityGeometry({
    layout, chunkBytes: chunk, sizeBytes: (n - (layout === 'raid5' ? 1 : 2)) * 16 * chunk,
    elements: Array.from({ length: n }, () => ({ dataOffsetBytes: 4 * 1024 * KiB, dataSizeBytes: 16 * chunk })),
  });

  it('rotates parity left-symmetric like md, and roles map back to indices', () => {
    for (const [layout, n, np] of [['raid5', 3, 1], ['raid5', 5, 1], ['raid6', 4, 2], ['raid6', 6, 2]] as const) {
      const g = geom(layout, n);
      for (let row = 0; row < 2 * n; row++) {
        const ref = refRoles(n, np, row);
        expect(indexRole(g, row, g.k)).toBe(ref.p);
        if (np === 2) expect(indexRole(g, row, g.k + 1)).toBe(ref.q);
        ref.data.forEach((role, j) => expect(indexRole(g, row, j)).toBe(role));
        for (let role = 0; role < n; role++) expect(indexRole(g, row, roleIndex(g, row, role))).toBe(role);
      }
    }
    expect(refPow2(8)).toBe(0x1d);
  });

  it('maps data reads chunk by chunk and cuts writes into units with one touched set each', () => {
    const g = geom('raid5', 4);
    const x = mapParityData(g, 60 * KiB, 8 * KiB);
    expect(x.map((e) => [e.role, e.elementOffsetBytes - 4 * 1024 * KiB, e.lengthBytes, e.bufferOffsetBytes])).toEqual([[0, 60 * KiB, 4 * KiB, 0], [1, 0, 4 * KiB, 4 * KiB]]);
    const units = unitsOf(g, 4 * KiB, 3 * 64 * KiB, 64 * KiB);
    expect(units.map((u) => [u.row, u.a, u.b, u.touched.join('')])).toEqual([[0, 0, 4 * KiB, '12'], [0, 4 * KiB, 64 * KiB, '012'], [1, 0, 4 * KiB, '0']]);
    expect(unitsOf(g, 0, 3 * 64 * KiB, 16 * KiB)).toHaveLength(4);
    expect(segmentBytesFor(6, 64 * KiB, 256 * KiB, 4, 1, 512 * KiB)).toBe(64 * KiB);
    expect(segmentBytesFor(8, 64 * KiB, 64 * KiB, 1, 1, 512 * KiB)).toBe(4 * KiB);
    expect(segmentBytesFor(40, 64 * KiB, 8 * KiB, 1, 1, 512 * KiB)).toBe(0);
  });

  it('chooses full-stripe, RCW or RMW by reads, and degraded plans that still work', () => {
    const all = () => READABLE;
    const r5 = { k: 4, np: 1 as const };
    expect(planWrite(r5, [0, 1, 2, 3], all)).toMatchObject({ kind: 'rcw', reads: [], writes: [0, 1, 2, 3, 4] });
    expect(planWrite(r5, [1], all)).toMatchObject({ kind: 'rmw', reads: [5 + 1, 4], writes: [1, 4], buffers: 3 });
    expect(planWrite(r5, [0, 1, 2], all)).toMatchObject({ kind: 'rcw', reads: [3] });
    const state = (lost: number, s = ABSENT) => (e: number) => (e === lost ? s : READABLE);
    expect(planWrite(r5, [1], state(4))).toMatchObject({ kind: 'direct', writes: [1], reads: [] });
    expect(planWrite(r5, [1], state(1))).toMatchObject({ kind: 'rcw', writes: [4], reads: [0, 2, 3] });
    expect(planWrite(r5, [1], state(3))).toMatchObject({ kind: 'rmw', writes: [1, 4] });
    expect(planWrite(r5, [0, 1, 2], state(3, WRITABLE))).toMatchObject({ kind: 'rmw', writes: [0, 1, 2, 4] });
    expect(() => planWrite(r5, [1], (e) => (e < 2 ? ABSENT : READABLE))).toThrow(/2 lost/);
    const r6 = { k: 3, np: 2 as const };
    expect(planWrite(r6, [0], (e) => (e === 1 || e === 3 ? ABSENT : READABLE))).toMatchObject({ kind: 'rmw', writes: [0, 4] });
    expect(planWrite(r6, [0], (e) => (e <= 1 ? ABSENT : READABLE))).toMatchObject({ kind: 'recon', lost: [0, 1], reads: [2, 3, 4], writes: [3, 4] });
    expect(planRead(r6, [0, 1], all)).toEqual({ direct: true, reads: [], lost: [] });
    expect(planRead(r6, [0], (e) => (e === 0 || e === 1 ? ABSENT : READABLE))).toEqual({ direct: false, reads: [2, 3, 4], lost: [0, 1] });
    expect(planRead(r5, [0], state(0))).toEqual({ direct: false, reads: [1, 2, 3, 4], lost: [0] });
    expect(() => planRead(r5, [0], (e) => (e === 0 || e === 4 ? ABSENT : READABLE))).toThrow(/cannot rebuild/);
  });
});
