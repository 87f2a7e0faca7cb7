// The 48-byte Basic Header Segment of every PDU we send or receive (RFC 7143 section 11), both
// directions, as pure functions so fakes and fuzzers can use them. Multi-byte fields are big-endian.

import { IscsiProtocolError } from '../errors.js';

export const BHS_BYTES = 48;
/** TotalAHSLength is one byte counting 4-byte words. */
export const AHS_BYTES_MAX = 255 * 4;
export const DIGEST_BYTES = 4;
/** DataSegmentLength is 24 bits. */
export const DATA_SEGMENT_BYTES_MAX = 0xffffff;
/** The reserved task tag: "no task" (unsolicited NOP-In, Reject, Async Message). */
export const RESERVED_TAG = 0xffffffff;

export const Opcode = {
  NopOut: 0x00, ScsiCommand: 0x01, LoginRequest: 0x03, TextRequest: 0x04, DataOut: 0x05, LogoutRequest: 0x06,
  NopIn: 0x20, ScsiResponse: 0x21, LoginResponse: 0x23, TextResponse: 0x24, DataIn: 0x25, LogoutResponse: 0x26,
  R2T: 0x31, AsyncMessage: 0x32, Reject: 0x3f,
} as const;

/** Fields every BHS has. `lun` is the SAM LUN number (peripheral or flat addressing). */
interface Common { readonly totalAhsWords?: number; readonly dataSegmentLength: number; readonly itt: number }
interface TargetSeq { readonly statSN: number; readonly expCmdSN: number; readonly maxCmdSN: number }

export interface NopOut extends Common { readonly opcode: 0x00; readonly immediate: boolean; readonly lun: number; readonly ttt: number; readonly cmdSN: number; readonly expStatSN: number }
export interface ScsiCommand extends Common {
  readonly opcode: 0x01; readonly immediate: boolean; readonly final: boolean; readonly read: boolean; readonly write: boolean;
  readonly attr: number; readonly lun: number; readonly expectedDataTransferLength: number; readonly cmdSN: number;
  readonly expStatSN: number; readonly cdb: Uint8Array;
}
export interface LoginRequest extends Common {
  readonly opcode: 0x03; readonly transit: boolean; readonly cont: boolean; readonly csg: number; readonly nsg: number;
  readonly versionMax: number; readonly versionMin: number; readonly isid: Uint8Array; readonly tsih: number;
  readonly cid: number; readonly cmdSN: number; readonly expStatSN: number;
}
export interface TextRequest extends Common { readonly opcode: 0x04; readonly immediate: boolean; readonly final: boolean; readonly cont: boolean; readonly lun: number; readonly ttt: number; readonly cmdSN: number; readonly expStatSN: number }
export interface DataOut extends Common { readonly opcode: 0x05; readonly final: boolean; readonly lun: number; readonly ttt: number; readonly expStatSN: number; readonly dataSN: number; readonly bufferOffset: number }
export interface LogoutRequest extends Common { readonly opcode: 0x06; readonly immediate: boolean; readonly reason: number; readonly cid: number; readonly cmdSN: number; readonly expStatSN: number }
export interface NopIn extends Common, TargetSeq { readonly opcode: 0x20; readonly lun: number; readonly ttt: number }
export interface ScsiResponse extends Common, TargetSeq {
  readonly opcode: 0x21; readonly bidiOverflow: boolean; readonly bidiUnderflow: boolean; readonly overflow: boolean; readonly underflow: boolean;
  readonly response: number; readonly status: number; readonly snackTag: number; readonly expDataSN: number;
  readonly bidiResidualCount: number; readonly residualCount: number;
}
export interface LoginResponse extends Common, TargetSeq {
  readonly opcode: 0x23; readonly transit: boolean; readonly cont: boolean; readonly csg: number; readonly nsg: number;
  readonly versionMax: number; readonly versionActive: number; readonly isid: Uint8Array; readonly tsih: number;
  readonly statusClass: number; readonly statusDetail: number;
}
export interface TextResponse extends Common, TargetSeq { readonly opcode: 0x24; readonly final: boolean; readonly cont: boolean; readonly lun: number; readonly ttt: number }
export interface DataIn extends Common, TargetSeq {
  readonly opcode: 0x25; readonly final: boolean; readonly ack: boolean; readonly overflow: boolean; readonly underflow: boolean;
  readonly hasStatus: boolean; readonly status: number; readonly lun: number; readonly ttt: number; readonly dataSN: number;
  readonly bufferOffset: number; readonly residualCount: number;
}
export interface LogoutResponse extends Common, TargetSeq { readonly opcode: 0x26; readonly response: number; readonly time2Wait: number; readonly time2Retain: number }
export interface R2T extends Common, TargetSeq { readonly opcode: 0x31; readonly lun: number; readonly ttt: number; readonly r2tSN: number; readonly bufferOffset: number; readonly desiredDataTransferLength: number }
export interface AsyncMessage extends Common, TargetSeq {
  readonly opcode: 0x32; readonly lun: number; readonly asyncEvent: number; readonly asyncVCode: number;
  readonly parameter1: number; readonly parameter2: number; readonly parameter3: number;
}
export interface Reject extends Common, TargetSeq { readonly opcode: 0x3f; readonly reason: number; readonly dataSN: number }

