// RAID5/6 parity over equal-length byte buffers, pure (no shared memory, no I/O): P is the XOR of
// the data buffers, Q = sum of g^j * D_j over GF(2^8) (gf256.ts), j the data index in the stripe.
// Buffers are indexed 0..k-1 (data), k (P), k+1 (Q, raid6). The bulk runs on 32-bit words when
// every buffer is 4-byte aligned (the slab's are): a byte-wise multiply by 2 in each lane of a
// word is Linux raid6's int.uc trick; constant multiplies (recovery, RMW) use table rows.
import { gfInv, gfLog, gfPow2, mulRow } from './gf256.js';

function words(b: Uint8Array): Int32Array {
  return new Int32Array(b.buffer, b.byteOffset, b.length >>> 2);
}

function aligned(bufs: readonly (Uint8Array | null)[]): boolean {
  for (const b of bufs) if (b !== null && (b.byteOffset & 3) !== 0) return false;
  return true;
}

/** Multiplies each of the four bytes of a word by 2 in GF(2^8). */
function mul2Word(v: number): number {
  const hi = v & 0x80808080;
  return ((v << 1) & 0xfefefefe) ^ (((hi << 1) - (hi >>> 7)) & 0x1d1d1d1d);
}

function mul2Byte(b: number): number {
  return ((b << 1) ^ (b & 0x80 ? 0x1d : 0)) & 0xff;
}

function checkLengths(len: number, bufs: readonly (Uint8Array | null)[]): void {
  for (const b of bufs) if (b !== null && b.length !== len) throw new RangeError(`parity buffers differ in length (${b.length} vs ${len})`);
}

/** dst ^= src. */
export function xorInto(dst: Uint8Array, src: Uint8Array): void {
  checkLengths(dst.length, [src]);
  let from = 0;
  if (aligned([dst, src])) {
    const d = words(dst);
    const s = words(src);
    for (let w = 0; w < d.length; w++) d[w] = d[w]! ^ s[w]!;
    from = d.length << 2;
  }
  for (let i = from; i < dst.length; i++) dst[i] = dst[i]! ^ src[i]!;
}

/** dst ^= c * src (c a GF(2^8) constant). */
export function mulXorInto(dst: Uint8Array, src: Uint8Array, c: number): void {
  checkLengths(dst.length, [src]);
  const row = mulRow(c);
  for (let i = 0; i < dst.length; i++) dst[i] = dst[i]! ^ row[src[i]!]!;
}

/**
 * P and/or Q of the data buffers, treating `skip(j)` data as zero (never read, so an output may
 * alias a skipped buffer: recovery computes partial syndromes into the buffers it rebuilds).
 */
export function syndromes(data: readonly Uint8Array[], p: Uint8Array | null, q: Uint8Array | null, skip: (j: number) => boolean = () => false): void {
  const out = p ?? q;
  if (out === null || data.length === 0) throw new RangeError('syndromes: nothing to compute');
  const len = out.length;
  checkLengths(len, [...data, p, q]);
  let from = 0;
  if (aligned([...data, p, q])) {
    const dw = data.map((d, j) => (skip(j) ? null : words(d)));
    if (p !== null) from = xorWords(dw, words(p));
    if (q !== null) from = hornerWords(dw, words(q));
  }
  for (let i = from; i < len; i++) {
    let wp = 0;
    let wq = 0;
    for (let j = data.length - 1; j >= 0; j--) {
      const d = skip(j) ? 0 : data[j]![i]!;
      wp ^= d;
      wq = mul2Byte(wq) ^ d;
    }
    if (p !== null) p[i] = wp;
    if (q !== null) q[i] = wq;
  }
}

/** P over words; returns the byte offset where the word part ended. Data-major loops stay tight. */
function xorWords(dw: readonly (Int32Array | null)[], pw: Int32Array): number {
  pw.fill(0);
  for (const d of dw) {
    if (d === null) continue;
    for (let w = 0; w < pw.length; w++) pw[w] = pw[w]! ^ d[w]!;
  }
  return pw.length << 2;
}

/** Q by Horner's rule from the highest data index down: q = q * g + D_j. */
function hornerWords(dw: readonly (Int32Array | null)[], qw: Int32Array): number {
  qw.fill(0);
  for (let j = dw.length - 1; j >= 0; j--) {
    const d = dw[j];
    if (d === null || d === undefined) {
      for (let w = 0; w < qw.length; w++) qw[w] = mul2Word(qw[w]!);
    } else {
      for (let w = 0; w < qw.length; w++) qw[w] = mul2Word(qw[w]!) ^ d[w]!;
    }
  }
  return qw.length << 2;
}

/** D_x from P and the other data. */
export function recoverFromP(data: readonly Uint8Array[], x: number, p: Uint8Array): void {
  const dx = data[x]!;
  dx.set(p);
  for (let j = 0; j < data.length; j++) if (j !== x) xorInto(dx, data[j]!);
}

/** D_x from Q and the other data: D_x = (Q + Q_x) / g^x, Q_x being Q with D_x = 0. */
export function recoverFromQ(data: readonly Uint8Array[], x: number, q: Uint8Array): void {
  const dx = data[x]!;
  syndromes(data, null, dx, (j) => j === x);
  const row = mulRow(gfPow2(-x));
  for (let i = 0; i < dx.length; i++) dx[i] = row[q[i]! ^ dx[i]!]!;
}

