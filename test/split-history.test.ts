// The split rule's history ids (docs/durability.md "Which side is newer", rule 6), end to end: two
// nbdkit legs that each served alone and reached the SAME event counter. ra goes away; rb alone
// records it (counter N+1, a new history id) and takes write A; the daemon is killed (SIGKILL, so
// no clean-stop bump). It starts again with rb away and ra back: ra alone serves, its open takes
// it to counter N+1 too (another new history id), and it takes write B. rb answers again with
// counter N+1 — not above the volume's when it left, so the counter rule alone would resync only
// the dirty regions and leave A on rb. Its history id is not the one this volume wrote at N+1: it
// diverged. Outcome: rb is rebuilt in FULL from ra, the legs end identical, A is gone, B is there.
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Daemon } from './lib/daemon.js';
import { DATA_OFFSET_BYTES, MiB, firstDifference, readAt, removeDir, sparseFile, tempDir, writeConfig } from './lib/files.js';
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
  return (await d.status()).volumes.find((x) => x.name === 'hist') as unknown as VolumeView;
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

/** Event counter (bytes 144..152) and history id (284..292) of a leg's superblock, read from its backing file. */
async function superblockOf(file: string): Promise<{ events: number; history: string }> {
  const sb = await readAt(file, 0, 4096);
  return { events: Number(sb.readBigUInt64LE(144)), history: sb.readBigUInt64LE(284).toString(16).padStart(16, '0') };
}

describe.skipIf(missing !== null)(`split rule by history id, two remote legs${missing !== null ? ` (skipped: ${missing})` : ''}`, () => {
  let dir = '';
  let daemon: Daemon | null = null;
  let ra: NbdkitPeer | null = null;
  let rb: NbdkitPeer | null = null;
  let configPath = '';
  const file = (name: string): string => path.join(dir, `${name}.img`);
  const start = async (): Promise<Daemon> => Daemon.start({ dataDir: path.join(dir, 'data'), configPath });

  beforeAll(async () => {
    dir = tempDir('split-history');
    for (const name of ['ra', 'rb']) await sparseFile(file(name), ELEMENT_BYTES);
    ra = await startNbdkit(['file', file('ra')]);
    rb = await startNbdkit(['file', file('rb')]);
    ({ configPath } = await writeConfig(dir, [
      { name: 'ra', uri: ra.uri, options: { timeoutMs: 1500 } },
      { name: 'rb', uri: rb.uri, options: { timeoutMs: 1500 } },
    ], [{ name: 'hist', layout: 'raid1', elements: ['ra', 'rb'], bitmapRegionKiB: 64 }]));
    daemon = await start();
  }, 60_000);

  afterAll(async () => {
    await daemon?.stop();
    await ra?.stop();
    await rb?.stop();
    if (dir !== '') removeDir(dir);
  });

  it('both sides alone at the same event counter: told apart by history id, the returning one rebuilt in full', async () => {
    let d = daemon!;
    const base = await qemuIo(d.uri('hist'), ['write -P 0x11 0 8M', 'flush']);
    expect(qemuIoFailed(base), explain(base)).toBe(false);
    const together = [await superblockOf(file('ra')), await superblockOf(file('rb'))];
    expect(together[0], 'both legs: one counter, one history').toEqual(together[1]);
    const [portA, portB] = [ra!.port, rb!.port];
    await ra!.stop('SIGKILL');
    const a = await qemuIo(d.uri('hist'), ['write -P 0x22 1M 64k'], 60_000); // rb alone takes A
    expect(qemuIoFailed(a), explain(a)).toBe(false);
    await until(d, 'degraded', (v) => v.state === 'degraded');
    await sleep(500); // rb's superblock records ra's failure: counter + 1, a new history id
    await d.crash(); // no clean stop: rb keeps that counter
    const bSide = await superblockOf(file('rb'));
    expect(bSide.events).toBe(together[1]!.events + 1);
    expect(bSide.history).not.toBe(together[1]!.history);

    // ra back, rb away at start-up: ra alone serves; its open brings it to rb's counter, in a history of its own.
    await rb!.stop('SIGKILL');
    ra = await startNbdkit(['file', file('ra')], portA);
    d = daemon = await start();
    const alone = await volume(d);
    expect(alone.elements.map((e) => [e.name, e.state])).toEqual([['ra', 'active'], ['rb', 'stale']]);
    const aSide = await superblockOf(file('ra'));
    expect(aSide.events, 'the same counter on both sides').toBe(bSide.events);
    expect(aSide.history).not.toBe(bSide.history);
    const b = await qemuIo(d.uri('hist'), ['write -P 0x33 2M 64k', 'read -P 0x11 1M 64k']);
    expect(qemuIoFailed(b), explain(b)).toBe(false);

    // rb answers again: same counter, another history → full rebuild from the serving side.
    rb = await startNbdkit(['file', file('rb')], portB);
    const v = await until(d, 'optimal after a full rebuild', (x) => x.state === 'optimal' && x.lastRebuild?.outcome === 'done', 45_000);
    expect(v.lastRebuild).toMatchObject({ kind: 'rebuild', doneBytes: DATA_BYTES, totalBytes: DATA_BYTES });
    expect(d.logs()).toMatch(/element rb answers again but diverged \(history [0-9a-f]{16} at event counter \d+, where this volume wrote [0-9a-f]{16}\)/);
    const at = await firstDifference(file('ra'), file('rb'), DATA_OFFSET_BYTES, DATA_BYTES);
    expect(at, `legs differ at data offset ${at}`).toBe(-1);
    const check = await qemuIo(d.uri('hist'), ['read -P 0x11 1M 64k', 'read -P 0x33 2M 64k', 'read -P 0x11 4M 4M']);
    expect(qemuIoFailed(check), explain(check)).toBe(false);
    // Back together: both legs carry one counter and one (new) history id again.
    const by = Date.now() + 10_000;
    let [x, y] = [await superblockOf(file('ra')), await superblockOf(file('rb'))];
    while ((x.events !== y.events || x.history !== y.history) && Date.now() < by) {
      await sleep(200); // the superblocks are rewritten just after the rebuild reports done
      [x, y] = [await superblockOf(file('ra')), await superblockOf(file('rb'))];
    }
    expect(x).toEqual(y);
    expect(x.events).toBeGreaterThan(aSide.events);
  }, 180_000);
});
