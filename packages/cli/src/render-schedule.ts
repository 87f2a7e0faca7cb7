// `status` text of a volume's scrub schedule: `scrub every 7d (check): next scrub in 6d 23h`.
import { formatEvery, type ScrubScheduleStatus } from '@onestack/engine';

/** `6d 23h`, `5h 12m`, `12m 3s`, `42s`: the two largest units of a wait. */
export function formatWait(ms: number): string {
  const total = Math.max(0, Math.ceil(ms / 1000));
  const units: readonly [string, number][] = [['d', 86_400], ['h', 3600], ['m', 60], ['s', 1]];
  const first = units.findIndex(([, size]) => total >= size);
  if (first < 0) return '0s';
  const [u1, s1] = units[first]!;
  const n1 = Math.floor(total / s1);
  const next = units[first + 1];
  const n2 = next === undefined ? 0 : Math.floor((total - n1 * s1) / next[1]);
  return n2 > 0 && next !== undefined ? `${n1}${u1} ${n2}${next[0]}` : `${n1}${u1}`;
}

export function scheduleLine(s: ScrubScheduleStatus, nowMs: number): string {
  const left = s.nextMs - nowMs;
  const next = left > 0 ? `next scrub in ${formatWait(left)}` : 'next scrub due now';
  const waiting = s.waiting !== undefined ? ` (waiting: ${s.waiting})` : '';
  const last = s.lastFinishedMs !== null ? `; last finished ${new Date(s.lastFinishedMs).toISOString()}` : '';
  return `scrub every ${formatEvery(s.everyMs)} (${s.repair ? 'repair' : 'check'}): ${next}${waiting}${last}`;
}
