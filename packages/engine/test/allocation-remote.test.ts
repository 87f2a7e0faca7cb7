// The remote element probe (allocation/probe-remote.ts) against real servers: nbdkit and
// qemu-nbd over NBD base:allocation, tgtd over iSCSI GET LBA STATUS, each on a connection of its
// own. A server without block status (noextents, a thick LUN), a refused connect and a server too
// slow to answer all answer "data" within the element's timeout; a failed connect is not retried
// at every query, and a one-client server (qemu-nbd's default) is let go after each query and not
// waited for again while the data path holds it.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RemoteProbe } from '../src/allocation/probe-remote.js';
import type { NbdRemoteSpec } from '../src/remote/spec.js';
import { NbdClient } from '@onestack/nbd';
import { freePort, missingTools, runOk, spawnTracked, stopChild } from '../../../test/lib/proc.js';
import { startNbdkit, startTgtd, waitListening, type NbdkitPeer, type TgtdPeer } from '../../../test/lib/remotes.js';

const MiB = 1024 * 1024;
const KiB = 1024;
const missing = missingTools(['nbdkit', 'qemu-nbd']);
let dir = '';
const peers: NbdkitPeer[] = [];
const probes: RemoteProbe[] = [];

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'onestack-alloc-remote-'));
});
afterEach(async () => {
  await Promise.all(probes.splice(0).map((p) => p.close()));
  await Promise.all(peers.splice(0).map((p) => p.stop()));
});

/** qemu-nbd with its default --shared=1: one client at a time, the next waits in the backlog. */
async function qemuNbd(file: string): Promise<NbdkitPeer> {
  const port = await freePort();
  const child = spawnTracked('qemu-nbd', ['-f', 'raw', '-x', '', '-p', String(port), '-b', '127.0.0.1', '-t', file]);
  const peer: NbdkitPeer = { port, child, uri: `nbd://127.0.0.1:${port}/`, stop: async () => { await stopChild(child, 5000); } };
  peers.push(peer);
  await waitListening(port, child);
  return peer;
}
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function sparse(name: string, sizeBytes: number, writes: readonly [number, number][]): string {
  const p = path.join(dir, name);
  fs.writeFileSync(p, '');
  fs.truncateSync(p, sizeBytes);
  const fd = fs.openSync(p, 'r+');
  for (const [off, len] of writes) fs.writeSync(fd, Buffer.alloc(len, 1), 0, len, off);
  fs.closeSync(fd);
  return p;
}

function spec(port: number, timeoutMs = 5_000): NbdRemoteSpec {
  return { kind: 'nbd', where: `nbd://127.0.0.1:${port}/`, host: '127.0.0.1', port, exportName: '', connections: 1, timeoutMs };
}

function probe(s: NbdRemoteSpec | undefined, warnings: string[] = []): RemoteProbe {
  const p = new RemoteProbe(s, (m) => warnings.push(m));
  probes.push(p);
  return p;
}

async function nbdkit(args: readonly string[]): Promise<NbdkitPeer> {
  const peer = await startNbdkit(args);
  peers.push(peer);
  return peer;
}

