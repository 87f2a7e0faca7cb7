// Acceptance (issue 5): the daemon restarted with its elements listed in another order serves the
// same volumes with the same data; an element holding another array's superblock is refused by
// name, and nothing is written to it.
import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Daemon } from './lib/daemon.js';
import { MiB, readAt, removeDir, tempDir, writeConfig, type VolumeSpec } from './lib/files.js';
import { qemuIo, qemuIoFailed } from './lib/peers.js';
import { explain } from './lib/proc.js';

const ELEMENT_BYTES = 36 * MiB;
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

describe('elements listed in any order', () => {
  let dir = '';
  let configPath = '';
  let daemon: Daemon | null = null;
  const volumes: VolumeSpec[] = [
    { name: 'stripes', layout: 'raid0', elements: ['a', 'b', 'c'], chunkKiB: 64 },
    { name: 'pairs', layout: 'raid10', elements: ['d', 'e', 'f', 'g'], chunkKiB: 64 },
  ];

  async function readVolume(d: Daemon, name: string, bytes: number): Promise<string> {
    const out = path.join(dir, `${name}.out`);
    const r = await qemuIo(d.uri(name), [`read -v 0 ${bytes}`]);
    expect(qemuIoFailed(r), explain(r)).toBe(false);
    // Only the hex dump: qemu-io's summary line carries timings.
    const dump = r.stdout.split('\n').filter((l) => /^[0-9a-f]{8}:/.test(l)).join('\n');
    expect(dump.length).toBeGreaterThan(0);
    await writeFile(out, dump);
    return sha(Buffer.from(dump));
  }

  beforeAll(async () => {
    dir = tempDir('order');
    ({ configPath } = await writeConfig(dir, ['a', 'b', 'c', 'd', 'e', 'f', 'g'].map((name) => ({ name, sizeBytes: ELEMENT_BYTES })), volumes));
    daemon = await Daemon.start({ dataDir: path.join(dir, 'data'), configPath });
  }, 60_000);

  afterAll(async () => {
    await daemon?.stop();
    if (dir !== '') removeDir(dir);
  });

  it('restart with shuffled element lists: same volumes, same data (sha256)', async () => {
    const before: Record<string, string> = {};
    for (const [i, v] of volumes.entries()) {
      const w = await qemuIo(daemon!.uri(v.name), [`write -P 0x${(0x41 + i).toString(16)} 0 1m`, `write -P 0x${(0x61 + i).toString(16)} 1m 640k`, 'flush']);
      expect(qemuIoFailed(w), explain(w)).toBe(false);
      before[v.name] = await readVolume(daemon!, v.name, 2 * MiB);
    }
    await daemon!.stop();
    const shuffled: VolumeSpec[] = [
      { ...volumes[0]!, elements: ['c', 'a', 'b'] },
      { ...volumes[1]!, elements: ['g', 'e', 'd', 'f'] },
    ];
    await writeConfig(dir, ['a', 'b', 'c', 'd', 'e', 'f', 'g'].map((name) => ({ name, sizeBytes: ELEMENT_BYTES })), shuffled, [], { keepImages: true });
    daemon = await Daemon.start({ dataDir: path.join(dir, 'data'), configPath });
    for (const v of volumes) expect(await readVolume(daemon, v.name, 2 * MiB), v.name).toBe(before[v.name]);
    const status = await daemon.status();
    expect(status.volumes.find((v) => v.name === 'stripes')?.elements.map((e) => e.name)).toEqual(['a', 'b', 'c']);
    expect(status.volumes.map((v) => v.state)).toEqual(['optimal', 'optimal']);
  }, 60_000);

  it('an element of another array is refused by name, its superblock untouched', async () => {
    await daemon!.stop();
    const sbBefore = await readAt(path.join(dir, 'a.img'), 0, 4096);
    // `stripes` is gone from the config, so only its superblock on `a` can say `a` is taken.
    const thief: VolumeSpec[] = [volumes[1]!, { name: 'thief', layout: 'raid1', elements: ['a', 'x'] }];
    await writeConfig(dir, ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'x'].map((name) => ({ name, sizeBytes: ELEMENT_BYTES })), thief, [], { keepImages: true });
    const err = await Daemon.start({ dataDir: path.join(dir, 'data'), configPath }).then(() => null, (e: Error) => e.message);
    daemon = null;
    expect(err).toMatch(/element a belongs to volume "stripes"/);
    expect(Buffer.compare(await readAt(path.join(dir, 'a.img'), 0, 4096), sbBefore)).toBe(0);
  }, 60_000);
});
