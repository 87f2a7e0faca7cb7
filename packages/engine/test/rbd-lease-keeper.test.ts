// The lease keeper and the takeover of remote/rbd-lock.ts against a simulated Ceph CLI
// (setRbdCliRunner) on fake timers: a partition and an OSD outage seen by the holder, the client
// addresses written into the lease at once, and a taker blocklisting exactly what the lease names.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { ElementConfig } from '../dist/config/types.js';
import { setRbdCliRunner, type CliOptions, type CliResult } from '../dist/remote/rbd-lock-cli.js';
import { formatLease } from '../dist/remote/rbd-lease.js';
import {
  LEASE_ENV, hostId, onRbdLockLost, releaseRbdLocks, setRbdClientAddrs, setRbdLockClock, takeRbdLocks,
} from '../dist/remote/rbd-lock.js';

/** A one-object Ceph: the header's lock and lease xattr, one OSD that can be down, watchers. */
class FakeCeph {
  holder: { cookie: string; name: string } | null = null;
  lease: string | null = null;
  leaseWrites: string[] = [];
  osdUp = true;
  upFrom = 5;
  /** Every call hangs (until killed): a partition. */
  cutOff = false;
  watchers = [{ address: '127.0.0.1:0/111', client: 4100 }, { address: '127.0.0.1:0/222', client: 4200 }];
  blocklisted: string[] = [];
  clients = 7000;
  /** rados ops waiting for the OSD: like the Objecter, they go on once it is back. */
  private waiting: (() => void)[] = [];

  osdBack(upFrom: number): void {
    this.osdUp = true;
    this.upFrom = upFrom;
    for (const go of this.waiting.splice(0)) go();
  }

  run = (tool: string, full: readonly string[], opts: CliOptions): Promise<CliResult> => {
    const args = full.slice(full.indexOf('--client_mount_timeout') + 2);
    const hang = this.cutOff || (!this.osdUp && tool === 'rados');
    if (hang) {
      return new Promise((resolve) => {
        const t = setTimeout(() => resolve({ code: 1, stdout: '', stderr: 'timed out (killed)' }), opts.timeoutMs ?? 30_000);
        opts.signal?.addEventListener('abort', () => { clearTimeout(t); resolve({ code: 1, stdout: '', stderr: 'aborted' }); });
        if (!this.cutOff) this.waiting.push(() => { clearTimeout(t); setTimeout(() => resolve(this.answer(tool, args)), 50); });
      });
    }
    return new Promise((resolve) => setTimeout(() => resolve(this.answer(tool, args)), 50));
  };

  private answer(tool: string, a: readonly string[]): CliResult {
    const ok = (stdout = ''): CliResult => ({ code: 0, stdout, stderr: '' });
    const cmd = `${tool} ${a.filter((x) => !x.startsWith('-') && !['rbd', 'json'].includes(x)).slice(0, 2).join(' ')}`;
    if (tool === 'rbd' && a[0] === 'info') return ok('{"id":"abc"}');
    if (tool === 'rbd' && a[0] === 'status') return ok(JSON.stringify({ watchers: this.watchers }));
    if (tool === 'rbd' && a[0] === 'lock') return ok('[]');
    if (tool === 'rados') {
      const op = a[2];
      if (op === 'lock' && a[3] === 'info') return ok(JSON.stringify({ lockers: this.holder === null ? [] : [{ name: this.holder.name, cookie: this.holder.cookie, addr: '' }] }));
      if (op === 'lock' && a[3] === 'get') {
        if (this.holder !== null) return { code: 16, stdout: '', stderr: 'Device or resource busy' };
        this.holder = { cookie: a[a.indexOf('--lock-cookie') + 1]!, name: `client.${this.clients++}` };
        return ok();
      }
      if (op === 'lock' && a[3] === 'break') { this.holder = null; return ok(); }
      if (op === 'getxattr') return this.lease === null ? { code: 61, stdout: '', stderr: 'No data available' } : ok(this.lease);
      if (op === 'setxattr') { this.lease = a[5]!; this.leaseWrites.push(this.lease); return ok(); }
      if (op === 'rmxattr') { this.lease = null; return ok(); }
    }
    if (tool === 'ceph' && a[0] === 'osd' && a[1] === 'map') return ok(JSON.stringify({ epoch: 9, pgid: '2.7', up: this.osdUp ? [0] : [], up_primary: this.osdUp ? 0 : -1, acting: this.osdUp ? [0] : [], acting_primary: this.osdUp ? 0 : -1 }));
    if (tool === 'ceph' && a[0] === 'osd' && a[1] === 'dump') return ok(JSON.stringify({ osds: [{ osd: 0, up: this.osdUp ? 1 : 0, up_from: this.upFrom }] }));
    if (tool === 'ceph' && a[0] === 'pg') return ok(JSON.stringify({ pg_stats: [{ pgid: '2.7', state: this.osdUp ? 'active+clean' : 'stale+active+clean' }] }));
    if (tool === 'ceph' && a[0] === 'osd' && a[1] === 'blocklist') { this.blocklisted.push(a[3]!); return ok(); }
    return { code: 1, stdout: '', stderr: `fake ceph: unknown ${cmd}` };
  }
}

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
