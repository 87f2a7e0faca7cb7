// Issue 11 follow-up: a write-behind leg on an integrity volume, end to end. A raid1 of a local
// page-cache image and an nbdkit remote behind `--filter=delay` (wdelay 10 ms), integrity on, the
// remote written behind. Under fio 4k randwrite the lag shows (and stays within maxLagMiB) while
// no read goes to the remote; a scrub started while it lags finds nothing (it waits for the leg);
// after a flush the legs' data areas are identical and the remote's checksum area describes its
// data (its checksums followed its data); a byte flipped on the LOCAL leg is then caught on read,
// served from the remote's verified copy and rewritten. Then `volume create --write-behind` and
// the API's `writeBehind` body field create such volumes, and bad input is refused.
import path from 'node:path';
import { readFile, writeFile } from 'node:fs/promises';
import { blockChecksums } from '@onestack/engine';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI_MAIN, Daemon, REPO_ROOT } from './lib/daemon.js';
import { DATA_OFFSET_BYTES, MiB, flipBytes, readAt, removeDir, sha256Range, sparseFile, tempDir } from './lib/files.js';
import { fio, qemuIo, qemuIoFailed } from './lib/peers.js';
import { explain, missingTools, run, sleep } from './lib/proc.js';
import { startNbdkit, type NbdkitPeer } from './lib/remotes.js';

const ELEMENT_BYTES = DATA_OFFSET_BYTES + 64 * MiB;
const MAX_LAG_MIB = 4;
const missing = missingTools(['fio', 'nbdkit', 'qemu-io']);

interface WbStatus { lagBytes: number; maxLagBytes: number; writesQueued: number; droppedWrites: number; writesDone: number }
interface ElementView { name: string; state: string; writeBehind?: WbStatus; integrity?: { mismatches: number; repaired: number; unrecoverable: number }; stats?: { readOps: number } }
interface VolumeView { name: string; state: string; sizeBytes: number; elements: ElementView[] }

