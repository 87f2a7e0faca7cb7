// raid10 through the reshape machinery (issue 11 item 3; docs/reshape.md "raid10"): with the built
// daemon and real peers — a raid10 (near-2) gains a mirror pair (4 → 6) while fio verify writes one
// region and qemu-io another; the rest of the volume must equal a reference file with the same
// bytes (sha256), the new tail reads as zeroes, nbdinfo shows the new size, and the two legs of
// every pair hold the same data area byte for byte. A raid1 of 2 legs becomes a raid10 of 4. A
// kill -9 in the middle (steps slowed by ONESTACK_RESHAPE_STEP_DELAY_MS) resumes after the restart,
// fio --verify_only passes during and after, and it ends with the same sha256. Refusals say why.
import { openSync, writeSync, closeSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI_MAIN, Daemon, REPO_ROOT } from './lib/daemon.js';
import { DATA_OFFSET_BYTES, MiB, randomFile, readAt, removeDir, sha256Range, tempDir, writeConfig, type ElementSpec } from './lib/files.js';
import { exportSize, fio, nbdcopy, qemuIo, qemuIoFailed } from './lib/peers.js';
import { explain, missingTools, run, sleep } from './lib/proc.js';

const DATA_BYTES = 32 * MiB;
const ELEMENT_BYTES = DATA_OFFSET_BYTES + DATA_BYTES;
/** fio writes [0, FIO_BYTES) of a volume; the rest is compared with the reference file. */
const FIO_BYTES = 16 * MiB;
const missing = missingTools(['fio', 'nbdcopy', 'qemu-io', 'nbdinfo']);

interface Reshape { positionBytes: number; totalBytes: number; sizeBytes: number; percent: number; state: string; backupSteps: number; error?: string; from: { layout: string; count: number }; to: { layout: string; count: number } }
interface VolumeView { name: string; layout: string; state: string; sizeBytes: number; reshape?: Reshape | null; elements: { name: string; state: string }[] }

function fioArgs(uri: string): string[] {
  return ['--name=verify', '--ioengine=nbd', `--uri=${uri}`, '--rw=randwrite', '--bs=4k', '--iodepth=8', `--size=${FIO_BYTES / MiB}m`, '--rate_iops=400',
    '--verify=crc32c', '--do_verify=1', '--verify_fatal=1', '--verify_dump=0'];
}

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

  async start(names: readonly string[]): Promise<void> {
    this.dir = tempDir(this.name);
    const specs: ElementSpec[] = [...names, 'z0'].map((name) => ({ name, sizeBytes: ELEMENT_BYTES }));
    // The config names one volume (a config needs one); the tests create theirs at run time.
    const { configPath } = await writeConfig(this.dir, specs, [{ name: 'lin', layout: 'linear', elements: ['z0'] }], ['rebuild: { maxMiBPerSec: 0 }']);
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

  /** [from, C0) equals the reference, [C0, C1) reads as zeroes. */
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

  /** The data areas of the two legs of every pair are identical (the daemon stopped: nothing in flight). */
  async expectPairsEqual(members: readonly string[]): Promise<void> {
    for (let k = 0; k < members.length; k += 2) {
      const [a, b] = await Promise.all([0, 1].map((i) => sha256Range(path.join(this.dir, `${members[k + i]}.img`), DATA_OFFSET_BYTES, DATA_BYTES)));
      expect(a, `legs ${members[k]} and ${members[k + 1]} of pair ${k / 2}`).toBe(b);
    }
  }

  /** Every leg carries a write-intent bitmap again at 64 KiB (the area held the reshape backups meanwhile). */
  async expectBitmaps(members: readonly string[]): Promise<void> {
    for (const m of members) expect((await readAt(path.join(this.dir, `${m}.img`), 64 * 1024, 8)).toString('latin1'), `bitmap of ${m}`).toBe('OSBITMAP');
  }

  async stop(): Promise<void> {
    await this.daemon?.stop();
    if (this.dir !== '') removeDir(this.dir);
  }
}

async function fioVerifyOnly(h: Harness, name: string): Promise<void> {
  const args = fioArgs(h.d.uri(name)).filter((a) => !a.startsWith('--rate_iops') && !a.startsWith('--do_verify'));
  const checked = await fio([...args, '--do_verify=1', '--verify_only'], h.dir);
  expect(checked.result.code, explain(checked.result)).toBe(0);
  expect(checked.jobs[0]?.error, checked.result.stdout).toBe(0);
}

async function untilOptimal(h: Harness, name: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  let v = await h.volume(name);
  while (v.state !== 'optimal' && Date.now() < deadline) {
    await sleep(100);
    v = await h.volume(name);
  }
  expect(v.state, `${name} optimal after its resync`).toBe('optimal');
}

async function untilPercent(h: Harness, name: string, percent: number): Promise<VolumeView> {
  const deadline = Date.now() + 60_000;
  let v = await h.volume(name);
  while ((v.reshape?.percent ?? 0) < percent && Date.now() < deadline) {
    await sleep(50);
    v = await h.volume(name);
  }
  return v;
}

