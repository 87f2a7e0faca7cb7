// SCSI command descriptor blocks for a direct-access LUN (SBC-3/SPC-4) and parsers for what they
// return. Pure: bytes in, values out; the parsers never read past what the target returned.

import { IscsiProtocolError } from '../errors.js';

export const ScsiOp = {
  TestUnitReady: 0x00, Inquiry: 0x12, ModeSense6: 0x1a, ReadCapacity10: 0x25, Read10: 0x28, Write10: 0x2a,
  SynchronizeCache10: 0x35, Unmap: 0x42, Read16: 0x88, Write16: 0x8a, SynchronizeCache16: 0x91, WriteSame16: 0x93,
  ServiceActionIn16: 0x9e,
} as const;

export const ScsiStatus = { Good: 0x00, CheckCondition: 0x02, ConditionMet: 0x04, Busy: 0x08, ReservationConflict: 0x18, TaskSetFull: 0x28, AcaActive: 0x30, TaskAborted: 0x40 } as const;

const SA_READ_CAPACITY_16 = 0x10;
const SA_GET_LBA_STATUS = 0x12;
/** GET LBA STATUS parameter data: 8-byte header, then 16-byte descriptors. */
const LBA_STATUS_HEADER_BYTES = 8;
const LBA_STATUS_DESCRIPTOR_BYTES = 16;
const FUA = 0x08;
const U32_MAX = 0xffffffff;

function cdb(length: 6 | 10 | 16, op: number): Uint8Array {
  const b = new Uint8Array(length);
  b[0] = op;
  return b;
}

function putU64(b: Uint8Array, at: number, v: number): void {
  if (!Number.isSafeInteger(v) || v < 0) throw new IscsiProtocolError('bad-field', `LBA ${v} is not a safe non-negative integer`);
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  dv.setUint32(at, Math.floor(v / 2 ** 32));
  dv.setUint32(at + 4, v >>> 0);
}

function putU32(b: Uint8Array, at: number, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > U32_MAX) throw new IscsiProtocolError('bad-field', `${v} does not fit 32 bits`);
  new DataView(b.buffer, b.byteOffset, b.byteLength).setUint32(at, v);
}

function putU16(b: Uint8Array, at: number, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > 0xffff) throw new IscsiProtocolError('bad-field', `${v} does not fit 16 bits`);
  b[at] = v >> 8;
  b[at + 1] = v & 0xff;
}

export function testUnitReadyCdb(): Uint8Array {
  return cdb(6, ScsiOp.TestUnitReady);
}

/** Standard INQUIRY when `vpdPage` is undefined, else the EVPD page. */
export function inquiryCdb(allocationBytes: number, vpdPage?: number): Uint8Array {
  const b = cdb(6, ScsiOp.Inquiry);
  if (vpdPage !== undefined) { b[1] = 0x01; b[2] = vpdPage; }
  putU16(b, 3, allocationBytes);
  return b;
}

export function readCapacity16Cdb(): Uint8Array {
  const b = cdb(16, ScsiOp.ServiceActionIn16);
  b[1] = SA_READ_CAPACITY_16;
  putU32(b, 10, 32);
  return b;
}

export function readCapacity10Cdb(): Uint8Array {
  return cdb(10, ScsiOp.ReadCapacity10);
}

/** MODE SENSE(6), all pages, no block descriptors: we want the header's WP and DPOFUA bits. */
export function modeSense6Cdb(allocationBytes: number): Uint8Array {
  const b = cdb(6, ScsiOp.ModeSense6);
  b[1] = 0x08; // DBD
  b[2] = 0x3f; // current values, all pages
  b[4] = Math.min(allocationBytes, 255);
  return b;
}

export function readWrite16Cdb(write: boolean, lba: number, blocks: number, fua: boolean): Uint8Array {
  const b = cdb(16, write ? ScsiOp.Write16 : ScsiOp.Read16);
  if (fua) b[1] = FUA;
  putU64(b, 2, lba);
  putU32(b, 10, blocks);
  return b;
}

/** READ/WRITE(10) for targets without the 16-byte forms: LBA below 2^32, at most 65535 blocks. */
export function readWrite10Cdb(write: boolean, lba: number, blocks: number, fua: boolean): Uint8Array {
  const b = cdb(10, write ? ScsiOp.Write10 : ScsiOp.Read10);
  if (fua) b[1] = FUA;
  putU32(b, 2, lba);
  putU16(b, 7, blocks);
  return b;
}

/** Whole-LUN cache flush when blocks is 0. */
export function synchronizeCache16Cdb(lba = 0, blocks = 0): Uint8Array {
  const b = cdb(16, ScsiOp.SynchronizeCache16);
  putU64(b, 2, lba);
  putU32(b, 10, blocks);
  return b;
}

