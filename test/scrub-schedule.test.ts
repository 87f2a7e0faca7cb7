// Acceptance (issue 10, item 3, "a schedule in config"): against the real daemon, a top-level
// `scrub: { every, repair: true }` scrubs an integrity raid1 by itself. A byte flipped straight in
// the role-0 leg's image (the one a plain 2-way repair would trust) is found and rewritten from the
// copy that verifies, with no command run; `status` shows when the next scrub is due; a volume
// with `scrub: false` has no schedule; after a restart the next scrub is due `every` after the
// last one (kept in the data dir), and nothing runs at once.
// ONESTACK_SCRUB_MIN_EVERY_MS (test-only) lets `every` go below one minute.
import { existsSync, readFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI_MAIN, Daemon, REPO_ROOT } from './lib/daemon.js';
import { DATA_OFFSET_BYTES, firstDifference, flipBytes, MiB, removeDir, tempDir, writeConfig } from './lib/files.js';
import { qemuIo, qemuIoFailed } from './lib/peers.js';
import { explain, missingTools, run } from './lib/proc.js';

// Room for 16 MiB of data and its checksum area after the 4 MiB header.
const ELEMENT_BYTES = DATA_OFFSET_BYTES + 17 * MiB;
const EVERY_MS = 4000;
const missing = missingTools(['qemu-io']);

interface ScheduleView {
  readonly everyMs: number;
  readonly repair: boolean;
  readonly lastFinishedMs: number | null;
  readonly nextMs: number;
}
interface VolumeView {
  readonly name: string;
  readonly scrub: { readonly kind: string; readonly outcome: string; readonly finishedMs: number; readonly byElement?: readonly { element: string; badBlocks: number; repairedBlocks: number }[] } | null;
  readonly scrubSchedule?: ScheduleView | null;
}

