// Online reshape under faults (docs/reshape.md "Robustness"), with the built daemon and real peers:
// - linear + 1 killed (-9) between its first superblocks and its state file (rolled back: the old
//   membership, every byte), and between the state file and its final superblocks (the restart
//   finishes it); the test seam ONESTACK_RESHAPE_HOLD_AT/_MS holds the daemon at each point;
// - a raid5 3→4 killed between the finish's final superblock writes: the restart finishes it;
// - an element behind nbdkit's error filter fails where the backups go (raid5 → raid6, a backup every
//   row): the job pauses with the error, `volume reshape --resume` starts it again at once, it retries
//   by itself once the element answers again, the leg's return waits for the finish, and
//   afterwards the leg comes back, is rebuilt, and the sha256 equals the reference.
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rmSync, writeFileSync } from 'node:fs';
import { MiB, sparseFile, tempDir } from './lib/files.js';
import { exportSize, qemuIo, qemuIoFailed } from './lib/peers.js';
import { explain, missingTools } from './lib/proc.js';
import { startNbdkit, type NbdkitPeer } from './lib/remotes.js';
import { DATA_BYTES, ELEMENT_BYTES, ReshapeHarness, patternInto } from './lib/reshape-harness.js';

const missing = missingTools(['nbdcopy', 'nbdinfo', 'nbdkit', 'qemu-io']);

const hold = (at: string): NodeJS.ProcessEnv => ({ ONESTACK_RESHAPE_HOLD_AT: at, ONESTACK_RESHAPE_HOLD_MS: '30000' });

describe.skipIf(missing !== null)(`reshape crash windows${missing !== null ? ` (skipped: ${missing})` : ''}`, () => {
  const h = new ReshapeHarness('reshape-faults', hold('linear-superblocks'));
  beforeAll(() => h.start(['z1', 'f0', 'f1', 'f2', 'f3']), 60_000);
  afterAll(() => h.stop());

  it('linear + 1, kill -9 after its first superblocks (rolled back), then after its state file (finished by the restart)', async () => {
    const ref = await h.fill('lin');
    const first = h.cli(['volume', 'reshape', 'lin', '--add', 'z1']);
    await h.untilLog(/holding 30000 ms at linear-superblocks/);
    await h.d.crash();
    await first;
    await h.restart(hold('linear-state'));
    const back = await h.volume('lin');
    expect(back.elements.map((e) => e.name), 'the state file was not saved: the start is rolled back').toEqual(['z0']);
    expect(back.sizeBytes).toBe(DATA_BYTES);
    expect(back.reshape ?? null).toBeNull();
    await h.expectMatches('lin', ref, DATA_BYTES, DATA_BYTES);
    // The element the abandoned start named may be taken again.
    const second = h.cli(['volume', 'reshape', 'lin', '--add', 'z1']);
    await h.untilLog(/holding 30000 ms at linear-state/);
    await h.d.crash();
    await second;
    await h.restart();
    const done = await h.until('lin', 'the append to finish', (v) => (v.reshape ?? null) === null);
    expect(h.d.stdout + h.d.stderr).toMatch(/linear append finished after a restart/);
    expect(done.elements.map((e) => [e.name, e.state])).toEqual([['z0', 'active'], ['z1', 'active']]);
    expect(done.sizeBytes).toBe(2 * DATA_BYTES);
    expect(await exportSize(h.d.uri('lin'))).toBe(2 * DATA_BYTES);
    await h.expectMatches('lin', ref, DATA_BYTES, 2 * DATA_BYTES);
    await h.d.stop();
    await h.restart();
    expect(await h.volume('lin')).toMatchObject({ state: 'optimal', sizeBytes: 2 * DATA_BYTES, elements: [{ name: 'z0' }, { name: 'z1' }] });
  }, 240_000);

  it('raid5 3→4, kill -9 between the final superblock writes of the finish: the restart finishes it, sha256 equals the reference', async () => {
    await h.d.stop();
    await h.restart(hold('finish-superblocks'));
    await h.create('fv', 'raid5', ['f0', 'f1', 'f2']);
    const ref = await h.fill('fv');
    const r = await h.cli(['volume', 'reshape', 'fv', '--add', 'f3']);
    expect(r.code, explain(r)).toBe(0);
    await h.untilLog(/holding 30000 ms at finish-superblocks/);
    expect((await h.volume('fv')).reshape?.state, 'held inside the finish').toBe('finishing');
    await h.d.crash();
    await h.restart();
    const done = await h.until('fv', 'the finish to run again', (v) => (v.reshape ?? null) === null || v.reshape?.error !== undefined);
    expect(done.reshape ?? null, JSON.stringify(done.reshape)).toBeNull();
    expect(done).toMatchObject({ layout: 'raid5', state: 'optimal', sizeBytes: 3 * DATA_BYTES });
    expect(done.elements.map((e) => e.name)).toEqual(['f0', 'f1', 'f2', 'f3']);
    expect(await exportSize(h.d.uri('fv'))).toBe(3 * DATA_BYTES);
    await h.expectMatches('fv', ref, 2 * DATA_BYTES, 3 * DATA_BYTES);
    await h.d.stop();
    await h.restart();
    expect(await h.volume('fv')).toMatchObject({ state: 'optimal', sizeBytes: 3 * DATA_BYTES });
    await h.expectMatches('fv', ref, 2 * DATA_BYTES, 3 * DATA_BYTES);
  }, 240_000);
});