export function synchronizeCache10Cdb(): Uint8Array {
  return cdb(10, ScsiOp.SynchronizeCache10);
}

/** WRITE SAME(16) of one block; `unmap` lets the target deallocate (reads then return zeroes on LBPRZ). */
export function writeSame16Cdb(lba: number, blocks: number, unmap: boolean): Uint8Array {
  const b = cdb(16, ScsiOp.WriteSame16);
  if (unmap) b[1] = 0x08;
  putU64(b, 2, lba);
  putU32(b, 10, blocks);
  return b;
}

export interface UnmapExtent { readonly lba: number; readonly blocks: number }

export const UNMAP_DESCRIPTOR_BYTES = 16;
const UNMAP_HEADER_BYTES = 8;

/** UNMAP CDB and its parameter list (sent as Data-Out). */
export function unmapCommand(extents: readonly UnmapExtent[]): { cdb: Uint8Array; parameters: Uint8Array } {
  if (extents.length === 0 || extents.length > 4095) throw new IscsiProtocolError('bad-field', `UNMAP needs 1..4095 extents, got ${extents.length}`);
  const length = UNMAP_HEADER_BYTES + extents.length * UNMAP_DESCRIPTOR_BYTES;
  const p = new Uint8Array(length);
  putU16(p, 0, length - 2);
  putU16(p, 2, length - UNMAP_HEADER_BYTES);
  extents.forEach((e, i) => {
    putU64(p, UNMAP_HEADER_BYTES + i * UNMAP_DESCRIPTOR_BYTES, e.lba);
    putU32(p, UNMAP_HEADER_BYTES + i * UNMAP_DESCRIPTOR_BYTES + 8, e.blocks);
  });
  const c = cdb(10, ScsiOp.Unmap);
  putU16(c, 7, length);
  return { cdb: c, parameters: p };
}

// ---- parsers ----

function need(data: Uint8Array, bytes: number, what: string): void {
  if (data.length < bytes) throw new IscsiProtocolError('short-buffer', `${what}: ${data.length} bytes, need ${bytes}`);
}

function getU32(d: Uint8Array, at: number): number {
  return ((d[at]! << 24) | (d[at + 1]! << 16) | (d[at + 2]! << 8) | d[at + 3]!) >>> 0;
}

function getU64(d: Uint8Array, at: number): number {
  return getU32(d, at) * 2 ** 32 + getU32(d, at + 4);
}

export interface StandardInquiry {
  /** 0 connected, 1 not connected now, 3 no LUN here. */
  readonly peripheralQualifier: number;
  /** 0 = direct-access block device. */
  readonly deviceType: number;
  readonly removable: boolean;
  readonly version: number;
  readonly vendor: string;
  readonly product: string;
  readonly revision: string;
}

export function parseStandardInquiry(d: Uint8Array): StandardInquiry {
  need(d, 36, 'standard INQUIRY data');
  const ascii = (from: number, to: number): string => String.fromCharCode(...d.subarray(from, to)).replace(/[^\x20-\x7e]/g, '').trim();
  return {
    peripheralQualifier: d[0]! >> 5, deviceType: d[0]! & 0x1f, removable: (d[1]! & 0x80) !== 0, version: d[2]!,
    vendor: ascii(8, 16), product: ascii(16, 32), revision: ascii(32, 36),
  };
}

/** VPD page 0x00: the page codes the LUN supports. */
export function parseSupportedVpdPages(d: Uint8Array): number[] {
  need(d, 4, 'supported VPD pages');
  const n = Math.min((d[2]! << 8) | d[3]!, d.length - 4);
  return Array.from(d.subarray(4, 4 + n));
}

export interface BlockLimits {
  /** In logical blocks; 0 = no limit reported. */
  readonly maxTransferLengthBlocks: number;
  readonly optimalTransferLengthBlocks: number;
  readonly maxUnmapLbaCount: number;
  readonly maxUnmapBlockDescriptorCount: number;
  readonly optimalUnmapGranularityBlocks: number;
  /** 0 = no limit reported. */
  readonly maxWriteSameLengthBlocks: number;
}

/** VPD page 0xB0. Fields beyond what the target returned read as 0 ("not reported"). */
export function parseBlockLimitsVpd(d: Uint8Array): BlockLimits {
  need(d, 16, 'block limits VPD');
  const at32 = (at: number): number => (d.length >= at + 4 ? getU32(d, at) : 0);
  return {
    maxTransferLengthBlocks: at32(8), optimalTransferLengthBlocks: at32(12), maxUnmapLbaCount: at32(20),
    maxUnmapBlockDescriptorCount: at32(24), optimalUnmapGranularityBlocks: at32(28),
    maxWriteSameLengthBlocks: d.length >= 44 ? getU64(d, 36) : 0,
  };
}

