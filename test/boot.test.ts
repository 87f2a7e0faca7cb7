// Acceptance (issue 7): a machine boots from a onestack volume. The daemon serves a raid1 of a
// local image and a remote NBD leg (nbdkit) as the boot volume, which the empty export name
// serves; a boot sector the test assembles itself goes onto it through the export, and
// qemu-system-x86_64 (TCG, no KVM) boots from nbd://127.0.0.1:PORT and prints our marker on
// COM1. Both legs hold the sector at the data offset; with the local leg failed the VM still
// boots, now from the network leg alone.
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bootSector } from './lib/bootsector.js';
import { Daemon } from './lib/daemon.js';
import { DATA_OFFSET_BYTES, MiB, readAt, removeDir, sparseFile, tempDir, writeConfig } from './lib/files.js';
import { nbdcopy } from './lib/peers.js';
import { explain, missingTools, spawnTracked, stopChild, waitExit } from './lib/proc.js';
import { startNbdkit, type NbdkitPeer } from './lib/remotes.js';

const VOLUME_BYTES = 64 * MiB;
const ELEMENT_BYTES = DATA_OFFSET_BYTES + VOLUME_BYTES;
/** What the test writes: the boot sector and zeros after it (a whole 64 KiB, block-size safe). */
const IMAGE_BYTES = 64 * 1024;
const BOOT_TIMEOUT_MS = 45_000;
const missing = missingTools(['qemu-system-x86_64', 'nbdkit', 'nbdcopy']);

interface BootResult { readonly serial: string; readonly stderr: string; readonly seen: boolean; readonly exited: string | null; readonly ms: number }

/**
 * Boots qemu from `driveFile` until `marker` shows on the serial port (stdout) or the timeout;
 * qemu is stopped either way (the boot sector halts for good, so qemu would never exit).
 */
async function bootUntil(driveFile: string, marker: string, timeoutMs = BOOT_TIMEOUT_MS): Promise<BootResult> {
  const args = ['-machine', 'pc', '-accel', 'tcg', '-m', '64', '-nographic', '-no-reboot', '-net', 'none',
    '-serial', 'stdio', '-monitor', 'none', '-boot', 'c', '-drive', `file=${driveFile},format=raw,if=ide`];
  const started = Date.now();
  const qemu: ChildProcess = spawnTracked('qemu-system-x86_64', args);
  let serial = '';
  let stderr = '';
  qemu.stdout?.setEncoding('latin1').on('data', (s: string) => { serial = (serial + s).slice(-64 * 1024); });
  qemu.stderr?.setEncoding('utf8').on('data', (s: string) => { stderr = (stderr + s).slice(-16 * 1024); });
  try {
    while (Date.now() - started < timeoutMs && !serial.includes(marker)) {
      const exit = await waitExit(qemu, 100);
      if (exit !== null) return { serial, stderr, seen: serial.includes(marker), exited: String(exit.code ?? exit.signal), ms: Date.now() - started };
    }
    return { serial, stderr, seen: serial.includes(marker), exited: null, ms: Date.now() - started };
  } finally {
    await stopChild(qemu, 3_000);
  }
}

