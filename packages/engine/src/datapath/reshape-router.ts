// The client view of a volume being reshaped (docs/reshape.md): bytes [0, position) live in the
// NEW geometry, [position, exposed) still in the OLD one. Every request is split at the position
// and each part goes to the view's own VolumeIo (its own volume index: the read cache, the fast
// lane and the middle stage's direct parity reads all key on that index, so each part is mapped
// with the geometry that holds it). The copier fences the window it moves: requests overlapping
// it wait (bounded FIFO), those already in flight there finish first; advance() then moves the
// position to the window's end. A request admitted outside a fence keeps its split while in
// flight: the position only moves over fenced windows, which admitted requests do not overlap.
import type { RequestClass } from '@onestack/queue';
import type { NbdReadResult, NbdWriteBuffer } from '@onestack/nbd';
import type { LatencyStats } from '../api-types.js';
import { DataPathError, type DataPathErrno } from './errno.js';
import type { VolumeCacheStats, VolumeIo, VolumeStats } from './volume-io-types.js';
import { settleAll, settleValues } from './settle.js';
import { BoundedFifo } from './waiters.js';
import type { WriteGate } from './write-gate.js';

interface Fence {
  readonly start: number;
  readonly end: number;
  /** A pause: holds every request, flushes too. */
  readonly all: boolean;
}

interface InFlight {
  readonly start: number;
  readonly end: number;
  readonly flush: boolean;
}

interface Part {
  readonly io: VolumeIo;
  readonly off: number;
  readonly len: number;
  /** Offset of the part inside the request. */
  readonly at: number;
}

const overlaps = (a: { start: number; end: number }, b: { start: number; end: number }): boolean => a.start < b.end && b.start < a.end;

export class ReshapeRouter implements VolumeIo {
  private position: number;
  private readonly inFlight = new Set<InFlight>();
  private readonly fences = new Set<Fence>();
  /** Requests waiting for a fence to lift: all woken at each release, each checks again. */
  private readonly waiting: BoundedFifo<() => void>;
  /** Fences waiting for the requests in flight under them to finish. */
  private drains: { readonly fence: Fence; readonly resolve: () => void }[] = [];
  /** Write buffers given out, by the view that gave them (a rebound view cannot take another's). */
  private readonly ownBuffers = new WeakMap<NbdWriteBuffer, VolumeIo>();

  constructor(
    private oldView: VolumeIo,
    private newView: VolumeIo,
    positionBytes: number,
    private exposed: number,
    private readonly waitersMax = 65536,
  ) {
    if (!(Number.isSafeInteger(positionBytes) && positionBytes >= 0 && positionBytes <= exposed)) throw new RangeError(`reshape position ${positionBytes} outside [0, ${exposed}]`);
    this.position = positionBytes;
    this.waiting = new BoundedFifo(waitersMax);
    this.checkViews();
  }

  /** The OLD-geometry view (holds [position, exposed)); the copier reads it under a fence. */
  get oldIo(): VolumeIo {
    return this.oldView;
  }

  /** The NEW-geometry view (holds [0, position)). */
  get newIo(): VolumeIo {
    return this.newView;
  }

  get positionBytes(): number {
    return this.position;
  }

  get sizeBytes(): number {
    return this.exposed;
  }

  get gate(): WriteGate {
    return this.newView.gate;
  }

  get alignBytes(): number {
    return Math.max(this.oldView.alignBytes, this.newView.alignBytes);
  }

  /** A topology kept the reshape but rebound a view (a fresh I/O object); the position stays. */
  rebind(oldIo: VolumeIo, newIo: VolumeIo, exposedBytes: number): void {
    this.oldView = oldIo;
    this.newView = newIo;
    this.exposed = exposedBytes;
    this.checkViews();
  }