export type InitiatorPdu = NopOut | ScsiCommand | LoginRequest | TextRequest | DataOut | LogoutRequest;
export type TargetPdu = NopIn | ScsiResponse | LoginResponse | TextResponse | DataIn | LogoutResponse | R2T | AsyncMessage | Reject;
export type Pdu = InitiatorPdu | TargetPdu;

export function isInitiatorPdu(pdu: Pdu): pdu is InitiatorPdu {
  return pdu.opcode < 0x20;
}

export function isTargetPdu(pdu: Pdu): pdu is TargetPdu {
  return pdu.opcode >= 0x20;
}

/** Bytes of padding that follow `length` bytes of data segment to reach a 4-byte boundary. */
export function padBytes(length: number): number {
  return (4 - (length & 3)) & 3;
}

/** SAM-2 single-level LUN: peripheral addressing below 256, flat space up to 16383. */
export function encodeLun(lun: number, into: Uint8Array, at: number): void {
  if (!Number.isInteger(lun) || lun < 0 || lun > 0x3fff) throw new IscsiProtocolError('bad-field', `LUN ${lun} is outside 0..16383`);
  into.fill(0, at, at + 8);
  if (lun < 256) into[at + 1] = lun;
  else { into[at] = 0x40 | (lun >> 8); into[at + 1] = lun & 0xff; }
}

export function decodeLun(from: Uint8Array, at: number): number {
  const method = from[at]! >> 6;
  // Peripheral (0) and flat (1) addressing carry the number in the low 14 bits of the first level.
  return method <= 1 ? ((from[at]! & 0x3f) << 8) | from[at + 1]! : 0xffff;
}

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

function u32(v: number, what: string): number {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new IscsiProtocolError('bad-field', `${what} ${v} is not a 32-bit unsigned value`);
  return v;
}

/** Encodes a BHS (48 bytes). Data, AHS, padding and digests are the framer's business. */
export function encodeBhs(pdu: Pdu): Uint8Array {
  const b = new Uint8Array(BHS_BYTES);
  const v = view(b);
  const ahsWords = pdu.totalAhsWords ?? 0;
  if (pdu.dataSegmentLength < 0 || pdu.dataSegmentLength > DATA_SEGMENT_BYTES_MAX) throw new IscsiProtocolError('bad-field', `DataSegmentLength ${pdu.dataSegmentLength} does not fit 24 bits`);
  if (ahsWords < 0 || ahsWords > 255) throw new IscsiProtocolError('bad-field', `TotalAHSLength ${ahsWords} does not fit a byte`);
  // The I bit: immediate delivery. Login requests always carry it.
  const immediate = pdu.opcode === Opcode.LoginRequest || ('immediate' in pdu && pdu.immediate);
  b[0] = pdu.opcode | (immediate ? 0x40 : 0);
  b[4] = ahsWords;
  b[5] = (pdu.dataSegmentLength >>> 16) & 0xff;
  b[6] = (pdu.dataSegmentLength >>> 8) & 0xff;
  b[7] = pdu.dataSegmentLength & 0xff;
  v.setUint32(16, u32(pdu.itt, 'ITT'));
  if (isInitiatorPdu(pdu)) encodeInitiator(pdu, b, v);
  else encodeTarget(pdu, b, v);
  return b;
}

