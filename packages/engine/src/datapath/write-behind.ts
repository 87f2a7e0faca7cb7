// A raid1 leg written behind (docs/durability.md "Write-behind legs"): a client write is
// acknowledged once the other legs have it; its bytes wait in a staging ring (allocated once,
// maxLagBytes, writers wait when it is full) and reach the write-behind leg afterwards.
//
// Order: overlapping writes reach the leg in the order they were committed (= acknowledged).
// Each committed entry depends on the last earlier entry touching each of its 64 KiB buckets
// (coarse, so a false dependency only serialises two writes); an entry is sent when all of its
// dependencies are on the leg. Sends go through a window of slab slots the writer holds for
// its life (so client writes waiting for staging can never starve it of slots).
// A piece may carry an `after` step (integrity: the leg's checksums of those bytes), run once its
// data is on the leg; the piece counts as on the leg (drain, settle, the bitmap) only after it.
import { DataPathError } from './errno.js';

export interface BehindSink {
  readonly slotBytes: number;
  /** The writer's window: slab slots held until close (acquired once, never given back in between). */
  acquireWindow(count: number): Promise<number[]>;
  releaseWindow(slots: readonly number[]): void;
  view(slot: number, offsetBytes: number, lengthBytes: number): Uint8Array;
  /** Writes the bytes at (slot, slotOffset) onto the leg at volume offset `offsetBytes`. */
  write(offsetBytes: number, lengthBytes: number, slot: number, slotOffsetBytes: number): Promise<void>;
  /** The leg takes writes now (active or rebuilding). */
  legUp(): boolean;
  /** A write to the leg failed: take the leg out (its regions stay dirty in the bitmap). */
  fail(err: Error): void;
}

export interface WriteBehindStatus {
  /** Acknowledged bytes not yet on the leg. */
  readonly lagBytes: number;
  readonly maxLagBytes: number;
  /** Writes sent to the leg and not yet answered. */
  readonly writesInFlight: number;
  /** Acknowledged writes not yet on the leg (queued + in flight). */
  readonly writesQueued: number;
  /** Writes dropped because the leg went down (the resync brings their regions back). */
  readonly droppedWrites: number;
  /** Writes that reached the leg since start. */
  readonly writesDone: number;
  /** The highest lag seen since start. */
  readonly peakLagBytes: number;
}

export interface WriteBehindOptions {
  readonly maxInFlight?: number;
  readonly windowSlots?: number;
  readonly bucketBytes?: number;
}

/** Staged bytes of one piece of a client write. */
export interface Ticket {
  readonly len: number;
  /** Virtual position in the staging ring (mod capacity = where the bytes are). */
  readonly start: number;
  /** Bytes of the ring this ticket holds (its bytes plus the skipped end of the ring, if it wrapped). */
  readonly reserved: number;
  off: number;
  seq: number;
  state: 'staged' | 'queued' | 'sending' | 'done';
  deps: number;
  dependents: Ticket[] | null;
  /** Runs once the bytes are on the leg, before the piece counts as done (a failure fails the leg). */
  after: (() => Promise<void>) | null;
}

interface SpaceWaiter {
  readonly lens: readonly number[];
  readonly resolve: (t: Ticket[]) => void;
}

const WAITERS_MAX = 65536;

export class WriteBehind {
  private readonly stage: Uint8Array;
  private head = 0;
  private tail = 0;
  /** Tickets in ring order (staged first to last); freed from the front once done. */
  private readonly ring: Ticket[] = [];
  private ringFront = 0;
  private readonly spaceWaiters: SpaceWaiter[] = [];
  private readonly ready: Ticket[] = [];
  private readyFront = 0;
  private readonly lastByBucket = new Map<number, Ticket>();
  /** Committed tickets not yet done, by seq (insertion order = seq order). */
  private readonly pending = new Map<number, Ticket>();
  private readonly drainWaiters: { seq: number; resolve: () => void }[] = [];
  private nextSeq = 1;
  private lag = 0;
  private peakLag = 0;
  private inFlight = 0;
  private dropped = 0;
  private done = 0;
  private window: number[] | null = null;
  private readonly used: number[] = [];
  private readonly live: number[] = [];
  private cur = 0;
  private closed = false;
  private readonly maxInFlight: number;
  private readonly bucketBytes: number;

