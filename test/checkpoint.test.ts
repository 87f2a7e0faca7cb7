// Acceptance: checkpoints (dirty bitmaps) for incremental backup, against the built daemon with
// real clients. A base image is copied with nbdcopy, a checkpoint is taken with the CLI, qemu-io
// writes at known offsets (aligned, unaligned, write-zeroes, discard, across a region boundary,
// at the end); then `nbdinfo --map=qemu:dirty-bitmap:CKPT` shows exactly those regions as dirty,
// qemu-img map (x-dirty-bitmap) agrees, and libnbd (nbdsh) rebuilds the volume from the base
// copy plus ONLY the dirty extents, with the sha256 of a full copy — on raid1 and raid5.
// Checkpoints survive a clean restart, and after kill -9 every acknowledged write is marked.
import path from 'node:path';
import { copyFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { CLI_MAIN, Daemon, REPO_ROOT } from './lib/daemon.js';
import { useDaemon } from './lib/fixture.js';
import { MiB, randomFile, removeDir, sha256Range, tempDir, writeConfig } from './lib/files.js';
import { exportSize, nbdcopy, qemuIo, qemuIoFailed } from './lib/peers.js';
import { explain, missingTools, PEER_ENV, run, runOk, sleep, spawnTracked, waitExit } from './lib/proc.js';

const REGION = 64 * 1024;
const skip = missingTools(['nbdinfo', 'nbdcopy', 'nbdsh', 'qemu-io', 'qemu-img']);

interface Run { readonly offsetBytes: number; readonly lengthBytes: number }

function cli(d: Daemon, args: readonly string[]): ReturnType<typeof run> {
  return run(process.execPath, [CLI_MAIN, ...args, '--api', `127.0.0.1:${d.apiPort}`, '--data-dir', d.dataDir], { timeoutMs: 20_000, cwd: REPO_ROOT });
}

/** The regions the byte ranges touch, merged into runs and clipped to the volume. */
function expectedDirty(ranges: readonly Run[], sizeBytes: number): Run[] {
  const regions = new Set<number>();
  for (const r of ranges) for (let k = Math.floor(r.offsetBytes / REGION); k * REGION < r.offsetBytes + r.lengthBytes; k++) regions.add(k);
  const out: Run[] = [];
  for (const k of [...regions].sort((a, b) => a - b)) {
    const last = out[out.length - 1];
    const end = Math.min((k + 1) * REGION, sizeBytes);
    if (last !== undefined && last.offsetBytes + last.lengthBytes === k * REGION) out[out.length - 1] = { offsetBytes: last.offsetBytes, lengthBytes: end - last.offsetBytes };
    else out.push({ offsetBytes: k * REGION, lengthBytes: end - k * REGION });
  }
  return out;
}

/** `nbdinfo --map=qemu:dirty-bitmap:CKPT --json`: the dirty runs (type bit 1). */
async function nbdinfoDirty(uri: string, ckpt: string): Promise<Run[]> {
  const r = await runOk('nbdinfo', [`--map=qemu:dirty-bitmap:${ckpt}`, '--json', uri], { timeoutMs: 30_000 });
  const map = JSON.parse(r.stdout) as { offset: number; length: number; type: number }[];
  return map.filter((e) => (e.type & 1) === 1).map((e) => ({ offsetBytes: e.offset, lengthBytes: e.length }));
}

/** qemu-img map through qemu's NBD client with x-dirty-bitmap: dirty regions read as "data": false. */
async function qemuImgDirty(d: Daemon, volume: string, ckpt: string): Promise<Run[]> {
  const opts = `driver=nbd,server.type=inet,server.host=127.0.0.1,server.port=${d.nbdPort},export=${volume},x-dirty-bitmap=qemu:dirty-bitmap:${ckpt}`;
  const r = await runOk('qemu-img', ['map', '--output=json', '--image-opts', opts], { timeoutMs: 30_000 });
  const map = JSON.parse(r.stdout) as { start: number; length: number; data: boolean }[];
  return map.filter((e) => !e.data).map((e) => ({ offsetBytes: e.start, lengthBytes: e.length }));
}

// libnbd: selects the checkpoint's context, walks block status over the whole export and copies
// only the dirty extents into OUT (a copy of the base image). Prints what it read.
const REBUILD_PY = `
import os, json
uri, ctx, out = os.environ['URI'], os.environ['CTX'], os.environ['OUT']
h.add_meta_context(ctx)
h.connect_uri(uri)
assert h.can_meta_context(ctx), 'context not negotiated'
size = h.get_size()
dirty, pos, turns = [], 0, 0
while pos < size and turns < 100000:
    turns += 1
    got = []
    def cb(meta, off, entries, *err):
        if meta == ctx:
            got.extend(entries)
        return 0
    h.block_status(min(size - pos, 1 << 30), pos, cb)
    assert got, 'no extents'
    for i in range(0, len(got), 2):
        if got[i + 1] & 1:
            dirty.append([pos, got[i]])
        pos += got[i]
read = 0
with open(out, 'r+b') as f:
    for off, ln in dirty:
        p = off
        while p < off + ln:
            n = min(off + ln - p, 1 << 24)
            f.seek(p)
            f.write(h.pread(n, p))
            p += n
            read += n
print(json.dumps({'dirty': dirty, 'read': read}))
`;

describe.skipIf(skip !== null)(`checkpoints: incremental backup with real clients${skip === null ? '' : ` (skipped: ${skip})`}`, () => {
  const fx = useDaemon('checkpoint', [
    { name: 'm0', sizeBytes: 68 * MiB }, { name: 'm1', sizeBytes: 68 * MiB },
    { name: 'p0', sizeBytes: 36 * MiB }, { name: 'p1', sizeBytes: 36 * MiB }, { name: 'p2', sizeBytes: 36 * MiB },
  ], [
    { name: 'mirror', layout: 'raid1', elements: ['m0', 'm1'] },
    { name: 'parity', layout: 'raid5', elements: ['p0', 'p1', 'p2'], chunkKiB: 64 },
  ]);

  for (const volume of ['mirror', 'parity']) {
    it(`${volume}: base copy + only the dirty extents since the checkpoint = the volume (sha256); nbdinfo and qemu-img agree`, async () => {
      const d = fx.daemon;
      const uri = d.uri(volume);
      const size = await exportSize(uri);
      const dir = path.join(fx.dir, volume);
      await runOk('mkdir', ['-p', dir]);
      const [src, base, rebuilt, full] = ['src', 'base', 'rebuilt', 'full'].map((n) => path.join(dir, `${n}.img`)) as [string, string, string, string];
      await randomFile(src, size);
      const put = await nbdcopy(src, uri);
      expect(put.code, explain(put)).toBe(0);
      const before = await qemuIo(uri, ['write -P 0x66 50M 64k']); // before the checkpoint: in the base, not dirty
      expect(qemuIoFailed(before), explain(before)).toBe(false);
      const copy = await nbdcopy(uri, base);
      expect(copy.code, explain(copy)).toBe(0);

      const made = await cli(d, ['volume', 'checkpoint', volume, '--name', 'inc1']);
      expect(made.code, explain(made)).toBe(0);
      expect(made.stdout).toMatch(/checkpoint inc1 of volume .* started .*qemu:dirty-bitmap:inc1/);
      expect(await nbdinfoDirty(uri, 'inc1')).toEqual([]);

      const writes: [string, Run][] = [
        ['write -P 0x11 0 4k', { offsetBytes: 0, lengthBytes: 4096 }],
        ['write -P 0x22 5M 1M', { offsetBytes: 5 * MiB, lengthBytes: MiB }],
        [`write -P 0x33 ${10 * MiB + 100} 3000`, { offsetBytes: 10 * MiB + 100, lengthBytes: 3000 }],
        ['write -z 20M 64k', { offsetBytes: 20 * MiB, lengthBytes: 64 * 1024 }],
        ['discard 30M 128k', { offsetBytes: 30 * MiB, lengthBytes: 128 * 1024 }],
        [`write -P 0x55 ${40 * MiB - 2048} 4k`, { offsetBytes: 40 * MiB - 2048, lengthBytes: 4096 }],
        [`write -P 0x44 ${size - 4096} 4k`, { offsetBytes: size - 4096, lengthBytes: 4096 }],
      ];
      const w = await qemuIo(uri, [...writes.map(([c]) => c), 'flush']);
      expect(qemuIoFailed(w), explain(w)).toBe(false);

      const want = expectedDirty(writes.map(([, r]) => r), size);
      expect(await nbdinfoDirty(uri, 'inc1')).toEqual(want);
      expect(await qemuImgDirty(d, volume, 'inc1')).toEqual(want);

      await copyFile(base, rebuilt);
      const rb = await run('nbdsh', ['-c', REBUILD_PY], { timeoutMs: 60_000, env: { ...PEER_ENV, URI: uri, CTX: 'qemu:dirty-bitmap:inc1', OUT: rebuilt } });
      expect(rb.code, explain(rb)).toBe(0);
      const report = JSON.parse(rb.stdout.trim().split('\n').pop() ?? '{}') as { dirty: [number, number][]; read: number };
      expect(report.dirty.map(([o, l]) => ({ offsetBytes: o, lengthBytes: l }))).toEqual(want);
      expect(report.read).toBe(want.reduce((a, r) => a + r.lengthBytes, 0));
      expect(report.read).toBeLessThan(2 * MiB);

      const get = await nbdcopy(uri, full);
      expect(get.code, explain(get)).toBe(0);
      const fullSha = await sha256Range(full);
      expect(await sha256Range(base)).not.toBe(fullSha);
      expect(await sha256Range(rebuilt)).toBe(fullSha);
    });
  }

  it('CLI and API: list, status line, bad names (exit 2), unknown volume, delete removes the NBD context', async () => {
    const d = fx.daemon;
    const a = await cli(d, ['volume', 'checkpoint', 'mirror']);
    expect(a.code, explain(a)).toBe(0);
    const name = /checkpoint (\S+) of volume/.exec(a.stdout)?.[1] ?? '';
    expect(name).toMatch(/^ckpt-\d+$/);
    const list = await cli(d, ['volume', 'checkpoints', 'mirror', '--json']);
    expect(list.code, explain(list)).toBe(0);
    expect((JSON.parse(list.stdout) as { name: string }[]).map((c) => c.name)).toContain(name);
    const table = await cli(d, ['volume', 'checkpoints', 'mirror']);
    expect(table.stdout).toMatch(new RegExp(`^${name}\\s+\\S+\\s+64\\.00 KiB\\s+\\d+`, 'm'));
    const status = await cli(d, ['status']);
    expect(status.stdout).toMatch(new RegExp(`checkpoints: .*${name} \\(`));
    const bad = await cli(d, ['volume', 'checkpoint', 'mirror', '--name', 'a/b']);
    expect(bad.code, explain(bad)).toBe(2);
    const dup = await cli(d, ['volume', 'checkpoint', 'mirror', '--name', name]);
    expect(dup.code).toBe(1);
    expect(dup.stderr).toMatch(/already has a checkpoint/);
    const none = await cli(d, ['volume', 'checkpoint', 'nosuch']);
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/no volume named nosuch/);
    const gone = await cli(d, ['volume', 'checkpoint-delete', 'mirror', 'nosuch']);
    expect(gone.code).toBe(1);
    const contexts = async (): Promise<string[]> => {
      const r = await runOk('nbdinfo', ['--json', '--list', `nbd://127.0.0.1:${d.nbdPort}`], { timeoutMs: 20_000 });
      return (JSON.parse(r.stdout) as { exports: { 'export-name': string; contexts?: string[] }[] }).exports.find((e) => e['export-name'] === 'mirror')?.contexts ?? [];
    };
    expect(await contexts()).toContain(`qemu:dirty-bitmap:${name}`);
    const del = await cli(d, ['volume', 'checkpoint-delete', 'mirror', name]);
    expect(del.code, explain(del)).toBe(0);
    expect(await contexts()).not.toContain(`qemu:dirty-bitmap:${name}`);
  });
});

