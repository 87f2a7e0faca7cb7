// CRC32C (Castagnoli, reflected polynomial 0x82F63B78), the iSCSI header and data digest: the
// project's one table-driven implementation (@onestack/native, slicing-by-16), streamed.
import { crc32cUpdate as update } from '@onestack/native';

/** The running state before any byte: feed it to crc32cUpdate, then crc32cFinish. */
export const CRC32C_INIT = 0xffffffff;

/** Folds `bytes` into a running (un-finished) CRC32C state. */
export function crc32cUpdate(state: number, bytes: Uint8Array): number {
  return update(state, bytes) >>> 0;
}

export function crc32cFinish(state: number): number {
  return (state ^ 0xffffffff) >>> 0;
}

/** CRC32C of one buffer: crc32c('123456789') = 0xE3069283. */
export function crc32c(bytes: Uint8Array): number {
  return crc32cFinish(crc32cUpdate(CRC32C_INIT, bytes));
}

/** iSCSI sends the digest least significant byte first (RFC 7143 appendix B.4 vectors). */
export function writeDigest(into: Uint8Array, at: number, digest: number): void {
  into[at] = digest & 0xff;
  into[at + 1] = (digest >>> 8) & 0xff;
  into[at + 2] = (digest >>> 16) & 0xff;
  into[at + 3] = (digest >>> 24) & 0xff;
}

export function readDigest(from: Uint8Array, at: number): number {
  return (from[at]! | (from[at + 1]! << 8) | (from[at + 2]! << 16) | (from[at + 3]! << 24)) >>> 0;
}