describe.skipIf(missing !== null)(`write-behind leg on an integrity volume${missing !== null ? ` (skipped: ${missing})` : ''}`, () => {
  let dir = '';
  let daemon: Daemon | null = null;
  let remote: NbdkitPeer | null = null;
  const img = (name: string): string => path.join(dir, `${name}.img`);
  const volume = async (name = 'm'): Promise<VolumeView> => ((await daemon!.status()).volumes as unknown as VolumeView[]).find((v) => v.name === name)!;
  const leg = async (name: string, vol = 'm'): Promise<ElementView> => (await volume(vol)).elements.find((e) => e.name === name)!;
  const remoteReads = async (): Promise<number> => ((await daemon!.status()).elements.find((e) => e.name === 'r') as unknown as ElementView).stats!.readOps;
  const cli = (args: readonly string[]) => run(process.execPath, [CLI_MAIN, ...args, '--api', `127.0.0.1:${daemon!.apiPort}`],
    { timeoutMs: 60_000, cwd: REPO_ROOT, env: { ...process.env, ONESTACK_DATA_DIR: daemon!.dataDir } });
  const api = async (method: string, route: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> => {
    const token = (await readFile(path.join(daemon!.dataDir, 'api-token'), 'utf8')).trim();
    const res = await fetch(`http://127.0.0.1:${daemon!.apiPort}/api/v1${route}`, {
      method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    return { status: res.status, json: (await res.json()) as Record<string, unknown> };
  };

  beforeAll(async () => {
    dir = tempDir('wb-integrity');
    for (const n of ['a', 'r', 'c', 'd', 'e', 'f']) await sparseFile(img(n), ELEMENT_BYTES);
    remote = await startNbdkit(['-t', '64', '--filter=delay', 'file', img('r'), 'wdelay=10ms']);
    const configPath = path.join(dir, 'onestack.yaml');
    await writeFile(configPath, [
      'cache: { readMiB: 0 }',
      'elements:',
      `  - { name: a, uri: "file:${img('a')}", cache: writeback }`,
      `  - { name: r, uri: "${remote.uri}", timeoutMs: 10000 }`,
      ...['c', 'd', 'e', 'f'].map((n) => `  - { name: ${n}, uri: "file:${img(n)}", cache: writeback }`),
      'volumes:',
      `  - { name: m, layout: raid1, elements: [a, r], bitmapRegionKiB: 64, integrity: true, writeBehind: { element: r, maxLagMiB: ${MAX_LAG_MIB} } }`,
      '',
    ].join('\n'));
    daemon = await Daemon.start({ dataDir: path.join(dir, 'data'), configPath });
  }, 60_000);

  afterAll(async () => {
    await daemon?.stop();
    await remote?.stop();
    if (dir !== '') removeDir(dir);
  });

  it('lags under fio without serving reads, scrub waits for it, flush leaves its data and checksums in step; the local leg is repaired from it', async () => {
    const size = (await volume()).sizeBytes;
    const lags: number[] = [];
    let done = false;
    const job = fio(['--name=wbi', '--ioengine=nbd', `--uri=${daemon!.uri('m')}`, '--rw=randwrite', '--bs=4k', '--iodepth=32', '--size=32m',
      '--runtime=5', '--time_based', '--randrepeat=0', '--output-format=json'], dir).finally(() => { done = true; });
    const poll = (async () => {
      while (!done) {
        lags.push((await leg('r')).writeBehind?.lagBytes ?? -1);
        await sleep(50);
      }
    })();
    // A scrub while the leg lags: each unit waits until the leg holds what was acknowledged there.
    await sleep(1000);
    const scrub = await cli(['volume', 'scrub', 'm', '--wait', '--json']);
    await poll;
    const r = await job;
    expect(r.result.code, explain(r.result)).toBe(0);
    expect(r.jobs[0]!.error).toBe(0);
    expect(Math.max(...lags), `lags seen: ${lags.join(',')}`).toBeGreaterThan(0);
    expect(Math.max(...lags)).toBeLessThanOrEqual(MAX_LAG_MIB * MiB);
    expect(scrub.code, explain(scrub)).toBe(0);
    expect(JSON.parse(scrub.stdout)).toMatchObject({ kind: 'check', outcome: 'done', mismatchedUnits: 0, byElement: [] });

    // From here on reads too (the scrub read every leg): none may come from the write-behind leg.
    const readsBefore = await remoteReads();
    const w = await qemuIo(daemon!.uri('m'), ['write -P 0x5a 0 8M', 'flush', 'read -P 0x5a 0 8M']);
    expect(qemuIoFailed(w), explain(w)).toBe(false);
    const wb = (await leg('r')).writeBehind!;
    expect(wb).toMatchObject({ lagBytes: 0, writesQueued: 0, droppedWrites: 0 });
    expect(wb.writesDone).toBeGreaterThan(1000);
    expect(await sha256Range(img('r'), DATA_OFFSET_BYTES, size)).toBe(await sha256Range(img('a'), DATA_OFFSET_BYTES, size));
    // The remote's checksum area (superblock bytes 192..200 say where) describes its first 8 MiB.
    const area = Number((await readAt(img('r'), 192, 8)).readBigUInt64LE(0));
    const stored = await readAt(img('r'), area, 2048 * 4);
    const computed = new Uint32Array(2048);
    blockChecksums().crc32cBlocks(await readAt(img('r'), DATA_OFFSET_BYTES, 8 * MiB), 4096, computed);
    const storedSums = new Uint32Array(stored.buffer, stored.byteOffset, 2048);
    expect(Array.from(storedSums).every((s, i) => s === (computed[i] === 0 ? 1 : computed[i]))).toBe(true);
    expect(await remoteReads(), 'no read came from the write-behind leg').toBe(readsBefore);

    // A bad byte on the local leg: the read is served from the remote's verified copy and repaired.
    flipBytes(img('a'), DATA_OFFSET_BYTES + 3 * MiB + 17, 1);
    const read = await qemuIo(daemon!.uri('m'), ['read -P 0x5a 3M 64k']);
    expect(qemuIoFailed(read), explain(read)).toBe(false);
    expect((await leg('a')).integrity).toMatchObject({ mismatches: 1, repaired: 1, unrecoverable: 0 });
    expect((await readAt(img('a'), DATA_OFFSET_BYTES + 3 * MiB, 4096)).equals(Buffer.alloc(4096, 0x5a))).toBe(true);
    expect(await remoteReads()).toBeGreaterThan(readsBefore); // the repair read the remote's copy
  }, 180_000);

  it('volume create --write-behind ELEMENT[:maxLagMiB] and the API body writeBehind; bad input refused, nothing created', async () => {
    const made = await cli(['volume', 'create', 'w', '--layout', 'raid1', '--element', 'c', '--element', 'd', '--integrity', '--write-behind', 'd:8']);
    expect(made.code, explain(made)).toBe(0);
    expect((await leg('d', 'w')).writeBehind).toMatchObject({ maxLagBytes: 8 * MiB, lagBytes: 0 });
    const io = await qemuIo(daemon!.uri('w'), ['write -P 0x33 0 1M', 'flush', 'read -P 0x33 0 1M']);
    expect(qemuIoFailed(io), explain(io)).toBe(false);
    expect((await leg('d', 'w')).writeBehind!.writesDone).toBeGreaterThan(0);

    for (const [args, why] of [
      [['--write-behind', 'zz'], /--write-behind: zz is not one of this volume's elements/],
      [['--write-behind', 'f:0'], /maxLagMiB/],
      [['--write-behind', 'f:2000'], /maxLagMiB/],
    ] as const) {
      const bad = await cli(['volume', 'create', 'bad', '--layout', 'raid1', '--element', 'e', '--element', 'f', ...args]);
      expect(bad.code, explain(bad)).toBe(2);
      expect(bad.stderr).toMatch(why);
    }
    const raid0 = await cli(['volume', 'create', 'bad', '--layout', 'raid0', '--element', 'e', '--element', 'f', '--write-behind', 'f']);
    expect(raid0.code).toBe(2);
    expect(raid0.stderr).toMatch(/raid1 and raid10/);

    const refused = await api('POST', '/volumes', { name: 'x', layout: 'raid1', elements: ['e', 'f'], writeBehind: { element: 'f', lag: 1 } });
    expect(refused.status).toBe(400);
    expect(String(refused.json['error'])).toMatch(/unknown field "lag"/);
    const notLeg = await api('POST', '/volumes', { name: 'x', layout: 'raid1', elements: ['e', 'f'], writeBehind: { element: 'a' } });
    expect(notLeg.status).toBe(400);
    expect((await daemon!.status()).volumes.map((v) => v.name)).not.toContain('x');
    const ok = await api('POST', '/volumes', { name: 'x', layout: 'raid1', elements: ['e', 'f'], writeBehind: { element: 'e', maxLagMiB: 2, drainOnFlush: false } });
    expect(ok.status, JSON.stringify(ok.json)).toBe(201);
    expect((await leg('e', 'x')).writeBehind).toMatchObject({ maxLagBytes: 2 * MiB });
  }, 120_000);
});
