// Acceptance (issue 11, online reshape; docs/reshape.md): with the built daemon and real peers —
// a raid5 grows from 4 to 5 elements and a raid1 becomes a raid5 while fio verify writes one
// region and qemu-io another; the rest of the volume must equal a reference file that got the
// same bytes (sha256), the new tail reads as zeroes, nbdinfo shows the new size. raid0 2→3 and
// linear + 1 likewise; a kill -9 in the middle of a reshape (steps slowed by the test seam
// ONESTACK_RESHAPE_STEP_DELAY_MS) resumes after the restart, fio --verify_only passes during and
// after, and it ends with the same sha256; a kill -9 after a backup resumes from the backup.
// Refusals (integrity, raid10, not optimal, grow/scrub while reshaping) give clear messages. A
// raid5 also grows onto an element behind nbdkit.
import { openSync, writeSync, closeSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI_MAIN, Daemon, REPO_ROOT } from './lib/daemon.js';
import { DATA_OFFSET_BYTES, MiB, randomFile, removeDir, sha256Range, sparseFile, tempDir, writeConfig, type ElementSpec, type VolumeSpec } from './lib/files.js';
import { exportSize, fio, nbdcopy, qemuIo, qemuIoFailed } from './lib/peers.js';
import { explain, missingTools, run, sleep } from './lib/proc.js';
import { startNbdkit, type NbdkitPeer } from './lib/remotes.js';

const DATA_BYTES = 32 * MiB;
const ELEMENT_BYTES = DATA_OFFSET_BYTES + DATA_BYTES;
/** fio writes [0, FIO_BYTES) of a volume; the rest is compared with the reference file. */
const FIO_BYTES = 16 * MiB;
const missing = missingTools(['fio', 'nbdcopy', 'qemu-io', 'nbdinfo', 'nbdkit']);

interface Reshape { positionBytes: number; totalBytes: number; sizeBytes: number; percent: number; state: string; backupSteps: number; error?: string; from: { layout: string; count: number }; to: { layout: string; count: number } }
interface VolumeView { name: string; layout: string; state: string; sizeBytes: number; reshape?: Reshape | null; elements: { name: string; state: string }[] }

function elements(names: readonly string[]): ElementSpec[] {
  return names.map((name) => ({ name, sizeBytes: ELEMENT_BYTES }));
}

/** fio at a bounded pace over [0, FIO_BYTES) (about 10 s of writes, then its verify pass), so the whole reshape runs under it. */
function fioArgs(uri: string): string[] {
  return ['--name=verify', '--ioengine=nbd', `--uri=${uri}`, '--rw=randwrite', '--bs=4k', '--iodepth=8', `--size=${FIO_BYTES / MiB}m`, '--rate_iops=400',
    '--verify=crc32c', '--do_verify=1', '--verify_fatal=1', '--verify_dump=0'];
}

/** Writes `len` bytes of `byte` at `off` into a plain file (the reference copy). */
function patternInto(file: string, off: number, len: number, byte: number): void {
  const fd = openSync(file, 'r+');
  try {
    writeSync(fd, Buffer.alloc(len, byte), 0, len, off);
  } finally {
    closeSync(fd);
  }
}

class Harness {
  daemon: Daemon | null = null;
  dir = '';
  constructor(readonly name: string, readonly env: NodeJS.ProcessEnv = {}) {}

  get d(): Daemon {
    if (this.daemon === null) throw new Error('daemon not started');
    return this.daemon;
  }

  async start(names: readonly string[], volumes: readonly VolumeSpec[] = [], remotes: readonly ElementSpec[] = [], dir?: string): Promise<void> {
    this.dir = dir ?? tempDir(this.name);
    // Config-file volumes: linear over z0 and `volumes`; the tests create the rest at run time.
    const { configPath } = await writeConfig(this.dir, [...elements([...names, 'z0']), ...remotes], [{ name: 'lin', layout: 'linear', elements: ['z0'] }, ...volumes], ['rebuild: { maxMiBPerSec: 0 }']);
    this.daemon = await Daemon.start({ dataDir: path.join(this.dir, 'data'), configPath, env: this.env });
  }

  async restart(env: NodeJS.ProcessEnv = {}): Promise<void> {
    this.daemon = await Daemon.start({ dataDir: this.d.dataDir, configPath: path.join(this.dir, 'onestack.yaml'), nbdPort: this.d.nbdPort, apiPort: this.d.apiPort, env });
  }

  cli(args: readonly string[]) {
    return run(process.execPath, [CLI_MAIN, ...args, '--api', `127.0.0.1:${this.d.apiPort}`], { timeoutMs: 60_000, cwd: REPO_ROOT, env: { ...process.env, ONESTACK_DATA_DIR: this.d.dataDir } });
  }

