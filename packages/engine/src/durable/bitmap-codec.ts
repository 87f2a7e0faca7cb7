// Pure codec and arithmetic of the write-intent bitmap (durable/bitmap.ts keeps it in memory and
// on the legs). On every leg of a mirror volume, inside the reserved header (meta/types.ts):
//   [BITMAP_OFFSET_BYTES, +4 KiB)   header, little-endian:
//      0 magic "OSBITMAP" | 8 version u32 | 12 header bytes u32 | 16 array UUID [16]
//     32 region bytes u64 | 40 region count u64 | 48 volume size u64 | 56 events cleared u64
//     64..4092 reserved (zero) | 4092 CRC32C of bytes 0..4092
//   [BITMAP_OFFSET_BYTES + 4 KiB, ...)  one bit per region (bit r = byte r >> 3, bit r & 7),
//      in 4 KiB pages; a page is the unit written before a client write may touch its regions.
// decodeBitmapHeader never throws anything but BitmapError, whatever the input (it is fuzzed).
import { crc32c } from '../meta/superblock.js';
import { BITMAP_MAX_BYTES, BITMAP_OFFSET_BYTES } from '../meta/types.js';
import { FormatError, type FormatErrorKind } from '../meta/format-error.js';

export const BITMAP_MAGIC = 'OSBITMAP';
export const BITMAP_VERSION = 1;
export const BITMAP_PAGE_BYTES = 4096;
export const BITMAP_HEADER_BYTES = BITMAP_PAGE_BYTES;
/** Smallest region the format allows (config volumes[].bitmapRegionKiB). */
export const REGION_MIN_BYTES = 64 * 1024;
/**
 * Default region: every first write to a clean region waits for a FUA bitmap write, so small
 * regions cost foreground IOPS (bench, 2 GiB raid1, fio 4k randwrite QD32: 64 KiB regions 0.4x
 * of no bitmap, 1 MiB 0.6x, 4 MiB 0.85x, 64 MiB 1x) while large ones make resyncs copy more.
 * md defaults to 64 MiB; 4 MiB keeps a resync after a crash small for localized writes.
 */
export const REGION_DEFAULT_BYTES = 4 * 1024 * 1024;
/** Bits after the header page must fit the reserved area. */
export const BITMAP_BITS_MAX_BYTES = BITMAP_MAX_BYTES - BITMAP_HEADER_BYTES;
export const REGIONS_PER_PAGE = BITMAP_PAGE_BYTES * 8;
const CRC_OFFSET = BITMAP_HEADER_BYTES - 4;

export interface BitmapHeader {
  /** Canonical lower-case UUID text of the array the bitmap belongs to. */
  readonly arrayUuid: string;
  readonly regionBytes: number;
  readonly regionCount: number;
  readonly volumeSizeBytes: number;
  /**
   * The volume's event counter when bits were last cleared. Every write a leg missed since its own
   * event counter E is in the bitmap iff eventsCleared <= E (bits are cleared only while every leg
   * is active), so such a leg needs only a partial resync.
   */
  readonly eventsCleared: number;
}

export type BitmapErrorKind = FormatErrorKind;

export class BitmapError extends FormatError {
  constructor(kind: BitmapErrorKind, message: string) {
    super('BitmapError', kind, message);
  }
}

/** Region size for a volume: `minRegionBytes` (a power of two), doubled until one bit per region fits the reserved area. */
export function regionBytesFor(volumeSizeBytes: number, minRegionBytes = REGION_DEFAULT_BYTES): number {
  if (!(Number.isSafeInteger(volumeSizeBytes) && volumeSizeBytes >= 0)) throw new RangeError(`volume size ${volumeSizeBytes} is not a byte count`);
  if (!(minRegionBytes >= REGION_MIN_BYTES && 2 ** Math.round(Math.log2(minRegionBytes)) === minRegionBytes)) throw new RangeError(`region ${minRegionBytes} bytes is not a power of two >= ${REGION_MIN_BYTES}`);
  let region = minRegionBytes;
  while (Math.ceil(volumeSizeBytes / region) > BITMAP_BITS_MAX_BYTES * 8) region *= 2;
  return region;
}

export function regionCountFor(volumeSizeBytes: number, regionBytes: number): number {
  return Math.ceil(volumeSizeBytes / regionBytes);
}

/** Pages of bits for `regionCount` regions (at least one, so an empty volume still has a page). */
export function bitPagesFor(regionCount: number): number {
  return Math.max(1, Math.ceil(regionCount / REGIONS_PER_PAGE));
}

/** Bytes the bitmap takes on each leg (header page + bit pages). */
export function bitmapBytesFor(volumeSizeBytes: number, minRegionBytes = REGION_DEFAULT_BYTES): number {
  const pages = bitPagesFor(regionCountFor(volumeSizeBytes, regionBytesFor(volumeSizeBytes, minRegionBytes)));
  const bytes = BITMAP_HEADER_BYTES + pages * BITMAP_PAGE_BYTES;
  if (bytes > BITMAP_MAX_BYTES) throw new Error(`bitmap of ${bytes} bytes exceeds the reserved ${BITMAP_MAX_BYTES}`);
  return bytes;
}

/** Element offset of bit page `page` (0-based, after the header page). */
export function bitPageOffsetBytes(page: number): number {
  return BITMAP_OFFSET_BYTES + BITMAP_HEADER_BYTES + page * BITMAP_PAGE_BYTES;
}

function invalid(message: string): BitmapError {
  return new BitmapError('invalid-field', message);
}

