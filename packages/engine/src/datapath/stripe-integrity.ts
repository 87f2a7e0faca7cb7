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
  /** Adds to the counter of `role`'s element; `volumeOffsetBytes` places a data block in the volume's map. */
  count(role: number, event: StripeIntegrityEvent, blocks: number, volumeOffsetBytes?: number): void;
  /** One log line (rate-limited by the implementation). */
  note(line: string): void;
}
