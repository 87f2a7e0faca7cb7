// The NBD client against real servers: onestack's own, nbdkit (memory, file, unix socket,
// nozero filter) and qemu-nbd. Data is checked through the client and, for file-backed servers,
// by reading the backing file directly.

import { mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type MemoryExport, NbdClient, type NbdServer, createMemoryExport, createMemoryProvider, createNbdServer, listNbdExports,
} from '../src/index.js';
import { type Peer, pattern, rejectsWith, rng, startNbdkit, startNbdkitUnix, startQemuNbd } from './client-helpers.js';

const MiB = 1024 * 1024;
let dir: string;
const peers: Peer[] = [];
const clients: NbdClient[] = [];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'onestack-nbd-client-'));
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await Promise.all(peers.map((p) => p.stop()));
  rmSync(dir, { recursive: true, force: true });
});

async function open(opts: Parameters<typeof NbdClient.connect>[0]): Promise<NbdClient> {
  const c = await NbdClient.connect(opts);
  clients.push(c);
  return c;
}

/** Writes, FUA writes, reads back, zeroes, trims and flushes; returns what the device should hold at [0, 4 MiB). */
async function roundTrip(c: NbdClient): Promise<Uint8Array> {
  const expected = new Uint8Array(4 * MiB);
  const a = pattern(new Uint8Array(MiB), 1);
  await c.write(0, a);
  expected.set(a, 0);
  const b = pattern(new Uint8Array(new SharedArrayBuffer(256 * 1024)), 2); // SAB-backed, sent without a copy
  await c.write(MiB, b, { fua: true });
  expected.set(b, MiB);
  await c.writeZeroes(4096, 8192);
  expected.fill(0, 4096, 4096 + 8192);
  await c.writeZeroes(MiB + 65536, 65536, { noHole: true });
  expected.fill(0, MiB + 65536, MiB + 131072);
  await c.write(2 * MiB, pattern(new Uint8Array(MiB), 3));
  await c.trim(2 * MiB, MiB); // trimmed contents are unspecified: overwrite to make them known
  await c.write(2 * MiB, pattern(new Uint8Array(MiB), 4));
  expected.set(pattern(new Uint8Array(MiB), 4), 2 * MiB);
  await c.flush();
  const back = new Uint8Array(new SharedArrayBuffer(4 * MiB));
  await c.read(0, back);
  expect(Buffer.compare(Buffer.from(back), Buffer.from(expected))).toBe(0);
  return expected;
}

/** 256 concurrent 4 KiB writes at distinct random blocks of [4 MiB, 4 MiB + regionBytes), then 256 concurrent reads. */
async function manyInFlight(c: NbdClient, regionBytes: number, seed: number): Promise<void> {
  const base = 4 * MiB;
  const rand = rng(seed);
  const blocks = new Set<number>();
  while (blocks.size < 256) blocks.add(Math.floor(rand() * (regionBytes / 4096)));
  const list = [...blocks];
  await Promise.all(list.map((b) => c.write(base + b * 4096, pattern(new Uint8Array(4096), b))));
  const reads = list.map((b) => ({ b, buf: new Uint8Array(4096) }));
  await Promise.all(reads.map((r) => c.read(base + r.b * 4096, r.buf)));
  for (const r of reads) expect(Buffer.compare(Buffer.from(r.buf), Buffer.from(pattern(new Uint8Array(4096), r.b))), `block ${r.b}`).toBe(0);
}

