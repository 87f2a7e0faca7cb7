// Extended headers (NBD_OPT_EXTENDED_HEADERS) in transmission: 32-byte requests with 64-bit
// lengths, 32-byte reply headers for every reply, payloads on non-WRITE commands skipped and
// refused, protocol violations closing with a clear line; and block status replies over raw
// sockets in both header modes, including backends that break the extent contract.
// qemu 10 (qemu-io, qemu-img) negotiates extended headers on its own: it is the real peer here.
import { afterEach, describe, expect, it } from 'vitest';
import {
  AllocationFlag, Cmd, CmdFlag, Errno, MetaContext, type NbdExport, type NbdExtent, type NbdServer, ReplyFlag, ReplyType,
  createMemoryExport, createMemoryProvider, createNbdServer,
} from '../src/index.js';
import { type RawClient, fillPattern, run, waitFor } from './helpers.js';
import { compactRequest, errnoOf, extendedRequest, extentsOf, rawSession, readChunk, readReply } from './raw-session.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

let server: NbdServer | undefined;
const clients: RawClient[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.destroy();
  await server?.close();
  server = undefined;
});

/** A sparse export too large for memory: reads are zeroes, everything else is recorded. */
function bigExport(sizeBytes: number): { exp: NbdExport; calls: string[] } {
  const calls: string[] = [];
  const exp: NbdExport = {
    name: 'big', sizeBytes, readOnly: false, canFlush: true, canFua: true, canTrim: true, canWriteZeroes: true, canCache: true,
    canMultiConn: true, blockSize: { minimumBytes: 1, preferredBytes: 4096, maximumBytes: 32 * MiB },
    read: async (off, len) => ({ chunks: [new Uint8Array(len)], release: () => {} }),
    acquireWriteBuffer: async (len) => ({ chunks: [new Uint8Array(len)], release: () => {} }),
    write: async (off, buffer) => { calls.push(`write ${off} ${buffer.chunks[0]?.length}`); buffer.release(); },
    flush: async () => {},
    trim: async (off, len) => { calls.push(`trim ${off} ${len}`); },
    writeZeroes: async (off, len) => { calls.push(`zero ${off} ${len}`); },
    cache: async (off, len) => { calls.push(`cache ${off} ${len}`); },
    metaContexts: {
      names: () => [MetaContext.BASE_ALLOCATION],
      blockStatus: async (_context, off, len, max) => {
        calls.push(`status ${off} ${len} ${max}`);
        return [{ lengthBytes: len, flags: AllocationFlag.HOLE | AllocationFlag.ZERO }];
      },
    },
  };
  return { exp, calls };
}

let brokenAnswer: unknown = [];
const broken = async (): Promise<readonly NbdExtent[]> => brokenAnswer as NbdExtent[];
const dirty = async (off: number, len: number): Promise<readonly NbdExtent[]> => [{ lengthBytes: Math.min(len, 4096), flags: 1 }];

async function start(): Promise<{ port: number; logs: string[]; disk: ReturnType<typeof createMemoryExport>; calls: string[] }> {
  const disk = createMemoryExport('disk0', 16 * MiB, { extraContexts: { 'test:broken': broken, 'qemu:dirty-bitmap:x': dirty } });
  const big = bigExport(8 * GiB);
  const logs: string[] = [];
  server = createNbdServer(createMemoryProvider([disk, big.exp]), { log: (level, msg) => logs.push(`${level} ${msg}`) });
  const { port } = await server.listen('127.0.0.1', 0);
  return { port, logs, disk, calls: big.calls };
}

async function session(port: number, opts: Parameters<typeof rawSession>[1]): Promise<RawClient> {
  const { c } = await rawSession(port, opts);
  clients.push(c);
  return c;
}

const u64 = (b: Uint8Array, at: number): number => Number(new DataView(b.buffer, b.byteOffset).getBigUint64(at));

