// raid5/6 parity recomputed from leg files, independently of the engine (bitwise GF(2^8) with
// polynomial 0x11d and generator 2, md's left-symmetric rotation): the rows whose P or Q on disk
// differs from what their data chunks give.
import { open } from 'node:fs/promises';
import { DATA_OFFSET_BYTES } from './files.js';

function mul(a: number, b: number): number {
  let r = 0;
  for (let i = 0; i < 8; i++) {
    if (b & 1) r ^= a;
    a = ((a << 1) ^ (a & 0x80 ? 0x1d : 0)) & 0xff;
    b >>= 1;
  }
  return r;
}

/** Row r of n legs: P on n-1-(r mod n), Q next (raid6), data j on (P + np + j) mod n. */
export function legRoles(n: number, np: 1 | 2, row: number): { p: number; q: number; data: number[] } {
  const p = n - 1 - (row % n);
  return { p, q: np === 2 ? (p + 1) % n : -1, data: Array.from({ length: n - np }, (_, j) => (p + np + j) % n) };
}

/** Rows in [0, rows) with wrong parity; legs by role (null: a leg to leave out, e.g. a dead remote). */
export async function badParityRows(legs: readonly (string | null)[], np: 1 | 2, chunkBytes: number, rows: number): Promise<number[]> {
  const n = legs.length;
  const k = n - np;
  const tables = Array.from({ length: k }, (_, j) => {
    let c = 1;
    for (let i = 0; i < j; i++) c = mul(c, 2);
    return Uint8Array.from({ length: 256 }, (_, x) => mul(c, x));
  });
  const handles = await Promise.all(legs.map((f) => (f === null ? null : open(f, 'r'))));
  const bad: number[] = [];
  try {
    const chunk = (role: number, row: number): Promise<Buffer> => {
      const buf = Buffer.alloc(chunkBytes);
      return handles[role]!.read(buf, 0, chunkBytes, DATA_OFFSET_BYTES + row * chunkBytes).then(() => buf);
    };
    for (let row = 0; row < rows; row++) {
      const roles = legRoles(n, np, row);
      if ([...roles.data, roles.p, roles.q].some((r) => r >= 0 && handles[r] === null)) continue;
      const data = await Promise.all(roles.data.map((r) => chunk(r, row)));
      const p = Buffer.alloc(chunkBytes);
      const q = Buffer.alloc(chunkBytes);
      data.forEach((d, j) => {
        const t = tables[j]!;
        for (let i = 0; i < chunkBytes; i++) {
          p[i] = p[i]! ^ d[i]!;
          q[i] = q[i]! ^ t[d[i]!]!;
        }
      });
      const pOk = p.equals(await chunk(roles.p, row));
      const qOk = np === 1 || q.equals(await chunk(roles.q, row));
      if (!pOk || !qOk) bad.push(row);
    }
  } finally {
    for (const h of handles) await h?.close();
  }
  return bad;
}
