// Handing live connections from one server to another in one process (server.handOver() /
// adopt() / adoptHeld(); the cross-process takeover is test/takeover.test.ts): a request read
// during the quiesce travels unparsed and is answered by the new server; a WRITE in flight
// finishes on the old one first; a client that connects meanwhile waits and is greeted by the
// new one; a connection whose export is missing on the new side, or that does not go quiet in
// time, is closed.
import { afterEach, describe, expect, it } from 'vitest';
import { Cmd, Size, createMemoryExport, createMemoryProvider, createNbdServer, type NbdExport, type NbdServer } from '../src/index.js';
import { RawClient, fillPattern, waitFor } from './helpers.js';
import { errnoOf, readReply, rawSession } from './raw-session.js';

const SIZE_BYTES = 8 * 1024 * 1024;

/** The export with write buffers held until release() (a full slab): a WRITE waits mid-request. */
function gated(exp: NbdExport): { exp: NbdExport; release: () => void; waiting: () => number } {
  let open: () => void = () => undefined;
  let gate = new Promise<void>((resolve) => { open = resolve; });
  let waiting = 0;
  const wrapped = Object.create(exp, {
    acquireWriteBuffer: { value: async (n: number) => { waiting++; await gate; return exp.acquireWriteBuffer(n); } },
  }) as NbdExport;
  return { exp: wrapped, release: () => { open(); gate = Promise.resolve(); }, waiting: () => waiting };
}

function writeRequest(cookie: number, offsetBytes: number, payload: Uint8Array): Uint8Array {
  const b = new Uint8Array(Size.EXTENDED_REQUEST + payload.length);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, 0x21e41c71); // extended request magic
  dv.setUint16(6, Cmd.WRITE);
  dv.setBigUint64(8, BigInt(cookie));
  dv.setBigUint64(16, BigInt(offsetBytes));
  dv.setBigUint64(24, BigInt(payload.length));
  b.set(payload, Size.EXTENDED_REQUEST);
  return b;
}

function readRequest(cookie: number, offsetBytes: number, lengthBytes: number): Uint8Array {
  const b = new Uint8Array(Size.EXTENDED_REQUEST);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, 0x21e41c71);
  dv.setUint16(6, Cmd.READ);
  dv.setBigUint64(8, BigInt(cookie));
  dv.setBigUint64(16, BigInt(offsetBytes));
  dv.setBigUint64(24, BigInt(lengthBytes));
  return b;
}

