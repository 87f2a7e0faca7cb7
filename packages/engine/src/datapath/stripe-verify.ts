// Integrity checks of what the stripe engine reads before it computes from it (docs/integrity.md):
// the old data and parity of a read-modify-write, the untouched data of a reconstruct-write, and
// the surviving units of a degraded read. Parity must never be computed from bytes that fail
// their checksums (it would carry the damage with a valid checksum of its own), and a rebuilt
// read must never come from them. On a failure the row span is repaired from parity first
// (StripeIntegrity.repairSpan, under the row lock the caller holds) and the caller reads again.
import { checksumMatches, INTEGRITY_BLOCK_BYTES } from '../integrity/types.js';
import { DataPathError } from './errno.js';
import { elementOffset, indexRole } from './map-parity.js';
import type { UnitContext } from './stripe-unit.js';

const BLOCK = INTEGRITY_BLOCK_BYTES;

/** An entry just read into scratch: its stripe index (data j, P = k, Q = k + 1) and its bytes. */
export interface ReadEntry {
  readonly index: number;
  readonly view: Uint8Array;
}

/**
 * True when every block read verifies (or carries no checksum); false after repairing the span
 * (read again); EIO when a block the caller needs stays lost. Costs one CRC call per entry and,
 * with the checksum pages cached, no I/O.
 */
export async function readsVerified(ctx: UnitContext, row: number, a: number, b: number, reads: readonly ReadEntry[]): Promise<boolean> {
  const it = ctx.integrity;
  if (it === null || reads.length === 0) return true;
  const g = ctx.io.vol.g;
  const len = b - a;
  if (a % BLOCK !== 0 || len % BLOCK !== 0) throw new DataPathError('EINVAL', `${ctx.io.vol.name}: row ${row} span [${a}, ${b}) is not whole ${BLOCK}-byte blocks`);
  const crcs = new Uint32Array(len / BLOCK);
  let bad = false;
  for (const r of reads) {
    const role = indexRole(g, row, r.index);
    const stored = await it.stored(role, elementOffset(g, role, row, a), len);
    if (stored === null) continue; // pages unreadable: nothing to check against (the element's errors fail it elsewhere)
    it.crc32cBlocks(r.view, BLOCK, crcs);
    for (let i = 0; i < crcs.length && !bad; i++) bad = !checksumMatches(stored[i]!, crcs[i]!);
    if (bad) break;
  }
  if (!bad) return true;
  await it.repairSpan(row, a, b, [...new Set(reads.map((r) => r.index))]);
  return false;
}
