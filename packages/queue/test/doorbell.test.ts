import { Worker } from 'node:worker_threads';
import { beforeAll, describe, expect, it } from 'vitest';
import { Doorbell, QueueError, Ring } from '../src/index.js';
import { distIndexUrl, ensureBuilt, fixtureUrl } from './helpers.js';

function spinMicros(us: number): void {
  const end = process.hrtime.bigint() + BigInt(Math.round(us * 1000));
  while (process.hrtime.bigint() < end) {
    // busy wait: opens race windows of varying width between consumer and producer
  }
}

describe('Doorbell (single thread)', () => {
  it('does not notify when nobody sleeps', () => {
    const bell = new Doorbell(new SharedArrayBuffer(Doorbell.BYTES), 0, true);
    for (let i = 0; i < 100; i++) bell.ring();
    expect(bell.sleepers()).toBe(0);
    expect(bell.wakeups()).toBe(0);
  });

  it('a ring between prepareSleep and sleep makes sleep return at once (not-equal)', () => {
    const bell = new Doorbell(new SharedArrayBuffer(Doorbell.BYTES), 0, true);
    const ticket = bell.prepareSleep();
    expect(bell.sleepers()).toBe(1);
    bell.ring(); // a producer saw our sleepers increment
    expect(bell.sleep(ticket, 10_000)).toBe('not-equal');
    expect(bell.sleepers()).toBe(0);
  });

  it('cancelSleep undoes prepareSleep; an unbalanced call throws', () => {
    const bell = new Doorbell(new SharedArrayBuffer(Doorbell.BYTES), 0, true);
    bell.prepareSleep();
    bell.cancelSleep();
    expect(bell.sleepers()).toBe(0);
    expect(() => bell.cancelSleep()).toThrow(QueueError);
    expect(bell.sleepers()).toBe(0);
  });

  it('sleepAsync resolves ok when rung from the event loop', async () => {
    const bell = new Doorbell(new SharedArrayBuffer(Doorbell.BYTES), 0, true);
    const ticket = bell.prepareSleep();
    setTimeout(() => bell.ring(), 10);
    await expect(bell.sleepAsync(ticket, 5_000)).resolves.toBe('ok');
    expect(bell.sleepers()).toBe(0);
    expect(bell.wakeups()).toBe(1);
  });

  it('sleepAsync times out when nobody rings', async () => {
    const bell = new Doorbell(new SharedArrayBuffer(Doorbell.BYTES), 0, true);
    await expect(bell.sleepAsync(bell.prepareSleep(), 5)).resolves.toBe('timed-out');
    expect(bell.sleepers()).toBe(0);
  });
});

describe('Doorbell (two threads)', () => {
  beforeAll(() => ensureBuilt());

  it('loses no wakeup: 5k ping-pong items, each pushed at a different moment of the consumer falling asleep', async () => {
    const capacity = 64;
    const total = 5_000;
    const stallMs = 1_000; // far above a wakeup (~40 µs) and far below the consumer's timeout
    const ringBytes = Ring.bytesFor(capacity);
    const sab = new SharedArrayBuffer(ringBytes + 64);
    const ring = new Ring(sab, 0, capacity, true);
    const bell = new Doorbell(sab, ringBytes, true);
    const progress = new Int32Array(sab, ringBytes + 32, 1);
    const worker = new Worker(fixtureUrl('doorbell-worker.mjs'), {
      workerData: {
        distIndexUrl, sab, ringOff: 0, bellOff: ringBytes, progressOff: ringBytes + 32, capacity, total,
        sleepTimeoutMs: 20_000, deadlineMs: Date.now() + 50_000,
      },
    });
    const done = new Promise<Record<string, number>>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    let stalls = 0;
    for (let i = 0; i < total; i++) {
      // Push 0-7 µs after the consumer took the previous item: sweeps the push across its
      // prepareSleep / re-check / Atomics.wait sequence, where a naive doorbell loses wakeups.
      spinMicros(i % 8);
      expect(ring.tryPush(i)).toBe(true);
      bell.ring();
      const until = Date.now() + stallMs;
      while (Atomics.load(progress, 0) <= i && Date.now() < until) spinMicros(1);
      if (Atomics.load(progress, 0) <= i) {
        stalls++; // lost wakeup: rescue the consumer and count it
        bell.ring();
      }
    }
    const results = await done;
    await worker.terminate();
    expect(stalls).toBe(0);
    expect(results.received).toBe(total);
    expect(results.outOfOrder).toBe(0);
    expect(results.timedOut).toBe(0);
    expect(results.ok).toBeGreaterThan(0); // the sleep path was really exercised
    expect(bell.wakeups()).toBeGreaterThan(0);
  }, 60_000);
});
