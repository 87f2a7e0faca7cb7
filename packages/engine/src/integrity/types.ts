// The contract between the integrity format (superblock fields, the checksum area, the store) and
// the data path that computes and verifies checksums (docs/integrity.md). One checksum (CRC32C,
// 4 bytes) per 4 KiB block of an element's data area; a stored 0 means "no checksum" (fresh or
// trimmed), so a computed 0 is stored as 1.
import type { Crc32cBlocks } from '@onestack/native';

/** Bytes each checksum covers. */
export const INTEGRITY_BLOCK_BYTES = 4096;
/** Bytes of one stored checksum. */
export const INTEGRITY_SUM_BYTES = 4;
/** Superblock algorithm code of CRC32C. */
export const INTEGRITY_ALGO_CRC32C = 1;

/** What is stored for a block whose CRC32C is `crc`: never 0 (0 = no checksum). */
export function storedChecksum(crc: number): number {
  return crc === 0 ? 1 : crc >>> 0;
}

/** CRC32C per block computed into `out` in one kernel call, turned into what is stored (0 as 1); returns `out`. */
export function storedSums(crc32cBlocks: Crc32cBlocks, bytes: Uint8Array, out: Uint32Array = new Uint32Array(bytes.length / INTEGRITY_BLOCK_BYTES)): Uint32Array {
  crc32cBlocks(bytes, INTEGRITY_BLOCK_BYTES, out);
  for (let i = 0; i < out.length; i++) out[i] = storedChecksum(out[i]!);
  return out;
}

/** Whether `crc` (computed from the bytes) matches `stored`; a stored 0 (no checksum) matches anything. */
export function checksumMatches(stored: number, crc: number): boolean {
  return stored === 0 || stored === storedChecksum(crc);
}

/** Where an element keeps its checksums (from its superblock; absent = no integrity). */
export interface IntegrityArea {
  /** Element offset of the first checksum (after the data area, 4 KiB aligned). */
  readonly offsetBytes: number;
  readonly sizeBytes: number;
  readonly blockBytes: number;
  readonly algo: number;
}

/**
 * The checksums of one volume's elements. Elements are data-path indices; blocks are numbered
 * from the start of the element's DATA area (element offset DATA_OFFSET_BYTES = block 0).
 * Implementations cache pages in memory (bounded) and coalesce writes per page.
 */
export interface ChecksumStore {
  readonly blockBytes: number;
  /** Stored checksums of blocks [firstBlock, +count) of `element` (0 = none). */
  read(element: number, firstBlock: number, count: number): Promise<Uint32Array>;
  /** Records checksums of blocks [firstBlock, +sums.length) (0 = none); resolves once on the element (durable with fua), or once cached in a write-back store (store.ts). */
  write(element: number, firstBlock: number, sums: Uint32Array, opts?: { fua?: boolean }): Promise<void>;
  /** Resolves once every write() so far on `element` is durable. */
  flush(element: number): Promise<void>;
  /** Drops cached pages of `element` (it left the volume or was replaced). */
  forget(element: number): void;
}
