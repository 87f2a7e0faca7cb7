// Orders client writes against maintenance copies and against each other's read-modify-writes.
//
// Fences: a resync or rebuild copies a range from a good leg to another one; a client write
// landing in between would be overwritten with the old bytes. So the copier first fences the
// range: new writes that overlap it wait, writes already in flight there drain, the copy runs,
// the fence lifts. Fences are rare and short.
//
// Exclusive writes: a request that is not block-aligned is served by reading the blocks around
// it, patching them and writing them back (unaligned.ts). Any other write landing on those blocks
// in between would be undone by the write-back, so such a read-modify-write enters `exclusive`:
// it waits until no admitted write overlaps it and keeps every overlapping write out until it is
// released. Plain writes are `shared`: they exclude only exclusive ones (overlapping plain writes
// have no order in NBD either). Waiters are admitted in FIFO order among those that conflict, so a
// stream of plain writes cannot starve a read-modify-write, nor the other way round.
//
// The write path pays one Map insert and delete when nothing waits and no exclusive write is in.
// Two slots may run before each write, awaited inside the gate: the hook (the mirror write-intent
// bitmap) and the tracker (checkpoint dirty bitmaps, checkpoints/). An empty slot costs nothing.
import { DataPathError } from './errno.js';

export interface Range {
  readonly start: number;
  readonly end: number;
}

interface Entry extends Range {
  readonly id: number;
  readonly exclusive: boolean;
  /** Resolves a queued entry's wait; set while it is queued. */
  admit: (() => void) | null;
}

/** Writes acknowledged but not yet on a write-behind leg (datapath/write-behind.ts). */
export interface Lagging {
  /** Their volume ranges. */
  ranges(): Range[];
  /** Resolves once those overlapping [start, end) are on the leg (or dropped with it). */
  settle(start: number, end: number): Promise<void>;
}

/** Runs before a write is submitted (after the gate admitted it); may be async (persisting a bitmap). */
export type WriteHook = (offsetBytes: number, lengthBytes: number) => Promise<void> | undefined;

export type GateMode = 'shared' | 'exclusive';

/** Writes queued at the gate beyond this are refused (ENOMEM), like the slot and descriptor FIFOs. */
export const GATE_WAITERS_MAX = 65536;

const overlaps = (a: Range, b: Range): boolean => a.start < b.end && b.start < a.end;
const conflicts = (a: Entry, b: Entry): boolean => (a.exclusive || b.exclusive) && overlaps(a, b);

export class WriteGate {
  private readonly admitted = new Map<number, Entry>();
  /** FIFO of writes waiting for a fence to lift or a conflicting write to leave; bounded by GATE_WAITERS_MAX. */
  private readonly waiting: Entry[] = [];
  private exclusiveAdmitted = 0;
  private readonly fences = new Set<Range>();
  private readonly drainWaiters = new Set<() => void>();
  private nextId = 1;
  private hook: WriteHook | null = null;
  private tracker: WriteHook | null = null;
  /** Acknowledged writes still on their way to a write-behind leg (write-behind.ts): their bits stay set, fences wait for them. */
  private lagging: Lagging | null = null;

  setHook(hook: WriteHook | null): void {
    this.hook = hook;
  }

  /** The second slot, for the volume's checkpoints; runs next to the hook. */
  setTracker(tracker: WriteHook | null): void {
    this.tracker = tracker;
  }

  /** Admits a write of [offset, +length) (`exclusive`: a read-modify-write of whole blocks); resolves with its release. */
  async enter(offsetBytes: number, lengthBytes: number, mode: GateMode = 'shared'): Promise<() => void> {
    const entry: Entry = { id: this.nextId++, start: offsetBytes, end: offsetBytes + Math.max(lengthBytes, 1), exclusive: mode === 'exclusive', admit: null };
    if (this.admissible(entry, this.waiting.length)) {
      this.admitNow(entry);
    } else {
      if (this.waiting.length >= GATE_WAITERS_MAX) throw new DataPathError('ENOMEM', `more than ${GATE_WAITERS_MAX} writes wait at the write gate`);
      await new Promise<void>((resolve) => {
        entry.admit = resolve;
        this.waiting.push(entry);
      });
    }
    const release = (): void => this.leave(entry);
    try {
      const a = this.hook?.(offsetBytes, lengthBytes);
      const b = this.tracker?.(offsetBytes, lengthBytes);
      // Both awaited, neither left unobserved if the other fails.
      await (a !== undefined && b !== undefined ? Promise.all([a, b]) : a ?? b);
    } catch (err) {
      release();
      throw err;
    }
    return release;
  }

