// Pure codec for the 4096-byte superblock at offset 0 of every element. Little-endian layout:
//   0 magic "ONESTACK" | 8 version u32 | 12 superblock bytes u32 | 16 array UUID [16]
//  32 volume name length u32 | 36 volume name [64] UTF-8 | 100 layout u32 | 104 chunk bytes u32
// 108 role u32 | 112 element count u32 | 116 flags u32 (bit 0 = clean, bit 1 = needs rebuild,
//     bit 2 = faulty: failed on request, stays out until replaced)
// 120 data offset u64 | 128 data size u64 | 136 volume size u64 | 144 event counter u64
// 152 created ms u64 | 160 bitmap offset u64 | 168 bitmap size u64 | 176 element UUID [16]
// 192 integrity offset u64 | 200 integrity size u64 | 208 integrity block bytes u32 | 212 integrity
//     algorithm u32 (all zero = no integrity: what older superblocks hold; docs/integrity.md)
// 216..284 reshape record (all zero = none: what older superblocks hold; docs/reshape.md):
//     216 magic u32 "RSHP" | 220 from layout u32 | 224 from count u32 | 228 from chunk bytes u32 |
//     232 from volume size u64 (C0) | 240 to volume size u64 (C1) | 248 position u64 |
//     256 backup start u64 | 264 backup length u32 (0 = none) | 268 backup crc32c u32 |
//     272 started ms u64 | 280 reserved u32 (0)
// 284 history id u64 (0 = none: what older superblocks hold; a random value renewed whenever the
//     set of active legs shrinks or a leg returns; docs/durability.md "Which side is newer")
// 292..4092 reserved (zero) | 4092 CRC32C of bytes 0..4092 u32
// decodeSuperblock never throws anything but SuperblockError, whatever the input (it is fuzzed).
import { crc32c } from '@onestack/native';

import type { Layout } from '../config/types.js';
import { INTEGRITY_ALGO_CRC32C, INTEGRITY_BLOCK_BYTES, type IntegrityArea } from '../integrity/types.js';
import { SUPERBLOCK_BYTES, type ReshapeRecord } from './types.js';
import { FormatError, type FormatErrorKind } from './format-error.js';

export const SUPERBLOCK_MAGIC = 'ONESTACK';
export const SUPERBLOCK_VERSION = 1;
export const VOLUME_NAME_MAX_BYTES = 64;
const CRC_OFFSET = SUPERBLOCK_BYTES - 4;
const LAYOUT_CODES: readonly Layout[] = ['linear', 'raid0', 'raid1', 'raid10', 'raid5', 'raid6'];
const FLAG_CLEAN = 1;
// Set on a leg that missed writes: it never counts as up to date again until rebuilt.
const FLAG_NEEDS_REBUILD = 2;
// Set on a leg failed on request (`element fail`): unlike a leg that merely lags, it is not
// resynced back into the array by itself at the next start.
const FLAG_FAULTY = 4;
const MAX_COUNT = 255;
export const RESHAPE_MAGIC = 0x50485352;
const RESHAPE_OFFSET = 216;
const RESHAPE_END = 284;
const HISTORY_OFFSET = 284;

// CRC32C lives in @onestack/native (also the fallback of the per-block checksums); re-exported
// here because the bitmap, checkpoint and superblock codecs and their tests import it from here.
export { crc32c };

export interface Superblock {
  readonly version: number;
  /** Canonical lower-case UUID text (8-4-4-4-12). */
  readonly arrayUuid: string;
  readonly elementUuid: string;
  readonly volumeName: string;
  readonly layout: Layout;
  readonly chunkBytes: number;
  readonly role: number;
  readonly count: number;
  readonly dataOffsetBytes: number;
  readonly dataSizeBytes: number;
  readonly volumeSizeBytes: number;
  readonly eventCount: number;
  readonly clean: boolean;
  readonly needsRebuild: boolean;
  /** Present (true) only on a leg failed on request; absent otherwise. */
  readonly faulty?: boolean;
  readonly createdMs: number;
  readonly bitmapOffsetBytes: number;
  readonly bitmapSizeBytes: number;
  /** The element's checksum area; absent = no integrity (stored as zeros). */
  readonly integrity?: IntegrityArea;
  /** A reshape in progress: layout/count/role/chunk above are the NEW geometry, volumeSizeBytes is C0. */
  readonly reshape?: ReshapeRecord;
  /** The history this leg was last written in: 16 lower-case hex digits, never all zero; absent = none (older superblocks). */
  readonly historyId?: string;
}

