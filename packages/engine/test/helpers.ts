// Small helpers shared by the engine's tests.
import * as fs from 'node:fs';

/** xorshift32, seeded: the same "random" requests and ranges every run. */
export function rng(seed: number): (bound: number) => number {
  let x = seed >>> 0 || 1;
  return (bound) => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x % bound;
  };
}

/** Bytes [offset, offset + length) of a file; past its end reads as zeroes. */
export function readFileRange(p: string, offsetBytes: number, lengthBytes: number): Uint8Array {
  const fd = fs.openSync(p, 'r');
  try {
    const out = new Uint8Array(lengthBytes);
    const n = fs.readSync(fd, out, 0, lengthBytes, offsetBytes);
    out.fill(0, n);
    return out;
  } finally {
    fs.closeSync(fd);
  }
}
