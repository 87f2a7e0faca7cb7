// Which copy serves a mirrored read (raid1, raid10 pairs; the fast lane keeps least-queued). Pure: the
// callers pass the element words through small functions, so the rule is unit-tested alone.
//
// Expected service time of a leg = its read latency EWMA × (subs queued on it + 1): the wait for
// what is ahead of the read plus the read itself, if the leg served one at a time. Remote legs
// serve many at once, so this over-estimates them; that errs towards the local leg, which is the
// point. Legs within TIE_FACTOR of the best count as equally fast and are balanced by the
// old rule (least queued, ties rotating), so two similar local disks still share the reads and
// sampling noise cannot pin every read on one of them. Now and then a read goes to a slower
// active leg instead (a probe), so its EWMA stays fresh and a remote that got faster is noticed:
// at most 1 decision in PROBE_EVERY, fewer the slower the leg (so probes add ~1/PROBE_EVERY to
// the mean read time, not a 20 ms read every 64), and only while that leg has nothing queued; a
// slow leg whose figure is stale (transport.ts STALE_MS) is probed at the next chance. A leg with
// no sample yet counts as the mean of the known ones.
import { pickReadLeg } from './map.js';

/** Legs whose expected time is within this factor of the best are treated as equally fast. */
export const TIE_FACTOR = 2;
/** At most one read decision in this many is a probe of a slower leg (power of two). */
export const PROBE_EVERY = 64;
/** A leg k times slower than the best is probed k times less often, up to this factor (power of two). */
export const PROBE_STRETCH_MAX = 64;

function pow2AtLeast(x: number): number {
  let p = 1;
  while (p < x) p *= 2;
  return p;
}

export type ReadPolicy = 'latency' | 'queue';

/**
 * `ONESTACK_READ_POLICY=queue` restores the earlier rule (least queued only, no latency), for
 * comparison (bench/transport-reads.ts); anything else is the latency-aware default.
 */
export function readPolicyFromEnv(env: NodeJS.ProcessEnv = process.env): ReadPolicy {
  return env['ONESTACK_READ_POLICY'] === 'queue' ? 'queue' : 'latency';
}

const NEVER_STALE = (): boolean => false;

/**
 * Picks the role that serves a read among `activeRoles` (only active legs: a caller never passes
 * another). `latencyUs(role)` is the read EWMA, 0 when unknown; `stale(role)` says it has no
 * recent sample (a slow stale leg is probed at once). Returns -1 when there is none.
 */
export function pickFastestLeg(activeRoles: readonly number[], queued: (role: number) => number, latencyUs: (role: number) => number, rotation: number,
  stale: (role: number) => boolean = NEVER_STALE): number {
  const n = activeRoles.length;
  if (n <= 1) return n === 1 ? activeRoles[0]! : -1;
  let knownSum = 0;
  let known = 0;
  for (let i = 0; i < n; i++) {
    const us = latencyUs(activeRoles[i]!);
    if (us > 0) {
      knownSum += us;
      known++;
    }
  }
  if (known === 0) return pickReadLeg(activeRoles, queued, rotation); // nothing measured: as before
  const mean = knownSum / known;
  // One snapshot of each cost: the queue words change under us (other threads), and deciding
  // "best" and "within TIE_FACTOR of best" from different reads could leave no leg at all.
  // At most 8 legs in practice; these small arrays are the only allocation per decision.
  const costs = activeRoles.map((role) => (latencyUs(role) || mean) * (queued(role) + 1));
  const best = Math.min(...costs);
  const fast: number[] = [];
  const slow: number[] = [];
  for (let i = 0; i < n; i++) (costs[i]! <= best * TIE_FACTOR ? fast : slow).push(activeRoles[i]!);
  for (let i = 0; i < slow.length; i++) {
    // Slow leg i is probed once in PROBE_EVERY × (its cost ÷ best, as a power of two ≤
    // PROBE_STRETCH_MAX) decisions, offset per leg so they take turns, or at once when its figure
    // is stale; only while it has nothing queued: the time probes add stays near 1/PROBE_EVERY
    // of the reads' time, and at most one probe is in flight per leg.
    const role = slow[i]!;
    const stretch = pow2AtLeast(Math.min(PROBE_STRETCH_MAX, costs[activeRoles.indexOf(role)]! / best));
    const due = stale(role) || ((rotation + i * PROBE_EVERY) & (PROBE_EVERY * stretch - 1)) === 0;
    if (due && queued(role) === 0) return role;
  }
  return pickReadLeg(fast, queued, rotation);
}

/** The rule a policy names: the old least-queued one, or pickFastestLeg. */
export function pickLeg(policy: ReadPolicy, activeRoles: readonly number[], queued: (role: number) => number, latencyUs: (role: number) => number, rotation: number,
  stale: (role: number) => boolean = NEVER_STALE): number {
  return policy === 'queue' ? pickReadLeg(activeRoles, queued, rotation) : pickFastestLeg(activeRoles, queued, latencyUs, rotation, stale);
}
