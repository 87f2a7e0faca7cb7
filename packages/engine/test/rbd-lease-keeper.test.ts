// The lease keeper and the takeover of remote/rbd-lock.ts against a simulated Ceph CLI
// (setRbdCliRunner) on fake timers: a partition and an OSD outage seen by the holder, the client
// addresses written into the lease at once, and a taker blocklisting exactly what the lease names.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { ElementConfig } from '../dist/config/types.js';
import { setRbdCliRunner } from '../dist/remote/rbd-lock-cli.js';
import { FakeCeph } from './fake-ceph.js';
import { formatLease } from '../dist/remote/rbd-lease.js';
import {
  LEASE_ENV, hostId, onRbdLockLost, releaseRbdLocks, setRbdClientAddrs, setRbdLockClock, takeRbdLocks,
} from '../dist/remote/rbd-lock.js';

const LEASE_MS = 15_000;
const MARGIN_MS = 2_500;

function element(dataDir: string): ElementConfig {
  return { name: 'r0', location: { kind: 'nbd', rbd: { pool: 'rbd', image: 'img', conf: '/etc/ceph/ceph.conf', id: 'admin', runDir: dataDir } } } as unknown as ElementConfig;
}

describe('rbd lease keeper and takeover (simulated Ceph CLI, fake timers)', () => {
  let ceph: FakeCeph;
  let dirs: string[] = [];
  const logs: string[] = [];
  const log = (_l: string, m: string): void => { logs.push(m); };
  const dataDir = (): string => { const d = fs.mkdtempSync(path.join(os.tmpdir(), 'rbd-lease-')); dirs.push(d); return d; };

  beforeEach(() => {
    vi.useFakeTimers();
    setRbdLockClock(() => performance.now()); // the fake one (the real clock also reads /proc/uptime)
    ceph = new FakeCeph();
    setRbdCliRunner(ceph.run);
    process.env[LEASE_ENV] = String(LEASE_MS);
    logs.length = 0;
  });
  /** Releases with the fake clock running (the release's CLI calls, a renewal in flight). */
  const release = async (d: string): Promise<void> => {
    await Promise.all([releaseRbdLocks(d, () => undefined).catch(() => undefined), vi.advanceTimersByTimeAsync(40_000)]);
  };
  afterEach(async () => {
    for (const d of dirs) await release(d);
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
    dirs = [];
    setRbdCliRunner();
    setRbdLockClock();
    vi.useRealTimers();
    delete process.env[LEASE_ENV];
  });

  async function holderUp(): Promise<{ dir: string; lost: { atMs: number; reason: string }[] }> {
    const dir = dataDir();
    const taken = takeRbdLocks(dir, [element(dir)], log);
    await vi.advanceTimersByTimeAsync(500);
    await taken;
    const lost: { atMs: number; reason: string }[] = [];
    onRbdLockLost(dir, (_e, reason) => lost.push({ atMs: Date.now(), reason }));
    return { dir, lost };
  }

  it('writes the librbd client addresses into the lease at once, then stops serving when cut off', async () => {
    const { dir, lost } = await holderUp();
    expect(ceph.holder?.cookie).toBe(hostId(dir));
    setRbdClientAddrs(dir, 'r0', ['v2:127.0.0.1:0/222']);
    await vi.advanceTimersByTimeAsync(300);
    expect(JSON.parse(ceph.lease!)).toMatchObject({ host: hostId(dir), leaseMs: LEASE_MS, addrs: ['127.0.0.1:0/222'] });
    await vi.advanceTimersByTimeAsync(20_000);
    expect(lost).toEqual([]);
    const cutMs = Date.now();
    ceph.cutOff = true;
    const lastWrite = ceph.leaseWrites.length;
    await vi.advanceTimersByTimeAsync(LEASE_MS);
    expect(lost).toHaveLength(1);
    expect(ceph.leaseWrites.length).toBe(lastWrite);
    // The last renewal started at most a renewal period before the cut; the fence comes a lease − margin after it.
    expect(lost[0]!.atMs).toBeLessThanOrEqual(cutMs + LEASE_MS - MARGIN_MS);
    expect(lost[0]!.atMs).toBeGreaterThan(cutMs + LEASE_MS - MARGIN_MS - LEASE_MS / 3 - 200);
    expect(lost[0]!.reason).toMatch(/its lease was not renewed for 12\.\d s \(.*\) and the monitors did not show its lock object unservable/);
  });

  it('an OSD outage twice as long as the lease: serves on (the monitors say no OSD up) and renews after it', async () => {
    const { lost } = await holderUp();
    await vi.advanceTimersByTimeAsync(3000);
    ceph.osdUp = false;
    const writes = ceph.leaseWrites.length;
    await vi.advanceTimersByTimeAsync(2 * LEASE_MS);
    expect(lost).toEqual([]);
    expect(ceph.leaseWrites.length).toBe(writes);
    expect(logs.join('\n')).toMatch(/the monitors say its lock object cannot be served to anyone \(no OSD up for the lock object\).*serving on/);
    ceph.osdBack(12);
    await vi.advanceTimersByTimeAsync(3000);
    expect(ceph.leaseWrites.length).toBeGreaterThan(writes);
    expect(logs.join('\n')).toMatch(/lease renewed again/);
    await vi.advanceTimersByTimeAsync(3 * LEASE_MS);
    expect(lost).toEqual([]);
  });

  it('a taker blocklists exactly the client the stopped lease names; an old-format lease: every watcher', async () => {
    ceph.holder = { cookie: 'hosta-dead', name: 'client.4200' };
    ceph.lease = formatLease({ host: 'hosta-dead', seq: 8, leaseMs: LEASE_MS, renewedMs: 1, pid: 1, addrs: ['127.0.0.1:0/222'] });
    const dir = dataDir();
    const taken = takeRbdLocks(dir, [element(dir)], log);
    await vi.advanceTimersByTimeAsync(LEASE_MS + 3000);
    await taken;
    expect(ceph.blocklisted).toEqual(['127.0.0.1:0/222']);
    expect(ceph.holder?.cookie).toBe(hostId(dir));
    expect(logs.join('\n')).toMatch(/host hosta-dead's lease did not move for 1[67]\.\d s: fenced client\.4200 at 127\.0\.0\.1:0\/222 \(blocklisted 3600 s\)/);

    await release(dir);
    ceph.blocklisted = [];
    ceph.holder = { cookie: 'hostb-old', name: 'client.4100' };
    ceph.lease = '{"host":"hostb-old","seq":3,"leaseMs":15000,"renewedMs":1,"pid":1}';
    const dir2 = dataDir();
    const taken2 = takeRbdLocks(dir2, [element(dir2)], log);
    await vi.advanceTimersByTimeAsync(LEASE_MS + 3000);
    await taken2;
    expect(ceph.blocklisted).toEqual(['127.0.0.1:0/111', '127.0.0.1:0/222']);
  });

  it('a taker whose watch spans an OSD restart watches again (the holder may have been riding it out) and then sees the lease move', async () => {
    ceph.holder = { cookie: 'hosta-alive', name: 'client.4200' };
    ceph.lease = formatLease({ host: 'hosta-alive', seq: 8, leaseMs: LEASE_MS, renewedMs: 1, pid: 1 });
    const dir = dataDir();
    const taken = takeRbdLocks(dir, [element(dir)], log);
    const outcome = taken.then(() => 'taken', (err: Error) => err.message);
    await vi.advanceTimersByTimeAsync(2000);
    ceph.upFrom = 30; // the OSD restarted during the watch; the lease did not move (no host could write it)
    await vi.advanceTimersByTimeAsync(LEASE_MS);
    expect(logs.join('\n')).toMatch(/placement group changed while its lease was watched .*watching again/);
    ceph.lease = formatLease({ host: 'hosta-alive', seq: 9, leaseMs: LEASE_MS, renewedMs: 2, pid: 1 }); // A renews after the outage
    await vi.advanceTimersByTimeAsync(3000);
    expect(await outcome).toMatch(/is held by host hosta-alive \(its lease moved within 15 s/);
    expect(ceph.blocklisted).toEqual([]);
  });
});
