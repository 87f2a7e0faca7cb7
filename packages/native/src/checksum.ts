// Per-block checksums (issue 10): one CRC32C (or xxHash64) per blockBytes block of a request,
// into a caller-owned typed array, by the addon (crates/onestack-native/src/checksum.rs) reading
// the data in place, or by the pure-JS CRC32C when the addon is not loaded.
//
// Without the addon there is no xxHash64: a JS one needs 64-bit multiplies, which cost BigInt
// allocations (or 16-bit limb arithmetic) per 8 bytes, far too slow for a data path. So a volume
// whose blocks must stay verifiable on any host uses CRC32C; docs/integrity.md has the figures.
import { sysError } from './errors.js';
import { crc32c, crc32cUpdateWords, wordReadable } from './crc32c.js';
import { nativeAddon, nativeInfo, type NativeBackend } from './loader.js';

export type ChecksumAlgo = 'crc32c' | 'xxh64';

/** CRC32C of each blockBytes block of `data` into out[i]; returns the block count. */
export type Crc32cBlocks = (data: Uint8Array, blockBytes: number, out: Uint32Array) => number;
/** xxHash64 (seed 0) of each blockBytes block of `data` into out[i]; returns the block count. */
export type Xxh64Blocks = (data: Uint8Array, blockBytes: number, out: BigUint64Array) => number;

export interface BlockChecksums {
  /** Which code computes crc32cBlocks. */
  readonly backend: NativeBackend;
  readonly crc32cBlocks: Crc32cBlocks;
  /** Null without the addon (no JS xxHash64: see the top of this file). */
  readonly xxh64Blocks: Xxh64Blocks | null;
  /** Why this backend (the loader's reason, or what the addon lacks). */
  readonly reason: string;
}

export const CHECKSUM_BLOCK_BYTES_MIN = 512;
export const CHECKSUM_BLOCK_BYTES_MAX = 65536;

function invalid(message: string): Error {
  return sysError('EINVAL', message);
}

/** The same checks, in the same order and words, as block_count/with_views in checksum.rs. */
function checkArguments(what: string, data: unknown, blockBytes: number, out: Uint32Array): number {
  if (!(data instanceof Uint8Array)) throw invalid(`${what}: data must be a non-empty Uint8Array`);
  if (!(out instanceof Uint32Array) || out.length === 0) throw invalid(`${what}: out must be a non-empty Uint32Array`);
  const inRange = Number.isInteger(blockBytes) && blockBytes >= CHECKSUM_BLOCK_BYTES_MIN && blockBytes <= CHECKSUM_BLOCK_BYTES_MAX;
  if (!inRange || (blockBytes & (blockBytes - 1)) !== 0) {
    throw invalid(`${what}: blockBytes must be a power of two in 512..65536, got ${blockBytes}`);
  }
  if (data.length === 0 || data.length % blockBytes !== 0) {
    throw invalid(`${what}: data.length (${data.length}) must be a positive multiple of blockBytes (${blockBytes})`);
  }
  const blocks = data.length / blockBytes;
  if (out.length < blocks) throw invalid(`${what}: out holds ${out.length} checksums, needs ${blocks} (one per block)`);
  const outEnd = out.byteOffset + blocks * 4;
  if (out.buffer === data.buffer && data.byteOffset < outEnd && out.byteOffset < data.byteOffset + data.length) {
    throw invalid(`${what}: out overlaps data`);
  }
  return blocks;
}

/** The pure-JS crc32cBlocks (the fallback; exported for the tests and bench/checksum.ts). */
export function crc32cBlocksJs(data: Uint8Array, blockBytes: number, out: Uint32Array): number {
  const blocks = checkArguments('crc32cBlocks', data, blockBytes, out);
  if (wordReadable(data)) {
    // One word view for the whole request, not one per block: 4 KiB writes pay no allocation
    // beyond it. Blocks are multiples of 512 bytes, so each starts on a word.
    const words = new Int32Array(data.buffer, data.byteOffset, data.length >>> 2);
    const blockWords = blockBytes >>> 2;
    for (let b = 0; b < blocks; b++) out[b] = ~crc32cUpdateWords(-1, words, b * blockWords, (b + 1) * blockWords) >>> 0;
  } else {
    for (let b = 0; b < blocks; b++) out[b] = crc32c(data.subarray(b * blockBytes, (b + 1) * blockBytes));
  }
  return blocks;
}

let chosen: BlockChecksums | null = null;

function choose(): BlockChecksums {
  const addon = nativeAddon();
  const info = nativeInfo();
  const native = addon?.crc32cBlocks;
  const nativeXxh = addon?.xxh64Blocks;
  if (addon === null || typeof native !== 'function' || typeof nativeXxh !== 'function') {
    const reason = addon === null ? (info.reason ?? 'native addon not loaded') : 'native addon lacks crc32cBlocks/xxh64Blocks (stale build? run pnpm build:native)';
    return { backend: 'js', crc32cBlocks: crc32cBlocksJs, xxh64Blocks: null, reason };
  }
  // Bound, not wrapped: a 4 KiB write pays one call, and a JS wrapper would add to it.
  return { backend: 'native', crc32cBlocks: native.bind(addon), xxh64Blocks: nativeXxh.bind(addon), reason: info.reason ?? 'native' };
}

/** The block-checksum kernels of this process: native when the addon has them, else JS CRC32C. */
export function blockChecksums(): BlockChecksums {
  chosen ??= choose();
  return chosen;
}
