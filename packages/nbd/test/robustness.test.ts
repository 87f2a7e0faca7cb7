// Malformed and hostile traffic over raw sockets, plus in-flight limits, DISC, and leaks.
// After each abuse a real client (nbdinfo) must still get through.

import { afterEach, describe, expect, it } from 'vitest';
import {
  Cmd, ClientFlag, Errno, type NbdExport, NbdError, type NbdServer, Opt, Rep, ReplyType, Size,
  createMemoryExport, createMemoryProvider, createNbdServer, decodeOptionReply, decodeReplyHeader,
  encodeClientFlags, encodeInfoOption, encodeOption, encodeRequest,
} from '../src/index.js';
import { RawClient, type Served, run, serve, waitFor } from './helpers.js';

let served: Served | undefined;
let extra: NbdServer | undefined;

afterEach(async () => {
  await served?.server.close();
  await extra?.close();
  if (served) for (const e of [served.disk, served.copy32]) expect(e.outstanding()).toEqual({ reads: 0, writeBuffers: 0 });
  served = undefined;
  extra = undefined;
});

async function nbdinfoWorks(port: number): Promise<void> {
  const r = await run('nbdinfo', ['--size', `nbd://127.0.0.1:${port}/disk0`], 20_000);
  expect(r.code, r.stderr).toBe(0);
  expect(Number(r.stdout.trim())).toBeGreaterThan(0);
}

async function readOptionReply(c: RawClient): Promise<{ option: number; replyType: number; data: Uint8Array }> {
  const header = await c.read(Size.OPTION_REPLY_HEADER);
  const len = new DataView(header.buffer).getUint32(16);
  const data = await c.read(len);
  const all = new Uint8Array(header.length + data.length);
  all.set(header);
  all.set(data, header.length);
  const d = decodeOptionReply(all, 1 << 20);
  if (d.kind !== 'value') throw new Error('bad option reply');
  return d.value;
}

/** Raw client in transmission phase on `name`. */
async function rawGo(port: number, name: string, structured: boolean): Promise<RawClient> {
  const c = await RawClient.open(port);
  await c.read(Size.GREETING);
  c.write(encodeClientFlags(ClientFlag.FIXED_NEWSTYLE | ClientFlag.NO_ZEROES));
  if (structured) {
    c.write(encodeOption(Opt.STRUCTURED_REPLY));
    expect((await readOptionReply(c)).replyType).toBe(Rep.ACK);
  }
  c.write(encodeInfoOption(Opt.GO, name, []));
  // Bounded: INFO_EXPORT then ACK.
  for (let i = 0; i < 8; i++) if ((await readOptionReply(c)).replyType === Rep.ACK) return c;
  throw new Error('no ACK for GO');
}

function req(type: number, cookie: number, offsetBytes: number, lengthBytes: number, flags = 0): Uint8Array {
  const b = new Uint8Array(Size.REQUEST);
  encodeRequest(b, 0, { type, flags, cookieHi: 0, cookieLo: cookie, offsetBytes, lengthBytes });
  return b;
}

/** Reads one simple reply (and its data when `dataBytes` > 0 on success). */
async function simpleReply(c: RawClient, dataBytes = 0): Promise<{ cookie: number; errno: number }> {
  const h = decodeReplyHeader(await c.read(Size.SIMPLE_REPLY), 1 << 26);
  if (h.kind !== 'value' || h.value.kind !== 'simple') throw new Error('expected a simple reply');
  if (h.value.errno === 0 && dataBytes > 0) await c.read(dataBytes);
  return { cookie: h.value.cookieLo, errno: h.value.errno };
}

