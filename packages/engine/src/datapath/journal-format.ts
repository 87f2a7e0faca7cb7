// On-disk format of the raid5/6 stripe journal (docs/raid5-6.md), pure codecs. Each element's
// journal area [JOURNAL_OFFSET_BYTES, +JOURNAL_MAX_BYTES) starts with a 4 KiB journal header
// (the checkpoint: every transaction below it is complete in place and flushed), then a ring of
// records. A record is a 4 KiB header block followed by its payload (DATA) or nothing (ZERO);
// the next record starts on the next 4 KiB boundary. Integers little-endian, CRC32C
// (Castagnoli) over the header fields and, separately, over the payload.
import { crc32c } from '@onestack/native';
import { JOURNAL_MAX_BYTES, JOURNAL_OFFSET_BYTES } from '../meta/types.js';

export const JOURNAL_BLOCK_BYTES = 4096;
/** Where the ring of records starts on the element, and its size. */
export const RING_OFFSET_BYTES = JOURNAL_OFFSET_BYTES + JOURNAL_BLOCK_BYTES;
export const RING_BYTES = JOURNAL_MAX_BYTES - JOURNAL_BLOCK_BYTES;
export const JOURNAL_VERSION = 1;
const HEADER_MAGIC = 0x484a534f; // "OSJH"
const RECORD_MAGIC = 0x524a534f; // "OSJR"
/** Fields covered by the header CRC (the CRC itself follows them). */
const HEADER_FIELDS_BYTES = 32;
const RECORD_FIELDS_BYTES = 60;
const TWO_32 = 2 ** 32;
const ROLES_MAX = 64;

export const RecordKind = { DATA: 1, ZERO: 2 } as const;
export type RecordKindCode = (typeof RecordKind)[keyof typeof RecordKind];

export interface JournalHeader {
  readonly arrayId: Uint8Array;
  /** Transactions with a lower sequence are complete in place and flushed: never replayed. */
  readonly checkpointSeq: number;
}

export interface RecordHeader {
  readonly kind: RecordKindCode;
  readonly arrayId: Uint8Array;
  /** Transaction sequence (one per stripe update, volume-wide). */
  readonly seq: number;
  /** The role whose element holds this record (and receives its bytes). */
  readonly role: number;
  /** Element count of the array (a sanity check on replay). */
  readonly width: number;
  /** Every role the transaction writes: it counts as committed only if each present one holds its record. */
  readonly participants: readonly number[];
  /** Where the bytes go on this element (element offset, data area). */
  readonly elementOffsetBytes: number;
  readonly lengthBytes: number;
  /** CRC32C of the payload (DATA); 0 for ZERO. */
  readonly payloadCrc: number;
}

