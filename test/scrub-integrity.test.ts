// Acceptance (issue 10, item 3): `onestack volume scrub` on an integrity raid1 of a local leg and
// an nbdkit leg (file plugin over a sparse file). Bytes flipped in the REMOTE leg's backing file,
// bypassing onestack: a check names that element and the bad block count (exit 1), --repair
// rewrites them from the copy that verifies (exit 0), a second scrub reports zero, and the
// remote file holds the original bytes again.
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI_MAIN, Daemon, REPO_ROOT } from './lib/daemon.js';
import { DATA_OFFSET_BYTES, flipBytes, MiB, readAt, removeDir, sparseFile, tempDir, writeConfig } from './lib/files.js';
import { qemuIo, qemuIoFailed } from './lib/peers.js';
import { explain, missingTools, run, runOk } from './lib/proc.js';
import { startNbdkit, type NbdkitPeer } from './lib/remotes.js';

// Room for 64 MiB of data and its checksum area (data / 1024) after the 4 MiB header.
const ELEMENT_BYTES = DATA_OFFSET_BYTES + 65 * MiB;
const PATTERN_BYTES = 8 * MiB;
const missing = missingTools(['nbdkit', 'qemu-io', 'nbdinfo']);

/** The blocks flagged in the volume's `x-onestack:integrity` NBD meta context (1 = bad, 2 = repaired). */
async function flagged(uri: string): Promise<{ offset: number; length: number; type: number }[]> {
  const r = await runOk('nbdinfo', ['--map=x-onestack:integrity', '--json', uri], { timeoutMs: 30_000 });
  return (JSON.parse(r.stdout) as { offset: number; length: number; type: number }[]).filter((e) => e.type !== 0).map(({ offset, length, type }) => ({ offset, length, type }));
}

/** Flips `length` bytes of a leg file at data offset `at` (files.ts flipBytes). */
function flip(file: string, at: number, length: number): void {
  flipBytes(file, DATA_OFFSET_BYTES + at, length);
}

describe.skipIf(missing !== null)(`scrub of an integrity raid1 (local + nbdkit)${missing !== null ? ` (skipped: ${missing})` : ''}`, () => {
  let dir = '';
  let daemon: Daemon | null = null;
  let remote: NbdkitPeer | null = null;
  const file = (name: string): string => path.join(dir, `${name}.img`);
  const cli = (args: readonly string[]) => run(process.execPath, [CLI_MAIN, ...args, '--api', `127.0.0.1:${daemon!.apiPort}`],
    { timeoutMs: 60_000, cwd: REPO_ROOT, env: { ...process.env, ONESTACK_DATA_DIR: daemon!.dataDir } });

  beforeAll(async () => {
    dir = tempDir('scrub-integrity');
    await sparseFile(file('far'), ELEMENT_BYTES);
    remote = await startNbdkit(['file', file('far')]);
    const { configPath } = await writeConfig(dir, [{ name: 'near', sizeBytes: ELEMENT_BYTES }, { name: 'far', uri: remote.uri, options: { timeoutMs: 10_000 } }],
      // near is role 0: the plain 2-way rule would take it as the reference.
      [{ name: 'mir', layout: 'raid1', elements: ['near', 'far'], bitmapRegionKiB: 64, integrity: true }], ['cache: { readMiB: 0 }']);
    daemon = await Daemon.start({ dataDir: path.join(dir, 'data'), configPath });
    const w = await qemuIo(daemon.uri('mir'), [`write -P 0x5a 0 ${PATTERN_BYTES}`, 'flush']);
    expect(qemuIoFailed(w), explain(w)).toBe(false);
  }, 60_000);

  afterAll(async () => {
    await daemon?.stop();
    await remote?.stop();
    if (dir !== '') removeDir(dir);
  });

  it('names the remote element and its bad blocks, repairs them from the local leg, and a second scrub finds none', async () => {
    flip(file('far'), 3 * MiB + 77, 1); // one block of unit 3
    flip(file('far'), 5 * MiB + 4090, 10); // two blocks of unit 5
    expect((await readAt(file('far'), DATA_OFFSET_BYTES + 3 * MiB, 4096)).equals(Buffer.alloc(4096, 0x5a))).toBe(false);

    const check = await cli(['volume', 'scrub', 'mir', '--wait']);
    expect(check.code, explain(check)).toBe(1);
    expect(check.stdout).toMatch(/check of mir: done .* 2 units mismatched \(11 bytes differ\), element far: 3 bad blocks/);
    expect(check.stdout).not.toMatch(/element near/);
    expect(await flagged(daemon!.uri('mir'))).toEqual([{ offset: 3 * MiB, length: 4096, type: 1 }, { offset: 5 * MiB, length: 8192, type: 1 }]);

    const repair = await cli(['volume', 'scrub', 'mir', '--repair', '--wait']);
    expect(repair.code, explain(repair)).toBe(0);
    expect(repair.stdout).toMatch(/repair of mir: done .* 2 units mismatched \(11 bytes differ\), 2 repaired, element far: 3 bad blocks, 3 repaired/);
    expect(await flagged(daemon!.uri('mir'))).toEqual([{ offset: 3 * MiB, length: 4096, type: 2 }, { offset: 5 * MiB, length: 8192, type: 2 }]);

    const again = await cli(['volume', 'scrub', 'mir', '--wait', '--json']);
    expect(again.code, explain(again)).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ kind: 'check', outcome: 'done', mismatchedUnits: 0, byElement: [] });
    const text = await cli(['volume', 'scrub', 'mir', '--wait']);
    expect(text.stdout).toContain('no mismatch, checksums: 0 bad blocks');

    // The remote backing file holds the original bytes again (read raw, not through onestack).
    expect((await readAt(file('far'), DATA_OFFSET_BYTES, PATTERN_BYTES)).equals(Buffer.alloc(PATTERN_BYTES, 0x5a))).toBe(true);
    expect((await readAt(file('near'), DATA_OFFSET_BYTES, PATTERN_BYTES)).equals(Buffer.alloc(PATTERN_BYTES, 0x5a))).toBe(true);
    const status = await daemon!.status() as unknown as { volumes: { name: string; elements: { name: string; integrity?: unknown }[] }[] };
    const far = status.volumes.find((v) => v.name === 'mir')!.elements.find((e) => e.name === 'far');
    expect(far?.integrity).toEqual({ mismatches: 6, repaired: 3, unrecoverable: 0 });
    const r = await qemuIo(daemon!.uri('mir'), [`read -P 0x5a 0 ${PATTERN_BYTES}`]);
    expect(qemuIoFailed(r), explain(r)).toBe(false);
  }, 180_000);
});
