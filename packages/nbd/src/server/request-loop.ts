// The transmission phase of one connection: reads request headers (28-byte compact ones, or
// 32-byte ones once extended headers are negotiated), collects WRITE payloads (in place when the
// zero-copy reader is on, else copied once from the socket's chunks), skips payloads it refuses,
// and hands requests to the backend (dispatch.ts). Back-pressure: at the in-flight cap, and while
// the backend finds write-buffer space, the socket is not read. The connection (connection.ts)
// owns the socket's lifecycle and calls step() while this makes progress.

import type { Socket } from 'node:net';
import type { NbdExport, NbdWriteBuffer } from '../backend.js';
import type { ByteAccumulator } from '../codec/accumulator.js';
import { decodeExtendedRequest } from '../codec/extended.js';
import { type NbdRequest, decodeRequest } from '../codec/transmission.js';
import { Cmd, CmdFlag, Errno, Size } from '../constants.js';
import type { ConnectionConfig } from './connection-config.js';
import { BackendDispatcher, invoke } from './dispatch.js';
import type { TransmissionSetup } from './handshake.js';
import type { LimitKey } from './limits.js';
import { type PendingWrite, PayloadDeadline, advancePayload, newPendingWrite } from './pending-write.js';
import { ReplySender } from './replies.js';
import { checkRequest } from './validate.js';

/** What the loop needs from its connection. */
export interface LoopHost {
  /** The socket of the transmission phase (it no longer changes: STARTTLS is over). */
  readonly socket: Socket;
  readonly acc: ByteAccumulator;
  readonly config: ConnectionConfig;
  tag(): string;
  /** Runs steps until none makes progress (safe to call re-entrantly). */
  pump(): void;
  /** Hard close; with a limit key the line goes through the rate-limited log. */
  fatal(reason: string, level: 'warn' | 'error', limit?: LimitKey): void;
  /** A slot came free after the socket closed: the connection may be drained now. */
  checkDrained(): void;
}

type LoopPhase = 'header' | 'acquiring' | 'payload' | 'discard' | 'disconnecting';

export class RequestLoop {
  private phase: LoopPhase = 'header';
  private closed = false;
  private readonly replies: ReplySender;
  private readonly backend: BackendDispatcher;
  private readonly exp: NbdExport;
  private readonly extended: boolean;
  private pending: PendingWrite | undefined;
  private pausedForSlots = false;
  private capNoted = false;
  /** The view the kernel fills in place on the next read (direct-read.ts), if any. */
  private directTarget: Uint8Array | null = null;
  private readonly payloadDeadline: PayloadDeadline;
  /** A takeover: no new request is read; the one whose payload is arriving still completes. */
  private quiescing = false;

  constructor(private readonly host: LoopHost, private readonly setup: TransmissionSetup) {
    const config = host.config;
    this.exp = setup.export;
    this.extended = setup.extendedHeaders;
    if (this.extended && !setup.structuredReplies) throw new Error('extended headers without structured replies');
    const mode = this.extended ? 'extended' : setup.structuredReplies ? 'structured' : 'simple';
    this.replies = new ReplySender(host.socket, config.inFlightMax, mode, () => this.onSlotFree());
    this.backend = new BackendDispatcher(this.exp, this.replies, setup.metaContexts, (message) => config.log('error', `${host.tag()}: ${message}`));
    this.payloadDeadline = new PayloadDeadline(config.payloadTimeoutMs,
      () => (this.phase === 'payload' || this.phase === 'discard' ? this.pending : undefined),
      (p) => host.fatal(`write payload not received within ${config.payloadTimeoutMs} ms (${p.remainingBytes} of ${p.req.lengthBytes} bytes missing; nbd.payloadTimeoutMs)`, 'warn', 'payload-timeout'));
  }

  get inFlight(): number {
    return this.replies.inFlight;
  }

  /** Waiting for the backend's write buffer: the connection stops reading past a bound. */
  get acquiring(): boolean {
    return this.phase === 'acquiring';
  }

  /** NBD_CMD_DISC came: nothing more is read. */
  get disconnecting(): boolean {
    return this.phase === 'disconnecting';
  }

  /** Takeover (handover.ts): stop before the next request header; what is buffered stays unparsed. */
  quiesce(): void {
    this.quiescing = true;
  }

  /** Quiesced between requests with every reply written: the connection may move. */
  get quiescent(): boolean {
    return this.quiescing && !this.closed && this.phase === 'header' && this.replies.inFlight === 0;
  }

  /** One unit of progress; false when waiting for bytes, a slot, or the backend. */
  step(): boolean {
    switch (this.phase) {
      case 'header': return this.stepHeader();
      case 'payload': return this.stepPayload();
      case 'discard': return this.stepDiscard();
      default: return false;
    }
  }

