// NbdClient.blockStatus against real servers: nbdkit 1.32 (memory with 32 KiB pages, file over a
// sparse ext4 file with 4 KiB SEEK_DATA granularity, --no-sr with no contexts at all, the
// noextents filter, the delay filter for in-flight reissue) and qemu-nbd 10 (extended headers by
// default, compact when turned off), plus a scripted server for refusals and malformed replies.
// Ranges written here are 64 KiB-aligned so every server's granularity reports them exactly.

import { statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AllocationFlag, Cmd, type NbdExtent, NbdClient, type NbdClientOptions, type NbdServer, Opt, Rep, createMemoryExport, createMemoryProvider, createNbdServer,
  encodeOptionError, encodeOptionReply,
} from '../src/index.js';
import { metaContextReply, startFake, statusChunk } from './client-fake.js';
import { freePort, useClientScope, pattern, rejectsWith, sleep, startNbdkit, startQemuNbd } from './client-helpers.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const HOLE_ZERO = AllocationFlag.HOLE | AllocationFlag.ZERO;
const scope = useClientScope('onestack-nbd-status-');
const { peers, fakes, clients } = scope;

async function open(opts: NbdClientOptions): Promise<NbdClient> {
  const c = await NbdClient.connect(opts);
  clients.push(c);
  return c;
}

interface Run { readonly offsetBytes: number; readonly lengthBytes: number; readonly flags: number }

/** The whole map of [offset, offset + length): blockStatus in a loop (as callers must), equal neighbours merged. */
async function statusMap(c: NbdClient, offsetBytes: number, lengthBytes: number, context?: string): Promise<{ runs: Run[]; calls: number }> {
  const runs: Run[] = [];
  let at = offsetBytes;
  let calls = 0;
  const end = offsetBytes + lengthBytes;
  while (at < end) {
    expect(calls, 'blockStatus makes progress').toBeLessThan(10_000);
    const extents: NbdExtent[] = await c.blockStatus(at, end - at, context);
    calls += 1;
    expect(extents.length).toBeGreaterThan(0);
    for (const e of extents) {
      expect(e.lengthBytes).toBeGreaterThan(0);
      const last = runs[runs.length - 1];
      if (last !== undefined && last.flags === e.flags) runs[runs.length - 1] = { ...last, lengthBytes: last.lengthBytes + e.lengthBytes };
      else runs.push({ offsetBytes: at, lengthBytes: e.lengthBytes, flags: e.flags });
      at += e.lengthBytes;
    }
    expect(at).toBeLessThanOrEqual(end);
  }
  return { runs, calls };
}

/** Data where `data` says (sorted, disjoint), hole|zero elsewhere. */
function expectedRuns(sizeBytes: number, data: ReadonlyArray<readonly [number, number]>): Run[] {
  const runs: Run[] = [];
  let at = 0;
  for (const [start, length] of data) {
    if (start > at) runs.push({ offsetBytes: at, lengthBytes: start - at, flags: HOLE_ZERO });
    runs.push({ offsetBytes: start, lengthBytes: length, flags: 0 });
    at = start + length;
  }
  if (at < sizeBytes) runs.push({ offsetBytes: at, lengthBytes: sizeBytes - at, flags: HOLE_ZERO });
  return runs;
}

const RANGES: ReadonlyArray<readonly [number, number]> = [[4 * MiB, MiB], [20 * MiB, 64 * KiB], [40 * MiB - 128 * KiB, 256 * KiB]];

/** Writes 64 KiB-aligned ranges with the client; returns them for expectedRuns. */
async function writeRanges(c: NbdClient): Promise<ReadonlyArray<readonly [number, number]>> {
  for (const [i, [start, length]] of RANGES.entries()) await c.write(start, pattern(new Uint8Array(length), i + 1));
  await c.flush();
  return RANGES;
}