describe.skipIf(missing !== null)(`scheduled scrubs against the daemon${missing !== null ? ` (skipped: ${missing})` : ''}`, () => {
  let dir = '';
  let daemon: Daemon | null = null;
  let configPath = '';
  const file = (name: string): string => path.join(dir, `${name}.img`);
  const cli = (args: readonly string[]) => run(process.execPath, [CLI_MAIN, ...args, '--api', `127.0.0.1:${daemon!.apiPort}`],
    { timeoutMs: 30_000, cwd: REPO_ROOT, env: { ...process.env, ONESTACK_DATA_DIR: daemon!.dataDir } });
  const volume = async (name: string): Promise<VolumeView> => {
    const status = await daemon!.status() as unknown as { volumes: VolumeView[] };
    return status.volumes.find((v) => v.name === name)!;
  };

  beforeAll(async () => {
    dir = tempDir('scrub-schedule');
    const written = await writeConfig(dir, [{ name: 'a', sizeBytes: ELEMENT_BYTES }, { name: 'b', sizeBytes: ELEMENT_BYTES },
      { name: 'c', sizeBytes: ELEMENT_BYTES }, { name: 'd', sizeBytes: ELEMENT_BYTES }],
    [{ name: 'mir', layout: 'raid1', elements: ['a', 'b'], integrity: true }, { name: 'quiet', layout: 'raid1', elements: ['c', 'd'] }],
    // The read cache is off so nothing serves the flipped block from memory; `quiet` opts out below.
    ['cache: { readMiB: 0 }', `scrub: { every: ${EVERY_MS / 1000}s, repair: true, maxMiBPerSec: 0 }`]);
    // writeConfig has no per-volume scrub: add `scrub: false` to the second volume's line.
    configPath = written.configPath;
    const text = await readFile(configPath, 'utf8');
    await writeFile(configPath, text.replace(/(name: quiet, .*) \}/, '$1, scrub: false }'));
    daemon = await Daemon.start({ dataDir: path.join(dir, 'data'), configPath, env: { ONESTACK_SCRUB_MIN_EVERY_MS: '1000' } });
    const w = await qemuIo(daemon.uri('mir'), ['write -P 0x5a 0 8m', 'flush']);
    expect(qemuIoFailed(w), explain(w)).toBe(false);
  }, 60_000);

  afterAll(async () => {
    await daemon?.stop();
    if (dir !== '') removeDir(dir);
  });

  it('a scrub runs by itself and repairs a byte flipped in the role-0 leg; status shows the schedule', async () => {
    expect((await volume('quiet')).scrubSchedule).toBeNull();
    const before = (await volume('mir')).scrubSchedule!;
    expect(before).toMatchObject({ everyMs: EVERY_MS, repair: true });
    // Wait out a scheduled scrub that may be running now, so the flip lands between two runs.
    await new Promise((r) => setTimeout(r, 500));
    const flippedMs = Date.now();
    flipBytes(file('a'), DATA_OFFSET_BYTES + 2 * MiB + 123, 1);
    expect(await firstDifference(file('a'), file('b'), DATA_OFFSET_BYTES, 16 * MiB)).toBe(2 * MiB + 123);
    // No command: within a few periods a scheduled repair has named element a and rewritten it.
    let repaired: VolumeView | null = null;
    for (let i = 0; i < 120 && repaired === null; i++) {
      const v = await volume('mir');
      const found = v.scrub?.byElement?.find((b) => b.element === 'a');
      if (v.scrub !== null && v.scrub.finishedMs > flippedMs && found !== undefined && found.repairedBlocks > 0) repaired = v;
      else await new Promise((r) => setTimeout(r, 250));
    }
    expect(repaired, 'no scheduled scrub repaired the flipped block within 30 s').not.toBeNull();
    expect(repaired!.scrub).toMatchObject({ kind: 'repair', outcome: 'done' });
    expect(repaired!.scrub!.byElement).toEqual([{ element: 'a', badBlocks: 1, repairedBlocks: 1, unrecoverableBlocks: 0 }]);
    expect(await firstDifference(file('a'), file('b'), DATA_OFFSET_BYTES, 16 * MiB)).toBe(-1);
    const after = (await volume('mir')).scrubSchedule!;
    expect(after.lastFinishedMs).not.toBeNull();
    expect(after.nextMs).toBe(after.lastFinishedMs! + EVERY_MS);
    // The record survives a restart: it is in the data dir.
    const record = path.join(daemon!.dataDir, 'scrub-schedule.json');
    expect(existsSync(record)).toBe(true);
    expect((JSON.parse(readFileSync(record, 'utf8')) as { volumes: Record<string, { lastFinishedMs: number | null }> }).volumes.mir?.lastFinishedMs).toBeGreaterThan(flippedMs);
  });

  it('`onestack status` prints the schedule and when the next scrub is due', async () => {
    let text = '';
    for (let i = 0; i < 40; i++) {
      const r = await cli(['status']);
      expect(r.code, explain(r)).toBe(0);
      text = r.stdout;
      if (/scrub every 4s \(repair\): next scrub in [1-4]s; last finished \d{4}-/.test(text)) break;
      await new Promise((res) => setTimeout(res, 200));
    }
    expect(text).toMatch(/^ {6}scrub every 4s \(repair\): next scrub in [1-4]s; last finished \d{4}-\d\d-\d\dT/m);
    // The opted-out volume prints no schedule line.
    const quiet = text.slice(text.indexOf('quiet :'));
    expect(quiet.split('\n').slice(0, 4).join('\n')).not.toContain('scrub every');
  });

  it('a restart keeps the last finished time: the next scrub is due `every` after it, not at once', async () => {
    const last = (await volume('mir')).scrubSchedule!.lastFinishedMs!;
    await daemon!.stop();
    // Same data dir, a longer period: were the record lost, the due time would count from the restart.
    const text = await readFile(configPath, 'utf8');
    await writeFile(configPath, text.replace(/every: \d+s/, 'every: 1h'));
    daemon = await Daemon.start({ dataDir: path.join(dir, 'data'), configPath, env: { ONESTACK_SCRUB_MIN_EVERY_MS: '1000' } });
    const v = await volume('mir');
    expect(v.scrubSchedule?.lastFinishedMs).toBeGreaterThanOrEqual(last);
    expect(v.scrubSchedule?.nextMs).toBe(v.scrubSchedule!.lastFinishedMs! + 3_600_000);
    await new Promise((r) => setTimeout(r, 1500));
    expect((await volume('mir')).scrub).toBeNull(); // nothing ran since the start
  });
});
