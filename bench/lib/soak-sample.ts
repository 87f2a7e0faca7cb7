// Resource samples of a long-running process for the soak: VmRSS and the number of open file
// descriptors (/proc/PID/fd), once a second, tagged with the phase the soak is in; plus the
// figures that say whether something grows without bound (least-squares slope, settle waits).
import { readdirSync } from 'node:fs';
import { rssBytes } from './proc.js';

export interface Sample {
  /** Seconds since the sampler started. */
  readonly t: number;
  readonly phase: string;
  readonly rssBytes: number;
  readonly fds: number;
  /** The remote peer's descriptors (nbdkit), to see connections the daemon leaves open there. */
  readonly peerFds: number;
}

/** Open descriptors of a process, or NaN when it is gone. */
export function fdCount(pid: number | undefined): number {
  if (pid === undefined) return Number.NaN;
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return Number.NaN;
  }
}

const SAMPLES_MAX = 7 * 24 * 3600; // a week at 1 Hz: bounded, far beyond any soak

export class Sampler {
  readonly samples: Sample[] = [];
  phase = 'start';
  private readonly startedMs = Date.now();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly pid: number, private readonly peerPid: number | undefined, private readonly print: (s: Sample) => void) {}

  take(): Sample {
    const s: Sample = { t: (Date.now() - this.startedMs) / 1000, phase: this.phase, rssBytes: rssBytes(this.pid), fds: fdCount(this.pid), peerFds: fdCount(this.peerPid) };
    if (this.samples.length < SAMPLES_MAX) this.samples.push(s);
    this.print(s);
    return s;
  }

  start(periodMs: number): void {
    this.take();
    this.timer = setInterval(() => this.take(), periodMs);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  of(phase: string): Sample[] {
    return this.samples.filter((s) => s.phase === phase);
  }
}

/** Least-squares slope of y over t (per second); 0 with fewer than 3 points. */
export function slopePerSecond(points: readonly { t: number; y: number }[]): number {
  const n = points.length;
  if (n < 3) return 0;
  const mt = points.reduce((a, p) => a + p.t, 0) / n;
  const my = points.reduce((a, p) => a + p.y, 0) / n;
  let num = 0;
  let den = 0;
  for (const p of points) {
    num += (p.t - mt) * (p.y - my);
    den += (p.t - mt) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

export interface RssTrend {
  /** Least-squares slope over the second half of the phase, MiB per minute. */
  readonly slopeMiBPerMin: number;
  /**
   * The slope the noise alone could fake over that half: twice the p10–p90 band of the residuals
   * around the fitted line, spread over the half's length (GC sawtooth: tens of MiB).
   */
  readonly noiseMiBPerMin: number;
  /** Highest RSS in the first half and in the last quarter of the phase (bytes). */
  readonly firstHalfMaxBytes: number;
  readonly lastQuarterMaxBytes: number;
}

function percentile(sorted: readonly number[], q: number): number {
  return sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

/** How RSS moved during a phase: its trend over the second half, and whether it kept making new highs. */
export function rssTrend(samples: readonly Sample[]): RssTrend {
  const ok = samples.filter((s) => Number.isFinite(s.rssBytes));
  const half = ok.slice(Math.floor(ok.length / 2));
  const pts = half.map((s) => ({ t: s.t, y: s.rssBytes / (1024 * 1024) }));
  const slope = slopePerSecond(pts);
  const mt = pts.reduce((a, p) => a + p.t, 0) / Math.max(1, pts.length);
  const my = pts.reduce((a, p) => a + p.y, 0) / Math.max(1, pts.length);
  const residuals = pts.map((p) => p.y - (my + slope * (p.t - mt))).sort((a, b) => a - b);
  const minutes = pts.length < 2 ? 1 : Math.max(1 / 60, (pts[pts.length - 1]!.t - pts[0]!.t) / 60);
  const max = (xs: readonly Sample[]): number => xs.reduce((m, s) => Math.max(m, s.rssBytes), 0);
  return {
    slopeMiBPerMin: slope * 60,
    noiseMiBPerMin: (2 * (percentile(residuals, 0.9) - percentile(residuals, 0.1))) / minutes,
    firstHalfMaxBytes: max(ok.slice(0, Math.floor(ok.length / 2))),
    lastQuarterMaxBytes: max(ok.slice(Math.floor((ok.length * 3) / 4))),
  };
}

/** Polls until the process has at most `fds` descriptors open (bounded); returns the last count. */
export async function settleFds(pid: number, fds: number, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const now = fdCount(pid);
    if (!(now > fds) || Date.now() > deadline) return now;
    await new Promise((r) => setTimeout(r, 100));
  }
}

export function median(values: readonly number[]): number {
  const v = values.filter(Number.isFinite).sort((a, b) => a - b);
  return v.length === 0 ? Number.NaN : v[Math.floor(v.length / 2)]!;
}
