// Acceptance (issue 5, scrub): against the real daemon, bytes flipped straight in a leg's backing
// file — a local image, or the file behind nbdkit for a remote leg — are reported by
// `onestack volume scrub NAME --wait` (exit 1, the exact unit and byte counts) and repaired by
// `--repair --wait` (exit 0); the legs are byte-identical afterwards. `status --watch --count 3`
// shows the progress bar line while a throttled scrub runs.
import { open } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI_MAIN, Daemon, REPO_ROOT } from './lib/daemon.js';
import { DATA_OFFSET_BYTES, MiB, firstDifference, removeDir, sparseFile, tempDir, writeConfig } from './lib/files.js';
import { qemuIo, qemuIoFailed } from './lib/peers.js';
import { explain, missingTools, run } from './lib/proc.js';
import { startNbdkit, type NbdkitPeer } from './lib/remotes.js';

const LOCAL_BYTES = DATA_OFFSET_BYTES + 64 * MiB;
const REMOTE_BYTES = DATA_OFFSET_BYTES + 32 * MiB;
const missing = missingTools(['nbdkit', 'qemu-io']);

/** XORs `length` bytes at volume-data offset `at` of a leg's backing file with 0xff (every byte changes). */
async function flip(file: string, at: number, length: number): Promise<void> {
  const fh = await open(file, 'r+');
  try {
    const buf = Buffer.alloc(length);
    await fh.read(buf, 0, length, DATA_OFFSET_BYTES + at);
    for (let i = 0; i < length; i++) buf[i] = buf[i]! ^ 0xff;
    await fh.write(buf, 0, length, DATA_OFFSET_BYTES + at);
  } finally {
    await fh.close();
  }
}

describe.skipIf(missing !== null)(`scrub against the daemon${missing !== null ? ` (skipped: ${missing})` : ''}`, () => {
  let dir = '';
  let nbdkit: NbdkitPeer | null = null;
  let daemon: Daemon | null = null;
  let images: ReadonlyMap<string, string> = new Map();
  const remoteFile = (): string => path.join(dir, 'remote', 'r1.img');
  const cli = (args: readonly string[]) => run(process.execPath, [CLI_MAIN, ...args, '--api', `127.0.0.1:${daemon!.apiPort}`],
    { timeoutMs: 30_000, cwd: REPO_ROOT, env: { ...process.env, ONESTACK_DATA_DIR: daemon!.dataDir } });

  beforeAll(async () => {
    dir = tempDir('scrub');
    const { mkdir } = await import('node:fs/promises');
    await mkdir(path.join(dir, 'remote'));
    await sparseFile(remoteFile(), REMOTE_BYTES);
    nbdkit = await startNbdkit(['file', `dir=${path.join(dir, 'remote')}`]);
    const written = await writeConfig(dir, [
      { name: 'l0', sizeBytes: LOCAL_BYTES }, { name: 'l1', sizeBytes: LOCAL_BYTES }, { name: 'l2', sizeBytes: REMOTE_BYTES },
      { name: 'r1', uri: `nbd://127.0.0.1:${nbdkit.port}/r1.img`, options: { timeoutMs: 10_000 } },
    ], [
      { name: 'm', layout: 'raid1', elements: ['l0', 'l1'] },
      // The local leg is role 0: a 2-way repair takes the first active leg as the reference.
      { name: 'rm', layout: 'raid1', elements: ['l2', 'r1'] },
    ]);
    images = written.images;
    daemon = await Daemon.start({ dataDir: path.join(dir, 'data'), configPath: written.configPath });
    for (const [volume, size] of [['m', '48m'], ['rm', '24m']] as const) {
      const w = await qemuIo(daemon.uri(volume), [`write -P 0x5a 0 ${size}`, 'flush']);
      expect(qemuIoFailed(w), explain(w)).toBe(false);
    }
  }, 60_000);

  afterAll(async () => {
    await daemon?.stop();
    await nbdkit?.stop();
    if (dir !== '') removeDir(dir);
  });

  it('raid1 local + local: a check reports the flipped units (exit 1), a repair fixes them (exit 0)', async () => {
    const l1 = images.get('l1')!;
    await flip(l1, MiB + 10, 100); // unit 1
    await flip(l1, 20 * MiB, 1); // unit 20
    await flip(l1, 40 * MiB - 2048, 4096); // units 39 and 40
    const check = await cli(['volume', 'scrub', 'm', '--wait']);
    expect(check.code, explain(check)).toBe(1);
    expect(check.stdout).toMatch(/check of m: done in [\d.]+ s, 64\.00 MiB compared \([\d.]+ MiB\/s\), 4 units mismatched \(4197 bytes differ\)/);
    expect(check.stderr).toContain('hint: repair with: onestack volume scrub m --repair');
    const repair = await cli(['volume', 'scrub', 'm', '--repair', '--wait']);
    expect(repair.code, explain(repair)).toBe(0);
    expect(repair.stdout).toMatch(/repair of m: done .* 4 units mismatched \(4197 bytes differ\), 4 repaired/);
    expect(await firstDifference(images.get('l0')!, l1, DATA_OFFSET_BYTES, 64 * MiB)).toBe(-1);
    const status = await daemon!.status() as unknown as { volumes: { name: string; scrub: unknown }[] };
    expect(status.volumes.find((v) => v.name === 'm')?.scrub).toMatchObject({ kind: 'repair', outcome: 'done', mismatchedUnits: 4, repairedUnits: 4 });
  });

  it('raid1 local + nbdkit: bytes flipped in the remote backing file are found and repaired over NBD', async () => {
    await flip(remoteFile(), 5 * MiB + 3, 7);
    await flip(remoteFile(), 30 * MiB, 512); // past the written data: zeroes on the local leg
    const repair = await cli(['volume', 'scrub', 'rm', '--repair', '--wait']);
    expect(repair.code, explain(repair)).toBe(0);
    expect(repair.stdout).toMatch(/repair of rm: done .* 32\.00 MiB compared .* 2 units mismatched \(519 bytes differ\), 2 repaired/);
    expect(await firstDifference(images.get('l2')!, remoteFile(), DATA_OFFSET_BYTES, 32 * MiB)).toBe(-1);
    const again = await cli(['volume', 'scrub', 'rm', '--wait']);
    expect(again.code, explain(again)).toBe(0);
    expect(again.stdout).toContain('no mismatch');
    const r = await qemuIo(daemon!.uri('rm'), ['read -P 0x5a 0 24m', 'read -P 0 24m 8m']);
    expect(qemuIoFailed(r), explain(r)).toBe(false);
  });

  it('status --watch --count 3 shows a progress bar line during a throttled scrub', async () => {
    // 64 MiB at 4 MiB/s: about 16 s, so the scrub still runs when it is cancelled even on a loaded machine.
    const started = await cli(['volume', 'scrub', 'm', '--max-mib-per-sec', '4']);
    expect(started.code, explain(started)).toBe(0);
    const watch = await cli(['status', '--watch', '--count', '3']);
    expect(watch.code, explain(watch)).toBe(0);
    const bars = watch.stdout.match(/^ {6}\[[= >]{20}\] \d+\.\d%  [\d.]+ MiB\/s  ETA (\d+:\d\d|--:--)  check of m$/gm) ?? [];
    expect(bars.length, watch.stdout).toBeGreaterThanOrEqual(2);
    const cancel = await cli(['volume', 'scrub', 'm', '--cancel']);
    expect(cancel.stdout).toBe('cancelled the scrub of volume m\n');
  });
});
