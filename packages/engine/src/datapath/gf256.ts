// Arithmetic in GF(2^8) as Linux raid6 uses it: polynomial x^8 + x^4 + x^3 + x^2 + 1 (0x11d),
// generator 2. Q = sum over data index j of g^j * D_j. Pure and table-driven: the tables are
// built once at load (EXP doubled so a sum of two logs indexes it without a modulo; MUL is the
// full 256 x 256 product table, 64 KiB, so a multiply by a constant is one lookup per byte).

export const GF_POLY = 0x11d;
/** The generator: g^j is the Q coefficient of data index j. */
export const GF_GENERATOR = 2;

const EXP = new Uint8Array(512);
const LOG = new Uint8Array(256);
const MUL = new Uint8Array(256 * 256);

(function build(): void {
  let x = 1;
  for (let i = 0; i < 255; i++) {
    EXP[i] = x;
    LOG[x] = i;
    x <<= 1;
    if (x & 0x100) x ^= GF_POLY;
  }
  for (let i = 255; i < 512; i++) EXP[i] = EXP[i - 255]!;
  for (let a = 1; a < 256; a++) {
    for (let b = 1; b < 256; b++) MUL[(a << 8) | b] = EXP[LOG[a]! + LOG[b]!]!;
  }
})();

function checkByte(a: number, what: string): void {
  if (!(Number.isInteger(a) && a >= 0 && a < 256)) throw new RangeError(`GF(2^8) ${what} ${a} is not a byte`);
}

export function gfMul(a: number, b: number): number {
  return MUL[((a & 0xff) << 8) | (b & 0xff)]!;
}

/** g^i for any integer i (negative allowed: g^-i is the inverse of g^i). */
export function gfPow2(i: number): number {
  if (!Number.isInteger(i)) throw new RangeError(`GF(2^8) exponent ${i} is not an integer`);
  return EXP[((i % 255) + 255) % 255]!;
}

export function gfLog(a: number): number {
  checkByte(a, 'log argument');
  if (a === 0) throw new RangeError('GF(2^8) log of 0');
  return LOG[a]!;
}

export function gfInv(a: number): number {
  checkByte(a, 'inverse argument');
  if (a === 0) throw new RangeError('GF(2^8) inverse of 0');
  return EXP[255 - LOG[a]!]!;
}

export function gfDiv(a: number, b: number): number {
  return gfMul(a, gfInv(b));
}

/** The 256-byte row of products c * x for every x: the caller indexes it with data bytes. */
export function mulRow(c: number): Uint8Array {
  checkByte(c, 'constant');
  return MUL.subarray(c << 8, (c + 1) << 8);
}