describe('extended headers over a raw socket', () => {
  it('every reply has a 32-byte header echoing the offset: data, none, error', async () => {
    const { port, disk } = await start();
    const c = await session(port, { extended: true });
    const data = fillPattern(new Uint8Array(8192), 7);
    c.write(extendedRequest(Cmd.WRITE, 1, 12288, data.length));
    c.write(data);
    expect(await readReply(c, true)).toEqual([{ flags: ReplyFlag.DONE, type: ReplyType.NONE, cookie: 1, offsetBytes: 12288, payload: new Uint8Array(0) }]);
    expect(Buffer.from(disk.data.subarray(12288, 12288 + 8192)).equals(data)).toBe(true);
    c.write(extendedRequest(Cmd.READ, 2, 12288, 8192, CmdFlag.DF));
    const [read] = await readReply(c, true);
    expect(read).toMatchObject({ flags: ReplyFlag.DONE, type: ReplyType.OFFSET_DATA, cookie: 2, offsetBytes: 12288 });
    expect(u64(read!.payload, 0)).toBe(12288);
    expect(Buffer.from(read!.payload.subarray(8)).equals(data)).toBe(true);
    c.write(extendedRequest(Cmd.READ, 3, 16 * MiB - 10, 20));
    const [err] = await readReply(c, true);
    expect(err).toMatchObject({ type: ReplyType.ERROR, cookie: 3, offsetBytes: 16 * MiB - 10 });
    expect(errnoOf(err!)).toBe(Errno.EINVAL);
    c.write(extendedRequest(Cmd.READ, 4, 0, 64 * MiB));
    expect(errnoOf((await readReply(c, true))[0]!)).toBe(Errno.EOVERFLOW);
    // WRITE with PAYLOAD_LEN: its length is the payload length anyway.
    c.write(extendedRequest(Cmd.WRITE, 5, 0, 4, CmdFlag.PAYLOAD_LEN));
    c.write(new Uint8Array([1, 2, 3, 4]));
    expect((await readReply(c, true))[0]).toMatchObject({ type: ReplyType.NONE, cookie: 5 });
    expect([...disk.data.subarray(0, 4)]).toEqual([1, 2, 3, 4]);
  });

  it('64-bit lengths reach the backend for TRIM, WRITE_ZEROES, CACHE and BLOCK_STATUS', async () => {
    const { port, calls } = await start();
    const c = await session(port, { name: 'big', extended: true, contexts: [MetaContext.BASE_ALLOCATION] });
    c.write(extendedRequest(Cmd.TRIM, 1, GiB, 5 * GiB));
    c.write(extendedRequest(Cmd.WRITE_ZEROES, 2, 0, 6 * GiB));
    c.write(extendedRequest(Cmd.CACHE, 3, 0, 8 * GiB));
    for (let i = 0; i < 3; i++) expect((await readReply(c, true))[0]?.type).toBe(ReplyType.NONE);
    c.write(extendedRequest(Cmd.BLOCK_STATUS, 4, GiB, 7 * GiB));
    const [status] = await readReply(c, true);
    expect(status).toMatchObject({ type: ReplyType.BLOCK_STATUS_EXT, flags: ReplyFlag.DONE, offsetBytes: GiB });
    expect(extentsOf(status!).extents).toEqual([[7 * GiB, 3]]);
    c.write(extendedRequest(Cmd.TRIM, 5, GiB, 8 * GiB)); // past the end
    expect(errnoOf((await readReply(c, true))[0]!)).toBe(Errno.EINVAL);
    c.write(extendedRequest(Cmd.TRIM, 6, 0, 2n ** 63n)); // beyond 2^53: saturates, refused
    expect(errnoOf((await readReply(c, true))[0]!)).toBe(Errno.EINVAL);
    expect(calls).toEqual([`trim ${GiB} ${5 * GiB}`, `zero 0 ${6 * GiB}`, `cache 0 ${8 * GiB}`, `status ${GiB} ${7 * GiB} 8192`]);
  });

  it('PAYLOAD_LEN on a non-WRITE command: the payload is skipped, EINVAL, and the stream stays in sync', async () => {
    const { port, logs } = await start();
    const c = await session(port, { extended: true, contexts: [MetaContext.BASE_ALLOCATION] });
    c.write(extendedRequest(Cmd.BLOCK_STATUS, 1, 0, 100, CmdFlag.PAYLOAD_LEN));
    c.write(new Uint8Array(100).fill(0x21)); // would look like requests if not skipped
    c.write(extendedRequest(Cmd.TRIM, 2, 0, 3, CmdFlag.PAYLOAD_LEN));
    c.write(new Uint8Array(3));
    c.write(extendedRequest(Cmd.FLUSH, 3, 0, 0));
    const replies = [await readReply(c, true), await readReply(c, true), await readReply(c, true)].map((r) => r[0]!);
    expect(replies.map((r) => [r.cookie, errnoOf(r)])).toEqual([[1, Errno.EINVAL], [2, Errno.EINVAL], [3, 0]]);
    // A payload too large to skip closes the connection, with a line saying why.
    c.write(extendedRequest(Cmd.TRIM, 4, 0, 2 ** 40, CmdFlag.PAYLOAD_LEN));
    expect(await c.waitClosed()).toBe(true);
    expect(logs.some((l) => l.includes('too large to skip'))).toBe(true);
  });

  it('a compact request after extended headers closes the connection with a clear log line', async () => {
    const { port, logs } = await start();
    const c = await session(port, { extended: true });
    c.write(compactRequest(Cmd.READ, 1, 0, 512)); // 28 bytes: must not wait for 4 more
    expect(await c.waitClosed()).toBe(true);
    expect(logs).toContainEqual(expect.stringMatching(/^warn nbd connection \d+: closing: protocol violation: compact request header after extended headers were negotiated$/));
  });

  it('an extended request without negotiating them closes too', async () => {
    const { port, logs } = await start();
    const c = await session(port, { structured: true });
    c.write(extendedRequest(Cmd.READ, 1, 0, 512));
    expect(await c.waitClosed()).toBe(true);
    expect(logs.some((l) => l.includes('extended request header without NBD_OPT_EXTENDED_HEADERS'))).toBe(true);
  });
});