  /** Zero-copy receive: the rest of the current payload chunk when nothing is buffered ahead of it. */
  directReadTarget(): Uint8Array | null {
    const p = this.pending;
    const chunk = p?.buffer?.chunks[p.chunkIndex];
    this.directTarget = this.phase === 'payload' && this.host.acc.length === 0 && chunk !== undefined && p!.remainingBytes > 0
      ? chunk.subarray(p!.chunkOffset, Math.min(chunk.length, p!.chunkOffset + p!.remainingBytes))
      : null;
    return this.directTarget;
  }

  /** `n` bytes were read into `buf`; true when they landed in place as payload (else the caller feeds them as data). */
  takeDirectRead(n: number, buf: Uint8Array): boolean {
    if (buf !== this.directTarget || this.phase !== 'payload') return false;
    advancePayload(this.pending as PendingWrite, n);
    this.host.pump();
    return true;
  }

  /** The socket closed: give back what is held; in-flight backend work settles on its own. */
  onClose(): void {
    this.closed = true;
    this.payloadDeadline.stop();
    const pending = this.pending;
    // A write buffer held for a payload that will never arrive goes back now; one still being
    // acquired goes back when the acquisition settles (onWriteBuffer sees `closed`).
    if (pending !== undefined && !pending.acquiring) {
      pending.buffer?.release();
      pending.buffer = undefined;
      this.finishPending(pending);
    }
    this.replies.releaseSent();
  }

  private stepHeader(): boolean {
    const acc = this.host.acc;
    if (this.quiescing) {
      this.payloadDeadline.stop();
      this.host.socket.pause(); // bytes already read stay in acc and move with the connection
      return false;
    }
    if (acc.length === 0) return false;
    const headerBytes = this.extended ? Size.EXTENDED_REQUEST : Size.REQUEST;
    const header = acc.peek(Math.min(acc.length, headerBytes));
    const decoded = this.extended ? decodeExtendedRequest(header) : decodeRequest(header);
    if (decoded.kind === 'need') return false;
    if (decoded.kind === 'error') {
      this.host.fatal(`protocol violation: ${decoded.error.message}`, 'warn');
      return false;
    }
    const slot = this.replies.acquire();
    if (slot < 0) {
      this.pausedForSlots = true;
      this.host.socket.pause();
      // Back-pressure, not an error: noted once per connection (a deep-queue client hits it all the time).
      if (!this.capNoted) this.host.config.limitLog.note('in-flight', 'info',
        `${this.host.tag()}: ${this.host.config.inFlightMax} requests in flight (nbd.inFlightMax): not reading more until one completes`);
      this.capNoted = true;
      return false;
    }
    acc.consume(decoded.consumedBytes);
    const req = decoded.value;
    if (req.type === Cmd.DISC) {
      this.replies.drop(slot);
      this.disconnect();
      return false;
    }
    if (req.type === Cmd.WRITE) return this.startWrite(slot, req);
    // A payload on anything but WRITE: we do not advertise any (NBD_FLAG_BLOCK_STAT_PAYLOAD), so skip and refuse it.
    if (this.extended && (req.flags & CmdFlag.PAYLOAD_LEN) !== 0) return this.skipPayload(slot, req, Errno.EINVAL);
    const errno = checkRequest(req, this.exp, this.setup.structuredReplies, this.setup.metaContexts.length);
    if (errno === Errno.EOVERFLOW) this.noteOversized(req);
    if (errno !== 0) this.replies.sendError(slot, req, errno);
    else this.backend.dispatch(slot, req);
    return true;
  }

  private noteOversized(req: NbdRequest): void {
    const max = this.exp.blockSize.maximumBytes;
    this.host.config.limitLog.note('request-size', 'warn',
      `${this.host.tag()}: request of ${req.lengthBytes} bytes above the maximum of ${max} (nbd.maxRequestBytes): EOVERFLOW`);
  }

  /** Reads a payload we will not use and then replies `errno`; too large to read means closing. */
  private skipPayload(slot: number, req: NbdRequest, errno: number): boolean {
    if (req.lengthBytes > this.host.config.writeDiscardMaxBytes) {
      this.replies.drop(slot);
      this.host.fatal(`payload of ${req.lengthBytes} bytes (command ${req.type}) is too large to skip`, 'warn', 'request-size');
      return false;
    }
    this.pending = newPendingWrite(slot, req, errno);
    this.phase = 'discard';
    return true;
  }