/**
 * Two lost data buffers x < y from P and Q (Linux raid6 recov.c): with P' = P + Pxy = D_x + D_y
 * and Q' = Q + Qxy = g^x D_x + g^y D_y, D_y = P' / (g^(y-x) + 1) + Q' / (g^x + g^y), D_x = P' + D_y.
 */
export function recoverTwoData(data: readonly Uint8Array[], x: number, y: number, p: Uint8Array, q: Uint8Array): void {
  if (!(x >= 0 && x < y && y < data.length)) throw new RangeError(`recoverTwoData: bad indices ${x}, ${y}`);
  const dx = data[x]!;
  const dy = data[y]!;
  const skip = (j: number): boolean => j === x || j === y;
  syndromes(data, dx, dy, skip); // dx = Pxy, dy = Qxy
  const pbmul = mulRow(gfInv(gfPow2(y - x) ^ 1));
  const qmul = mulRow(gfInv(gfPow2(x) ^ gfPow2(y)));
  for (let i = 0; i < dx.length; i++) {
    const px = p[i]! ^ dx[i]!;
    const db = pbmul[px]! ^ qmul[q[i]! ^ dy[i]!]!;
    dy[i] = db;
    dx[i] = db ^ px;
  }
}

/**
 * Recomputes the buffers at `fails` (indices: data < k, k = P, k + 1 = Q) from the others. Every
 * data buffer must be present (a lost one is an output, listed in `fails`); P or Q may be null
 * when not needed. At most `np` data buffers can be rebuilt, and each needs a parity to do it.
 */
export function reconstruct(bufs: readonly (Uint8Array | null)[], k: number, np: 1 | 2, fails: readonly number[]): void {
  if (bufs.length !== k + np) throw new RangeError(`reconstruct: ${bufs.length} buffers for k=${k} np=${np}`);
  const data = bufs.slice(0, k).map((b, j) => {
    if (b === null) throw new RangeError(`reconstruct: data ${j} has no buffer`);
    return b;
  });
  const p = bufs[k] ?? null;
  const q = np === 2 ? (bufs[k + 1] ?? null) : null;
  const lostData = fails.filter((f) => f < k).sort((a, b) => a - b);
  const pOut = fails.includes(k);
  const qOut = np === 2 && fails.includes(k + 1);
  if (lostData.length > np) throw new RangeError(`reconstruct: ${lostData.length} data buffers lost, parity covers ${np}`);
  const pIn = pOut ? null : p;
  const qIn = qOut ? null : q;
  if (lostData.length === 2) {
    if (pIn === null || qIn === null) throw new RangeError('reconstruct: two data buffers need both P and Q');
    recoverTwoData(data, lostData[0]!, lostData[1]!, pIn, qIn);
  } else if (lostData.length === 1) {
    if (pIn !== null) recoverFromP(data, lostData[0]!, pIn);
    else if (qIn !== null) recoverFromQ(data, lostData[0]!, qIn);
    else throw new RangeError('reconstruct: a lost data buffer needs P or Q');
  }
  if ((pOut && p === null) || (qOut && q === null)) throw new RangeError('reconstruct: parity output without a buffer');
  if (pOut || qOut) syndromes(data, pOut ? p : null, qOut ? q : null);
}

/** Read-modify-write of data index j: P += old + new, Q += g^j (old + new) (a null parity is left out). Leaves old = old + new. */
export function rmwUpdate(p: Uint8Array | null, q: Uint8Array | null, oldData: Uint8Array, newData: Uint8Array, j: number): void {
  xorInto(oldData, newData);
  if (p !== null) xorInto(p, oldData);
  if (q !== null && j === 0) xorInto(q, oldData);
  else if (q !== null) mulXorInto(q, oldData, gfPow2(j));
}

export interface ParityCheck {
  readonly pBad: boolean;
  readonly qBad: boolean;
  /** Data indices a raid6 syndrome located as wrong (P and Q both off by a consistent amount). */
  readonly badData: readonly number[];
  /** Bytes where P and Q disagree with the data in a way no single buffer explains. */
  readonly unlocatable: boolean;
  /** Byte positions where the stored parity disagrees with the data. */
  readonly mismatchedBytes: number;
}

/**
 * Compares stored P (and Q) with the data; scratchP/scratchQ receive the computed syndromes.
 * Where both differ, the ratio (Q + Q') / (P + P') = g^z names data index z (if z < k).
 */
export function checkParity(data: readonly Uint8Array[], p: Uint8Array, q: Uint8Array | null, scratchP: Uint8Array, scratchQ: Uint8Array | null): ParityCheck {
  syndromes(data, scratchP, q === null ? null : scratchQ);
  let pBad = false;
  let qBad = false;
  let unlocatable = false;
  let mismatchedBytes = 0;
  const bad = new Set<number>();
  for (let i = 0; i < p.length; i++) {
    const dp = p[i]! ^ scratchP[i]!;
    const dq = q === null ? 0 : q[i]! ^ scratchQ![i]!;
    if (dp === 0 && dq === 0) continue;
    mismatchedBytes++;
    if (q === null || dq === 0) pBad = true;
    else if (dp === 0) qBad = true;
    else {
      const z = locate(dp, dq);
      if (z < data.length) bad.add(z);
      else unlocatable = true;
    }
  }
  return { pBad, qBad, badData: [...bad].sort((a, b) => a - b), unlocatable, mismatchedBytes };
}

/** z with g^z = dq / dp (both non-zero). */
function locate(dp: number, dq: number): number {
  return (gfLog(dq) - gfLog(dp) + 255) % 255;
}
