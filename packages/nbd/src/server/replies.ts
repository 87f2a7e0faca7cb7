// The reply path. Every in-flight request owns a slot: 40 header bytes in one slab allocated at
// connection start (an extended OFFSET_DATA header and its offset is the largest). Replies completing in the same tick share one cork, so they leave in one
// writev; read data goes out as the backend's own views, and is released only in the write
// callback of its last chunk, because the backend reuses that memory afterwards. Block status
// replies are the exception: their payload is built per reply (block-status.ts) and sent whole.

import type { Socket } from 'node:net';
import type { NbdReadResult } from '../backend.js';
import {
  EXTENDED_DATA_PREFIX_BYTES, encodeExtendedDataHeader, encodeExtendedErrorChunk, encodeExtendedNoneChunk,
} from '../codec/extended.js';
import {
  type NbdRequest, encodeDataChunkHeader, encodeErrorChunk, encodeNoneChunk, encodeSimpleReply,
} from '../codec/transmission.js';

/** How replies look: simple (16 bytes), structured chunks (20-byte headers), or extended (32-byte headers). */
export type ReplyMode = 'simple' | 'structured' | 'extended';

const SLOT_BYTES = EXTENDED_DATA_PREFIX_BYTES;
// Slot states: free, request at the backend, reply handed to the socket.
const FREE = 0;
const AT_BACKEND = 1;
const SENT = 2;

export class ReplySender {
  private readonly slab: Uint8Array;
  private readonly free: number[] = [];
  private readonly busy: Uint8Array; // slot state
  private readonly results: (NbdReadResult | undefined)[];
  private readonly onWritten: ((err?: Error | null) => void)[] = [];
  private corked = false;
  private readonly uncork = (): void => {
    this.corked = false;
    this.socket.uncork();
  };

  constructor(
    private readonly socket: Socket,
    readonly slotsMax: number,
    readonly mode: ReplyMode,
    /** Called whenever a slot frees up (back-pressure release, drain on disconnect). */
    private readonly onSlotFree: () => void,
  ) {
    if (!(slotsMax > 0 && slotsMax <= 65536)) throw new RangeError(`slotsMax out of range: ${slotsMax}`);
    this.slab = new Uint8Array(slotsMax * SLOT_BYTES);
    this.busy = new Uint8Array(slotsMax);
    this.results = new Array<NbdReadResult | undefined>(slotsMax).fill(undefined);
    for (let slot = 0; slot < slotsMax; slot++) this.onWritten.push(() => this.complete(slot));
    for (let slot = slotsMax - 1; slot >= 0; slot--) this.free.push(slot); // pop() hands out slot 0 first
  }

  get inFlight(): number {
    return this.slotsMax - this.free.length;
  }

  /** A free slot, or -1 when all are in flight (the caller stops reading). */
  acquire(): number {
    const slot = this.free.pop();
    if (slot === undefined) return -1;
    this.busy[slot] = AT_BACKEND;
    return slot;
  }

  /** Read data as one chunk (so NBD_CMD_FLAG_DF always holds), sent as the backend's own views. */
  sendRead(slot: number, req: NbdRequest, result: NbdReadResult, dataBytes: number): void {
    this.assertBusy(slot);
    if (!this.writable()) {
      result.release();
      this.complete(slot);
      return;
    }
    const at = slot * SLOT_BYTES;
    const { cookieHi, cookieLo, offsetBytes } = req;
    const headerBytes = this.mode === 'extended'
      ? encodeExtendedDataHeader(this.slab, at, cookieHi, cookieLo, offsetBytes, dataBytes, true)
      : this.mode === 'structured'
        ? encodeDataChunkHeader(this.slab, at, cookieHi, cookieLo, offsetBytes, dataBytes, true)
        : encodeSimpleReply(this.slab, at, cookieHi, cookieLo, 0);
    this.results[slot] = result;
    this.busy[slot] = SENT;
    this.begin();
    const chunks = result.chunks;
    this.socket.write(this.slab.subarray(at, at + headerBytes));
    const last = chunks.length - 1;
    for (let i = 0; i < last; i++) this.socket.write(chunks[i] as Uint8Array);
    this.socket.write(chunks[last] as Uint8Array, this.onWritten[slot]);
  }