describe.skipIf(missing !== null)(`reshape with a failing backup element${missing !== null ? ` (skipped: ${missing})` : ''}`, () => {
  // Slow steps so the fault lands mid-way; a short first retry so the automatic one shows.
  const h = new ReshapeHarness('reshape-faulty', { ONESTACK_RESHAPE_STEP_DELAY_MS: '20', ONESTACK_RESHAPE_RETRY_MS: '2000' });
  let remote: NbdkitPeer | null = null;
  let trigger = '';
  beforeAll(async () => {
    const dir = tempDir('reshape-faulty');
    await sparseFile(path.join(dir, 'remote.img'), ELEMENT_BYTES);
    trigger = path.join(dir, 'fail-now');
    // nbdkit's error filter fails every request while the trigger file exists.
    remote = await startNbdkit(['--filter=error', 'file', path.join(dir, 'remote.img'), 'error-rate=100%', `error-file=${trigger}`]);
    await h.start(['g1', 'g2', 'g3', 'g4'], [], [{ name: 'gr', uri: remote.uri, options: { timeoutMs: 5000 } }], dir);
  }, 60_000);
  afterAll(async () => {
    await h.stop();
    await remote?.stop();
  });

  it('raid5 4→raid6 5, role 0 behind nbdkit fails: paused with the error, --resume, automatic retry once it answers, its return waits for the finish', async () => {
    await h.create('gv', 'raid5', ['gr', 'g1', 'g2', 'g3']);
    const c0 = 3 * DATA_BYTES;
    const ref = await h.fill('gv');
    const r = await h.cli(['volume', 'reshape', 'gv', '--add', 'g4', '--layout', 'raid6', '--max-mib-per-sec', '8']);
    expect(r.code, explain(r)).toBe(0);
    await h.until('gv', 'the copy to get going', (v) => (v.reshape?.positionBytes ?? 0) > 0);
    writeFileSync(trigger, '');
    // A client write across every role (far above the position) fails gr in the data path; the volume goes on degraded.
    const off = c0 - 2 * MiB;
    const w = await qemuIo(h.d.uri('gv'), [`write -P 0x5a ${off} 1M`, 'flush']);
    expect(qemuIoFailed(w), explain(w)).toBe(false);
    patternInto(ref, off, MiB, 0x5a);
    // Every row is backed up in role 0's backup area (raid5 4 → raid6 5 keeps d = 3).
    const paused = await h.until('gv', 'the job to stop on the error', (v) => v.reshape?.state === 'paused');
    expect(paused.reshape?.error, 'the error is shown').toMatch(/gr|EIO/);
    expect(paused.elements.find((e) => e.name === 'gr')?.state).not.toBe('active');
    expect(paused.reshape?.retryAtMs, 'a retry is planned').toBeGreaterThan(0);
    expect(paused.reshape?.maxMiBPerSec).toBe(8);
    const again = await h.cli(['volume', 'reshape', 'gv', '--resume']);
    expect(again.code, explain(again)).toBe(0);
    await h.untilLog(/reshape resumed on request/);
    await h.until('gv', 'the resumed job to stop again (the element still fails)', (v) => v.reshape?.state === 'paused');
    const watch = await h.cli(['volume', 'reshape', 'gv', '--resume', '--add', 'g4']);
    expect(watch.code, 'resume takes no --add').toBe(2);
    rmSync(trigger);
    const before = (await h.volume('gv')).reshape!.positionBytes;
    const moving = await h.until('gv', 'the automatic retry to move on', (v) => (v.reshape?.positionBytes ?? c0) > before && v.reshape?.state === 'running', 60_000);
    expect(h.d.stdout + h.d.stderr).toMatch(/reshape retry \d+ at/);
    // The element answers again, but a leg's return waits for the finish.
    expect(moving.elements.find((e) => e.name === 'gr')?.state, 'gr stays out while the volume reshapes').not.toBe('active');
    expect(h.d.stdout + h.d.stderr).toMatch(/volume gv: gr failed; a hot spare or its return waits for the reshape to finish/);
    expect(moving.reshape?.waiting).toEqual(['gr failed: a hot spare or its return waits for the reshape to finish']);
    const done = await h.until('gv', 'the reshape to finish', (v) => (v.reshape ?? null) === null || (v.reshape?.error !== undefined && v.reshape.retryAtMs === undefined), 180_000);
    expect(done.reshape ?? null, JSON.stringify(done.reshape)).toBeNull();
    expect(done.layout).toBe('raid6');
    const back = await h.until('gv', 'gr to come back and be rebuilt', (v) => v.state === 'optimal', 120_000);
    expect(back.elements.map((e) => [e.name, e.state])).toEqual([['gr', 'active'], ['g1', 'active'], ['g2', 'active'], ['g3', 'active'], ['g4', 'active']]);
    expect(back.sizeBytes).toBe(c0);
    await h.expectMatches('gv', ref, c0, c0);
  }, 360_000);
});
