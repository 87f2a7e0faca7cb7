// A volume's request counters (VolumeStats, VolumeCacheStats): ops, bytes and latency of
// successful reads and writes, errors, read-modify-writes, user-space payload copies, cache hits.
// Kept apart from the I/O paths so that every path counts the same way.
import type { VolumeCacheStats, VolumeStats } from './volume-io-types.js';
import { LatencyRecorder, nowUs } from './latency.js';

export type CountKind = 'read' | 'write' | 'other';

export class VolumeCounters {
  private readonly c: Omit<VolumeStats, 'readLatencyUs' | 'writeLatencyUs'> = { readOps: 0, writeOps: 0, readBytes: 0, writeBytes: 0, errors: 0, rmwOps: 0, copies: 0, bytesCopied: 0 };
  private readonly readLatency = new LatencyRecorder();
  private readonly writeLatency = new LatencyRecorder();
  private readonly cache = { hits: 0, misses: 0 };

  stats(): VolumeStats {
    return { ...this.c, readLatencyUs: this.readLatency.snapshot(), writeLatencyUs: this.writeLatency.snapshot() };
  }

  cacheStats(): VolumeCacheStats {
    const { hits, misses } = this.cache;
    return { hits, misses, hitRatio: hits + misses === 0 ? 0 : hits / (hits + misses) };
  }

  /**
   * Counts a request when `work` settles: errors, or ops, bytes and latency (from `startedUs`, the
   * public call's entry, so slot and write-gate waits are part of it) of successful reads and writes.
   */
  async count(kind: CountKind, bytes: number, work: Promise<unknown>, startedUs: number = nowUs()): Promise<void> {
    try {
      await work;
    } catch (err) {
      this.c.errors++;
      throw err;
    }
    if (kind === 'read') {
      this.c.readOps++;
      this.c.readBytes += bytes;
      this.readLatency.record(nowUs() - startedUs);
    } else if (kind === 'write') {
      this.c.writeOps++;
      this.c.writeBytes += bytes;
      this.writeLatency.record(nowUs() - startedUs);
    }
  }

  /** Counts a pass over `bytes` payload bytes in user space. */
  noteCopy(bytes: number): void {
    if (bytes <= 0) return;
    this.c.copies++;
    this.c.bytesCopied += bytes;
  }

  /** A request served by read-modify-write of its partial edge blocks. */
  noteRmw(): void {
    this.c.rmwOps++;
  }

  noteCacheMiss(): void {
    this.cache.misses++;
  }

  /** A read of `bytes` answered from the RAM read cache: a read like any other, plus its copy out of the cache. */
  noteCacheHit(bytes: number, startedUs: number): void {
    this.cache.hits++;
    this.c.readOps++;
    this.c.readBytes += bytes;
    this.readLatency.record(nowUs() - startedUs);
    this.noteCopy(bytes);
  }
}