describe.skipIf(missing !== null)(`RemoteProbe against nbdkit${missing !== null ? ` (skipped: ${missing})` : ''}`, () => {
  it('reports the remote file\'s holes and data, cut to the window asked', async () => {
    const file = sparse('a.img', 16 * MiB, [[4 * MiB, 64 * KiB], [9 * MiB, 4 * KiB]]);
    const peer = await nbdkit(['file', file]);
    const warnings: string[] = [];
    const p = probe(spec(peer.port), warnings);
    expect((await p.runs(0, 16 * MiB, 100)).runs).toEqual([
      { lengthBytes: 4 * MiB, zero: true }, { lengthBytes: 64 * KiB, zero: false }, { lengthBytes: 5 * MiB - 64 * KiB, zero: true },
      { lengthBytes: 4 * KiB, zero: false }, { lengthBytes: 7 * MiB - 4 * KiB, zero: true },
    ]);
    // An unaligned window inside the data extent, reusing the connection.
    expect(await p.runs(4 * MiB + 100, 64 * KiB, 100)).toEqual({ startBytes: 4 * MiB + 100, runs: [{ lengthBytes: 64 * KiB - 100, zero: false }, { lengthBytes: 100, zero: true }] });
    // Past the remote's end is data, never a hole.
    expect((await p.runs(16 * MiB - 4 * KiB, 8 * KiB, 100)).runs).toEqual([{ lengthBytes: 4 * KiB, zero: true }, { lengthBytes: 4 * KiB, zero: false }]);
    expect(warnings).toEqual([]);
  });

  it('a server without base:allocation (noextents filter) answers data', async () => {
    const file = sparse('b.img', 8 * MiB, []);
    const peer = await nbdkit(['--filter=noextents', 'file', file]);
    const warnings: string[] = [];
    const p = probe(spec(peer.port), warnings);
    const r = await p.runs(0, 8 * MiB, 100);
    expect(r.runs.every((x) => !x.zero)).toBe(true);
    expect(r.runs.reduce((s, x) => s + x.lengthBytes, 0)).toBe(8 * MiB);
  });

  it('a refused connect answers data and is not retried at every query', async () => {
    const port = await freePort();
    const warnings: string[] = [];
    const p = probe(spec(port, 2_000), warnings);
    expect((await p.runs(0, MiB, 10)).runs).toEqual([{ lengthBytes: MiB, zero: false }]);
    const t0 = Date.now();
    for (let i = 0; i < 20; i++) expect((await p.runs(0, MiB, 10)).runs).toEqual([{ lengthBytes: MiB, zero: false }]);
    expect(Date.now() - t0).toBeLessThan(200);
    expect(warnings.length).toBe(1);
    expect(warnings[0]).toMatch(/no block-status connection.*answering data/);
  });

  it('a server slower than timeoutMs answers data within about timeoutMs', async () => {
    const file = sparse('c.img', 8 * MiB, []);
    const peer = await nbdkit(['--filter=delay', 'file', file, 'delay-extents=3']);
    const warnings: string[] = [];
    const p = probe(spec(peer.port, 500), warnings);
    const t0 = Date.now();
    expect((await p.runs(0, 8 * MiB, 10)).runs).toEqual([{ lengthBytes: 8 * MiB, zero: false }]);
    expect(Date.now() - t0).toBeLessThan(2_500);
    expect(warnings.join('\n')).toMatch(/block status failed.*answering data/);
  });

  it('a one-client server (qemu-nbd): the probe lets go after each query, and gives up when it is not let in', async () => {
    const file = sparse('q.img', 8 * MiB, [[MiB, 64 * KiB]]);
    const peer = await qemuNbd(file);
    const warnings: string[] = [];
    const p = probe(spec(peer.port, 1_000), warnings);
    expect((await p.runs(0, 2 * MiB, 10)).runs).toEqual([{ lengthBytes: MiB, zero: true }, { lengthBytes: 64 * KiB, zero: false }, { lengthBytes: MiB - 64 * KiB, zero: true }]);
    // The slot is free again at once: the data path's client connects without waiting.
    const dataPath = await NbdClient.connect({ host: '127.0.0.1', port: peer.port, exportName: '', timeoutMs: 1_000 });
    try {
      expect(dataPath.info.canMultiConn).toBe(false);
      // Now the only slot is taken: the probe waits at most its timeout, answers data and stops asking.
      const t0 = Date.now();
      expect((await p.runs(0, 2 * MiB, 10)).runs).toEqual([{ lengthBytes: 2 * MiB, zero: false }]);
      expect(Date.now() - t0).toBeLessThan(3_000);
      const t1 = Date.now();
      expect((await p.runs(0, 2 * MiB, 10)).runs).toEqual([{ lengthBytes: 2 * MiB, zero: false }]);
      expect(Date.now() - t1).toBeLessThan(100);
      expect(warnings).toEqual([expect.stringMatching(/did not take a block-status connection within 1000 ms.*one client at a time.*answering data/)]);
      // And the data path's connection still works.
      const buf = new Uint8Array(4096);
      await dataPath.read(MiB, buf);
      expect(buf[0]).toBe(1);
    } finally {
      await dataPath.close();
    }
  });

  it('an element without a remote spec answers data without connecting', async () => {
    expect((await probe(undefined).runs(0, 4096, 1)).runs).toEqual([{ lengthBytes: 4096, zero: false }]);
  });
});

const missingIscsi = missingTools(['tgtd', 'tgtadm']);

describe.skipIf(missingIscsi !== null)(`RemoteProbe against tgtd (iSCSI GET LBA STATUS)${missingIscsi !== null ? ` (skipped: ${missingIscsi})` : ''}`, () => {
  let tgtd: TgtdPeer | null = null;
  afterEach(async () => {
    await tgtd?.stop();
    tgtd = null;
  });

  const iscsiSpec = (port: number, iqn: string, lun: number) => ({ kind: 'iscsi', where: `iscsi://127.0.0.1:${port}/${iqn}/${lun}`, host: '127.0.0.1', port, targetIqn: iqn, lun, digest: 'none', timeoutMs: 5_000 }) as const;

  it('a thin LUN reports its backing file\'s holes and data; a thick LUN answers data', async () => {
    const thin = sparse('thin.img', 16 * MiB, [[4 * MiB, MiB]]);
    const thick = sparse('thick.img', 16 * MiB, []);
    const controlPort = 1000 + ((await freePort()) % 20000);
    tgtd = await startTgtd({ backingFiles: [thin, thick], controlPort });
    await runOk('tgtadm', ['-C', String(controlPort), '--lld', 'iscsi', '--mode', 'logicalunit', '--op', 'update', '--tid', '1', '--lun', '1', '--params', 'thin_provisioning=1']);
    const warnings: string[] = [];
    const p = probe(iscsiSpec(tgtd.port, tgtd.iqn, 1), warnings);
    expect((await p.runs(0, 16 * MiB, 100)).runs).toEqual([{ lengthBytes: 4 * MiB, zero: true }, { lengthBytes: MiB, zero: false }, { lengthBytes: 11 * MiB, zero: true }]);
    expect(warnings).toEqual([]);
    const q = probe(iscsiSpec(tgtd.port, tgtd.iqn, 2), warnings);
    expect((await q.runs(0, 16 * MiB, 100)).runs).toEqual([{ lengthBytes: 16 * MiB, zero: false }]);
    expect(warnings).toEqual([expect.stringMatching(/not thin-provisioned.*answering data/)]);
  });
});