function encodeInitiator(pdu: InitiatorPdu, b: Uint8Array, v: DataView): void {
  switch (pdu.opcode) {
    case Opcode.NopOut:
      b[1] = 0x80; encodeLun(pdu.lun, b, 8);
      v.setUint32(20, u32(pdu.ttt, 'TTT')); v.setUint32(24, pdu.cmdSN >>> 0); v.setUint32(28, pdu.expStatSN >>> 0);
      return;
    case Opcode.ScsiCommand:
      if (pdu.cdb.length > 16) throw new IscsiProtocolError('bad-field', `CDB of ${pdu.cdb.length} bytes needs an AHS; at most 16 supported`);
      b[1] = (pdu.final ? 0x80 : 0) | (pdu.read ? 0x40 : 0) | (pdu.write ? 0x20 : 0) | (pdu.attr & 0x07);
      encodeLun(pdu.lun, b, 8); v.setUint32(20, u32(pdu.expectedDataTransferLength, 'ExpectedDataTransferLength'));
      v.setUint32(24, pdu.cmdSN >>> 0); v.setUint32(28, pdu.expStatSN >>> 0); b.set(pdu.cdb, 32);
      return;
    case Opcode.LoginRequest:
      b[1] = (pdu.transit ? 0x80 : 0) | (pdu.cont ? 0x40 : 0) | ((pdu.csg & 3) << 2) | (pdu.nsg & 3);
      b[2] = pdu.versionMax; b[3] = pdu.versionMin; encodeIsid(pdu.isid, b); v.setUint16(14, pdu.tsih);
      v.setUint16(20, pdu.cid); v.setUint32(24, pdu.cmdSN >>> 0); v.setUint32(28, pdu.expStatSN >>> 0);
      return;
    case Opcode.TextRequest:
      b[1] = (pdu.final ? 0x80 : 0) | (pdu.cont ? 0x40 : 0); encodeLun(pdu.lun, b, 8);
      v.setUint32(20, u32(pdu.ttt, 'TTT')); v.setUint32(24, pdu.cmdSN >>> 0); v.setUint32(28, pdu.expStatSN >>> 0);
      return;
    case Opcode.DataOut:
      b[1] = pdu.final ? 0x80 : 0; encodeLun(pdu.lun, b, 8); v.setUint32(20, u32(pdu.ttt, 'TTT'));
      v.setUint32(28, pdu.expStatSN >>> 0); v.setUint32(36, pdu.dataSN >>> 0); v.setUint32(40, u32(pdu.bufferOffset, 'BufferOffset'));
      return;
    case Opcode.LogoutRequest:
      b[1] = 0x80 | (pdu.reason & 0x7f); v.setUint16(20, pdu.cid);
      v.setUint32(24, pdu.cmdSN >>> 0); v.setUint32(28, pdu.expStatSN >>> 0);
      return;
  }
}

function encodeIsid(isid: Uint8Array, b: Uint8Array): void {
  if (isid.length !== 6) throw new IscsiProtocolError('bad-field', `ISID must be 6 bytes, got ${isid.length}`);
  b.set(isid, 8);
}

