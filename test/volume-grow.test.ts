// Acceptance (issue 11, item 4): growing volumes of the real daemon. Element files are enlarged
// with `truncate`, then `onestack volume grow NAME --size S`; a new `nbdinfo` connection shows the
// new size, qemu-io writes and reads at the new end, our own NBD client connected before the grow
// learns the size with refreshSize() without reconnecting and can grow a volume itself with the
// RESIZE extension; a grown raid5 scrubs clean (parity of the new rows is valid); refusals say why.
import { readFileSync } from 'node:fs';
import { truncate, stat } from 'node:fs/promises';
import path from 'node:path';
import { NbdClient } from '@onestack/nbd';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI_MAIN, Daemon, REPO_ROOT } from './lib/daemon.js';
import { DATA_OFFSET_BYTES, MiB, removeDir, sparseFile, tempDir, writeConfig } from './lib/files.js';
import { exportSize, qemuIo, qemuIoFailed } from './lib/peers.js';
import { explain, missingTools, run } from './lib/proc.js';
import { startNbdkit, type NbdkitPeer } from './lib/remotes.js';

const ELEMENT_BYTES = DATA_OFFSET_BYTES + 16 * MiB;
const missing = missingTools(['nbdinfo', 'qemu-io', 'nbdkit']);

describe.skipIf(missing !== null)(`volume grow against the daemon${missing !== null ? ` (skipped: ${missing})` : ''}`, () => {
  let dir = '';
  let daemon: Daemon | null = null;
  let nbdkit: NbdkitPeer | null = null;
  let images: ReadonlyMap<string, string> = new Map();
  const clients: NbdClient[] = [];
  const d = (): Daemon => daemon!;
  const cli = (args: readonly string[]) => run(process.execPath, [CLI_MAIN, ...args, '--api', `127.0.0.1:${d().apiPort}`],
    { timeoutMs: 60_000, cwd: REPO_ROOT, env: { ...process.env, ONESTACK_DATA_DIR: d().dataDir } });
  const enlarge = async (names: readonly string[], bytes: number): Promise<void> => {
    for (const n of names) {
      const file = images.get(n)!;
      await truncate(file, (await stat(file)).size + bytes);
    }
  };
  const connect = async (volume: string): Promise<NbdClient> => {
    const c = await NbdClient.connect({ host: '127.0.0.1', port: d().nbdPort, exportName: volume, timeoutMs: 10_000 });
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    dir = tempDir('volume-grow');
    const names = ['l0', 'l1', 'm0', 'm1', 'p0', 'p1', 'p2'];
    const written = await writeConfig(dir, names.map((name) => ({ name, sizeBytes: ELEMENT_BYTES })), [
      { name: 'lin', layout: 'linear', elements: ['l0', 'l1'] },
      { name: 'mir', layout: 'raid1', elements: ['m0', 'm1'] },
      { name: 'par', layout: 'raid5', elements: ['p0', 'p1', 'p2'], chunkKiB: 64 },
    ]);
    images = written.images;
    // A remote leg: nbdkit serving a file with room beyond what the volume first uses.
    await sparseFile(path.join(dir, 'remote.img'), DATA_OFFSET_BYTES + 32 * MiB);
    await sparseFile(path.join(dir, 'rl.img'), DATA_OFFSET_BYTES + 32 * MiB);
    nbdkit = await startNbdkit(['file', path.join(dir, 'remote.img')]);
    daemon = await Daemon.start({ dataDir: path.join(dir, 'data'), configPath: written.configPath });
  }, 60_000);

  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await daemon?.stop();
    await nbdkit?.stop();
    if (dir !== '') removeDir(dir);
  });

  it('linear: truncate the last file larger, `volume grow`; nbdinfo and qemu-io see the new end; a client connected before learns it without reconnecting', async () => {
    const before = await connect('lin');
    expect(before.sizeBytes).toBe(32 * MiB);
    const lines: string[] = [];
    before.events.on('size', (now: number, was: number) => lines.push(`${was}->${now}`));
    await enlarge(['l1'], 16 * MiB);
    const grow = await cli(['volume', 'grow', 'lin', '--size', '48M']);
    expect(grow.code, explain(grow)).toBe(0);
    expect(grow.stdout).toContain('volume lin: 48.00 MiB (50331648 bytes)');
    expect(await exportSize(d().uri('lin'))).toBe(48 * MiB);
    const w = await qemuIo(d().uri('lin'), ['write -P 0x7e 47M 1M', 'flush', 'read -P 0x7e 47M 1M', 'read -P 0 32M 15M']);
    expect(qemuIoFailed(w), explain(w)).toBe(false);
    // The client's connection predates the grow: it still believes 32 MiB, until it asks.
    expect(before.sizeBytes).toBe(32 * MiB);
    expect(await before.refreshSize()).toBe(48 * MiB);
    expect(lines).toEqual([`${32 * MiB}->${48 * MiB}`]);
    const back = new Uint8Array(MiB);
    await before.read(47 * MiB, back);
    expect(back.every((b) => b === 0x7e)).toBe(true);
  });

  it('raid1: our client grows the volume itself with NBD_CMD_RESIZE, then `volume grow` again; refusals say why', async () => {
    await enlarge(['m0', 'm1'], 16 * MiB);
    const c = await connect('mir');
    expect(c.info.canResize).toBe(true);
    expect(c.sizeBytes).toBe(16 * MiB);
    await c.resize(24 * MiB);
    expect(c.sizeBytes).toBe(24 * MiB);
    const tail = new Uint8Array(64 * 1024).fill(0x42);
    await c.write(24 * MiB - tail.length, tail);
    await c.flush();
    expect(await exportSize(d().uri('mir'))).toBe(24 * MiB);
    const r = await qemuIo(d().uri('mir'), [`read -P 0x42 ${24 * MiB - tail.length} ${tail.length}`]);
    expect(qemuIoFailed(r), explain(r)).toBe(false);
    // Too large for the elements: the client gets ENOSPC, the CLI names how much they hold.
    await expect(c.resize(64 * MiB)).rejects.toMatchObject({ code: 'ENOSPC' });
    // Bad input (EngineError invalid): exit 2, as for other requests the daemon finds invalid.
    const big = await cli(['volume', 'grow', 'mir', '--size', '1G']);
    expect(big.code, explain(big)).toBe(2);
    expect(big.stderr).toMatch(/1073741824 bytes is more than its elements hold: at most 33554432 bytes as raid1 \(data bytes after the 4 MiB header: m0 33554432, m1 33554432\)/);
    const shrink = await cli(['volume', 'grow', 'mir', '--size', '8M']);
    expect(shrink.code, explain(shrink)).toBe(2);
    expect(shrink.stderr).toContain('shrinking is not supported');
    const usage = await cli(['volume', 'grow', 'mir']);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain('volume grow needs --size');
    // The API checks the body itself.
    const token = readFileSync(path.join(d().dataDir, 'api-token'), 'utf8').trim();
    const bad = await fetch(`http://127.0.0.1:${d().apiPort}/api/v1/volumes/mir/grow`, {
      method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ sizeBytes: '32M' }),
    });
    expect(bad.status).toBe(400);
    expect(await bad.text()).toContain('sizeBytes must be a positive integer');
    const grow = await cli(['volume', 'grow', 'mir', '--size', '32M']);
    expect(grow.code, explain(grow)).toBe(0);
    expect(await c.refreshSize()).toBe(32 * MiB);
    const w = await qemuIo(d().uri('mir'), ['write -P 0x17 31M 1M', 'flush', 'read -P 0x17 31M 1M']);
    expect(qemuIoFailed(w), explain(w)).toBe(false);
    const scrub = await cli(['volume', 'scrub', 'mir', '--wait']);
    expect(scrub.code, explain(scrub)).toBe(0);
    expect(scrub.stdout).toMatch(/32\.00 MiB compared.*no mismatch/);
  });

  it('raid5: rows are appended on every element, the data before stays, the new rows scrub clean', async () => {
    const seed = await qemuIo(d().uri('par'), ['write -P 0x33 0 32M', 'flush']);
    expect(qemuIoFailed(seed), explain(seed)).toBe(false);
    await enlarge(['p0', 'p1', 'p2'], 8 * MiB);
    const grow = await cli(['volume', 'grow', 'par', '--size', '48M']);
    expect(grow.code, explain(grow)).toBe(0);
    expect(await exportSize(d().uri('par'))).toBe(48 * MiB);
    const w = await qemuIo(d().uri('par'), ['read -P 0x33 0 32M', 'read -P 0 32M 16M', 'write -P 0x44 40M 3M', 'flush', 'read -P 0x44 40M 3M']);
    expect(qemuIoFailed(w), explain(w)).toBe(false);
    const scrub = await cli(['volume', 'scrub', 'par', '--wait']);
    expect(scrub.code, explain(scrub)).toBe(0);
    expect(scrub.stdout).toMatch(/48\.00 MiB compared.*no mismatch/);
  });

  it('raid1 of a local file and an nbdkit export: grows into the room both have, then into a grown export, zeroing the remote leg over NBD', async () => {
    for (const [name, uri] of [['rl', `file:${path.join(dir, 'rl.img')}`], ['rr', `${nbdkit!.uri}remote`]] as const) {
      const add = await cli(['element', 'add', uri, '--name', name]);
      expect(add.code, explain(add)).toBe(0);
    }
    const create = await cli(['volume', 'create', 'rv', '--layout', 'raid1', '--element', 'rl', '--element', 'rr', '--size', '16M']);
    expect(create.code, explain(create)).toBe(0);
    const seed = await qemuIo(d().uri('rv'), ['write -P 0x61 0 16M', 'flush']);
    expect(qemuIoFailed(seed), explain(seed)).toBe(false);
    const grow = await cli(['volume', 'grow', 'rv', '--size', '32M']);
    expect(grow.code, explain(grow)).toBe(0);
    expect(await exportSize(d().uri('rv'))).toBe(32 * MiB);
    const w = await qemuIo(d().uri('rv'), ['read -P 0x61 0 16M', 'read -P 0 16M 16M', 'write -P 0x62 30M 2M', 'flush']);
    expect(qemuIoFailed(w), explain(w)).toBe(false);
    const scrub = await cli(['volume', 'scrub', 'rv', '--wait']);
    expect(scrub.code, explain(scrub)).toBe(0);
    expect(scrub.stdout).toMatch(/32\.00 MiB compared.*no mismatch/);
    const more = await cli(['volume', 'grow', 'rv', '--size', '48M']);
    expect(more.code).toBe(2);
    expect(more.stderr).toMatch(/at most 33554432 bytes as raid1 \(data bytes after the 4 MiB header: rl 33554432, rr 33554432\)/);
    // Now the remote export grows too (nbdkit's file plugin sizes each new connection): the data
    // path's connection to it learns the size when the grow's zeroing goes past the old end.
    await truncate(path.join(dir, 'remote.img'), DATA_OFFSET_BYTES + 48 * MiB);
    await truncate(path.join(dir, 'rl.img'), DATA_OFFSET_BYTES + 48 * MiB);
    const grown = await cli(['volume', 'grow', 'rv', '--size', '48M']);
    expect(grown.code, explain(grown)).toBe(0);
    expect(await exportSize(d().uri('rv'))).toBe(48 * MiB);
    const w2 = await qemuIo(d().uri('rv'), ['read -P 0 32M 14M', 'write -P 0x63 46M 2M', 'flush', 'read -P 0x63 46M 2M']);
    expect(qemuIoFailed(w2), explain(w2)).toBe(false);
    const scrub2 = await cli(['volume', 'scrub', 'rv', '--wait']);
    expect(scrub2.code, explain(scrub2)).toBe(0);
    expect(scrub2.stdout).toMatch(/48\.00 MiB compared.*no mismatch/);
  });

  it('the grown sizes survive a restart', async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
    const configPath = path.join(dir, 'onestack.yaml');
    const { nbdPort, apiPort, dataDir } = d();
    await d().stop();
    daemon = await Daemon.start({ dataDir, configPath, nbdPort, apiPort });
    expect(await exportSize(d().uri('lin'))).toBe(48 * MiB);
    expect(await exportSize(d().uri('mir'))).toBe(32 * MiB);
    expect(await exportSize(d().uri('par'))).toBe(48 * MiB);
    expect(await exportSize(d().uri('rv'))).toBe(48 * MiB); // a run-time volume: its creation --size no longer applies
    const r = await qemuIo(d().uri('lin'), ['read -P 0x7e 47M 1M']);
    expect(qemuIoFailed(r), explain(r)).toBe(false);
  }, 60_000);
});
