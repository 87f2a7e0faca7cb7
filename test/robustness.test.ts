// Acceptance: the daemon survives and keeps answering after bad magic, unknown options,
// oversized lengths, reads past the end, clients that vanish mid-request, and garbage bytes.
// Each case speaks raw NBD (test/lib/nbd-raw.ts), then a real client (nbdinfo) must still get
// the right answer, and a canary pattern written first must still be intact at the end.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useDaemon } from './lib/fixture.js';
import { GiB, MiB } from './lib/files.js';
import {
  CMD, ERRNO, FLAG_FIXED_NEWSTYLE, FLAG_NO_ZEROES, OPT, REP, RawConn, handshake, openExport, option, optionHeader,
  readOptReply, readSimpleReply, request,
} from './lib/nbd-raw.js';
import { nbdinfo, qemuIo, qemuIoFailed } from './lib/peers.js';
import { explain, sleep } from './lib/proc.js';

const CANARY = ['write -P 0xc7 3M 1M', 'flush'];
const CANARY_CHECK = ['read -P 0xc7 3M 1M'];

describe('robustness against misbehaving clients', () => {
  const fx = useDaemon('robust');
  const opened: RawConn[] = [];
  const track = (c: RawConn): RawConn => { opened.push(c); return c; };

  /** The daemon is alive and a real client gets the right size. */
  async function stillServes(): Promise<void> {
    expect(fx.daemon.alive, fx.daemon.logs()).toBe(true);
    const info = await nbdinfo(fx.daemon.uri('default'));
    expect(info.exports[0]?.['export-size']).toBe(1 * GiB);
  }

  /** A valid read on the same connection proves it was kept usable. */
  async function connectionUsable(c: RawConn, cookie: bigint): Promise<void> {
    await c.write(request(CMD.READ, cookie, 0n, 4096));
    const r = await readSimpleReply(c, 4096);
    expect(r.cookie).toBe(cookie);
    expect(r.error).toBe(0);
  }

  beforeAll(async () => {
    const w = await qemuIo(fx.daemon.uri('default'), CANARY);
    expect(qemuIoFailed(w), explain(w)).toBe(false);
  });
  afterAll(() => { for (const c of opened) c.destroy(); });

  it('bad option magic during the handshake: connection closed, daemon fine', async () => {
    const c = track(await RawConn.connect(fx.daemon.nbdPort));
    await handshake(c);
    await c.write(optionHeader(OPT.LIST, 0, 0x1122334455667788n));
    expect(await c.waitClosed(5_000), 'server closes after bad option magic').toBe(true);
    await stillServes();
  });

  it('unknown client flags: connection closed, daemon fine', async () => {
    const c = track(await RawConn.connect(fx.daemon.nbdPort));
    await handshake(c, FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES | 0x80);
    expect(await c.waitClosed(5_000)).toBe(true);
    await stillServes();
  });

  it('bad request magic in transmission: connection closed, daemon fine', async () => {
    const { conn } = await openExport(fx.daemon.nbdPort, 'default');
    track(conn);
    await conn.write(request(CMD.READ, 1n, 0n, 4096, 0, 0xdeadbeef));
    expect(await conn.waitClosed(5_000)).toBe(true);
    await stillServes();
  });

  it('unknown option: NBD_REP_ERR_UNSUP, and the same connection then goes on to GO and READ', async () => {
    const c = track(await RawConn.connect(fx.daemon.nbdPort));
    await handshake(c);
    await c.write(option(0x7a7a, Buffer.from('hello')));
    const r = await readOptReply(c);
    expect(r.option).toBe(0x7a7a);
    expect(r.type).toBe(REP.ERR_UNSUP);
    const name = Buffer.from('default');
    const go = Buffer.alloc(4 + name.length + 2);
    go.writeUInt32BE(name.length, 0);
    name.copy(go, 4);
    await c.write(option(OPT.GO, go));
    for (let i = 0; i < 8; i++) {
      const rep = await readOptReply(c);
      expect(rep.type < 0x80000000, `GO reply type 0x${rep.type.toString(16)}`).toBe(true);
      if (rep.type === REP.ACK) break;
    }
    await connectionUsable(c, 7n);
    await stillServes();
  });

  it('unknown command type: EINVAL; unknown command flag: EINVAL or ignored; connection kept', async () => {
    const { conn } = await openExport(fx.daemon.nbdPort, 'default');
    track(conn);
    await conn.write(request(99, 51n, 0n, 0));
    const a = await readSimpleReply(conn);
    expect(a.cookie).toBe(51n);
    expect(a.error).toBe(ERRNO.EINVAL);
    await conn.write(request(CMD.READ, 52n, 0n, 4096, 0x8000));
    const b = await readSimpleReply(conn, 4096);
    // proto.md: the server SHOULD refuse unknown flags with EINVAL; ignoring them is tolerated.
    expect([0, ERRNO.EINVAL]).toContain(b.error);
    expect(b.cookie).toBe(52n);
    await connectionUsable(conn, 53n);
    await stillServes();
  });

  it('NBD_OPT_EXPORT_NAME of an unknown export: connection closed; NBD_OPT_ABORT: acknowledged and closed', async () => {
    const c = track(await RawConn.connect(fx.daemon.nbdPort));
    await handshake(c);
    await c.write(option(OPT.EXPORT_NAME, Buffer.from('no-such-volume')));
    expect(await c.waitClosed(5_000)).toBe(true);
    const d = track(await RawConn.connect(fx.daemon.nbdPort));
    await handshake(d);
    await d.write(option(OPT.ABORT));
    const r = await readOptReply(d).catch(() => null); // the spec lets the server close without the ACK
    if (r !== null) expect(r.type).toBe(REP.ACK);
    expect(await d.waitClosed(5_000)).toBe(true);
    await stillServes();
  });

  it('oversized option length (4 GiB - 1, no payload): error reply or close within 5 s, daemon fine', async () => {
    const c = track(await RawConn.connect(fx.daemon.nbdPort));
    await handshake(c);
    await c.write(optionHeader(OPT.GO, 0xffffffff));
    await c.write(Buffer.alloc(64));
    let answered = false;
    try {
      const r = await readOptReply(c, 5_000);
      answered = r.type >= 0x80000000;
    } catch {
      answered = c.closed;
    }
    expect(answered || (await c.waitClosed(1_000)), 'server answers with an error or closes').toBe(true);
    await stillServes();
  });

  it('oversized READ length (2 GiB): error reply (connection kept) or clean close, daemon fine', async () => {
    const { conn } = await openExport(fx.daemon.nbdPort, 'default');
    track(conn);
    await conn.write(request(CMD.READ, 11n, 0n, 0x80000000));
    let r: { error: number } | null = null;
    try { r = await readSimpleReply(conn, 0, 10_000); } catch { r = null; }
    if (r !== null) {
      expect(r.error).not.toBe(0);
      await connectionUsable(conn, 12n);
    } else {
      expect(conn.closed, 'no reply means the server closed the connection').toBe(true);
    }
    await stillServes();
  });

  it('oversized WRITE length (4 GiB - 16, payload never sent): error or close, daemon fine', async () => {
    const { conn } = await openExport(fx.daemon.nbdPort, 'default');
    track(conn);
    await conn.write(request(CMD.WRITE, 13n, 0n, 0xfffffff0));
    await conn.write(randomBytes(4096));
    let r: { error: number } | null = null;
    try { r = await readSimpleReply(conn, 0, 5_000); } catch { r = null; }
    if (r !== null) expect(r.error).not.toBe(0);
    conn.destroy();
    await stillServes();
  });

  it('READ and WRITE past the end: errors (EINVAL / ENOSPC family), connection kept', async () => {
    const { conn, sizeBytes } = await openExport(fx.daemon.nbdPort, 'default');
    track(conn);
    expect(sizeBytes).toBe(BigInt(GiB));
    await conn.write(request(CMD.READ, 21n, sizeBytes - 4096n, 8192));
    const a = await readSimpleReply(conn, 8192);
    expect([ERRNO.EINVAL, ERRNO.ENOSPC, ERRNO.EOVERFLOW, ERRNO.EIO]).toContain(a.error);
    await conn.write(request(CMD.READ, 22n, sizeBytes + 1024n * 1024n, 4096));
    const b = await readSimpleReply(conn, 4096);
    expect(b.error).not.toBe(0);
    await conn.write(request(CMD.READ, 23n, 0xfffffffffffff000n, 8192)); // offset + length wraps 2^64
    const c = await readSimpleReply(conn, 8192);
    expect(c.error).not.toBe(0);
    await conn.write(Buffer.concat([request(CMD.WRITE, 24n, sizeBytes - 4096n, 8192), Buffer.alloc(8192, 0xee)]));
    const d = await readSimpleReply(conn);
    expect([ERRNO.ENOSPC, ERRNO.EINVAL, ERRNO.EOVERFLOW, ERRNO.EIO]).toContain(d.error);
    await conn.write(request(CMD.TRIM, 25n, sizeBytes, 4096));
    expect((await readSimpleReply(conn)).error).not.toBe(0);
    await connectionUsable(conn, 26n);
    // The refused write touched nothing inside the volume either.
    const tail = await qemuIo(fx.daemon.uri('default'), [`read -P 0 ${GiB - 4096} 4096`]);
    expect(qemuIoFailed(tail), explain(tail)).toBe(false);
    await stillServes();
  });

  it('clients that vanish mid-request (half a header, half a payload, unread replies)', async () => {
    const half = track(await RawConn.connect(fx.daemon.nbdPort));
    await handshake(half);
    await half.write(optionHeader(OPT.GO, 64).subarray(0, 9));
    half.destroy();

    const { conn: w } = await openExport(fx.daemon.nbdPort, 'default');
    track(w);
    await w.write(request(CMD.WRITE, 31n, BigInt(8 * MiB), 1 * MiB));
    await w.write(randomBytes(100 * 1024));
    w.destroy();

    const { conn: r } = await openExport(fx.daemon.nbdPort, 'default');
    track(r);
    const burst: Buffer[] = [];
    for (let i = 0; i < 32; i++) burst.push(request(CMD.READ, BigInt(100 + i), BigInt(i * MiB), 1 * MiB));
    await r.write(Buffer.concat(burst));
    r.destroy();

    const { conn: f } = await openExport(fx.daemon.nbdPort, 'default');
    track(f);
    await f.write(request(CMD.FLUSH, 41n, 0n, 0));
    f.destroy();
    await sleep(300);
    await stillServes();
    const check = await qemuIo(fx.daemon.uri('default'), ['read -P 0 8M 1M', ...CANARY_CHECK]);
    expect(qemuIoFailed(check), `abandoned write must not be applied in part or whole\n${explain(check)}`).toBe(false);
  });

  it('garbage bytes instead of a handshake, and after GO: connections closed, daemon fine', async () => {
    const g = track(await RawConn.connect(fx.daemon.nbdPort));
    await g.write(randomBytes(64 * 1024));
    expect(await g.waitClosed(5_000), 'garbage before the handshake closes the connection').toBe(true);

    const { conn } = await openExport(fx.daemon.nbdPort, 'default');
    track(conn);
    const junk = randomBytes(256 * 1024);
    junk.writeUInt32BE(0x0badf00d, 0); // never the request magic by accident
    await conn.write(junk);
    expect(await conn.waitClosed(5_000), 'garbage in transmission closes the connection').toBe(true);
    await stillServes();
  });

  it('many of the above at once, then a real client: canary intact', async () => {
    const storm = Array.from({ length: 16 }, async (_, i) => {
      const c = track(await RawConn.connect(fx.daemon.nbdPort));
      if (i % 2 === 0) await c.write(randomBytes(1024 + i));
      else { await handshake(c); await c.write(optionHeader(OPT.GO, 0x7fffffff)); }
      c.destroy();
    });
    await Promise.all(storm);
    await sleep(300);
    await stillServes();
    const check = await qemuIo(fx.daemon.uri('default'), CANARY_CHECK);
    expect(qemuIoFailed(check), explain(check)).toBe(false);
  });
});