function encodeTarget(pdu: TargetPdu, b: Uint8Array, v: DataView): void {
  v.setUint32(24, pdu.statSN >>> 0); v.setUint32(28, pdu.expCmdSN >>> 0); v.setUint32(32, pdu.maxCmdSN >>> 0);
  switch (pdu.opcode) {
    case Opcode.NopIn:
      b[1] = 0x80; encodeLun(pdu.lun, b, 8); v.setUint32(20, u32(pdu.ttt, 'TTT'));
      return;
    case Opcode.ScsiResponse:
      b[1] = 0x80 | (pdu.bidiOverflow ? 0x10 : 0) | (pdu.bidiUnderflow ? 0x08 : 0) | (pdu.overflow ? 0x04 : 0) | (pdu.underflow ? 0x02 : 0);
      b[2] = pdu.response; b[3] = pdu.status; v.setUint32(20, pdu.snackTag >>> 0); v.setUint32(36, pdu.expDataSN >>> 0);
      v.setUint32(40, pdu.bidiResidualCount >>> 0); v.setUint32(44, pdu.residualCount >>> 0);
      return;
    case Opcode.LoginResponse:
      b[1] = (pdu.transit ? 0x80 : 0) | (pdu.cont ? 0x40 : 0) | ((pdu.csg & 3) << 2) | (pdu.nsg & 3);
      b[2] = pdu.versionMax; b[3] = pdu.versionActive; encodeIsid(pdu.isid, b); v.setUint16(14, pdu.tsih);
      b[36] = pdu.statusClass; b[37] = pdu.statusDetail;
      return;
    case Opcode.TextResponse:
      b[1] = (pdu.final ? 0x80 : 0) | (pdu.cont ? 0x40 : 0); encodeLun(pdu.lun, b, 8); v.setUint32(20, u32(pdu.ttt, 'TTT'));
      return;
    case Opcode.DataIn:
      b[1] = (pdu.final ? 0x80 : 0) | (pdu.ack ? 0x40 : 0) | (pdu.overflow ? 0x04 : 0) | (pdu.underflow ? 0x02 : 0) | (pdu.hasStatus ? 0x01 : 0);
      b[3] = pdu.hasStatus ? pdu.status : 0; encodeLun(pdu.lun, b, 8); v.setUint32(20, u32(pdu.ttt, 'TTT'));
      v.setUint32(36, pdu.dataSN >>> 0); v.setUint32(40, u32(pdu.bufferOffset, 'BufferOffset')); v.setUint32(44, pdu.residualCount >>> 0);
      return;
    case Opcode.LogoutResponse:
      b[1] = 0x80; b[2] = pdu.response; v.setUint16(40, pdu.time2Wait); v.setUint16(42, pdu.time2Retain);
      return;
    case Opcode.R2T:
      b[1] = 0x80; encodeLun(pdu.lun, b, 8); v.setUint32(20, u32(pdu.ttt, 'TTT')); v.setUint32(36, pdu.r2tSN >>> 0);
      v.setUint32(40, u32(pdu.bufferOffset, 'BufferOffset')); v.setUint32(44, u32(pdu.desiredDataTransferLength, 'DesiredDataTransferLength'));
      return;
    case Opcode.AsyncMessage:
      b[1] = 0x80; encodeLun(pdu.lun, b, 8); b[36] = pdu.asyncEvent; b[37] = pdu.asyncVCode;
      v.setUint16(38, pdu.parameter1); v.setUint16(40, pdu.parameter2); v.setUint16(42, pdu.parameter3);
      return;
    case Opcode.Reject:
      b[1] = 0x80; b[2] = pdu.reason; v.setUint32(36, pdu.dataSN >>> 0);
      return;
  }
}

/** Decodes a BHS. Throws IscsiProtocolError for a short buffer or an opcode we do not speak. */
export function decodeBhs(b: Uint8Array): Pdu {
  if (b.length < BHS_BYTES) throw new IscsiProtocolError('short-buffer', `a BHS is ${BHS_BYTES} bytes, got ${b.length}`);
  const v = view(b);
  const common = { totalAhsWords: b[4]!, dataSegmentLength: (b[5]! << 16) | (b[6]! << 8) | b[7]!, itt: v.getUint32(16) };
  const opcode = b[0]! & 0x3f;
  return opcode < 0x20 ? decodeInitiator(opcode, b, v, common) : decodeTarget(opcode, b, v, common);
}

type CommonFields = { totalAhsWords: number; dataSegmentLength: number; itt: number };

function decodeInitiator(opcode: number, b: Uint8Array, v: DataView, c: CommonFields): InitiatorPdu {
  const immediate = (b[0]! & 0x40) !== 0;
  const f = b[1]!;
  switch (opcode) {
    case Opcode.NopOut:
      return { ...c, opcode, immediate, lun: decodeLun(b, 8), ttt: v.getUint32(20), cmdSN: v.getUint32(24), expStatSN: v.getUint32(28) };
    case Opcode.ScsiCommand:
      return {
        ...c, opcode, immediate, final: (f & 0x80) !== 0, read: (f & 0x40) !== 0, write: (f & 0x20) !== 0, attr: f & 7,
        lun: decodeLun(b, 8), expectedDataTransferLength: v.getUint32(20), cmdSN: v.getUint32(24), expStatSN: v.getUint32(28),
        cdb: b.slice(32, 48),
      };
    case Opcode.LoginRequest:
      return {
        ...c, opcode, transit: (f & 0x80) !== 0, cont: (f & 0x40) !== 0, csg: (f >> 2) & 3, nsg: f & 3, versionMax: b[2]!,
        versionMin: b[3]!, isid: b.slice(8, 14), tsih: v.getUint16(14), cid: v.getUint16(20), cmdSN: v.getUint32(24), expStatSN: v.getUint32(28),
      };
    case Opcode.TextRequest:
      return { ...c, opcode, immediate, final: (f & 0x80) !== 0, cont: (f & 0x40) !== 0, lun: decodeLun(b, 8), ttt: v.getUint32(20), cmdSN: v.getUint32(24), expStatSN: v.getUint32(28) };
    case Opcode.DataOut:
      return { ...c, opcode, final: (f & 0x80) !== 0, lun: decodeLun(b, 8), ttt: v.getUint32(20), expStatSN: v.getUint32(28), dataSN: v.getUint32(36), bufferOffset: v.getUint32(40) };
    case Opcode.LogoutRequest:
      return { ...c, opcode, immediate, reason: f & 0x7f, cid: v.getUint16(20), cmdSN: v.getUint32(24), expStatSN: v.getUint32(28) };
    default:
      throw new IscsiProtocolError('unknown-opcode', `unsupported initiator opcode 0x${opcode.toString(16)}`);
  }
}

