// Acceptance (issue 11, online reshape; docs/reshape.md): with the built daemon and real peers —
// a raid5 grows from 4 to 5 elements and a raid1 becomes a raid5 while fio verify writes one
// region and qemu-io another; the rest of the volume must equal a reference file that got the
// same bytes (sha256), the new tail reads as zeroes, nbdinfo shows the new size. raid0 2→3 and
// linear + 1 likewise; a kill -9 in the middle of a reshape (steps slowed by the test seam
// ONESTACK_RESHAPE_STEP_DELAY_MS) resumes after the restart, fio --verify_only passes during and
// after, and it ends with the same sha256; a kill -9 after a backup resumes from the backup.
// Refusals (integrity, raid10, not optimal, grow/scrub while reshaping) give clear messages. A
// raid5 also grows onto an element behind nbdkit.
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DATA_OFFSET_BYTES, sparseFile, tempDir } from './lib/files.js';
import { exportSize } from './lib/peers.js';
import { explain, missingTools, sleep } from './lib/proc.js';
import { startNbdkit, type NbdkitPeer } from './lib/remotes.js';
import { DATA_BYTES, ELEMENT_BYTES, FIO_BYTES, ReshapeHarness as Harness, crashAndResume, fioThenMidReshape, fioVerifyOnly, patternInto, underFio, type ReshapeView } from './lib/reshape-harness.js';

const missing = missingTools(['fio', 'nbdcopy', 'qemu-io', 'nbdinfo', 'nbdkit']);

describe.skipIf(missing !== null)(`online reshape under fio verify${missing !== null ? ` (skipped: ${missing})` : ''}`, () => {
  const h = new Harness('reshape');
  beforeAll(async () => {
    await h.start(['r0', 'r1', 'r2', 'r3', 'r4', 'm0', 'm1', 'm2', 's0', 's1', 's2', 'z1', 'i0', 'i1', 'i2', 'i3', 't0', 't1', 't2', 't3', 'x0', 'x1', 'x2', 'x3', 'x4']);
  }, 60_000);
  afterAll(() => h.stop());

  it('raid5 4→5 under fio verify: fio clean, the rest equals the reference, new tail zero, nbdinfo shows the new size', async () => {
    await h.create('r5', 'raid5', ['r0', 'r1', 'r2', 'r3']);
    const c0 = 3 * DATA_BYTES;
    const c1 = 4 * DATA_BYTES;
    expect((await h.volume('r5')).sizeBytes).toBe(c0);
    const ref = await h.fill('r5');
    let seen: ReshapeView | null | undefined = null;
    await underFio(h, 'r5', ref, async () => {
      const r = await h.cli(['volume', 'reshape', 'r5', '--add', 'r4', '--max-mib-per-sec', '24']);
      expect(r.code, explain(r)).toBe(0);
      expect(r.stdout).toMatch(/volume r5: reshape raid5 4→5: \d+% \(.* of 96 MiB\), \d+ MiB\/s/);
      seen = (await h.volume('r5')).reshape;
      const text = await h.cli(['status']);
      expect(text.stdout).toMatch(/reshape raid5 4→5: \d+% \(.*of 96 MiB\), \d+ MiB\/s/);
      const grow = await h.cli(['volume', 'grow', 'r5', '--size', String(c1)]);
      expect(grow.code).toBe(1);
      expect(grow.stderr).toMatch(/a reshape runs: a grow is refused until it finishes/);
    });
    expect(seen, 'status showed the reshape while it ran').toMatchObject({ from: { layout: 'raid5', count: 4 }, to: { layout: 'raid5', count: 5 }, totalBytes: c0, sizeBytes: c1 });
    const v = await h.untilReshaped('r5');
    expect(v.elements.map((e) => [e.name, e.state])).toEqual(['r0', 'r1', 'r2', 'r3', 'r4'].map((n) => [n, 'active']));
    expect(v.sizeBytes).toBe(c1);
    expect(await exportSize(h.d.uri('r5')), 'a new nbdinfo connection sees the new size').toBe(c1);
    await fioVerifyOnly(h, 'r5');
    await h.expectMatches('r5', ref, c0, c1, FIO_BYTES);
  }, 240_000);

  it('raid1 → raid5 (2 legs + 1 added) under fio verify: fio clean, the rest equals the reference, new size', async () => {
    await h.create('m', 'raid1', ['m0', 'm1']);
    const c0 = DATA_BYTES;
    const c1 = 2 * DATA_BYTES;
    const ref = await h.fill('m');
    await underFio(h, 'm', ref, async () => {
      const r = await h.cli(['volume', 'reshape', 'm', '--add', 'm2', '--max-mib-per-sec', '8']);
      expect(r.code, explain(r)).toBe(0);
      expect(r.stdout).toMatch(/reshape raid1 2→raid5 3/);
    });
    const v = await h.untilReshaped('m');
    expect(v.layout).toBe('raid5');
    expect(v.state).toBe('optimal');
    expect(v.sizeBytes).toBe(c1);
    expect(await exportSize(h.d.uri('m'))).toBe(c1);
    await fioVerifyOnly(h, 'm');
    await h.expectMatches('m', ref, c0, c1, FIO_BYTES);
  }, 240_000);

  it('raid0 2→3 keeps every byte and grows by one element', async () => {
    await h.create('s', 'raid0', ['s0', 's1']);
    const ref = await h.fill('s');
    const r = await h.cli(['volume', 'reshape', 's', '--add', 's2', '--watch']);
    expect(r.code, explain(r)).toBe(0);
    expect(r.stdout).toMatch(/volume s: reshaped: raid0, 3 elements/);
    const v = await h.untilReshaped('s');
    expect(v.sizeBytes).toBe(3 * DATA_BYTES);
    await h.expectMatches('s', ref, 2 * DATA_BYTES, 3 * DATA_BYTES);
  }, 120_000);

  it('linear + 1 (a config-file volume): the size grows at once, no data moves', async () => {
    const ref = await h.fill('lin');
    const r = await h.cli(['volume', 'reshape', 'lin', '--add', 'z1']);
    expect(r.code, explain(r)).toBe(0);
    expect(r.stdout).toMatch(/volume lin: linear, 2 elements, 64.00 MiB/);
    expect((await h.volume('lin')).reshape ?? null).toBeNull();
    expect(await exportSize(h.d.uri('lin'))).toBe(2 * DATA_BYTES);
    await h.expectMatches('lin', ref, DATA_BYTES, 2 * DATA_BYTES);
  }, 120_000);

  it('refusals: integrity, raid10, not optimal, add-member on raid5; each message says why', async () => {
    const integ = await h.cli(['volume', 'create', 'iv', '--layout', 'raid5', '--element', 'i0,i1,i2', '--integrity']);
    expect(integ.code, explain(integ)).toBe(0);
    const a = await h.cli(['volume', 'reshape', 'iv', '--add', 'i3']);
    expect(a.code, explain(a)).not.toBe(0);
    expect(a.stderr).toMatch(/reshaping a volume with integrity is not supported yet/);
    await h.create('t', 'raid10', ['t0', 't1', 't2', 't3']);
    const b = await h.cli(['volume', 'reshape', 't', '--add', 'x4']);
    expect(b.code, explain(b)).not.toBe(0);
    expect(b.stderr).toMatch(/raid10 → raid10 needs an even number of elements/);
    await h.create('deg', 'raid5', ['x0', 'x1', 'x2']);
    const d = await h.cli(['volume', 'add-member', 'deg', 'x4']);
    expect(d.code, explain(d)).not.toBe(0);
    expect(d.stderr).toMatch(/onestack volume reshape NAME --add ELEMENT/);
    const e = await h.cli(['volume', 'reshape', 'deg', '--add', 'x0']);
    expect(e.code, explain(e)).not.toBe(0);
    expect(e.stderr).toMatch(/element x0 is already a member/);
    const f = await h.cli(['volume', 'reshape', 'deg', '--add', 'x3', '--layout', 'raid0']);
    expect(f.code, explain(f)).not.toBe(0);
    expect(f.stderr).toMatch(/raid5 → raid0 is not supported yet/);
    const failed = await h.cli(['element', 'fail', 'x2']);
    expect(failed.code, explain(failed)).toBe(0);
    const c = await h.cli(['volume', 'reshape', 'deg', '--add', 'x3']);
    expect(c.code, explain(c)).not.toBe(0);
    expect(c.stderr).toMatch(/a reshape needs the volume optimal/);
  }, 120_000);
});

