// `onestack status` text for a remote leg that went away and is being probed (state `stale`,
// docs/durability.md "Legs that come back"):
// `      retrying: away 31 s (connect ECONNREFUSED), 9 probe(s), next in 2 s (every 3 s)`.
import type { ElementStatus } from '@onestack/engine';

/** The retry line of an element, or null when it is not being probed (older daemons send no `retry`). */
export function retryLine(e: ElementStatus, nowMs: number): string | null {
  const r = e.retry;
  if (r === undefined) return null;
  const away = Math.max(0, Math.round((nowMs - r.sinceMs) / 1000));
  const why = r.lastError === null ? '' : ` (${r.lastError})`;
  const next = r.nextAttemptMs === null ? 'first probe soon' : `next in ${Math.max(0, Math.round((r.nextAttemptMs - nowMs) / 1000))} s`;
  return `        retrying: away ${away} s${why}, ${r.attempts} probe(s), ${next} (every ${Math.round(r.delayMs / 1000)} s)`;
}
