// Acceptance (issue 5, raid5/6 rebuild): raid5 over 3 local files + 1 nbdkit export, with a local
// hot spare. nbdkit is SIGKILLed under reads: the volume goes degraded, the keeper rebuilds the
// lost role onto the spare by itself (progress in status, then optimal), P recomputed from the
// raw leg files by the test's own maths (lib/parity.ts) is right on every row, and the volume's
// sha256 is unchanged.
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Daemon } from './lib/daemon.js';
import { DATA_OFFSET_BYTES, MiB, randomFile, removeDir, sha256Range, sparseFile, tempDir, writeConfig } from './lib/files.js';
import { badParityRows } from './lib/parity.js';
import { nbdcopy } from './lib/peers.js';
import { explain, missingTools, sleep } from './lib/proc.js';
import { startNbdkit, type NbdkitPeer } from './lib/remotes.js';

const LEG_DATA_BYTES = 32 * MiB;
const ELEMENT_BYTES = DATA_OFFSET_BYTES + LEG_DATA_BYTES;
const COPY_BYTES = 3 * LEG_DATA_BYTES;
const CHUNK_KIB = 64;
const REBUILD_MIB_PER_SEC = 64;
const missing = missingTools(['nbdkit', 'nbdcopy']);

interface VolumeView {
  name: string;
  state: string;
  rebuild: { kind: string; element: string | null; percent: number; mibPerSec: number; etaSeconds: number | null } | null;
  lastRebuild?: { kind: string; element: string | null; outcome: string; doneBytes: number; totalBytes: number; mibPerSec: number } | null;
  elements: { name: string; state: string }[];
}

async function volume(d: Daemon, name: string): Promise<VolumeView> {
  const v = (await d.status()).volumes.find((x) => x.name === name) as unknown as VolumeView | undefined;
  if (v === undefined) throw new Error(`no volume ${name} in status`);
  return v;
}

describe.skipIf(missing !== null)(`raid5 rebuild onto a hot spare${missing !== null ? ` (skipped: ${missing})` : ''}`, () => {
  let dir = '';
  let nbdkit: NbdkitPeer | null = null;
  let daemon: Daemon | null = null;
  const legFile = (leg: string): string => path.join(dir, `${leg}.img`);

  beforeAll(async () => {
    dir = tempDir('raid56-rebuild');
    await sparseFile(legFile('n0'), ELEMENT_BYTES);
    nbdkit = await startNbdkit(['file', `dir=${dir}`]);
    const { configPath } = await writeConfig(dir, [
      ...['a0', 'a1', 'a2', 'hot'].map((name) => ({ name, sizeBytes: ELEMENT_BYTES })),
      { name: 'n0', uri: `nbd://127.0.0.1:${nbdkit.port}/n0.img`, options: { timeoutMs: 2000 } },
    ], [{ name: 'r5', layout: 'raid5', elements: ['a0', 'a1', 'n0', 'a2'], chunkKiB: CHUNK_KIB, spares: ['hot'] }],
    [`rebuild: { maxMiBPerSec: ${REBUILD_MIB_PER_SEC} }`]);
    daemon = await Daemon.start({ dataDir: path.join(dir, 'data'), configPath });
  }, 120_000);

  afterAll(async () => {
    await daemon?.stop();
    await nbdkit?.stop();
    if (dir !== '') removeDir(dir);
  });

  it('nbdkit killed → degraded → rebuilt onto the spare with progress → optimal; P right on every row, sha256 unchanged', async () => {
    const d = daemon!;
    const src = path.join(dir, 'src.bin');
    const want = await randomFile(src, COPY_BYTES);
    const up = await nbdcopy(src, d.uri('r5'), ['--flush']);
    expect(up.code, explain(up)).toBe(0);
    const rows = LEG_DATA_BYTES / (CHUNK_KIB * 1024);
    expect(await badParityRows(['a0', 'a1', 'n0', 'a2'].map(legFile), 1, CHUNK_KIB * 1024, rows)).toEqual([]);

    await nbdkit!.stop('SIGKILL');
    // Watch status from now on, beside the degraded copy: a fast rebuild may end before the copy does.
    const states: string[] = [];
    const progress: number[] = [];
    const watch = (async () => {
      const deadline = Date.now() + 60_000;
      let v = await volume(d, 'r5');
      while (!(v.state === 'optimal' && v.lastRebuild?.outcome === 'done')) {
        if (Date.now() > deadline) throw new Error(`rebuild onto the spare not done: ${JSON.stringify(v)}\n${d.logs()}`);
        states.push(v.state);
        if (v.rebuild?.kind === 'rebuild') {
          expect(v.rebuild.element).toBe('hot');
          progress.push(v.rebuild.percent);
        }
        await sleep(50);
        v = await volume(d, 'r5');
      }
      return v;
    })();
    void watch.catch(() => undefined); // awaited below; this only keeps a failure from being "unhandled" meanwhile
    // Reads touch the remote leg, fail it, and come back whole from parity.
    const degraded = path.join(dir, 'degraded.bin');
    const down = await nbdcopy(d.uri('r5'), degraded);
    expect(down.code, explain(down)).toBe(0);
    expect(await sha256Range(degraded, 0, COPY_BYTES)).toBe(want);
    const v = await watch;
    expect(states.some((s) => s === 'degraded' || s === 'rebuilding'), `states seen: ${[...new Set(states)].join(', ')}`).toBe(true);
    expect(progress.some((p) => p > 0 && p < 100), `progress seen: ${progress.join(', ')}`).toBe(true);
    expect(v.elements.map((e) => [e.name, e.state])).toEqual([['a0', 'active'], ['a1', 'active'], ['hot', 'active'], ['a2', 'active']]);
    expect(v.lastRebuild).toMatchObject({ kind: 'rebuild', element: 'hot', doneBytes: LEG_DATA_BYTES, totalBytes: LEG_DATA_BYTES });
    console.log(`raid5 rebuild onto a local spare, ${LEG_DATA_BYTES / MiB} MiB, throttle ${REBUILD_MIB_PER_SEC} MiB/s: ${v.lastRebuild!.mibPerSec.toFixed(1)} MiB/s`);

    expect(await badParityRows(['a0', 'a1', 'hot', 'a2'].map(legFile), 1, CHUNK_KIB * 1024, rows)).toEqual([]);
    const after = path.join(dir, 'after.bin');
    const again = await nbdcopy(d.uri('r5'), after);
    expect(again.code, explain(again)).toBe(0);
    expect(await sha256Range(after, 0, COPY_BYTES)).toBe(want);
    expect((await d.status()).elements.find((e) => e.name === 'n0')?.state).toBe('failed');
  }, 120_000);
});
