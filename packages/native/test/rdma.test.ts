// The RDMA probe on this host (no RDMA device, no rdma_rxe): it must answer "no device" without
// throwing, whichever way libibverbs is (missing, or loaded with 0 devices). A host with a real
// HCA would list it; that path is formatted below from a fixed probe, never run here.
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

import { nativeAddon } from '../src/loader.js';
import { formatRdmaLine, rdmaProbe, type RdmaProbe } from '../src/rdma.js';
import { addonFile } from './helpers.js';

const built = existsSync(addonFile) && process.env['ONESTACK_NATIVE'] !== 'off';

describe.skipIf(!built)('rdma probe through the addon (skipped when the addon is not built: run pnpm build:native)', () => {
  it('reports libibverbs missing, or loaded with 0 devices, and a "no RDMA device" line', () => {
    const probe = rdmaProbe();
    expect(['missing', 'loaded']).toContain(probe.library);
    expect(probe.devices).toEqual([]);
    if (probe.library === 'missing') expect(probe.reason).toMatch(/libibverbs/);
    const line = formatRdmaLine(probe);
    expect(line).toMatch(/^rdma: no RDMA device \(libibverbs (not installed|loaded, 0 devices)\)$/);
  });

  it('the raw addon result has the documented shape and is stable across calls', () => {
    const first = nativeAddon()?.rdmaProbe?.();
    expect(first).toBeDefined();
    expect(first).toMatchObject({ library: expect.stringMatching(/^(missing|loaded)$/), devices: [] });
    expect(nativeAddon()?.rdmaProbe?.()).toEqual(first); // library loaded once, probe repeatable
  });
});

describe('formatRdmaLine', () => {
  it('names every case in one line', () => {
    expect(formatRdmaLine({ library: 'missing', devices: [], reason: 'libibverbs.so.1: not found' }))
      .toBe('rdma: no RDMA device (libibverbs not installed)');
    expect(formatRdmaLine({ library: 'loaded', devices: [] })).toBe('rdma: no RDMA device (libibverbs loaded, 0 devices)');
    expect(formatRdmaLine({ library: 'unknown', devices: [], reason: 'native addon not built' }))
      .toBe('rdma: no RDMA device (not probed: native addon not built)');
  });

  it('lists devices with port states, bounded to one line', () => {
    const two: RdmaProbe = { library: 'loaded', devices: [
      { name: 'mlx5_0', ports: [{ port: 1, state: 'ACTIVE' }] },
      { name: 'mlx5_1', ports: [{ port: 1, state: 'DOWN' }, { port: 2, state: 'INIT' }] },
    ] };
    expect(formatRdmaLine(two)).toBe('rdma: 2 devices: mlx5_0 (port 1 ACTIVE), mlx5_1 (port 1 DOWN, port 2 INIT)');
    expect(formatRdmaLine({ library: 'loaded', devices: [{ name: 'rxe0', ports: [] }] })).toBe('rdma: 1 device: rxe0 (no port answered)');
    const many: RdmaProbe = { library: 'loaded', devices: Array.from({ length: 20 }, (_, i) => ({ name: `d${i}`, ports: [] })) };
    const line = formatRdmaLine(many);
    expect(line).toMatch(/^rdma: 20 devices: d0 .*d7 \(no port answered\), and 12 more$/);
    expect(line).not.toContain('\n');
  });
});