function describeBoot(r: BootResult): string {
  const printable = r.serial.replace(/\x1b\[[0-9;?]*[A-Za-z]|\x1b[a-z]/g, '').replace(/[^\x20-\x7e\n]/g, '');
  return `qemu ${r.exited === null ? 'still running' : `exited ${r.exited}`} after ${r.ms} ms\n--- serial\n${printable.slice(-2000)}\n--- stderr\n${r.stderr.slice(-2000)}`;
}

describe.skipIf(missing !== null)(`boot a VM from the boot volume over NBD${missing !== null ? ` (skipped: ${missing})` : ''}`, () => {
  let dir = '';
  let nbdkit: NbdkitPeer | null = null;
  let daemon: Daemon | null = null;
  const remoteFile = (): string => path.join(dir, 'remote', 'r0.img');
  const marker = `ONESTACK-BOOT-OK ${randomBytes(6).toString('hex')}`;
  const sector = bootSector(marker);

  beforeAll(async () => {
    dir = tempDir('boot');
    mkdirSync(path.join(dir, 'remote'));
    await sparseFile(remoteFile(), ELEMENT_BYTES);
    nbdkit = await startNbdkit(['file', `dir=${path.join(dir, 'remote')}`]);
    const { configPath } = await writeConfig(dir, [
      { name: 'l0', sizeBytes: ELEMENT_BYTES },
      { name: 'r0', uri: `nbd://127.0.0.1:${nbdkit.port}/r0.img`, options: { timeoutMs: 5_000 } },
      { name: 'd0', sizeBytes: ELEMENT_BYTES },
    ], [
      // `default` exists too: the empty export name must pick the volume marked boot, not it.
      { name: 'default', layout: 'linear', elements: ['d0'] },
      { name: 'os', layout: 'raid1', elements: ['l0', 'r0'], boot: true },
    ]);
    daemon = await Daemon.start({ dataDir: path.join(dir, 'data'), configPath });
  }, 60_000);

  afterAll(async () => {
    await daemon?.stop();
    await nbdkit?.stop();
    if (dir !== '') removeDir(dir);
  });

  it('writes the boot sector through the empty export name; both raid1 legs hold it; qemu boots and prints the marker on COM1', async () => {
    const d = daemon!;
    const status = await d.status();
    // status --json carries `boot` per volume (test/lib/daemon.ts types only what most tests use).
    const os = status.volumes.find((v) => v.name === 'os') as (typeof status.volumes)[number] & { boot?: boolean } | undefined;
    expect(os?.boot, JSON.stringify(status.volumes)).toBe(true);
    expect(os?.state).toBe('optimal');
    expect(os?.elements.map((e) => `${e.name}:${e.kind}:${e.state}`)).toEqual(['l0:local:active', 'r0:nbd:active']);

    const image = Buffer.alloc(IMAGE_BYTES);
    image.set(sector, 0);
    const src = path.join(dir, 'boot.img');
    writeFileSync(src, image);
    const bootUri = `nbd://127.0.0.1:${d.nbdPort}`; // no path: export name "" = the boot volume
    const put = await nbdcopy(src, bootUri, ['--flush'], 30_000);
    expect(put.code, explain(put)).toBe(0);

    // The bytes went to `os` on both legs (4 MiB into each element), not to `default`.
    const local = await readAt(path.join(dir, 'l0.img'), DATA_OFFSET_BYTES, IMAGE_BYTES);
    const remote = await readAt(remoteFile(), DATA_OFFSET_BYTES, IMAGE_BYTES);
    expect(Buffer.compare(local, image), 'local leg l0 at the data offset').toBe(0);
    expect(Buffer.compare(remote, image), 'remote leg r0 (nbdkit\'s file) at the data offset').toBe(0);
    const other = await readAt(path.join(dir, 'd0.img'), DATA_OFFSET_BYTES, 512);
    expect(other.every((b) => b === 0), 'the default volume must not have received the boot sector').toBe(true);

    const boot = await bootUntil(bootUri, marker);
    console.log(`[boot] ${describeBoot(boot)}`);
    expect(boot.seen, describeBoot(boot) + '\n' + d.logs()).toBe(true);
  }, 90_000);

  it('with the local leg failed, the VM boots from the remote NBD leg alone', async () => {
    const d = daemon!;
    const token = readFileSync(path.join(d.dataDir, 'api-token'), 'utf8').trim();
    const res = await fetch(`http://127.0.0.1:${d.apiPort}/api/v1/elements/l0/fail`, { method: 'POST', headers: { authorization: `Bearer ${token}` } });
    expect(res.status, await res.text()).toBeLessThan(300);
    const os = (await d.status()).volumes.find((v) => v.name === 'os');
    expect(os?.state).toBe('degraded');
    expect(os?.elements.find((e) => e.name === 'r0')?.state).toBe('active');

    const boot = await bootUntil(`nbd://127.0.0.1:${d.nbdPort}`, marker);
    console.log(`[boot, remote leg only] ${describeBoot(boot)}`);
    expect(boot.seen, describeBoot(boot) + '\n' + d.logs()).toBe(true);
  }, 90_000);
});