describe.skipIf(missing !== null)(`raid10 reshape under fio verify${missing !== null ? ` (skipped: ${missing})` : ''}`, () => {
  const h = new Harness('reshape-raid10');
  beforeAll(() => h.start(['p0', 'p1', 'p2', 'p3', 'p4', 'p5', 'm0', 'm1', 'm2', 'm3', 'q0', 'q1', 'q2', 'q3', 'q4', 'q5', 'n0', 'n1', 'n2', 'n3']), 60_000);
  afterAll(() => h.stop());

  it('raid10 4→6 under fio verify: fio clean, the rest equals the reference, new tail zero, nbdinfo shows the new size, pairs equal', async () => {
    const members = ['p0', 'p1', 'p2', 'p3', 'p4', 'p5'];
    await h.create('t', 'raid10', members.slice(0, 4));
    const c0 = 2 * DATA_BYTES;
    const c1 = 3 * DATA_BYTES;
    expect((await h.volume('t')).sizeBytes).toBe(c0);
    const ref = await h.fill('t');
    let seen: Reshape | null | undefined = null;
    let fioDone = false;
    const job = fio(fioArgs(h.d.uri('t')), h.dir).finally(() => { fioDone = true; });
    await sleep(1000);
    const r = await h.cli(['volume', 'reshape', 't', '--add', 'p4,p5', '--max-mib-per-sec', '16']);
    expect(r.code, explain(r)).toBe(0);
    expect(r.stdout).toMatch(/volume t: reshape raid10 4→6: \d+% \(.* of 64 MiB\)/);
    seen = (await h.volume('t')).reshape;
    const off = FIO_BYTES + 3 * MiB + 4096;
    const w = await qemuIo(h.d.uri('t'), [`write -P 0x5a ${off} 1M`, 'flush']);
    expect(qemuIoFailed(w), explain(w)).toBe(false);
    patternInto(ref, off, MiB, 0x5a);
    const v = await h.untilReshaped('t');
    expect(fioDone, 'fio ran during the whole reshape').toBe(false);
    const { result, jobs } = await job;
    expect(result.code, explain(result)).toBe(0);
    expect(jobs[0]?.error, result.stdout).toBe(0);
    expect(jobs[0]?.write.io_bytes, 'fio wrote its whole size').toBe(FIO_BYTES);
    expect(seen, 'status showed the reshape while it ran').toMatchObject({ from: { layout: 'raid10', count: 4 }, to: { layout: 'raid10', count: 6 }, totalBytes: c0, sizeBytes: c1 });
    expect(v).toMatchObject({ layout: 'raid10', state: 'optimal', sizeBytes: c1 });
    expect(v.elements.map((e) => [e.name, e.state])).toEqual(members.map((n) => [n, 'active']));
    expect(await exportSize(h.d.uri('t')), 'a new nbdinfo connection sees the new size').toBe(c1);
    await fioVerifyOnly(h, 't');
    await h.expectMatches('t', ref, FIO_BYTES, c0, c1);
    // Writes after the finish go through the re-armed bitmap to both legs; a clean restart keeps all.
    const w2 = await qemuIo(h.d.uri('t'), [`write -P 0x77 ${c0 + MiB} 64k`, 'flush']);
    expect(qemuIoFailed(w2), explain(w2)).toBe(false);
    await h.d.stop();
    await h.expectPairsEqual(members);
    await h.expectBitmaps(members);
    await h.restart();
    expect(await h.volume('t')).toMatchObject({ layout: 'raid10', state: 'optimal', sizeBytes: c1 });
    const back = await qemuIo(h.d.uri('t'), [`read -P 0x77 ${c0 + MiB} 64k`]);
    expect(qemuIoFailed(back), explain(back)).toBe(false);
  }, 240_000);

  it('raid1 (2 legs) → raid10 of 4 (--layout raid10): every byte kept, new size, pairs equal', async () => {
    const members = ['m0', 'm1', 'm2', 'm3'];
    await h.create('m', 'raid1', members.slice(0, 2));
    const ref = await h.fill('m');
    const r = await h.cli(['volume', 'reshape', 'm', '--add', 'm2,m3', '--layout', 'raid10', '--watch']);
    expect(r.code, explain(r)).toBe(0);
    expect(r.stdout).toMatch(/volume m: reshaped: raid10, 4 elements/);
    const v = await h.untilReshaped('m');
    expect(v).toMatchObject({ layout: 'raid10', state: 'optimal', sizeBytes: 2 * DATA_BYTES });
    expect(await exportSize(h.d.uri('m'))).toBe(2 * DATA_BYTES);
    await h.expectMatches('m', ref, 0, DATA_BYTES, 2 * DATA_BYTES);
    await h.d.stop();
    await h.expectPairsEqual(members);
    await h.expectBitmaps(members);
    await h.restart();
    expect(await h.volume('m')).toMatchObject({ layout: 'raid10', state: 'optimal', sizeBytes: 2 * DATA_BYTES });
  }, 240_000);

  it('raid1 of 3 legs + 1 → raid10 of 4: the third leg becomes a new-geometry element; every byte kept, pairs equal', async () => {
    const members = ['n0', 'n1', 'n2', 'n3'];
    await h.create('n', 'raid1', members.slice(0, 3));
    const ref = await h.fill('n');
    const r = await h.cli(['volume', 'reshape', 'n', '--add', 'n3', '--layout', 'raid10', '--watch']);
    expect(r.code, explain(r)).toBe(0);
    const v = await h.untilReshaped('n');
    expect(v).toMatchObject({ layout: 'raid10', state: 'optimal', sizeBytes: 2 * DATA_BYTES });
    expect(v.elements.map((e) => e.name)).toEqual(members);
    await h.expectMatches('n', ref, 0, DATA_BYTES, 2 * DATA_BYTES);
    await h.d.stop();
    await h.expectPairsEqual(members);
    await h.restart();
    expect(await h.volume('n')).toMatchObject({ layout: 'raid10', state: 'optimal' });
  }, 120_000);

  it('refusals: an odd count, raid10 → raid5, add-member; each message says why', async () => {
    await h.create('q', 'raid10', ['q0', 'q1', 'q2', 'q3']);
    const odd = await h.cli(['volume', 'reshape', 'q', '--add', 'q4']);
    expect(odd.code, explain(odd)).not.toBe(0);
    expect(odd.stderr).toMatch(/raid10 → raid10 needs an even number of elements.*add 1 more/);
    const other = await h.cli(['volume', 'reshape', 'q', '--add', 'q4,q5', '--layout', 'raid5']);
    expect(other.code, explain(other)).not.toBe(0);
    expect(other.stderr).toMatch(/raid10 → raid5 is not supported yet/);
    const member = await h.cli(['volume', 'add-member', 'q', 'q4']);
    expect(member.code, explain(member)).not.toBe(0);
    expect(member.stderr).toMatch(/onestack volume reshape NAME --add E1,E2/);
    expect(await h.volume('q')).toMatchObject({ layout: 'raid10', state: 'optimal', sizeBytes: 2 * DATA_BYTES });
  }, 60_000);
});