describe('block status over a raw socket', () => {
  for (const extended of [false, true]) {
    const mode = extended ? 'extended' : 'compact';
    const req = (type: number, cookie: number, off: number, len: number, flags = 0): Uint8Array =>
      extended ? extendedRequest(type, cookie, off, len, flags) : compactRequest(type, cookie, off, len, flags);

    it(`${mode}: one chunk per context with the SET ids, only the last DONE; REQ_ONE gives one extent each`, async () => {
      const { port, disk } = await start();
      disk.data.fill(1, 8192, 12288);
      await disk.write(8192, { chunks: [new Uint8Array(4096)], release: () => {} }, { fua: false });
      const { c, contexts } = await rawSession(port, { structured: true, extended, contexts: [MetaContext.BASE_ALLOCATION, 'qemu:dirty-bitmap:x'] });
      clients.push(c);
      expect(contexts.map((x) => x.name)).toEqual([MetaContext.BASE_ALLOCATION, 'qemu:dirty-bitmap:x']);
      c.write(req(Cmd.BLOCK_STATUS, 1, 0, 16 * MiB));
      const chunks = await readReply(c, extended);
      expect(chunks.map((k) => [k.type, k.flags])).toEqual([[extended ? 6 : 5, 0], [extended ? 6 : 5, ReplyFlag.DONE]]);
      expect(chunks.map((k) => extentsOf(k))).toEqual([
        { contextId: contexts[0]!.id, extents: [[8192, 3], [4096, 0], [16 * MiB - 12288, 3]] },
        { contextId: contexts[1]!.id, extents: [[4096, 1]] },
      ]);
      c.write(req(Cmd.BLOCK_STATUS, 2, 4096, 16 * MiB - 4096, CmdFlag.REQ_ONE));
      const one = (await readReply(c, extended)).map((k) => extentsOf(k).extents);
      expect(one).toEqual([[[4096, 3]], [[4096, 1]]]);
    });

    it(`${mode}: refused without a context, past the end, or with length 0 (EINVAL); the connection stays`, async () => {
      const { port } = await start();
      const none = await session(port, { structured: true, extended });
      none.write(req(Cmd.BLOCK_STATUS, 1, 0, 4096));
      expect(errnoOf((await readReply(none, extended))[0]!)).toBe(Errno.EINVAL);
      const c = await session(port, { structured: true, extended, contexts: [MetaContext.BASE_ALLOCATION] });
      c.write(req(Cmd.BLOCK_STATUS, 2, 16 * MiB - 4096, 8192));
      c.write(req(Cmd.BLOCK_STATUS, 3, 0, 0));
      c.write(req(Cmd.BLOCK_STATUS, 4, 0, 4096));
      const replies = [await readReply(c, extended), await readReply(c, extended), await readReply(c, extended)].map((r) => r[0]!);
      expect(replies.map((r) => [r.cookie, errnoOf(r)])).toEqual([[2, Errno.EINVAL], [3, Errno.EINVAL], [4, 0]]);
    });

    it(`${mode}: a backend breaking the extent contract gets EIO and one log line, never a malformed reply`, async () => {
      const { port, logs } = await start();
      const c = await session(port, { structured: true, extended, contexts: ['test:broken'] });
      const bad: [unknown, number][] = [
        [[], 0], [[{ lengthBytes: 0, flags: 0 }], 0], [[{ lengthBytes: 4096, flags: 0 }, { lengthBytes: 4096, flags: 0 }], CmdFlag.REQ_ONE],
        [[{ lengthBytes: 8192, flags: 0 }], 0], [[{ lengthBytes: 512, flags: 1.5 }], 0], [[{ lengthBytes: 512, flags: -1 }], 0],
        [[{ lengthBytes: 2 ** 53, flags: 0 }], 0], [null, 0], [[{ lengthBytes: 512, flags: 2 ** 32 }], 0],
      ];
      let cookie = 0;
      for (const [answer, flags] of bad) {
        brokenAnswer = answer;
        c.write(req(Cmd.BLOCK_STATUS, ++cookie, 0, 4096, flags));
        const reply = await readReply(c, extended);
        expect(reply.map((r) => [r.cookie, errnoOf(r)]), JSON.stringify(answer)).toEqual([[cookie, Errno.EIO]]);
      }
      brokenAnswer = [{ lengthBytes: 512, flags: 0 }, { lengthBytes: 3584, flags: 1 }];
      c.write(req(Cmd.BLOCK_STATUS, ++cookie, 0, 4096));
      expect(extentsOf((await readReply(c, extended))[0]!).extents).toEqual([[512, 0], [3584, 1]]);
      expect(logs.filter((l) => l.includes('block status contract'))).toEqual([
        expect.stringMatching(/^error nbd connection \d+: backend broke the block status contract, replying EIO \(further ones not logged\): block status of "test:broken" at 0\+4096: no extents$/),
      ]);
    });
  }
});