export type SuperblockErrorKind = FormatErrorKind;

export class SuperblockError extends FormatError {
  constructor(kind: SuperblockErrorKind, message: string) {
    super('SuperblockError', kind, message);
  }
}

function invalid(message: string): SuperblockError {
  return new SuperblockError('invalid-field', message);
}

function uuidToBytes(uuid: string, what: string): Uint8Array {
  const hex = uuid.replace(/-/g, '');
  if (!/^[0-9a-fA-F]{32}$/.test(hex) || uuid.length !== 36) throw invalid(`${what} is not a UUID: ${JSON.stringify(uuid.slice(0, 40))}`);
  return Uint8Array.from({ length: 16 }, (_, i) => parseInt(hex.slice(i * 2, i * 2 + 2), 16));
}

function bytesToUuid(bytes: Uint8Array): string {
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
}

/** The checks shared by encode (before writing) and decode (after reading). */
function checkFields(sb: Omit<Superblock, 'version'>): void {
  const u64 = (n: number): boolean => Number.isSafeInteger(n) && n >= 0;
  if (!LAYOUT_CODES.includes(sb.layout)) throw invalid(`unknown layout ${JSON.stringify(String(sb.layout))}`);
  if (!isPowerOfTwo(sb.chunkBytes) || sb.chunkBytes < 4096 || sb.chunkBytes > 2 ** 30) throw invalid(`bad chunk size ${sb.chunkBytes}`);
  if (!Number.isInteger(sb.count) || sb.count < 1 || sb.count > MAX_COUNT) throw invalid(`bad element count ${sb.count}`);
  if (!Number.isInteger(sb.role) || sb.role < 0 || sb.role >= sb.count) throw invalid(`bad role ${sb.role} of ${sb.count}`);
  if (!u64(sb.dataOffsetBytes) || sb.dataOffsetBytes < SUPERBLOCK_BYTES || sb.dataOffsetBytes % 4096 !== 0) throw invalid(`bad data offset ${sb.dataOffsetBytes}`);
  for (const [name, value] of [['data size', sb.dataSizeBytes], ['volume size', sb.volumeSizeBytes], ['event counter', sb.eventCount],
    ['created time', sb.createdMs], ['bitmap offset', sb.bitmapOffsetBytes], ['bitmap size', sb.bitmapSizeBytes]] as const) {
    if (!u64(value)) throw invalid(`bad ${name} ${value}`);
  }
  if (sb.volumeName.length === 0) throw invalid('empty volume name');
  if (sb.integrity !== undefined) checkIntegrity(sb.integrity, sb.dataOffsetBytes + sb.dataSizeBytes);
  if (sb.reshape !== undefined) checkReshape(sb.reshape, sb);
  if (sb.historyId !== undefined && !isHistoryId(sb.historyId)) throw invalid(`bad history id ${JSON.stringify(String(sb.historyId).slice(0, 40))}`);
}

/** 16 lower-case hex digits, not all zero (zero on disk means "none"). */
export function isHistoryId(id: unknown): id is string {
  return typeof id === 'string' && /^[0-9a-f]{16}$/.test(id) && id !== '0000000000000000';
}

