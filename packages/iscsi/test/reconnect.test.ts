// Losing the target: tgtd SIGKILLed mid-run, then restarted and reconfigured (the session logs
// in again and reissues what was in flight), or never restarted (deadlines, no hang).

import { createHash } from 'node:crypto';
import { closeSync, openSync, readSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { missingTools, sleep } from '../../../test/lib/proc.js';
import { IscsiClient, RemoteError } from '../src/index.js';
import { createTgtd, type Tgtd, type TgtdTarget } from './tgtd.js';

// tgtd keeps its control socket in /var/run/tgtd, which needs root.
const skip = missingTools(['tgtd', 'tgtadm']) ?? (process.getuid?.() === 0 ? null : 'tgtd needs root (its control socket lives in /var/run/tgtd)');
const MiB = 1024 * 1024;
const DISK: TgtdTarget = { tid: 1, iqn: 'iqn.2026-11.dev.onestack:reconnect', sizeBytes: 32 * MiB, incoming: { user: 'carol', secret: 'carol-secret-4242' } };
const CHAP = { user: 'carol', secret: 'carol-secret-4242' };

let tgtd: Tgtd;
const logs: string[] = [];

const block = (i: number, round: number): Uint8Array => new Uint8Array(65536).fill((i * 31 + round * 7 + 1) & 0xff);
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

function readBacking(offset: number, length: number): Uint8Array {
  const fd = openSync(tgtd.backing(DISK), 'r');
  try {
    const b = new Uint8Array(length);
    readSync(fd, b, 0, length, offset);
    return b;
  } finally {
    closeSync(fd);
  }
}

describe.skipIf(skip !== null)(`losing tgtd${skip === null ? '' : ` (skipped: ${skip})`}`, () => {
  beforeAll(async () => {
    tgtd = await createTgtd();
    await tgtd.configure([DISK]);
  });

  afterAll(async () => {
    await tgtd?.stop();
    for (const line of logs) expect(line).not.toContain(CHAP.secret);
  });

  it('reconnects after SIGKILL + restart + reconfigure, and every pending request completes', async () => {
    const c = await IscsiClient.connect({ host: '127.0.0.1', port: tgtd.port, targetIqn: DISK.iqn, lun: 1, chap: CHAP, timeoutMs: 15_000, log: (l) => logs.push(l) });
    try {
      const blocks = 128;
      // Round 0 lands before the crash; round 1 is in flight (or queued) while tgtd dies and comes back.
      await Promise.all(Array.from({ length: blocks }, (_, i) => c.write(i * 65536, block(i, 0))));
      const inflight = Array.from({ length: blocks }, (_, i) => c.write(i * 65536, block(i, 1)));
      const reads = Array.from({ length: 16 }, (_, i) => { const b = new Uint8Array(65536); return c.read((blocks + i) * 65536, b).then(() => b); });
      const all = Promise.allSettled([...inflight, ...reads]);
      await tgtd.kill();
      await sleep(300);
      expect(c.connected).toBe(false);
      await tgtd.start();
      await tgtd.configure([DISK]);
      const results = await all;
      expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
      expect(c.connected).toBe(true);
      await c.flush();
      for (let i = 0; i < blocks; i++) {
        const b = new Uint8Array(65536);
        await c.read(i * 65536, b);
        expect(sha(b), `block ${i}`).toBe(sha(block(i, 1)));
      }
      expect(sha(readBacking(0, 65536))).toBe(sha(block(0, 1)));
      // The crash caught commands on the wire (144 issued right before SIGKILL), and they were reissued.
      const lost = logs.map((l) => /connection lost .*; (\d+) command\(s\) in flight/.exec(l)).find((m) => m !== null);
      expect(Number(lost?.[1] ?? 0)).toBeGreaterThan(0);
      expect(logs.some((l) => /reconnected after \d+ attempt/.test(l))).toBe(true);
    } finally {
      await c.close();
    }
  });

  it('rejects within the deadline (ETIMEDOUT naming the cause) when tgtd stays dead, and close() is prompt', async () => {
    const timeoutMs = 1500;
    const c = await IscsiClient.connect({ host: '127.0.0.1', port: tgtd.port, targetIqn: DISK.iqn, lun: 1, chap: CHAP, timeoutMs, log: (l) => logs.push(l) });
    await tgtd.kill();
    const started = Date.now();
    const err = await c.read(0, new Uint8Array(4096)).then(() => null, (e: unknown) => e);
    const elapsedMs = Date.now() - started;
    expect(err).toBeInstanceOf(RemoteError);
    expect(['ETIMEDOUT', 'ECONNREFUSED']).toContain((err as RemoteError).code);
    expect((err as RemoteError).message).toMatch(/timed out after 1500 ms, not connected \(.*ECONNREFUSED|connection closed/);
    expect(elapsedMs).toBeLessThan(timeoutMs + 500);
    const closing = Date.now();
    await c.close();
    expect(Date.now() - closing).toBeLessThan(1000);
    // A fresh connect to the dead portal fails at once.
    const refused = await IscsiClient.connect({ host: '127.0.0.1', port: tgtd.port, targetIqn: DISK.iqn, lun: 1, timeoutMs }).then(() => null, (e: unknown) => e);
    expect(refused).toMatchObject({ code: 'ECONNREFUSED' });
  });
});
