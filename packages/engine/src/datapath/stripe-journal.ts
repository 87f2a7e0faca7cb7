// Bookkeeping of the raid5/6 stripe journal (main thread, no I/O of its own): sequence numbers,
// one ring of record space per role, the checkpoint, and group flushes. A transaction (one stripe
// update) takes space on the ring of every role it writes, all at once; the ring space of a
// transaction is reused only after a checkpoint at or above its sequence is on disk (every
// element flushed, then the journal headers written), so replay never misses a record it needs.
import { DataPathError } from './errno.js';
import { RING_BYTES } from './journal-format.js';

interface RingRecord {
  readonly seq: number;
  readonly start: number;
  readonly end: number;
}

/** Record space on one element: records in sequence order, placed one after another, wrapping. */
export class JournalRing {
  private records: RingRecord[] = [];
  private head = 0;

  constructor(readonly sizeBytes: number = RING_BYTES) {}

  /** Where `bytes` would go, or -1 when the live records leave no room. */
  place(bytes: number): number {
    if (bytes > this.sizeBytes) return -1;
    if (this.records.length === 0) return 0;
    const tail = this.records[0]!.start;
    if (this.head > tail) {
      if (this.sizeBytes - this.head >= bytes) return this.head;
      return tail >= bytes ? 0 : -1; // wrap: the gap at the end stays unused
    }
    return this.head < tail && tail - this.head >= bytes ? this.head : -1;
  }

  push(seq: number, start: number, bytes: number): void {
    if (this.place(bytes) !== start) throw new Error(`journal ring: record ${seq} at ${start} does not fit`);
    this.records.push({ seq, start, end: start + bytes });
    this.head = start + bytes;
  }

  /** Forgets records below the checkpoint. */
  freeBelow(seq: number): void {
    let n = 0;
    while (n < this.records.length && this.records[n]!.seq < seq) n++;
    if (n > 0) this.records = this.records.slice(n);
    if (this.records.length === 0) this.head = 0;
  }

  get usedBytes(): number {
    if (this.records.length === 0) return 0;
    const tail = this.records[0]!.start;
    return this.head > tail ? this.head - tail : this.sizeBytes - tail + this.head;
  }

  clear(): void {
    this.records = [];
    this.head = 0;
  }
}

export interface TxnSpan {
  readonly role: number;
  readonly bytes: number;
}

export interface Txn {
  readonly seq: number;
  /** Ring offset of the record, by role (roles not in the transaction: absent). */
  readonly at: ReadonlyMap<number, number>;
}

interface SpaceWaiter {
  readonly spans: readonly TxnSpan[];
  readonly resolve: (t: Txn) => void;
  readonly reject: (err: Error) => void;
}

/** Flushes every element the volume still writes to, then writes checkpoint `seq` to their journal headers. */
export type PersistCheckpoint = (seq: number) => Promise<void>;

export class StripeJournal {
  private nextSeq = 0;
  private persisted = 0;
  private readonly inFlight = new Set<number>();
  private readonly rings: JournalRing[];
  private waiters: SpaceWaiter[] = [];
  private running: Promise<void> | null = null;
  private queued: Promise<void> | null = null;
  /** retireAll callers waiting for every transaction below their sequence to end (bounded by waitersMax). */
  private retireWaiters: { readonly below: number; readonly resolve: () => void }[] = [];

  constructor(
    width: number,
    private readonly persist: PersistCheckpoint,
    private readonly waitersMax: number,
    ringBytes = RING_BYTES,
  ) {
    this.rings = Array.from({ length: width }, () => new JournalRing(ringBytes));
  }

  /** After replay: everything below `seq` is in place; new transactions start there. */
  reset(seq: number): void {
    if (this.inFlight.size > 0) throw new Error('journal reset with transactions in flight');
    this.nextSeq = seq;
    this.persisted = seq;
    for (const r of this.rings) r.clear();
  }

  /** A role got a new element (its journal area holds none of our records). */
  forgetRole(role: number): void {
    this.rings[role]?.clear();
  }

  get checkpointSeq(): number {
    return this.persisted;
  }

  get sequence(): number {
    return this.nextSeq;
  }

  get transactionsInFlight(): number {
    return this.inFlight.size;
  }

  /** Takes ring space for every span (FIFO behind earlier waiters); resolves with the transaction. */
  begin(spans: readonly TxnSpan[]): Promise<Txn> {
    if (spans.length === 0) return Promise.reject(new DataPathError('EINVAL', 'journal transaction without records'));
    if (this.waiters.length === 0) {
      const txn = this.tryTake(spans);
      if (txn !== null) return Promise.resolve(txn);
    }
    if (this.waiters.length >= this.waitersMax) return Promise.reject(new DataPathError('ENOMEM', `more than ${this.waitersMax} stripe updates wait for journal space`));
    for (const s of spans) if (s.bytes > this.rings[s.role]!.sizeBytes) return Promise.reject(new DataPathError('EINVAL', `journal record of ${s.bytes} bytes exceeds the ring`));
    const waiting = new Promise<Txn>((resolve, reject) => this.waiters.push({ spans, resolve, reject }));
    void this.checkpoint().catch(() => undefined); // frees space, or fails the waiters
    return waiting;
  }

