// Serialised, coalesced page writes, shared by the write-intent bitmap (durable/bitmap.ts) and the
// checksum store (integrity/store.ts): per page, at most one write runs and at most one waits
// behind it. Writers that ask while a write runs all join the one queued write, which carries
// the page as it is when it STARTS (writePage takes its snapshot synchronously), so every change
// made before a writer asked is in the write it waits for, and N writers cost at most 2 writes.

export interface Deferred {
  readonly promise: Promise<void>;
  resolve(): void;
  reject(err: unknown): void;
}

export function deferred(): Deferred {
  let resolve = (): void => undefined;
  let reject = (_: unknown): void => undefined;
  const promise = new Promise<void>((ok, fail) => {
    resolve = ok;
    reject = fail;
  });
  return { promise, resolve, reject };
}

/** Per page: the write running and the one queued behind it. */
interface PageQueue {
  running: boolean;
  queued: Deferred | null;
}

export class PageWriteQueue<K> {
  /** Only pages with a write running or queued (bounded by the writes in flight). */
  private readonly pages = new Map<K, PageQueue>();

  /** `writePage(key)` must take the page's bytes before it first awaits (the snapshot rule above). */
  constructor(private readonly writePage: (key: K) => Promise<void>) {}

  /** Resolves when page `key` as it is now (or later) is written; rejects with that write's error. */
  persist(key: K): Promise<void> {
    let q = this.pages.get(key);
    if (q === undefined) {
      q = { running: false, queued: null };
      this.pages.set(key, q);
    }
    q.queued ??= deferred();
    const done = q.queued.promise;
    if (!q.running) this.pump(key, q);
    return done;
  }

  /** Whether page `key` has a write running or queued. */
  busy(key: K): boolean {
    return this.pages.has(key);
  }

  private pump(key: K, q: PageQueue): void {
    const waiting = q.queued;
    if (waiting === null) {
      this.pages.delete(key);
      return;
    }
    q.queued = null;
    q.running = true;
    let write: Promise<void>;
    try {
      write = this.writePage(key);
    } catch (err) {
      write = Promise.reject(err);
    }
    write.then(() => waiting.resolve(), (err: unknown) => waiting.reject(err)).finally(() => {
      q.running = false;
      this.pump(key, q);
    });
  }
}
