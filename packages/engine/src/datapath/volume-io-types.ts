// The per-volume I/O API's types: what VolumeIo offers (volume-io.ts implements it), its
// counters, and what the data path binds a volume with.
import type { RequestClass } from '@onestack/queue';
import type { NbdReadResult, NbdWriteBuffer } from '@onestack/nbd';
import type { LatencyStats } from '../api-types.js';
import type { WriteGate } from './write-gate.js';

export interface VolumeStats {
  readOps: number;
  writeOps: number;
  readBytes: number;
  writeBytes: number;
  errors: number;
  /** Writes, write-zeroes and trims served by read-modify-write of their partial edge blocks. */
  rmwOps: number;
  /** Passes over a request's payload bytes in user space (a request's copy counts once, however many slots it spans). */
  copies: number;
  bytesCopied: number;
  /** Latency of the successful reads and writes counted above (count = readOps resp. writeOps), from the call to the settlement. */
  readLatencyUs: LatencyStats;
  writeLatencyUs: LatencyStats;
}

/** Read requests answered from the RAM read cache (hits) or the data path (misses); zeros when it is off. */
export interface VolumeCacheStats {
  hits: number;
  misses: number;
  /** hits / (hits + misses), 0 before the first read. */
  hitRatio: number;
}

export interface VolumeIo {
  readonly sizeBytes: number;
  /** Client writes pass it; resync/rebuild fence ranges with it (write-gate.ts). */
  readonly gate: WriteGate;
  /** The elements' block size (the NBD minimum block size); smaller or unaligned requests cost a read-modify-write. */
  readonly alignBytes: number;
  read(offsetBytes: number, lengthBytes: number, cls?: RequestClass): Promise<Uint8Array>;
  write(offsetBytes: number, data: Uint8Array, opts?: { fua?: boolean }, cls?: RequestClass): Promise<void>;
  readSlots(offsetBytes: number, lengthBytes: number, cls?: RequestClass): Promise<NbdReadResult>;
  acquireWriteBuffer(lengthBytes: number): Promise<NbdWriteBuffer>;
  writeBuffer(offsetBytes: number, buf: NbdWriteBuffer, opts: { fua: boolean }, cls?: RequestClass): Promise<void>;
  flush(): Promise<void>;
  trim(off: number, len: number, opts?: { fua?: boolean }): Promise<void>;
  writeZeroes(off: number, len: number, opts?: { fua?: boolean; noHole?: boolean }): Promise<void>;
  cache(off: number, len: number): Promise<void>;
  stats(): VolumeStats;
  cacheStats(): VolumeCacheStats;
  /** Waits until a write-behind leg holds every write acknowledged so far (absent or at once without one). */
  drainBehind?(): Promise<void>;
  /** Drops the range from the read cache: a scrub repair rewrote legs under it. */
  invalidateCache(off: number, len: number): void;
}

export interface VolumeBinding {
  readonly index: number;
  readonly name: string;
  readonly sizeBytes: number;
  /** Element I/O is whole blocks of this: 4096 with O_DIRECT elements, else the largest remote block size, else 1. */
  readonly alignBytes: number;
  /** The largest remote block size (a remote leg zeroes whole blocks); alignBytes is a multiple of it. */
  readonly trimAlignBytes: number;
  /** Use the RAM read cache (false when the fast lane reads the page cache anyway; absent = true). */
  readonly cacheReads?: boolean;
}
