// The control plane against the running daemon: `onestack status --json` and `volume list`
// report what the NBD side serves (SPEC shape), and the API refuses requests without the token.
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CLI_MAIN, REPO_ROOT } from './lib/daemon.js';
import { useDaemon } from './lib/fixture.js';
import { GiB } from './lib/files.js';
import { qemuIo, qemuIoFailed } from './lib/peers.js';
import { explain, run } from './lib/proc.js';

interface Status {
  volumes: Array<{ name: string; layout: string; sizeBytes: number; state: string; rebuild: unknown;
    elements: Array<{ name: string; kind: string; state: string }>; stats?: { writeOps: number; readOps: number } }>;
  pools: Record<'top' | 'middle' | 'bottom', { threads: number }>;
  rdma?: { library: string; devices: unknown[]; summary: string };
  nbd?: { tls: string; listen?: string[] };
}

describe('status and volume list over the API', () => {
  const fx = useDaemon('status');
  const cli = (args: readonly string[]) => run(process.execPath, [CLI_MAIN, ...args, '--api', `127.0.0.1:${fx.daemon.apiPort}`],
    { timeoutMs: 20_000, cwd: REPO_ROOT, env: { ...process.env, ONESTACK_DATA_DIR: fx.daemon.dataDir } });

  it('status --json: volume `default`, raid1, 1 GiB, optimal, two active local elements, pool sizes', async () => {
    const w = await qemuIo(fx.daemon.uri(), ['write -P 0x11 0 64k', 'read -P 0x11 0 64k']);
    expect(qemuIoFailed(w), explain(w)).toBe(false);
    const r = await cli(['status', '--json']);
    expect(r.code, explain(r)).toBe(0);
    const st = JSON.parse(r.stdout) as Status;
    const v = st.volumes.find((x) => x.name === 'default');
    expect(v, r.stdout).toBeDefined();
    expect(v).toMatchObject({ layout: 'raid1', sizeBytes: 1 * GiB, state: 'optimal', rebuild: null });
    expect(v?.elements).toHaveLength(2);
    for (const e of v?.elements ?? []) expect(e).toMatchObject({ kind: 'local', state: 'active' });
    for (const pool of ['top', 'middle', 'bottom'] as const) expect(st.pools[pool].threads).toBeGreaterThanOrEqual(0);
    expect(st.pools.bottom.threads).toBeGreaterThanOrEqual(1);
    expect(st.nbd?.listen, 'status nbd.listen').toEqual([`127.0.0.1:${fx.daemon.nbdPort}`]);
    expect(st.rdma?.summary, r.stdout).toMatch(/^rdma: no RDMA device/); // no RDMA device on this host
    const text = await cli(['status']);
    expect(text.code, explain(text)).toBe(0);
    expect(text.stdout).toMatch(/^rdma: no RDMA device \(.+\)$/m);
  });

  it('volume list names `default`', async () => {
    const r = await cli(['volume', 'list']);
    expect(r.code, explain(r)).toBe(0);
    expect(r.stdout).toMatch(/\bdefault\b/);
  });

  it('the API answers 401 without the token and the token file is not printed by status', async () => {
    const res = await fetch(`http://127.0.0.1:${fx.daemon.apiPort}/api/v1/status`);
    expect(res.status).toBe(401);
    const { readFile } = await import('node:fs/promises');
    const token = (await readFile(path.join(fx.daemon.dataDir, 'api-token'), 'utf8')).trim();
    expect(token.length).toBeGreaterThanOrEqual(16);
    const ok = await fetch(`http://127.0.0.1:${fx.daemon.apiPort}/api/v1/status`, { headers: { Authorization: `Bearer ${token}` } });
    expect(ok.status).toBe(200);
    const r = await cli(['status']);
    expect(r.stdout + r.stderr).not.toContain(token);
  });
});
