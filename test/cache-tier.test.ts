// Issue 6 (5b): a local cache tier on remote elements, against a real nbdkit and qemu-io. A
// second read of the same range is served from the tier (its hits rise in status); writes go
// through to the remote before they complete and never leave stale bytes in the tier; and a tier
// is not a replica: with nbdkit gone a linear volume fails its reads (cached or not) while a
// raid1 volume goes on from its local leg, and reads come back once nbdkit does.
import { existsSync, openSync, statSync, writeSync, closeSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Daemon } from './lib/daemon.js';
import { DATA_OFFSET_BYTES, MiB, readAt, removeDir, sparseFile, tempDir, writeConfig } from './lib/files.js';
import { qemuIo, qemuIoFailed } from './lib/peers.js';
import { explain, missingTools, sleep } from './lib/proc.js';
import { startNbdkit, type NbdkitPeer } from './lib/remotes.js';

const ELEMENT_BYTES = DATA_OFFSET_BYTES + 64 * MiB;
const TIER_MIB = 16;
/** Volume offset of a region written into the remote's file before the daemon starts. */
const SEEDED = 16 * MiB;
const missing = missingTools(['nbdkit', 'qemu-io']);

interface TierStatus { path: string; sizeMiB: number; hits: number; misses: number; hitRatio: number; enabled: boolean }
interface StatusWithTier { elements: readonly { name: string; state: string; cacheTier?: TierStatus }[] }

