// Bytes received but not yet consumed, kept as the socket's own chunks (never concatenated).
// Headers are read through peek(): a view when the bytes are contiguous, otherwise one small
// copy into a scratch buffer. Payloads leave through copyTo() straight into their destination.
// Cost per byte is O(1), so a stream of requests costs O(n), not O(n^2).

export class ByteAccumulator {
  private readonly chunks: Uint8Array[] = [];
  private head = 0; // index of the first live chunk in `chunks`
  private headOffset = 0; // bytes already consumed from chunks[head]
  private lengthBytes = 0;
  private scratch: Uint8Array;

  constructor(
    /** Upper bound on buffered bytes; push() beyond it is a caller bug (it should have paused). */
    readonly capacityBytes: number,
    scratchBytes = 64,
  ) {
    if (!(capacityBytes > 0)) throw new RangeError('capacityBytes must be positive');
    this.scratch = new Uint8Array(scratchBytes);
  }

  get length(): number {
    return this.lengthBytes;
  }

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.lengthBytes += chunk.length;
    if (this.lengthBytes > this.capacityBytes) {
      throw new RangeError(`accumulator over capacity: ${this.lengthBytes} > ${this.capacityBytes}`);
    }
  }

  /** Contiguous view of the first `n` buffered bytes (n ≤ length). Valid until the next mutation. */
  peek(n: number): Uint8Array {
    if (n > this.lengthBytes) throw new RangeError(`peek(${n}) beyond ${this.lengthBytes} buffered bytes`);
    const first = this.chunks[this.head];
    if (first === undefined || n === 0) return this.scratch.subarray(0, 0);
    if (first.length - this.headOffset >= n) return first.subarray(this.headOffset, this.headOffset + n);
    if (this.scratch.length < n) this.scratch = new Uint8Array(Math.max(n, this.scratch.length * 2));
    this.copyOut(this.scratch, n, false);
    return this.scratch.subarray(0, n);
  }

  /** Drops the first `n` bytes. */
  consume(n: number): void {
    this.copyOut(undefined, n, true);
  }

  /** Moves up to target.length bytes into `target`; returns how many were moved. */
  copyTo(target: Uint8Array): number {
    const n = Math.min(target.length, this.lengthBytes);
    this.copyOut(target, n, true);
    return n;
  }

  clear(): void {
    this.chunks.length = 0;
    this.head = 0;
    this.headOffset = 0;
    this.lengthBytes = 0;
  }

  private copyOut(target: Uint8Array | undefined, n: number, advance: boolean): void {
    if (n > this.lengthBytes) throw new RangeError(`need ${n} bytes, have ${this.lengthBytes}`);
    let index = this.head;
    let offset = this.headOffset;
    let done = 0;
    // Bounded: every pass takes at least one byte or finishes a chunk.
    while (done < n) {
      const chunk = this.chunks[index];
      if (chunk === undefined) throw new Error('accumulator invariant: ran out of chunks');
      const take = Math.min(chunk.length - offset, n - done);
      if (target !== undefined) target.set(chunk.subarray(offset, offset + take), done);
      done += take;
      offset += take;
      if (offset === chunk.length) {
        index += 1;
        offset = 0;
      }
    }
    if (!advance) return;
    this.head = index;
    this.headOffset = offset;
    this.lengthBytes -= n;
    this.compact();
  }

  /** Drops consumed chunk slots now and then, so the array does not grow without bound. */
  private compact(): void {
    if (this.lengthBytes === 0) {
      this.clear();
    } else if (this.head >= 32) {
      this.chunks.splice(0, this.head);
      this.head = 0;
    }
  }
}
