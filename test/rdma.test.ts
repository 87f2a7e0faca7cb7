// `onestack rdma` on this host (no RDMA device, no rdma_rxe): one clear "no RDMA device" line and
// exit 0, with the native addon and with it forced off.
import { describe, expect, it } from 'vitest';
import { CLI_MAIN, REPO_ROOT } from './lib/daemon.js';
import { explain, run } from './lib/proc.js';

const cli = (args: readonly string[], env: NodeJS.ProcessEnv = {}) =>
  run(process.execPath, [CLI_MAIN, ...args], { timeoutMs: 20_000, cwd: REPO_ROOT, env: { ...process.env, ...env } });

describe('onestack rdma', () => {
  it('prints one "no RDMA device" line and exits 0', async () => {
    const r = await cli(['rdma']);
    expect(r.code, explain(r)).toBe(0);
    expect(r.stdout).toMatch(/^rdma: no RDMA device \(.+\)\n$/);
    expect(r.stderr).toBe('');
  });

  it('--json gives the probe with its summary line', async () => {
    const r = await cli(['rdma', '--json']);
    expect(r.code, explain(r)).toBe(0);
    const probe = JSON.parse(r.stdout) as { library: string; devices: unknown[]; summary: string };
    expect(['missing', 'loaded', 'unknown']).toContain(probe.library);
    expect(probe.devices).toEqual([]);
    expect(probe.summary).toMatch(/^rdma: no RDMA device/);
  });

  it('with ONESTACK_NATIVE=off it says it could not probe, still exit 0', async () => {
    const r = await cli(['rdma'], { ONESTACK_NATIVE: 'off' });
    expect(r.code, explain(r)).toBe(0);
    expect(r.stdout).toBe('rdma: no RDMA device (not probed: native addon not loaded: ONESTACK_NATIVE=off)\n');
  });

  it('rejects a stray argument with exit 2', async () => {
    const r = await cli(['rdma', 'mlx5_0']);
    expect(r.code, explain(r)).toBe(2);
    expect(r.stderr).toContain('unexpected argument "mlx5_0"');
  });
});
