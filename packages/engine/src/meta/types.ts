// What assembly (meta/assemble.ts) hands to the data path: a volume whose elements have been
// identified by their superblocks. The data path never reads superblocks itself.
import type { ElementConfig, Layout, VolumeConfig } from '../config/types.js';
import type { IntegrityArea } from '../integrity/types.js';
import type { VolumeHistory } from './history.js';

/** Bytes reserved at the start of every element for superblock + (later) bitmap/journal. */
export const DATA_OFFSET_BYTES = 4 * 1024 * 1024;
export const SUPERBLOCK_BYTES = 4096;

// The reserved header of every element, [0, DATA_OFFSET_BYTES):
//   [0, 4 KiB)        superblock
//   [64 KiB, 1 MiB)   write-intent bitmap (durable/bitmap: at most 960 KiB = 7.8 Mi regions);
//                     while raid0/5/6 are reshaped, the step backup (meta/reshape-plan.ts)
//   [1 MiB, 4 MiB)    stripe journal (raid5/6: closes the write hole)
export const BITMAP_OFFSET_BYTES = 64 * 1024;
export const BITMAP_MAX_BYTES = 1024 * 1024 - BITMAP_OFFSET_BYTES;
export const JOURNAL_OFFSET_BYTES = 1024 * 1024;
export const JOURNAL_MAX_BYTES = DATA_OFFSET_BYTES - JOURNAL_OFFSET_BYTES;

/**
 * A reshape in progress (superblock bytes 216..284; docs/reshape.md): the volume moves from the
 * OLD geometry (these `from*` fields) to the NEW one (the superblock's own layout, count, chunk).
 * [0, positionBytes) is held by the new geometry, [positionBytes, fromSizeBytes) by the old.
 */
export interface ReshapeRecord {
  readonly fromLayout: Layout;
  readonly fromCount: number;
  readonly fromChunkBytes: number;
  /** C0: the old capacity, what clients see while the reshape runs. */
  readonly fromSizeBytes: number;
  /** C1: the size once it finishes. */
  readonly toSizeBytes: number;
  readonly positionBytes: number;
  /** The step at positionBytes saved [startBytes, +lengthBytes) in the backup area (crc32c of those bytes). */
  readonly backup?: { readonly startBytes: number; readonly lengthBytes: number; readonly crc: number };
  readonly startedMs: number;
}

export type ElementState = 'active' | 'failed' | 'spare' | 'rebuilding' | 'stale';

export interface AssembledElement {
  readonly config: ElementConfig;
  /** Role in the array: 0..n-1, the position in VolumeConfig.elements. */
  readonly role: number;
  readonly state: ElementState;
  /** Usable bytes after DATA_OFFSET_BYTES. */
  readonly dataSizeBytes: number;
  /** Local path (file or block device), or the masked URI of a remote element (for messages). */
  readonly path?: string;
  /** Why the element is not active, for status and logs. */
  readonly reason?: string;
  /** The element's own UUID from its superblock (absent for a blank, stale element). */
  readonly elementUuid?: string;
  /** Smallest I/O unit the element accepts (remote block size); 1 when any byte range works. */
  readonly blockSizeBytes?: number;
  /** Not active: the event count up to which it holds every write (0 = nothing; docs/durability.md). */
  readonly syncedEvents?: number;
  /** Failed on request: not resynced back by itself (superblock flag; docs/durability.md). */
  readonly faulty?: true;
  /** Where its per-block checksums live (volumes with integrity; docs/integrity.md). */
  readonly integrity?: IntegrityArea;
}

export interface AssembledVolume {
  readonly config: VolumeConfig;
  readonly arrayUuid: string;
  readonly sizeBytes: number;
  readonly dataOffsetBytes: number;
  readonly eventCount: number;
  readonly elements: readonly AssembledElement[];
  /** When the array was created (ms since the epoch), from the superblocks. */
  readonly createdMs?: number;
  /** False when the superblocks say the volume was not closed cleanly (writes may have been in flight). */
  readonly wasClean?: boolean;
  /** A reshape in progress (sizeBytes stays C0 = reshape.fromSizeBytes while it runs). */
  readonly reshape?: ReshapeRecord;
  /** The history id written with the superblocks, and the ids this run wrote by counter (meta/history.ts); absent = none yet. */
  readonly history?: VolumeHistory;
}