  private startWrite(slot: number, req: NbdRequest): boolean {
    const exp = this.exp;
    const len = req.lengthBytes;
    if (len > exp.blockSize.maximumBytes && len > this.host.config.writeDiscardMaxBytes) {
      this.replies.drop(slot);
      this.host.fatal(`write of ${len} bytes is above the maximum of ${exp.blockSize.maximumBytes} and too large to skip`, 'warn', 'request-size');
      return false;
    }
    const errno = checkRequest(req, exp, this.setup.structuredReplies);
    if (errno === Errno.EOVERFLOW) this.noteOversized(req);
    if (errno !== 0) return this.skipPayload(slot, req, errno); // the payload still has to be read to stay in sync
    const pending = newPendingWrite(slot, req, errno);
    this.pending = pending;
    this.phase = 'acquiring';
    invoke(() => exp.acquireWriteBuffer(len)).then(
      (buffer) => this.onWriteBuffer(pending, buffer),
      (err: unknown) => this.onWriteBufferFailed(pending, err),
    );
    return false;
  }

  private onWriteBuffer(pending: PendingWrite, buffer: NbdWriteBuffer): void {
    pending.acquiring = false;
    if (this.closed) {
      buffer.release();
      this.finishPending(pending);
      return;
    }
    let totalBytes = 0;
    for (const chunk of buffer.chunks) totalBytes += chunk.length;
    if (totalBytes !== pending.req.lengthBytes) {
      buffer.release();
      this.onWriteBufferFailed(pending, new Error(`write buffer holds ${totalBytes} bytes, wanted ${pending.req.lengthBytes}`));
      return;
    }
    pending.buffer = buffer;
    pending.readyMs = Date.now();
    this.phase = 'payload';
    this.resumeAfterWait();
  }

  private onWriteBufferFailed(pending: PendingWrite, err: unknown): void {
    pending.acquiring = false;
    if (this.closed) {
      this.finishPending(pending);
      return;
    }
    pending.errno = this.backend.errnoOf(err);
    pending.readyMs = Date.now();
    this.phase = 'discard';
    this.resumeAfterWait();
  }

  private resumeAfterWait(): void {
    try {
      this.host.pump();
      if (!this.pausedForSlots && !this.quiescing && this.phase !== 'acquiring' && this.phase !== 'disconnecting' && this.host.socket.isPaused()) this.host.socket.resume();
    } catch (err) {
      this.host.fatal(`internal error: ${(err as Error).message}`, 'error');
    }
  }

  private stepPayload(): boolean {
    const pending = this.pending as PendingWrite;
    const buffer = pending.buffer as NbdWriteBuffer;
    const copies = this.host.config.copies;
    if (pending.remainingBytes > 0) {
      if (this.host.acc.length === 0) {
        this.payloadDeadline.arm();
        return false;
      }
      const chunk = buffer.chunks[pending.chunkIndex] as Uint8Array;
      const end = Math.min(chunk.length, pending.chunkOffset + pending.remainingBytes);
      // Bytes that came in Node's own buffers (TLS, or read ahead with a header) are copied once
      // into the backend's slots; the rest arrive in place (takeDirectRead).
      const copied = this.host.acc.copyTo(chunk.subarray(pending.chunkOffset, end));
      pending.copiedBytes += copied;
      if (copies !== undefined) copies.payloadBytesCopied += copied;
      advancePayload(pending, copied);
      if (pending.remainingBytes > 0) return true;
    }
    this.pending = undefined;
    pending.buffer = undefined;
    this.phase = 'header';
    if (copies !== undefined && pending.copiedBytes > 0) copies.payloadCopies++;
    this.backend.write(pending.slot, pending.req, buffer);
    return true;
  }

  private stepDiscard(): boolean {
    const pending = this.pending as PendingWrite;
    if (pending.remainingBytes > 0) {
      const n = Math.min(this.host.acc.length, pending.remainingBytes);
      if (n === 0) {
        this.payloadDeadline.arm();
        return false;
      }
      this.host.acc.consume(n);
      pending.remainingBytes -= n;
      if (pending.remainingBytes > 0) return true;
    }
    this.pending = undefined;
    this.phase = 'header';
    this.replies.sendError(pending.slot, pending.req, pending.errno);
    return true;
  }

  private onSlotFree(): void {
    if (this.closed) {
      this.host.checkDrained();
    } else if (this.phase === 'disconnecting') {
      if (this.replies.inFlight === 0) this.host.socket.destroySoon();
    } else if (this.pausedForSlots) {
      this.pausedForSlots = false;
      this.resumeAfterWait();
    }
  }

  /** NBD_CMD_DISC: read nothing more, let in-flight requests finish, then close. */
  private disconnect(): void {
    this.phase = 'disconnecting';
    this.host.socket.pause();
    this.host.acc.clear();
    this.host.config.log('info', `${this.host.tag()}: client disconnected`);
    if (this.replies.inFlight === 0) this.host.socket.destroySoon();
  }

  private finishPending(pending: PendingWrite): void {
    if (this.pending === pending) this.pending = undefined;
    this.replies.drop(pending.slot);
  }
}
