// A daemon with file elements for reshape end-to-end tests (test/reshape*.test.ts): config,
// CLI, status views, reference fills with nbdcopy, sha256 comparisons, log waits, fio verify.
import { closeSync, openSync, writeSync } from 'node:fs';
import path from 'node:path';
import { expect } from 'vitest';
import { CLI_MAIN, Daemon, REPO_ROOT } from './daemon.js';
import { DATA_OFFSET_BYTES, MiB, randomFile, removeDir, sha256Range, tempDir, writeConfig, type ElementSpec, type VolumeSpec } from './files.js';
import { fio, nbdcopy, qemuIo, qemuIoFailed } from './peers.js';
import { explain, run, sleep } from './proc.js';

export const DATA_BYTES = 32 * MiB;
export const ELEMENT_BYTES = DATA_OFFSET_BYTES + DATA_BYTES;
/** fio writes [0, FIO_BYTES) of a volume; the rest is compared with the reference file. */
export const FIO_BYTES = 16 * MiB;

export interface ReshapeView {
  positionBytes: number; totalBytes: number; sizeBytes: number; percent: number; state: string; backupSteps: number; error?: string;
  retryAtMs?: number; maxMiBPerSec?: number; waiting?: string[]; from: { layout: string; count: number }; to: { layout: string; count: number };
}
export interface VolumeView { name: string; layout: string; state: string; sizeBytes: number; reshape?: ReshapeView | null; elements: { name: string; state: string }[] }

export class ReshapeHarness {
  daemon: Daemon | null = null;
  dir = '';
  constructor(readonly name: string, readonly env: NodeJS.ProcessEnv = {}) {}

  get d(): Daemon {
    if (this.daemon === null) throw new Error('daemon not started');
    return this.daemon;
  }

  /** Config-file volumes: linear `lin` over z0, and `volumes`; elements `names` + z0 of ELEMENT_BYTES, and `remotes`. */
  async start(names: readonly string[], volumes: readonly VolumeSpec[] = [], remotes: readonly ElementSpec[] = [], dir?: string): Promise<void> {
    this.dir = dir ?? tempDir(this.name);
    const files = [...names, 'z0'].map((name) => ({ name, sizeBytes: ELEMENT_BYTES }));
    const { configPath } = await writeConfig(this.dir, [...files, ...remotes], [{ name: 'lin', layout: 'linear', elements: ['z0'] }, ...volumes], ['rebuild: { maxMiBPerSec: 0 }']);
    this.daemon = await Daemon.start({ dataDir: path.join(this.dir, 'data'), configPath, env: this.env });
  }

  /** After a crash or stop: the same data dir, config and ports; `env` for this run only. */
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

