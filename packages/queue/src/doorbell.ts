// Sleep/wake between threads without lost wakeups and without paying for a notify when nobody
// sleeps: on this machine a wakeup costs 15-20 µs while a ring operation is nearly free
// (docs: /work/shared/CALIBRATION.md), so the producer only notifies when `sleepers > 0`.
//
// Layout (Int32 words): 0 ticket, 1 sleepers, 2 threads woken, 3 magic.
//
// Why no wakeup is lost (all Atomics are seq_cst, so they sit in one total order):
//   consumer: t = load(ticket); add(sleepers, 1); re-check queues; wait(ticket, t)
//   producer: push item; if load(sleepers) > 0 { add(ticket, 1); notify }
// If the consumer's re-check missed the item, its sleepers increment came before the push, so
// the producer sees sleepers > 0 and bumps the ticket; the ticket was loaded before that bump,
// so wait() either returns 'not-equal' at once or is parked and gets the notify.
import { assert, assertRegion, QueueError } from './assert.js';

const TICKET = 0;
const SLEEPERS = 1;
const WAKEUPS = 2;
const MAGIC = 3;
const BELL_MAGIC = 0x42454c4c; // 'BELL'

export type SleepResult = 'ok' | 'not-equal' | 'timed-out';

export class Doorbell {
  static readonly BYTES: number = 16;

  private readonly w: Int32Array;

  constructor(sab: SharedArrayBuffer, byteOffset: number, init: boolean) {
    assertRegion(sab, byteOffset, Doorbell.BYTES, 4, 'Doorbell');
    this.w = new Int32Array(sab, byteOffset, 4);
    if (init) {
      Atomics.store(this.w, TICKET, 0);
      Atomics.store(this.w, SLEEPERS, 0);
      Atomics.store(this.w, WAKEUPS, 0);
      Atomics.store(this.w, MAGIC, BELL_MAGIC);
    } else {
      assert(Atomics.load(this.w, MAGIC) === BELL_MAGIC, `Doorbell: none initialised at offset ${byteOffset}`, 'layout-mismatch');
    }
  }

  /** Step 1 of sleeping. Re-check the queues after this, then cancelSleep() or sleep(). */
  prepareSleep(): number {
    const ticket = Atomics.load(this.w, TICKET);
    Atomics.add(this.w, SLEEPERS, 1);
    return ticket;
  }

  /** The re-check found work: undo prepareSleep(). */
  cancelSleep(): void {
    this.leave();
  }

  /**
   * Blocks with Atomics.wait (worker threads; on the main thread it would stall the event loop).
   * Any result means "look at the queues again": 'timed-out' is not an error.
   */
  sleep(ticket: number, timeoutMs: number): SleepResult {
    checkTimeout(timeoutMs);
    try {
      return Atomics.wait(this.w, TICKET, ticket, timeoutMs);
    } finally {
      this.leave();
    }
  }

  /** Non-blocking variant for the main thread (Atomics.waitAsync, Node 20+). */
  sleepAsync(ticket: number, timeoutMs: number): Promise<SleepResult> {
    checkTimeout(timeoutMs);
    let waiting: ReturnType<typeof Atomics.waitAsync>;
    try {
      waiting = Atomics.waitAsync(this.w, TICKET, ticket, timeoutMs);
    } catch (err) {
      this.leave();
      throw err;
    }
    if (!waiting.async) {
      this.leave();
      return Promise.resolve(waiting.value);
    }
    return waiting.value.then(
      (value) => {
        this.leave();
        return value;
      },
      (err: unknown) => {
        this.leave();
        throw err;
      },
    );
  }

  /**
   * Call after pushing. Costs one atomic load when nobody sleeps. `maxWake` (default 1) bounds
   * how many sleepers are woken: one woken consumer drains the queue before it sleeps again, so
   * waking one never strands work; pass more (or Infinity) when parallelism or shutdown needs it.
   */
  ring(maxWake = 1): void {
    if (Atomics.load(this.w, SLEEPERS) === 0) return;
    assert(maxWake >= 1, `Doorbell.ring: maxWake ${maxWake} must be >= 1`);
    Atomics.add(this.w, TICKET, 1);
    const woken = Atomics.notify(this.w, TICKET, maxWake);
    // A notify that finds nobody parked (the sleeper was already woken, or is between
    // prepareSleep and wait and will see 'not-equal') is cheap and not counted.
    if (woken > 0) Atomics.add(this.w, WAKEUPS, woken);
  }

  sleepers(): number {
    return Atomics.load(this.w, SLEEPERS);
  }

  /** Threads actually woken by ring() (the costly part, 15-20 µs each here); wraps at 2^32. */
  wakeups(): number {
    return Atomics.load(this.w, WAKEUPS) >>> 0;
  }

  private leave(): void {
    const before = Atomics.sub(this.w, SLEEPERS, 1);
    if (before <= 0) {
      Atomics.add(this.w, SLEEPERS, 1); // restore, then report the unbalanced call
      throw new QueueError('invalid-argument', 'Doorbell: cancelSleep/sleep without a matching prepareSleep');
    }
  }
}

function checkTimeout(timeoutMs: number): void {
  assert(typeof timeoutMs === 'number' && timeoutMs >= 0, `Doorbell: timeoutMs ${timeoutMs} must be >= 0 (Infinity allowed)`);
}
