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

/** `length` seeded pseudo-random bytes (the same for the same seed). */
export function randomBytes(length: number, seed: number): Uint8Array {
  const next = rng(seed);
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = next(256);
  return out;
}

/** XORs `length` bytes of file `p` at `offsetBytes` with 0xff (every byte changes), bypassing the engine. */
export function flipFileBytes(p: string, offsetBytes: number, length: number): void {
  const bytes = readFileRange(p, offsetBytes, length);
  for (let i = 0; i < bytes.length; i++) bytes[i] = bytes[i]! ^ 0xff;
  const fd = fs.openSync(p, 'r+');
  try {
    fs.writeSync(fd, bytes, 0, bytes.length, offsetBytes);
  } finally {
    fs.closeSync(fd);
  }
}
