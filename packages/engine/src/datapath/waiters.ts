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

/** Data slab slots. A request takes all its slots at once, so two large requests cannot each hold half. */
export class SlotPool {
  private readonly free: number[] = [];
  private readonly waiters: BoundedFifo<SlotWaiter>;
  private closedReason: string | null = null;

  constructor(
    readonly slots: number,
    waitersMax: number,
  ) {
    for (let i = slots - 1; i >= 0; i--) this.free.push(i);
    this.waiters = new BoundedFifo(waitersMax);
  }

  get waiting(): number {
    return this.waiters.size;
  }

  get available(): number {
    return this.free.length;
  }

  acquire(count: number): Promise<number[]> {
    if (this.closedReason !== null) return Promise.reject(new DataPathError('ESHUTDOWN', this.closedReason));
    if (!(Number.isInteger(count) && count >= 1 && count <= this.slots)) {
      return Promise.reject(new DataPathError('ENOMEM', `request needs ${count} slots, the data slab has ${this.slots}`));
    }
    // FIFO: a newcomer never overtakes an older waiter, so wide requests are not starved.
    if (this.waiters.size === 0 && this.free.length >= count) return Promise.resolve(this.free.splice(this.free.length - count, count));
    return new Promise((resolve, reject) => {
      if (!this.waiters.push({ count, resolve, reject })) reject(new DataPathError('ENOMEM', `more than ${this.waiters.capacity} requests wait for data slots`));
    });
  }

  release(slots: readonly number[]): void {
    for (const s of slots) {
      if (!(Number.isInteger(s) && s >= 0 && s < this.slots)) throw new Error(`slot ${s} outside the slab`);
      this.free.push(s);
    }
    if (this.free.length > this.slots) throw new Error('slot released twice');
    for (let w = this.waiters.peek(); w !== undefined && w.count <= this.free.length; w = this.waiters.peek()) {
      this.waiters.shift();
      w.resolve(this.free.splice(this.free.length - w.count, w.count));
    }
  }

  close(reason: string): void {
    this.closedReason = reason;
    for (let w = this.waiters.shift(); w !== undefined; w = this.waiters.shift()) w.reject(new DataPathError('ESHUTDOWN', reason));
  }
}
