// Acceptance: `nbdinfo` shows the right size and flags; `nbdinfo --list` lists the volumes.
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEFAULT_API_PORT, DEFAULT_NBD_PORT, Daemon } from './lib/daemon.js';
import { useDaemon } from './lib/fixture.js';
import { GiB, MiB, removeDir, tempDir } from './lib/files.js';
import { nbdinfo } from './lib/peers.js';
import { portFree, run } from './lib/proc.js';

describe('embedded default (no config)', () => {
  const fx = useDaemon('nbdinfo-default');

  it('nbdinfo --json shows volume `default`: 1 GiB, writable, flush/FUA/trim/zero/cache, block sizes', async () => {
    const info = await nbdinfo(fx.daemon.uri('default'));
    expect(info.protocol).toBe('newstyle-fixed');
    expect(info.structured, 'structured replies negotiated').toBe(true);
    expect(info.exports).toHaveLength(1);
    const e = info.exports[0]!;
    expect(e['export-name']).toBe('default');
    expect(e['export-size']).toBe(1 * GiB);
    expect(e.is_read_only).toBe(false);
    expect(e.can_flush).toBe(true);
    expect(e.can_fua).toBe(true);
    expect(e.can_trim).toBe(true);
    expect(e.can_zero).toBe(true);
    expect(e.can_cache).toBe(true);
    expect(typeof e.can_multi_conn).toBe('boolean');
    // NBD_INFO_BLOCK_SIZE: powers of two, min <= preferred <= max.
    expect(e.block_size_minimum, 'NBD_INFO_BLOCK_SIZE sent').toBeTypeOf('number');
    const [min, pref, max] = [e.block_size_minimum ?? 0, e.block_size_preferred ?? 0, e.block_size_maximum ?? 0];
    expect(min & (min - 1)).toBe(0);
    expect(pref & (pref - 1)).toBe(0);
    expect(min).toBeLessThanOrEqual(pref);
    expect(pref).toBeLessThanOrEqual(max);
    expect(max).toBeGreaterThanOrEqual(1 * MiB);
  });

  it('the empty export name means the boot volume (here `default`)', async () => {
    const info = await nbdinfo(`nbd://127.0.0.1:${fx.daemon.nbdPort}`);
    expect(info.exports[0]?.['export-size']).toBe(1 * GiB);
  });

  it('nbdinfo --list lists `default`', async () => {
    const info = await nbdinfo(`nbd://127.0.0.1:${fx.daemon.nbdPort}`, ['--list']);
    expect(info.exports.map((e) => e['export-name'])).toContain('default');
  });

  it('an unknown export name is refused and the daemon keeps serving', async () => {
    const r = await run('nbdinfo', ['--json', fx.daemon.uri('no-such-volume')], { timeoutMs: 20_000 });
    expect(r.code, r.stdout + r.stderr).not.toBe(0);
    expect(r.timedOut).toBe(false);
    const info = await nbdinfo(fx.daemon.uri('default'));
    expect(info.exports[0]?.['export-size']).toBe(1 * GiB);
  });
});

describe('configured volumes', () => {
  const fx = useDaemon('nbdinfo-config', [
    { name: 'l0', sizeBytes: 256 * MiB }, { name: 'l1', sizeBytes: 256 * MiB },
    { name: 's0', sizeBytes: 256 * MiB }, { name: 's1', sizeBytes: 256 * MiB }, { name: 's2', sizeBytes: 256 * MiB },
    { name: 'm0', sizeBytes: 256 * MiB }, { name: 'm1', sizeBytes: 256 * MiB },
  ], [
    { name: 'lin', layout: 'linear', elements: ['l0', 'l1'] },
    { name: 'stripe', layout: 'raid0', elements: ['s0', 's1', 's2'], chunkKiB: 64 },
    { name: 'mirror', layout: 'raid1', elements: ['m0', 'm1'], boot: true },
  ]);
  // Each element gives all but its 4 MiB header to the volume.
  const dataBytes = 252 * MiB;

  it('nbdinfo --list lists every volume with its layout size', async () => {
    const info = await nbdinfo(`nbd://127.0.0.1:${fx.daemon.nbdPort}`, ['--list']);
    const sizes = new Map(info.exports.map((e) => [e['export-name'], e['export-size']]));
    expect(sizes.get('lin')).toBe(2 * dataBytes);
    expect(sizes.get('stripe')).toBe(3 * dataBytes);
    expect(sizes.get('mirror')).toBe(dataBytes);
  });

  it('the empty export name is the boot volume', async () => {
    const info = await nbdinfo(`nbd://127.0.0.1:${fx.daemon.nbdPort}`);
    expect(info.exports[0]?.['export-size']).toBe(dataBytes);
  });
});

describe('SPEC defaults: no --nbd / --api', () => {
  it('`nbdinfo nbd://127.0.0.1:10809/default` as written in issue 3; banner prints the GUI URL with a token', async (ctx) => {
    const busy = [];
    for (const p of [DEFAULT_NBD_PORT, DEFAULT_API_PORT]) if (!(await portFree(p))) busy.push(p);
    ctx.skip(busy.length > 0, `127.0.0.1 port(s) ${busy.join(', ')} already in use (another onestack?); free them to run this`);
    const dir = tempDir('defaults');
    const daemon = await Daemon.start({ dataDir: path.join(dir, 'data'), defaultPorts: true });
    try {
      const info = await nbdinfo('nbd://127.0.0.1:10809/default');
      expect(info.exports[0]?.['export-size']).toBe(1 * GiB);
      expect(daemon.stdout).toMatch(/http:\/\/127\.0\.0\.1:9090\/\S*[?&]token=\S{16,}/);
      const res = await fetch('http://127.0.0.1:9090/api/v1/status');
      expect(res.status).toBe(401);
    } finally {
      await daemon.stop();
      removeDir(dir);
    }
  });
});
