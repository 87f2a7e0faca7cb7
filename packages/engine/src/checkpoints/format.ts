// Pure codec of a checkpoint's bits file (<dataDir>/checkpoints/<volume>/<name>.bits):
//   [0, 4 KiB)  header, little-endian:
//      0 magic "OSCKPT\0\0" | 8 version u32 | 12 header bytes u32 | 16 checkpoint id [16]
//     32 region bytes u64 | 40 region count u64 | 48 volume size u64 | 56 created ms u64
//     64 name length u32 | 68 name (ASCII, up to 64) | ... zero | 4092 CRC32C of bytes 0..4092
//   then one 4 KiB page per PAGE_REGIONS regions: 4092 bytes of bits (bit r = byte r >> 3,
//   bit r & 7 of the in-memory bitmap, page k holding bytes [k * 4092, +4092)), then the CRC32C
//   of those 4092 bytes. A page is what one pwrite carries; its CRC tells a torn or rotten page.
// Bits only ever go 0 -> 1 while the checkpoint lives, so a page that fails its CRC after a crash
// can be read as "all dirty": a superset of what was written is safe for an incremental backup.
// decodeHeader never throws anything but CheckpointFormatError, whatever the input.
import { FormatError, type FormatErrorKind } from '../meta/format-error.js';
import { crc32c } from '../meta/superblock.js';

export const MAGIC = 'OSCKPT\0\0';
export const VERSION = 1;
export const PAGE_BYTES = 4096;
export const HEADER_BYTES = PAGE_BYTES;
/** Bit bytes per page (the last 4 bytes hold the page's CRC). */
export const PAGE_BIT_BYTES = PAGE_BYTES - 4;
export const PAGE_REGIONS = PAGE_BIT_BYTES * 8;
/** Smallest region: a write marks every region it touches. */
export const REGION_MIN_BYTES = 64 * 1024;
/** Bits per checkpoint in memory stay within this (the region doubles for huge volumes): 2 MiB covers 1 TiB at 64 KiB. */
export const BITS_MAX_BYTES = 2 * 1024 * 1024;
export const NAME_RE = /^[A-Za-z0-9._-]{1,64}$/;
export const NAME_HINT = '1 to 64 characters: letters, digits, ".", "_" and "-"';
const CRC_OFFSET = HEADER_BYTES - 4;

export interface CheckpointHeader {
  /** 32 lower-case hex digits; the catalog entry carries the same, so a stray or swapped file is caught. */
  readonly id: string;
  readonly name: string;
  readonly regionBytes: number;
  readonly regionCount: number;
  readonly volumeSizeBytes: number;
  readonly createdMs: number;
}

export class CheckpointFormatError extends FormatError {
  constructor(kind: FormatErrorKind, message: string) {
    super('CheckpointFormatError', kind, message);
  }
}

/** Region size for a volume: 64 KiB, doubled until the bits fit BITS_MAX_BYTES. */
export function regionBytesFor(volumeSizeBytes: number): number {
  if (!(Number.isSafeInteger(volumeSizeBytes) && volumeSizeBytes >= 0)) throw new RangeError(`volume size ${volumeSizeBytes} is not a byte count`);
  let region = REGION_MIN_BYTES;
  while (Math.ceil(volumeSizeBytes / region) > BITS_MAX_BYTES * 8) region *= 2;
  return region;
}

export function regionCountFor(volumeSizeBytes: number, regionBytes: number): number {
  return Math.ceil(volumeSizeBytes / regionBytes);
}

/** Bit pages for `regionCount` regions (at least one). */
export function pagesFor(regionCount: number): number {
  return Math.max(1, Math.ceil(regionCount / PAGE_REGIONS));
}

export function fileBytesFor(regionCount: number): number {
  return HEADER_BYTES + pagesFor(regionCount) * PAGE_BYTES;
}

/** File offset of bit page k. */
export function pageOffsetBytes(page: number): number {
  return HEADER_BYTES + page * PAGE_BYTES;
}

function invalid(message: string): CheckpointFormatError {
  return new CheckpointFormatError('invalid-field', message);
}

function checkHeader(h: CheckpointHeader): void {
  const u64 = (n: number): boolean => Number.isSafeInteger(n) && n >= 0;
  if (!/^[0-9a-f]{32}$/.test(h.id)) throw invalid('bad checkpoint id');
  if (!NAME_RE.test(h.name)) throw invalid('bad checkpoint name');
  const powerOfTwo = u64(h.regionBytes) && h.regionBytes >= REGION_MIN_BYTES && 2 ** Math.round(Math.log2(h.regionBytes)) === h.regionBytes;
  if (!powerOfTwo) throw invalid(`bad region size ${h.regionBytes}`);
  if (!u64(h.volumeSizeBytes) || !u64(h.regionCount) || !u64(h.createdMs)) throw invalid('bad size, region count or creation time');
  if (h.regionCount !== regionCountFor(h.volumeSizeBytes, h.regionBytes)) throw invalid(`region count ${h.regionCount} does not match ${h.volumeSizeBytes} bytes`);
  if (h.regionCount > BITS_MAX_BYTES * 8) throw invalid(`${h.regionCount} regions are more than a checkpoint keeps`);
}