describe('NbdServer handOver / adopt', () => {
  const open: { close(): Promise<void> }[] = [];
  afterEach(async () => {
    for (const s of open.splice(0)) await s.close();
  });
  const track = <T extends { close(): Promise<void> }>(s: T): T => { open.push(s); return s; };

  it('moves a connection mid-stream: the WRITE being read completes on the old server, pipelined READs are answered by the new one', async () => {
    const disk = createMemoryExport('disk0', SIZE_BYTES);
    const g = gated(disk);
    const logsA: string[] = [];
    const a: NbdServer = track(createNbdServer(createMemoryProvider([g.exp]), { log: (_l, m) => logsA.push(m) }));
    const b: NbdServer = track(createNbdServer(createMemoryProvider([disk])));
    const { port } = await a.listen('127.0.0.1', 0);
    const { c } = await rawSession(port, { extended: true });
    track({ close: async () => c.destroy() });
    const data = fillPattern(new Uint8Array(64 * 1024), 7);
    // The READ headers behind the payload are read by the old server while the WRITE waits for
    // its buffer, and parsed by the new one: read ahead, not lost.
    c.write(Buffer.concat([writeRequest(1, 4096, data), readRequest(2, 4096, data.length)]));
    expect(await waitFor(() => g.waiting() === 1)).toBe(true);
    const handing = a.handOver({ timeoutMs: 5_000 });
    c.write(readRequest(3, 0, 4096));
    await new Promise((resolve) => setTimeout(resolve, 100));
    g.release();
    const handover = await handing;
    expect(handover.connections).toHaveLength(1);
    expect(logsA.join('\n')).toMatch(/handed over \(64 bytes read ahead\)/);
    expect(b.adopt(handover.connections[0]!)).toBe(true);
    const w = await readReply(c, true);
    expect(w[0]?.cookie).toBe(1);
    expect(errnoOf(w[0]!)).toBe(0);
    const r2 = await readReply(c, true);
    expect(r2[0]?.cookie).toBe(2);
    expect(Buffer.from(r2[0]!.payload.subarray(8)).equals(Buffer.from(data)), "OFFSET_DATA: 8-byte offset, then the data").toBe(true);
    const r3 = await readReply(c, true);
    expect(r3[0]?.cookie).toBe(3);
    expect(b.connectionCount).toBe(1);
    expect(a.connectionCount).toBe(0);
    await handover.closeListeners();
  });

  it('a client connecting during the handover (even after the old server closed) is held without a greeting, then greeted by the new server', async () => {
    const disk = createMemoryExport('disk0', SIZE_BYTES);
    const a = track(createNbdServer(createMemoryProvider([disk])));
    const b = track(createNbdServer(createMemoryProvider([disk])));
    const { port } = await a.listen('127.0.0.1', 0);
    const handover = await a.handOver({ timeoutMs: 1_000 });
    await a.close(); // as a takeover does (engine closing): the listeners belong to the handover now
    const late = await RawClient.open(port);
    track({ close: async () => late.destroy() });
    await expect(late.read(Size.GREETING, 300)).rejects.toThrow(/timed out/);
    expect(await waitFor(() => handover.listeners.length === 1)).toBe(true);
    const held = handover.takeHeld();
    expect(held).toHaveLength(1);
    b.adoptHeld(held[0]!);
    expect((await late.read(Size.GREETING)).length).toBe(Size.GREETING);
    await handover.closeListeners();
  });

  it('a connection whose export the new server lacks is closed, not resumed', async () => {
    const disk = createMemoryExport('disk0', SIZE_BYTES);
    const a = track(createNbdServer(createMemoryProvider([disk])));
    const b = track(createNbdServer(createMemoryProvider([createMemoryExport('other', SIZE_BYTES)])));
    const { port } = await a.listen('127.0.0.1', 0);
    const { c } = await rawSession(port, { structured: true });
    track({ close: async () => c.destroy() });
    const handover = await a.handOver({ timeoutMs: 1_000 });
    expect(handover.connections).toHaveLength(1);
    expect(b.adopt(handover.connections[0]!)).toBe(false);
    expect(await c.waitClosed()).toBe(true);
    await handover.closeListeners();
  });

  it('a connection stuck mid-request (a WRITE whose payload stops coming) is closed at the deadline', async () => {
    const a = track(createNbdServer(createMemoryProvider([createMemoryExport('disk0', SIZE_BYTES)])));
    const { port } = await a.listen('127.0.0.1', 0);
    const { c } = await rawSession(port, { extended: true });
    track({ close: async () => c.destroy() });
    c.write(writeRequest(1, 0, new Uint8Array(65536)).subarray(0, Size.EXTENDED_REQUEST + 100));
    await new Promise((resolve) => setTimeout(resolve, 50));
    const handover = await a.handOver({ timeoutMs: 300 });
    expect(handover.connections).toHaveLength(0);
    expect(await c.waitClosed()).toBe(true);
    await handover.closeListeners();
  });

  it('a connection still in its handshake at the deadline is closed', async () => {
    const a = track(createNbdServer(createMemoryProvider([createMemoryExport('disk0', SIZE_BYTES)])));
    const { port } = await a.listen('127.0.0.1', 0);
    const c = await RawClient.open(port);
    track({ close: async () => c.destroy() });
    await c.read(Size.GREETING); // and then says nothing
    const handover = await a.handOver({ timeoutMs: 200 });
    expect(handover.connections).toHaveLength(0);
    expect(await c.waitClosed()).toBe(true);
    await handover.closeListeners();
  });
});
