// Text for an element's transport figures (docs/transport.md), a write-behind leg's lag and a
// stale leg's probing (docs/durability.md), and a volume's reshape progress. Pure functions, so
// they are unit-tested without a browser; the wording follows `onestack status` where it has one.
import { formatBytes, formatEta, formatRate } from './format.js';
import type { ElementLatency, ElementRetry, ElementWriteBehind, ReshapeStatus } from './types.js';

const MiB = 1024 * 1024;

/** A latency in µs: `15 µs`, `1.2 ms`, `2.50 s`; `–` for no sample yet. */
export function formatUs(us: number | null): string {
  if (us === null || !Number.isFinite(us)) return '–';
  if (us >= 1_000_000) return `${(us / 1_000_000).toFixed(2)} s`;
  if (us >= 1000) return `${formatRate(us / 1000)} ms`;
  return `${Math.round(us)} µs`;
}

/** Whole seconds for people: `15 s`, `2 min 5 s`, `1 min`, `1 h 4 min`. */
export function formatSeconds(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return s % 60 === 0 ? `${s / 60} min` : `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

export interface LatencyText { read: string; write: string; throughput: string }

/** null when the daemon sends no figures (older daemons) or the element has done no I/O yet. */
export function latencyText(l: ElementLatency | undefined): LatencyText | null {
  if (l === undefined) return null;
  if (l.readUsEwma === null && l.writeUsEwma === null && l.readMiBPerSec === 0 && l.writeMiBPerSec === 0) return null;
  return {
    read: `read ${formatUs(l.readUsEwma)}`,
    write: `write ${formatUs(l.writeUsEwma)}`,
    throughput: `${formatRate(l.readMiBPerSec)} MiB/s read · ${formatRate(l.writeMiBPerSec)} MiB/s write`,
  };
}

/** Share of the allowed lag in use, in [0, 100]. */
export function lagPercent(wb: ElementWriteBehind): number {
  if (wb.maxLagBytes <= 0) return 0;
  return Math.min(100, Math.max(0, (wb.lagBytes / wb.maxLagBytes) * 100));
}

/** `write-behind: lag 1.2 MiB of 64.0 MiB · 32 in flight · 310 queued · 0 dropped · peak 27.9 MiB`. */
export function writeBehindText(wb: ElementWriteBehind): string {
  return `write-behind: lag ${formatBytes(wb.lagBytes)} of ${formatBytes(wb.maxLagBytes)} · ${wb.writesInFlight} in flight · `
    + `${wb.writesQueued} queued · ${wb.droppedWrites} dropped · peak ${formatBytes(wb.peakLagBytes)}`;
}

/** `retrying: away 15 s (connect ECONNREFUSED) · 4 probes · next in 2 s (every 3 s)`. */
export function retryText(r: ElementRetry, nowMs: number): string {
  const away = formatSeconds((nowMs - r.sinceMs) / 1000);
  const why = r.lastError === null ? '' : ` (${r.lastError})`;
  const probes = `${r.attempts} probe${r.attempts === 1 ? '' : 's'}`;
  const next = r.nextAttemptMs === null ? 'first probe soon' : `next in ${formatSeconds((r.nextAttemptMs - nowMs) / 1000)}`;
  return `retrying: away ${away}${why} · ${probes} · ${next} (every ${formatSeconds(r.delayMs / 1000)})`;
}

/** Seconds left at the current rate, or null when it is not moving. */
export function reshapeEtaSeconds(r: ReshapeStatus): number | null {
  if (r.state !== 'running' || !(r.rateMiBps > 0)) return null;
  return Math.max(0, r.totalBytes - r.positionBytes) / (r.rateMiBps * MiB);
}

const geometry = (g: { layout: string; count: number }): string => `${g.layout} of ${g.count}`;

/** `reshape raid5 of 4 → raid5 of 5: 42.0% · 12.3 MiB/s · ETA 1:23 · 192 MiB → 256 MiB`. */
export function reshapeLabel(r: ReshapeStatus): string {
  const head = `reshape ${geometry(r.from)} → ${geometry(r.to)}: ${r.percent.toFixed(1)}%`;
  const size = `${formatBytes(r.totalBytes)} → ${formatBytes(r.sizeBytes)}`;
  if (r.state === 'paused') return `${head} · paused · ${size}`;
  if (r.state === 'finishing') return `${head} · finishing · ${size}`;
  return `${head} · ${formatRate(r.rateMiBps)} MiB/s · ETA ${formatEta(reshapeEtaSeconds(r))} · ${size}`;
}
