// End-to-end against a real target, tgtd (Debian `tgt`), and cross-checked with libiscsi's tools.

import { createHash, randomBytes } from 'node:crypto';
import { closeSync, openSync, readSync, statSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { missingTools, run } from '../../../test/lib/proc.js';
import { discoverIscsiTargets, IscsiClient, type IscsiClientOptions, RemoteError } from '../src/index.js';
import { createTgtd, type Tgtd, type TgtdTarget } from './tgtd.js';

// tgtd keeps its control socket in /var/run/tgtd, which needs root.
const skip = missingTools(['tgtd', 'tgtadm', 'iscsi-ls', 'iscsi-inq', 'iscsi-readcapacity16']) ?? (process.getuid?.() === 0 ? null : 'tgtd needs root (its control socket lives in /var/run/tgtd)');
const MiB = 1024 * 1024;
const ALICE = { user: 'alice', secret: 'alice-secret-0123' };
const BOB = { user: 'bob', secret: 'bob-secret-456789' };
const TGT = { user: 'tgtuser', secret: 'target-secret-9876' };
const SECRETS = [ALICE.secret, BOB.secret, TGT.secret, 'wrong-secret-0000'];

const OPEN: TgtdTarget = { tid: 1, iqn: 'iqn.2026-11.dev.onestack:open', sizeBytes: 64 * MiB, thinProvisioning: true };
const CHAP: TgtdTarget = { tid: 2, iqn: 'iqn.2026-11.dev.onestack:chap', sizeBytes: 8 * MiB, incoming: ALICE };
const MUTUAL: TgtdTarget = { tid: 3, iqn: 'iqn.2026-11.dev.onestack:mutual', sizeBytes: 8 * MiB, incoming: BOB, outgoing: TGT };
// Digests, unsolicited data (InitialR2T=No), bigger PDUs, and tgtd pinging us every second.
const DIGEST: TgtdTarget = {
  tid: 4, iqn: 'iqn.2026-11.dev.onestack:digest', sizeBytes: 16 * MiB,
  params: { HeaderDigest: 'CRC32C,None', DataDigest: 'CRC32C,None', InitialR2T: 'No', MaxRecvDataSegmentLength: '65536', FirstBurstLength: '131072', nop_interval: '1', nop_count: '3' },
};
const RO: TgtdTarget = { tid: 5, iqn: 'iqn.2026-11.dev.onestack:ro', sizeBytes: 4 * MiB, readOnly: true };

let tgtd: Tgtd;
const logs: string[] = [];
const clients: IscsiClient[] = [];

function options(t: TgtdTarget, extra: Partial<IscsiClientOptions> = {}): IscsiClientOptions {
  return { host: '127.0.0.1', port: tgtd.port, targetIqn: t.iqn, lun: 1, timeoutMs: 10_000, log: (l) => logs.push(l), ...extra };
}

async function connect(t: TgtdTarget, extra: Partial<IscsiClientOptions> = {}): Promise<IscsiClient> {
  const c = await IscsiClient.connect(options(t, extra));
  clients.push(c);
  return c;
}

async function failure(p: Promise<unknown>): Promise<RemoteError> {
  const err = await p.then(() => null, (e: unknown) => e);
  expect(err).toBeInstanceOf(RemoteError);
  return err as RemoteError;
}

function readBacking(t: TgtdTarget, offset: number, length: number): Uint8Array {
  const fd = openSync(tgtd.backing(t), 'r');
  try {
    const b = new Uint8Array(length);
    expect(readSync(fd, b, 0, length, offset)).toBe(length);
    return b;
  } finally {
    closeSync(fd);
  }
}

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
/** Byte equality without vitest's element-by-element deep equal (slow on big arrays). */
const same = (a: Uint8Array, b: Uint8Array): boolean => Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
const pattern = (length: number, seed: number): Uint8Array => Uint8Array.from({ length }, (_, i) => (i * 7 + seed * 13 + (i >> 9)) & 0xff);

describe.skipIf(skip !== null)(`against tgtd${skip === null ? '' : ` (skipped: ${skip})`}`, () => {
  beforeAll(async () => {
    tgtd = await createTgtd();
    await tgtd.configure([OPEN, CHAP, MUTUAL, DIGEST, RO]);
  });

  afterAll(async () => {
    for (const c of clients) await c.close();
    await tgtd?.stop();
    // No log line, from any test, carries a secret.
    for (const line of logs) for (const s of SECRETS) expect(line).not.toContain(s);
  });

  it('logs in without authentication and describes the LUN', async () => {
    const c = await connect(OPEN);
    expect(c.connected).toBe(true);
    expect(c.info).toMatchObject({ sizeBytes: 64 * MiB, blockSizeBytes: 512, readOnly: false, canFlush: true, canTrim: true, canMultiConn: false });
    expect(c.info.maxRequestBytes).toBe(8 * MiB); // tgtd reports no MAXIMUM TRANSFER LENGTH
    expect(logs.some((l) => l.includes('logged in') && l.includes(OPEN.iqn))).toBe(true);
  });

  it('writes land at the right offsets of the backing file, and read back', async () => {
    const c = await connect(OPEN);
    const spots = [0, MiB + 512, 3 * MiB + 4096, 64 * MiB - 4096];
    for (const [i, at] of spots.entries()) await c.write(at, pattern(i === 1 ? 1536 : 4096, i));
    await c.flush();
    for (const [i, at] of spots.entries()) {
      const want = pattern(i === 1 ? 1536 : 4096, i);
      expect(same(readBacking(OPEN, at, want.length), want)).toBe(true);
      const got = new Uint8Array(want.length);
      await c.read(at, got);
      expect(same(got, want)).toBe(true);
    }
    await c.write(8 * MiB, pattern(4096, 9), { fua: true });
    expect(same(readBacking(OPEN, 8 * MiB, 4096), pattern(4096, 9))).toBe(true);
  });

  it('reads into and writes from SharedArrayBuffer views', async () => {
    const c = await connect(OPEN);
    const sab = new SharedArrayBuffer(3 * 65536);
    const src = new Uint8Array(sab, 65536, 65536);
    src.set(pattern(65536, 3));
    await c.write(10 * MiB, src);
    const dst = new Uint8Array(sab, 2 * 65536, 65536);
    await c.read(10 * MiB, dst);
    expect(same(dst, pattern(65536, 3))).toBe(true);
  });

  it('refuses unaligned and out-of-range requests with clear errors, and keeps working', async () => {
    const c = await connect(OPEN);
    expect(await failure(c.read(100, new Uint8Array(512)))).toMatchObject({ code: 'EINVAL', message: expect.stringContaining('multiples of the 512-byte block') });
    expect((await failure(c.read(0, new Uint8Array(100)))).code).toBe('EINVAL');
    expect(await failure(c.read(64 * MiB, new Uint8Array(512)))).toMatchObject({ code: 'EINVAL', message: expect.stringContaining('past the end') });
    expect(await failure(c.write(64 * MiB - 512, new Uint8Array(1024)))).toMatchObject({ code: 'ENOSPC', message: expect.stringContaining(OPEN.iqn) });
    await c.read(0, new Uint8Array(512));
  });

  it('splits a 20 MiB write into 8 MiB commands (each answering R2Ts in 8 KiB Data-Out)', async () => {
    const c = await connect(OPEN);
    const data = new Uint8Array(randomBytes(20 * MiB));
    await c.write(20 * MiB, data);
    await c.flush();
    expect(sha(readBacking(OPEN, 20 * MiB, data.length))).toBe(sha(data));
    const back = new Uint8Array(data.length);
    await c.read(20 * MiB, back);
    expect(sha(back)).toBe(sha(data));
  });

  it('runs 256 concurrent 4 KiB writes then reads (beyond tgtd\'s 128-command window)', async () => {
    const c = await connect(OPEN);
    const base = 44 * MiB;
    await Promise.all(Array.from({ length: 256 }, (_, i) => c.write(base + i * 4096, pattern(4096, i))));
    const reads = await Promise.all(Array.from({ length: 256 }, async (_, i) => { const b = new Uint8Array(4096); await c.read(base + i * 4096, b); return b; }));
    expect(reads.filter((b, i) => !same(b, pattern(4096, i))).length).toBe(0);
    await c.flush();
    expect(same(readBacking(OPEN, base, 256 * 4096), Buffer.concat(Array.from({ length: 256 }, (_, i) => pattern(4096, i))))).toBe(true);
  });

  it('trims with UNMAP on a thin LUN: reads return zeroes and the file gets holes', async () => {
    const c = await connect(OPEN);
    expect(c.info.canTrim).toBe(true);
    const at = 32 * MiB;
    await c.write(at, new Uint8Array(4 * MiB).fill(0xab));
    await c.flush();
    const before = statSync(tgtd.backing(OPEN)).blocks;
    await c.trim(at, 4 * MiB, { fua: true });
    const back = new Uint8Array(4 * MiB).fill(1);
    await c.read(at, back);
    expect(back.every((b) => b === 0)).toBe(true);
    expect(statSync(tgtd.backing(OPEN)).blocks).toBeLessThan(before);
  });

  it('writes zeroes with WRITE SAME, with and without a hole', async () => {
    const c = await connect(OPEN);
    expect(c.info.canWriteZeroes).toBe(true);
    for (const noHole of [false, true]) {
      const at = noHole ? 40 * MiB : 41 * MiB;
      await c.write(at, new Uint8Array(MiB).fill(0x5a));
      await c.writeZeroes(at + 4096, MiB - 8192, { noHole, fua: true });
      const back = new Uint8Array(MiB);
      await c.read(at, back);
      expect(back.subarray(0, 4096).every((b) => b === 0x5a)).toBe(true);
      expect(back.subarray(4096, MiB - 4096).every((b) => b === 0)).toBe(true);
      expect(back.subarray(MiB - 4096).every((b) => b === 0x5a)).toBe(true);
      expect(readBacking(OPEN, at + 4096, 4096).every((b) => b === 0)).toBe(true);
    }
  });

  it('GET LBA STATUS tells holes from data on a thin LUN (what the backing file has), and a thick LUN says all data', async () => {
    const c = await connect(OPEN);
    expect(c.canBlockStatus).toBe(true);
    const at = 48 * MiB;
    await c.trim(at - MiB, 4 * MiB);
    await c.write(at, new Uint8Array(MiB).fill(0x77));
    await c.flush();
    const ext = await c.blockStatus(at - MiB, 3 * MiB);
    // Deallocated blocks read as zeroes on tgtd (LBPRZ), so holes are hole|zero (3).
    expect(ext).toEqual([{ lengthBytes: MiB, flags: 3 }, { lengthBytes: MiB, flags: 0 }, { lengthBytes: MiB, flags: 3 }]);
    // Starting inside a run, and clipped to the asked length.
    expect(await c.blockStatus(at + 4096, 8192)).toEqual([{ lengthBytes: 8192, flags: 0 }]);
    const thick = await connect(CHAP, { chap: ALICE });
    expect(thick.canBlockStatus).toBe(false);
    expect(await thick.blockStatus(0, MiB)).toEqual([{ lengthBytes: MiB, flags: 0 }]);
    await expect(c.blockStatus(0, 0)).rejects.toThrow(/empty range/);
  });

  it('logs in with one-way CHAP; a thick LUN cannot trim', async () => {
    const c = await connect(CHAP, { chap: ALICE });
    expect(c.info.canTrim).toBe(false);
    await c.trim(0, 4096); // advisory: a no-op, not an error
    await c.write(4096, pattern(4096, 1));
    const b = new Uint8Array(4096);
    await c.read(4096, b);
    expect(same(b, pattern(4096, 1))).toBe(true);
  });

  it('fails with EAUTH and no secret in the message for a wrong secret or missing credentials', async () => {
    const wrong = await failure(IscsiClient.connect(options(CHAP, { chap: { user: 'alice', secret: 'wrong-secret-0000' } })));
    expect(wrong.code).toBe('EAUTH');
    expect(wrong.message).toContain(`CHAP authentication failed for alice at 127.0.0.1:${tgtd.port}`);
    for (const s of SECRETS) expect(wrong.message).not.toContain(s);
    const none = await failure(IscsiClient.connect(options(CHAP)));
    expect(none).toMatchObject({ code: 'EAUTH', message: expect.stringContaining('no CHAP credentials') });
  });

  it('runs mutual CHAP, and refuses a target that cannot prove the target secret', async () => {
    const c = await connect(MUTUAL, { chap: { ...BOB, targetUser: TGT.user, targetSecret: TGT.secret } });
    await c.write(0, pattern(512, 5));
    const bad = await failure(IscsiClient.connect(options(MUTUAL, { chap: { ...BOB, targetUser: TGT.user, targetSecret: 'wrong-secret-0000' } })));
    expect(bad).toMatchObject({ code: 'EAUTH', message: expect.stringContaining('mutual CHAP failed') });
    for (const s of SECRETS) expect(bad.message).not.toContain(s);
  });

  it('reports a missing target as ENOENT and a missing LUN as ENOENT', async () => {
    expect(await failure(IscsiClient.connect(options({ ...OPEN, iqn: 'iqn.2026-11.dev.onestack:nope' })))).toMatchObject({ code: 'ENOENT', message: expect.stringContaining('iqn.2026-11.dev.onestack:nope not found') });
    expect(await failure(IscsiClient.connect(options(OPEN, { lun: 7 })))).toMatchObject({ code: 'ENOENT', message: expect.stringContaining('lun 7') });
  });

  it('negotiates CRC32C header and data digests, sends unsolicited data, and answers tgtd\'s NOP-In pings', async () => {
    const c = await connect(DIGEST, { digests: { header: 'crc32c', data: 'crc32c' } });
    expect(c.negotiated).toMatchObject({ headerDigest: true, dataDigest: true, initialR2T: false, immediateData: true, targetMaxRecvDataSegmentLength: 65536, firstBurstLength: 131072 });
    const data = new Uint8Array(randomBytes(3 * MiB + 4096));
    await c.write(MiB, data);
    const back = new Uint8Array(data.length);
    await c.read(MiB, back);
    expect(sha(back)).toBe(sha(data));
    await c.flush();
    expect(sha(readBacking(DIGEST, MiB, data.length))).toBe(sha(data));
    // tgtd pings every second and drops us after 3 unanswered pings.
    const linesBefore = logs.length;
    await new Promise((r) => setTimeout(r, 4500));
    await c.read(0, new Uint8Array(4096));
    expect(logs.slice(linesBefore).filter((l) => l.includes(DIGEST.iqn) && l.includes('connection lost'))).toEqual([]);
  });

  it('shows a read-only LUN as such and refuses writes with EPERM', async () => {
    const c = await connect(RO);
    expect(c.info).toMatchObject({ readOnly: true, sizeBytes: 4 * MiB });
    expect((await failure(c.write(0, new Uint8Array(512)))).code).toBe('EPERM');
    await c.read(0, new Uint8Array(512));
  });

  it('close() rejects what is still pending with ESHUTDOWN and later calls likewise', async () => {
    const c = await IscsiClient.connect(options(OPEN));
    const settled = Promise.allSettled(Array.from({ length: 32 }, (_, i) => c.read(i * MiB, new Uint8Array(MiB))));
    await c.close();
    const results = await settled;
    expect(results.some((r) => r.status === 'rejected')).toBe(true);
    for (const r of results) if (r.status === 'rejected') expect(r.reason).toMatchObject({ code: 'ESHUTDOWN' });
    expect(c.connected).toBe(false);
    expect((await failure(c.read(0, new Uint8Array(512)))).code).toBe('ESHUTDOWN');
  });

  it('discovers every target with SendTargets', async () => {
    const found = await discoverIscsiTargets({ host: '127.0.0.1', port: tgtd.port, timeoutMs: 5000 });
    expect(found.map((t) => t.targetIqn).sort()).toEqual([OPEN, CHAP, MUTUAL, DIGEST, RO].map((t) => t.iqn).sort());
    for (const t of found) expect(t.portals).toEqual([`127.0.0.1:${tgtd.port}`]);
  });

  it('agrees with libiscsi (iscsi-ls, iscsi-inq, iscsi-readcapacity16) about the same targets', async () => {
    // Without -s: with -s, iscsi-ls stops at the first target it cannot log in to (the CHAP ones).
    const ls = await run('iscsi-ls', [`iscsi://127.0.0.1:${tgtd.port}`], { timeoutMs: 20_000 });
    expect(ls.code, ls.stderr).toBe(0);
    const listed = [...ls.stdout.matchAll(/Target:(\S+) Portal:/g)].map((m) => m[1]).sort();
    const found = await discoverIscsiTargets({ host: '127.0.0.1', port: tgtd.port, timeoutMs: 5000 });
    expect(listed).toEqual(found.map((t) => t.targetIqn).sort());
    const url = `iscsi://127.0.0.1:${tgtd.port}/${OPEN.iqn}/1`;
    const inq = await run('iscsi-inq', [url], { timeoutMs: 20_000 });
    expect(inq.stdout).toContain('Peripheral Device Type:DIRECT_ACCESS');
    expect(inq.stdout).toContain('Vendor:IET');
    const cap = await run('iscsi-readcapacity16', [url], { timeoutMs: 20_000 });
    const c = await connect(OPEN);
    expect(cap.stdout).toContain(`Total size:${c.info.sizeBytes}`);
    expect(cap.stdout).toContain(`LOGICAL BLOCK LENGTH IN BYTES:${c.info.blockSizeBytes}`);
    // The CHAP target takes the same credentials from libiscsi.
    const chapInq = await run('iscsi-inq', [`iscsi://${ALICE.user}%${ALICE.secret}@127.0.0.1:${tgtd.port}/${CHAP.iqn}/1`], { timeoutMs: 20_000 });
    expect(chapInq.code, chapInq.stderr).toBe(0);
  });
});
