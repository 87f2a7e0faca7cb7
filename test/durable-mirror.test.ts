// Acceptance (issue 5, mirrors): a raid1 leg behind nbdkit is SIGKILLed, writes go on, nbdkit is
// restarted on the same port and the leg comes back by itself: only the write-intent bitmap's
// dirty regions are copied (byte count from status), and the legs are identical afterwards. A
// raid1 with a hot spare: a failed leg is rebuilt onto the spare, with progress in status, and
// the volume's sha256 is unchanged.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Daemon } from './lib/daemon.js';
import { DATA_OFFSET_BYTES, MiB, firstDifference, removeDir, sha256Range, sparseFile, tempDir, writeConfig } from './lib/files.js';
import { nbdcopy, qemuIo, qemuIoFailed } from './lib/peers.js';
import { explain, missingTools, sleep } from './lib/proc.js';
import { startNbdkit, type NbdkitPeer } from './lib/remotes.js';

const DATA_BYTES = 64 * MiB;
const ELEMENT_BYTES = DATA_OFFSET_BYTES + DATA_BYTES;
const REGION_BYTES = 64 * 1024;
const REBUILD_MIB_PER_SEC = 32;
const missing = missingTools(['nbdkit', 'qemu-io', 'nbdcopy']);

interface VolumeView {
  name: string;
  state: string;
  rebuild: { kind: string; element: string | null; percent: number; mibPerSec: number; doneBytes: number; totalBytes: number } | null;
  lastRebuild?: { kind: string; outcome: string; doneBytes: number; totalBytes: number; mibPerSec: number; seconds: number } | null;
  bitmap?: { dirtyRegions: number; regionBytes: number } | null;
  elements: { name: string; state: string; reason?: string }[];
}

async function volume(d: Daemon, name: string): Promise<VolumeView> {
  const v = (await d.status()).volumes.find((x) => x.name === name) as unknown as VolumeView | undefined;
  if (v === undefined) throw new Error(`no volume ${name} in status`);
  return v;
}

async function until(d: Daemon, name: string, what: string, cond: (v: VolumeView) => boolean, timeoutMs = 30_000, seen?: (v: VolumeView) => void): Promise<VolumeView> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await volume(d, name);
    seen?.(v);
    if (cond(v)) return v;
    if (Date.now() > deadline) throw new Error(`volume ${name}: ${what} not reached in ${timeoutMs} ms: ${JSON.stringify(v)}\n${d.logs()}`);
    await sleep(100);
  }
}

async function api(d: Daemon, method: string, route: string): Promise<unknown> {
  const token = readFileSync(path.join(d.dataDir, 'api-token'), 'utf8').trim();
  const res = await fetch(`http://127.0.0.1:${d.apiPort}/api/v1/${route}`, { method, headers: { authorization: `Bearer ${token}` } });
  if (!res.ok) throw new Error(`${method} ${route}: ${res.status} ${await res.text()}`);
  return res.json();
}