describe('against nbdkit 1.32', () => {
  it('memory plugin: base:allocation selected (an unknown context not), fresh = one hole, written ranges = data', async () => {
    const peer = await startNbdkit(['memory', '64M']);
    peers.push(peer);
    const c = await open({ host: '127.0.0.1', port: peer.port, exportName: '', timeoutMs: 5000, metaContexts: ['base:allocation', 'qemu:dirty-bitmap:b0'] });
    expect(c.metaContexts).toEqual(['base:allocation']);
    expect(c.extendedHeaders).toBe(false); // nbdkit 1.32 answers NBD_OPT_EXTENDED_HEADERS with ERR_UNSUP: compact replies
    expect(await c.blockStatus(0, 64 * MiB)).toEqual([{ lengthBytes: 64 * MiB, flags: HOLE_ZERO }]);
    const ranges = await writeRanges(c);
    const { runs } = await statusMap(c, 0, 64 * MiB);
    expect(runs).toEqual(expectedRuns(64 * MiB, ranges));
    // A range inside one data extent; the default context is base:allocation.
    expect(await c.blockStatus(4 * MiB + 64 * KiB, 128 * KiB)).toEqual([{ lengthBytes: 128 * KiB, flags: 0 }]);
    const err = await rejectsWith(c.blockStatus(0, MiB, 'qemu:dirty-bitmap:b0'), ['ENOTSUP']);
    expect(err.message).toMatch(/"qemu:dirty-bitmap:b0" is not selected: the server selected "base:allocation"/);
    await rejectsWith(c.blockStatus(0, 0), ['EINVAL']);
    await rejectsWith(c.blockStatus(64 * MiB - 4096, 8192), ['EINVAL']);
    await rejectsWith(c.blockStatus(-1, 4096), ['EINVAL']);
  });

  it('file plugin over a sparse file: data exactly where written (4 KiB granularity), a trim punches a hole', async () => {
    const file = join(scope.dir, 'nbdkit-sparse.img');
    writeFileSync(file, '');
    truncateSync(file, 64 * MiB);
    const peer = await startNbdkit(['file', file]);
    peers.push(peer);
    const c = await open({ host: '127.0.0.1', port: peer.port, exportName: '', timeoutMs: 5000, metaContexts: ['base:allocation'] });
    expect((await statusMap(c, 0, 64 * MiB)).runs).toEqual(expectedRuns(64 * MiB, []));
    const ranges = await writeRanges(c);
    await c.write(50 * MiB + 4096, pattern(new Uint8Array(4096), 9)); // one 4 KiB block
    const expected = expectedRuns(64 * MiB, [...ranges, [50 * MiB + 4096, 4096]]);
    expect((await statusMap(c, 0, 64 * MiB)).runs).toEqual(expected);
    expect(statSync(file).blocks * 512).toBeLessThan(4 * MiB); // the file itself is sparse: the map is real
    await c.trim(4 * MiB + 256 * KiB, 256 * KiB);
    const afterTrim = expectedRuns(64 * MiB, [[4 * MiB, 256 * KiB], [4 * MiB + 512 * KiB, 512 * KiB], ...ranges.slice(1), [50 * MiB + 4096, 4096]]);
    expect((await statusMap(c, 0, 64 * MiB)).runs).toEqual(afterTrim);
  });

  it('--no-sr (no structured replies): nothing can be selected, blockStatus says why', async () => {
    const peer = await startNbdkit(['--no-sr', 'memory', '16M']);
    peers.push(peer);
    const c = await open({ host: '127.0.0.1', port: peer.port, exportName: '', timeoutMs: 5000, metaContexts: ['base:allocation'] });
    expect(c.metaContexts).toEqual([]);
    const err = await rejectsWith(c.blockStatus(0, MiB), ['ENOTSUP']);
    expect(err.message).toMatch(/not selected: the server does not support structured replies/);
    await c.write(0, pattern(new Uint8Array(4096), 1)); // the connection itself is fine
  });

  it('without the metaContexts option nothing is selected, and the error says to add it', async () => {
    const peer = await startNbdkit(['memory', '16M']);
    peers.push(peer);
    const c = await open({ host: '127.0.0.1', port: peer.port, exportName: '', timeoutMs: 5000 });
    expect(c.metaContexts).toEqual([]);
    const err = await rejectsWith(c.blockStatus(0, MiB), ['ENOTSUP']);
    expect(err.message).toMatch(/add it to the metaContexts option/);
  });

  it('noextents filter: base:allocation is still offered and reports everything as data', async () => {
    const peer = await startNbdkit(['--filter=noextents', 'memory', '16M']);
    peers.push(peer);
    const c = await open({ host: '127.0.0.1', port: peer.port, exportName: '', timeoutMs: 5000, metaContexts: ['base:allocation'] });
    expect((await statusMap(c, 0, 16 * MiB)).runs).toEqual([{ offsetBytes: 0, lengthBytes: 16 * MiB, flags: 0 }]);
  });

  it('killed with a question in flight and restarted on the same port: re-selects the context and answers', async () => {
    const file = join(scope.dir, 'nbdkit-restart.img');
    writeFileSync(file, '');
    truncateSync(file, 16 * MiB);
    const port = await freePort();
    // The first server holds block status 2 s, so the question is surely in flight when it dies.
    let peer = await startNbdkit(['--filter=delay', 'file', file, 'delay-extents=2'], port);
    const logs: string[] = [];
    const c = await open({ host: '127.0.0.1', port, exportName: '', timeoutMs: 8000, metaContexts: ['base:allocation'], log: (l) => logs.push(l) });
    await c.write(MiB, pattern(new Uint8Array(MiB), 3));
    const asked = c.blockStatus(0, 16 * MiB);
    await sleep(200);
    await peer.kill();
    await sleep(200);
    peer = await startNbdkit(['file', file], port);
    peers.push(peer);
    const extents = await asked;
    expect(extents[0]).toEqual({ lengthBytes: MiB, flags: HOLE_ZERO });
    expect((await statusMap(c, 0, 16 * MiB)).runs).toEqual(expectedRuns(16 * MiB, [[MiB, MiB]]));
    expect(c.metaContexts).toEqual(['base:allocation']);
    const text = logs.join('\n');
    expect(text).toMatch(/connection 0 lost: .*; 1 request\(s\) to reissue/);
    expect(text).toMatch(/connection 0 reconnected/);
    expect(text).not.toMatch(/now selects/);
  });

  it('a question the server holds past timeoutMs fails with ETIMEDOUT', async () => {
    const peer = await startNbdkit(['--filter=delay', 'memory', '16M', 'delay-extents=3']);
    peers.push(peer);
    const c = await open({ host: '127.0.0.1', port: peer.port, exportName: '', timeoutMs: 500, metaContexts: ['base:allocation'] });
    const started = Date.now();
    const err = await rejectsWith(c.blockStatus(0, MiB), ['ETIMEDOUT']);
    expect(Date.now() - started).toBeLessThan(1000);
    expect(err.message).toMatch(/block status \(base:allocation\) of 1048576 bytes at 0 not answered within 500 ms/);
  });
});