  /** Error reply; reads use an ERROR chunk once structured replies are on (the spec requires it). */
  sendError(slot: number, req: NbdRequest, errno: number): void {
    this.assertBusy(slot);
    if (errno === 0) throw new RangeError('sendError needs a nonzero errno');
    const at = slot * SLOT_BYTES;
    const { cookieHi, cookieLo } = req;
    const n = this.mode === 'extended'
      ? encodeExtendedErrorChunk(this.slab, at, cookieHi, cookieLo, req.offsetBytes, errno)
      : this.mode === 'structured'
        ? encodeErrorChunk(this.slab, at, cookieHi, cookieLo, errno)
        : encodeSimpleReply(this.slab, at, cookieHi, cookieLo, errno);
    this.sendHeaderOnly(slot, n);
  }

  /** Success without data (everything but a read). */
  sendDone(slot: number, req: NbdRequest): void {
    this.assertBusy(slot);
    const at = slot * SLOT_BYTES;
    const { cookieHi, cookieLo } = req;
    const n = this.mode === 'extended'
      ? encodeExtendedNoneChunk(this.slab, at, cookieHi, cookieLo, req.offsetBytes)
      : this.mode === 'structured'
        ? encodeNoneChunk(this.slab, at, cookieHi, cookieLo)
        : encodeSimpleReply(this.slab, at, cookieHi, cookieLo, 0);
    this.sendHeaderOnly(slot, n);
  }

  /**
   * A whole reply built elsewhere (block status chunks, the last one DONE). It is the caller's
   * own buffer, not a slot view or backend memory: nothing to release once written.
   */
  sendOwned(slot: number, reply: Uint8Array): void {
    this.assertBusy(slot);
    if (this.mode === 'simple') throw new Error('a chunked reply without structured replies');
    if (!this.writable()) {
      this.complete(slot);
      return;
    }
    this.busy[slot] = SENT;
    this.begin();
    this.socket.write(reply, this.onWritten[slot]);
  }

  /** Frees a slot whose request will never be answered (connection gone). */
  drop(slot: number): void {
    this.assertBusy(slot);
    this.complete(slot);
  }

  /** The socket closed: replies handed to it will never leave, so release them now. */
  releaseSent(): void {
    for (let slot = 0; slot < this.slotsMax; slot++) {
      if (this.busy[slot] === SENT) this.complete(slot);
    }
  }

  private sendHeaderOnly(slot: number, headerBytes: number): void {
    if (!this.writable()) {
      this.complete(slot);
      return;
    }
    const at = slot * SLOT_BYTES;
    this.busy[slot] = SENT;
    this.begin();
    this.socket.write(this.slab.subarray(at, at + headerBytes), this.onWritten[slot]);
  }

  private writable(): boolean {
    return !this.socket.destroyed && !this.socket.writableEnded;
  }

  /** Cork once per tick; everything written before nextTick leaves in a single writev. */
  private begin(): void {
    if (this.corked) return;
    this.corked = true;
    this.socket.cork();
    process.nextTick(this.uncork);
  }

  /** Idempotent: a destroyed socket may call write callbacks after releaseAll() ran. */
  private complete(slot: number): void {
    if (this.busy[slot] === FREE) return;
    const result = this.results[slot];
    this.results[slot] = undefined;
    this.busy[slot] = FREE;
    this.free.push(slot);
    if (result !== undefined) result.release();
    this.onSlotFree();
  }

  private assertBusy(slot: number): void {
    if (this.busy[slot] !== AT_BACKEND) throw new Error(`reply for slot ${slot} which is not in flight`);
  }
}
