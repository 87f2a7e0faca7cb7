// Session behaviour against the in-process fake target (tgtd covers interoperability; this covers
// what tgtd will not do on demand).

import { afterEach, describe, expect, it } from 'vitest';
import { encodeBhs, Opcode } from '../src/codec/pdu.js';
import { IscsiClient, type IscsiClientOptions } from '../src/index.js';
import { createFakeTarget, type FakeBehaviour, type FakeTarget } from './fake-target.js';

const KiB = 1024;
let fake: FakeTarget | null = null;
let client: IscsiClient | null = null;
const logs: string[] = [];

async function setup(behaviour: Partial<FakeBehaviour> = {}, extra: Partial<IscsiClientOptions> = {}): Promise<{ f: FakeTarget; c: IscsiClient }> {
  fake = await createFakeTarget(1024 * KiB, behaviour);
  client = await IscsiClient.connect({ host: '127.0.0.1', port: fake.port, targetIqn: 'iqn.2026-11.dev.onestack:fake', lun: 0, timeoutMs: 5000, log: (l) => logs.push(l), ...extra });
  return { f: fake, c: client };
}

afterEach(async () => {
  await client?.close();
  await fake?.close();
  client = null;
  fake = null;
});

async function until(cond: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const fill = (n: number, seed: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (i * 5 + seed) & 0xff);
const same = (a: Uint8Array, b: Uint8Array): boolean => Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;

describe('session against a fake target', () => {
  it('stays inside a 4-command CmdSN window and queues the rest', async () => {
    const { f, c } = await setup({ window: 4, answerDelayMs: 1 });
    await Promise.all(Array.from({ length: 64 }, (_, i) => c.write(i * 4 * KiB, fill(4 * KiB, i))));
    const back = await Promise.all(Array.from({ length: 64 }, async (_, i) => { const b = new Uint8Array(4 * KiB); await c.read(i * 4 * KiB, b); return b; }));
    expect(back.filter((b, i) => !same(b, fill(4 * KiB, i))).length).toBe(0);
    expect(f.stats.windowViolations).toBe(0);
    expect(f.stats.maxOutstanding).toBeLessThanOrEqual(4);
    expect(f.stats.maxOutstanding).toBe(4); // and the window was used, not just respected
  });

  it.each([false, true])('assembles Data-In in odd-sized pieces (status in last Data-In: %s) and splits by MAXIMUM TRANSFER LENGTH', async (statusInDataIn) => {
    const { f, c } = await setup({ statusInDataIn, dataInPieceBytes: 1000 });
    expect(c.info.maxRequestBytes).toBe(32 * KiB);
    f.disk.set(fill(100 * KiB, 3), 64 * KiB);
    const into = new Uint8Array(new SharedArrayBuffer(100 * KiB));
    await c.read(64 * KiB, into);
    expect(same(into, fill(100 * KiB, 3))).toBe(true);
  });

  it('answers a chain of R2Ts after immediate data', async () => {
    const { f, c } = await setup();
    const data = fill(32 * KiB, 9);
    await c.write(128 * KiB, data, { fua: true });
    expect(same(f.disk.subarray(128 * KiB, 160 * KiB), data)).toBe(true);
  });

  it('writes zeroes from a shared zero buffer when the target lacks WRITE SAME; trim is a no-op', async () => {
    const { f, c } = await setup();
    expect(c.info).toMatchObject({ canWriteZeroes: false, canTrim: false, canFua: true });
    f.disk.fill(0xee, 0, 256 * KiB);
    await c.writeZeroes(8 * KiB, 200 * KiB, { fua: true });
    expect(f.disk.subarray(8 * KiB, 208 * KiB).every((x) => x === 0)).toBe(true);
    expect(f.disk[8 * KiB - 1]).toBe(0xee);
    expect(f.disk[208 * KiB]).toBe(0xee);
    await c.trim(0, 4 * KiB);
    expect(f.disk[0]).toBe(0xee);
  });

  it('answers a NOP-In ping with the target\'s tag', async () => {
    const { f } = await setup();
    f.ping(0x1234);
    await until(() => f.stats.nopAnswers.includes(0x1234), 'the NOP-Out answer');
  });

  it('drops the connection on garbage (EPROTO), logs in again and reissues the pending read', async () => {
    const { f, c } = await setup();
    f.behaviour.silent = true;
    f.disk.set(fill(4 * KiB, 1), 0);
    const commandsBefore = f.stats.commands;
    const read = new Uint8Array(4 * KiB);
    const pending = c.read(0, read);
    await until(() => f.stats.commands > commandsBefore, 'the read to reach the target');
    f.behaviour.silent = false;
    const junk = encodeBhs({ opcode: Opcode.NopIn, lun: 0, itt: 1, ttt: 1, statSN: 0, expCmdSN: 0, maxCmdSN: 0, dataSegmentLength: 0 });
    junk[0] = 0x3c; // no such opcode
    f.inject(junk);
    await pending;
    expect(same(read, fill(4 * KiB, 1))).toBe(true);
    expect(f.stats.logins).toBe(2);
    expect(logs.some((l) => l.includes('connection lost (EPROTO') && l.includes('opcode 0x3c'))).toBe(true);
  });

  it('times out a command the target never answers, then recovers the session', async () => {
    const { f, c } = await setup({}, { timeoutMs: 400 });
    f.behaviour.silent = true;
    const started = Date.now();
    await expect(c.read(0, new Uint8Array(4 * KiB))).rejects.toMatchObject({ code: 'ETIMEDOUT', message: expect.stringContaining('timed out after 400 ms, no response from the target') });
    expect(Date.now() - started).toBeLessThan(900);
    f.behaviour.silent = false;
    await c.read(0, new Uint8Array(4 * KiB));
    expect(f.stats.logins).toBe(2); // the stuck task was cleared by logging in again
  });

  it('pings an idle target and, with no answer, declares the connection dead and logs in again', async () => {
    const { f, c } = await setup({ ignorePings: true }, { timeoutMs: 1000 });
    // Idle for 5 s, then a NOP-Out; 1 s (timeoutMs) without an answer ends the connection.
    await until(() => logs.some((l) => l.includes('no answer to NOP-Out')), 'the dead-connection verdict', 9000);
    f.behaviour.ignorePings = false;
    await until(() => f.stats.logins === 2 && c.connected, 'the re-login');
    await c.read(0, new Uint8Array(512));
  }, 15_000);

  it('logs out when the target asks (async event 1) and carries on after logging in again', async () => {
    const { f, c } = await setup();
    f.requestLogout();
    await until(() => f.stats.logouts === 1 && f.stats.logins === 2 && c.connected, 'logout and re-login');
    await c.write(0, fill(512, 2));
    expect(same(f.disk.subarray(0, 512), fill(512, 2))).toBe(true);
  });
});
