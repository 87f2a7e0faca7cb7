// The parts of the rbd ownership lock (remote/rbd-lock.ts) that need no cluster: the host id kept
// in the data dir (the lock cookie) and the lease length from the environment, bounded. The lock
// itself is tested against real Ceph in test/rbd-failover.test.ts; the lease rule without a cluster
// in rbd-lease.test.ts (pure) and rbd-lease-keeper.test.ts (simulated CLI, fake timers).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { LEASE_ENV, LEASE_MS_DEFAULT, hostId, leaseMs, rbdLockOf } from '../dist/remote/rbd-lock.js';

describe('rbd ownership lock: host id and lease', () => {
  const saved = process.env[LEASE_ENV];
  afterEach(() => {
    if (saved === undefined) delete process.env[LEASE_ENV];
    else process.env[LEASE_ENV] = saved;
  });

  it('makes a host id once per data dir and keeps it; two data dirs get two ids', () => {
    const a = fs.mkdtempSync(path.join(os.tmpdir(), 'rbd-lock-a-'));
    const b = fs.mkdtempSync(path.join(os.tmpdir(), 'rbd-lock-b-'));
    try {
      const id = hostId(a);
      expect(id).toMatch(/^[A-Za-z0-9_.-]+-[0-9a-f]{8}$/);
      expect(hostId(a)).toBe(id);
      expect(fs.readFileSync(path.join(a, 'host-id'), 'utf8').trim()).toBe(id);
      expect(hostId(b)).not.toBe(id);
      // A damaged file (not a usable cookie) is replaced rather than passed to the CLI.
      fs.writeFileSync(path.join(b, 'host-id'), 'two words; rm -rf\n');
      expect(hostId(b)).toMatch(/^[A-Za-z0-9_.-]+-[0-9a-f]{8}$/);
    } finally {
      fs.rmSync(a, { recursive: true, force: true });
      fs.rmSync(b, { recursive: true, force: true });
    }
  });

  it('takes the lease from ONESTACK_RBD_LEASE_MS within 2 s..300 s, else 15 s', () => {
    delete process.env[LEASE_ENV];
    expect(leaseMs()).toBe(LEASE_MS_DEFAULT);
    process.env[LEASE_ENV] = '4000';
    expect(leaseMs()).toBe(4000);
    process.env[LEASE_ENV] = '10';
    expect(leaseMs()).toBe(2000);
    process.env[LEASE_ENV] = '9999999';
    expect(leaseMs()).toBe(300_000);
    process.env[LEASE_ENV] = 'soon';
    expect(leaseMs()).toBe(LEASE_MS_DEFAULT);
  });

  it('reports no lock for an element it never locked', () => {
    expect(rbdLockOf('/nowhere', 'r0')).toBeNull();
  });
});