function uuidBytes(uuid: string): Uint8Array {
  const hex = uuid.replace(/-/g, '');
  if (uuid.length !== 36 || !/^[0-9a-fA-F]{32}$/.test(hex)) throw invalid(`array UUID ${JSON.stringify(uuid.slice(0, 40))} is not a UUID`);
  return Uint8Array.from({ length: 16 }, (_, i) => parseInt(hex.slice(2 * i, 2 * i + 2), 16));
}

function uuidText(bytes: Uint8Array): string {
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

function checkHeader(h: BitmapHeader): void {
  const u64 = (n: number): boolean => Number.isSafeInteger(n) && n >= 0;
  // Powers of two above 2^31 too (bitwise tricks are 32-bit in JS).
  const powerOfTwo = u64(h.regionBytes) && h.regionBytes > 0 && 2 ** Math.round(Math.log2(h.regionBytes)) === h.regionBytes;
  if (!powerOfTwo || h.regionBytes < REGION_MIN_BYTES) throw invalid(`bad region size ${h.regionBytes}`);
  if (!u64(h.volumeSizeBytes) || !u64(h.eventsCleared) || !u64(h.regionCount)) throw invalid('bad size, region count or event counter');
  if (h.regionCount !== regionCountFor(h.volumeSizeBytes, h.regionBytes)) throw invalid(`region count ${h.regionCount} does not match ${h.volumeSizeBytes} bytes in ${h.regionBytes}-byte regions`);
  if (bitPagesFor(h.regionCount) * BITMAP_PAGE_BYTES > BITMAP_BITS_MAX_BYTES) throw invalid(`${h.regionCount} regions do not fit the reserved bitmap area`);
}

export function encodeBitmapHeader(h: BitmapHeader): Uint8Array {
  checkHeader(h);
  const bytes = new Uint8Array(BITMAP_HEADER_BYTES);
  const view = new DataView(bytes.buffer);
  bytes.set(new TextEncoder().encode(BITMAP_MAGIC), 0);
  view.setUint32(8, BITMAP_VERSION, true);
  view.setUint32(12, BITMAP_HEADER_BYTES, true);
  bytes.set(uuidBytes(h.arrayUuid), 16);
  [h.regionBytes, h.regionCount, h.volumeSizeBytes, h.eventsCleared].forEach((value, i) => view.setBigUint64(32 + 8 * i, BigInt(value), true));
  view.setUint32(CRC_OFFSET, crc32c(bytes.subarray(0, CRC_OFFSET)), true);
  return bytes;
}

function readU64(view: DataView, offset: number): number {
  const value = view.getBigUint64(offset, true);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw invalid(`field at ${offset} too large`);
  return Number(value);
}

function decodeChecked(bytes: Uint8Array): BitmapHeader | { kind: 'blank' } {
  if (!(bytes instanceof Uint8Array) || bytes.length < BITMAP_HEADER_BYTES) throw new BitmapError('truncated', `bitmap header needs ${BITMAP_HEADER_BYTES} bytes`);
  const block = bytes.subarray(0, BITMAP_HEADER_BYTES);
  if (block.every((b) => b === 0)) return { kind: 'blank' };
  if (String.fromCharCode(...block.subarray(0, 8)) !== BITMAP_MAGIC) throw new BitmapError('bad-magic', 'not a onestack bitmap');
  const view = new DataView(block.buffer, block.byteOffset, BITMAP_HEADER_BYTES);
  const version = view.getUint32(8, true);
  if (version !== BITMAP_VERSION) throw new BitmapError('bad-version', `bitmap version ${version} (this build reads ${BITMAP_VERSION})`);
  const stored = view.getUint32(CRC_OFFSET, true);
  const computed = crc32c(block.subarray(0, CRC_OFFSET));
  if (stored !== computed) throw new BitmapError('bad-checksum', `bitmap checksum ${stored.toString(16)} != ${computed.toString(16)}`);
  if (view.getUint32(12, true) !== BITMAP_HEADER_BYTES) throw invalid('bad header size');
  const h: BitmapHeader = {
    arrayUuid: uuidText(block.subarray(16, 32)),
    regionBytes: readU64(view, 32), regionCount: readU64(view, 40), volumeSizeBytes: readU64(view, 48), eventsCleared: readU64(view, 56),
  };
  checkHeader(h);
  return h;
}

/** Decodes a header page; all-zero = blank (no bitmap yet). Throws only BitmapError. */
export function decodeBitmapHeader(bytes: Uint8Array): BitmapHeader | { kind: 'blank' } {
  try {
    return decodeChecked(bytes);
  } catch (err) {
    if (err instanceof BitmapError) throw err;
    throw invalid(`undecodable bitmap header: ${String((err as Error)?.message ?? err)}`);
  }
}

export interface RegionRun {
  readonly firstRegion: number;
  readonly regions: number;
}

/** Runs of consecutive set bits among the first `regionCount` bits (in order). */
export function* setRuns(bits: Uint8Array, regionCount: number): Generator<RegionRun> {
  let start = -1;
  for (let byte = 0; byte * 8 < regionCount; byte++) {
    const b = bits[byte] ?? 0;
    if ((b === 0 && start < 0) || (b === 0xff && start >= 0 && byte * 8 + 8 <= regionCount)) continue;
    for (let bit = 0; bit < 8; bit++) {
      const r = byte * 8 + bit;
      if (r >= regionCount) break;
      const set = (b & (1 << bit)) !== 0;
      if (set && start < 0) start = r;
      if (!set && start >= 0) {
        yield { firstRegion: start, regions: r - start };
        start = -1;
      }
    }
  }
  if (start >= 0) yield { firstRegion: start, regions: regionCount - start };
}

/** Number of set bits among the first `regionCount`. */
export function countSet(bits: Uint8Array, regionCount: number): number {
  let n = 0;
  for (const run of setRuns(bits, regionCount)) n += run.regions;
  return n;
}
