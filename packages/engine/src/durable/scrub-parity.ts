// The scrub unit checker for raid5/raid6: one row (stripe) per unit, checked by the volume's
// stripe engine (datapath/stripe-engine.ts checkStripe: every role read, P and Q recomputed in
// the middle stage, raid6 locating a single bad data chunk by its syndrome) under the row lock,
// while the scrub's fence holds client writes to the row's volume range back. Repair rewrites
// what the check blames: raid5 the parity (it cannot tell which chunk is wrong, like md), raid6
// the located chunk, or P and Q when no single chunk explains the mismatch. With integrity the
// stripe engine judges every unit by its checksums first and reports blocks per role (byRole),
// which the scrub shows per element.
import type { StripeCheck } from '../datapath/stripe-maint.js';
import type { ScrubTarget, ScrubUnit, UnitChecker, UnitContext, UnitVerdict } from './scrub.js';

/** What the checker needs of the stripe engine. */
export interface StripeChecker {
  checkStripe(row: number, repair?: boolean): Promise<StripeCheck>;
}

export interface ParityUnit extends ScrubUnit {
  readonly row: number;
}

/** Element bytes in flight per scrub, roughly: a row reads a chunk on every role. */
const INFLIGHT_BYTES = 4 * 1024 * 1024;

export function parityChecker(t: ScrubTarget): UnitChecker<ParityUnit> {
  const g = t.geometry;
  if (g.layout !== 'raid5' && g.layout !== 'raid6') throw new Error(`parityChecker: ${g.layout} keeps no parity`);
  const stripe = t.stripe;
  if (stripe === undefined) throw new Error(`volume ${t.name}: no stripe engine to check its parity with`);
  const n = t.elements.length;
  const rowBytes = (n - (g.layout === 'raid5' ? 1 : 2)) * g.chunkBytes;
  const all = (usable: (role: number) => boolean): boolean => t.elements.every((_, role) => usable(role));
  return {
    totalBytes: g.sizeBytes,
    concurrency: Math.max(2, Math.floor(INFLIGHT_BYTES / (n * g.chunkBytes))),
    units: () => rowsOf(g.sizeBytes, rowBytes),
    // Parity is checked against every chunk of a row: one lost role leaves nothing to compare.
    comparable: all,
    check: (unit, ctx) => checkRow(t, stripe, unit, ctx),
  };
}

function* rowsOf(sizeBytes: number, rowBytes: number): Generator<ParityUnit> {
  for (let row = 0; row * rowBytes < sizeBytes; row++) {
    yield { row, volumeOffsetBytes: row * rowBytes, volumeLengthBytes: Math.min(rowBytes, sizeBytes - row * rowBytes) };
  }
}

async function checkRow(t: ScrubTarget, stripe: StripeChecker, unit: ParityUnit, ctx: UnitContext): Promise<UnitVerdict> {
  const skipped: UnitVerdict = { compared: false, mismatchedBytes: 0, repaired: false };
  if (!t.elements.every((_, role) => ctx.usable(role))) return skipped;
  const r = await stripe.checkStripe(unit.row, ctx.repair);
  if (!r.compared) {
    // The stripe engine failed the element that returned an error; tell the scrub which one.
    t.elements.forEach((_, role) => {
      if (t.state(role) !== 'active') ctx.legError(role, new Error('read failed during the parity check'));
    });
    return skipped;
  }
  // Integrity: blocks that failed their checksums make the row mismatched even when the parity agrees (a wrong checksum).
  const byRole = r.byRole === undefined ? {} : { byRole: r.byRole.map((x) => ({ ...x })), mismatched: r.byRole.some((x) => x.badBlocks > 0) };
  const fixed = (r.byRole ?? []).filter((x) => x.repairedBlocks > 0).map((x) => x.role);
  const written = [...new Set([...(r.repaired ? r.badRoles : []), ...fixed])].map((role) => t.elements[role]!);
  return { compared: true, mismatchedBytes: r.mismatchedBytes, repaired: r.repaired, written, ...byRole };
}
