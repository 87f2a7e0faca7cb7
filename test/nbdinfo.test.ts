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

describe('preferred block size per layout (NBD_INFO_BLOCK_SIZE)', () => {
  const e = (prefix: string, n: number): { name: string; sizeBytes: number }[] => Array.from({ length: n }, (_, i) => ({ name: `${prefix}${i}`, sizeBytes: 64 * MiB }));
  const names = (prefix: string, n: number): string[] => e(prefix, n).map((x) => x.name);
  const KiB = 1024;
  // [volume, expected preferred bytes, why]
  const cases: readonly [string, number, string][] = [
    ['lin', 4 * KiB, 'linear: no stripe, the page size'],
    ['mir', 4 * KiB, 'raid1: no stripe, the page size'],
    ['r0x2', 128 * KiB, 'raid0 over 2, 64 KiB chunks: full stripe'],
    ['r0x3', 64 * KiB, 'raid0 over 3: a 192 KiB stripe is no power of two, so one chunk'],
    ['r0big', 16 * MiB, 'raid0 over 4, 16 MiB chunks: a 64 MiB stripe is over the 32 MiB maximum, so one chunk'],
    ['r10', 128 * KiB, 'raid10 over 4 (2 pairs): full stripe'],
    ['r5x3', 128 * KiB, 'raid5 over 3: 2 data chunks'],
    ['r5x4', 64 * KiB, 'raid5 over 4: 3 data chunks are no power of two, so one chunk'],
    ['r6x4', 128 * KiB, 'raid6 over 4: 2 data chunks'],
  ];
  const fx = useDaemon('nbdinfo-blocksize', [
    ...e('l', 2), ...e('m', 2), ...e('a', 2), ...e('b', 3), ...e('c', 4), ...e('d', 4), ...e('f', 3), ...e('g', 4), ...e('h', 4),
  ], [
    { name: 'lin', layout: 'linear', elements: names('l', 2) },
    { name: 'mir', layout: 'raid1', elements: names('m', 2), boot: true },
    { name: 'r0x2', layout: 'raid0', elements: names('a', 2), chunkKiB: 64 },
    { name: 'r0x3', layout: 'raid0', elements: names('b', 3), chunkKiB: 64 },
    { name: 'r0big', layout: 'raid0', elements: names('c', 4), chunkKiB: 16384 },
    { name: 'r10', layout: 'raid10', elements: names('d', 4), chunkKiB: 64 },
    { name: 'r5x3', layout: 'raid5', elements: names('f', 3), chunkKiB: 64 },
    { name: 'r5x4', layout: 'raid5', elements: names('g', 4), chunkKiB: 64 },
    { name: 'r6x4', layout: 'raid6', elements: names('h', 4), chunkKiB: 64 },
  ]);

  for (const [volume, preferred, why] of cases) {
    it(`${volume}: preferred ${preferred / KiB} KiB (${why})`, async () => {
      const info = await nbdinfo(fx.daemon.uri(volume));
      const x = info.exports[0]!;
      const [min, pref, max] = [x.block_size_minimum ?? 0, x.block_size_preferred ?? 0, x.block_size_maximum ?? 0];
      expect(pref).toBe(preferred);
      // proto.md: powers of two, minimum <= preferred <= maximum.
      for (const v of [min, pref, max]) expect(v & (v - 1), `${v} is a power of two`).toBe(0);
      expect(min).toBeLessThanOrEqual(pref);
      expect(pref).toBeLessThanOrEqual(max);
    });
  }
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
