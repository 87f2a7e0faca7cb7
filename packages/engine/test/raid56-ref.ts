// Reference raid5/6 maths and layout for the tests, written apart from the engine's modules
// (bitwise GF(2^8) multiply, the md left-symmetric rotation spelled out), so a test that
// recomputes P and Q from leg files does not trust the code it checks.

/** a * b in GF(2^8) modulo x^8 + x^4 + x^3 + x^2 + 1, one bit at a time. */
export function refMul(a: number, b: number): number {
  let r = 0;
  for (let i = 0; i < 8; i++) {
    if (b & 1) r ^= a;
    const carry = a & 0x80;
    a = (a << 1) & 0xff;
    if (carry) a ^= 0x1d;
    b >>= 1;
  }
  return r;
}

/** g^j with g = 2. */
export function refPow2(j: number): number {
  let r = 1;
  for (let i = 0; i < j; i++) r = refMul(r, 2);
  return r;
}

/** P = XOR of data; Q = sum of 2^j * D_j. */
export function refPQ(data: readonly Uint8Array[]): { p: Uint8Array; q: Uint8Array } {
  const len = data[0]!.length;
  const p = new Uint8Array(len);
  const q = new Uint8Array(len);
  data.forEach((d, j) => {
    const c = refPow2(j);
    const row = new Uint8Array(256).map((_, x) => refMul(c, x));
    for (let i = 0; i < len; i++) {
      p[i] ^= d[i]!;
      q[i] ^= row[d[i]!]!;
    }
  });
  return { p, q };
}

/**
 * md's left-symmetric layout: in row r of n roles, P is on role n-1-(r mod n); raid6 puts Q on the
 * next role; data index j sits on (P + parity count + j) mod n.
 */
export function refRoles(n: number, np: 1 | 2, row: number): { p: number; q: number; data: number[] } {
  const p = n - 1 - (row % n);
  const q = np === 2 ? (p + 1) % n : -1;
  const data = Array.from({ length: n - np }, (_, j) => (p + np + j) % n);
  return { p, q, data };
}