  async volume(name: string): Promise<VolumeView> {
    const v = ((await this.d.status()).volumes as unknown as VolumeView[]).find((x) => x.name === name);
    if (v === undefined) throw new Error(`no volume ${name}`);
    return v;
  }

  async create(name: string, layout: string, members: readonly string[]): Promise<void> {
    const r = await this.cli(['volume', 'create', name, '--layout', layout, '--element', members.join(','), '--chunk-kib', '64']);
    expect(r.code, explain(r)).toBe(0);
  }

  /** A random reference file of the volume's size, copied onto the volume with nbdcopy. */
  async fill(name: string): Promise<string> {
    const size = (await this.volume(name)).sizeBytes;
    const ref = path.join(this.dir, `${name}.ref`);
    await randomFile(ref, size);
    const c = await nbdcopy(ref, this.d.uri(name), ['--flush']);
    expect(c.code, explain(c)).toBe(0);
    return ref;
  }

  async untilReshaped(name: string, timeoutMs = 150_000): Promise<VolumeView> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = await this.volume(name);
      if ((v.reshape ?? null) === null) return v;
      if (v.reshape?.error !== undefined) throw new Error(`reshape stopped: ${v.reshape.error}\n${this.d.logs()}`);
      if (Date.now() > deadline) throw new Error(`reshape of ${name} not done: ${JSON.stringify(v.reshape)}\n${this.d.logs()}`);
      await sleep(200);
    }
  }

  /** The volume read out with nbdcopy; [from, C0) must equal the reference, [C0, C1) zeroes. */
  async expectMatches(name: string, ref: string, fromBytes: number, c0: number, c1: number): Promise<void> {
    const out = path.join(this.dir, `${name}.out`);
    const c = await nbdcopy(this.d.uri(name), out);
    expect(c.code, explain(c)).toBe(0);
    const [got, want] = await Promise.all([sha256Range(out, fromBytes, c0 - fromBytes), sha256Range(ref, fromBytes, c0 - fromBytes)]);
    expect(got, `sha256 of [${fromBytes}, ${c0}) of ${name} against the reference`).toBe(want);
    const zero = path.join(this.dir, 'zero.ref');
    await run('truncate', ['-s', String(c1 - c0), zero]);
    expect(await sha256Range(out, c0, c1 - c0), 'the new tail reads as zeroes').toBe(await sha256Range(zero, 0, c1 - c0));
  }

  async stop(): Promise<void> {
    await this.daemon?.stop();
    if (this.dir !== '') removeDir(this.dir);
  }
}

/** Runs `reshape` under fio verify, with a qemu-io pattern written mid-way into the reference region too. */
async function underFio(h: Harness, name: string, ref: string, reshape: () => Promise<void>): Promise<void> {
  let fioDone = false;
  const job = fio(fioArgs(h.d.uri(name)), h.dir).finally(() => { fioDone = true; });
  await sleep(1000);
  await reshape();
  const off = FIO_BYTES + 3 * MiB + 4096;
  const w = await qemuIo(h.d.uri(name), [`write -P 0x5a ${off} 1M`, 'flush']);
  expect(qemuIoFailed(w), explain(w)).toBe(false);
  patternInto(ref, off, MiB, 0x5a);
  await h.untilReshaped(name);
  expect(fioDone, 'fio ran during the whole reshape').toBe(false);
  const { result, jobs } = await job;
  expect(result.code, explain(result)).toBe(0);
  expect(jobs[0]?.error, result.stdout).toBe(0);
  expect(jobs[0]?.write.io_bytes, 'fio wrote its whole size').toBe(FIO_BYTES);
}

