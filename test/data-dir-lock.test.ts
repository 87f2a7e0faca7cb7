// One daemon per data dir (state/data-dir-lock.ts): a second `onestack serve` on a data dir in use
// is refused before it reads or writes any element (it used to assemble, replay the journal and
// mark superblocks clean under the live daemon, and only then fail to listen), the first keeps
// serving; after a kill -9 the stale lock is taken over by the next start.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CLI_MAIN, Daemon, REPO_ROOT } from './lib/daemon.js';
import { GiB, removeDir, tempDir } from './lib/files.js';
import { exportSize, qemuIo, qemuIoFailed } from './lib/peers.js';
import { explain, run } from './lib/proc.js';

describe('one daemon per data dir', () => {
  const dirs: string[] = [];
  const daemons: Daemon[] = [];
  afterAll(async () => {
    for (const d of daemons) await d.stop(5_000);
    for (const d of dirs) removeDir(d);
  });

  it('a second serve on the same data dir is refused, names the holder, touches nothing; a kill -9 leaves a lock the next start takes', async () => {
    const dir = tempDir('data-dir-lock');
    dirs.push(dir);
    const dataDir = path.join(dir, 'data');
    const first = await Daemon.start({ dataDir });
    daemons.push(first);
    const w = await qemuIo(first.uri(), ['write -P 0x6a 0 1M', 'flush']);
    expect(qemuIoFailed(w), explain(w)).toBe(false);
    const lockFile = path.join(dataDir, 'engine.pid');
    expect(existsSync(lockFile), 'engine.pid while serving').toBe(true);
    const holder = readFileSync(lockFile, 'utf8').trim();
    const superblock = readFileSync(path.join(dataDir, 'disk0.img')).subarray(0, 4096);

    // Ports 0: a refusal must come from the data dir, not from a port in use.
    const second = await run(process.execPath, [CLI_MAIN, 'serve', '--data-dir', dataDir, '--nbd', '127.0.0.1:0', '--api', '127.0.0.1:0'], { cwd: REPO_ROOT, timeoutMs: 30_000, env: process.env });
    expect(second.code, explain(second)).not.toBe(0);
    expect(second.stderr).toMatch(new RegExp(`data dir .* is in use by onestack \\(pid ${holder}\\)`));
    expect(second.stderr).toMatch(/kill -USR2/);
    expect(second.stderr).not.toMatch(/journal was replayed|engine open/);
    expect(Buffer.compare(readFileSync(path.join(dataDir, 'disk0.img')).subarray(0, 4096), superblock), 'the superblock was not rewritten').toBe(0);
    expect(readFileSync(lockFile, 'utf8').trim(), 'the lock still names the first daemon').toBe(holder);
    const r = await qemuIo(first.uri(), ['read -P 0x6a 0 1M']);
    expect(qemuIoFailed(r), `the first daemon still serves\n${explain(r)}`).toBe(false);

    await first.crash();
    expect(existsSync(lockFile), 'a kill -9 leaves the lock file').toBe(true);
    const third = await Daemon.start({ dataDir });
    daemons.push(third);
    expect(readFileSync(lockFile, 'utf8').trim()).not.toBe(holder);
    expect(await exportSize(third.uri())).toBe(1 * GiB);
    const again = await qemuIo(third.uri(), ['read -P 0x6a 0 1M']);
    expect(qemuIoFailed(again), explain(again)).toBe(false);
    const stopped = await third.stop();
    expect(stopped).toMatchObject({ code: 0, killed: false });
    expect(existsSync(lockFile), 'a clean stop removes the lock').toBe(false);
  });
});
