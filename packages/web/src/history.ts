// Chart series from successive status samples: per volume IOPS, MiB/s and (when the daemon
// reports latency histograms) mean latency over each interval, from counter deltas; per driver
// pool the queue depth. Bounded: the last POINTS_MAX samples, at most one per MIN_INTERVAL_MS.
import type { EngineStatus, PoolName, VolumeStats } from './types.js';

export const POINTS_MAX = 120;
/** `change` events come up to 4 a second: rates over shorter spans would be noise. */
const MIN_INTERVAL_MS = 800;
const MiB = 1024 * 1024;
export const POOL_NAMES: readonly PoolName[] = ['top', 'middle', 'bottom', 'remote'];

export interface VolumeSeries {
  /** Seconds since the epoch (uPlot's x unit). */
  t: number[];
  readIops: number[]; writeIops: number[];
  readMiBs: number[]; writeMiBs: number[];
  /** Mean latency in µs over the interval (null: no request, or no histogram from the daemon). */
  readLatUs: (number | null)[]; writeLatUs: (number | null)[];
  hasLatency: boolean;
}

export interface PoolSeries { t: number[]; depth: Record<PoolName, number[]> }

interface Previous { atMs: number; stats: Map<string, VolumeStats> }

const emptyVolume = (): VolumeSeries => ({ t: [], readIops: [], writeIops: [], readMiBs: [], writeMiBs: [], readLatUs: [], writeLatUs: [], hasLatency: false });

function push<T>(list: T[], value: T): void {
  list.push(value);
  if (list.length > POINTS_MAX) list.splice(0, list.length - POINTS_MAX);
}

/** A counter that went backwards (volume re-created, daemon restarted) counts as 0. */
function rate(now: number, before: number, seconds: number): number {
  return now >= before ? (now - before) / seconds : 0;
}

function meanLatency(now: VolumeStats['readLatencyUs'], before: VolumeStats['readLatencyUs']): number | null {
  if (now === undefined || before === undefined) return null;
  const count = now.count - before.count;
  return count > 0 && now.sum >= before.sum ? (now.sum - before.sum) / count : null;
}

export class History {
  readonly volumes = new Map<string, VolumeSeries>();
  readonly pools: PoolSeries = { t: [], depth: { top: [], middle: [], bottom: [], remote: [] } };
  #previous: Previous | null = null;
  /** Bumped on every new point, so views know to redraw. */
  version = 0;

  add(status: EngineStatus, atMs: number): void {
    const prev = this.#previous;
    if (prev !== null && atMs - prev.atMs < MIN_INTERVAL_MS) return;
    const stats = new Map(status.volumes.map((v) => [v.name, v.stats]));
    this.#previous = { atMs, stats };
    if (prev === null) return;
    const seconds = (atMs - prev.atMs) / 1000;
    const t = atMs / 1000;
    for (const name of this.volumes.keys()) if (!stats.has(name)) this.volumes.delete(name);
    for (const [name, now] of stats) {
      const before = prev.stats.get(name);
      if (before === undefined) continue;
      let series = this.volumes.get(name);
      if (series === undefined) this.volumes.set(name, (series = emptyVolume()));
      push(series.t, t);
      push(series.readIops, rate(now.readOps, before.readOps, seconds));
      push(series.writeIops, rate(now.writeOps, before.writeOps, seconds));
      push(series.readMiBs, rate(now.readBytes, before.readBytes, seconds) / MiB);
      push(series.writeMiBs, rate(now.writeBytes, before.writeBytes, seconds) / MiB);
      push(series.readLatUs, meanLatency(now.readLatencyUs, before.readLatencyUs));
      push(series.writeLatUs, meanLatency(now.writeLatencyUs, before.writeLatencyUs));
      series.hasLatency ||= now.readLatencyUs !== undefined || now.writeLatencyUs !== undefined;
    }
    push(this.pools.t, t);
    for (const pool of POOL_NAMES) push(this.pools.depth[pool], status.pools[pool]?.queueDepth ?? 0);
    this.version++;
  }
}
