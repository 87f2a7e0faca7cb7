// Two nbdkit legs of one raid1 for the split-rule tests (test/split-rule.test.ts,
// test/split-history.test.ts): the backing files, the peers (restartable on their ports), the
// daemon over them, and a poll on the volume's status.
import path from 'node:path';
import { Daemon } from './daemon.js';
import { DATA_OFFSET_BYTES, MiB, removeDir, sparseFile, tempDir, writeConfig } from './files.js';
import { sleep } from './proc.js';
import { startNbdkit, type NbdkitPeer } from './remotes.js';

export const DATA_BYTES = 64 * MiB;
const ELEMENT_BYTES = DATA_OFFSET_BYTES + DATA_BYTES;

export interface SplitVolumeView {
  state: string;
  elements: { name: string; state: string; reason?: string }[];
  lastRebuild?: { kind: string; outcome: string; doneBytes: number; totalBytes: number } | null;
}

export class SplitLegs {
  dir = '';
  daemon: Daemon | null = null;
  ra: NbdkitPeer | null = null;
  rb: NbdkitPeer | null = null;
  private configPath = '';
  constructor(readonly prefix: string, readonly volumeName: string) {}

  file(name: string): string {
    return path.join(this.dir, `${name}.img`);
  }

  /** Legs ra and rb behind nbdkit (timeouts 1.5 s), a raid1 over them (bitmap regions 64 KiB), the daemon started. */
  async setUp(): Promise<void> {
    this.dir = tempDir(this.prefix);
    for (const name of ['ra', 'rb']) await sparseFile(this.file(name), ELEMENT_BYTES);
    this.ra = await startNbdkit(['file', this.file('ra')]);
    this.rb = await startNbdkit(['file', this.file('rb')]);
    ({ configPath: this.configPath } = await writeConfig(this.dir, [
      { name: 'ra', uri: this.ra.uri, options: { timeoutMs: 1500 } },
      { name: 'rb', uri: this.rb.uri, options: { timeoutMs: 1500 } },
    ], [{ name: this.volumeName, layout: 'raid1', elements: ['ra', 'rb'], bitmapRegionKiB: 64 }]));
    await this.start();
  }

  /** (Re)starts the daemon on the same data dir and config. */
  async start(): Promise<Daemon> {
    this.daemon = await Daemon.start({ dataDir: path.join(this.dir, 'data'), configPath: this.configPath });
    return this.daemon;
  }

  async tearDown(): Promise<void> {
    await this.daemon?.stop();
    await this.ra?.stop();
    await this.rb?.stop();
    if (this.dir !== '') removeDir(this.dir);
  }

  async volume(d: Daemon): Promise<SplitVolumeView> {
    return (await d.status()).volumes.find((x) => x.name === this.volumeName) as unknown as SplitVolumeView;
  }

  async until(d: Daemon, what: string, cond: (v: SplitVolumeView) => boolean, timeoutMs = 30_000): Promise<SplitVolumeView> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = await this.volume(d);
      if (cond(v)) return v;
      if (Date.now() > deadline) throw new Error(`${what} not reached in ${timeoutMs} ms: ${JSON.stringify(v)}\n${d.logs()}`);
      await sleep(100);
    }
  }
}
