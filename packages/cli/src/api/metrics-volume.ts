// Per-volume families of /metrics: request counters and latency, read cache, size, state,
// maintenance progress and the last scrub's result.
import type { EngineStatus, VolumeStatus } from '@onestack/engine';
import type { Registry } from 'prom-client';
import { counterFamily, gaugeFamily, SnapshotHistogram, type HistogramRow, type Row, type Snapshot } from './metrics-families.js';

export const VOLUME_STATES = ['optimal', 'degraded', 'rebuilding', 'failed'] as const;

type VolumeLabel = 'volume' | 'layout';
type StatsKey = 'readOps' | 'writeOps' | 'readBytes' | 'writeBytes' | 'errors';

function byVolume(pick: (v: VolumeStatus) => number | undefined): (s: EngineStatus) => Row<VolumeLabel>[] {
  return (s) => s.volumes.flatMap((v): Row<VolumeLabel>[] => {
    const value = pick(v);
    return value === undefined ? [] : [[{ volume: v.name, layout: v.layout }, value]];
  });
}

const COUNTERS: readonly (readonly [string, StatsKey, string])[] = [
  ['onestack_volume_read_ops_total', 'readOps', 'Read requests completed by the volume.'],
  ['onestack_volume_write_ops_total', 'writeOps', 'Write requests completed by the volume.'],
  ['onestack_volume_read_bytes_total', 'readBytes', 'Bytes read from the volume.'],
  ['onestack_volume_write_bytes_total', 'writeBytes', 'Bytes written to the volume.'],
  ['onestack_volume_errors_total', 'errors', 'Requests the volume failed.'],
];

function latencyRows(s: EngineStatus): HistogramRow[] {
  const rows: HistogramRow[] = [];
  for (const v of s.volumes) {
    // Older daemons send no latency.
    if (v.stats.readLatencyUs !== undefined) rows.push([{ volume: v.name, op: 'read' }, v.stats.readLatencyUs]);
    if (v.stats.writeLatencyUs !== undefined) rows.push([{ volume: v.name, op: 'write' }, v.stats.writeLatencyUs]);
  }
  return rows;
}

export function registerVolumeFamilies(registry: Registry, snap: Snapshot): void {
  const labels = ['volume', 'layout'] as const;
  for (const [name, key, help] of COUNTERS) counterFamily(registry, snap, { name, help, labels, rows: byVolume((v) => v.stats[key]) });
  new SnapshotHistogram(registry, snap, {
    name: 'onestack_volume_request_latency_seconds',
    help: 'Latency of successful volume reads and writes, from the request reaching the volume to its completion.',
    rows: latencyRows,
  });
  // Older daemons send no cache field: absent, not 0.
  counterFamily(registry, snap, { name: 'onestack_volume_cache_hits_total', help: 'Reads served from the RAM read cache.', labels, rows: byVolume((v) => v.cache?.hits) });
  counterFamily(registry, snap, { name: 'onestack_volume_cache_misses_total', help: 'Reads the RAM read cache could not serve (0 while it is off).', labels, rows: byVolume((v) => v.cache?.misses) });
  gaugeFamily(registry, snap, { name: 'onestack_volume_cache_hit_ratio', help: 'Read cache hits / (hits + misses) since start; 0 before the first read.', labels, rows: byVolume((v) => v.cache?.hitRatio) });
  gaugeFamily(registry, snap, { name: 'onestack_volume_size_bytes', help: 'Usable size of the volume.', labels, rows: byVolume((v) => v.sizeBytes) });
  registerStateAndJobs(registry, snap);
}

function registerStateAndJobs(registry: Registry, snap: Snapshot): void {
  gaugeFamily(registry, snap, {
    name: 'onestack_volume_state', help: 'Volume state: 1 for the current state, 0 for the others.', labels: ['volume', 'state'],
    rows: (s) => s.volumes.flatMap((v) => VOLUME_STATES.map((st): Row<'volume' | 'state'> => [{ volume: v.name, state: st }, v.state === st ? 1 : 0])),
  });
  gaugeFamily(registry, snap, {
    name: 'onestack_volume_rebuild_percent', help: 'Rebuild, resync or scrub progress; absent when none runs.', labels: ['volume'],
    rows: (s) => s.volumes.flatMap((v): Row<'volume'>[] => (v.rebuild === null ? [] : [[{ volume: v.name }, v.rebuild.percent]])),
  });
  gaugeFamily(registry, snap, {
    name: 'onestack_rebuild_progress_ratio', help: 'Progress of the running rebuild, resync or scrub, 0..1; absent when none runs.', labels: ['volume', 'kind', 'element'],
    rows: (s) => s.volumes.flatMap((v): Row<'volume' | 'kind' | 'element'>[] => (v.rebuild === null ? [] : [[{ volume: v.name, kind: v.rebuild.kind, element: v.rebuild.element ?? '' }, v.rebuild.percent / 100]])),
  });
  const scrubRows = (pick: (x: NonNullable<VolumeStatus['scrub']>) => number) => (s: EngineStatus): Row<'volume' | 'kind'>[] =>
    // Older daemons send no scrub field.
    s.volumes.flatMap((v): Row<'volume' | 'kind'>[] => (v.scrub === undefined || v.scrub === null ? [] : [[{ volume: v.name, kind: v.scrub.kind }, pick(v.scrub)]]));
  gaugeFamily(registry, snap, { name: 'onestack_volume_scrub_mismatched_units', help: 'Units whose copies differed in the last scrub; absent before the first.', labels: ['volume', 'kind'], rows: scrubRows((x) => x.mismatchedUnits) });
  gaugeFamily(registry, snap, { name: 'onestack_volume_scrub_repaired_units', help: 'Units the last scrub rewrote; absent before the first.', labels: ['volume', 'kind'], rows: scrubRows((x) => x.repairedUnits) });
}
