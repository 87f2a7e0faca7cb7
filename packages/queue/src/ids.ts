// 64-bit request IDs. Layout (bit 63 = most significant):
//   bit 63      class (1 = remote, 0 = local)
//   bits 56..62 op (7 bits)
//   bits 44..55 volume index (12 bits)
//   bits 0..43  sequence (44 bits, wraps)
// The hot path keeps an ID as two uint32 words (hi = bits 32..63, lo = bits 0..31) because
// BigInt arithmetic allocates; BigInt is only for logs, maps and the wire.
import { assert } from './assert.js';

/**
 * COMPUTE: work a stage does on slab buffers without element I/O (the engine's parity maths);
 * what to compute is the submitter's business, named by the descriptor's AUX word.
 */
export const Op = { READ: 0, WRITE: 1, FLUSH: 2, TRIM: 3, WRITE_ZEROES: 4, CACHE: 5, COMPUTE: 6 } as const;
export type OpCode = (typeof Op)[keyof typeof Op];
export type RequestClass = 'local' | 'remote';
export interface RequestIdParts {
  cls: RequestClass;
  op: OpCode;
  volumeIndex: number;
  sequence: number;
}

export const VOLUME_INDEX_MAX = 4095;
/** Sequence numbers are taken modulo 2^44: a counter may run forever. */
export const SEQUENCE_MODULUS = 2 ** 44;
const OP_MAX = Math.max(...Object.values(Op));
const TWO_32 = 2 ** 32;

export function isOpCode(op: number): op is OpCode {
  return Number.isInteger(op) && op >= 0 && op <= OP_MAX;
}

function checkParts(cls: RequestClass, op: number, volumeIndex: number, sequence: number): void {
  assert(cls === 'local' || cls === 'remote', `request id: class must be 'local' or 'remote', got ${String(cls)}`);
  assert(isOpCode(op), `request id: unknown op ${op}`);
  assert(
    Number.isInteger(volumeIndex) && volumeIndex >= 0 && volumeIndex <= VOLUME_INDEX_MAX,
    `request id: volume index ${volumeIndex} outside [0, ${VOLUME_INDEX_MAX}]`,
  );
  assert(Number.isSafeInteger(sequence) && sequence >= 0, `request id: sequence ${sequence} is not a non-negative safe integer`);
}

/** Upper 32 bits as a uint32. The sequence is reduced modulo 2^44 (it wraps). */
export function requestIdHi(cls: RequestClass, op: OpCode, volumeIndex: number, sequence: number): number {
  checkParts(cls, op, volumeIndex, sequence);
  const seqHigh = Math.floor(sequence / TWO_32) & 0xfff; // sequence bits 32..43
  // `>>> 0` keeps the result unsigned when the class bit (bit 31 of the word) is set.
  return ((cls === 'remote' ? 0x8000_0000 : 0) | (op << 24) | (volumeIndex << 12) | seqHigh) >>> 0;
}

/** Lower 32 bits as a uint32 (ToUint32 is exact modulo 2^32 for safe integers). */
export function requestIdLo(sequence: number): number {
  assert(Number.isSafeInteger(sequence) && sequence >= 0, `request id: sequence ${sequence} is not a non-negative safe integer`);
  return sequence >>> 0;
}

export function requestIdFromWords(hi: number, lo: number): bigint {
  // Int32Array fields hold the words signed; accept both spellings and normalise.
  assert(Number.isInteger(hi) && hi >= -(2 ** 31) && hi < TWO_32, `request id: hi word ${hi} is not a 32-bit value`);
  assert(Number.isInteger(lo) && lo >= -(2 ** 31) && lo < TWO_32, `request id: lo word ${lo} is not a 32-bit value`);
  return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
}

export function makeRequestId(parts: RequestIdParts): bigint {
  const { cls, op, volumeIndex, sequence } = parts;
  return requestIdFromWords(requestIdHi(cls, op, volumeIndex, sequence), requestIdLo(sequence));
}

export function parseRequestId(id: bigint): RequestIdParts {
  assert(typeof id === 'bigint' && id >= 0n && id < 1n << 64n, `request id: ${String(id)} is not an unsigned 64-bit value`);
  const hi = Number(id >> 32n);
  const lo = Number(id & 0xffff_ffffn);
  const op = (hi >>> 24) & 0x7f;
  assert(isOpCode(op), `request id ${id.toString(16)}: unknown op ${op}`);
  return {
    cls: hi >>> 31 === 1 ? 'remote' : 'local',
    op,
    volumeIndex: (hi >>> 12) & 0xfff,
    sequence: (hi & 0xfff) * TWO_32 + lo,
  };
}