/** 16 bytes from a UUID string; all zero when absent (volumes made outside the engine, tests). */
export function arrayIdBytes(uuid: string | undefined): Uint8Array {
  const out = new Uint8Array(16);
  if (uuid === undefined) return out;
  const hex = uuid.replace(/-/g, '');
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw new RangeError(`array id ${JSON.stringify(uuid.slice(0, 40))} is not a UUID`);
  for (let i = 0; i < 16; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

function sameId(a: Uint8Array, b: Uint8Array): boolean {
  for (let i = 0; i < 16; i++) if (a[i] !== b[i]) return false;
  return true;
}

function putU64(dv: DataView, at: number, n: number): void {
  if (!(Number.isSafeInteger(n) && n >= 0)) throw new RangeError(`journal: ${n} is not a u64 we can hold`);
  dv.setUint32(at, n % TWO_32, true);
  dv.setUint32(at + 4, Math.floor(n / TWO_32), true);
}

function getU64(dv: DataView, at: number): number {
  return dv.getUint32(at + 4, true) * TWO_32 + dv.getUint32(at, true);
}

/** The fields and the CRC32C after them; checked against the view, not its buffer, so nothing past it is read. */
function view(bytes: Uint8Array, need: number): DataView {
  if (bytes.length < need + 4) throw new RangeError(`journal block of ${bytes.length} bytes, need ${need + 4}`);
  return new DataView(bytes.buffer, bytes.byteOffset, need + 4);
}

/** Writes a journal header into `into` (at least 4 KiB; the rest of the block is zeroed). */
export function encodeJournalHeader(into: Uint8Array, h: JournalHeader): void {
  into.fill(0, 0, JOURNAL_BLOCK_BYTES);
  const dv = view(into, HEADER_FIELDS_BYTES);
  dv.setUint32(0, HEADER_MAGIC, true);
  dv.setUint16(4, JOURNAL_VERSION, true);
  into.set(h.arrayId.subarray(0, 16), 8);
  putU64(dv, 24, h.checkpointSeq);
  dv.setUint32(HEADER_FIELDS_BYTES, crc32c(into.subarray(0, HEADER_FIELDS_BYTES)), true);
}

/** The header, or null when the block holds none (blank, torn or another version). */
export function decodeJournalHeader(bytes: Uint8Array): JournalHeader | null {
  const dv = view(bytes, HEADER_FIELDS_BYTES);
  if (dv.getUint32(0, true) !== HEADER_MAGIC || dv.getUint16(4, true) !== JOURNAL_VERSION) return null;
  if (dv.getUint32(HEADER_FIELDS_BYTES, true) !== crc32c(bytes.subarray(0, HEADER_FIELDS_BYTES))) return null;
  return { arrayId: bytes.slice(8, 24), checkpointSeq: getU64(dv, 24) };
}

export function encodeRecordHeader(into: Uint8Array, r: RecordHeader): void {
  if (!(r.role >= 0 && r.role < ROLES_MAX && r.width > r.role && r.width <= ROLES_MAX)) throw new RangeError(`journal record: role ${r.role} of ${r.width}`);
  into.fill(0, 0, JOURNAL_BLOCK_BYTES);
  const dv = view(into, RECORD_FIELDS_BYTES);
  dv.setUint32(0, RECORD_MAGIC, true);
  dv.setUint16(4, JOURNAL_VERSION, true);
  dv.setUint16(6, r.kind, true);
  into.set(r.arrayId.subarray(0, 16), 8);
  putU64(dv, 24, r.seq);
  dv.setUint16(32, r.role, true);
  dv.setUint16(34, r.width, true);
  let lo = 0;
  let hi = 0;
  for (const role of r.participants) {
    if (!(Number.isInteger(role) && role >= 0 && role < r.width)) throw new RangeError(`journal record: participant ${role} of ${r.width}`);
    if (role < 32) lo |= 1 << role;
    else hi |= 1 << (role - 32);
  }
  dv.setUint32(36, lo >>> 0, true);
  dv.setUint32(40, hi >>> 0, true);
  putU64(dv, 44, r.elementOffsetBytes);
  dv.setUint32(52, r.lengthBytes, true);
  dv.setUint32(56, r.payloadCrc >>> 0, true);
  dv.setUint32(RECORD_FIELDS_BYTES, crc32c(into.subarray(0, RECORD_FIELDS_BYTES)), true);
}

/** A record header of array `arrayId`, or null (not a header, torn, another array or version). */
export function decodeRecordHeader(bytes: Uint8Array, arrayId: Uint8Array): RecordHeader | null {
  const dv = view(bytes, RECORD_FIELDS_BYTES);
  if (dv.getUint32(0, true) !== RECORD_MAGIC || dv.getUint16(4, true) !== JOURNAL_VERSION) return null;
  if (dv.getUint32(RECORD_FIELDS_BYTES, true) !== crc32c(bytes.subarray(0, RECORD_FIELDS_BYTES))) return null;
  if (!sameId(bytes.subarray(8, 24), arrayId)) return null;
  const kind = dv.getUint16(6, true);
  if (kind !== RecordKind.DATA && kind !== RecordKind.ZERO) return null;
  const participants: number[] = [];
  const lo = dv.getUint32(36, true);
  const hi = dv.getUint32(40, true);
  for (let role = 0; role < ROLES_MAX; role++) if (((role < 32 ? lo : hi) >>> (role & 31)) & 1) participants.push(role);
  return {
    kind, arrayId: bytes.slice(8, 24), seq: getU64(dv, 24), role: dv.getUint16(32, true), width: dv.getUint16(34, true), participants,
    elementOffsetBytes: getU64(dv, 44), lengthBytes: dv.getUint32(52, true), payloadCrc: dv.getUint32(56, true),
  };
}

/** Ring bytes a record takes: its header block, then its payload rounded up to whole blocks. */
export function recordSpanBytes(kind: RecordKindCode, lengthBytes: number): number {
  return JOURNAL_BLOCK_BYTES + (kind === RecordKind.DATA ? Math.ceil(lengthBytes / JOURNAL_BLOCK_BYTES) * JOURNAL_BLOCK_BYTES : 0);
}

export function sameArray(a: Uint8Array, b: Uint8Array): boolean {
  return sameId(a, b);
}
