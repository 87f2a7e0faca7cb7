// Limits (issue 8, item 4): max connections, max request size, handshake deadline (silent and
// trickling clients), write-payload deadline, per-connection in-flight cap. Real clients (python
// libnbd) where they can express the case, raw sockets for what they never send. Each limit gives
// the client an NBD error or a close and is logged once per burst (LimitLog).

import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  ClientFlag, Cmd, Errno, LimitLog, type NbdExport, type NbdServer, type NbdServerOptions, Opt, Rep, Size,
  createMemoryExport, createMemoryProvider, createNbdServer, decodeOptionReply, decodeReplyHeader,
  encodeClientFlags, encodeInfoOption, encodeOption, encodeRequest, resolveLimits,
} from '../src/index.js';
import { RawClient, fillPattern, run, waitFor } from './helpers.js';

const MiB = 1024 * 1024;
const servers: NbdServer[] = [];

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function start(options: NbdServerOptions, exports: NbdExport[] = [createMemoryExport('disk0', 64 * MiB)]): Promise<{ server: NbdServer; port: number; logs: string[] }> {
  const logs: string[] = [];
  const server = createNbdServer(createMemoryProvider(exports), { ...options, log: (level, msg) => logs.push(`${level} ${msg}`) });
  servers.push(server);
  const { port } = await server.listen('127.0.0.1', 0);
  return { server, port, logs };
}

/** Debian's python holds the libnbd bindings. */
function python(script: string, timeoutMs = 60_000): ReturnType<typeof run> {
  return run('/usr/bin/python3', ['-c', script], timeoutMs);
}

async function readOptionReply(c: RawClient): Promise<number> {
  const header = await c.read(Size.OPTION_REPLY_HEADER);
  const data = await c.read(new DataView(header.buffer).getUint32(16));
  const d = decodeOptionReply(new Uint8Array([...header, ...data]), 1 << 20);
  if (d.kind !== 'value') throw new Error('bad option reply');
  return d.value.replyType;
}

async function rawGo(port: number): Promise<RawClient> {
  const c = await RawClient.open(port);
  await c.read(Size.GREETING);
  c.write(encodeClientFlags(ClientFlag.FIXED_NEWSTYLE | ClientFlag.NO_ZEROES));
  c.write(encodeInfoOption(Opt.GO, 'disk0', []));
  for (let i = 0; i < 8; i++) if ((await readOptionReply(c)) === Rep.ACK) return c;
  throw new Error('no ACK for GO');
}

function req(type: number, cookie: number, offsetBytes: number, lengthBytes: number): Uint8Array {
  const b = new Uint8Array(Size.REQUEST);
  encodeRequest(b, 0, { type, flags: 0, cookieHi: 0, cookieLo: cookie, offsetBytes, lengthBytes });
  return b;
}

