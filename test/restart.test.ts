// Acceptance: a restart with the same data dir serves the same data — the embedded default
// (created on first start) and a configured raid0 array (reassembled from its superblocks).
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Daemon } from './lib/daemon.js';
import { DATA_OFFSET_BYTES, GiB, MiB, firstDifference, removeDir, tempDir, writeConfig } from './lib/files.js';
import { exportSize, qemuIo, qemuIoFailed } from './lib/peers.js';
import { explain } from './lib/proc.js';

const WRITES = ['write -P 0x1e 0 64k', 'write -P 0x2e 5M 1M', 'write -P 0x3e 700M 4k', 'write -P 0x4e 1073676288 64k', 'flush'];
const READS = ['read -P 0x1e 0 64k', 'read -P 0x2e 5M 1M', 'read -P 0x3e 700M 4k', 'read -P 0x4e 1073676288 64k', 'read -P 0 64k 1M'];

describe('restart with the same data dir', () => {
  const dirs: string[] = [];
  const daemons: Daemon[] = [];
  afterAll(async () => {
    for (const d of daemons) await d.stop(5_000);
    for (const d of dirs) removeDir(d);
  });

  it('embedded default: write, SIGTERM (clean exit 0), start again, same data; images in the data dir', async () => {
    const dir = tempDir('restart-default');
    dirs.push(dir);
    const dataDir = path.join(dir, 'data');
    const first = await Daemon.start({ dataDir });
    daemons.push(first);
    expect(await exportSize(first.uri())).toBe(1 * GiB);
    const w = await qemuIo(first.uri(), WRITES);
    expect(qemuIoFailed(w), explain(w)).toBe(false);
    const stopped = await first.stop();
    expect(stopped, `clean stop on SIGTERM\n${first.logs()}`).toMatchObject({ code: 0, killed: false });

    for (const img of ['disk0.img', 'disk1.img']) {
      expect(existsSync(path.join(dataDir, img)), img).toBe(true);
      expect(statSync(path.join(dataDir, img)).size).toBeGreaterThanOrEqual(1 * GiB);
    }
    const token = path.join(dataDir, 'api-token');
    expect(existsSync(token), 'API token created in the data dir').toBe(true);
    expect(statSync(token).mode & 0o777, 'api-token mode 0600').toBe(0o600);

    const second = await Daemon.start({ dataDir, nbdPort: first.nbdPort, apiPort: first.apiPort });
    daemons.push(second);
    const r = await qemuIo(second.uri(), READS);
    expect(qemuIoFailed(r), explain(r)).toBe(false);
    expect(await exportSize(second.uri())).toBe(1 * GiB);
  });

  it('raid0 from a config: Ctrl-C (SIGINT) exits 0, restart reassembles the array and serves the same data', async () => {
    const dir = tempDir('restart-raid0');
    dirs.push(dir);
    const { configPath } = await writeConfig(dir,
      [{ name: 's0', sizeBytes: 400 * MiB }, { name: 's1', sizeBytes: 400 * MiB }, { name: 's2', sizeBytes: 400 * MiB }],
      [{ name: 'stripe', layout: 'raid0', elements: ['s0', 's1', 's2'], chunkKiB: 128 }]);
    const dataDir = path.join(dir, 'data');
    const first = await Daemon.start({ dataDir, configPath });
    daemons.push(first);
    const size = await exportSize(first.uri('stripe'));
    const w = await qemuIo(first.uri('stripe'), [...WRITES.slice(0, 3), `write -P 0x5e ${size - 128 * 1024} 128k`, 'flush']);
    expect(qemuIoFailed(w), explain(w)).toBe(false);
    // Ctrl-C is how ./scripts/start.sh users stop it.
    expect(await first.stop(15_000, 'SIGINT'), `clean stop on SIGINT\n${first.logs()}`).toMatchObject({ code: 0, killed: false });

    const second = await Daemon.start({ dataDir, configPath });
    daemons.push(second);
    expect(await exportSize(second.uri('stripe'))).toBe(size);
    const r = await qemuIo(second.uri('stripe'), [...READS.slice(0, 3), `read -P 0x5e ${size - 128 * 1024} 128k`, 'read -P 0 64k 1M']);
    expect(qemuIoFailed(r), explain(r)).toBe(false);
  });

  it('raid1 after a crash (SIGKILL): restart serves every acknowledged write, legs identical', async () => {
    const dir = tempDir('restart-crash');
    dirs.push(dir);
    const { configPath, images } = await writeConfig(dir,
      [{ name: 'm0', sizeBytes: 128 * MiB }, { name: 'm1', sizeBytes: 128 * MiB }],
      [{ name: 'mirror', layout: 'raid1', elements: ['m0', 'm1'] }]);
    const dataDir = path.join(dir, 'data');
    const first = await Daemon.start({ dataDir, configPath });
    daemons.push(first);
    // Acknowledged by FUA, by flush, and plainly (page cache survives a process crash).
    const w = await qemuIo(first.uri('mirror'), ['write -f -P 0x61 0 1M', 'write -P 0x62 8M 1M', 'flush', 'write -P 0x63 16M 64k']);
    expect(qemuIoFailed(w), explain(w)).toBe(false);
    await first.crash();

    const second = await Daemon.start({ dataDir, configPath });
    daemons.push(second);
    const r = await qemuIo(second.uri('mirror'), ['read -P 0x61 0 1M', 'read -P 0x62 8M 1M', 'read -P 0x63 16M 64k', 'read -P 0 20M 1M']);
    expect(qemuIoFailed(r), `${explain(r)}\n${second.logs()}`).toBe(false);
    const [m0, m1] = [images.get('m0') ?? '', images.get('m1') ?? ''];
    expect(await firstDifference(m0, m1, DATA_OFFSET_BYTES, 124 * MiB)).toBe(-1);
  });
});