describe('against qemu-nbd 10', () => {
  let version = '';
  beforeAll(async () => {
    const { run } = await import('../../../test/lib/proc.js');
    version = (await run('qemu-nbd', ['--version'])).stdout.split('\n')[0] ?? '';
  });

  it('negotiates extended headers: one extent covers 8 GiB of a sparse file; written ranges = data', async () => {
    expect(version).toMatch(/qemu-nbd (\d{2,})\./); // extended headers came with qemu 8.2
    const file = join(scope.dir, 'qemu-sparse.img');
    writeFileSync(file, '');
    truncateSync(file, 8 * GiB);
    const peer = await startQemuNbd(file, 'q');
    peers.push(peer);
    const c = await open({ host: '127.0.0.1', port: peer.port, exportName: 'q', timeoutMs: 5000, metaContexts: ['base:allocation', 'qemu:dirty-bitmap:none'] });
    expect(c.extendedHeaders).toBe(true);
    expect(c.metaContexts).toEqual(['base:allocation']);
    // A 64-bit length in the request and in the reply's descriptor.
    expect(await c.blockStatus(0, 8 * GiB)).toEqual([{ lengthBytes: 8 * GiB, flags: HOLE_ZERO }]);
    const ranges = await writeRanges(c);
    await c.write(6 * GiB, pattern(new Uint8Array(64 * KiB), 7));
    const { runs, calls } = await statusMap(c, 0, 8 * GiB);
    expect(runs).toEqual(expectedRuns(8 * GiB, [...ranges, [6 * GiB, 64 * KiB]]));
    expect(calls).toBeLessThan(4);
    // Reads and writes in extended mode too (holes come back as OFFSET_HOLE chunks under 32-byte headers).
    const back = new Uint8Array(2 * MiB).fill(0xee);
    await c.read(3 * MiB + 512 * KiB, back);
    expect(back.subarray(0, 512 * KiB).every((b) => b === 0)).toBe(true);
    expect(Buffer.compare(Buffer.from(back.subarray(512 * KiB, 1536 * KiB)), Buffer.from(pattern(new Uint8Array(MiB), 1)))).toBe(0);
  });

  it('extendedHeaders: false: compact replies, at most 2 GiB per question, the same map', async () => {
    const file = join(scope.dir, 'qemu-compact.img');
    writeFileSync(file, '');
    truncateSync(file, 8 * GiB);
    const peer = await startQemuNbd(file, 'q');
    peers.push(peer);
    const c = await open({ host: '127.0.0.1', port: peer.port, exportName: 'q', timeoutMs: 5000, metaContexts: ['base:allocation'], extendedHeaders: false });
    expect(c.extendedHeaders).toBe(false);
    expect(await c.blockStatus(0, 8 * GiB)).toEqual([{ lengthBytes: 2 * GiB, flags: HOLE_ZERO }]);
    const ranges = await writeRanges(c);
    const { runs, calls } = await statusMap(c, 0, 8 * GiB);
    expect(runs).toEqual(expectedRuns(8 * GiB, ranges));
    expect(calls).toBeGreaterThanOrEqual(4);
  });

  it('killed and restarted on the same port: a question asked during the outage is answered after the reconnect', async () => {
    const file = join(scope.dir, 'qemu-restart.img');
    writeFileSync(file, '');
    truncateSync(file, 64 * MiB);
    const port = await freePort();
    let peer = await startQemuNbd(file, 'q', port);
    const logs: string[] = [];
    const c = await open({ host: '127.0.0.1', port, exportName: 'q', timeoutMs: 8000, metaContexts: ['base:allocation'], log: (l) => logs.push(l) });
    const ranges = await writeRanges(c);
    await peer.kill();
    const asked = statusMap(c, 0, 64 * MiB);
    await sleep(300);
    peer = await startQemuNbd(file, 'q', port);
    peers.push(peer);
    expect((await asked).runs).toEqual(expectedRuns(64 * MiB, ranges));
    expect(c.extendedHeaders).toBe(true);
    expect(logs.join('\n')).toMatch(/connection 0 reconnected/);
  });
});