function decodeTarget(opcode: number, b: Uint8Array, v: DataView, c0: CommonFields): TargetPdu {
  const c = { ...c0, statSN: v.getUint32(24), expCmdSN: v.getUint32(28), maxCmdSN: v.getUint32(32) };
  const f = b[1]!;
  switch (opcode) {
    case Opcode.NopIn:
      return { ...c, opcode, lun: decodeLun(b, 8), ttt: v.getUint32(20) };
    case Opcode.ScsiResponse:
      return {
        ...c, opcode, bidiOverflow: (f & 0x10) !== 0, bidiUnderflow: (f & 0x08) !== 0, overflow: (f & 0x04) !== 0, underflow: (f & 0x02) !== 0,
        response: b[2]!, status: b[3]!, snackTag: v.getUint32(20), expDataSN: v.getUint32(36), bidiResidualCount: v.getUint32(40), residualCount: v.getUint32(44),
      };
    case Opcode.LoginResponse:
      return {
        ...c, opcode, transit: (f & 0x80) !== 0, cont: (f & 0x40) !== 0, csg: (f >> 2) & 3, nsg: f & 3, versionMax: b[2]!, versionActive: b[3]!,
        isid: b.slice(8, 14), tsih: v.getUint16(14), statusClass: b[36]!, statusDetail: b[37]!,
      };
    case Opcode.TextResponse:
      return { ...c, opcode, final: (f & 0x80) !== 0, cont: (f & 0x40) !== 0, lun: decodeLun(b, 8), ttt: v.getUint32(20) };
    case Opcode.DataIn:
      return {
        ...c, opcode, final: (f & 0x80) !== 0, ack: (f & 0x40) !== 0, overflow: (f & 0x04) !== 0, underflow: (f & 0x02) !== 0, hasStatus: (f & 0x01) !== 0,
        status: b[3]!, lun: decodeLun(b, 8), ttt: v.getUint32(20), dataSN: v.getUint32(36), bufferOffset: v.getUint32(40), residualCount: v.getUint32(44),
      };
    case Opcode.LogoutResponse:
      return { ...c, opcode, response: b[2]!, time2Wait: v.getUint16(40), time2Retain: v.getUint16(42) };
    case Opcode.R2T:
      return { ...c, opcode, lun: decodeLun(b, 8), ttt: v.getUint32(20), r2tSN: v.getUint32(36), bufferOffset: v.getUint32(40), desiredDataTransferLength: v.getUint32(44) };
    case Opcode.AsyncMessage:
      return { ...c, opcode, lun: decodeLun(b, 8), asyncEvent: b[36]!, asyncVCode: b[37]!, parameter1: v.getUint16(38), parameter2: v.getUint16(40), parameter3: v.getUint16(42) };
    case Opcode.Reject:
      return { ...c, opcode, reason: b[2]!, dataSN: v.getUint32(36) };
    default:
      throw new IscsiProtocolError('unknown-opcode', `unsupported target opcode 0x${opcode.toString(16)}`);
  }
}

/** Names for logs and errors. */
export function opcodeName(opcode: number): string {
  for (const [name, value] of Object.entries(Opcode)) if (value === opcode) return name;
  return `opcode 0x${opcode.toString(16)}`;
}
