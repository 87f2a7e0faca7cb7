// Acceptance (issue 7, metrics): the daemon's GET /api/v1/metrics needs the token (401 without),
// parses as Prometheus text with a strict parser (test/lib/prom-parse.ts: HELP/TYPE, labels,
// cumulative histogram buckets with +Inf == _count), and its counters move under load: after
// fio (--ioengine=nbd) writes and reads a raid1, the volume's ops, bytes and latency counts grew
// by exactly what fio did, and both legs' element counters grew by at least the bytes written.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { useDaemon } from './lib/fixture.js';
import { MiB } from './lib/files.js';
import { fio } from './lib/peers.js';
import { explain, missingTools } from './lib/proc.js';
import { parseProm, samples, value, type Family } from './lib/prom-parse.js';

const ELEMENT_BYTES = 64 * MiB;
const missing = missingTools(['fio']);

type Metrics = Map<string, Family>;

describe.skipIf(missing !== null)(`GET /api/v1/metrics against the daemon${missing !== null ? ` (skipped: ${missing})` : ''}`, () => {
  const fx = useDaemon('metrics', [{ name: 'm0', sizeBytes: ELEMENT_BYTES }, { name: 'm1', sizeBytes: ELEMENT_BYTES }, { name: 's0', sizeBytes: ELEMENT_BYTES }], [
    { name: 'mirror', layout: 'raid1', elements: ['m0', 'm1'] },
  ]);
  const url = (): string => `http://127.0.0.1:${fx.daemon.apiPort}/api/v1/metrics`;
  const token = (): string => readFileSync(path.join(fx.daemon.dataDir, 'api-token'), 'utf8').trim();

  async function scrape(): Promise<{ text: string; m: Metrics; contentType: string | null }> {
    const res = await fetch(url(), { headers: { authorization: `Bearer ${token()}` }, signal: AbortSignal.timeout(10_000) });
    const text = await res.text();
    expect(res.status, text.slice(0, 500)).toBe(200);
    return { text, m: parseProm(text), contentType: res.headers.get('content-type') };
  }

  it('answers 401 without the token or with a wrong one, and nothing leaks', async () => {
    for (const headers of [{}, { authorization: 'Bearer wrong' }] as Record<string, string>[]) {
      const res = await fetch(url(), { headers, signal: AbortSignal.timeout(10_000) });
      expect(res.status).toBe(401);
      expect(await res.text()).not.toContain('onestack_');
    }
  });

  it('serves strictly parseable Prometheus text with every family', async () => {
    const { m, contentType } = await scrape();
    expect(contentType).toBe('text/plain; version=0.0.4; charset=utf-8');
    const families = ['onestack_volume_read_ops_total', 'onestack_volume_write_bytes_total', 'onestack_volume_errors_total', 'onestack_volume_request_latency_seconds',
      'onestack_element_read_ops_total', 'onestack_element_write_bytes_total', 'onestack_element_errors_total', 'onestack_volume_state', 'onestack_element_state',
      'onestack_queue_depth', 'onestack_pool_threads', 'onestack_pool_queue_depth', 'onestack_volume_cache_hit_ratio', 'onestack_io_copies_total',
      'onestack_rebuild_progress_ratio', 'process_cpu_seconds_total'];
    for (const name of families) expect(m.has(name), name).toBe(true);
    expect(m.get('onestack_volume_request_latency_seconds')?.type).toBe('histogram');
    expect(value(m, 'onestack_volume_state', { volume: 'mirror', state: 'optimal' })).toBe(1);
    expect(value(m, 'onestack_element_state', { element: 's0', state: 'spare' })).toBe(1);
    expect(value(m, 'onestack_element_write_ops_total', { element: 's0', volume: '' })).toBe(0);
    expect(value(m, 'onestack_pool_threads', { pool: 'bottom' })).toBeGreaterThan(0);
  });

  it('moves the volume, latency and element counters by what fio did', async () => {
    const before = (await scrape()).m;
    const { result, jobs } = await fio(['--name=metrics', '--ioengine=nbd', `--uri=${fx.daemon.uri('mirror')}`,
      '--rw=randrw', '--rwmixread=50', '--bs=4k', '--iodepth=8', '--size=16m', '--randrepeat=0'], fx.dir, 120_000);
    expect(result.code, explain(result)).toBe(0);
    const job = jobs[0]!;
    expect(job.error, explain(result)).toBe(0);
    expect(job.write.io_bytes).toBeGreaterThan(0);
    expect(job.read.io_bytes).toBeGreaterThan(0);
    const after = (await scrape()).m;
    const delta = (name: string, match: Record<string, string>): number => value(after, name, match) - value(before, name, match);
    const vol = { volume: 'mirror', layout: 'raid1' };
    const writeBytes = delta('onestack_volume_write_bytes_total', vol);
    const readBytes = delta('onestack_volume_read_bytes_total', vol);
    expect(writeBytes).toBe(job.write.io_bytes);
    expect(readBytes).toBe(job.read.io_bytes);
    expect(delta('onestack_volume_write_ops_total', vol)).toBe(job.write.io_bytes / 4096);
    expect(delta('onestack_volume_read_ops_total', vol)).toBe(job.read.io_bytes / 4096);
    expect(delta('onestack_volume_errors_total', vol)).toBe(0);
    for (const op of ['read', 'write'] as const) {
      const lat = { volume: 'mirror', op };
      expect(delta('onestack_volume_request_latency_seconds_count', lat)).toBe(delta(`onestack_volume_${op}_ops_total`, vol));
      expect(delta('onestack_volume_request_latency_seconds_sum', lat)).toBeGreaterThan(0);
    }
    // raid1: every write lands on both legs (plus the write-intent bitmap's own 4 KiB writes, which
    // are element I/O too); each read on one leg, unless the RAM read cache answered it.
    for (const leg of ['m0', 'm1']) {
      expect(delta('onestack_element_write_bytes_total', { element: leg }), leg).toBeGreaterThanOrEqual(writeBytes);
      expect(delta('onestack_element_write_ops_total', { element: leg }), leg).toBeGreaterThanOrEqual(writeBytes / 4096);
    }
    const legReads = ['m0', 'm1'].reduce((sum, leg) => sum + delta('onestack_element_read_bytes_total', { element: leg }), 0);
    const cacheHits = delta('onestack_volume_cache_hits_total', vol);
    if (cacheHits === 0) expect(legReads).toBe(readBytes);
    else expect(legReads).toBe(readBytes - cacheHits * 4096);
    expect(delta('onestack_element_write_bytes_total', { element: 's0' })).toBe(0);
    // The fast lane reports only when the native addon has preadv2; then hits + misses grew with the reads.
    const lane = samples(after, 'onestack_fast_lane_reads_total');
    if (lane.length > 0) expect(lane.reduce((a, s) => a + s.value, 0)).toBeGreaterThan(0);
  });
});
