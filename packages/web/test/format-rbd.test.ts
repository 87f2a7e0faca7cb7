// The GUI's text for an rbd:// element (src/format-rbd.ts): path, state, lock. Pure functions,
// tested in-process; the browser side is test/gui-rbd.test.ts.
import { describe, expect, it } from 'vitest';
import { formatLease, rbdLockText, rbdPathText, rbdStateText, rbdText, rbdWarn } from '../src/format-rbd.js';
import type { ElementRbd } from '../src/types.js';

const librbd: ElementRbd = { path: 'librbd', pool: 'rbd', image: 'img', pid: null, restarts: 0, state: 'up', clientAddrs: ['127.0.0.1:0/123'], inFlight: 3 };
const gateway: ElementRbd = { path: 'gateway', pool: 'rbd', image: 'img', pid: 1234, restarts: 1, state: 'up' };

describe('rbd path', () => {
  it('names librbd, the gateway, and why librbd was not loaded', () => {
    expect(rbdPathText(librbd)).toBe('librbd');
    expect(rbdPathText(gateway)).toBe('qemu-nbd gateway');
    expect(rbdPathText({ path: 'gateway', fallback: 'addon not built' })).toBe('qemu-nbd gateway (librbd not loaded: addon not built)');
  });

  it('librbd: client addresses and requests in flight; no pid', () => {
    expect(rbdText(librbd)).toBe('rbd via librbd: rbd/img · up · client 127.0.0.1:0/123 · 3 in flight');
    expect(rbdText({ ...librbd, clientAddrs: ['a', 'b'], inFlight: 0 })).toBe('rbd via librbd: rbd/img · up · clients a b · 0 in flight');
  });

  it('gateway: pid and restarts (also 0), the error only while it is not up', () => {
    expect(rbdText(gateway)).toBe('rbd via qemu-nbd gateway: rbd/img · up · pid 1234 · 1 restart');
    expect(rbdText({ ...gateway, restarts: 0, error: 'old' })).toBe('rbd via qemu-nbd gateway: rbd/img · up · pid 1234 · 0 restarts');
    expect(rbdText({ ...gateway, pid: null, restarts: 3, state: 'down', error: 'qemu-nbd exit status 1', fallback: 'librbd.so.1 missing' }))
      .toBe('rbd via qemu-nbd gateway (librbd not loaded: librbd.so.1 missing): rbd/img · down · 3 restarts: qemu-nbd exit status 1');
  });

  it('fenced shows clearly and in the warning style; up does not', () => {
    const fenced: ElementRbd = { ...librbd, state: 'fenced', error: 'blocklisted', inFlight: 0 };
    expect(rbdStateText(fenced)).toBe('FENCED (ownership lock lost: nothing more is written to the image)');
    expect(rbdText(fenced)).toBe('rbd via librbd: rbd/img · FENCED (ownership lock lost: nothing more is written to the image) · client 127.0.0.1:0/123 · 0 in flight: blocklisted');
    expect(rbdWarn(fenced)).toBe(true);
    expect(rbdWarn({ ...gateway, state: 'down' })).toBe(true);
    expect(rbdWarn(gateway)).toBe(false);
    expect(rbdWarn({ ...gateway, lock: { host: 'h', leaseMs: 15000, lost: 'x' } })).toBe(true);
  });
});

describe('rbd lock', () => {
  it('held by this host with its lease, LOST with the reason, nothing without a lock', () => {
    expect(rbdLockText({ ...librbd, lock: { host: 'hosta-1a2b', leaseMs: 15000 } })).toBe('lock: held by this host (hosta-1a2b) · lease 15 s');
    expect(rbdLockText({ ...librbd, lock: { host: 'h', leaseMs: 4000, lost: 'hostb-2 took it over' } })).toBe('lock LOST: hostb-2 took it over');
    expect(rbdLockText(gateway)).toBeNull();
  });
  it('formats the lease', () => {
    expect(formatLease(15000)).toBe('15 s');
    expect(formatLease(2500)).toBe('2.5 s');
    expect(formatLease(500)).toBe('500 ms');
  });
});
