// The acknowledgement gate of remote/rbd-ack-gate.ts with the real lease keeper against a simulated
// Ceph CLI (fake-ceph.ts) on fake timers. With the rbd leg active, or for reads, nothing waits.
// With the leg away, a write is acknowledged only after a proof of ownership newer than the leg's
// departure: a renewal (data OSDs out, lock object fine: soon), the monitors' "unservable" (the
// lock object's OSD out); when cut off from the cluster, never: it fails with the self-fence.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Op } from '@onestack/queue';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { ElementConfig } from '../dist/config/types.js';
import type { DataPath } from '../dist/datapath/datapath.js';
import type { Registry } from '../dist/state/registry.js';
import { rbdAckGate } from '../dist/remote/rbd-ack-gate.js';
import { setRbdCliRunner } from '../dist/remote/rbd-lock-cli.js';
import { LEASE_ENV, releaseRbdLocks, setRbdLockClock, takeRbdLocks } from '../dist/remote/rbd-lock.js';
import { FakeCeph } from './fake-ceph.js';

const LEASE_MS = 15_000;
const VOLUME = 3;
const LOCAL = 0;
const RBD = 1;

function host(dataDir: string, states: string[]): { dataDir: string; registry: Registry; dataPath: DataPath } {
  const r0 = { name: 'r0', location: { kind: 'nbd', rbd: { pool: 'rbd', image: 'img', conf: '/etc/ceph/ceph.conf', id: 'admin', runDir: dataDir } } } as unknown as ElementConfig;
  const registry = {
    volumes: new Map([['v', { index: VOLUME, assembled: { config: { elements: ['l0', 'r0'] } } }]]),
    elements: new Map([['l0', { index: LOCAL, config: { name: 'l0', location: { kind: 'local' } } }], ['r0', { index: RBD, config: r0 }]]),
  } as unknown as Registry;
  const dataPath = { elementState: (i: number) => states[i] } as unknown as DataPath;
  return { dataDir, registry, dataPath };
}

describe('rbd acknowledgement gate (real lease keeper, simulated Ceph CLI, fake timers)', () => {
  let ceph: FakeCeph;
  let dir = '';
  const states = ['active', 'active'];

  beforeEach(async () => {
    vi.useFakeTimers();
    setRbdLockClock(() => performance.now());
    ceph = new FakeCeph();
    setRbdCliRunner(ceph.run);
    process.env[LEASE_ENV] = String(LEASE_MS);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rbd-gate-'));
    states[LOCAL] = 'active';
    states[RBD] = 'active';
    const r0 = host(dir, states).registry.elements.get('r0')!.config;
    const taken = takeRbdLocks(dir, [r0], () => undefined);
    await vi.advanceTimersByTimeAsync(500);
    await taken;
    await vi.advanceTimersByTimeAsync(2_000);
  });

  afterEach(async () => {
    await Promise.all([releaseRbdLocks(dir, () => undefined).catch(() => undefined), vi.advanceTimersByTimeAsync(40_000)]);
    fs.rmSync(dir, { recursive: true, force: true });
    setRbdCliRunner();
    setRbdLockClock();
    vi.useRealTimers();
    delete process.env[LEASE_ENV];
  });

  /** Settles `p` while the fake clock runs, up to `ms`: 'acked' at its time, an error message, or 'pending'. */
  async function outcome(p: Promise<void> | null, ms: number): Promise<{ what: string; afterMs: number }> {
    if (p === null) return { what: 'now', afterMs: 0 };
    const t0 = Date.now();
    let what = 'pending';
    let afterMs = -1;
    p.then(() => { what = 'acked'; afterMs = Date.now() - t0; }, (e: Error) => { what = e.message; afterMs = Date.now() - t0; });
    for (let t = 0; t < ms && what === 'pending'; t += 100) await vi.advanceTimersByTimeAsync(100);
    return { what, afterMs };
  }

  it('lets everything through at once while the rbd leg is active, and reads always', async () => {
    const gate = rbdAckGate(host(dir, states));
    expect(gate(VOLUME, Op.WRITE)).toBeNull();
    expect(gate(VOLUME, Op.FLUSH)).toBeNull();
    states[RBD] = 'stale';
    expect(gate(VOLUME, Op.READ)).toBeNull();
    expect(gate(VOLUME + 1, Op.WRITE)).toBeNull(); // a volume without an rbd leg
  });

  it('leg away but the lock object reachable (data OSDs out): acknowledged after the renewal it kicks, well within a period', async () => {
    const gate = rbdAckGate(host(dir, states));
    states[RBD] = 'stale';
    const r = await outcome(gate(VOLUME, Op.WRITE), 10_000);
    expect(r.what).toBe('acked');
    expect(r.afterMs).toBeLessThan(1_000);
    // The proof is fresh now: the next write goes at once, until a renewal is overdue.
    expect(gate(VOLUME, Op.WRITE)).toBeNull();
  });

  it('cut off from the cluster: never acknowledged; failed when the keeper fences, within a lease', async () => {
    const gate = rbdAckGate(host(dir, states));
    ceph.cutOff = true;
    states[RBD] = 'stale'; // the leg timed out because of the cut
    const r = await outcome(gate(VOLUME, Op.WRITE), LEASE_MS + 2_000);
    expect(r.what).toMatch(/not acknowledged: element r0 lost its ownership lock \(its lease was not renewed/);
    expect(r.afterMs).toBeLessThanOrEqual(LEASE_MS);
    // After the fence every gated acknowledgement fails at once.
    await expect(gate(VOLUME, Op.FLUSH)).rejects.toThrow(/lost its ownership lock/);
  });

  it('a lock released while an acknowledgement waits (onestack stopping) fails it rather than acknowledge it', async () => {
    const gate = rbdAckGate(host(dir, states));
    ceph.cutOff = true;
    states[RBD] = 'stale';
    const waiting = gate(VOLUME, Op.WRITE);
    expect((await outcome(waiting, 1_000)).what).toBe('pending');
    void releaseRbdLocks(dir, () => undefined);
    expect((await outcome(waiting, 1_000)).what).toMatch(/not acknowledged: element r0 released its ownership lock/);
  });

  it('the lock object\'s OSD out (no host can take the lock): acknowledged once the monitors say so, not before', async () => {
    const gate = rbdAckGate(host(dir, states));
    ceph.osdUp = false;
    states[RBD] = 'stale';
    const r = await outcome(gate(VOLUME, Op.WRITE), LEASE_MS);
    expect(r.what).toBe('acked');
    expect(r.afterMs).toBeGreaterThan(1_000); // a renewal had to be overdue before the monitors were asked
    expect(r.afterMs).toBeLessThan(LEASE_MS);
  });
});
