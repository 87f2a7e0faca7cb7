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
});