describe.skipIf(missing !== null)(`kill -9 in the middle of a reshape${missing !== null ? ` (skipped: ${missing})` : ''}`, () => {
  const h = new Harness('reshape-crash', { ONESTACK_RESHAPE_STEP_DELAY_MS: '300' });
  beforeAll(() => h.start(['k0', 'k1', 'k2', 'k3', 'k4', 'c0', 'c1', 'c2'], [{ name: 'cm', layout: 'raid1', elements: ['c0', 'c1'], chunkKiB: 64 }]), 60_000);
  afterAll(() => h.stop());

  it('raid5 4→5 under fio verify, kill -9 mid-way: the restart resumes and finishes; fio --verify_only passes during and after; sha256 equals the reference; nbdinfo shows the new size', async () => {
    await h.create('k', 'raid5', ['k0', 'k1', 'k2', 'k3']);
    const c0 = 3 * DATA_BYTES;
    const c1 = 4 * DATA_BYTES;
    const ref = await h.fill('k');
    const r = await h.cli(['volume', 'reshape', 'k', '--add', 'k4']);
    expect(r.code, explain(r)).toBe(0);
    const v = await fioThenMidReshape(h, 'k');
    const scrub = await h.cli(['volume', 'scrub', 'k']);
    expect(scrub.code).toBe(1);
    expect(scrub.stderr).toMatch(/a reshape runs/);
    await crashAndResume(h, 'k', v, c0);
    const done = await h.untilReshaped('k');
    expect(done.sizeBytes).toBe(c1);
    expect(done.elements.map((e) => e.state)).toEqual(['active', 'active', 'active', 'active', 'active']);
    expect(await exportSize(h.d.uri('k'))).toBe(c1);
    await fioVerifyOnly(h, 'k');
    await h.expectMatches('k', ref, c0, c1, FIO_BYTES);
  }, 240_000);

  it('a config-file raid1 → raid5: kill -9 mid-way, the restart (config still says raid1) resumes from the state file and finishes', async () => {
    const ref = await h.fill('cm');
    const r = await h.cli(['volume', 'reshape', 'cm', '--add', 'c2']);
    expect(r.code, explain(r)).toBe(0);
    const v = await h.untilPercent('cm', 25);
    expect(v.reshape?.percent, 'mid-way').toBeLessThan(100);
    await h.d.crash();
    await h.restart();
    const mid = await h.volume('cm');
    expect(mid.layout, 'the state file records the new layout').toBe('raid5');
    const done = await h.untilReshaped('cm');
    expect(done.layout).toBe('raid5');
    expect(done.elements.map((e) => [e.name, e.state])).toEqual([['c0', 'active'], ['c1', 'active'], ['c2', 'active']]);
    expect(await exportSize(h.d.uri('cm'))).toBe(2 * DATA_BYTES);
    await h.expectMatches('cm', ref, DATA_BYTES, 2 * DATA_BYTES);
    await h.d.stop();
    await h.restart();
    expect(await h.volume('cm')).toMatchObject({ layout: 'raid5', state: 'optimal', sizeBytes: 2 * DATA_BYTES });
  }, 240_000);
});