  /** Blocks new writes overlapping the range, waits for those in flight there; resolves with lift(). */
  async fence(offsetBytes: number, lengthBytes: number): Promise<() => void> {
    const fence: Range = { start: offsetBytes, end: offsetBytes + Math.max(lengthBytes, 1) };
    this.fences.add(fence);
    const lift = (): void => {
      if (!this.fences.delete(fence)) return;
      this.pump();
    };
    const busy = (): boolean => [...this.admitted.values()].some((r) => overlaps(r, fence));
    // Bounded: nothing new is admitted under the fence, so every turn waits for one of a finite set to leave.
    while (busy()) {
      await new Promise<void>((resolve) => {
        const wake = (): void => {
          this.drainWaiters.delete(wake);
          resolve();
        };
        this.drainWaiters.add(wake);
      });
    }
    // A copy or scrub of the range must see what was acknowledged there on every leg.
    if (this.lagging !== null) {
      try {
        await this.lagging.settle(fence.start, fence.end);
      } catch (err) {
        lift();
        throw err;
      }
    }
    return lift;
  }

  /** Resolves once writes acknowledged over [start, end) are on the write-behind leg too (no fence: for a caller that holds the range). */
  settleLagging(start: number, end: number): Promise<void> {
    return this.lagging === null ? Promise.resolve() : this.lagging.settle(start, end);
  }

  setLagging(lagging: Lagging | null): void {
    this.lagging = lagging;
  }

  /** Volume ranges [start, end) of the writes admitted now (hook included) or not yet on a write-behind leg: the bitmap keeps their bits. */
  inFlightRanges(): { start: number; end: number }[] {
    const admitted = [...this.admitted.values()].map((r) => ({ start: r.start, end: r.end }));
    return this.lagging === null ? admitted : [...admitted, ...this.lagging.ranges()];
  }

  get writesInFlight(): number {
    return this.admitted.size;
  }

  /** Writes waiting for a fence or a conflicting write. */
  get writesWaiting(): number {
    return this.waiting.length;
  }

  /** No fence over it, no admitted write it conflicts with, and no conflicting write queued among the first `ahead`. */
  private admissible(entry: Entry, ahead: number): boolean {
    for (const f of this.fences) if (overlaps(f, entry)) return false;
    // The common case (plain write, nothing exclusive in, nobody waiting) costs no scan.
    if (entry.exclusive || this.exclusiveAdmitted > 0) {
      for (const a of this.admitted.values()) if (conflicts(a, entry)) return false;
    }
    for (let i = 0; i < ahead; i++) if (conflicts(this.waiting[i]!, entry)) return false;
    return true;
  }

  private admitNow(entry: Entry): void {
    if (this.admitted.has(entry.id)) throw new Error(`write gate: entry ${entry.id} admitted twice`);
    this.admitted.set(entry.id, entry);
    if (entry.exclusive) this.exclusiveAdmitted++;
  }

  private leave(entry: Entry): void {
    if (!this.admitted.delete(entry.id)) return;
    if (entry.exclusive) this.exclusiveAdmitted--;
    if (this.exclusiveAdmitted < 0) throw new Error('write gate: exclusive count below zero');
    for (const wake of [...this.drainWaiters]) wake();
    this.pump();
  }

  /** Admits, in FIFO order, every queued write nothing blocks any more (bounded by the queue's length). */
  private pump(): void {
    for (let i = 0; i < this.waiting.length; ) {
      const entry = this.waiting[i]!;
      if (!this.admissible(entry, i)) {
        i++;
        continue;
      }
      this.waiting.splice(i, 1);
      this.admitNow(entry);
      entry.admit?.();
      entry.admit = null;
    }
  }
}