  constructor(
    private readonly sink: BehindSink,
    readonly maxLagBytes: number,
    opts: WriteBehindOptions = {},
  ) {
    if (!(Number.isSafeInteger(maxLagBytes) && maxLagBytes >= sink.slotBytes)) throw new RangeError(`write-behind lag ${maxLagBytes} must be at least one slot (${sink.slotBytes} bytes)`);
    this.stage = new Uint8Array(maxLagBytes);
    this.maxInFlight = opts.maxInFlight ?? 128;
    this.bucketBytes = opts.bucketBytes ?? 65536;
    const windowSlots = opts.windowSlots ?? 4;
    void sink.acquireWindow(windowSlots).then((slots) => {
      if (this.closed) return sink.releaseWindow(slots);
      this.window = slots;
      for (let i = 0; i < slots.length; i++) {
        this.used.push(0);
        this.live.push(0);
      }
      this.pump();
    }, () => undefined);
  }

  get lagBytes(): number {
    return this.lag;
  }

  /** Volume ranges of committed writes not yet on the leg, merged (the bitmap keeps their bits). */
  pendingRanges(): { start: number; end: number }[] {
    const all = [...this.pending.values()].map((t) => ({ start: t.off, end: t.off + Math.max(t.len, 1) })).sort((a, b) => a.start - b.start);
    const out: { start: number; end: number }[] = [];
    for (const r of all) {
      const last = out.at(-1);
      if (last !== undefined && r.start <= last.end) last.end = Math.max(last.end, r.end);
      else out.push(r);
    }
    return out;
  }

