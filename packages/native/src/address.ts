// Where a view's memory sits relative to a page: O_DIRECT needs aligned buffers, and a
// SharedArrayBuffer's backing store is not page-aligned (seen here: base ≡ 16 mod 4096).
import { nativeAddon } from './loader.js';
import { locateAddress } from './locate.js';
import { pageBytes, probeDirectIo } from './probe.js';

/**
 * Real address of view[0] mod 4096: from the addon, else located in-process through
 * /proc/self/mem (which briefly rewrites view[0..32): call it before sharing the memory).
 * Null if unknown. Small non-shared arrays (< 64 bytes) may live in the moving JS heap;
 * ask about SharedArrayBuffers or large buffers only.
 */
export function addressMod4096(view: Uint8Array): number | null {
  const addon = nativeAddon();
  if (addon !== null) {
    try {
      return Number(addon.bufferAddress(view) & BigInt(pageBytes - 1));
    } catch {
      return null; // detached or zero-sized backing store: no first byte to place
    }
  }
  // The scan can miss (about 1 run in 500 here; a marker copy elsewhere can use up the candidate
  // bound): a fresh random marker usually finds it. Bounded: three tries.
  for (let attempt = 0; attempt < LOCATE_TRIES; attempt++) {
    const address = locateAddress(view);
    if (address !== null) return Number(address & BigInt(pageBytes - 1));
  }
  return null;
}

const LOCATE_TRIES = 3;

/**
 * Pure-JS fallback: O_DIRECT-reads a 4 KiB block of a temp file in probeDir into the SAB at
 * offsets 0, 16, ..., 4080 and returns (4096 - first accepted offset) % 4096. Null if O_DIRECT
 * is unsupported there (e.g. tmpfs).
 *
 * When the device accepts smaller alignment (here: 512-byte, dma_alignment 511), the accepted
 * offsets repeat every alignBytes and only tell the address mod alignBytes; the page offset is
 * then taken from locating the memory, and must agree with the probe, else null. The SAB's
 * first 8 KiB are restored afterwards; call this before sharing the SAB.
 */
export function probeAddressMod4096(sab: SharedArrayBuffer, probeDir: string): number | null {
  const probe = probeDirectIo(sab, probeDir);
  if (probe === null) return null;
  const residue = (probe.alignBytes - probe.firstOffsetBytes) % probe.alignBytes;
  if (probe.alignBytes === pageBytes && probe.complete) return residue;
  const address = locateAddress(new Uint8Array(sab));
  if (address === null) return null;
  const located = Number(address & BigInt(pageBytes - 1));
  return located % probe.alignBytes === residue ? located : null;
}
