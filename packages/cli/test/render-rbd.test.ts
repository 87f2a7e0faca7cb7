// The status line under an rbd:// element: which path reaches the image and how the gateway is.
import { describe, expect, it } from 'vitest';
import { rbdLine } from '../src/render-rbd.js';

describe('rbdLine', () => {
  it('says "rbd via qemu-nbd gateway" with pid and restarts, and the error only while it is not up', () => {
    expect(rbdLine({ path: 'gateway', pool: 'rbd', image: 'img', pid: 1234, restarts: 0, state: 'up' })).toBe('        rbd via qemu-nbd gateway: rbd/img, up, pid 1234');
    expect(rbdLine({ path: 'gateway', pool: 'rbd', image: 'img', pid: 99, restarts: 2, state: 'up', error: 'old' })).toBe('        rbd via qemu-nbd gateway: rbd/img, up, pid 99, 2 restarts');
    expect(rbdLine({ path: 'gateway', pool: 'p', image: 'i', pid: null, restarts: 1, state: 'down', error: 'qemu-nbd exit status 1: error connecting: Permission denied' }))
      .toBe('        rbd via qemu-nbd gateway: p/i, down, 1 restart: qemu-nbd exit status 1: error connecting: Permission denied');
    expect(rbdLine({ path: 'librbd', pool: 'p', image: 'i', pid: null, restarts: 0, state: 'up' })).toBe('        rbd via librbd: p/i, up');
  });

  it('adds the ownership lock between hosts: held with its lease, or LOST with the reason', () => {
    expect(rbdLine({ path: 'gateway', pool: 'rbd', image: 'vm1', pid: 7, restarts: 0, state: 'up', lock: { host: 'hostb-1a2b3c4d', leaseMs: 15000 } }))
      .toBe('        rbd via qemu-nbd gateway: rbd/vm1, up, pid 7; locked by this host (hostb-1a2b3c4d, lease 15 s)');
    expect(rbdLine({ path: 'gateway', pool: 'rbd', image: 'vm1', pid: null, restarts: 0, state: 'stopped', error: 'ownership lock lost: its lock was removed', lock: { host: 'h', leaseMs: 4000, lost: 'its lock was removed' } }))
      .toBe('        rbd via qemu-nbd gateway: rbd/vm1, stopped: ownership lock lost: its lock was removed; lock LOST: its lock was removed');
  });

  it('on the librbd path: the client address(es) another host would blocklist and the requests in flight', () => {
    expect(rbdLine({ path: 'librbd', pool: 'rbd', image: 'img', pid: null, restarts: 0, state: 'up', clientAddrs: ['127.0.0.1:0/123'], inFlight: 3, lock: { host: 'hosta-1', leaseMs: 15000 } }))
      .toBe('        rbd via librbd: rbd/img, up, client 127.0.0.1:0/123, 3 in flight; locked by this host (hosta-1, lease 15 s)');
    expect(rbdLine({ path: 'librbd', pool: 'rbd', image: 'img', pid: null, restarts: 0, state: 'up', clientAddrs: ['10.0.0.1:0/1', 'v2:10.0.0.1:0/1'], inFlight: 0 }))
      .toBe('        rbd via librbd: rbd/img, up, clients 10.0.0.1:0/1 v2:10.0.0.1:0/1, 0 in flight');
    expect(rbdLine({ path: 'librbd', pool: 'rbd', image: 'img', pid: null, restarts: 0, state: 'up', clientAddrs: [] })).toBe('        rbd via librbd: rbd/img, up');
  });

  it('on the gateway path says why librbd was not used', () => {
    expect(rbdLine({ path: 'gateway', pool: 'rbd', image: 'img', pid: 42, restarts: 1, state: 'up', fallback: 'librbd.so.1: cannot open shared object file' }))
      .toBe('        rbd via qemu-nbd gateway (librbd not loaded: librbd.so.1: cannot open shared object file): rbd/img, up, pid 42, 1 restart');
  });

  it('a fenced image says so in capitals, with the reason and the lost lock', () => {
    const line = rbdLine({ path: 'librbd', pool: 'rbd', image: 'vm1', pid: null, restarts: 0, state: 'fenced', error: 'blocklisted by hostb-2', inFlight: 0,
      lock: { host: 'hosta-1', leaseMs: 15000, lost: 'hostb-2 took the lock over' } });
    expect(line).toBe('        rbd via librbd: rbd/vm1, FENCED (ownership lock lost: nothing more is written to the image), 0 in flight: blocklisted by hostb-2; lock LOST: hostb-2 took the lock over');
  });
});
