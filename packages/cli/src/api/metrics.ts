// GET /api/v1/metrics: Prometheus text exposition format 0.0.4, written by hand from the
// status object (prom-client arrives later). Counters are cumulative since the daemon started.
import type { EngineStatus } from '@onestack/engine';

export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

type Labels = Readonly<Record<string, string>>;
interface Sample { readonly labels: Labels; readonly value: number }
interface Family { readonly name: string; readonly type: 'counter' | 'gauge'; readonly help: string; readonly samples: Sample[] }

const VOLUME_STATES = ['optimal', 'degraded', 'rebuilding', 'failed'] as const;
const ELEMENT_STATES = ['active', 'failed', 'spare', 'rebuilding', 'stale'] as const;

/** Label values escape backslash, double quote and newline, as the format requires. */
export function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function formatValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return String(value);
}

function family(name: string, type: Family['type'], help: string): Family {
  return { name, type, help, samples: [] };
}

export function renderMetrics(status: EngineStatus): string {
  const f = {
    readOps: family('onestack_volume_read_ops_total', 'counter', 'Read requests completed by the volume.'),
    writeOps: family('onestack_volume_write_ops_total', 'counter', 'Write requests completed by the volume.'),
    readBytes: family('onestack_volume_read_bytes_total', 'counter', 'Bytes read from the volume.'),
    writeBytes: family('onestack_volume_write_bytes_total', 'counter', 'Bytes written to the volume.'),
    errors: family('onestack_volume_errors_total', 'counter', 'Requests the volume failed.'),
    cacheHits: family('onestack_volume_cache_hits_total', 'counter', 'Reads served from the RAM read cache.'),
    cacheMisses: family('onestack_volume_cache_misses_total', 'counter', 'Reads the RAM read cache could not serve (0 while it is off).'),
    size: family('onestack_volume_size_bytes', 'gauge', 'Usable size of the volume.'),
    state: family('onestack_volume_state', 'gauge', 'Volume state: 1 for the current state, 0 for the others.'),
    rebuild: family('onestack_volume_rebuild_percent', 'gauge', 'Rebuild, resync or scrub progress; absent when none runs.'),
    scrubMismatched: family('onestack_volume_scrub_mismatched_units', 'gauge', 'Units whose copies differed in the last scrub; absent before the first.'),
    scrubRepaired: family('onestack_volume_scrub_repaired_units', 'gauge', 'Units the last scrub rewrote; absent before the first.'),
    elementErrors: family('onestack_element_errors_total', 'counter', 'I/O errors seen on the element.'),
    elementState: family('onestack_element_state', 'gauge', 'Element state: 1 for the current state, 0 for the others.'),
    poolDepth: family('onestack_pool_queue_depth', 'gauge', 'Requests waiting in the driver pool queue.'),
    poolThreads: family('onestack_pool_threads', 'gauge', 'Worker threads of the driver pool.'),
    queueInFlight: family('onestack_queue_in_flight', 'gauge', 'Requests in flight in the shared request ring.'),
  };
  for (const v of status.volumes) {
    const labels = { volume: v.name, layout: v.layout };
    f.readOps.samples.push({ labels, value: v.stats.readOps });
    f.writeOps.samples.push({ labels, value: v.stats.writeOps });
    f.readBytes.samples.push({ labels, value: v.stats.readBytes });
    f.writeBytes.samples.push({ labels, value: v.stats.writeBytes });
    f.errors.samples.push({ labels, value: v.stats.errors });
    // Older daemons send no cache field.
    if (v.cache !== undefined) {
      f.cacheHits.samples.push({ labels, value: v.cache.hits });
      f.cacheMisses.samples.push({ labels, value: v.cache.misses });
    }
    f.size.samples.push({ labels, value: v.sizeBytes });
    for (const s of VOLUME_STATES) f.state.samples.push({ labels: { volume: v.name, state: s }, value: v.state === s ? 1 : 0 });
    if (v.rebuild !== null) f.rebuild.samples.push({ labels: { volume: v.name }, value: v.rebuild.percent });
    // Older daemons send no scrub field.
    if (v.scrub !== undefined && v.scrub !== null) {
      const scrubLabels = { volume: v.name, kind: v.scrub.kind };
      f.scrubMismatched.samples.push({ labels: scrubLabels, value: v.scrub.mismatchedUnits });
      f.scrubRepaired.samples.push({ labels: scrubLabels, value: v.scrub.repairedUnits });
    }
  }
  for (const e of status.elements) {
    const labels = { element: e.name, kind: e.kind, volume: e.volume ?? '' };
    f.elementErrors.samples.push({ labels, value: e.errors });
    for (const s of ELEMENT_STATES) f.elementState.samples.push({ labels: { element: e.name, state: s }, value: e.state === s ? 1 : 0 });
  }
  for (const [pool, p] of Object.entries(status.pools)) {
    f.poolDepth.samples.push({ labels: { pool }, value: p.queueDepth });
    f.poolThreads.samples.push({ labels: { pool }, value: p.threads });
  }
  f.queueInFlight.samples.push({ labels: {}, value: status.queue.inFlight });
  return Object.values(f).map(renderFamily).join('');
}

function renderFamily(f: Family): string {
  const lines = [`# HELP ${f.name} ${f.help}`, `# TYPE ${f.name} ${f.type}`];
  for (const s of f.samples) {
    const labels = Object.entries(s.labels).map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(',');
    lines.push(`${f.name}${labels === '' ? '' : `{${labels}}`} ${formatValue(s.value)}`);
  }
  return lines.join('\n') + '\n';
}
