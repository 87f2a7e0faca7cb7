// Pure tests of the status text: mdstat-like lines, element map, rebuild bar, IOPS from samples.
import { describe, expect, it } from 'vitest';
import type { EngineStatus, VolumeStatus } from '@onestack/engine';
import { iopsBetween, renderStatus, renderVolumeList, sampleOps } from '../src/render.js';
import { renderMetrics, escapeLabel } from '../src/api/metrics.js';
import { escapeHtml } from '../src/api/page.js';

function volume(over: Partial<VolumeStatus> = {}): VolumeStatus {
  return {
    name: 'v0', layout: 'raid1', sizeBytes: 2 ** 30, chunkKiB: 64, order: 'fifo', boot: true, state: 'rebuilding',
    rebuild: { kind: 'rebuild', element: 'r1', percent: 42, mibPerSec: 123.45, etaSeconds: 37.4, doneBytes: 42, totalBytes: 100 }, scrub: null,
    elements: [
      { name: 'd0', kind: 'local', uri: 'file:/a', state: 'active', sizeBytes: 2 ** 30, volume: 'v0', role: 0, errors: 0 },
      { name: 'r1', kind: 'nbd', uri: 'nbd://h/x', state: 'rebuilding', sizeBytes: 2 ** 30, volume: 'v0', role: 1, errors: 2 },
    ],
    stats: { readOps: 100, writeOps: 10, readBytes: 409600, writeBytes: 40960, errors: 0 },
    ...over,
  };
}

function status(volumes: VolumeStatus[]): EngineStatus {
  const pool = { threads: 1, queueDepth: 0 };
  return {
    volumes, elements: [...volumes.flatMap((v) => v.elements), { name: 's9', kind: 'local', uri: 'file:/s', state: 'spare', sizeBytes: 2 ** 20, volume: null, role: null, errors: 0 }],
    pools: { top: pool, middle: pool, bottom: { threads: 2, queueDepth: 4 } }, queue: { depth: 1024, inFlight: 1, slots: 256, slotKiB: 256 },
    native: { backend: 'js', reason: 'no addon' }, dataDir: '/d',
  };
}

describe('renderStatus', () => {
  it('draws volumes like /proc/mdstat', () => {
    const text = renderStatus(status([volume()]));
    expect(text).toContain('v0 : rebuilding raid1 d0[0] r1[1]\n');
    expect(text).toContain('1.00 GiB (1073741824 bytes) chunk 64K [2/1] [U_]  boot, order fifo');
    expect(text).toContain('      [========>           ] 42.0%  123.5 MiB/s  ETA 0:37  rebuild of r1\n');
    expect(text).toMatch(/r1\[1\] +nbd +rebuilding .* nbd:\/\/h\/x  errors 2/);
    expect(text).toContain('unused elements:');
    expect(text).toContain('bottom 2 threads (queued 4)');
    expect(text).not.toContain('iops');
  });

  it('turns two samples into IOPS, never negative', () => {
    const before = sampleOps(status([volume()]), 1000);
    const after = sampleOps(status([volume({ stats: { readOps: 300, writeOps: 20, readBytes: 0, writeBytes: 0, errors: 0 } })]), 3000);
    expect(iopsBetween(before, after, 'v0')).toEqual({ read: 100, write: 5 });
    expect(iopsBetween(after, before, 'v0')).toBeUndefined(); // time went backwards
    expect(iopsBetween(undefined, after, 'v0')).toBeUndefined();
    const restarted = sampleOps(status([volume({ stats: { readOps: 0, writeOps: 0, readBytes: 0, writeBytes: 0, errors: 0 } })]), 4000);
    expect(iopsBetween(after, restarted, 'v0')).toEqual({ read: 0, write: 0 });
    expect(renderStatus(status([volume()]), before, after)).toContain('iops: read 100/s write 5/s; ops: read 100');
  });

  it('adds the RDMA line when the daemon reports one (older daemons do not)', () => {
    expect(renderStatus(status([]))).not.toContain('rdma:');
    const rdma = { library: 'loaded' as const, devices: [], summary: 'rdma: no RDMA device (libibverbs loaded, 0 devices)' };
    expect(renderStatus({ ...status([]), rdma })).toContain('\nrdma: no RDMA device (libibverbs loaded, 0 devices)\n');
  });

  it('says so when there are no volumes, and lists volumes as a table', () => {
    expect(renderStatus(status([]))).toMatch(/^no volumes/);
    expect(renderVolumeList([volume()])).toBe('NAME  LAYOUT  STATE       SIZE      REBUILT        ELEMENTS\nv0    raid1   rebuilding  1.00 GiB  42.0% rebuild  d0,r1\n');
  });
});

