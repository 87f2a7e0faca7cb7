// Strict-priority queue: `levels` independent Vyukov rings laid out back to back; tryPop
// serves the highest non-empty level first (level levels-1 = most urgent). Each level is FIFO.
// `capacity` is per level, so a burst at one priority back-pressures only that priority.
// Strict priority can starve low levels under sustained urgent load; callers who need
// fairness bound how much urgent work they submit.
import { assert, assertRegion } from './assert.js';
import { Ring } from './ring.js';

export const PRIORITY_LEVELS_MAX = 32;

export class PriorityQueue {
  static bytesFor(capacity: number, levels: number): number {
    assert(
      Number.isInteger(levels) && levels >= 1 && levels <= PRIORITY_LEVELS_MAX,
      `PriorityQueue: levels ${levels} outside [1, ${PRIORITY_LEVELS_MAX}]`,
    );
    return Ring.bytesFor(capacity) * levels;
  }

  readonly policy = 'priority' as const;
  readonly capacity: number;
  readonly levels: number;
  private readonly rings: Ring[];

  constructor(sab: SharedArrayBuffer, byteOffset: number, capacity: number, levels: number, init: boolean, initialPosition = 0) {
    const bytes = PriorityQueue.bytesFor(capacity, levels);
    assertRegion(sab, byteOffset, bytes, 4, 'PriorityQueue');
    this.capacity = capacity;
    this.levels = levels;
    const ringBytes = Ring.bytesFor(capacity);
    this.rings = [];
    for (let level = 0; level < levels; level++) {
      this.rings.push(new Ring(sab, byteOffset + level * ringBytes, capacity, init, initialPosition));
    }
  }

  /** False when that level is full (back-pressure). */
  tryPush(value: number, priority: number): boolean {
    assert(
      Number.isInteger(priority) && priority >= 0 && priority < this.levels,
      `PriorityQueue: priority ${priority} outside [0, ${this.levels})`,
    );
    return this.rings[priority]!.tryPush(value);
  }

  tryPop(): number {
    for (let level = this.levels - 1; level >= 0; level--) {
      const value = this.rings[level]!.tryPop();
      if (value >= 0) return value;
    }
    return -1;
  }

  size(): number {
    let total = 0;
    for (const ring of this.rings) total += ring.size();
    return total;
  }

  sizeAt(priority: number): number {
    assert(Number.isInteger(priority) && priority >= 0 && priority < this.levels, `PriorityQueue: priority ${priority} out of range`);
    return this.rings[priority]!.size();
  }
}
