// A daemon with file elements for reshape end-to-end tests (test/reshape-faults.test.ts): config,
// CLI, status views, reference fills with nbdcopy, sha256 comparisons, log waits.
import path from 'node:path';
import { expect } from 'vitest';
import { CLI_MAIN, Daemon, REPO_ROOT } from './daemon.js';
import { DATA_OFFSET_BYTES, MiB, randomFile, removeDir, sha256Range, tempDir, writeConfig, type ElementSpec, type VolumeSpec } from './files.js';
import { nbdcopy } from './peers.js';
import { explain, run, sleep } from './proc.js';

export const DATA_BYTES = 32 * MiB;
export const ELEMENT_BYTES = DATA_OFFSET_BYTES + DATA_BYTES;

export interface ReshapeView {
  positionBytes: number; totalBytes: number; sizeBytes: number; percent: number; state: string; backupSteps: number; error?: string;
  retryAtMs?: number; maxMiBPerSec?: number; waiting?: string[];
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

  async untilLog(re: RegExp, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!re.test(this.d.stdout + this.d.stderr)) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${re} in the daemon log\n${this.d.logs()}`);
      await sleep(100);
    }
  }

  /** The volume read out with nbdcopy; [0, c0) must equal the reference, [c0, c1) zeroes. */
  async expectMatches(name: string, ref: string, c0: number, c1: number): Promise<void> {
    const out = path.join(this.dir, `${name}.out`);
    const c = await nbdcopy(this.d.uri(name), out);
    expect(c.code, explain(c)).toBe(0);
    const [got, want] = await Promise.all([sha256Range(out, 0, c0), sha256Range(ref, 0, c0)]);
    expect(got, `sha256 of [0, ${c0}) of ${name} against the reference`).toBe(want);
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