describe('against onestack\'s own server', () => {
  let server: NbdServer;
  let port: number;
  let disk: MemoryExport;
  let aligned: MemoryExport;

  beforeAll(async () => {
    disk = createMemoryExport('disk0', 64 * MiB, { description: 'test disk' });
    aligned = createMemoryExport('aligned', 8 * MiB, { blockSize: { minimumBytes: 512, preferredBytes: 4096, maximumBytes: 64 * 1024 } });
    const ro = createMemoryExport('ro', MiB, { readOnly: true });
    server = createNbdServer(createMemoryProvider([disk, aligned, ro]));
    port = (await server.listen('127.0.0.1', 0)).port;
  });

  afterAll(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
    await server.close();
    for (const e of [disk, aligned]) expect(e.outstanding()).toEqual({ reads: 0, writeBuffers: 0 });
  });

  it('negotiates the export and round-trips data (checked in the backend)', async () => {
    const c = await open({ host: '127.0.0.1', port, exportName: 'disk0', timeoutMs: 5000 });
    expect(c.info).toEqual({
      sizeBytes: 64 * MiB, blockSizeBytes: 1, maxRequestBytes: 32 * MiB, readOnly: false,
      canFlush: true, canFua: true, canTrim: true, canWriteZeroes: true, canMultiConn: true, canResize: false,
    });
    expect(c.connected).toBe(true);
    const expected = await roundTrip(c);
    expect(Buffer.compare(Buffer.from(disk.data.subarray(0, 4 * MiB)), Buffer.from(expected))).toBe(0);
    // Above maxRequestBytes: split into several requests, both ways.
    const big = pattern(new Uint8Array(40 * MiB), 9);
    await c.write(8 * MiB, big);
    const back = new Uint8Array(40 * MiB);
    await c.read(8 * MiB, back);
    expect(Buffer.compare(Buffer.from(back), Buffer.from(big))).toBe(0);
    await c.read(0, new Uint8Array(0)); // nothing to do, still fine
  });

  it('spreads requests over several connections with CAN_MULTI_CONN', async () => {
    const before = server.connectionCount;
    const c = await open({ host: '127.0.0.1', port, exportName: 'disk0', timeoutMs: 5000, connections: 4 });
    expect(server.connectionCount - before).toBe(4);
    await manyInFlight(c, 32 * MiB, 7);
    await c.flush();
    await c.close();
    expect(c.connected).toBe(false);
  });

  it('honours block-size constraints: unaligned calls fail with EINVAL, large ones are split', async () => {
    const c = await open({ host: '127.0.0.1', port, exportName: 'aligned', timeoutMs: 5000 });
    expect(c.info).toMatchObject({ blockSizeBytes: 512, maxRequestBytes: 64 * 1024 });
    await rejectsWith(c.read(100, new Uint8Array(512)), ['EINVAL']);
    await rejectsWith(c.write(0, new Uint8Array(100)), ['EINVAL']);
    await rejectsWith(c.read(8 * MiB - 512, new Uint8Array(1024)), ['EINVAL']);
    const data = pattern(new Uint8Array(MiB), 5); // 16 requests of 64 KiB
    await c.write(512, data);
    expect(Buffer.compare(Buffer.from(aligned.data.subarray(512, 512 + MiB)), Buffer.from(data))).toBe(0);
    const back = new Uint8Array(MiB);
    await c.read(512, back);
    expect(Buffer.compare(Buffer.from(back), Buffer.from(data))).toBe(0);
  });

  it('refuses writes to a read-only export locally (EPERM) and names a missing export (ENOENT)', async () => {
    const c = await open({ host: '127.0.0.1', port, exportName: 'ro', timeoutMs: 5000 });
    expect(c.info.readOnly).toBe(true);
    await rejectsWith(c.write(0, new Uint8Array(512)), ['EPERM']);
    await c.read(0, new Uint8Array(4096));
    const err = await rejectsWith(NbdClient.connect({ host: '127.0.0.1', port, exportName: 'nope', timeoutMs: 5000 }), ['ENOENT']);
    expect(err.message).toMatch(/"nope" not found/);
    expect(err.message).toContain(`127.0.0.1:${port}/nope`);
  });

  it('lists exports with descriptions', async () => {
    const list = await listNbdExports({ host: '127.0.0.1', port, timeoutMs: 5000 });
    expect(list).toEqual([{ name: 'disk0', description: 'test disk' }, { name: 'aligned' }, { name: 'ro' }]);
  });
});