/** A reshape record is consistent in itself and with the (new-geometry) superblock that holds it. */
function checkReshape(r: ReshapeRecord, sb: Omit<Superblock, 'version'>): void {
  const u64 = (n: number): boolean => Number.isSafeInteger(n) && n >= 0;
  if (!LAYOUT_CODES.includes(r.fromLayout)) throw invalid(`reshape: unknown from layout ${JSON.stringify(String(r.fromLayout))}`);
  if (!Number.isInteger(r.fromCount) || r.fromCount < 1 || r.fromCount > sb.count) throw invalid(`reshape: bad from count ${r.fromCount} (now ${sb.count})`);
  if (!isPowerOfTwo(r.fromChunkBytes) || r.fromChunkBytes < 4096 || r.fromChunkBytes > 2 ** 30) throw invalid(`reshape: bad from chunk size ${r.fromChunkBytes}`);
  for (const [name, value] of [['from size', r.fromSizeBytes], ['to size', r.toSizeBytes], ['position', r.positionBytes], ['started time', r.startedMs]] as const) {
    if (!u64(value)) throw invalid(`reshape: bad ${name} ${value}`);
  }
  if (r.fromSizeBytes !== sb.volumeSizeBytes) throw invalid(`reshape: from size ${r.fromSizeBytes} != volume size ${sb.volumeSizeBytes}`);
  if (r.positionBytes > r.fromSizeBytes) throw invalid(`reshape: position ${r.positionBytes} past the old size ${r.fromSizeBytes}`);
  if (r.toSizeBytes < r.fromSizeBytes) throw invalid(`reshape: new size ${r.toSizeBytes} below the old size ${r.fromSizeBytes}`);
  const b = r.backup;
  if (b === undefined) return;
  if (!u64(b.startBytes) || !Number.isInteger(b.lengthBytes) || b.lengthBytes < 1 || b.lengthBytes > 0xffffffff || !Number.isInteger(b.crc) || b.crc < 0 || b.crc > 0xffffffff) {
    throw invalid(`reshape: bad backup ${b.startBytes}+${b.lengthBytes}`);
  }
  if (b.startBytes < r.positionBytes || b.startBytes + b.lengthBytes > r.fromSizeBytes) {
    throw invalid(`reshape: backup [${b.startBytes}, +${b.lengthBytes}) outside [${r.positionBytes}, ${r.fromSizeBytes})`);
  }
}

function encodeReshape(view: DataView, r: ReshapeRecord): void {
  view.setUint32(RESHAPE_OFFSET, RESHAPE_MAGIC, true);
  view.setUint32(220, LAYOUT_CODES.indexOf(r.fromLayout), true);
  view.setUint32(224, r.fromCount, true);
  view.setUint32(228, r.fromChunkBytes, true);
  [r.fromSizeBytes, r.toSizeBytes, r.positionBytes, r.backup?.startBytes ?? 0].forEach((value, i) => view.setBigUint64(232 + i * 8, BigInt(value), true));
  view.setUint32(264, r.backup?.lengthBytes ?? 0, true);
  view.setUint32(268, r.backup?.crc ?? 0, true);
  view.setBigUint64(272, BigInt(r.startedMs), true);
}

/** Bytes 216..284: all zero = no reshape (older superblocks); else the record, checked by checkFields. */
function decodeReshape(block: Uint8Array, view: DataView): { reshape?: ReshapeRecord } {
  if (block.subarray(RESHAPE_OFFSET, RESHAPE_END).every((b) => b === 0)) return {};
  const magic = view.getUint32(RESHAPE_OFFSET, true);
  if (magic !== RESHAPE_MAGIC) throw invalid(`reshape record magic ${magic.toString(16)}`);
  const fromLayout = LAYOUT_CODES[view.getUint32(220, true)];
  if (fromLayout === undefined) throw invalid(`reshape: unknown from layout code ${view.getUint32(220, true)}`);
  if (view.getUint32(280, true) !== 0) throw invalid('reshape: reserved field not zero');
  const backupStart = readU64(view, 256, 'reshape backup start');
  const backupLength = view.getUint32(264, true);
  const crc = view.getUint32(268, true);
  if (backupLength === 0 && (backupStart !== 0 || crc !== 0)) throw invalid('reshape: backup start or crc without a backup length');
  return { reshape: {
    fromLayout, fromCount: view.getUint32(224, true), fromChunkBytes: view.getUint32(228, true),
    fromSizeBytes: readU64(view, 232, 'reshape from size'), toSizeBytes: readU64(view, 240, 'reshape to size'),
    positionBytes: readU64(view, 248, 'reshape position'), startedMs: readU64(view, 272, 'reshape started time'),
    ...(backupLength !== 0 ? { backup: { startBytes: backupStart, lengthBytes: backupLength, crc } } : {}),
  } };
}