describe.skipIf(missing !== null)(`cache tier on remote elements${missing !== null ? ` (skipped: ${missing})` : ''}`, () => {
  let dir = '';
  let nbdkit: NbdkitPeer | null = null;
  let daemon: Daemon | null = null;
  const file = (name: string): string => path.join(dir, `${name}.img`);
  const tierFile = (name: string): string => path.join(dir, 'tier', `${name}.cache`);

  async function tier(name: string): Promise<TierStatus> {
    const status = (await daemon!.status()) as unknown as StatusWithTier;
    const t = status.elements.find((e) => e.name === name)?.cacheTier;
    if (t === undefined) throw new Error(`element ${name} shows no cacheTier: ${JSON.stringify(status.elements)}`);
    return t;
  }

  async function io(volume: string, commands: readonly string[]): Promise<void> {
    const r = await qemuIo(daemon!.uri(volume), commands);
    expect(qemuIoFailed(r), `${commands.join('; ')}\n${explain(r)}\n${daemon!.logs()}`).toBe(false);
  }

  beforeAll(async () => {
    dir = tempDir('cache-tier');
    for (const name of ['n0', 'n1']) await sparseFile(file(name), ELEMENT_BYTES);
    const fd = openSync(file('n0'), 'r+');
    writeSync(fd, Buffer.alloc(MiB, 0x5a), 0, MiB, DATA_OFFSET_BYTES + SEEDED); // what "was there" on the remote
    closeSync(fd);
    nbdkit = await startNbdkit(['file', `dir=${dir}`]);
    const remote = (name: string, img: string) => ({
      name, uri: `nbd://127.0.0.1:${nbdkit!.port}/${img}.img`,
      options: { timeoutMs: 3000, cacheTier: { path: `./tier/${name}.cache`, sizeMiB: TIER_MIB } },
    });
    const { configPath } = await writeConfig(dir, [remote('r0', 'n0'), remote('r1', 'n1'), { name: 'l1', sizeBytes: ELEMENT_BYTES }], [
      { name: 'lin', layout: 'linear', elements: ['r0'] },
      { name: 'mir', layout: 'raid1', elements: ['l1', 'r1'] },
    ], ['cache: { readMiB: 0 }']); // RAM cache off: every read reaches the element
    daemon = await Daemon.start({ dataDir: path.join(dir, 'data'), configPath });
  }, 120_000);

  afterAll(async () => {
    await daemon?.stop();
    await nbdkit?.stop();
    if (dir !== '') removeDir(dir);
  });

  it('status shows each tier, empty and on; the cache file is sized at start', async () => {
    for (const name of ['r0', 'r1']) {
      expect(await tier(name)).toEqual({ path: tierFile(name), sizeMiB: TIER_MIB, blockKiB: 4, hits: 0, misses: 0, hitRatio: 0, enabled: true });
    }
    expect(existsSync(tierFile('r0'))).toBe(true);
    expect(statSync(tierFile('r0')).size).toBe(TIER_MIB * MiB);
  });

  it('reading the same range twice: the first read misses and fills, the second hits', async () => {
    const before = await tier('r0');
    await io('lin', [`read -P 0x5a ${SEEDED} 1m`]);
    const once = await tier('r0');
    expect(once.misses).toBeGreaterThan(before.misses);
    expect(once.hits).toBe(before.hits);
    await io('lin', [`read -P 0x5a ${SEEDED} 1m`]);
    const twice = await tier('r0');
    expect(twice.hits).toBeGreaterThan(once.hits);
    expect(twice.misses).toBe(once.misses);
    expect(twice.hitRatio).toBeGreaterThan(0);
  });

  it('write-through: new data reads back (no stale tier), and the file behind nbdkit holds it', async () => {
    const partialOff = SEEDED + 520 * 1024; // 1000 bytes inside a cached 4 KiB block: dropped, not patched
    await io('lin', [`write -P 0x22 ${SEEDED} 512k`, `write -P 0x33 ${partialOff} 1000`]);
    const before = await tier('r0');
    await io('lin', [`read -P 0x22 ${SEEDED} 512k`, `read -P 0x5a ${SEEDED + 512 * 1024} 8k`, `read -P 0x33 ${partialOff} 1000`,
      `read -P 0x5a ${partialOff + 1000} ${SEEDED + MiB - partialOff - 1000}`]);
    const after = await tier('r0');
    expect(after.hits).toBeGreaterThan(before.hits); // the written blocks were updated in the tier, not just dropped
    const onRemote = await readAt(file('n0'), DATA_OFFSET_BYTES + SEEDED, MiB);
    expect(onRemote.subarray(0, 512 * 1024).every((b) => b === 0x22)).toBe(true);
    expect(onRemote.subarray(520 * 1024, 520 * 1024 + 1000).every((b) => b === 0x33)).toBe(true);
    expect(onRemote[520 * 1024 - 1]).toBe(0x5a);
    expect(onRemote[520 * 1024 + 1000]).toBe(0x5a);
  });

  it('trim and write-zeroes drop what the tier held', async () => {
    await io('lin', [`write -z ${SEEDED} 64k`, `read -P 0 ${SEEDED} 64k`, `discard ${SEEDED + 64 * 1024} 64k`, `read -P 0 ${SEEDED + 64 * 1024} 64k`,
      `read -P 0x22 ${SEEDED + 128 * 1024} 64k`]);
  });

  it('a raid1 volume with a tiered remote leg reads and writes as before', async () => {
    await io('mir', ['write -P 0x44 0 1m', 'read -P 0x44 0 1m', 'read -P 0x44 0 1m']);
    const onRemote = await readAt(file('n1'), DATA_OFFSET_BYTES, MiB);
    expect(onRemote.every((b) => b === 0x44)).toBe(true);
  });

  it('nbdkit gone: linear reads fail even where the tier holds the blocks; raid1 goes on; reads return with nbdkit', async () => {
    const port = nbdkit!.port;
    const cached = `read -P 0x22 ${SEEDED + 128 * 1024} 384k`; // written above, after the zeroed 128 KiB
    const hits = (await tier('r0')).hits;
    await io('lin', [cached]); // cached, and the remote is up: served from the tier
    expect((await tier('r0')).hits).toBeGreaterThan(hits);
    await nbdkit!.stop();
    await sleep(200); // let the client see its connection close
    const hitsBefore = (await tier('r0')).hits;
    const dead = await qemuIo(daemon!.uri('lin'), [cached], 60_000);
    expect(qemuIoFailed(dead), `a tier is not a replica: ${explain(dead)}`).toBe(true);
    expect((await tier('r0')).hits).toBe(hitsBefore); // nothing was answered from the tier
    await io('mir', ['write -P 0x45 0 64k', 'read -P 0x45 0 64k', 'read -P 0x44 64k 64k']);
    nbdkit = await startNbdkit(['file', `dir=${dir}`], port);
    let last = '';
    for (let attempt = 0; attempt < 40; attempt++) { // the client backs off after failed connects (≤ 5 s)
      const r = await qemuIo(daemon!.uri('lin'), [cached]);
      if (!qemuIoFailed(r)) return;
      last = explain(r);
      await sleep(250);
    }
    throw new Error(`reads did not come back after nbdkit restarted: ${last}\n${daemon!.logs()}`);
  }, 120_000);
});