  status(): WriteBehindStatus {
    return { lagBytes: this.lag, maxLagBytes: this.maxLagBytes, writesInFlight: this.inFlight, writesQueued: this.pending.size, droppedWrites: this.dropped, writesDone: this.done, peakLagBytes: this.peakLag };
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /**
   * Whether a write of these pieces can ever be staged: their bytes plus the end of the ring a
   * wrapping piece skips (less than the largest piece) must fit the ring, else a writer would wait
   * for room that never comes. A larger write goes to every leg instead (write-behind-io.ts).
   */
  canStage(lens: readonly number[]): boolean {
    let total = 0;
    let largest = 0;
    for (const len of lens) {
      total += len;
      largest = Math.max(largest, len);
    }
    return total + largest - 1 <= this.maxLagBytes;
  }

  /** Reserves staging for each chunk and copies it in; waits (in order) while the ring is full. Null: the writer closed. */
  async stageChunks(chunks: readonly Uint8Array[]): Promise<Ticket[] | null> {
    if (this.closed) return null;
    const lens = chunks.map((c) => c.length);
    for (const len of lens) if (len > this.sink.slotBytes) throw new DataPathError('EINVAL', `write-behind piece of ${len} bytes is larger than a slot`);
    if (!this.canStage(lens)) throw new DataPathError('EINVAL', `write-behind write of ${lens.length} pieces does not fit the ${this.maxLagBytes}-byte staging ring`);
    let tickets = this.spaceWaiters.length === 0 ? this.tryReserve(lens) : null;
    if (tickets === null) {
      if (this.closed) throw new DataPathError('ESHUTDOWN', 'write-behind writer is closed');
      if (this.spaceWaiters.length >= WAITERS_MAX) throw new DataPathError('ENOMEM', `more than ${WAITERS_MAX} writes wait for write-behind staging`);
      tickets = await new Promise<Ticket[]>((resolve) => this.spaceWaiters.push({ lens, resolve }));
      if (this.closed) return null;
    }
    tickets.forEach((t, i) => this.stage.set(chunks[i]!, t.start % this.maxLagBytes));
    return tickets;
  }

  /** The local legs took the write: queue it for the leg, in this order (`afters[i]`: ticket i's after-step). */
  commit(tickets: readonly Ticket[], offsets: readonly number[], afters?: readonly ((() => Promise<void>) | null)[]): void {
    if (this.closed) return this.cancel(tickets);
    tickets.forEach((t, i) => {
      t.off = offsets[i]!;
      t.after = afters?.[i] ?? null;
      t.seq = this.nextSeq++;
      t.state = 'queued';
      this.lag += t.len;
      this.pending.set(t.seq, t);
      for (let b = Math.floor(t.off / this.bucketBytes); b * this.bucketBytes < t.off + Math.max(t.len, 1); b++) {
        const prev = this.lastByBucket.get(b);
        if (prev !== undefined && prev.state !== 'done' && prev.dependents?.at(-1) !== t) {
          (prev.dependents ??= []).push(t);
          t.deps++;
        }
        this.lastByBucket.set(b, t);
      }
      if (t.deps === 0) this.ready.push(t);
    });
    if (this.lag > this.peakLag) this.peakLag = this.lag;
    this.pump();
  }

  /** The local write failed: give the staging back, nothing goes to the leg. */
  cancel(tickets: readonly Ticket[]): void {
    for (const t of tickets) t.state = 'done';
    this.freeRing();
  }

  /** Resolves once every write committed before this call is on the leg (or dropped with the leg). */
  drain(): Promise<void> {
    const seq = this.nextSeq - 1;
    if (this.drained(seq)) return Promise.resolve();
    if (this.drainWaiters.length >= WAITERS_MAX) return Promise.reject(new DataPathError('ENOMEM', 'too many write-behind drains waiting'));
    return new Promise((resolve) => this.drainWaiters.push({ seq, resolve }));
  }

  /** Resolves once every committed write overlapping [start, end) is on the leg (with those before it). */
  settle(start: number, end: number): Promise<void> {
    let last = 0;
    for (const t of this.pending.values()) if (t.off < end && start < t.off + Math.max(t.len, 1)) last = t.seq;
    if (last === 0 || this.drained(last)) return Promise.resolve();
    if (this.drainWaiters.length >= WAITERS_MAX) return Promise.reject(new DataPathError('ENOMEM', 'too many write-behind drains waiting'));
    return new Promise((resolve) => this.drainWaiters.push({ seq: last, resolve }));
  }

  /** Stops: queued writes are dropped (the bitmap keeps their regions), the window goes back once sends end. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.dropQueued();
    this.maybeReleaseWindow();
    for (const w of this.spaceWaiters.splice(0)) w.resolve(w.lens.map(() => this.deadTicket()));
  }

  private deadTicket(): Ticket {
    return { len: 0, start: this.head, reserved: 0, off: 0, seq: 0, state: 'done', deps: 0, dependents: null, after: null };
  }

  private drained(seq: number): boolean {
    const first = this.pending.keys().next();
    return first.done === true || first.value > seq;
  }

  private tryReserve(lens: readonly number[]): Ticket[] | null {
    const cap = this.maxLagBytes;
    let head = this.head;
    const planned: { start: number; reserved: number; len: number }[] = [];
    for (const len of lens) {
      const pos = head % cap;
      const skip = pos + len > cap ? cap - pos : 0;
      planned.push({ start: head + skip, reserved: skip + len, len });
      head += skip + len;
    }
    if (head - this.tail > cap) return null;
    this.head = head;
    return planned.map((p) => {
      const t: Ticket = { ...p, off: 0, seq: 0, state: 'staged', deps: 0, dependents: null, after: null };
      this.ring.push(t);
      return t;
    });
  }

  private pump(): void {
    if (this.closed) return;
    if (!this.sink.legUp()) {
      this.dropQueued();
      return;
    }
    const window = this.window;
    if (window === null) return;
    while (this.inFlight < this.maxInFlight && this.readyFront < this.ready.length) {
      const t = this.ready[this.readyFront]!;
      if (t.state !== 'queued') {
        this.readyFront++;
        continue;
      }
      const arena = this.cell(t.len);
      if (arena < 0) break;
      this.readyFront++;
      const at = this.used[arena]!;
      this.used[arena] = at + t.len;
      this.live[arena]!++;
      this.sink.view(window[arena]!, at, t.len).set(this.stage.subarray(t.start % this.maxLagBytes, t.start % this.maxLagBytes + t.len));
      t.state = 'sending';
      this.inFlight++;
      const sent = this.sink.write(t.off, t.len, window[arena]!, at);
      const after = t.after;
      (after === null ? sent : sent.then(after)).then(
        () => this.finish(t, arena, true),
        (err: Error) => {
          this.sink.fail(err);
          this.finish(t, arena, false);
        },
      );
    }
    if (this.readyFront > 1024 && this.readyFront * 2 > this.ready.length) {
      this.ready.splice(0, this.readyFront);
      this.readyFront = 0;
    }
  }

  /** A window slot with room for `len` bytes at its end, or -1 (every slot busy). */
  private cell(len: number): number {
    if (this.used[this.cur]! + len <= this.sink.slotBytes) return this.cur;
    for (let k = 1; k <= this.used.length; k++) {
      const j = (this.cur + k) % this.used.length;
      if (this.live[j] === 0) {
        this.used[j] = 0;
        this.cur = j;
        return j;
      }
    }
    return -1;
  }

  private finish(t: Ticket, arena: number, ok: boolean): void {
    this.inFlight--;
    this.live[arena]!--;
    if (ok) this.done++;
    else this.dropped++;
    this.complete(t);
    if (!ok) this.dropQueued();
    this.freeRing();
    this.maybeReleaseWindow();
    this.pump();
  }

  /** A committed ticket is done (on the leg, or dropped): dependents may go. */
  private complete(t: Ticket): void {
    t.state = 'done';
    this.lag -= t.len;
    this.pending.delete(t.seq);
    for (let b = Math.floor(t.off / this.bucketBytes); b * this.bucketBytes < t.off + Math.max(t.len, 1); b++) {
      if (this.lastByBucket.get(b) === t) this.lastByBucket.delete(b);
    }
    for (const d of t.dependents ?? []) if (--d.deps === 0 && d.state === 'queued') this.ready.push(d);
    t.dependents = null;
    t.after = null;
    for (let i = 0; i < this.drainWaiters.length; ) {
      const w = this.drainWaiters[i]!;
      if (this.drained(w.seq)) {
        this.drainWaiters.splice(i, 1);
        w.resolve();
      } else i++;
    }
  }

  /** The leg is down or closing: every committed write not yet sent is dropped. */
  private dropQueued(): void {
    for (const t of [...this.pending.values()]) {
      if (t.state !== 'queued') continue;
      this.dropped++;
      this.complete(t);
    }
    this.ready.length = 0;
    this.readyFront = 0;
    this.freeRing();
  }

  /** Gives back ring space of done tickets at the front, then admits waiting writers in order. */
  private freeRing(): void {
    while (this.ringFront < this.ring.length && this.ring[this.ringFront]!.state === 'done') {
      this.tail = this.ring[this.ringFront]!.start + this.ring[this.ringFront]!.len;
      this.ringFront++;
    }
    if (this.ringFront === this.ring.length) {
      this.ring.length = 0;
      this.ringFront = 0;
      this.tail = this.head;
    } else if (this.ringFront > 1024) {
      this.ring.splice(0, this.ringFront);
      this.ringFront = 0;
    }
    while (this.spaceWaiters.length > 0) {
      const got = this.tryReserve(this.spaceWaiters[0]!.lens);
      if (got === null) break;
      this.spaceWaiters.shift()!.resolve(got);
    }
  }

  private maybeReleaseWindow(): void {
    if (!this.closed || this.inFlight > 0 || this.window === null) return;
    const w = this.window;
    this.window = null;
    this.sink.releaseWindow(w);
  }
}
