// The embedded load generator: keeps `iodepth` requests in flight against an engine volume for
// a fixed time, like fio does against a file (ramp first, then count), and reports the same
// figures. Random offsets come from a seeded xorshift, sequential ones from one shared cursor.
import { performance } from 'node:perf_hooks';
import type { Volume } from '@onestack/engine';
import type { FioFigures, Workload } from './fio.js';

/** What the load needs from a volume: one request of each kind, buffers handled inside. */
export interface LoadIo {
  readonly sizeBytes: number;
  /** 'zero-copy' (slot views: readSlots / acquireWriteBuffer) or 'copying' (Volume.read / write). */
  readonly path: 'zero-copy' | 'copying';
  read(offsetBytes: number, lengthBytes: number): Promise<void>;
  write(offsetBytes: number, lengthBytes: number): Promise<void>;
}

/**
 * The volume's zero-copy calls when the engine has them (the ones its NBD export uses), else the
 * copying embedding API. Writes send whatever the slot holds: like fio, the load does not
 * generate new data per request.
 */
export function loadIoOf(vol: Volume): LoadIo {
  const io = vol.io;
  if (typeof io.readSlots === 'function' && typeof io.acquireWriteBuffer === 'function' && typeof io.writeBuffer === 'function') {
    return {
      sizeBytes: vol.sizeBytes, path: 'zero-copy',
      async read(off, len) { (await io.readSlots(off, len, 'local')).release(); },
      async write(off, len) { await io.writeBuffer(off, await io.acquireWriteBuffer(len), { fua: false }, 'local'); },
    };
  }
  const block = new Uint8Array(1 << 20).fill(0x5a);
  return {
    sizeBytes: vol.sizeBytes, path: 'copying',
    async read(off, len) { await vol.read(off, len); },
    async write(off, len) { await vol.write(off, len <= block.length ? block.subarray(0, len) : new Uint8Array(len)); },
  };
}

function xorshift32(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    return x;
  };
}

/** Next offset for each request: uniform random blocks, or one cursor that wraps at the end. */
function offsets(w: Workload, sizeBytes: number): () => number {
  const blocks = Math.floor(sizeBytes / w.bsBytes);
  if (!(blocks >= 1)) throw new Error(`volume of ${sizeBytes} bytes is smaller than one ${w.bs} block`);
  if (w.rw === 'randread' || w.rw === 'randwrite') {
    const next = xorshift32(0x9e3779b9);
    // Two draws (53 bits): volumes above 2^32 blocks still reach every block.
    return () => (((next() % 0x200000) * 0x100000000 + next()) % blocks) * w.bsBytes;
  }
  let cursor = 0;
  return () => {
    const at = cursor;
    cursor = (cursor + 1) % blocks;
    return at * w.bsBytes;
  };
}

interface Tally { ops: number; latSumMs: number }

/** One of `iodepth` loops: a new request as soon as the last one completed, until `endMs`. */
async function loop(io: LoadIo, w: Workload, next: () => number, countFromMs: number, endMs: number, tally: Tally): Promise<void> {
  const write = w.rw === 'write' || w.rw === 'randwrite';
  for (let n = 0; n < Number.MAX_SAFE_INTEGER; n++) {
    const t0 = performance.now();
    if (t0 >= endMs) return;
    const off = next();
    if (write) await io.write(off, w.bsBytes); else await io.read(off, w.bsBytes);
    const t1 = performance.now();
    // Counted like fio's ramp: requests that started after the ramp and finished in time.
    if (t0 >= countFromMs && t1 <= endMs) {
      tally.ops++;
      tally.latSumMs += t1 - t0;
    }
  }
}

/** Runs `w` for `rampSeconds` + `seconds` and returns fio-like figures for the counted part. */
export async function runLoad(io: LoadIo, w: Workload, seconds: number, rampSeconds: number): Promise<FioFigures> {
  if (!(seconds > 0 && w.iodepth >= 1 && w.iodepth <= 1024)) throw new Error(`bad load: ${seconds} s, QD ${w.iodepth}`);
  const next = offsets(w, io.sizeBytes);
  const startMs = performance.now();
  const countFromMs = startMs + rampSeconds * 1000;
  const endMs = countFromMs + seconds * 1000;
  const tally: Tally = { ops: 0, latSumMs: 0 };
  await Promise.all(Array.from({ length: w.iodepth }, () => loop(io, w, next, countFromMs, endMs, tally)));
  const iops = tally.ops / seconds;
  return {
    iops,
    mibps: (iops * w.bsBytes) / (1024 * 1024),
    latMeanUs: tally.ops > 0 ? (tally.latSumMs * 1000) / tally.ops : Number.NaN,
    ops: tally.ops,
  };
}