describe.skipIf(missing !== null)(`durable mirrors${missing !== null ? ` (skipped: ${missing})` : ''}`, () => {
  let dir = '';
  let daemon: Daemon | null = null;
  let remote: NbdkitPeer | null = null;
  let first: NbdkitPeer | null = null;
  let second: NbdkitPeer | null = null;
  const file = (name: string): string => path.join(dir, `${name}.img`);

  beforeAll(async () => {
    dir = tempDir('durable');
    for (const name of ['far', 'ra', 'rb']) await sparseFile(file(name), ELEMENT_BYTES);
    remote = await startNbdkit(['file', file('far')]);
    first = await startNbdkit(['file', file('ra')]);
    second = await startNbdkit(['file', file('rb')]);
    const { configPath } = await writeConfig(dir, [
      { name: 'near', sizeBytes: ELEMENT_BYTES },
      { name: 'far', uri: remote.uri, options: { timeoutMs: 1500 } },
      { name: 's0', sizeBytes: ELEMENT_BYTES }, { name: 's1', sizeBytes: ELEMENT_BYTES }, { name: 'hot', sizeBytes: ELEMENT_BYTES },
      { name: 'ra', uri: first.uri, options: { timeoutMs: 1500 } }, { name: 'rb', uri: second.uri, options: { timeoutMs: 1500 } },
    ], [
      // Small regions, so "only the dirty regions" is a few of them (the default is 4 MiB).
      { name: 'mixed', layout: 'raid1', elements: ['near', 'far'], bitmapRegionKiB: 64 },
      { name: 'spared', layout: 'raid1', elements: ['s0', 's1'], spares: ['hot'] },
      { name: 'remote2', layout: 'raid1', elements: ['ra', 'rb'], bitmapRegionKiB: 64 },
    ], [`rebuild: { maxMiBPerSec: ${REBUILD_MIB_PER_SEC} }`]);
    daemon = await Daemon.start({ dataDir: path.join(dir, 'data'), configPath });
  }, 60_000);

  afterAll(async () => {
    await daemon?.stop();
    for (const peer of [remote, first, second]) await peer?.stop();
    if (dir !== '') removeDir(dir);
  });

  it('nbdkit killed, writes go on, nbdkit restarted: the leg returns and only the dirty regions are copied', async () => {
    const d = daemon!;
    const uri = d.uri('mixed');
    const base = await qemuIo(uri, ['write -P 0x11 0 16M', 'write -P 0x12 48M 16M']);
    expect(qemuIoFailed(base), explain(base)).toBe(false);
    // Idle regions are cleared after 2-3 s: then the bitmap holds only what comes next.
    await until(d, 'mixed', 'a clean bitmap', (v) => v.bitmap?.dirtyRegions === 0, 15_000);
    const port = remote!.port;
    await remote!.stop('SIGKILL');
    // Three regions, written while the remote is gone (the first waits out timeoutMs, then the leg fails).
    const during = await qemuIo(uri, ['write -P 0x21 1M 4k', 'write -P 0x22 20M 64k', 'write -P 0x23 40960k 8k'], 60_000);
    expect(qemuIoFailed(during), explain(during)).toBe(false);
    const degraded = await until(d, 'mixed', 'degraded', (v) => v.state === 'degraded');
    expect(degraded.elements.find((e) => e.name === 'far')).toMatchObject({ state: 'stale' });
    expect(degraded.bitmap?.dirtyRegions).toBe(3);

    remote = await startNbdkit(['file', file('far')], port);
    const back = await until(d, 'mixed', 'the leg back and resynced', (v) => v.state === 'optimal' && v.lastRebuild?.outcome === 'done');
    expect(back.lastRebuild).toMatchObject({ kind: 'resync', doneBytes: 3 * REGION_BYTES, totalBytes: 3 * REGION_BYTES });
    expect(back.lastRebuild!.totalBytes, `copied ${back.lastRebuild!.totalBytes} bytes of ${DATA_BYTES}`).toBeLessThan(DATA_BYTES / 100);
    const at = await firstDifference(file('near'), file('far'), DATA_OFFSET_BYTES, DATA_BYTES);
    expect(at, `legs differ at data offset ${at}`).toBe(-1);
    const check = await qemuIo(uri, ['read -P 0x21 1M 4k', 'read -P 0x22 20M 64k', 'read -P 0x11 0 1M', 'read -P 0x12 48M 16M']);
    expect(qemuIoFailed(check), explain(check)).toBe(false);
  }, 90_000);

  it('a failed leg is rebuilt onto the hot spare, with progress in status; sha256 unchanged', async () => {
    const d = daemon!;
    const uri = d.uri('spared');
    const fill = await qemuIo(uri, ['write -P 0x31 0 24M', 'write -P 0x32 24M 24M', 'write -P 0x33 48M 16M']);
    expect(qemuIoFailed(fill), explain(fill)).toBe(false);
    const before = path.join(dir, 'before.raw');
    const copied = await nbdcopy(uri, before);
    expect(copied.code, explain(copied)).toBe(0);
    const sha = await sha256Range(before);

    await api(d, 'POST', 'elements/s1/fail');
    const progress: number[] = [];
    const rates: number[] = [];
    const done = await until(d, 'spared', 'rebuilt onto the spare', (v) => v.state === 'optimal', 30_000, (v) => {
      if (v.rebuild !== null && v.rebuild.kind === 'rebuild') {
        progress.push(v.rebuild.percent);
        if (v.rebuild.mibPerSec > 0) rates.push(v.rebuild.mibPerSec);
      }
    });
    expect(done.elements.map((e) => [e.name, e.state])).toEqual([['s0', 'active'], ['hot', 'active']]);
    expect(done.lastRebuild).toMatchObject({ kind: 'rebuild', outcome: 'done', totalBytes: DATA_BYTES });
    expect(progress.some((p) => p > 0 && p < 100), `progress seen: ${progress.join(', ')}`).toBe(true);
    expect(Math.max(...rates), 'the throttle holds').toBeLessThan(REBUILD_MIB_PER_SEC * 1.25);
    const after = path.join(dir, 'after.raw');
    const again = await nbdcopy(uri, after);
    expect(again.code, explain(again)).toBe(0);
    expect(await sha256Range(after)).toBe(sha);
    expect(await sha256Range(file('hot'), DATA_OFFSET_BYTES, DATA_BYTES)).toBe(sha);
    const status = await d.status();
    expect(status.elements.find((e) => e.name === 's1')).toMatchObject({ state: 'failed' });
  }, 60_000);

  it('both remote legs lost: the volume fails (EIO); the older leg alone cannot bring it back, the newer one does', async () => {
    const d = daemon!;
    const uri = d.uri('remote2');
    const base = await qemuIo(uri, ['write -P 0x41 0 8M']);
    expect(qemuIoFailed(base), explain(base)).toBe(false);
    const [portA, portB] = [first!.port, second!.port];
    await first!.stop('SIGKILL');
    const onB = await qemuIo(uri, ['write -P 0x42 2M 64k'], 60_000); // ra fails; rb alone holds this
    expect(qemuIoFailed(onB), explain(onB)).toBe(false);
    await until(d, 'remote2', 'degraded', (v) => v.state === 'degraded');
    await sleep(500); // the survivor's superblock records ra's failure (event counter)
    await second!.stop('SIGKILL');
    const lost = await qemuIo(uri, ['write -P 0x43 4M 4k'], 60_000);
    expect(qemuIoFailed(lost), 'a write with no leg left fails').toBe(true);
    const failed = await until(d, 'remote2', 'failed', (v) => v.state === 'failed');
    expect(failed.elements.map((e) => e.state)).toEqual(['stale', 'stale']);

    first = await startNbdkit(['file', file('ra')], portA);
    // ra answers the next probe, but it missed the write rb took: it must not come back alone.
    const refused = /element ra still out: it missed writes/;
    for (let i = 0; i < 150 && !refused.test(d.stdout + d.stderr); i++) await sleep(100);
    expect(d.stdout + d.stderr).toMatch(refused);
    expect((await volume(d, 'remote2')).state, 'the older leg must not come back alone').toBe('failed');
    second = await startNbdkit(['file', file('rb')], portB);
    const back = await until(d, 'remote2', 'optimal again', (v) => v.state === 'optimal' && v.lastRebuild?.outcome === 'done', 45_000);
    expect(back.lastRebuild).toMatchObject({ kind: 'resync' });
    const check = await qemuIo(uri, ['read -P 0x42 2M 64k', 'read -P 0x41 0 2M']);
    expect(qemuIoFailed(check), explain(check)).toBe(false);
    const at = await firstDifference(file('ra'), file('rb'), DATA_OFFSET_BYTES, DATA_BYTES);
    expect(at, `legs differ at data offset ${at}`).toBe(-1);
  }, 120_000);
});