describe.skipIf(missing !== null)(`kill -9 in the middle of a raid10 reshape${missing !== null ? ` (skipped: ${missing})` : ''}`, () => {
  const h = new Harness('reshape-raid10-crash', { ONESTACK_RESHAPE_STEP_DELAY_MS: '300' });
  beforeAll(() => h.start(['k0', 'k1', 'k2', 'k3', 'k4', 'k5']), 60_000);
  afterAll(() => h.stop());

  it('raid10 4→6, kill -9 mid-way: the restart resumes and finishes; fio --verify_only during and after; sha256 equals the reference', async () => {
    const members = ['k0', 'k1', 'k2', 'k3', 'k4', 'k5'];
    await h.create('k', 'raid10', members.slice(0, 4));
    const c0 = 2 * DATA_BYTES;
    const c1 = 3 * DATA_BYTES;
    const ref = await h.fill('k');
    const r = await h.cli(['volume', 'reshape', 'k', '--add', 'k4,k5']);
    expect(r.code, explain(r)).toBe(0);
    // fio lays its pattern and verifies it while the copy runs (a kill -9 would cut its connection: it finishes first).
    const laid = await fio(fioArgs(h.d.uri('k')).filter((a) => !a.startsWith('--rate_iops')), h.dir);
    expect(laid.result.code, explain(laid.result)).toBe(0);
    expect(laid.jobs[0]?.error, laid.result.stdout).toBe(0);
    const v = await untilPercent(h, 'k', 20);
    expect(v.reshape?.percent, 'the reshape got going').toBeGreaterThanOrEqual(20);
    expect(v.reshape?.percent, 'and is not done').toBeLessThan(100);
    const before = v.reshape!.positionBytes;
    await h.d.crash();
    await h.restart(h.env);
    const resumed = await h.volume('k');
    expect(resumed.sizeBytes, 'clients see the old size until it finishes').toBe(c0);
    if (resumed.reshape !== null && resumed.reshape !== undefined) expect(resumed.reshape.positionBytes).toBeGreaterThanOrEqual(before);
    expect(h.d.stderr + h.d.stdout).toMatch(/resuming its reshape/);
    await fioVerifyOnly(h, 'k'); // while the resumed copy runs
    const done = await h.untilReshaped('k');
    expect(done).toMatchObject({ layout: 'raid10', sizeBytes: c1 });
    // No bitmap while it reshaped: after the crash the finish resyncs the pairs in full (reshape-finish.ts).
    expect(h.d.stderr + h.d.stdout).toMatch(/volume k: no usable write-intent bitmap .*the resync copies everything/);
    await untilOptimal(h, 'k');
    expect(await exportSize(h.d.uri('k'))).toBe(c1);
    await fioVerifyOnly(h, 'k');
    await h.expectMatches('k', ref, FIO_BYTES, c0, c1);
    await h.d.stop();
    await h.expectPairsEqual(members);
    await h.restart();
    expect(await h.volume('k')).toMatchObject({ layout: 'raid10', state: 'optimal', sizeBytes: c1 });
  }, 240_000);
});