describe.skipIf(missing !== null)(`kill -9 after a step saved its backup${missing !== null ? ` (skipped: ${missing})` : ''}`, () => {
  // The seam holds the first step after its backup is named in the superblocks, before any new row is written.
  const h = new Harness('reshape-backup', { ONESTACK_RESHAPE_BACKUP_DELAY_MS: '5000' });
  beforeAll(() => h.start(['b0', 'b1', 'b2', 'b3', 'b4']), 60_000);
  afterAll(() => h.stop());

  it('raid5 4→5: the resumed step takes its first bytes from the backup (the old rows there are torn), sha256 equals the reference', async () => {
    await h.create('b', 'raid5', ['b0', 'b1', 'b2', 'b3']);
    const c0 = 3 * DATA_BYTES;
    const c1 = 4 * DATA_BYTES;
    const ref = await h.fill('b');
    const r = await h.cli(['volume', 'reshape', 'b', '--add', 'b4']);
    expect(r.code, explain(r)).toBe(0);
    const deadline = Date.now() + 30_000;
    let v = await h.volume('b');
    while ((v.reshape?.backupSteps ?? 0) < 1 && Date.now() < deadline) {
      await sleep(50);
      v = await h.volume('b');
    }
    expect(v.reshape, 'the first step saved its backup').toMatchObject({ backupSteps: 1, positionBytes: 0 });
    await h.d.crash();
    // A crash while new row 0 was being written: row 0 of every element torn (old row 0 with it).
    for (const n of ['b0', 'b1', 'b2', 'b3', 'b4']) patternInto(path.join(h.dir, `${n}.img`), DATA_OFFSET_BYTES, 64 * 1024, 0xee);
    await h.restart();
    const done = await h.untilReshaped('b');
    expect(h.d.stdout + h.d.stderr).toMatch(/reshape resumes at 0 from its backup \(196608 bytes\)/);
    expect(done.sizeBytes).toBe(c1);
    await h.expectMatches('b', ref, c0, c1);
  }, 240_000);
});

describe.skipIf(missing !== null)(`reshape onto an nbdkit element${missing !== null ? ` (skipped: ${missing})` : ''}`, () => {
  const h = new Harness('reshape-remote');
  let remote: NbdkitPeer | null = null;
  beforeAll(async () => {
    const dir = tempDir('reshape-remote');
    await sparseFile(path.join(dir, 'remote.img'), ELEMENT_BYTES);
    remote = await startNbdkit(['file', path.join(dir, 'remote.img')]);
    await h.start(['n0', 'n1', 'n2'], [], [{ name: 'nr', uri: `nbd://127.0.0.1:${remote.port}/`, options: { timeoutMs: 5000 } }], dir);
  }, 60_000);
  afterAll(async () => {
    await h.stop();
    await remote?.stop();
  });

  it('raid5 3→4 with the new element behind nbdkit (its journal header and new rows go over NBD): every byte kept', async () => {
    await h.create('nv', 'raid5', ['n0', 'n1', 'n2']);
    const ref = await h.fill('nv');
    const r = await h.cli(['volume', 'reshape', 'nv', '--add', 'nr', '--watch']);
    expect(r.code, explain(r)).toBe(0);
    const v = await h.untilReshaped('nv');
    expect(v.elements.map((e) => [e.name, e.state])).toEqual([['n0', 'active'], ['n1', 'active'], ['n2', 'active'], ['nr', 'active']]);
    expect(await exportSize(h.d.uri('nv'))).toBe(3 * DATA_BYTES);
    await h.expectMatches('nv', ref, 2 * DATA_BYTES, 3 * DATA_BYTES);
  }, 120_000);
});