describe('qemu (extended headers) against this server', () => {
  it('qemu-io negotiates extended headers (trace), passes pattern checks, and the server logs the mode', async () => {
    const { port, logs, disk } = await start();
    const uri = `nbd://127.0.0.1:${port}/disk0`;
    const r = await run('qemu-io', ['--trace', 'nbd_send_option_request', '--trace', 'nbd_receive_option_reply', '-f', 'raw', uri,
      '-c', 'write -P 0xab 0 1M', '-c', 'read -P 0xab 0 1M', '-c', 'write -P 0x5c 5M 12345', '-c', 'read -P 0x5c 5M 12345',
      '-c', 'write -z 8M 1M', '-c', 'read -P 0 8M 1M', '-c', 'discard 0 64k', '-c', 'read -P 0 0 64k', '-c', 'read -P 0xab 64k 960k']);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(r.stdout + r.stderr).not.toMatch(/Pattern verification failed|error/i);
    const trace = r.stderr + r.stdout;
    expect(trace).toContain('Received option reply 11 (extended headers), type 1 (ack)');
    expect(trace).not.toContain('Sending option request 8 (structured reply)');
    expect(disk.data[5 * MiB + 12344]).toBe(0x5c);
    expect(logs).toContainEqual(expect.stringMatching(/export "disk0" \(extended headers, meta contexts: base:allocation\)/));
  });

  it('qemu-img map over extended headers sees the written extents', async () => {
    const { port } = await start();
    const uri = `nbd://127.0.0.1:${port}/disk0`;
    const w = await run('qemu-io', ['-f', 'raw', uri, '-c', 'write -P 1 1M 256k', '-c', 'write -P 2 4M 4k']);
    expect(w.code, w.stderr).toBe(0);
    const m = await run('qemu-img', ['map', '--output=json', '-f', 'raw', uri]);
    expect(m.code, m.stderr).toBe(0);
    const map = (JSON.parse(m.stdout) as { start: number; length: number; data: boolean; zero: boolean }[]).map((e) => [e.start, e.length, e.data, e.zero]);
    expect(map).toEqual([[0, MiB, false, true], [MiB, 256 * KiB, true, false], [MiB + 256 * KiB, 3 * MiB - 256 * KiB, false, true],
      [4 * MiB, 4096, true, false], [4 * MiB + 4096, 12 * MiB - 4096, false, true]]);
  });

  it('qemu-img asks for the block status of all 8 GiB in one 64-bit request; nbdinfo (compact) in u32-sized pieces', async () => {
    const { port, calls } = await start();
    const uri = `nbd://127.0.0.1:${port}/big`;
    const m = await run('qemu-img', ['map', '--output=json', '-f', 'raw', uri]);
    expect(m.code, m.stderr).toBe(0);
    expect(JSON.parse(m.stdout)).toMatchObject([{ start: 0, length: 8 * GiB, data: false, zero: true }]);
    expect(calls).toEqual([`status 0 ${8 * GiB} 1`]); // REQ_ONE, the whole export at once
    calls.length = 0;
    const info = await run('nbdinfo', ['--map', '--json', uri]);
    expect(info.code, info.stderr).toBe(0);
    const extents = JSON.parse(info.stdout) as { offset: number; length: number; type: number }[];
    expect(extents.reduce((sum, e) => sum + e.length, 0)).toBe(8 * GiB);
    expect(extents.every((e) => e.type === 3)).toBe(true);
    for (const c of calls) expect(Number(c.split(' ')[2])).toBeLessThanOrEqual(2 ** 32 - 1);
  });

  it('copies stay right in extended mode: WRITE payloads land in place, READs are never copied', async () => {
    const { port, disk } = await start();
    const r = await run('qemu-io', ['-f', 'raw', `nbd://127.0.0.1:${port}/disk0`, '-c', 'write -P 0x77 0 4M', '-c', 'read -P 0x77 0 4M']);
    expect(r.code, r.stderr).toBe(0);
    expect(disk.data[4 * MiB - 1]).toBe(0x77);
    const stats = server!.stats();
    expect(stats.payloadBytesCopied).toBeLessThan(2 * MiB);
    expect(await waitFor(() => server!.connectionCount === 0)).toBe(true);
  });
});