describe('against onestack\'s own server (memory export)', () => {
  let server: NbdServer;
  let port: number;
  beforeAll(async () => {
    server = createNbdServer(createMemoryProvider([createMemoryExport('d', 64 * MiB)]));
    port = (await server.listen('127.0.0.1', 0)).port;
  });
  afterAll(async () => {
    await server.close();
  });

  it('both header styles: base:allocation maps what was written', async () => {
    for (const extendedHeaders of [true, false]) {
      const c = await open({ host: '127.0.0.1', port, exportName: 'd', timeoutMs: 5000, metaContexts: ['base:allocation'], extendedHeaders });
      expect(c.extendedHeaders).toBe(extendedHeaders);
      expect(c.metaContexts).toEqual(['base:allocation']);
      if (extendedHeaders) await writeRanges(c); // the second pass sees the same data
      expect((await statusMap(c, 0, 64 * MiB)).runs).toEqual(expectedRuns(64 * MiB, RANGES));
      await c.close();
    }
  });
});

describe('reconnecting to a different server', () => {
  it('qemu-nbd (extended headers) replaced by nbdkit (compact) on the same port: long questions narrow to 2 GiB', async () => {
    const file = join(scope.dir, 'swap.img');
    writeFileSync(file, '');
    truncateSync(file, 8 * GiB);
    const port = await freePort();
    const qemu = await startQemuNbd(file, '', port);
    const logs: string[] = [];
    const c = await open({ host: '127.0.0.1', port, exportName: '', timeoutMs: 8000, metaContexts: ['base:allocation'], log: (l) => logs.push(l) });
    expect(c.extendedHeaders).toBe(true);
    await c.write(5 * GiB, pattern(new Uint8Array(64 * KiB), 2));
    expect(await c.blockStatus(0, 8 * GiB)).toEqual([
      { lengthBytes: 5 * GiB, flags: HOLE_ZERO }, { lengthBytes: 64 * KiB, flags: 0 }, { lengthBytes: 3 * GiB - 64 * KiB, flags: HOLE_ZERO },
    ]);
    await qemu.kill();
    const nbdkit = await startNbdkit(['file', file], port);
    peers.push(nbdkit);
    expect(await c.blockStatus(0, 8 * GiB)).toEqual([{ lengthBytes: 2 * GiB, flags: HOLE_ZERO }]);
    expect((await statusMap(c, 0, 8 * GiB)).runs).toEqual(expectedRuns(8 * GiB, [[5 * GiB, 64 * KiB]]));
    expect(logs.join('\n')).toMatch(/connection 0 reconnected/);
  });
});