describe('handshake abuse', () => {
  it('garbage bytes close that connection only', async () => {
    served = await serve();
    const c = await RawClient.open(served.port);
    c.write(new TextEncoder().encode('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n'));
    expect(await c.waitClosed()).toBe(true);
    await nbdinfoWorks(served.port);
    expect(served.logs.some((l) => l.startsWith('warn') && l.includes('handshake ended'))).toBe(true);
  });

  it('answers an unknown option with ERR_UNSUP and keeps going', async () => {
    served = await serve();
    const c = await RawClient.open(served.port);
    await c.read(Size.GREETING);
    c.write(encodeClientFlags());
    c.write(encodeOption(0x1234, new Uint8Array(10)));
    expect(await readOptionReply(c)).toMatchObject({ option: 0x1234, replyType: Rep.ERR_UNSUP });
    c.write(encodeOption(Opt.STARTTLS));
    expect((await readOptionReply(c)).replyType).toBe(Rep.ERR_UNSUP);
    c.write(encodeOption(Opt.LIST));
    const replies = [await readOptionReply(c), await readOptionReply(c), await readOptionReply(c), await readOptionReply(c), await readOptionReply(c)];
    expect(replies.map((r) => r.replyType)).toEqual([Rep.SERVER, Rep.SERVER, Rep.SERVER, Rep.SERVER, Rep.ACK]);
    c.write(encodeOption(Opt.ABORT));
    expect((await readOptionReply(c)).replyType).toBe(Rep.ACK);
    expect(await c.waitClosed()).toBe(true);
    await nbdinfoWorks(served.port);
  });

  it('refuses an oversized option length with ERR_TOO_BIG and closes', async () => {
    served = await serve();
    const c = await RawClient.open(served.port);
    await c.read(Size.GREETING);
    c.write(encodeClientFlags());
    const header = encodeOption(Opt.EXPORT_NAME).slice();
    new DataView(header.buffer).setUint32(12, 0x7fffffff);
    c.write(header);
    expect(await readOptionReply(c)).toMatchObject({ option: Opt.EXPORT_NAME, replyType: Rep.ERR_TOO_BIG });
    expect(await c.waitClosed()).toBe(true);
    await nbdinfoWorks(served.port);
  });

  it('closes on EXPORT_NAME of an unknown export', async () => {
    served = await serve();
    const c = await RawClient.open(served.port);
    await c.read(Size.GREETING);
    c.write(encodeClientFlags());
    c.write(encodeOption(Opt.EXPORT_NAME, new TextEncoder().encode('nope')));
    expect(await c.waitClosed()).toBe(true);
    await nbdinfoWorks(served.port);
  });

  it('drops a silent client after the handshake timeout', async () => {
    served = await serve(1 << 20, { handshakeTimeoutMs: 300 });
    const c = await RawClient.open(served.port);
    await c.read(Size.GREETING);
    expect(await c.waitClosed(5000)).toBe(true);
    expect(served.logs.some((l) => l.includes('handshake timed out'))).toBe(true);
    expect(await waitFor(() => served?.server.connectionCount === 0)).toBe(true);
  });
});

describe('transmission abuse', () => {
  it('bad request magic closes the connection; others are unaffected', async () => {
    served = await serve();
    const c = await rawGo(served.port, 'disk0', false);
    const bad = req(Cmd.READ, 1, 0, 512);
    bad[0] = 0;
    c.write(bad);
    expect(await c.waitClosed()).toBe(true);
    await nbdinfoWorks(served.port);
  });

  it('unknown command → EINVAL, zero-length read → EINVAL, and the connection goes on', async () => {
    served = await serve();
    const c = await rawGo(served.port, 'disk0', false);
    c.write(req(99, 1, 0, 512));
    expect(await simpleReply(c)).toEqual({ cookie: 1, errno: Errno.EINVAL });
    c.write(req(Cmd.READ, 2, 0, 0));
    expect(await simpleReply(c)).toEqual({ cookie: 2, errno: Errno.EINVAL });
    c.write(req(Cmd.READ, 3, 0, 512));
    expect(await simpleReply(c, 512)).toEqual({ cookie: 3, errno: 0 });
    c.destroy();
  });

  it('errors a read with structured replies as an ERROR chunk', async () => {
    served = await serve();
    const c = await rawGo(served.port, 'disk0', true);
    c.write(req(Cmd.READ, 7, served.disk.sizeBytes - 1, 512));
    const h = decodeReplyHeader(await c.read(Size.STRUCTURED_HEADER), 1 << 20);
    expect(h).toMatchObject({ kind: 'value', value: { kind: 'structured', type: ReplyType.ERROR, cookieLo: 7, payloadBytes: 6 } });
    expect(new DataView((await c.read(6)).buffer).getUint32(0)).toBe(Errno.EINVAL);
    c.destroy();
  });

  it('skips the payload of a rejected write and stays in sync', async () => {
    served = await serve(1 << 20);
    const c = await rawGo(served.port, 'disk0', false);
    c.write(req(Cmd.WRITE, 1, (1 << 20) - 100, 4096)); // past the end
    c.write(new Uint8Array(4096).fill(0xee));
    c.write(req(Cmd.WRITE, 2, 0, 40 * 1024 * 1024)); // above the maximum block size, still skippable
    for (let i = 0; i < 40; i++) c.write(new Uint8Array(1024 * 1024));
    c.write(req(Cmd.READ, 3, 0, 16));
    expect(await simpleReply(c)).toEqual({ cookie: 1, errno: Errno.ENOSPC });
    expect(await simpleReply(c)).toEqual({ cookie: 2, errno: Errno.EOVERFLOW });
    expect(await simpleReply(c, 16)).toEqual({ cookie: 3, errno: 0 });
    c.destroy();
  });

  it('closes on a write too large to skip, without leaking', async () => {
    served = await serve();
    const c = await rawGo(served.port, 'disk0', false);
    c.write(req(Cmd.WRITE, 1, 0, 0xffffffff));
    expect(await c.waitClosed()).toBe(true);
    await nbdinfoWorks(served.port);
  });

  it('a client vanishing mid-payload gives its write buffer back', async () => {
    served = await serve();
    const c = await rawGo(served.port, 'disk0', false);
    c.write(req(Cmd.WRITE, 1, 0, 1024 * 1024));
    c.write(new Uint8Array(300 * 1024));
    expect(await waitFor(() => served?.disk.outstanding().writeBuffers === 1)).toBe(true);
    c.destroy();
    expect(await waitFor(() => served?.disk.outstanding().writeBuffers === 0)).toBe(true);
    await nbdinfoWorks(served.port);
  });

  it('DISC finishes in-flight requests, then closes', async () => {
    served = await serve();
    const c = await rawGo(served.port, 'disk0', false);
    const payload = new Uint8Array(65536).fill(0x42);
    const batch: Uint8Array[] = [];
    for (let i = 0; i < 8; i++) batch.push(req(Cmd.WRITE, i, i * 65536, 65536), payload);
    for (let i = 0; i < 8; i++) batch.push(req(Cmd.READ, 100 + i, i * 65536, 65536));
    batch.push(req(Cmd.DISC, 999, 0, 0));
    c.write(Buffer.concat(batch));
    const cookies: number[] = [];
    for (let i = 0; i < 16; i++) {
      const r = await simpleReply(c);
      expect(r.errno).toBe(0);
      if (r.cookie >= 100) expect((await c.read(65536))[0]).toBe(0x42); // the memory export applies a write when called, and each write is dispatched before its read is parsed
      cookies.push(r.cookie);
    }
    expect(cookies.sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 100, 101, 102, 103, 104, 105, 106, 107]);
    expect(await c.waitClosed()).toBe(true);
    expect(served.disk.data[7 * 65536 + 5]).toBe(0x42);
  });
});

