// Orders client writes against maintenance copies of the same volume range. A resync or rebuild
// copies a range from a good leg to another one; a client write landing in between would be
// overwritten with the old bytes. So the copier first fences the range: new writes that overlap
// it wait, writes already in flight there drain, the copy runs, the fence lifts. Fences are rare
// and short; the write path pays one Map insert and delete when no fence is up.
// A hook (the write-intent bitmap) may also run before each write; it is awaited inside the gate.

interface Range {
  readonly start: number;
  readonly end: number;
}

interface Fence extends Range {
  readonly lifted: Promise<void>;
  lift(): void;
}

/** Runs before a write is submitted (after the gate admitted it); may be async (persisting a bitmap). */
export type WriteHook = (offsetBytes: number, lengthBytes: number) => Promise<void> | undefined;

const overlaps = (a: Range, b: Range): boolean => a.start < b.end && b.start < a.end;

export class WriteGate {
  private readonly inFlight = new Map<number, Range>();
  private readonly fences = new Set<Fence>();
  private readonly drainWaiters = new Set<() => void>();
  private nextId = 1;
  private hook: WriteHook | null = null;

  setHook(hook: WriteHook | null): void {
    this.hook = hook;
  }

  /** Admits a write of [offset, +length); resolves with its release. */
  async enter(offsetBytes: number, lengthBytes: number): Promise<() => void> {
    const range = { start: offsetBytes, end: offsetBytes + Math.max(lengthBytes, 1) };
    // Bounded: each turn waits for a fence that overlapped to lift; fences are finite.
    for (let turn = 0; turn < 1_000_000; turn++) {
      const blocking = [...this.fences].find((f) => overlaps(f, range));
      if (blocking === undefined) break;
      await blocking.lifted;
    }
    const id = this.nextId++;
    this.inFlight.set(id, range);
    const release = (): void => {
      if (!this.inFlight.delete(id)) return;
      for (const wake of [...this.drainWaiters]) wake();
    };
    try {
      await this.hook?.(offsetBytes, lengthBytes);
    } catch (err) {
      release();
      throw err;
    }
    return release;
  }

  /** Blocks new writes overlapping the range, waits for those in flight there; resolves with lift(). */
  async fence(offsetBytes: number, lengthBytes: number): Promise<() => void> {
    let lift = (): void => undefined;
    const lifted = new Promise<void>((resolve) => {
      lift = resolve;
    });
    const fence: Fence = { start: offsetBytes, end: offsetBytes + Math.max(lengthBytes, 1), lifted, lift };
    this.fences.add(fence);
    const liftOnce = (): void => {
      if (!this.fences.delete(fence)) return;
      fence.lift();
    };
    const busy = (): boolean => [...this.inFlight.values()].some((r) => overlaps(r, fence));
    while (busy()) {
      await new Promise<void>((resolve) => {
        const wake = (): void => {
          this.drainWaiters.delete(wake);
          resolve();
        };
        this.drainWaiters.add(wake);
      });
    }
    return liftOnce;
  }

  /** Volume ranges [start, end) of the writes admitted now (hook included): the bitmap keeps their bits. */
  inFlightRanges(): { start: number; end: number }[] {
    return [...this.inFlight.values()].map((r) => ({ start: r.start, end: r.end }));
  }

  get writesInFlight(): number {
    return this.inFlight.size;
  }
}
