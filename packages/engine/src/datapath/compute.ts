// The COMPUTE op: parity work that the stripe engine (main thread) hands to the middle stage, so
// XOR and GF(2^8) loops run in the middle pool (or inline when pools.middle = 0) and not on the
// thread that owns the sockets. The block layout is in compute-layout.ts.
import { crc32c } from '@onestack/native';
import { CHECK_P_BAD, CHECK_Q_BAD, CHECK_UNLOCATABLE, ComputeMode, oldEntry, PARAM_WORDS, PW, WIDTH_MAX } from './compute-layout.js';
import { checkParity, reconstruct, rmwUpdate } from './parity.js';
import type { SharedViews } from './shared-layout.js';

/** Runs the block named by the parent (middle stage). Returns 0 or an errno for RESULT. */
export function runCompute(v: SharedViews, block: number, einval: number): number {
  const w = v.computeParams;
  const base = block * PARAM_WORDS;
  if (!(Number.isInteger(block) && block >= 0 && base + PARAM_WORDS <= w.length)) return einval;
  const len = w[base + PW.LENGTH]!;
  const k = w[base + PW.K]!;
  const np = w[base + PW.NP]!;
  if (!(len > 0 && k >= 1 && (np === 1 || np === 2) && k + np <= WIDTH_MAX)) return einval;
  const buf = (e: number): Uint8Array | null => {
    const slot = w[base + PW.ENTRIES + 2 * e]!;
    return slot < 0 ? null : v.slab.view(slot, w[base + PW.ENTRIES + 2 * e + 1]!, len);
  };
  const cur = Array.from({ length: k + np }, (_, e) => buf(e));
  switch (w[base + PW.MODE]) {
    case ComputeMode.RECONSTRUCT: {
      const fails = [w[base + PW.FAIL_A]!, w[base + PW.FAIL_B]!].filter((f) => f >= 0);
      reconstruct(cur, k, np, fails);
      break;
    }
    case ComputeMode.RMW: {
      for (let j = 0; j < k; j++) {
        const old = buf(oldEntry(k, np, j));
        const now = cur[j];
        if (old === null) continue;
        if (now === null || now === undefined) return einval;
        rmwUpdate(cur[k] ?? null, np === 2 ? (cur[k + 1] ?? null) : null, old, now, j);
      }
      break;
    }
    case ComputeMode.CHECK: {
      const r = checkParity(cur.slice(0, k) as Uint8Array[], cur[k]!, np === 2 ? cur[k + 1]! : null, buf(oldEntry(k, np, 0))!, np === 2 ? buf(oldEntry(k, np, 1)) : null);
      w[base + PW.OUT_FLAGS] = (r.pBad ? CHECK_P_BAD : 0) | (r.qBad ? CHECK_Q_BAD : 0) | (r.unlocatable ? CHECK_UNLOCATABLE : 0);
      w[base + PW.OUT_MISMATCHED] = r.mismatchedBytes;
      for (const j of r.badData) {
        const at = base + (j < 32 ? PW.OUT_DATA_LO : PW.OUT_DATA_HI);
        w[at] = w[at]! | (1 << (j & 31));
      }
      break;
    }
    default:
      return einval;
  }
  for (let e = 0; e < k + np; e++) {
    if ((w[base + PW.CRC_MASK + (e >>> 5)]! & (1 << (e & 31))) === 0) continue;
    const b = cur[e];
    if (b === null || b === undefined) return einval;
    w[base + PW.CRCS + e] = crc32c(b) | 0;
  }
  return 0;
}
