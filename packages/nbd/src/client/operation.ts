// One caller's call (read, write, flush, ...) with its deadline, cut into NBD requests on demand,
// and the FIFO of calls waiting for a connection slot. Requests handed back by a dropped
// connection wait in `retries`, ahead of any not yet sent, so reissue keeps the sending order.

import { Cmd } from '../constants.js';
import type { RemoteError } from './errors.js';
import type { Part, StatusWanted } from './connection.js';

export interface OperationSpec {
  readonly what: string;
  readonly type: number;
  readonly flags: number;
  readonly offsetBytes: number;
  readonly lengthBytes: number;
  /** READ: filled; WRITE: sent. Covers the whole range; requests use views into it. */
  readonly buffer?: Uint8Array;
  /** WRITE of zeroes: one buffer sent (as a prefix view) for every request. */
  readonly zeroes?: Uint8Array;
  /** Largest request to cut. */
  readonly partMaxBytes: number;
  /** Send one request even when lengthBytes is 0 (FLUSH). */
  readonly always?: boolean;
  /** BLOCK_STATUS: the context asked about, and where its extents go. */
  readonly status?: StatusWanted;
}

export class OpPart implements Part {
  constructor(
    readonly op: Operation,
    readonly offsetBytes: number,
    readonly lengthBytes: number,
    readonly payload: Uint8Array | undefined,
    readonly target: Uint8Array | undefined,
  ) {}

  get type(): number { return this.op.spec.type; }
  get flags(): number { return this.op.spec.flags; }
  get what(): string { return this.op.what; }
  get status(): StatusWanted | undefined { return this.op.spec.status; }
  /** Once the call has settled (deadline, failure elsewhere, close), its buffer is the caller's again. */
  get abandoned(): boolean { return this.op.settled; }
}

export class Operation {
  settled = false;
  queued = false;
  timer: NodeJS.Timeout | undefined;
  private issuedBytes = 0;
  private sentEmpty = false;
  /** Requests sent and not yet answered with success (including those waiting to be reissued). */
  private outstanding = 0;
  private readonly retries: OpPart[] = [];

  constructor(
    readonly spec: OperationSpec,
    private readonly resolve: () => void,
    private readonly reject: (err: RemoteError) => void,
  ) {
    if (!(spec.partMaxBytes > 0)) throw new RangeError('partMaxBytes must be positive');
    if (spec.type === Cmd.WRITE && spec.buffer === undefined && spec.zeroes === undefined) throw new RangeError('a write needs bytes');
    // One request per status call: its reply describes one range, from its own offset.
    if ((spec.type === Cmd.BLOCK_STATUS) !== (spec.status !== undefined && spec.partMaxBytes >= spec.lengthBytes)) {
      throw new RangeError('a block status operation is one request with a context');
    }
  }

  get what(): string {
    return `${this.spec.what} of ${this.spec.lengthBytes} bytes at ${this.spec.offsetBytes}`;
  }

  /** The next request to send: a reissue first, else a new cut of the range; undefined when all are out. */
  nextPart(): OpPart | undefined {
    const again = this.retries.shift();
    if (again !== undefined) return again;
    const { lengthBytes, offsetBytes, type, buffer, zeroes } = this.spec;
    if (lengthBytes === 0) {
      if (this.sentEmpty || this.spec.always !== true) return undefined;
      this.sentEmpty = true;
      this.outstanding += 1;
      return new OpPart(this, offsetBytes, 0, undefined, undefined);
    }
    if (this.issuedBytes >= lengthBytes) return undefined;
    const at = this.issuedBytes;
    const n = Math.min(this.spec.partMaxBytes, lengthBytes - at);
    this.issuedBytes += n;
    this.outstanding += 1;
    const payload = type !== Cmd.WRITE ? undefined : zeroes !== undefined ? zeroes.subarray(0, n) : buffer?.subarray(at, at + n);
    const target = type === Cmd.READ ? buffer?.subarray(at, at + n) : undefined;
    return new OpPart(this, offsetBytes + at, n, payload, target);
  }

  /** A request comes back unanswered (its connection dropped): send it again before anything new. */
  retry(part: OpPart): void {
    if (part.op !== this) throw new Error('retry of another operation\'s request');
    this.retries.unshift(part);
  }

  partDone(): void {
    if (this.outstanding <= 0) throw new Error('operation invariant: more replies than requests');
    this.outstanding -= 1;
  }

  get complete(): boolean {
    const allCut = this.spec.lengthBytes === 0 ? this.sentEmpty : this.issuedBytes >= this.spec.lengthBytes;
    return allCut && this.outstanding === 0 && this.retries.length === 0;
  }

  settle(err: RemoteError | undefined): void {
    if (this.settled) return;
    this.settled = true;
    clearTimeout(this.timer);
    if (err === undefined) this.resolve();
    else this.reject(err);
  }
}

/** FIFO of operations (deque over an array with a moving head, compacted now and then). */
export class OpQueue {
  private items: (Operation | undefined)[] = [];
  private head = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  peek(): Operation | undefined {
    return this.items[this.head];
  }

  pushBack(op: Operation): void {
    op.queued = true;
    this.items.push(op);
  }

  /** Reissued requests go first: their calls have waited longest. */
  pushFront(op: Operation): void {
    op.queued = true;
    if (this.head > 0) this.items[--this.head] = op;
    else this.items.unshift(op);
  }

  popFront(): void {
    const op = this.items[this.head];
    if (op === undefined) return;
    op.queued = false;
    this.items[this.head] = undefined;
    this.head += 1;
    if (this.head >= 1024 || this.head === this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
  }

  clear(): void {
    for (let i = this.head; i < this.items.length; i++) {
      const op = this.items[i];
      if (op !== undefined) op.queued = false;
    }
    this.items = [];
    this.head = 0;
  }
}