export interface LogicalBlockProvisioning {
  readonly lbpu: boolean; readonly lbpws: boolean; readonly lbpws10: boolean; readonly lbprz: boolean;
  readonly provisioningType: number;
}

/** VPD page 0xB2. */
export function parseLogicalBlockProvisioningVpd(d: Uint8Array): LogicalBlockProvisioning {
  need(d, 6, 'logical block provisioning VPD');
  const f = d[5]!;
  return { lbpu: (f & 0x80) !== 0, lbpws: (f & 0x40) !== 0, lbpws10: (f & 0x20) !== 0, lbprz: (f & 0x04) !== 0, provisioningType: d.length > 6 ? d[6]! & 7 : 0 };
}

export interface Capacity {
  readonly lastLba: number;
  readonly blockSizeBytes: number;
  readonly logicalPerPhysicalExponent: number;
  /** Thin provisioning enabled (LBPME). */
  readonly lbpme: boolean;
  readonly lbprz: boolean;
}

export function parseReadCapacity16(d: Uint8Array): Capacity {
  need(d, 16, 'READ CAPACITY(16) data');
  return { lastLba: getU64(d, 0), blockSizeBytes: getU32(d, 8), logicalPerPhysicalExponent: d[13]! & 0x0f, lbpme: (d[14]! & 0x80) !== 0, lbprz: (d[14]! & 0x40) !== 0 };
}

/** lastLba 0xFFFFFFFF means "too big for this command, ask READ CAPACITY(16)". */
export function parseReadCapacity10(d: Uint8Array): Capacity {
  need(d, 8, 'READ CAPACITY(10) data');
  return { lastLba: getU32(d, 0), blockSizeBytes: getU32(d, 4), logicalPerPhysicalExponent: 0, lbpme: false, lbprz: false };
}

/** GET LBA STATUS (SBC-3 5.6): the provisioning state of the blocks from `lba` on. */
export function getLbaStatusCdb(lba: number, allocationBytes: number): Uint8Array {
  const b = cdb(16, ScsiOp.ServiceActionIn16);
  b[1] = SA_GET_LBA_STATUS;
  putU64(b, 2, lba);
  putU32(b, 10, allocationBytes);
  return b;
}

/** One run of blocks: 0 = mapped (or unknown), 1 = deallocated, 2 = anchored (SBC-3 table 51). */
export interface LbaStatusDescriptor {
  readonly lba: number;
  readonly blocks: number;
  readonly provisioning: number;
}

/** Parses GET LBA STATUS data; only whole descriptors inside both the returned bytes and the declared length count. */
export function parseLbaStatus(d: Uint8Array): LbaStatusDescriptor[] {
  need(d, LBA_STATUS_HEADER_BYTES, 'GET LBA STATUS data');
  // PARAMETER DATA LENGTH counts the bytes after itself (4).
  const declared = getU32(d, 0) + 4;
  const end = Math.min(d.length, declared);
  const out: LbaStatusDescriptor[] = [];
  for (let at = LBA_STATUS_HEADER_BYTES; at + LBA_STATUS_DESCRIPTOR_BYTES <= end; at += LBA_STATUS_DESCRIPTOR_BYTES) {
    out.push({ lba: getU64(d, at), blocks: getU32(d, at + 8), provisioning: d[at + 12]! & 0x0f });
  }
  return out;
}

export interface ModeSenseHeader { readonly writeProtected: boolean; readonly dpoFua: boolean }

export function parseModeSense6Header(d: Uint8Array): ModeSenseHeader {
  need(d, 4, 'MODE SENSE(6) header');
  return { writeProtected: (d[2]! & 0x80) !== 0, dpoFua: (d[2]! & 0x10) !== 0 };
}

/** Name of a CDB's command, for error messages. */
export function cdbName(c: Uint8Array): string {
  const op = c[0] ?? -1;
  if (op === ScsiOp.ServiceActionIn16 && ((c[1] ?? 0) & 0x1f) === SA_READ_CAPACITY_16) return 'READ CAPACITY(16)';
  if (op === ScsiOp.ServiceActionIn16 && ((c[1] ?? 0) & 0x1f) === SA_GET_LBA_STATUS) return 'GET LBA STATUS';
  const names: Record<number, string> = {
    0x00: 'TEST UNIT READY', 0x12: 'INQUIRY', 0x1a: 'MODE SENSE(6)', 0x25: 'READ CAPACITY(10)', 0x28: 'READ(10)', 0x2a: 'WRITE(10)',
    0x35: 'SYNCHRONIZE CACHE(10)', 0x42: 'UNMAP', 0x88: 'READ(16)', 0x8a: 'WRITE(16)', 0x91: 'SYNCHRONIZE CACHE(16)', 0x93: 'WRITE SAME(16)',
  };
  return names[op] ?? `SCSI opcode 0x${op.toString(16)}`;
}
