// Acceptance (issue 7): run a program stored on remote-backed storage. An ext4 file system lives
// on a raid1 of a local image and an NBD leg served by nbdkit; the host sees the volume as a block
// device through nbdfuse + losetup (no kernel nbd module here). The test stores a shell script and
// a static ELF program on it, unmounts, stops the daemon, starts it again (the array reassembled
// from its superblocks), mounts again and runs both programs from the mounted file system.
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Daemon } from './lib/daemon.js';
import { DATA_OFFSET_BYTES, MiB, firstDifference, removeDir, sparseFile, tempDir, writeConfig } from './lib/files.js';
import { explain, missingTools, run, runOk, spawnTracked, stopChild, waitExit } from './lib/proc.js';
import { startNbdkit, type NbdkitPeer } from './lib/remotes.js';
import { tinyElf } from './lib/tiny-elf.js';

const VOLUME_BYTES = 64 * MiB;
const ELEMENT_BYTES = DATA_OFFSET_BYTES + VOLUME_BYTES;
const VOLUME = 'apps';

function skipReason(): string | null {
  if (process.getuid?.() !== 0) return 'needs root for losetup and mount (run ./scripts/test.sh as root)';
  if (!existsSync('/dev/fuse')) return '/dev/fuse is missing (load the fuse module or run the container with --device /dev/fuse)';
  if (!existsSync('/dev/loop-control')) return '/dev/loop-control is missing (loop devices unavailable in this container)';
  return missingTools(['nbdkit', 'nbdfuse', 'fusermount3', 'losetup', 'mkfs.ext4', 'fsck.ext4', 'mount', 'umount']);
}

interface Stack { fuse: ChildProcess | null; fuseDir: string; loop: string | null; mnt: string; mounted: boolean }

/** nbdfuse DIR/disk URI, ready when its pid file and the disk file appear (bounded). */
async function startNbdfuse(fuseDir: string, uri: string): Promise<ChildProcess> {
  const pidFile = path.join(fuseDir, '..', `nbdfuse-${Date.now()}.pid`);
  const child = spawnTracked('nbdfuse', ['-P', pidFile, path.join(fuseDir, 'disk'), uri]);
  for (let i = 0; i < 100; i++) {
    if (existsSync(pidFile) && existsSync(path.join(fuseDir, 'disk'))) return child;
    if ((await waitExit(child, 100)) !== null) break;
  }
  await stopChild(child, 2_000);
  throw new Error(`nbdfuse did not come up on ${fuseDir} for ${uri}`);
}

async function attach(s: Stack, uri: string): Promise<string> {
  s.fuse = await startNbdfuse(s.fuseDir, uri);
  const r = await runOk('losetup', ['-f', '--show', path.join(s.fuseDir, 'disk')], { timeoutMs: 15_000 });
  s.loop = r.stdout.trim();
  return s.loop;
}

/** Unmount, detach the loop, unmount FUSE: each step runs even when an earlier one failed. */
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

const reason = skipReason();

