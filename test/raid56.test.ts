// Acceptance (issue 5, item 6): raid5 over 3 local files + 1 nbdkit export and raid6 over 4 local
// files + 1 nbdkit export carry a 64 MiB nbdcopy round trip with equal sha256; P (and Q)
// recomputed from the raw leg files (local images and the files behind nbdkit) by the test's
// own maths are right; a SIGKILL of the daemon under random writes leaves every row's parity
// right after the restart (journal replay); with nbdkit killed the volumes go degraded and still
// read back the same sha256 (the lost chunks rebuilt from parity).
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Daemon } from './lib/daemon.js';
import { DATA_OFFSET_BYTES, MiB, randomFile, removeDir, sha256Range, sparseFile, tempDir, writeConfig } from './lib/files.js';
import { badParityRows } from './lib/parity.js';
import { nbdcopy, qemuIo, qemuIoFailed } from './lib/peers.js';
import { explain, missingTools, run } from './lib/proc.js';
import { startNbdkit, type NbdkitPeer } from './lib/remotes.js';

const COPY_BYTES = 64 * MiB;
const ELEMENT_BYTES = DATA_OFFSET_BYTES + 40 * MiB;
const CHUNK_KIB = 64;
const missing = missingTools(['nbdkit', 'nbdcopy', 'qemu-io', 'fio']);

describe.skipIf(missing !== null)(`raid5/raid6 over local + nbd elements${missing !== null ? ` (skipped: ${missing})` : ''}`, () => {
  let dir = '';
  let nbdkit: NbdkitPeer | null = null;
  let daemon: Daemon | null = null;
  const src = (): string => path.join(dir, 'src.bin');
  let want = '';
  const volumes = [
    { name: 'r5', np: 1 as const, legs: ['a0', 'a1', 'a2', 'n0'] },
    { name: 'r6', np: 2 as const, legs: ['b0', 'b1', 'n1', 'b2', 'b3'] },
  ];
  const legFile = (leg: string): string => path.join(dir, `${leg}.img`);

  beforeAll(async () => {
    dir = tempDir('raid56');
    for (const name of ['n0', 'n1']) await sparseFile(legFile(name), ELEMENT_BYTES);
    nbdkit = await startNbdkit(['file', `dir=${dir}`]);
    const remote = (name: string) => ({ name, uri: `nbd://127.0.0.1:${nbdkit!.port}/${name}.img`, options: { timeoutMs: 2000 } });
    const local = (name: string) => ({ name, sizeBytes: ELEMENT_BYTES });
    const { configPath } = await writeConfig(dir, [
      ...['a0', 'a1', 'a2', 'b0', 'b1', 'b2', 'b3'].map(local), remote('n0'), remote('n1'),
    ], volumes.map((v) => ({ name: v.name, layout: v.np === 1 ? 'raid5' as const : 'raid6' as const, elements: v.legs, chunkKiB: CHUNK_KIB })));
    daemon = await Daemon.start({ dataDir: path.join(dir, 'data'), configPath });
    want = await randomFile(src(), COPY_BYTES);
  }, 120_000);

  afterAll(async () => {
    await daemon?.stop();
    await nbdkit?.stop();
    if (dir !== '') removeDir(dir);
  });

  for (const v of volumes) {
    it(`${v.name}: 64 MiB nbdcopy round trip has equal sha256, and P${v.np === 2 ? '/Q' : ''} recomputed from the leg files are right`, async () => {
      const up = await nbdcopy(src(), daemon!.uri(v.name), ['--flush']);
      expect(up.code, explain(up)).toBe(0);
      const back = path.join(dir, `${v.name}-back.bin`);
      const down = await nbdcopy(daemon!.uri(v.name), back);
      expect(down.code, explain(down)).toBe(0);
      expect(await sha256Range(back, 0, COPY_BYTES)).toBe(want);
      const rows = Math.ceil(COPY_BYTES / ((v.legs.length - v.np) * CHUNK_KIB * 1024)) + 2;
      expect(await badParityRows(v.legs.map(legFile), v.np, CHUNK_KIB * 1024, rows)).toEqual([]);
    }, 120_000);
  }

  it('qemu-io: small unaligned writes (read-modify-write) read back with the pattern', async () => {
    for (const v of volumes) {
      const w = await qemuIo(daemon!.uri(v.name), ['write -P 0x3c 70000000 12345', 'read -P 0x3c 70000000 12345', 'flush']);
      expect(qemuIoFailed(w), explain(w)).toBe(false);
    }
  });

  it('SIGKILL during random writes: after the restart the journal replay leaves P/Q right on every row, flushed data intact', async () => {
    // Writers on both volumes, past the round-trip data (from 72 MiB), killed mid-flight.
    const writers = volumes.map((v) => run('fio', ['--name=crash', '--ioengine=nbd', `--uri=${daemon!.uri(v.name)}`, '--rw=randwrite', '--bsrange=4k-192k',
      '--iodepth=32', '--offset=72M', '--size=40M', '--time_based', '--runtime=20', '--output-format=json'], { timeoutMs: 60_000 }));
    await new Promise((r) => setTimeout(r, 2000));
    const { dataDir, nbdPort, apiPort } = daemon!;
    await daemon!.crash();
    await Promise.all(writers);
    daemon = await Daemon.start({ dataDir, configPath: path.join(dir, 'onestack.yaml'), nbdPort, apiPort });
    expect(daemon.stderr + daemon.stdout).toMatch(/r5 was not closed cleanly: its stripe journal was replayed/);
    for (const v of volumes) {
      const rows = Math.floor(40 * MiB / CHUNK_KIB / 1024);
      expect(await badParityRows(v.legs.map(legFile), v.np, CHUNK_KIB * 1024, rows), `${v.name} after the crash`).toEqual([]);
      const back = path.join(dir, `${v.name}-after-crash.bin`);
      const down = await nbdcopy(daemon.uri(v.name), back);
      expect(down.code, explain(down)).toBe(0);
      expect(await sha256Range(back, 0, COPY_BYTES), `${v.name}: flushed data`).toBe(want);
    }
  }, 120_000);

  it('with nbdkit killed both volumes go degraded and read back the same sha256', async () => {
    await nbdkit!.stop('SIGKILL');
    for (const v of volumes) {
      const back = path.join(dir, `${v.name}-degraded.bin`);
      const down = await nbdcopy(daemon!.uri(v.name), back);
      expect(down.code, explain(down)).toBe(0);
      expect(await sha256Range(back, 0, COPY_BYTES), `${v.name} degraded`).toBe(want);
      const r = await qemuIo(daemon!.uri(v.name), ['read -P 0x3c 70000000 12345']);
      expect(qemuIoFailed(r), explain(r)).toBe(false);
    }
    const status = await daemon!.status();
    const states = Object.fromEntries(status.volumes.map((v) => [v.name, v.state]));
    expect(states).toMatchObject({ r5: 'degraded', r6: 'degraded' });
    expect(status.elements.find((e) => e.name === 'n0')?.state, 'a remote leg that went away is probed: stale').toBe('stale');
  }, 120_000);
});
