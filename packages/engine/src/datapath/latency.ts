// Request latency of one volume and op kind, in fixed buckets allocated once (volume-io.ts
// records every successful read and write; status and /metrics read snapshots).
import { LATENCY_BUCKET_BOUNDS_US, type LatencyStats } from '../api-types.js';

const BOUNDS_US = LATENCY_BUCKET_BOUNDS_US;

export class LatencyRecorder {
  /** Per bucket (not cumulative); the last one is above the largest bound. */
  private readonly buckets = new Float64Array(BOUNDS_US.length + 1);
  private sumUs = 0;
  private count = 0;

  record(latencyUs: number): void {
    // A clock step backwards must not make the sum shrink.
    const us = latencyUs > 0 && Number.isFinite(latencyUs) ? latencyUs : 0;
    let i = 0;
    while (i < BOUNDS_US.length && us > BOUNDS_US[i]!) i++;
    this.buckets[i]!++;
    this.sumUs += us;
    this.count++;
  }

  snapshot(): LatencyStats {
    return { sum: this.sumUs, count: this.count, buckets: Array.from(this.buckets) };
  }
}

/** Microseconds since an arbitrary origin (performance.now has µs resolution in Node). */
export function nowUs(): number {
  return performance.now() * 1000;
}
