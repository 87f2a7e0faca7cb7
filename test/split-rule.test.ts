// The split rule (docs/durability.md "Which side is newer"), end to end: two nbdkit legs that were
// each the only active leg at different times. rb alone takes write A while ra is away; the daemon
// stops; it starts again with rb away and ra back, so ra alone serves and takes write B; then rb
// answers again while the volume serves from ra. rb's counter is above the volume's when rb went
// away: it diverged. The documented outcome: the serving side (ra) wins, rb is rebuilt in FULL
// from it (a bitmap resync would copy only B's regions and leave A on rb: a silent mix), the legs
// end identical, A is gone and B is there, and the log says what was discarded.
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Daemon } from './lib/daemon.js';
import { DATA_OFFSET_BYTES, MiB, firstDifference, removeDir, sparseFile, tempDir, writeConfig } from './lib/files.js';
import { qemuIo, qemuIoFailed } from './lib/peers.js';
import { explain, missingTools, sleep } from './lib/proc.js';
import { startNbdkit, type NbdkitPeer } from './lib/remotes.js';

const DATA_BYTES = 64 * MiB;
const ELEMENT_BYTES = DATA_OFFSET_BYTES + DATA_BYTES;
const missing = missingTools(['nbdkit', 'qemu-io']);

interface VolumeView {
  state: string;
  elements: { name: string; state: string; reason?: string }[];
  lastRebuild?: { kind: string; outcome: string; doneBytes: number; totalBytes: number } | null;
}

async function volume(d: Daemon): Promise<VolumeView> {
  return (await d.status()).volumes.find((x) => x.name === 'split') as unknown as VolumeView;
}

async function until(d: Daemon, what: string, cond: (v: VolumeView) => boolean, timeoutMs = 30_000): Promise<VolumeView> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await volume(d);
    if (cond(v)) return v;
    if (Date.now() > deadline) throw new Error(`${what} not reached in ${timeoutMs} ms: ${JSON.stringify(v)}\n${d.logs()}`);
    await sleep(100);
  }
}

describe.skipIf(missing !== null)(`split rule, two remote legs${missing !== null ? ` (skipped: ${missing})` : ''}`, () => {
  let dir = '';
  let daemon: Daemon | null = null;
  let ra: NbdkitPeer | null = null;
  let rb: NbdkitPeer | null = null;
  let configPath = '';
  const file = (name: string): string => path.join(dir, `${name}.img`);
  const start = async (): Promise<Daemon> => Daemon.start({ dataDir: path.join(dir, 'data'), configPath });

  beforeAll(async () => {
    dir = tempDir('split');
    for (const name of ['ra', 'rb']) await sparseFile(file(name), ELEMENT_BYTES);
    ra = await startNbdkit(['file', file('ra')]);
    rb = await startNbdkit(['file', file('rb')]);
    ({ configPath } = await writeConfig(dir, [
      { name: 'ra', uri: ra.uri, options: { timeoutMs: 1500 } },
      { name: 'rb', uri: rb.uri, options: { timeoutMs: 1500 } },
    ], [{ name: 'split', layout: 'raid1', elements: ['ra', 'rb'], bitmapRegionKiB: 64 }]));
    daemon = await start();
  }, 60_000);

  afterAll(async () => {
    await daemon?.stop();
    await ra?.stop();
    await rb?.stop();
    if (dir !== '') removeDir(dir);
  });

  it('each leg alone at a different time: the serving side wins, the diverged leg is rebuilt in full', async () => {
    let d = daemon!;
    const base = await qemuIo(d.uri('split'), ['write -P 0x11 0 8M']);
    expect(qemuIoFailed(base), explain(base)).toBe(false);
    const [portA, portB] = [ra!.port, rb!.port];
    await ra!.stop('SIGKILL');
    const a = await qemuIo(d.uri('split'), ['write -P 0x22 1M 64k'], 60_000); // rb alone takes A
    expect(qemuIoFailed(a), explain(a)).toBe(false);
    await until(d, 'degraded', (v) => v.state === 'degraded');
    await sleep(500); // rb's superblock records ra's failure
    await d.stop();

    // ra back, rb away at start-up: ra alone serves (it cannot know of A) and takes B.
    await rb!.stop('SIGKILL');
    ra = await startNbdkit(['file', file('ra')], portA);
    d = daemon = await start();
    const alone = await volume(d);
    expect(alone.state).toBe('degraded');
    expect(alone.elements.map((e) => [e.name, e.state])).toEqual([['ra', 'active'], ['rb', 'stale']]);
    const b = await qemuIo(d.uri('split'), ['write -P 0x33 2M 64k', 'read -P 0x11 1M 64k']);
    expect(qemuIoFailed(b), explain(b)).toBe(false);

    // rb answers again while the volume serves from ra: it diverged.
    rb = await startNbdkit(['file', file('rb')], portB);
    const v = await until(d, 'optimal after a full rebuild', (x) => x.state === 'optimal' && x.lastRebuild?.outcome === 'done', 45_000);
    expect(v.lastRebuild).toMatchObject({ kind: 'rebuild', doneBytes: DATA_BYTES, totalBytes: DATA_BYTES });
    expect(d.logs()).toMatch(/element rb answers again but diverged \(event counter \d+ > \d+ when it left\)/);
    const at = await firstDifference(file('ra'), file('rb'), DATA_OFFSET_BYTES, DATA_BYTES);
    expect(at, `legs differ at data offset ${at}`).toBe(-1);
    const check = await qemuIo(d.uri('split'), ['read -P 0x11 1M 64k', 'read -P 0x33 2M 64k', 'read -P 0x11 4M 4M']);
    expect(qemuIoFailed(check), explain(check)).toBe(false);
  }, 180_000);
});