  private checkViews(): void {
    if (this.oldView.sizeBytes < this.exposed || this.newView.sizeBytes < this.exposed) {
      throw new RangeError(`reshape views of ${this.oldView.sizeBytes} and ${this.newView.sizeBytes} bytes cannot hold ${this.exposed}`);
    }
  }

  /**
   * Holds client requests overlapping [start, end) and waits for those in flight there; resolves
   * with the release. The copier moves the window meanwhile, then advance()s and releases.
   */
  async fence(startBytes: number, endBytes: number): Promise<() => void> {
    if (!(Number.isSafeInteger(startBytes) && Number.isSafeInteger(endBytes) && startBytes >= 0 && startBytes < endBytes)) {
      throw new DataPathError('EINVAL', `reshape fence [${startBytes}, ${endBytes}) is not a range`);
    }
    return this.hold({ start: startBytes, end: endBytes, all: false });
  }

  /** Holds every client request (flushes too) and waits until none is in flight (DataPath.pauseVolume). */
  pause(): Promise<() => void> {
    return this.hold({ start: 0, end: Number.MAX_SAFE_INTEGER, all: true });
  }

  private async hold(f: Fence): Promise<() => void> {
    this.fences.add(f);
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      this.fences.delete(f);
      this.drains = this.drains.filter((d) => d.fence !== f);
      this.wake();
    };
    if ([...this.inFlight].some((r) => this.blocks(f, r))) {
      if (this.drains.length >= this.waitersMax) {
        release();
        throw new DataPathError('ENOMEM', `more than ${this.waitersMax} fences wait on the reshape router`);
      }
      await new Promise<void>((resolve) => this.drains.push({ fence: f, resolve }));
    }
    return release;
  }

  /** Moves the position forward to the end of a held fence that starts at or below it. */
  advance(positionBytes: number): void {
    const held = [...this.fences].some((f) => !f.all && f.start <= this.position && f.end === positionBytes);
    if (!(positionBytes > this.position && positionBytes <= this.exposed && held)) {
      throw new DataPathError('EINVAL', `reshape position may move from ${this.position} only forward to the end of a held fence, not to ${positionBytes}`);
    }
    this.position = positionBytes;
  }

  private blocks(f: Fence, r: InFlight): boolean {
    return f.all || (!r.flush && overlaps(f, r));
  }

  /** Registers the request if no fence holds it now, else null. */
  private tryAdmit(start: number, len: number, flush: boolean): InFlight | null {
    const r: InFlight = { start, end: start + Math.max(1, len), flush };
    for (const f of this.fences) if (this.blocks(f, r)) return null;
    this.inFlight.add(r);
    return r;
  }

  private async admit(start: number, len: number, flush: boolean): Promise<InFlight> {
    for (;;) {
      const r = this.tryAdmit(start, len, flush);
      if (r !== null) return r;
      await new Promise<void>((resolve, reject) => {
        if (!this.waiting.push(resolve)) reject(new DataPathError('ENOMEM', `more than ${this.waitersMax} requests wait for a reshape fence`));
      });
    }
  }

  private leave(r: InFlight): void {
    this.inFlight.delete(r);
    if (this.drains.length === 0) return;
    const still = this.drains.filter((d) => [...this.inFlight].some((x) => this.blocks(d.fence, x)));
    const done = this.drains.filter((d) => !still.includes(d));
    this.drains = still;
    for (const d of done) d.resolve();
  }

  private wake(): void {
    const n = this.waiting.size;
    for (let i = 0; i < n; i++) this.waiting.shift()!();
  }

  private async run<T>(start: number, len: number, flush: boolean, fn: () => Promise<T>): Promise<T> {
    const r = await this.admit(start, len, flush);
    try {
      return await fn();
    } finally {
      this.leave(r);
    }
  }

  /** The request cut at the position (read after admission): new view below, old view above. */
  private parts(off: number, len: number): Part[] {
    const p = this.position;
    if (len === 0) return [{ io: off < p ? this.newView : this.oldView, off, len: 0, at: 0 }];
    const out: Part[] = [];
    if (off < p) out.push({ io: this.newView, off, len: Math.min(len, p - off), at: 0 });
    if (off + len > p) {
      const from = Math.max(off, p);
      out.push({ io: this.oldView, off: from, len: off + len - from, at: from - off });
    }
    return out;
  }

  private check(off: number, len: number, pastEnd: DataPathErrno): void {
    if (!(Number.isSafeInteger(off) && off >= 0 && Number.isSafeInteger(len) && len >= 0)) {
      throw new DataPathError('EINVAL', `range [${off}, +${len}) is not a pair of non-negative integers`);
    }
    if (off + len > this.exposed) throw new DataPathError(pastEnd, `range [${off}, +${len}) ends past the volume size ${this.exposed}`);
  }

  async read(offsetBytes: number, lengthBytes: number, cls?: RequestClass): Promise<Uint8Array> {
    this.check(offsetBytes, lengthBytes, 'EINVAL');
    return this.run(offsetBytes, lengthBytes, false, async () => {
      const parts = this.parts(offsetBytes, lengthBytes);
      if (parts.length === 1) return parts[0]!.io.read(parts[0]!.off, parts[0]!.len, cls);
      const got = await settleValues(parts.map((x) => x.io.read(x.off, x.len, cls)));
      const out = new Uint8Array(lengthBytes);
      got.forEach((g, i) => out.set(g, parts[i]!.at));
      return out;
    });
  }

  async readSlots(offsetBytes: number, lengthBytes: number, cls?: RequestClass): Promise<NbdReadResult> {
    this.check(offsetBytes, lengthBytes, 'EINVAL');
    return this.run(offsetBytes, lengthBytes, false, async () => {
      const parts = this.parts(offsetBytes, lengthBytes);
      if (parts.length === 1) return parts[0]!.io.readSlots(parts[0]!.off, parts[0]!.len, cls);
      const results = await Promise.allSettled(parts.map((x) => x.io.readSlots(x.off, x.len, cls)));
      const ok = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed !== undefined) {
        for (const r of ok) r.release();
        throw failed.reason;
      }
      let done = false;
      return { chunks: ok.flatMap((r) => r.chunks), release: () => {
        if (done) return;
        done = true;
        for (const r of ok) r.release();
      } };
    });
  }

  async write(offsetBytes: number, data: Uint8Array, opts?: { fua?: boolean }, cls?: RequestClass): Promise<void> {
    this.check(offsetBytes, data.length, 'ENOSPC');
    await this.run(offsetBytes, data.length, false, () => this.writeParts(offsetBytes, data, opts, cls));
  }

  private async writeParts(offsetBytes: number, data: Uint8Array, opts: { fua?: boolean } | undefined, cls: RequestClass | undefined): Promise<void> {
    await settleAll(this.parts(offsetBytes, data.length).map((x) => x.io.write(x.off, data.subarray(x.at, x.at + x.len), opts, cls)));
  }

  /** Buffers come from the new view: a write wholly below the position goes there without a copy. */
  async acquireWriteBuffer(lengthBytes: number): Promise<NbdWriteBuffer> {
    const view = this.newView;
    const buf = await view.acquireWriteBuffer(lengthBytes);
    this.ownBuffers.set(buf, view);
    return buf;
  }

  /**
   * A write of an acquired buffer. Wholly in the new view: zero-copy. Else (old view, split, or
   * held by a fence) its bytes are copied out and its slots freed first: a fenced write must not
   * sit on slots the copier needs.
   */
  async writeBuffer(offsetBytes: number, buf: NbdWriteBuffer, opts: { fua: boolean }, cls?: RequestClass): Promise<void> {
    const lengthBytes = buf.chunks.reduce((a, c) => a + c.length, 0);
    const owner = this.ownBuffers.get(buf);
    try {
      if (owner === undefined) throw new DataPathError('EINVAL', 'write buffer was not acquired from this volume or was already released');
      this.check(offsetBytes, lengthBytes, 'ENOSPC');
    } catch (err) {
      buf.release();
      throw err;
    }
    const r = this.tryAdmit(offsetBytes, lengthBytes, false);
    if (r !== null && offsetBytes + lengthBytes <= this.position && owner === this.newView) {
      try {
        return await this.newView.writeBuffer(offsetBytes, buf, opts, cls);
      } finally {
        this.ownBuffers.delete(buf);
        this.leave(r);
      }
    }
    const data = concat(buf.chunks, lengthBytes);
    this.ownBuffers.delete(buf);
    buf.release();
    if (r === null) return this.write(offsetBytes, data, opts, cls);
    try {
      await this.writeParts(offsetBytes, data, opts, cls);
    } finally {
      this.leave(r);
    }
  }

  flush(): Promise<void> {
    return this.run(0, 0, true, async () => {
      await settleAll([this.oldView.flush(), this.newView.flush()]);
    });
  }

  trim(off: number, len: number, opts?: { fua?: boolean }): Promise<void> {
    return this.noData(off, len, 'ENOSPC', (x) => x.io.trim(x.off, x.len, opts));
  }

  writeZeroes(off: number, len: number, opts?: { fua?: boolean; noHole?: boolean }): Promise<void> {
    return this.noData(off, len, 'ENOSPC', (x) => x.io.writeZeroes(x.off, x.len, opts));
  }

  cache(off: number, len: number): Promise<void> {
    return this.noData(off, len, 'EINVAL', (x) => x.io.cache(x.off, x.len));
  }

  private async noData(off: number, len: number, pastEnd: DataPathErrno, fn: (x: Part) => Promise<void>): Promise<void> {
    this.check(off, len, pastEnd);
    await this.run(off, len, false, async () => {
      await settleAll(this.parts(off, len).map(fn));
    });
  }

  stats(): VolumeStats {
    const a = this.oldView.stats();
    const b = this.newView.stats();
    return {
      readOps: a.readOps + b.readOps, writeOps: a.writeOps + b.writeOps, readBytes: a.readBytes + b.readBytes, writeBytes: a.writeBytes + b.writeBytes,
      errors: a.errors + b.errors, rmwOps: a.rmwOps + b.rmwOps, copies: a.copies + b.copies, bytesCopied: a.bytesCopied + b.bytesCopied,
      readLatencyUs: addLatency(a.readLatencyUs, b.readLatencyUs), writeLatencyUs: addLatency(a.writeLatencyUs, b.writeLatencyUs),
    };
  }

  cacheStats(): VolumeCacheStats {
    const a = this.oldView.cacheStats();
    const b = this.newView.cacheStats();
    const hits = a.hits + b.hits;
    const misses = a.misses + b.misses;
    return { hits, misses, hitRatio: hits + misses === 0 ? 0 : hits / (hits + misses) };
  }

  invalidateCache(off: number, len: number): void {
    for (const io of [this.oldView, this.newView]) {
      const end = Math.min(off + len, io.sizeBytes);
      if (end > off) io.invalidateCache(off, end - off);
    }
  }

  /** Requests in flight and waiting (status, tests). */
  get load(): { inFlight: number; waiting: number } {
    return { inFlight: this.inFlight.size, waiting: this.waiting.size };
  }
}

function addLatency(a: LatencyStats, b: LatencyStats): LatencyStats {
  const n = Math.max(a.buckets.length, b.buckets.length);
  return { sum: a.sum + b.sum, count: a.count + b.count, buckets: Array.from({ length: n }, (_, i) => (a.buckets[i] ?? 0) + (b.buckets[i] ?? 0)) };
}

function concat(chunks: readonly Uint8Array[], lengthBytes: number): Uint8Array {
  const out = new Uint8Array(lengthBytes);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}