/** An integrity area sits after the data, 4 KiB aligned, with a 4096-byte block and a known algorithm. */
function checkIntegrity(area: IntegrityArea, dataEndBytes: number): void {
  const u64 = (n: number): boolean => Number.isSafeInteger(n) && n >= 0;
  if (!u64(area.offsetBytes) || area.offsetBytes % 4096 !== 0 || area.offsetBytes < dataEndBytes) throw invalid(`bad integrity offset ${area.offsetBytes} (data ends at ${dataEndBytes})`);
  if (!u64(area.sizeBytes) || area.sizeBytes === 0 || area.sizeBytes % 4096 !== 0) throw invalid(`bad integrity size ${area.sizeBytes}`);
  if (area.blockBytes !== INTEGRITY_BLOCK_BYTES) throw invalid(`bad integrity block size ${area.blockBytes}`);
  if (area.algo !== INTEGRITY_ALGO_CRC32C) throw invalid(`unknown integrity algorithm ${area.algo}`);
}

export function encodeSuperblock(sb: Omit<Superblock, 'version'> & { readonly version?: number }): Uint8Array {
  checkFields(sb);
  const name = new TextEncoder().encode(sb.volumeName);
  if (name.length > VOLUME_NAME_MAX_BYTES) throw invalid(`volume name longer than ${VOLUME_NAME_MAX_BYTES} bytes`);
  const bytes = new Uint8Array(SUPERBLOCK_BYTES);
  const view = new DataView(bytes.buffer);
  bytes.set(new TextEncoder().encode(SUPERBLOCK_MAGIC), 0);
  view.setUint32(8, SUPERBLOCK_VERSION, true);
  view.setUint32(12, SUPERBLOCK_BYTES, true);
  bytes.set(uuidToBytes(sb.arrayUuid, 'array UUID'), 16);
  view.setUint32(32, name.length, true);
  bytes.set(name, 36);
  view.setUint32(100, LAYOUT_CODES.indexOf(sb.layout), true);
  view.setUint32(104, sb.chunkBytes, true);
  view.setUint32(108, sb.role, true);
  view.setUint32(112, sb.count, true);
  view.setUint32(116, (sb.clean ? FLAG_CLEAN : 0) | (sb.needsRebuild ? FLAG_NEEDS_REBUILD : 0) | (sb.faulty === true ? FLAG_FAULTY : 0), true);
  const u64s = [sb.dataOffsetBytes, sb.dataSizeBytes, sb.volumeSizeBytes, sb.eventCount, sb.createdMs, sb.bitmapOffsetBytes, sb.bitmapSizeBytes];
  u64s.forEach((value, i) => view.setBigUint64(120 + i * 8, BigInt(value), true));
  bytes.set(uuidToBytes(sb.elementUuid, 'element UUID'), 176);
  if (sb.integrity !== undefined) {
    view.setBigUint64(192, BigInt(sb.integrity.offsetBytes), true);
    view.setBigUint64(200, BigInt(sb.integrity.sizeBytes), true);
    view.setUint32(208, sb.integrity.blockBytes, true);
    view.setUint32(212, sb.integrity.algo, true);
  }
  if (sb.reshape !== undefined) encodeReshape(view, sb.reshape);
  if (sb.historyId !== undefined) view.setBigUint64(HISTORY_OFFSET, BigInt(`0x${sb.historyId}`), true);
  view.setUint32(CRC_OFFSET, crc32c(bytes.subarray(0, CRC_OFFSET)), true);
  return bytes;
}

function readU64(view: DataView, offset: number, what: string): number {
  const value = view.getBigUint64(offset, true);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw invalid(`${what} too large`);
  return Number(value);
}