describe('scripted server: refusals and malformed replies', () => {
  it('a server that refuses SET_META_CONTEXT (ERR_UNSUP): none selected, not an error', async () => {
    const fake = await startFake({ sizeBytes: MiB });
    fakes.push(fake);
    const c = await open({ host: '127.0.0.1', port: fake.port, exportName: '', timeoutMs: 2000, metaContexts: ['base:allocation'] });
    expect(c.metaContexts).toEqual([]);
    const err = await rejectsWith(c.blockStatus(0, 4096), ['ENOTSUP']);
    expect(err.message).toMatch(/refused NBD_OPT_SET_META_CONTEXT \[NBD_REP_ERR_UNSUP: not here\]/);
  });

  it('SET_META_CONTEXT replies: a refusal by policy selects none; a context selected twice or a nameless one is EPROTO', async () => {
    const policy = await startFake({ sizeBytes: MiB, onSetMetaContext: () => encodeOptionError(Opt.SET_META_CONTEXT, Rep.ERR_POLICY, 'no') });
    fakes.push(policy);
    const c = await open({ host: '127.0.0.1', port: policy.port, exportName: '', timeoutMs: 2000, metaContexts: ['base:allocation'] });
    expect(c.metaContexts).toEqual([]);
    expect((await rejectsWith(c.blockStatus(0, 4096), ['ENOTSUP'])).message).toMatch(/NBD_REP_ERR_POLICY: no/);
    const ack = encodeOptionReply(Opt.SET_META_CONTEXT, Rep.ACK);
    const twice = await startFake({ sizeBytes: MiB, onSetMetaContext: () => Buffer.concat([metaContextReply(1, 'base:allocation'), metaContextReply(1, 'other:x'), ack]) });
    fakes.push(twice);
    const err = await rejectsWith(NbdClient.connect({ host: '127.0.0.1', port: twice.port, exportName: '', timeoutMs: 2000, metaContexts: ['base:allocation'] }), ['EPROTO']);
    expect(err.message).toMatch(/selected meta context "other:x" \(id 1\) twice/);
    const nameless = await startFake({ sizeBytes: MiB, onSetMetaContext: () => Buffer.concat([encodeOptionReply(Opt.SET_META_CONTEXT, Rep.META_CONTEXT, new Uint8Array(4)), ack]) });
    fakes.push(nameless);
    await rejectsWith(NbdClient.connect({ host: '127.0.0.1', port: nameless.port, exportName: '', timeoutMs: 2000, metaContexts: ['base:allocation'] }), ['EPROTO']);
  });

  it('bad metaContexts options are refused up front (EINVAL)', async () => {
    const base = { host: '127.0.0.1', port: 1, exportName: '', timeoutMs: 1000 };
    for (const metaContexts of [[''], ['a', 'a'], ['x'.repeat(4097)], Array.from({ length: 33 }, (_, i) => `c:${i}`)]) {
      await rejectsWith(NbdClient.connect({ ...base, metaContexts }), ['EINVAL']);
    }
  });

  it('two contexts: each call gets its own context\'s extents', async () => {
    const fake = await startFake({
      sizeBytes: MiB, metaContexts: ['base:allocation', 'qemu:dirty-bitmap:b1'],
      onRequest: (req) => {
        if (req.type !== Cmd.BLOCK_STATUS) return undefined;
        const base = req.lengthBytes === 4096 ? [{ lengthBytes: 8192, flags: 3 }] : [{ lengthBytes: 8192, flags: 3 }, { lengthBytes: 100, flags: 0 }];
        return { bytes: Buffer.concat([statusChunk(req, 2, [{ lengthBytes: 4096, flags: 1 }], false), statusChunk(req, 1, base, true)]) };
      },
    });
    fakes.push(fake);
    const c = await open({ host: '127.0.0.1', port: fake.port, exportName: '', timeoutMs: 2000, metaContexts: ['base:allocation', 'qemu:dirty-bitmap:b1'] });
    expect(c.metaContexts).toEqual(['base:allocation', 'qemu:dirty-bitmap:b1']);
    expect(await c.blockStatus(0, 65536)).toEqual([{ lengthBytes: 8192, flags: 3 }, { lengthBytes: 100, flags: 0 }]);
    expect(await c.blockStatus(0, 65536, 'qemu:dirty-bitmap:b1')).toEqual([{ lengthBytes: 4096, flags: 1 }]);
    // The final extent may run past the request: it is clamped.
    expect(await c.blockStatus(0, 4096)).toEqual([{ lengthBytes: 4096, flags: 3 }]);
  });

  const malformed: Array<[string, (req: { cookieHi: number; cookieLo: number; lengthBytes: number }) => Uint8Array, RegExp]> = [
    ['an unknown context id', (req) => statusChunk(req, 7, [{ lengthBytes: 4096, flags: 0 }], true), /context id 7, which this connection did not select/],
    ['a zero-length extent', (req) => statusChunk(req, 1, [{ lengthBytes: 0, flags: 0 }], true), /extent of length 0/],
    ['an extent after one that reached the request\'s end',
      (req) => statusChunk(req, 1, [{ lengthBytes: req.lengthBytes, flags: 0 }, { lengthBytes: 512, flags: 3 }], true), /after the end of the request/],
    ['an extent past the end of the export', (req) => statusChunk(req, 1, [{ lengthBytes: 2 * MiB, flags: 0 }], true), /past the end of the export/],
    ['two chunks for one context', (req) => Buffer.concat([
      statusChunk(req, 1, [{ lengthBytes: 512, flags: 0 }], false), statusChunk(req, 1, [{ lengthBytes: 512, flags: 0 }], true),
    ]), /two block status chunks/],
  ];
  for (const [name, reply, why] of malformed) {
    it(`drops the connection on ${name}, reconnects and asks again`, async () => {
      const fake = await startFake({
        sizeBytes: MiB, metaContexts: ['base:allocation'],
        onRequest: (req, connection) => (connection === 0 && req.type === Cmd.BLOCK_STATUS ? { bytes: reply(req) } : undefined),
      });
      fakes.push(fake);
      const logs: string[] = [];
      const c = await open({ host: '127.0.0.1', port: fake.port, exportName: '', timeoutMs: 3000, metaContexts: ['base:allocation'], log: (l) => logs.push(l) });
      expect(await c.blockStatus(0, 65536)).toEqual([{ lengthBytes: 65536, flags: 0 }]);
      expect(fake.connections).toBe(2);
      expect(logs.join('\n')).toMatch(why);
    });
  }

  it('a reply without the asked context\'s chunk fails that call with EPROTO and keeps the connection', async () => {
    const fake = await startFake({
      sizeBytes: MiB, metaContexts: ['base:allocation', 'qemu:dirty-bitmap:b1'],
      onRequest: (req) => (req.type === Cmd.BLOCK_STATUS && req.offsetBytes === 0 ? { bytes: statusChunk(req, 2, [{ lengthBytes: 512, flags: 0 }], true) } : undefined),
    });
    fakes.push(fake);
    const c = await open({ host: '127.0.0.1', port: fake.port, exportName: '', timeoutMs: 2000, metaContexts: ['base:allocation', 'qemu:dirty-bitmap:b1'] });
    const err = await rejectsWith(c.blockStatus(0, 4096), ['EPROTO']);
    expect(err.message).toMatch(/held no extents for "base:allocation"/);
    expect(await c.blockStatus(4096, 4096)).toEqual([{ lengthBytes: 4096, flags: 0 }]);
    expect(fake.connections).toBe(1);
  });
});