export function encodeHeader(h: CheckpointHeader): Uint8Array {
  checkHeader(h);
  const bytes = new Uint8Array(HEADER_BYTES);
  const view = new DataView(bytes.buffer);
  bytes.set(new TextEncoder().encode(MAGIC), 0);
  view.setUint32(8, VERSION, true);
  view.setUint32(12, HEADER_BYTES, true);
  bytes.set(Uint8Array.from({ length: 16 }, (_, i) => parseInt(h.id.slice(2 * i, 2 * i + 2), 16)), 16);
  [h.regionBytes, h.regionCount, h.volumeSizeBytes, h.createdMs].forEach((v, i) => view.setBigUint64(32 + 8 * i, BigInt(v), true));
  const name = new TextEncoder().encode(h.name);
  view.setUint32(64, name.length, true);
  bytes.set(name, 68);
  view.setUint32(CRC_OFFSET, crc32c(bytes.subarray(0, CRC_OFFSET)), true);
  return bytes;
}

/** A little-endian u64 field as a safe integer (high word below 2^21). */
function u64At(view: DataView, offset: number): number {
  const high = view.getUint32(offset + 4, true);
  if (high >= 2 ** 21) throw invalid(`field at ${offset} too large`);
  return high * 2 ** 32 + view.getUint32(offset, true);
}

function decodeChecked(bytes: Uint8Array): CheckpointHeader {
  if (!(bytes instanceof Uint8Array) || bytes.length < HEADER_BYTES) throw new CheckpointFormatError('truncated', `checkpoint header needs ${HEADER_BYTES} bytes`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, HEADER_BYTES);
  const text = (from: number, to: number): string => String.fromCharCode(...bytes.subarray(from, to));
  if (text(0, 8) !== MAGIC) throw new CheckpointFormatError('bad-magic', 'not a onestack checkpoint file');
  if (view.getUint32(8, true) !== VERSION) throw new CheckpointFormatError('bad-version', `checkpoint version ${view.getUint32(8, true)} (this build reads ${VERSION})`);
  const crc = crc32c(bytes.subarray(0, CRC_OFFSET));
  if (view.getUint32(CRC_OFFSET, true) !== crc) throw new CheckpointFormatError('bad-checksum', `checkpoint header checksum does not match (${crc.toString(16)} computed)`);
  const nameBytes = view.getUint32(64, true);
  if (view.getUint32(12, true) !== HEADER_BYTES || nameBytes < 1 || nameBytes > 64) throw invalid('bad header size or name length');
  const h: CheckpointHeader = {
    id: Array.from(bytes.subarray(16, 32), (b) => b.toString(16).padStart(2, '0')).join(''), name: text(68, 68 + nameBytes),
    regionBytes: u64At(view, 32), regionCount: u64At(view, 40), volumeSizeBytes: u64At(view, 48), createdMs: u64At(view, 56),
  };
  checkHeader(h);
  return h;
}

/** Decodes a header page. Throws only CheckpointFormatError. */
export function decodeHeader(bytes: Uint8Array): CheckpointHeader {
  try {
    return decodeChecked(bytes);
  } catch (err) {
    if (err instanceof CheckpointFormatError) throw err;
    throw invalid(`undecodable checkpoint header: ${String((err as Error)?.message ?? err)}`);
  }
}

/** Page k of `bits` as written to the file: its 4092 bit bytes (zero past the end) and their CRC. */
export function encodePage(bits: Uint8Array, page: number): Uint8Array {
  const out = new Uint8Array(PAGE_BYTES);
  const from = page * PAGE_BIT_BYTES;
  out.set(bits.subarray(from, Math.min(bits.length, from + PAGE_BIT_BYTES)), 0);
  new DataView(out.buffer).setUint32(PAGE_BIT_BYTES, crc32c(out.subarray(0, PAGE_BIT_BYTES)), true);
  return out;
}

/** Whether a page read from the file carries the CRC of its bits. */
export function pageIntact(page: Uint8Array): boolean {
  if (page.length !== PAGE_BYTES) return false;
  const view = new DataView(page.buffer, page.byteOffset, PAGE_BYTES);
  return view.getUint32(PAGE_BIT_BYTES, true) === crc32c(page.subarray(0, PAGE_BIT_BYTES));
}

/** Bytes of in-memory bits for `regionCount` regions (whole pages, so encodePage never reads past it). */
export function bitsBytesFor(regionCount: number): number {
  return pagesFor(regionCount) * PAGE_BIT_BYTES;
}