// A writer over libnbd: 4 KiB at every third region (192 KiB apart), printing each offset once
// the server acknowledged it, until the connection breaks.
const WRITER_PY = `
import os
h.connect_uri(os.environ['URI'])
span = h.get_size() // 196608
buf = b'\\x77' * 4096
for i in range(1000000):
    off = (i % span) * 196608
    h.pwrite(buf, off)
    print(off, flush=True)
`;

describe.skipIf(skip !== null)('checkpoints across restarts', () => {
  it('survive SIGTERM + start; after kill -9 every acknowledged write is marked (and nothing else)', async () => {
    const dir = tempDir('checkpoint-restart');
    const daemons: Daemon[] = [];
    try {
      const { configPath } = await writeConfig(dir, [{ name: 'l0', sizeBytes: 68 * MiB }], [{ name: 'lin', layout: 'linear', elements: ['l0'] }]);
      const dataDir = path.join(dir, 'data');
      const first = await Daemon.start({ dataDir, configPath });
      daemons.push(first);
      const size = await exportSize(first.uri('lin'));
      expect((await cli(first, ['volume', 'checkpoint', 'lin', '--name', 'keep'])).code).toBe(0);
      const w = await qemuIo(first.uri('lin'), ['write -P 0x1 1M 4k', 'write -P 0x2 33M 1M']);
      expect(qemuIoFailed(w), explain(w)).toBe(false);
      expect(await first.stop(), first.logs()).toMatchObject({ code: 0, killed: false });

      const second = await Daemon.start({ dataDir, configPath, nbdPort: first.nbdPort, apiPort: first.apiPort });
      daemons.push(second);
      const clean = expectedDirty([{ offsetBytes: MiB, lengthBytes: 4096 }, { offsetBytes: 33 * MiB, lengthBytes: MiB }], size);
      expect(await nbdinfoDirty(second.uri('lin'), 'keep')).toEqual(clean);
      expect((await cli(second, ['volume', 'checkpoint', 'lin', '--name', 'crash'])).code).toBe(0);

      const writer = spawnTracked('nbdsh', ['-c', WRITER_PY], { env: { ...PEER_ENV, URI: second.uri('lin') } });
      let out = '';
      writer.stdout?.setEncoding('utf8').on('data', (s: string) => { out += s; });
      for (let i = 0; i < 400 && out.split('\n').length < 120; i++) await sleep(50);
      await second.crash();
      await waitExit(writer, 10_000);
      const lines = out.split('\n');
      const acked = lines.slice(0, -1).map(Number); // the last piece may be a line cut short
      expect(acked.length, `writer output:\n${out.slice(-2000)}`).toBeGreaterThanOrEqual(100);

      const third = await Daemon.start({ dataDir, configPath });
      daemons.push(third);
      const dirty = await nbdinfoDirty(third.uri('lin'), 'crash');
      const isDirty = (off: number): boolean => dirty.some((r) => off >= r.offsetBytes && off < r.offsetBytes + r.lengthBytes);
      const missing = acked.filter((off) => !isDirty(off));
      expect(missing, `acknowledged writes missing from the checkpoint after kill -9\n${third.logs()}`).toEqual([]);
      // Nothing but the writer's regions (every third one) is marked.
      for (const r of dirty) for (let off = r.offsetBytes; off < r.offsetBytes + r.lengthBytes; off += REGION) expect((off / REGION) % 3).toBe(0);
      // The older checkpoint kept its own writes and gained the writer's.
      const keep = await nbdinfoDirty(third.uri('lin'), 'keep');
      for (const r of clean) expect(keep.some((k) => k.offsetBytes <= r.offsetBytes && k.offsetBytes + k.lengthBytes >= r.offsetBytes + r.lengthBytes)).toBe(true);
      const list = await cli(third, ['volume', 'checkpoints', 'lin', '--json']);
      expect((JSON.parse(list.stdout) as { name: string }[]).map((c) => c.name)).toEqual(['keep', 'crash']);
    } finally {
      for (const d of daemons) await d.stop(5_000);
      removeDir(dir);
    }
  });
});