async function simpleReply(c: RawClient, dataBytes = 0, timeoutMs = 5000): Promise<{ cookie: number; errno: number }> {
  const h = decodeReplyHeader(await c.read(Size.SIMPLE_REPLY, timeoutMs), 1 << 26);
  if (h.kind !== 'value' || h.value.kind !== 'simple') throw new Error('expected a simple reply');
  if (h.value.errno === 0 && dataBytes > 0) await c.read(dataBytes, timeoutMs);
  return { cookie: h.value.cookieLo, errno: h.value.errno };
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const count = (logs: readonly string[], text: string): number => logs.filter((l) => l.includes(text)).length;

describe('LimitLog: one line per limit per interval', () => {
  afterEach(() => { vi.useRealTimers(); });

  it('logs the first hit at once, sums the rest up once per interval, and goes quiet', () => {
    vi.useFakeTimers();
    const lines: string[] = [];
    const log = new LimitLog((level, msg) => lines.push(`${level} ${msg}`), 1000);
    for (let i = 0; i < 50; i++) log.note('max-connections', 'warn', `refused client ${i}`);
    log.note('allow', 'warn', 'outsider');
    expect(lines).toEqual(['warn refused client 0', 'warn outsider']);
    vi.advanceTimersByTime(1000);
    expect(lines.slice(2)).toEqual(['warn refused client 49 [49 more like this not logged, 1 s interval]']);
    log.note('max-connections', 'warn', 'refused client 50'); // inside the re-opened window: counted
    vi.advanceTimersByTime(1000);
    expect(lines.at(-1)).toBe('warn refused client 50 [1 more like this not logged, 1 s interval]');
    vi.advanceTimersByTime(5000); // a quiet interval closes the window: nothing more
    expect(lines).toHaveLength(4);
    log.note('max-connections', 'warn', 'later');
    expect(lines.at(-1)).toBe('warn later');
    log.note('max-connections', 'warn', 'later again');
    log.close(); // the server closing flushes what is counted
    expect(lines.at(-1)).toBe('warn later again [1 more like this not logged, 1 s interval]');
    expect(vi.getTimerCount()).toBe(0);
  });

  it('limits are range-checked with their option name', () => {
    expect(resolveLimits({})).toMatchObject({ maxConnections: 64, maxRequestBytes: 32 * MiB, handshakeTimeoutMs: 10_000, inFlightMax: 64, payloadTimeoutMs: 60_000 });
    expect(() => resolveLimits({ maxConnections: 0 })).toThrow(/maxConnections: 0 is out of range/);
    expect(() => resolveLimits({ maxRequestBytes: 3 * MiB })).toThrow(/maxRequestBytes: .* not a power of two/);
    expect(() => resolveLimits({ maxRequestBytes: 64 * MiB })).toThrow(/maxRequestBytes/);
    expect(() => resolveLimits({ inFlightMax: 1.5 })).toThrow(/inFlightMax/);
    expect(() => createNbdServer(createMemoryProvider([]), { handshakeTimeoutMs: -1 })).toThrow(/handshakeTimeoutMs/);
  });
});

describe('maxConnections', () => {
  it('python libnbd: 4 connections get in, a burst of 20 more is refused with one log line, and a freed place is usable', async () => {
    const { server, port, logs } = await start({ maxConnections: 4 });
    const script = `
import nbd, sys, time
uri = "nbd://127.0.0.1:${port}/disk0"
held = []
for i in range(4):
    h = nbd.NBD(); h.connect_uri(uri); held.append(h)
refused = 0
for i in range(20):
    h = nbd.NBD()
    try:
        h.connect_uri(uri)
        print("unexpectedly connected", i); sys.exit(3)
    except nbd.Error:
        refused += 1
print("refused", refused)
assert len(held[0].pread(4096, 0)) == 4096
held[0].shutdown(); del held[0]
time.sleep(0.3)
for attempt in range(50):
    h = nbd.NBD()
    try:
        h.connect_uri(uri); break
    except nbd.Error:
        time.sleep(0.1)
print("reconnected", len(h.pread(4096, 0)))
`;
    const r = await python(script);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(r.stdout).toContain('refused 20');
    expect(r.stdout).toContain('reconnected 4096');
    const refusals = logs.filter((l) => l.includes('refusing connection'));
    expect(refusals).toHaveLength(1);
    expect(refusals[0]).toMatch(/^warn nbd: refusing connection from 127\.0\.0\.1: 4 connections open \(nbd\.maxConnections\)$/);
    await server.close();
    // The burst's summary: the other 19 counted, not logged one by one.
    expect(logs.filter((l) => l.includes('refusing connection')).at(-1)).toMatch(/\[19 more like this not logged/);
  });
});

describe('maxRequestBytes', () => {
  it('python libnbd learns the maximum from NBD_INFO_BLOCK_SIZE; larger reads and writes get EOVERFLOW, logged once', async () => {
    const disk = createMemoryExport('disk0', 16 * MiB);
    const { server, port, logs } = await start({ maxRequestBytes: 1 * MiB }, [disk]);
    const script = `
import nbd
h = nbd.NBD()
h.connect_uri("nbd://127.0.0.1:${port}/disk0")
print("max", h.get_block_size(nbd.SIZE_MAXIMUM))
for op in ("read", "write"):
    try:
        if op == "read": h.pread(2 << 20, 0)
        else: h.pwrite(b"\\xee" * (2 << 20), 0)
        print(op, "ok")
    except nbd.Error as e:
        print(op, "error", e.errno)
h.pwrite(b"\\x5a" * (1 << 20), 0)
print("in-limit", h.pread(1 << 20, 0) == b"\\x5a" * (1 << 20))
`;
    const r = await python(script);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.split('\n')).toEqual(expect.arrayContaining(['max 1048576', 'read error EOVERFLOW', 'write error EOVERFLOW', 'in-limit True']));
    expect(disk.data[(1 << 20) + 1]).toBe(0); // the refused 2 MiB write wrote nothing past the 1 MiB one
    expect(count(logs, 'EOVERFLOW')).toBe(1);
    await server.close();
    expect(logs.filter((l) => l.includes('EOVERFLOW')).at(-1)).toMatch(/\[1 more like this not logged/);
  });

  it('raw: an oversized write is skipped (EOVERFLOW, in sync); one too large to skip closes; both logged under one key', async () => {
    const { port, logs } = await start({ maxRequestBytes: 64 * 1024 });
    const c = await rawGo(port);
    c.write(req(Cmd.WRITE, 1, 0, 1 * MiB));
    c.write(new Uint8Array(1 * MiB).fill(0xab));
    c.write(req(Cmd.READ, 2, 0, 16));
    expect(await simpleReply(c)).toEqual({ cookie: 1, errno: Errno.EOVERFLOW });
    expect(await simpleReply(c, 16)).toEqual({ cookie: 2, errno: 0 });
    c.write(req(Cmd.WRITE, 3, 0, 0x7fffffff));
    expect(await c.waitClosed()).toBe(true);
    expect(count(logs, 'request of 1048576 bytes above the maximum of 65536')).toBe(1);
    expect(count(logs, 'too large to skip')).toBe(0); // same limit, same interval: counted, not logged
  });
});

describe('handshakeTimeoutMs: one deadline from accept', () => {
  it('a client trickling a byte every 150 ms is dropped by the overall deadline; ten of them give one line', async () => {
    const { server, port, logs } = await start({ handshakeTimeoutMs: 1000 });
    // Client flags, then a LIST option announcing 60000 data bytes that come one by one.
    const header = encodeOption(Opt.LIST).slice();
    new DataView(header.buffer).setUint32(12, 60_000);
    const started = Date.now(); // before connecting: every deadline runs from an accept after this
    const clients = await Promise.all(Array.from({ length: 10 }, () => RawClient.open(port)));
    for (const c of clients) {
      await c.read(Size.GREETING);
      c.write(encodeClientFlags());
      c.write(header);
    }
    const trickle = setInterval(() => { for (const c of clients) if (!c.closed) c.write(new Uint8Array([0x41])); }, 150);
    try {
      const closed = await Promise.all(clients.map((c) => c.waitClosed(5000)));
      expect(closed.every(Boolean)).toBe(true);
    } finally {
      clearInterval(trickle);
    }
    const tookMs = Date.now() - started;
    expect(tookMs).toBeGreaterThanOrEqual(990);
    expect(tookMs).toBeLessThan(4000);
    expect(count(logs, 'handshake timed out after 1000 ms')).toBe(1);
    expect(await waitFor(() => server.connectionCount === 0)).toBe(true);
    await server.close();
    expect(logs.filter((l) => l.includes('handshake timed out')).at(-1)).toMatch(/\[9 more like this not logged/);
  });

  it('a silent client after the greeting is dropped too', async () => {
    const { port, logs } = await start({ handshakeTimeoutMs: 300 });
    const c = await RawClient.open(port);
    await c.read(Size.GREETING);
    expect(await c.waitClosed(3000)).toBe(true);
    expect(count(logs, 'handshake timed out')).toBe(1);
  });
});

describe('payloadTimeoutMs: a WRITE payload that trickles in', () => {
  it('is dropped with its write buffer given back; a client writing normally alongside is unaffected', async () => {
    const disk = createMemoryExport('disk0', 16 * MiB);
    const { port, logs } = await start({ payloadTimeoutMs: 800 }, [disk]);
    const slow = await rawGo(port);
    slow.write(req(Cmd.WRITE, 1, 0, 64 * 1024));
    const trickle = setInterval(() => { if (!slow.closed) slow.write(new Uint8Array(16).fill(1)); }, 100);
    const fast = await rawGo(port);
    try {
      expect(await waitFor(() => disk.outstanding().writeBuffers === 1)).toBe(true);
      for (let i = 0; i < 20; i++) {
        fast.write(req(Cmd.WRITE, 100 + i, MiB + i * 4096, 4096));
        fast.write(fillPattern(new Uint8Array(4096), i));
        expect(await simpleReply(fast)).toEqual({ cookie: 100 + i, errno: 0 });
        await sleep(50); // spread over the slow client's deadline
      }
      expect(await slow.waitClosed(5000)).toBe(true);
    } finally {
      clearInterval(trickle);
    }
    expect(await waitFor(() => disk.outstanding().writeBuffers === 0)).toBe(true);
    expect(disk.data[5]).toBe(0); // nothing of the unfinished write reached the export
    expect(count(logs, 'write payload not received within 800 ms')).toBe(1);
    fast.write(req(Cmd.READ, 200, MiB, 4096));
    expect(await simpleReply(fast, 4096)).toEqual({ cookie: 200, errno: 0 });
    fast.destroy();
  });
});

/** A memory export whose reads wait until the test opens the gate. */
function gatedExport(sizeBytes: number): { exp: NbdExport; mem: ReturnType<typeof createMemoryExport>; reads: () => number; acquired: () => number; open(): void } {
  const mem = createMemoryExport('disk0', sizeBytes, { writeBufferBytes: 64 * MiB });
  let release: () => void = () => {};
  const gate = new Promise<void>((resolve) => { release = resolve; });
  let reads = 0;
  let acquired = 0;
  const exp: NbdExport = {
    ...mem,
    read: async (offsetBytes, lengthBytes) => {
      reads += 1;
      await gate;
      return mem.read(offsetBytes, lengthBytes);
    },
    acquireWriteBuffer: (lengthBytes) => {
      acquired += 1;
      return mem.acquireWriteBuffer(lengthBytes);
    },
  };
  return { exp, mem, reads: () => reads, acquired: () => acquired, open: () => release() };
}

describe('inFlightMax: at the cap the socket is not read, and nothing is lost', () => {
  it('4 reads held at the backend stop 32 MiB of pipelined writes in the client; opened, every write lands', async () => {
    const gated = gatedExport(64 * MiB);
    const { port, logs } = await start({ inFlightMax: 4 }, [gated.exp]);
    const c = await rawGo(port);
    const batch: Uint8Array[] = [];
    for (let i = 0; i < 4; i++) batch.push(req(Cmd.READ, i, i * 4096, 4096));
    for (let i = 0; i < 32; i++) batch.push(req(Cmd.WRITE, 100 + i, 16 * MiB + i * MiB, MiB), fillPattern(new Uint8Array(MiB), i + 1));
    c.write(Buffer.concat(batch));
    expect(await waitFor(() => gated.reads() === 4)).toBe(true);
    await sleep(500);
    // The server reads nothing while 4 requests are out: no write reached the backend, and what
    // the socket buffers could not take still waits in the client, not shrinking at all.
    const waiting = c.socket.writableLength;
    await sleep(300);
    expect(gated.reads()).toBe(4);
    expect(gated.acquired()).toBe(0);
    expect(waiting).toBeGreaterThan(0);
    expect(c.socket.writableLength).toBe(waiting);
    expect(count(logs, '4 requests in flight (nbd.inFlightMax)')).toBe(1);
    gated.open();
    const seen = new Map<number, number>();
    for (let i = 0; i < 36; i++) {
      const h = decodeReplyHeader(await c.read(Size.SIMPLE_REPLY, 10_000), 1 << 26);
      if (h.kind !== 'value' || h.value.kind !== 'simple') throw new Error('expected a simple reply');
      if (h.value.cookieLo < 100 && h.value.errno === 0) await c.read(4096); // READ data; WRITE replies carry none
      seen.set(h.value.cookieLo, h.value.errno);
    }
    expect([...seen.keys()].sort((a, b) => a - b)).toEqual([0, 1, 2, 3, ...Array.from({ length: 32 }, (_, i) => 100 + i)]);
    expect([...seen.values()].every((errno) => errno === 0)).toBe(true);
    for (let i = 0; i < 32; i++) {
      const at = 16 * MiB + i * MiB;
      const want = fillPattern(new Uint8Array(MiB), i + 1);
      expect(Buffer.compare(gated.mem.data.subarray(at, at + MiB), want), `write ${i}`).toBe(0);
    }
    expect(count(logs, 'requests in flight')).toBe(1); // once per connection, however often it hits the cap
    c.destroy();
  });
});
