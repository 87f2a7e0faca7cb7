// The /metrics renderer (prom-client on a private registry) over fake status objects: every
// family parses strictly (test/lib/prom-parse.ts), values and labels come from the status,
// the latency histogram is cumulative and ends at +Inf == _count, and older status shapes
// (no latency, no element stats, no cache) leave families empty instead of failing.
import type { ElementStatus, EngineStatus, LatencyStats, VolumeStatus } from '@onestack/engine';
import { LATENCY_BUCKET_BOUNDS_US } from '@onestack/engine';
import { register as globalRegistry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { MetricsExporter, METRICS_CONTENT_TYPE, renderMetrics } from '../src/api/metrics.js';
import { parseProm, samples, value } from '../../../test/lib/prom-parse.js';

function latency(perBucket: Record<number, number>): LatencyStats {
  const buckets = new Array<number>(LATENCY_BUCKET_BOUNDS_US.length + 1).fill(0);
  for (const [i, n] of Object.entries(perBucket)) buckets[Number(i)] = n;
  const count = buckets.reduce((a, b) => a + b, 0);
  return { sum: count * 300, count, buckets };
}

function element(name: string, over: Partial<ElementStatus> = {}): ElementStatus {
  return { name, kind: 'local', uri: `file:/${name}`, state: 'active', sizeBytes: 2 ** 30, volume: 'v0', role: 0, errors: 0, ...over };
}

function volume(over: Partial<VolumeStatus> = {}): VolumeStatus {
  return {
    name: 'v0', layout: 'raid1', sizeBytes: 2 ** 30, chunkKiB: 64, order: 'fifo', boot: false, state: 'degraded',
    rebuild: { kind: 'rebuild', element: 'd1', percent: 25, mibPerSec: 10, etaSeconds: 3, doneBytes: 1, totalBytes: 4 }, scrub: null,
    elements: [element('d0'), element('d1', { role: 1, state: 'rebuilding' })],
    stats: { readOps: 40, writeOps: 10, readBytes: 40 * 4096, writeBytes: 10 * 65536, errors: 1,
      readLatencyUs: latency({ 2: 30, 5: 9, 18: 1 }), writeLatencyUs: latency({ 6: 10 }) },
    cache: { hits: 3, misses: 1, hitRatio: 0.75 },
    ...over,
  };
}

function status(volumes: VolumeStatus[], over: Partial<EngineStatus> = {}): EngineStatus {
  const pool = { threads: 1, queueDepth: 0 };
  const io = { readOps: 20, writeOps: 10, readBytes: 20 * 4096, writeBytes: 10 * 65536 };
  return {
    volumes,
    elements: [element('d0', { stats: io }), element('d1', { role: 1, state: 'rebuilding', errors: 2, kind: 'nbd', stats: { ...io, readOps: 0, readBytes: 0 } }),
      element('s"9', { volume: null, role: null, state: 'spare', stats: { readOps: 0, writeOps: 0, readBytes: 0, writeBytes: 0 } })],
    pools: { top: pool, middle: { threads: 0, queueDepth: 0 }, bottom: { threads: 2, queueDepth: 5 }, remote: pool },
    queue: { depth: 1024, inFlight: 3, slots: 256, slotKiB: 256 }, native: { backend: 'js' }, dataDir: '/d',
    io: { backend: 'sync', scope: null, batchMax: 1, reason: 'test', summary: 'io: sync (test)', copies: { requests: 50, copies: 7, bytesCopied: 700, perRequest: 0.14 }, fastLane: { hits: 11, misses: 2 } },
    ...over,
  };
}

describe('metrics renderer', () => {
  it('renders every family from the status, strictly parseable', async () => {
    const text = await new MetricsExporter().render(status([volume()]));
    const m = parseProm(text);
    const v = { volume: 'v0', layout: 'raid1' };
    expect(value(m, 'onestack_volume_read_ops_total', v)).toBe(40);
    expect(value(m, 'onestack_volume_write_bytes_total', v)).toBe(655360);
    expect(value(m, 'onestack_volume_errors_total', v)).toBe(1);
    expect(value(m, 'onestack_volume_cache_hits_total', v)).toBe(3);
    expect(value(m, 'onestack_volume_cache_hit_ratio', v)).toBe(0.75);
    expect(value(m, 'onestack_volume_state', { volume: 'v0', state: 'degraded' })).toBe(1);
    expect(samples(m, 'onestack_volume_state', { volume: 'v0' }).map((s) => s.value).sort()).toEqual([0, 0, 0, 1]);
    expect(value(m, 'onestack_rebuild_progress_ratio', { volume: 'v0', kind: 'rebuild', element: 'd1' })).toBe(0.25);
    expect(value(m, 'onestack_volume_rebuild_percent', { volume: 'v0' })).toBe(25);
    const d1 = { element: 'd1', kind: 'nbd', volume: 'v0' };
    expect(value(m, 'onestack_element_write_ops_total', d1)).toBe(10);
    expect(value(m, 'onestack_element_read_bytes_total', d1)).toBe(0);
    expect(value(m, 'onestack_element_errors_total', d1)).toBe(2);
    expect(value(m, 'onestack_element_state', { element: 'd1', state: 'rebuilding' })).toBe(1);
    // A label value with a quote is escaped, and the parser gets it back.
    expect(value(m, 'onestack_element_write_ops_total', { element: 's"9', volume: '' })).toBe(0);
    expect(text).toContain('element="s\\"9"');
    expect(value(m, 'onestack_pool_queue_depth', { pool: 'bottom' })).toBe(5);
    expect(value(m, 'onestack_pool_threads', { pool: 'remote' })).toBe(1);
    expect(value(m, 'onestack_queue_depth')).toBe(1024);
    expect(value(m, 'onestack_queue_in_flight')).toBe(3);
    expect(value(m, 'onestack_io_copies_total')).toBe(7);
    expect(value(m, 'onestack_fast_lane_reads_total', { result: 'hit' })).toBe(11);
    expect(value(m, 'onestack_fast_lane_reads_total', { result: 'miss' })).toBe(2);
    for (const f of m.values()) expect(f.help, f.name).toBeTruthy();
    expect(m.get('onestack_volume_read_ops_total')?.type).toBe('counter');
    expect(m.get('onestack_volume_state')?.type).toBe('gauge');
  });

  it('turns per-bucket µs latency into a cumulative seconds histogram, +Inf = count', async () => {
    const m = parseProm(await new MetricsExporter().render(status([volume()])));
    expect(m.get('onestack_volume_request_latency_seconds')?.type).toBe('histogram');
    const read = { volume: 'v0', op: 'read' };
    const buckets = samples(m, 'onestack_volume_request_latency_seconds_bucket', read);
    expect(buckets.map((s) => s.labels['le'])).toEqual([...LATENCY_BUCKET_BOUNDS_US.map((us) => String(us / 1e6)), '+Inf']);
    expect(value(m, 'onestack_volume_request_latency_seconds_bucket', { ...read, le: '0.00005' })).toBe(30); // bucket 2 = 50 µs
    expect(value(m, 'onestack_volume_request_latency_seconds_bucket', { ...read, le: '0.0005' })).toBe(39);
    expect(value(m, 'onestack_volume_request_latency_seconds_bucket', { ...read, le: '5' })).toBe(39);
    expect(value(m, 'onestack_volume_request_latency_seconds_bucket', { ...read, le: '+Inf' })).toBe(40); // one above 5 s
    expect(value(m, 'onestack_volume_request_latency_seconds_count', read)).toBe(40);
    expect(value(m, 'onestack_volume_request_latency_seconds_sum', read)).toBeCloseTo(40 * 300 / 1e6, 12);
    expect(value(m, 'onestack_volume_request_latency_seconds_count', { volume: 'v0', op: 'write' })).toBe(10);
  });

  it('exports the cache tier of remote elements that have one, and nothing for the others', async () => {
    const tier = { path: '/c/r0.cache', sizeMiB: 64, blockKiB: 4, hits: 30, misses: 10, hitRatio: 0.75, enabled: true };
    const st = status([volume()], { elements: [element('r0', { kind: 'nbd', cacheTier: tier } as Partial<ElementStatus>), element('d0')] });
    const m = parseProm(await new MetricsExporter().render(st));
    expect(value(m, 'onestack_element_cache_tier_hits_total', { element: 'r0' })).toBe(30);
    expect(value(m, 'onestack_element_cache_tier_misses_total', { element: 'r0' })).toBe(10);
    expect(value(m, 'onestack_element_cache_tier_hit_ratio', { element: 'r0' })).toBe(0.75);
    expect(samples(m, 'onestack_element_cache_tier_hits_total').length).toBe(1);
  });

  it('leaves out what older status shapes do not have, and follows the status from scrape to scrape', async () => {
    const exporter = new MetricsExporter();
    const old = volume({ stats: { readOps: 1, writeOps: 2, readBytes: 3, writeBytes: 4, errors: 0 }, rebuild: null });
    delete (old as { cache?: unknown }).cache;
    const bare = status([old], { elements: [element('d0')] });
    delete (bare as { io?: unknown }).io;
    const m = parseProm(await exporter.render(bare));
    expect(value(m, 'onestack_volume_write_ops_total')).toBe(2);
    for (const name of ['onestack_volume_request_latency_seconds_count', 'onestack_volume_cache_hits_total', 'onestack_element_read_ops_total',
      'onestack_fast_lane_reads_total', 'onestack_rebuild_progress_ratio']) expect(samples(m, name), name).toEqual([]);
    // A volume that went away disappears from the next scrape.
    const next = parseProm(await exporter.render(status([])));
    expect(samples(next, 'onestack_volume_write_ops_total')).toEqual([]);
    expect(value(next, 'onestack_element_write_ops_total', { element: 'd0' })).toBe(10);
  });

  it('skips histogram rows whose buckets do not match the bounds, and bad counter values, instead of failing the scrape', async () => {
    const bad = volume({ stats: { ...volume().stats, readLatencyUs: { sum: 1, count: 1, buckets: [1] }, readOps: Number.NaN } });
    const m = parseProm(await new MetricsExporter().render(status([bad])));
    expect(samples(m, 'onestack_volume_request_latency_seconds_count', { op: 'read' })).toEqual([]);
    expect(samples(m, 'onestack_volume_request_latency_seconds_count', { op: 'write' })).toHaveLength(1);
    expect(samples(m, 'onestack_volume_read_ops_total')).toEqual([]);
  });

  it('uses a registry of its own: nothing lands in prom-client\'s global registry; concurrent scrapes keep their own status', async () => {
    const exporter = new MetricsExporter();
    const [a, b] = await Promise.all([exporter.render(status([volume()])), exporter.render(status([volume({ name: 'other' })]))]);
    expect(a).toContain('onestack_volume_read_ops_total{volume="v0"');
    expect(a).not.toContain('volume="other"');
    expect(b).toContain('onestack_volume_read_ops_total{volume="other"');
    expect(await globalRegistry.metrics()).not.toContain('onestack_');
    expect(METRICS_CONTENT_TYPE).toBe('text/plain; version=0.0.4; charset=utf-8');
  });

  it('adds Node process metrics on the daemon exporter', async () => {
    const m = parseProm(await renderMetrics(status([volume()])));
    expect(m.get('process_cpu_seconds_total')?.type).toBe('counter');
    expect(m.get('nodejs_eventloop_lag_seconds')?.type).toBe('gauge');
    expect(value(m, 'onestack_volume_read_ops_total')).toBe(40);
  });
});

describe('the strict test parser (test/lib/prom-parse.ts)', () => {
  const ok = '# HELP h_seconds A histogram.\n# TYPE h_seconds histogram\nh_seconds_bucket{le="0.1"} 1\nh_seconds_bucket{le="+Inf"} 2\nh_seconds_sum 0.3\nh_seconds_count 2\n';
  it('accepts a well-formed document and rejects what Prometheus would, or what our exporter must never write', () => {
    expect(value(parseProm(ok), 'h_seconds_count')).toBe(2);
    expect(value(parseProm('# TYPE g gauge\ng{a="x\\\\y\\n\\"z"} NaN\n'), 'g', { a: 'x\\y\n"z' })).toBeNaN();
    const bad: readonly (readonly [string, RegExp])[] = [
      [ok.replace('h_seconds_count 2', 'h_seconds_count 3'), /\+Inf bucket 2 != _count 3/],
      [ok.replace('{le="0.1"} 1', '{le="0.1"} 5'), /not cumulative/],
      [ok.replace('h_seconds_sum 0.3\n', ''), /_sum or _count missing/],
      ['c_total 1\n', /before its # TYPE line/],
      ['# TYPE c_total counter\nc_total -1\n', /negative/],
      ['# TYPE c_total counter\nc_total{a="1"} 1\nc_total{a="1"} 2\n', /duplicate series/],
      ['# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na{x="1"} 2\n', /continues after another family/],
      ['# TYPE a gauge\na{x="\\t"} 1\n', /bad escape/],
      ['# TYPE a gauge\na 1x\n', /not a number/],
      ['# TYPE a gauge\na 1', /no newline/],
    ];
    for (const [text, why] of bad) expect(() => parseProm(text), text).toThrow(why);
  });
});