function decodeChecked(bytes: Uint8Array): Superblock | { kind: 'blank' } {
  if (!(bytes instanceof Uint8Array)) throw new SuperblockError('truncated', 'not a byte array');
  if (bytes.length < SUPERBLOCK_BYTES) throw new SuperblockError('truncated', `superblock needs ${SUPERBLOCK_BYTES} bytes, got ${bytes.length}`);
  const block = bytes.subarray(0, SUPERBLOCK_BYTES);
  if (block.every((b) => b === 0)) return { kind: 'blank' };
  const view = new DataView(block.buffer, block.byteOffset, SUPERBLOCK_BYTES);
  const magic = String.fromCharCode(...block.subarray(0, 8));
  if (magic !== SUPERBLOCK_MAGIC) throw new SuperblockError('bad-magic', 'not a onestack superblock');
  const version = view.getUint32(8, true);
  if (version !== SUPERBLOCK_VERSION) throw new SuperblockError('bad-version', `superblock version ${version} (this build reads ${SUPERBLOCK_VERSION})`);
  const stored = view.getUint32(CRC_OFFSET, true);
  const computed = crc32c(block.subarray(0, CRC_OFFSET));
  if (stored !== computed) throw new SuperblockError('bad-checksum', `superblock checksum ${stored.toString(16)} != ${computed.toString(16)}`);
  if (view.getUint32(12, true) !== SUPERBLOCK_BYTES) throw invalid('bad superblock size');
  const nameBytes = view.getUint32(32, true);
  if (nameBytes > VOLUME_NAME_MAX_BYTES) throw invalid(`volume name length ${nameBytes}`);
  let volumeName: string;
  try {
    volumeName = new TextDecoder('utf-8', { fatal: true }).decode(block.subarray(36, 36 + nameBytes));
  } catch {
    throw invalid('volume name is not UTF-8');
  }
  const layout = LAYOUT_CODES[view.getUint32(100, true)];
  if (layout === undefined) throw invalid(`unknown layout code ${view.getUint32(100, true)}`);
  const flags = view.getUint32(116, true);
  if ((flags & ~(FLAG_CLEAN | FLAG_NEEDS_REBUILD | FLAG_FAULTY)) !== 0) throw invalid(`unknown flags ${flags.toString(16)}`);
  const sb: Superblock = {
    version, volumeName, layout,
    arrayUuid: bytesToUuid(block.subarray(16, 32)),
    elementUuid: bytesToUuid(block.subarray(176, 192)),
    chunkBytes: view.getUint32(104, true),
    role: view.getUint32(108, true),
    count: view.getUint32(112, true),
    clean: (flags & FLAG_CLEAN) !== 0,
    needsRebuild: (flags & FLAG_NEEDS_REBUILD) !== 0,
    dataOffsetBytes: readU64(view, 120, 'data offset'),
    dataSizeBytes: readU64(view, 128, 'data size'),
    volumeSizeBytes: readU64(view, 136, 'volume size'),
    eventCount: readU64(view, 144, 'event counter'),
    createdMs: readU64(view, 152, 'created time'),
    bitmapOffsetBytes: readU64(view, 160, 'bitmap offset'),
    bitmapSizeBytes: readU64(view, 168, 'bitmap size'),
    ...((flags & FLAG_FAULTY) !== 0 ? { faulty: true } : {}),
    ...decodeIntegrity(view),
    ...decodeReshape(block, view),
    ...decodeHistory(view),
  };
  checkFields(sb);
  return sb;
}

/** The integrity fields at 192..216: all zero = none (older superblocks); anything else is checked by checkFields. */
function decodeIntegrity(view: DataView): { integrity?: IntegrityArea } {
  const offsetBytes = readU64(view, 192, 'integrity offset');
  const sizeBytes = readU64(view, 200, 'integrity size');
  const blockBytes = view.getUint32(208, true);
  const algo = view.getUint32(212, true);
  if (offsetBytes === 0 && sizeBytes === 0 && blockBytes === 0 && algo === 0) return {};
  return { integrity: { offsetBytes, sizeBytes, blockBytes, algo } };
}

/** Bytes 284..292: zero = no history id (older superblocks). */
function decodeHistory(view: DataView): { historyId?: string } {
  const id = view.getBigUint64(HISTORY_OFFSET, true);
  return id === 0n ? {} : { historyId: id.toString(16).padStart(16, '0') };
}

/** Decodes the first 4096 bytes; all-zero = blank. Throws only SuperblockError. */
export function decodeSuperblock(bytes: Uint8Array): Superblock | { kind: 'blank' } {
  try {
    return decodeChecked(bytes);
  } catch (err) {
    if (err instanceof SuperblockError) throw err;
    throw invalid(`undecodable superblock: ${String((err as Error)?.message ?? err)}`);
  }
}

export function isBlank(sb: Superblock | { kind: 'blank' }): sb is { kind: 'blank' } {
  return 'kind' in sb;
}