  /** Polls the volume until `cond` holds (the last view), or throws with the daemon's log. */
  async until(name: string, what: string, cond: (v: VolumeView) => boolean, timeoutMs = 120_000): Promise<VolumeView> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = await this.volume(name);
      if (cond(v)) return v;
      if (Date.now() > deadline) throw new Error(`${name}: timed out waiting for ${what}: ${JSON.stringify(v)}\n${this.d.logs()}`);
      await sleep(100);
    }
  }

  /** Until the reshape of `name` is done; throws when it stopped with an error or timed out. */
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

  /** Until the reshape of `name` reached `percent` or 60 s passed (the caller checks the view). */
  async untilPercent(name: string, percent: number): Promise<VolumeView> {
    const deadline = Date.now() + 60_000;
    let v = await this.volume(name);
    while ((v.reshape?.percent ?? 0) < percent && Date.now() < deadline) {
      await sleep(50);
      v = await this.volume(name);
    }
    return v;
  }

  async untilLog(re: RegExp, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!re.test(this.d.stdout + this.d.stderr)) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${re} in the daemon log\n${this.d.logs()}`);
      await sleep(100);
    }
  }

  /** The volume read out with nbdcopy; [fromBytes, c0) must equal the reference, [c0, c1) zeroes. */
  async expectMatches(name: string, ref: string, c0: number, c1: number, fromBytes = 0): Promise<void> {
    const out = path.join(this.dir, `${name}.out`);
    const c = await nbdcopy(this.d.uri(name), out);
    expect(c.code, explain(c)).toBe(0);
    const [got, want] = await Promise.all([sha256Range(out, fromBytes, c0 - fromBytes), sha256Range(ref, fromBytes, c0 - fromBytes)]);
    expect(got, `sha256 of [${fromBytes}, ${c0}) of ${name} against the reference`).toBe(want);
    if (c1 > c0) {
      const zero = path.join(this.dir, 'zero.ref');
      await run('truncate', ['-s', String(c1 - c0), zero]);
      expect(await sha256Range(out, c0, c1 - c0), 'the new tail reads as zeroes').toBe(await sha256Range(zero, 0, c1 - c0));
    }
  }

  async stop(): Promise<void> {
    await this.daemon?.stop();
    if (this.dir !== '') removeDir(this.dir);
  }
}

/** Writes `len` bytes of `byte` at `off` into a plain file (the reference copy). */
export function patternInto(file: string, off: number, len: number, byte: number): void {
  const fd = openSync(file, 'r+');
  try {
    writeSync(fd, Buffer.alloc(len, byte), 0, len, off);
  } finally {
    closeSync(fd);
  }
}

/** fio at a bounded pace over [0, FIO_BYTES) (about 10 s of writes, then its verify pass), so the whole reshape runs under it. */
export function fioArgs(uri: string): string[] {
  return ['--name=verify', '--ioengine=nbd', `--uri=${uri}`, '--rw=randwrite', '--bs=4k', '--iodepth=8', `--size=${FIO_BYTES / MiB}m`, '--rate_iops=400',
    '--verify=crc32c', '--do_verify=1', '--verify_fatal=1', '--verify_dump=0'];
}

/** Runs `reshape` under fio verify, with a qemu-io pattern written mid-way into the reference region too; returns when the reshape is done. */
export async function underFio(h: ReshapeHarness, name: string, ref: string, reshape: () => Promise<void>): Promise<void> {
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
export async function fioVerifyOnly(h: ReshapeHarness, name: string): Promise<void> {
  const args = fioArgs(h.d.uri(name)).filter((a) => !a.startsWith('--rate_iops') && !a.startsWith('--do_verify'));
  const checked = await fio([...args, '--do_verify=1', '--verify_only'], h.dir);
  expect(checked.result.code, explain(checked.result)).toBe(0);
  expect(checked.jobs[0]?.error, checked.result.stdout).toBe(0);
}

/** fio lays its pattern over [0, FIO_BYTES) unthrottled and verifies it while the copy runs (a kill -9 would cut its
 * connection: it finishes first), then waits until the reshape is 20% through but not done. */
export async function fioThenMidReshape(h: ReshapeHarness, name: string): Promise<VolumeView> {
  const laid = await fio(fioArgs(h.d.uri(name)).filter((a) => !a.startsWith('--rate_iops')), h.dir);
  expect(laid.result.code, explain(laid.result)).toBe(0);
  expect(laid.jobs[0]?.error, laid.result.stdout).toBe(0);
  const v = await h.untilPercent(name, 20);
  expect(v.reshape?.percent, 'the reshape got going').toBeGreaterThanOrEqual(20);
  expect(v.reshape?.percent, 'and is not done').toBeLessThan(100);
  return v;
}

/** kill -9 mid-way (`mid` from fioThenMidReshape), restart with the same env: the old size `c0` until it finishes,
 * the position kept, the log says it resumes, and fio --verify_only passes while the resumed copy runs. */
export async function crashAndResume(h: ReshapeHarness, name: string, mid: VolumeView, c0: number): Promise<void> {
  const before = mid.reshape!.positionBytes;
  await h.d.crash();
  await h.restart(h.env);
  const resumed = await h.volume(name);
  expect(resumed.sizeBytes, 'clients see the old size until it finishes').toBe(c0);
  if (resumed.reshape !== null && resumed.reshape !== undefined) expect(resumed.reshape.positionBytes).toBeGreaterThanOrEqual(before);
  expect(h.d.stderr + h.d.stdout).toMatch(/resuming its reshape/);
  await fioVerifyOnly(h, name);
}
