// Acceptance: nbdfuse + losetup + mkfs.ext4 + mount + write files + umount + fsck.ext4 -fn clean,
// then the files read back through a fresh nbdfuse/loop stack (no page cache left to lie).
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { useDaemon } from './lib/fixture.js';
import { MiB } from './lib/files.js';
import { explain, missingTools, run, runOk, sleep, spawnTracked, stopChild, waitExit } from './lib/proc.js';
import type { ChildProcess } from 'node:child_process';

function skipReason(): string | null {
  if (process.getuid?.() !== 0) return 'needs root for losetup and mount (run ./scripts/test.sh as root)';
  if (!existsSync('/dev/fuse')) return '/dev/fuse is missing (load the fuse module or run the container with --device /dev/fuse)';
  if (!existsSync('/dev/loop-control')) return '/dev/loop-control is missing (loop devices unavailable in this container)';
  return missingTools(['nbdfuse', 'fusermount3', 'losetup', 'mkfs.ext4', 'fsck.ext4', 'mount', 'umount']);
}

/** nbdfuse DIR/disk URI, ready when its pid file appears. */
async function startNbdfuse(fuseDir: string, uri: string): Promise<ChildProcess> {
  const pidFile = path.join(fuseDir, '..', `nbdfuse-${Date.now()}.pid`);
  const child = spawnTracked('nbdfuse', ['-P', pidFile, path.join(fuseDir, 'disk'), uri]);
  for (let i = 0; i < 100; i++) {
    if (existsSync(pidFile) && existsSync(path.join(fuseDir, 'disk'))) return child;
    if ((await waitExit(child, 100)) !== null) break;
  }
  await stopChild(child, 2_000);
  throw new Error(`nbdfuse did not come up on ${fuseDir}`);
}

interface Stack { fuse: ChildProcess | null; fuseDir: string; loop: string | null; mnt: string; mounted: boolean }

/** Tears down in reverse order; each step runs even if an earlier one failed. */
async function teardown(s: Stack): Promise<void> {
  if (s.mounted) {
    const r = await run('umount', [s.mnt], { timeoutMs: 30_000 });
    if (r.code !== 0) await run('umount', ['-l', s.mnt], { timeoutMs: 10_000 });
    s.mounted = false;
  }
  if (s.loop !== null) { await run('losetup', ['-d', s.loop], { timeoutMs: 10_000 }); s.loop = null; }
  if (s.fuse !== null) {
    await run('fusermount3', ['-u', s.fuseDir], { timeoutMs: 10_000 });
    if ((await waitExit(s.fuse, 5_000)) === null) await stopChild(s.fuse, 3_000);
    s.fuse = null;
  }
}

async function attach(s: Stack, uri: string): Promise<string> {
  s.fuse = await startNbdfuse(s.fuseDir, uri);
  const r = await runOk('losetup', ['-f', '--show', path.join(s.fuseDir, 'disk')], { timeoutMs: 15_000 });
  s.loop = r.stdout.trim();
  return s.loop;
}

describe('ext4 on the export through nbdfuse and a loop device', () => {
  const reason = skipReason();
  const fx = useDaemon('ext4');

  it(reason === null ? 'mkfs, mount, write, umount, fsck -fn clean; files intact after re-attaching' : `SKIPPED: ${reason}`, async (ctx) => {
    if (reason !== null) ctx.skip(reason);
    const s: Stack = { fuse: null, fuseDir: path.join(fx.dir, 'fuse'), loop: null, mnt: path.join(fx.dir, 'mnt'), mounted: false };
    mkdirSync(s.fuseDir);
    mkdirSync(s.mnt);
    const hashes = new Map<string, string>();
    try {
      const loop = await attach(s, fx.daemon.uri('default'));
      await runOk('mkfs.ext4', ['-q', '-F', loop], { timeoutMs: 120_000 });
      await runOk('mount', [loop, s.mnt], { timeoutMs: 30_000 });
      s.mounted = true;
      for (let i = 0; i < 24; i++) {
        const data = randomBytes(i === 0 ? 32 * MiB : (i * 97 + 1) * 1024);
        const name = `file-${i}.bin`;
        await writeFile(path.join(s.mnt, name), data);
        hashes.set(name, createHash('sha256').update(data).digest('hex'));
      }
      await runOk('sync', [], { timeoutMs: 60_000 });
      await runOk('umount', [s.mnt], { timeoutMs: 60_000 });
      s.mounted = false;
      const fsck = await run('fsck.ext4', ['-fn', loop], { timeoutMs: 120_000 });
      expect(fsck.code, explain(fsck)).toBe(0);
      await teardown(s);

      // A fresh FUSE + loop stack: whatever reads back now came from the daemon.
      await sleep(200);
      const loop2 = await attach(s, fx.daemon.uri('default'));
      await runOk('mount', ['-o', 'ro', loop2, s.mnt], { timeoutMs: 30_000 });
      s.mounted = true;
      for (const [name, want] of hashes) {
        const got = createHash('sha256').update(await readFile(path.join(s.mnt, name))).digest('hex');
        expect(got, name).toBe(want);
      }
    } finally {
      await teardown(s);
    }
  });
});
