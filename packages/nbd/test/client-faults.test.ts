// Faults: deadlines (nbdkit delay filter), a server killed mid-run and restarted on the same port,
// a server killed for good, close() with requests pending, and protocol violations from a
// scripted fake (oldstyle, EXPORT_NAME fallback, unknown cookies, chunks outside the read).

import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Cmd, Errno, NbdClient } from '../src/index.js';
import { dataChunk, errorChunk, simpleReply, startFake } from './client-fake.js';
import { freePort, useClientScope, pattern, rejectsWith, sleep, startNbdkit } from './client-helpers.js';

const MiB = 1024 * 1024;
const scope = useClientScope('onestack-nbd-faults-');
const { peers, fakes, clients } = scope;

async function open(opts: Parameters<typeof NbdClient.connect>[0]): Promise<NbdClient> {
  const c = await NbdClient.connect(opts);
  clients.push(c);
  return c;
}

/** Timers and sockets alive in this process, by kind, to prove close() leaves none behind. */
function handles(): { timers: number; sockets: number } {
  const info = process.getActiveResourcesInfo();
  return { timers: info.filter((k) => k === 'Timeout').length, sockets: info.filter((k) => k === 'TCPSocketWrap').length };
}

describe('deadlines', () => {
  it('a read the server holds for 3 s fails with ETIMEDOUT after ~timeoutMs; the client recovers; close leaks nothing', async () => {
    const before = handles();
    const peer = await startNbdkit(['--filter=delay', 'memory', '16M', 'rdelay=3']);
    peers.push(peer);
    const logs: string[] = [];
    const c = await open({ host: '127.0.0.1', port: peer.port, exportName: '', timeoutMs: 500, log: (l) => logs.push(l) });
    expect(handles().sockets).toBeGreaterThan(before.sockets); // the measure sees the client's socket
    const started = Date.now();
    const err = await rejectsWith(c.read(0, new Uint8Array(4096)), ['ETIMEDOUT']);
    const elapsedMs = Date.now() - started;
    expect(elapsedMs).toBeGreaterThanOrEqual(450);
    expect(elapsedMs).toBeLessThan(1000);
    expect(err.message).toMatch(/read of 4096 bytes at 0 not answered within 500 ms/);
    // The silent connection was dropped; a write (not delayed) goes through on a new one.
    await c.write(0, pattern(new Uint8Array(4096), 1));
    expect(logs.join('\n')).toMatch(/connection 0 lost: no reply/);
    expect(logs.join('\n')).toMatch(/connection 0 reconnected/);
    const closing = Date.now();
    await c.close();
    expect(Date.now() - closing).toBeLessThan(1500);
    await peer.kill();
    await sleep(50);
    const after = handles();
    expect(after.timers).toBeLessThanOrEqual(before.timers);
    expect(after.sockets).toBeLessThanOrEqual(before.sockets);
  });

  it('close() with requests pending rejects them with ESHUTDOWN at once', async () => {
    const peer = await startNbdkit(['--filter=delay', 'memory', '16M', 'rdelay=3']);
    peers.push(peer);
    const c = await NbdClient.connect({ host: '127.0.0.1', port: peer.port, exportName: '', timeoutMs: 5000 });
    const pending = c.read(0, new Uint8Array(4096));
    await sleep(50);
    const started = Date.now();
    await Promise.all([c.close(), rejectsWith(pending, ['ESHUTDOWN'])]);
    expect(Date.now() - started).toBeLessThan(1500);
    await rejectsWith(c.write(0, new Uint8Array(512)), ['ESHUTDOWN']);
    expect(c.connected).toBe(false);
  });

  it('a server that never greets fails connect with ETIMEDOUT within timeoutMs', async () => {
    const fake = await startFake({ sizeBytes: MiB, silent: true });
    fakes.push(fake);
    const started = Date.now();
    await rejectsWith(NbdClient.connect({ host: '127.0.0.1', port: fake.port, exportName: '', timeoutMs: 300 }), ['ETIMEDOUT']);
    expect(Date.now() - started).toBeLessThan(800);
  });
});

describe('server killed', () => {
  it('killed (SIGKILL) mid-run and restarted on the same port: in-flight and new requests complete', async () => {
    const file = join(scope.dir, 'restart.img');
    writeFileSync(file, Buffer.alloc(16 * MiB));
    const port = await freePort();
    // Writes held 300 ms by the first server, so they are surely in flight when it dies.
    let peer = await startNbdkit(['--filter=delay', 'file', file, 'wdelay=300ms'], port);
    const logs: string[] = [];
    const c = await open({ host: '127.0.0.1', port, exportName: '', timeoutMs: 8000, log: (l) => logs.push(l) });
    const blocks = Array.from({ length: 32 }, (_, i) => i);
    const writes = Promise.all(blocks.map((i) => c.write(i * 65536, pattern(new Uint8Array(65536), i))));
    await sleep(100);
    await peer.kill();
    const duringOutage = c.write(8 * MiB, pattern(new Uint8Array(MiB), 99));
    await sleep(300);
    peer = await startNbdkit(['file', file], port);
    peers.push(peer);
    await writes;
    await duringOutage;
    await c.flush();
    const back = new Uint8Array(65536);
    for (const i of blocks) {
      await c.read(i * 65536, back);
      expect(Buffer.compare(Buffer.from(back), Buffer.from(pattern(new Uint8Array(65536), i))), `block ${i}`).toBe(0);
    }
    const onDisk = readFileSync(file);
    expect(Buffer.compare(onDisk.subarray(8 * MiB, 9 * MiB), Buffer.from(pattern(new Uint8Array(MiB), 99)))).toBe(0);
    expect(Buffer.compare(onDisk.subarray(31 * 65536, 32 * 65536), Buffer.from(pattern(new Uint8Array(65536), 31)))).toBe(0);
    const text = logs.join('\n');
    expect(text).toMatch(/connection 0 lost: .*; [1-9]\d* request\(s\) to reissue/);
    expect(text).toMatch(/connection 0 reconnected/);
  });

  it('killed and not restarted: requests fail with ETIMEDOUT or ECONNREFUSED within timeoutMs', async () => {
    const peer = await startNbdkit(['memory', '16M']);
    const c = await open({ host: '127.0.0.1', port: peer.port, exportName: '', timeoutMs: 1000 });
    await c.write(0, new Uint8Array(4096));
    await peer.kill();
    const started = Date.now();
    const err = await rejectsWith(c.read(0, new Uint8Array(4096)), ['ETIMEDOUT', 'ECONNREFUSED']);
    const elapsedMs = Date.now() - started;
    expect(elapsedMs).toBeLessThan(1400);
    expect(err.message).toContain(`127.0.0.1:${peer.port}/`);
    expect(c.connected).toBe(false);
  });
});