/** A memory export whose reads wait until the test opens them, one by one. */
function gatedExport(): { exp: NbdExport; started: number[]; open(offsetBytes: number): void } {
  const mem = createMemoryExport('disk0', 1 << 20);
  const gates = new Map<number, () => void>();
  const started: number[] = [];
  const exp: NbdExport = {
    ...mem,
    read: async (offsetBytes, lengthBytes) => {
      started.push(offsetBytes);
      await new Promise<void>((resolve) => gates.set(offsetBytes, resolve));
      if (offsetBytes === 4096 * 7) throw new NbdError('ENOSPC', 'test error');
      if (offsetBytes === 4096 * 8) throw new Error('backend exploded');
      return mem.read(offsetBytes, lengthBytes);
    },
  };
  return { exp, started, open: (offsetBytes) => gates.get(offsetBytes)?.() };
}

describe('in-flight limits and completion order', () => {
  it('holds at most inFlightMax requests at the backend and replies in completion order', async () => {
    const gated = gatedExport();
    const logs: string[] = [];
    extra = createNbdServer(createMemoryProvider([gated.exp]), { inFlightMax: 4, log: (level, m) => logs.push(`${level} ${m}`) });
    const { port } = await extra.listen('127.0.0.1', 0);
    const c = await rawGo(port, 'disk0', false);
    const reqs: Uint8Array[] = [];
    for (let i = 0; i < 10; i++) reqs.push(req(Cmd.READ, i, i * 4096, 4096));
    c.write(Buffer.concat(reqs));
    expect(await waitFor(() => gated.started.length === 4)).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(gated.started.length).toBe(4); // the cap holds: nothing more was read off the socket
    gated.open(3 * 4096);
    expect(await simpleReply(c, 4096)).toEqual({ cookie: 3, errno: 0 }); // completion order, not request order
    const seen = [3];
    for (let round = 0; round < 20 && seen.length < 10; round++) {
      for (const off of gated.started) gated.open(off);
      const r = await simpleReply(c, 4096);
      seen.push(r.cookie);
      if (r.cookie === 7) expect(r.errno).toBe(Errno.ENOSPC);
      else if (r.cookie === 8) expect(r.errno).toBe(Errno.EIO);
      else expect(r.errno).toBe(0);
    }
    expect([...seen].sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(logs.filter((l) => l.includes('backend exploded'))).toHaveLength(1);
    c.destroy();
  });

  it('refuses connections beyond maxConnections', async () => {
    extra = createNbdServer(createMemoryProvider([createMemoryExport('disk0', 1 << 20)]), { maxConnections: 1 });
    const { port } = await extra.listen('127.0.0.1', 0);
    const first = await RawClient.open(port);
    await first.read(Size.GREETING);
    const second = await RawClient.open(port);
    expect(await second.waitClosed()).toBe(true);
    first.destroy();
    expect(await waitFor(() => extra?.connectionCount === 0)).toBe(true);
  });
});