describe('escaping', () => {
  it('escapes Prometheus label values and HTML', async () => {
    expect(escapeLabel('a"b\\c\nd')).toBe('a\\"b\\\\c\\nd');
    expect(escapeHtml('<b a="1">&\'')).toBe('&#60;b a=&#34;1&#34;&#62;&#38;&#39;');
    const text = await renderMetrics(status([volume()]));
    expect(text).toContain('onestack_volume_rebuild_percent{volume="v0"} 42');
    expect(text).toContain('onestack_volume_state{volume="v0",state="rebuilding"} 1');
    expect(text).toContain('onestack_element_errors_total{element="r1",kind="nbd",volume="v0"} 2');
    expect(text).not.toContain('onestack_volume_scrub_mismatched_units{');
    const scrub = { kind: 'repair', startedMs: 1, finishedMs: 2, outcome: 'done', checkedBytes: 1, skippedBytes: 0, mismatchedUnits: 4, mismatchedBytes: 9, repairedUnits: 3, ioErrors: 0 } as const;
    const scrubbed = await renderMetrics(status([volume({ scrub })]));
    expect(scrubbed).toContain('onestack_volume_scrub_mismatched_units{volume="v0",kind="repair"} 4');
    expect(scrubbed).toContain('onestack_volume_scrub_repaired_units{volume="v0",kind="repair"} 3');
    // Read cache counters: present when the daemon sends them, absent (not 0) from older ones.
    expect(text).not.toContain('onestack_volume_cache_hits_total{');
    const cached = await renderMetrics(status([volume({ cache: { hits: 30, misses: 10, hitRatio: 0.75 } })]));
    expect(cached).toContain('onestack_volume_cache_hits_total{volume="v0",layout="raid1"} 30');
    expect(cached).toContain('onestack_volume_cache_misses_total{volume="v0",layout="raid1"} 10');
    expect(renderStatus(status([volume({ scrub })]))).toContain('      last scrub 1970-01-01T00:00:00.002Z: repair of v0: done in 0.0 s, 1 B compared (0.0 MiB/s), 4 units mismatched (9 bytes differ), 3 repaired\n');
  });
});

describe('integrity in status text', () => {
  const counts = (mismatches: number, repaired: number, unrecoverable: number) => ({ mismatches, repaired, unrecoverable });
  const withIntegrity = (): VolumeStatus => {
    const v = volume({ integrity: true });
    return { ...v, elements: [{ ...v.elements[1]!, integrity: counts(0, 0, 0) }, { ...v.elements[0]!, integrity: counts(3, 2, 1) }] };
  };

  it('one line per integrity volume: the checksum, then each element by role', () => {
    const text = renderStatus(status([withIntegrity()]));
    expect(text).toContain('\n      integrity: crc32c per 4 KiB; d0 2 repaired, 1 unrecoverable, 1 not rewritten; r1 0\n');
    expect(renderStatus(status([volume()]))).not.toContain('integrity:');
    // Older daemons report no counters on elements: zeros.
    expect(renderStatus(status([volume({ integrity: true })]))).toContain('integrity: crc32c per 4 KiB; d0 0; r1 0\n');
  });

  it('volume list marks integrity volumes', () => {
    const list = renderVolumeList([withIntegrity(), { ...volume(), name: 'v1', integrity: false }]);
    expect(list).toMatch(/^v0 +raid1\+integrity +rebuilding/m);
    expect(list).toMatch(/^v1 +raid1 +rebuilding/m);
  });
});
