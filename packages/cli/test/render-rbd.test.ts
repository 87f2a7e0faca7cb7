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
});