describe('protocol faults (scripted server)', () => {
  it('refuses an oldstyle server with EPROTO, saying so', async () => {
    const fake = await startFake({ sizeBytes: MiB, oldstyle: true });
    fakes.push(fake);
    const err = await rejectsWith(NbdClient.connect({ host: '127.0.0.1', port: fake.port, exportName: '', timeoutMs: 2000 }), ['EPROTO']);
    expect(err.message).toMatch(/oldstyle/);
  });

  it('falls back to EXPORT_NAME when GO is unsupported, and uses simple replies without structured ones', async () => {
    const fake = await startFake({
      sizeBytes: 4 * MiB, go: false, structured: false,
      onRequest: (req) => (req.type === Cmd.WRITE && req.offsetBytes === 3 * MiB ? { bytes: simpleReply(req, Errno.ENOSPC) } : undefined),
    });
    fakes.push(fake);
    const c = await open({ host: '127.0.0.1', port: fake.port, exportName: 'x', timeoutMs: 2000 });
    expect(c.info).toMatchObject({ sizeBytes: 4 * MiB, blockSizeBytes: 1, maxRequestBytes: 32 * MiB, canTrim: true, canMultiConn: false });
    const data = pattern(new Uint8Array(MiB), 4);
    await c.write(4096, data);
    expect(Buffer.compare(Buffer.from(fake.data.subarray(4096, 4096 + MiB)), Buffer.from(data))).toBe(0);
    const back = new Uint8Array(MiB);
    await c.read(4096, back);
    expect(Buffer.compare(Buffer.from(back), Buffer.from(data))).toBe(0);
    const err = await rejectsWith(c.write(3 * MiB, new Uint8Array(512)), ['ENOSPC']);
    expect(err.message).toMatch(/write of 512 bytes at 3145728 failed on the server \(ENOSPC\)/);
  });

  it('maps a structured ERROR chunk to its errno and keeps the connection', async () => {
    const fake = await startFake({
      sizeBytes: MiB,
      onRequest: (req) => (req.type === Cmd.READ && req.offsetBytes === 8192 ? { bytes: errorChunk(req, Errno.EIO) } : undefined),
    });
    fakes.push(fake);
    const c = await open({ host: '127.0.0.1', port: fake.port, exportName: '', timeoutMs: 2000 });
    await rejectsWith(c.read(8192, new Uint8Array(4096)), ['EIO']);
    await c.read(0, new Uint8Array(4096));
    expect(fake.connections).toBe(1);
  });

  it('drops the connection on a reply for an unknown cookie, reconnects and reissues', async () => {
    const logs: string[] = [];
    const fake = await startFake({
      sizeBytes: MiB,
      onRequest: (req, connection) => (connection === 0 && req.type === Cmd.READ ? { bytes: simpleReply(req, 0, req.cookieLo + 1000) } : undefined),
    });
    fakes.push(fake);
    fake.data.fill(0x5a, 0, 4096);
    const c = await open({ host: '127.0.0.1', port: fake.port, exportName: '', timeoutMs: 3000, log: (l) => logs.push(l) });
    const back = new Uint8Array(4096);
    await c.read(0, back);
    expect(back.every((b) => b === 0x5a)).toBe(true);
    expect(fake.connections).toBe(2);
    expect(logs.join('\n')).toMatch(/unknown cookie/);
  });

  it('drops the connection on a data chunk outside the read, and does not write outside the caller\'s buffer', async () => {
    const fake = await startFake({
      sizeBytes: MiB,
      onRequest: (req, connection) => (connection === 0 && req.type === Cmd.READ ? { bytes: dataChunk(req, req.offsetBytes + 4096, 4096) } : undefined),
    });
    fakes.push(fake);
    const logs: string[] = [];
    const c = await open({ host: '127.0.0.1', port: fake.port, exportName: '', timeoutMs: 3000, log: (l) => logs.push(l) });
    const whole = new Uint8Array(8192).fill(0xcc);
    await c.read(0, whole.subarray(0, 4096));
    expect(whole.subarray(4096).every((b) => b === 0xcc)).toBe(true);
    expect(logs.join('\n')).toMatch(/outside the read/);
  });
});