/** fio reads its pattern back after the reshape (--verify_only). */
async function fioVerifyOnly(h: Harness, name: string): Promise<void> {
  const args = fioArgs(h.d.uri(name)).filter((a) => !a.startsWith('--rate_iops') && !a.startsWith('--do_verify'));
  const checked = await fio([...args, '--do_verify=1', '--verify_only'], h.dir);
  expect(checked.result.code, explain(checked.result)).toBe(0);
  expect(checked.jobs[0]?.error, checked.result.stdout).toBe(0);
}

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
    let seen: Reshape | null | undefined = null;
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
    await h.expectMatches('r5', ref, FIO_BYTES, c0, c1);
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
    await h.expectMatches('m', ref, FIO_BYTES, c0, c1);
  }, 240_000);

  it('raid0 2→3 keeps every byte and grows by one element', async () => {
    await h.create('s', 'raid0', ['s0', 's1']);
    const ref = await h.fill('s');
    const r = await h.cli(['volume', 'reshape', 's', '--add', 's2', '--watch']);
    expect(r.code, explain(r)).toBe(0);
    expect(r.stdout).toMatch(/volume s: reshaped: raid0, 3 elements/);
    const v = await h.untilReshaped('s');
    expect(v.sizeBytes).toBe(3 * DATA_BYTES);
    await h.expectMatches('s', ref, 0, 2 * DATA_BYTES, 3 * DATA_BYTES);
  }, 120_000);

  it('linear + 1 (a config-file volume): the size grows at once, no data moves', async () => {
    const ref = await h.fill('lin');
    const r = await h.cli(['volume', 'reshape', 'lin', '--add', 'z1']);
    expect(r.code, explain(r)).toBe(0);
    expect(r.stdout).toMatch(/volume lin: linear, 2 elements, 64.00 MiB/);
    expect((await h.volume('lin')).reshape ?? null).toBeNull();
    expect(await exportSize(h.d.uri('lin'))).toBe(2 * DATA_BYTES);
    await h.expectMatches('lin', ref, 0, DATA_BYTES, 2 * DATA_BYTES);
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
    // fio writes and verifies its region while the copy runs (a kill -9 would cut its connection:
    // it finishes first, and verifies its pattern again after the crash).
    const args = fioArgs(h.d.uri('k')).filter((a) => !a.startsWith('--rate_iops'));
    const laid = await fio(args, h.dir);
    expect(laid.result.code, explain(laid.result)).toBe(0);
    expect(laid.jobs[0]?.error, laid.result.stdout).toBe(0);
    const deadline = Date.now() + 60_000;
    let v = await h.volume('k');
    while ((v.reshape?.percent ?? 0) < 20 && Date.now() < deadline) {
      await sleep(100);
      v = await h.volume('k');
    }
    expect(v.reshape?.percent, 'the reshape got going').toBeGreaterThanOrEqual(20);
    expect(v.reshape?.percent, 'and is not done').toBeLessThan(100);
    const scrub = await h.cli(['volume', 'scrub', 'k']);
    expect(scrub.code).toBe(1);
    expect(scrub.stderr).toMatch(/a reshape runs/);
    const before = v.reshape!.positionBytes;
    await h.d.crash();
    await h.restart(h.env);
    const resumed = await h.volume('k');
    expect(resumed.sizeBytes, 'clients see the old size until it finishes').toBe(c0);
    if (resumed.reshape !== null && resumed.reshape !== undefined) expect(resumed.reshape.positionBytes).toBeGreaterThanOrEqual(before);
    expect(h.d.stderr + h.d.stdout).toMatch(/resuming its reshape/);
    await fioVerifyOnly(h, 'k'); // while the resumed copy runs
    const done = await h.untilReshaped('k');
    expect(done.sizeBytes).toBe(c1);
    expect(done.elements.map((e) => e.state)).toEqual(['active', 'active', 'active', 'active', 'active']);
    expect(await exportSize(h.d.uri('k'))).toBe(c1);
    await fioVerifyOnly(h, 'k');
    await h.expectMatches('k', ref, FIO_BYTES, c0, c1);
  }, 240_000);

  it('a config-file raid1 → raid5: kill -9 mid-way, the restart (config still says raid1) resumes from the state file and finishes', async () => {
    const ref = await h.fill('cm');
    const r = await h.cli(['volume', 'reshape', 'cm', '--add', 'c2']);
    expect(r.code, explain(r)).toBe(0);
    const deadline = Date.now() + 60_000;
    let v = await h.volume('cm');
    while ((v.reshape?.percent ?? 0) < 25 && Date.now() < deadline) {
      await sleep(50);
      v = await h.volume('cm');
    }
    expect(v.reshape?.percent, 'mid-way').toBeLessThan(100);
    await h.d.crash();
    await h.restart();
    const mid = await h.volume('cm');
    expect(mid.layout, 'the state file records the new layout').toBe('raid5');
    const done = await h.untilReshaped('cm');
    expect(done.layout).toBe('raid5');
    expect(done.elements.map((e) => [e.name, e.state])).toEqual([['c0', 'active'], ['c1', 'active'], ['c2', 'active']]);
    expect(await exportSize(h.d.uri('cm'))).toBe(2 * DATA_BYTES);
    await h.expectMatches('cm', ref, 0, DATA_BYTES, 2 * DATA_BYTES);
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
    await h.expectMatches('b', ref, 0, c0, c1);
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
    await h.expectMatches('nv', ref, 0, 2 * DATA_BYTES, 3 * DATA_BYTES);
  }, 120_000);
});

