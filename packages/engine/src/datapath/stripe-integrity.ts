// What the raid5/6 stripe engine asks of a volume with integrity (docs/integrity.md): the
// checksums of every unit it writes (data and parity alike), the stored checksums of units it
// reads for a rebuild, a scrub or a repair, and the element's counters. Implemented over the
// volume's checksum store by integrity/parity-io.ts; null on a StripeEngine without integrity.
import type { Crc32cBlocks } from '@onestack/native';

export type StripeIntegrityEvent = 'mismatches' | 'repaired' | 'unrecoverable';

export interface StripeIntegrity {
  /** CRC32C per block (the native kernel, or the JS one with the same bits). */
  readonly crc32cBlocks: Crc32cBlocks;
  /**
   * Records the checksums of `role`'s element bytes [elementOffset, +length) (whole 4 KiB blocks
   * of its data area) computed from `bytes`; null bytes = the range was zeroed (no checksum).
   * Resolves once the store has them (write-back: cached); durable at the next writeBack + flush.
   */
  record(role: number, elementOffsetBytes: number, lengthBytes: number, bytes: Uint8Array | null): Promise<void>;
  /** Records given stored checksums (a repair that only rewrites a wrong checksum). */
  recordSums(role: number, elementOffsetBytes: number, sums: Uint32Array): Promise<void>;
  /** Stored checksums of `role`'s blocks [elementOffset, +length) (0 = none); null when they cannot be read. */
  stored(role: number, elementOffsetBytes: number, lengthBytes: number): Promise<Uint32Array | null>;
  /** Writes every changed checksum page of the volume's writable elements (a journal checkpoint's flush follows). */
  writeBack(): Promise<void>;
  /**
   * Reads every readable entry of row `row`'s bytes [a, b) with their checksums, rebuilds blocks
   * that fail from parity (integrity/parity-resolve.ts) and writes them back. The caller holds the
   * row lock. Resolves with the per-entry outcome; throws EIO when a block of `needed` (entries) stays lost.
   */
  repairSpan(row: number, a: number, b: number, needed: readonly number[]): Promise<SpanRepair>;
  /** Journal replay wrote these ranges again: their checksums are recomputed from the bytes now there (then written back). */
  recompute(ranges: readonly { readonly role: number; readonly elementOffsetBytes: number; readonly lengthBytes: number }[]): Promise<void>;
  /** Adds to the counter of `role`'s element; `volumeOffsetBytes` places a data block in the volume's map. */
  count(role: number, event: StripeIntegrityEvent, blocks: number, volumeOffsetBytes?: number): void;
  /** One log line (rate-limited by the implementation). */
  note(line: string): void;
}

/** What repairSpan found and did, per stripe entry (data 0..k-1, P, Q). */
export interface SpanRepair {
  /** Entry bytes as now on the elements (null: not readable), after the fixes. */
  readonly bytes: readonly (Uint8Array | null)[];
  /** Blocks that failed their checksums, rewritten, and still lost, per entry. */
  readonly bad: readonly number[][];
  readonly fixed: readonly number[][];
  readonly lost: readonly number[][];
}