  private tryTake(spans: readonly TxnSpan[]): Txn | null {
    const at = new Map<number, number>();
    for (const s of spans) {
      const start = this.rings[s.role]!.place(s.bytes);
      if (start < 0 || at.has(s.role)) return null;
      at.set(s.role, start);
    }
    const seq = this.nextSeq++;
    for (const s of spans) this.rings[s.role]!.push(seq, at.get(s.role)!, s.bytes);
    this.inFlight.add(seq);
    return { seq, at };
  }

  /** The transaction's bytes are in place (or it failed): its records may go at the next checkpoint. */
  end(txn: Txn): void {
    if (!this.inFlight.delete(txn.seq)) throw new Error(`journal transaction ${txn.seq} ended twice`);
    if (this.retireWaiters.length > 0) {
      const done = this.completeBelow();
      const ready = this.retireWaiters.filter((w) => w.below <= done);
      this.retireWaiters = this.retireWaiters.filter((w) => w.below > done);
      for (const w of ready) w.resolve();
    }
    const half = this.rings.some((r) => r.usedBytes * 2 > r.sizeBytes);
    if (this.waiters.length > 0 || half) void this.checkpoint().catch(() => undefined);
  }

  /**
   * Waits until every transaction begun before this call has ended, then persists a checkpoint
   * covering them all (a reshape step, or its finish, hands the rows over). Resolves with the
   * next sequence a transaction would take.
   */
  async retireAll(): Promise<number> {
    const below = this.nextSeq;
    if (this.completeBelow() < below) {
      if (this.retireWaiters.length >= this.waitersMax) throw new DataPathError('ENOMEM', `more than ${this.waitersMax} callers wait for the journal to retire`);
      await new Promise<void>((resolve) => this.retireWaiters.push({ below, resolve }));
    }
    // A checkpoint that starts now sees completeBelow() >= below (later ones may be higher).
    while (this.persisted < below) await this.checkpoint();
    return this.nextSeq;
  }

  /** Smallest sequence not known to be in place. */
  private completeBelow(): number {
    let min = this.nextSeq;
    for (const s of this.inFlight) if (s < min) min = s;
    return min;
  }

  /** A checkpoint that starts after this call (concurrent callers share one). */
  checkpoint(): Promise<void> {
    if (this.queued !== null) return this.queued;
    if (this.running === null) return this.startCheckpoint();
    const after = this.running.catch(() => undefined).then(() => {
      this.queued = null;
      return this.startCheckpoint();
    });
    this.queued = after;
    return after;
  }

  private startCheckpoint(): Promise<void> {
    const seq = this.completeBelow();
    const run = (async () => {
      try {
        if (seq > this.persisted) await this.persist(seq);
        this.persisted = Math.max(this.persisted, seq);
        for (const r of this.rings) r.freeBelow(this.persisted);
        this.serveWaiters();
      } catch (err) {
        // The volume cannot take writes (too many elements lost): fail those waiting for space.
        for (const w of this.waiters) w.reject(err as Error);
        this.waiters = [];
        throw err;
      } finally {
        this.running = null;
      }
    })();
    this.running = run;
    return run;
  }

  private serveWaiters(): void {
    while (this.waiters.length > 0) {
      const txn = this.tryTake(this.waiters[0]!.spans);
      if (txn === null) return;
      this.waiters.shift()!.resolve(txn);
    }
  }
}

/**
 * Flushes per element, shared: a caller waits for a flush that STARTS after its call (its writes
 * completed before), and every caller arriving while one runs shares the next one.
 */
export class GroupFlush {
  private readonly running = new Map<number, Promise<void>>();
  private readonly queued = new Map<number, Promise<void>>();

  constructor(private readonly flushOne: (role: number) => Promise<void>) {}

  flush(role: number): Promise<void> {
    const q = this.queued.get(role);
    if (q !== undefined) return q;
    const r = this.running.get(role);
    if (r === undefined) return this.start(role);
    const next = r.catch(() => undefined).then(() => {
      this.queued.delete(role);
      return this.start(role);
    });
    this.queued.set(role, next);
    return next;
  }

  private start(role: number): Promise<void> {
    const run = this.flushOne(role).finally(() => {
      if (this.running.get(role) === run) this.running.delete(role);
    });
    this.running.set(role, run);
    return run;
  }
}
