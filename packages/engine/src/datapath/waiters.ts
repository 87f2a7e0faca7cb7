// Bounded FIFO of waiters and the slot allocator built on it (main thread only). Back-pressure
// waits in order; when the FIFO is full the caller gets a clear ENOMEM instead of unbounded
// memory growth. Nothing is dropped: every waiter is either granted or rejected.
import { DataPathError } from './errno.js';

export class BoundedFifo<T> {
  private readonly items: (T | undefined)[];
  private head = 0;
  private count = 0;

  constructor(readonly capacity: number) {
    if (!(Number.isInteger(capacity) && capacity > 0)) throw new RangeError(`fifo capacity ${capacity} must be a positive integer`);
    this.items = new Array<T | undefined>(capacity);
  }

  get size(): number {
    return this.count;
  }

  push(item: T): boolean {
    if (this.count === this.capacity) return false;
    this.items[(this.head + this.count) % this.capacity] = item;
    this.count++;
    return true;
  }

  peek(): T | undefined {
    return this.count === 0 ? undefined : this.items[this.head];
  }

  shift(): T | undefined {
    if (this.count === 0) return undefined;
    const item = this.items[this.head];
    this.items[this.head] = undefined;
    this.head = (this.head + 1) % this.capacity;
    this.count--;
    return item;
  }
}

interface SlotWaiter {
  readonly count: number;
  readonly resolve: (slots: number[]) => void;
  readonly reject: (err: Error) => void;
}

/**
 * Data slab slots. A request takes all its slots at once, so two large requests cannot each hold
 * half. A few slots are kept for maintenance I/O (`acquire(n, true)`: the raw channel behind the
 * write-intent bitmap and resync copies): NBD writes hold their payload slots while the write
 * gate makes them wait for a bitmap update or a copy fence, and those must still get slots.
 */
export class SlotPool {
  private readonly free: number[] = [];
  private readonly waiters: BoundedFifo<SlotWaiter>;
  private readonly urgent: BoundedFifo<SlotWaiter>;
  /** Slots client requests leave free (maintenance may use them). */
  readonly reservedSlots: number;
  private closedReason: string | null = null;

  constructor(
    readonly slots: number,
    waitersMax: number,
  ) {
    for (let i = slots - 1; i >= 0; i--) this.free.push(i);
    this.waiters = new BoundedFifo(waitersMax);
    this.urgent = new BoundedFifo(waitersMax);
    this.reservedSlots = Math.min(16, Math.floor(slots / 16));
  }

  get waiting(): number {
    return this.waiters.size + this.urgent.size;
  }

  get available(): number {
    return this.free.length;
  }

  /** Slots a request of `count` must leave free: the reserve, unless it is too wide to fit beside it. */
  private keep(count: number, maintenance: boolean): number {
    return maintenance || count > this.slots - this.reservedSlots ? 0 : this.reservedSlots;
  }

  acquire(count: number, maintenance = false): Promise<number[]> {
    if (this.closedReason !== null) return Promise.reject(new DataPathError('ESHUTDOWN', this.closedReason));
    if (!(Number.isInteger(count) && count >= 1 && count <= this.slots)) {
      return Promise.reject(new DataPathError('ENOMEM', `request needs ${count} slots, the data slab has ${this.slots}`));
    }
    // FIFO: a newcomer never overtakes an older waiter, so wide requests are not starved.
    // Maintenance waiters go first: client writes may be waiting on them (see the class comment).
    const fifo = maintenance ? this.urgent : this.waiters;
    const ahead = maintenance ? this.urgent.size : this.waiters.size + this.urgent.size;
    if (ahead === 0 && this.free.length - this.keep(count, maintenance) >= count) return Promise.resolve(this.free.splice(this.free.length - count, count));
    return new Promise((resolve, reject) => {
      if (!fifo.push({ count, resolve, reject })) reject(new DataPathError('ENOMEM', `more than ${fifo.capacity} requests wait for data slots`));
    });
  }

  release(slots: readonly number[]): void {
    for (const s of slots) {
      if (!(Number.isInteger(s) && s >= 0 && s < this.slots)) throw new Error(`slot ${s} outside the slab`);
      this.free.push(s);
    }
    if (this.free.length > this.slots) throw new Error('slot released twice');
    for (let w = this.urgent.peek(); w !== undefined && w.count <= this.free.length; w = this.urgent.peek()) {
      this.urgent.shift();
      w.resolve(this.free.splice(this.free.length - w.count, w.count));
    }
    if (this.urgent.size > 0) return;
    for (let w = this.waiters.peek(); w !== undefined && w.count + this.keep(w.count, false) <= this.free.length; w = this.waiters.peek()) {
      this.waiters.shift();
      w.resolve(this.free.splice(this.free.length - w.count, w.count));
    }
  }

  close(reason: string): void {
    this.closedReason = reason;
    for (const fifo of [this.urgent, this.waiters]) {
      for (let w = fifo.shift(); w !== undefined; w = fifo.shift()) w.reject(new DataPathError('ESHUTDOWN', reason));
    }
  }
}
