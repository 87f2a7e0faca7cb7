// One interface over the three submission policies, so the engine picks a policy from config
// and the rest of the code does not care. The classes carry `policy` themselves, so no wrapper
// sits on the hot path.
import { assert } from './assert.js';
import { LifoStack } from './lifo.js';
import { PriorityQueue } from './priority.js';
import { Ring } from './ring.js';

export type QueuePolicy = 'fifo' | 'lifo' | 'priority';
export const PRIORITY_LEVELS = 4;

export interface SubmissionQueue {
  readonly policy: QueuePolicy;
  /** fifo/priority: power of two; priority: per level. lifo: values must lie in [0, capacity). */
  readonly capacity: number;
  /** `priority` in [0, PRIORITY_LEVELS) is used by 'priority' (default 0) and ignored otherwise. */
  tryPush(value: number, priority?: number): boolean;
  tryPop(): number;
  size(): number;
}

/** Byte size of a queue region. All sizes are multiples of 64, so regions packed back to back stay aligned. */
export function queueBytes(policy: QueuePolicy, capacity: number): number {
  switch (policy) {
    case 'fifo':
      return Ring.bytesFor(capacity);
    case 'lifo':
      return LifoStack.bytesFor(capacity);
    case 'priority':
      return PriorityQueue.bytesFor(capacity, PRIORITY_LEVELS);
    default:
      throw badPolicy(policy);
  }
}

class PriorityAdapter implements SubmissionQueue {
  readonly policy = 'priority' as const;
  readonly capacity: number;
  constructor(readonly inner: PriorityQueue) {
    this.capacity = inner.capacity;
  }
  tryPush(value: number, priority = 0): boolean {
    return this.inner.tryPush(value, priority);
  }
  tryPop(): number {
    return this.inner.tryPop();
  }
  size(): number {
    return this.inner.size();
  }
}

/** `byteOffset` must be 8-aligned (the LIFO head is a BigInt64); 64 avoids false sharing. */
export function createQueue(policy: QueuePolicy, sab: SharedArrayBuffer, byteOffset: number, capacity: number, init: boolean): SubmissionQueue {
  assert(typeof init === 'boolean', 'createQueue: init must be a boolean');
  switch (policy) {
    case 'fifo':
      return new Ring(sab, byteOffset, capacity, init);
    case 'lifo':
      return new LifoStack(sab, byteOffset, capacity, init);
    case 'priority':
      return new PriorityAdapter(new PriorityQueue(sab, byteOffset, capacity, PRIORITY_LEVELS, init));
    default:
      throw badPolicy(policy);
  }
}

function badPolicy(policy: never): Error {
  assert(false, `unknown queue policy ${String(policy)} (expected 'fifo', 'lifo' or 'priority')`);
}

/** Anything with tryPush: Ring, LifoStack, a SubmissionQueue. */
export interface Pushable {
  tryPush(value: number, priority?: number): boolean;
}

const PAUSE_CELL = new Int32Array(new SharedArrayBuffer(4));

/**
 * Pushes where the caller KNOWS there is logical room (the queue is sized for every descriptor
 * that exists). A Vyukov ring can still refuse for a moment while a consumer is paused between
 * claiming a cell and releasing it, so retry with short sleeps; give up (false) only after
 * `timeoutMs`, which means a consumer thread is stuck, not that the queue is full.
 */
export function pushSure(q: Pushable, value: number, priority: number | undefined, timeoutMs: number): boolean {
  if (q.tryPush(value, priority)) return true;
  const deadline = Date.now() + timeoutMs;
  for (let attempt = 1; Date.now() < deadline; attempt++) {
    // 0.05 ms, doubling to 1 ms: the paused thread is runnable and needs only a few µs.
    Atomics.wait(PAUSE_CELL, 0, 0, Math.min(1, 0.05 * 2 ** Math.min(attempt, 5)));
    if (q.tryPush(value, priority)) return true;
  }
  return false;
}
