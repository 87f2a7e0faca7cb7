// Row-range lock of a raid5/6 volume (main thread). A stripe update reads old bytes, computes
// parity and writes data and parity: two updates of the same row must not interleave, and a
// degraded read must not see data and parity from different updates. Grants are FIFO among
// overlapping requests (a waiter never overtakes an earlier one it overlaps), so nothing
// starves; the number of holders and waiters is bounded.
import { DataPathError } from './errno.js';

interface Waiter {
  readonly r0: number;
  readonly r1: number;
  readonly grant: (release: () => void) => void;
}

interface Held {
  readonly r0: number;
  readonly r1: number;
}

const overlaps = (a: Held, b: Held): boolean => a.r0 < b.r1 && b.r0 < a.r1;

export class RowLock {
  private readonly held = new Set<Held>();
  private waiters: Waiter[] = [];

  constructor(private readonly waitersMax: number) {
    if (!(Number.isInteger(waitersMax) && waitersMax > 0)) throw new RangeError(`row lock waiters ${waitersMax} must be a positive integer`);
  }

  get holders(): number {
    return this.held.size;
  }

  get waiting(): number {
    return this.waiters.length;
  }

  /** Locks rows [r0, r1); resolves with the release (idempotent). */
  acquire(r0: number, r1: number): Promise<() => void> {
    if (!(Number.isSafeInteger(r0) && r0 >= 0 && Number.isSafeInteger(r1) && r1 > r0)) {
      return Promise.reject(new DataPathError('EINVAL', `row lock [${r0}, ${r1}) is not a non-empty range`));
    }
    const want: Held = { r0, r1 };
    if (!this.blocked(want, this.waiters.length)) return Promise.resolve(this.take(want));
    if (this.waiters.length >= this.waitersMax) return Promise.reject(new DataPathError('ENOMEM', `more than ${this.waitersMax} stripe updates wait for a row lock`));
    return new Promise((resolve) => {
      this.waiters.push({ r0, r1, grant: resolve });
    });
  }

  /** Whether `want` overlaps a holder or one of the first `ahead` waiters. */
  private blocked(want: Held, ahead: number): boolean {
    for (const h of this.held) if (overlaps(h, want)) return true;
    for (let i = 0; i < ahead; i++) if (overlaps(this.waiters[i]!, want)) return true;
    return false;
  }

  private take(want: Held): () => void {
    const entry: Held = { r0: want.r0, r1: want.r1 };
    this.held.add(entry);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.held.delete(entry);
      this.wake();
    };
  }

  /** Grants, in order, every waiter that overlaps no holder and no earlier waiter still waiting. */
  private wake(): void {
    const still: Waiter[] = [];
    for (const w of this.waiters) {
      const blockedByHeld = [...this.held].some((h) => overlaps(h, w));
      const blockedByEarlier = still.some((s) => overlaps(s, w));
      if (blockedByHeld || blockedByEarlier) still.push(w);
      else w.grant(this.take(w));
    }
    this.waiters = still;
  }
}
