// A WRITE whose payload is still arriving (or being skipped), and the deadline for its bytes.
// Split from connection.ts: the connection owns the phases, this file the write's bookkeeping.

import type { NbdWriteBuffer } from '../backend.js';
import type { NbdRequest } from '../codec/transmission.js';

export interface PendingWrite {
  readonly slot: number;
  readonly req: NbdRequest;
  buffer: NbdWriteBuffer | undefined;
  acquiring: boolean;
  chunkIndex: number;
  chunkOffset: number;
  remainingBytes: number;
  /** Payload bytes moved by copyTo (a path that lands them in place would leave this 0). */
  copiedBytes: number;
  errno: number;
  /** When the payload could start landing (buffer ready, or skipping began); 0 while acquiring. */
  readyMs: number;
}

export function newPendingWrite(slot: number, req: NbdRequest, errno: number): PendingWrite {
  const acquiring = errno === 0;
  return {
    slot, req, buffer: undefined, acquiring, chunkIndex: 0, chunkOffset: 0, remainingBytes: req.lengthBytes,
    copiedBytes: 0, errno, readyMs: acquiring ? 0 : Date.now(),
  };
}

/** `n` more payload bytes are in the write buffer (copied or read in place). */
export function advancePayload(pending: PendingWrite, n: number): void {
  if (!(n >= 0 && n <= pending.remainingBytes)) throw new Error(`payload advanced by ${n} of ${pending.remainingBytes} bytes left`);
  if (n === 0) return;
  const chunk = pending.buffer?.chunks[pending.chunkIndex];
  if (chunk === undefined) throw new Error('payload advanced without a write buffer chunk');
  pending.chunkOffset += n;
  pending.remainingBytes -= n;
  if (pending.chunkOffset === chunk.length) {
    pending.chunkIndex += 1;
    pending.chunkOffset = 0;
  }
}

/**
 * Drops a client whose WRITE payload does not arrive within `timeoutMs` of its buffer being
 * ready: a payload that trickles in holds backend buffers (slab slots) other clients need. One
 * timer per connection, armed only when the connection waits for payload bytes, so writes whose
 * payload comes with its header cost no timer at all.
 */
export class PayloadDeadline {
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly timeoutMs: number,
    /** The write whose payload is awaited, if any. */
    private readonly current: () => PendingWrite | undefined,
    private readonly onExpired: (pending: PendingWrite) => void,
  ) {
    if (!(timeoutMs > 0)) throw new RangeError('payload timeout must be positive');
  }

  /** The connection waits for payload bytes: make sure a check is due by the deadline. */
  arm(): void {
    if (this.timer !== undefined) return;
    const p = this.current();
    if (p !== undefined && p.readyMs !== 0) this.schedule(p.readyMs + this.timeoutMs - Date.now());
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(delayMs: number): void {
    this.timer = setTimeout(() => this.check(), Math.max(0, delayMs));
  }

  private check(): void {
    this.timer = undefined;
    const p = this.current();
    if (p === undefined || p.readyMs === 0 || p.remainingBytes === 0) return; // the next wait arms again
    const leftMs = p.readyMs + this.timeoutMs - Date.now();
    if (leftMs > 0) this.schedule(leftMs);
    else this.onExpired(p);
  }
}