describe.skipIf(reason !== null)(`ext4 on a remote-backed raid1: programs stored on it run after a daemon restart${reason !== null ? ` (skipped: ${reason})` : ''}`, () => {
  let dir = '';
  let configPath = '';
  let nbdkit: NbdkitPeer | null = null;
  let daemon: Daemon | null = null;
  const remoteFile = (): string => path.join(dir, 'remote', 'r0.img');

  beforeAll(async () => {
    dir = tempDir('boot-ext4');
    mkdirSync(path.join(dir, 'remote'));
    await sparseFile(remoteFile(), ELEMENT_BYTES);
    nbdkit = await startNbdkit(['file', `dir=${path.join(dir, 'remote')}`]);
    ({ configPath } = await writeConfig(dir, [
      { name: 'l0', sizeBytes: ELEMENT_BYTES },
      { name: 'r0', uri: `nbd://127.0.0.1:${nbdkit.port}/r0.img`, options: { timeoutMs: 5_000 } },
    ], [{ name: VOLUME, layout: 'raid1', elements: ['l0', 'r0'] }]));
    daemon = await Daemon.start({ dataDir: path.join(dir, 'data'), configPath });
  }, 60_000);

  afterAll(async () => {
    await daemon?.stop();
    await nbdkit?.stop();
    if (dir !== '') removeDir(dir);
  });

  it('mkfs.ext4, store a script and an ELF program, restart the daemon, fsck clean, run both from the mount', async () => {
    const token = randomBytes(6).toString('hex');
    const scriptOut = `ONESTACK-EXT4-SCRIPT ${token}`;
    const elfOut = `ONESTACK-EXT4-ELF ${token}\n`;
    const s: Stack = { fuse: null, fuseDir: path.join(dir, 'fuse'), loop: null, mnt: path.join(dir, 'mnt'), mounted: false };
    mkdirSync(s.fuseDir);
    mkdirSync(s.mnt);
    try {
      const loop = await attach(s, daemon!.uri(VOLUME));
      await runOk('mkfs.ext4', ['-q', '-F', '-L', 'onestack-apps', loop], { timeoutMs: 60_000 });
      await runOk('mount', [loop, s.mnt], { timeoutMs: 30_000 });
      s.mounted = true;
      mkdirSync(path.join(s.mnt, 'bin'));
      // The script reads a data file next to it, so it depends on more than its own blocks.
      await writeFile(path.join(s.mnt, 'bin', 'greeting.txt'), `${scriptOut}\n`);
      await writeFile(path.join(s.mnt, 'bin', 'hello.sh'), '#!/bin/sh\nexec cat "$(dirname "$0")/greeting.txt"\n', { mode: 0o755 });
      await writeFile(path.join(s.mnt, 'bin', 'hello'), tinyElf(elfOut), { mode: 0o755 });
      await runOk('sync', [], { timeoutMs: 30_000 });
      await teardown(s);

      const stopped = await daemon!.stop();
      expect(stopped.killed, daemon!.logs()).toBe(false);
      // Both legs hold the whole file system: the local image and the file behind nbdkit agree.
      const at = await firstDifference(path.join(dir, 'l0.img'), remoteFile(), DATA_OFFSET_BYTES, VOLUME_BYTES);
      expect(at, `l0 and r0 differ at data offset ${at}`).toBe(-1);

      // Start again from the same config and data dir: the raid1 is reassembled from its superblocks.
      const { dataDir, nbdPort, apiPort } = daemon!;
      daemon = await Daemon.start({ dataDir, configPath, nbdPort, apiPort });
      const vol = (await daemon.status()).volumes.find((v) => v.name === VOLUME);
      expect(vol?.state, JSON.stringify(vol)).toBe('optimal');
      expect(vol?.elements.map((e) => `${e.name}:${e.kind}:${e.state}`)).toEqual(['l0:local:active', 'r0:nbd:active']);

      const loop2 = await attach(s, daemon.uri(VOLUME));
      const fsck = await run('fsck.ext4', ['-fn', loop2], { timeoutMs: 60_000 });
      expect(fsck.code, explain(fsck)).toBe(0);
      await runOk('mount', [loop2, s.mnt], { timeoutMs: 30_000 });
      s.mounted = true;
      const script = await run(path.join(s.mnt, 'bin', 'hello.sh'), [], { timeoutMs: 15_000 });
      expect(script.code, explain(script)).toBe(0);
      expect(script.stdout).toBe(`${scriptOut}\n`);
      console.log(`[boot-ext4] ${script.command} -> ${script.stdout.trim()}`);
      if (process.arch === 'x64') {
        const elf = await run(path.join(s.mnt, 'bin', 'hello'), [], { timeoutMs: 15_000 });
        expect(elf.code, explain(elf)).toBe(0);
        expect(elf.stdout).toBe(elfOut);
        console.log(`[boot-ext4] ${elf.command} -> ${elf.stdout.trim()}`);
      } else {
        console.log(`[boot-ext4] the hand-built ELF program is x86-64; not run on ${process.arch}`);
      }
    } finally {
      await teardown(s);
    }
  }, 120_000);
});