describe('against nbdkit', () => {
  it('memory plugin: flags, round trip, 256 requests in flight', async () => {
    const peer = await startNbdkit(['memory', '64M']);
    peers.push(peer);
    const c = await open({ host: '127.0.0.1', port: peer.port, exportName: '', timeoutMs: 5000 });
    expect(c.info).toMatchObject({ sizeBytes: 64 * MiB, readOnly: false, canFlush: true, canTrim: true, canWriteZeroes: true });
    await roundTrip(c);
    await manyInFlight(c, 32 * MiB, 11);
    const list = await listNbdExports({ host: '127.0.0.1', port: peer.port, timeoutMs: 5000 });
    expect(list.map((e) => e.name)).toEqual(['']);
  });

  it('file plugin: the backing file holds what the client wrote', async () => {
    const file = join(dir, 'nbdkit-file.img');
    writeFileSync(file, Buffer.alloc(16 * MiB));
    const peer = await startNbdkit(['file', file]);
    peers.push(peer);
    const c = await open({ host: '127.0.0.1', port: peer.port, exportName: '', timeoutMs: 5000, connections: 2 });
    const expected = await roundTrip(c);
    await manyInFlight(c, 8 * MiB, 13);
    await c.flush();
    await c.write(15 * MiB, pattern(new Uint8Array(MiB), 21));
    await c.close();
    const onDisk = readFileSync(file);
    expect(onDisk.length).toBe(16 * MiB);
    expect(Buffer.compare(onDisk.subarray(0, 4096), Buffer.from(expected.subarray(0, 4096)))).toBe(0);
    expect(Buffer.compare(onDisk.subarray(MiB, 2 * MiB), Buffer.from(expected.subarray(MiB, 2 * MiB)))).toBe(0);
    expect(Buffer.compare(onDisk.subarray(15 * MiB), Buffer.from(pattern(new Uint8Array(MiB), 21)))).toBe(0);
  });

  it('falls back to writing zeroes when the server lacks WRITE_ZEROES (nozero filter)', async () => {
    const peer = await startNbdkit(['--filter=nozero', 'memory', '8M', 'zeromode=none']);
    peers.push(peer);
    const c = await open({ host: '127.0.0.1', port: peer.port, exportName: '', timeoutMs: 5000 });
    expect(c.info.canWriteZeroes).toBe(false);
    await c.write(0, pattern(new Uint8Array(4 * MiB), 3));
    await c.writeZeroes(4096, 3 * MiB); // more than the 1 MiB zero buffer: several writes
    const back = new Uint8Array(4 * MiB);
    await c.read(0, back);
    expect(Buffer.compare(Buffer.from(back.subarray(0, 4096)), Buffer.from(pattern(new Uint8Array(4 * MiB), 3).subarray(0, 4096)))).toBe(0);
    expect(back.subarray(4096, 4096 + 3 * MiB).every((b) => b === 0)).toBe(true);
    expect(back[4096 + 3 * MiB]).toBe(pattern(new Uint8Array(4 * MiB), 3)[4096 + 3 * MiB]);
  });

  it('nbd+unix: connects over a unix socket', async () => {
    const socketPath = join(dir, 'nbdkit.sock');
    const peer = await startNbdkitUnix(socketPath, ['memory', '4M']);
    peers.push(peer);
    const c = await open({ socketPath, exportName: '', timeoutMs: 5000 });
    expect(c.info.sizeBytes).toBe(4 * MiB);
    await roundTrip(c);
    const list = await listNbdExports({ socketPath, timeoutMs: 5000 });
    expect(list).toHaveLength(1);
  });
});

describe('against qemu-nbd', () => {
  it('round-trips data, reads holes of a sparse file, and the file holds the writes', async () => {
    const file = join(dir, 'qemu.img');
    // A sparse 32 MiB file: qemu-nbd answers reads of unallocated ranges with OFFSET_HOLE chunks.
    writeFileSync(file, '');
    truncateSync(file, 32 * MiB);
    const peer = await startQemuNbd(file, 'qdisk');
    peers.push(peer);
    const c = await open({ host: '127.0.0.1', port: peer.port, exportName: 'qdisk', timeoutMs: 5000 });
    expect(c.info.sizeBytes).toBe(32 * MiB);
    const mixed = new Uint8Array(8 * MiB).fill(0xee);
    await c.write(20 * MiB, pattern(new Uint8Array(MiB), 8));
    await c.read(16 * MiB, mixed); // hole, data, hole
    expect(mixed.subarray(0, 4 * MiB).every((b) => b === 0)).toBe(true);
    expect(Buffer.compare(Buffer.from(mixed.subarray(4 * MiB, 5 * MiB)), Buffer.from(pattern(new Uint8Array(MiB), 8)))).toBe(0);
    expect(mixed.subarray(5 * MiB).every((b) => b === 0)).toBe(true);
    const expected = await roundTrip(c);
    await c.close();
    const onDisk = readFileSync(file);
    expect(Buffer.compare(onDisk.subarray(0, 4 * MiB), Buffer.from(expected))).toBe(0);
    expect(Buffer.compare(onDisk.subarray(20 * MiB, 21 * MiB), Buffer.from(pattern(new Uint8Array(MiB), 8)))).toBe(0);
  });
});
