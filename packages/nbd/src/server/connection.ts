// One client connection: drives the handshake machine (upgrading the socket to TLS on STARTTLS),
// then the request loop. Requests are parsed from a bounded accumulator, validated, and handed to
// the backend (dispatch.ts); replies leave in completion order through ReplySender. Nothing thrown
// here may escape to the event loop. Limits hit here (handshake deadline, in-flight cap, request
// size, payload deadline) are reported through the server's rate-limited LimitLog.

import type { Socket } from 'node:net';
import type { NbdExport, NbdWriteBuffer } from '../backend.js';
import { ByteAccumulator } from '../codec/accumulator.js';
import { encodeGreeting } from '../codec/handshake.js';
import { type NbdRequest, decodeRequest } from '../codec/transmission.js';
import { Cmd, Errno, Size } from '../constants.js';
import { BackendDispatcher, invoke } from './dispatch.js';
import { SERVER_HANDSHAKE_FLAGS, ServerHandshake } from './handshake.js';
import type { ConnectionConfig } from './connection-config.js';
import type { LimitKey } from './limits.js';
import { type PendingWrite, PayloadDeadline, advancePayload, newPendingWrite } from './pending-write.js';
import { ReplySender } from './replies.js';
import { upgradeToTls } from './tls.js';
import { directReadSocket } from './direct-read.js';
import { checkRequest } from './validate.js';

export type { LogFn } from './limits.js';
export type { ConnectionConfig, NbdCopyCounters } from './connection-config.js';

// 'tls': STARTTLS was ACKed and the TLS handshake runs; nothing is parsed until it passes.
type Phase = 'handshake' | 'tls' | 'header' | 'acquiring' | 'payload' | 'discard' | 'disconnecting' | 'closing' | 'closed';

// Stop reading once this much waits unparsed (e.g. while the backend finds write-buffer space).
const PAUSE_ABOVE_BYTES = 256 * 1024;
// Hard bound: PAUSE_ABOVE_BYTES plus the socket's in-flight chunks, with a wide margin.
const ACCUMULATOR_CAPACITY_BYTES = 16 * 1024 * 1024;
const PUMP_STEPS_MAX = 65536;
// What a read that is not a payload's in-place read gets: Node's own chunk size.
const STAGING_BYTES = 64 * 1024;

export class NbdConnection {
  private readonly acc: ByteAccumulator;
  private readonly handshake: ServerHandshake;
  private phase: Phase = 'handshake';
  private exp: NbdExport | undefined;
  private structuredReplies = false;
  private replies: ReplySender | undefined;
  private pending: PendingWrite | undefined;
  private pausedForSlots = false;
  private capNoted = false;
  private pumping = false;
  /** The view the kernel fills in place on the next read (direct-read.ts), if any. */
  private directTarget: Uint8Array | null = null;
  private backend: BackendDispatcher | undefined;
  private handshakeTimer: NodeJS.Timeout | undefined;
  private readonly payloadDeadline: PayloadDeadline;
  /** The accepted socket, or after STARTTLS the TLS socket over it. */
  private socket: Socket;
  private readonly listeners = {
    data: (chunk: Buffer): void => this.onData(chunk),
    error: (err: Error): void => this.config.log(this.phase === 'tls' ? 'warn' : 'info',
      `${this.tag()}: ${this.phase === 'tls' ? 'TLS handshake failed' : 'socket error'}: ${describeError(err)}`),
    close: (): void => this.onClose(),
  };
  private resolveDrained!: () => void;
  /** Settles once the socket is closed and no request is left at the backend. */
  readonly drained: Promise<void> = new Promise((resolve) => { this.resolveDrained = resolve; });

  constructor(socket: Socket, private readonly config: ConnectionConfig) {
    if (!(config.inFlightMax > 0) || !(config.handshakeTimeoutMs > 0)) throw new RangeError('bad connection config');
    if ((config.tls === undefined) !== (config.handshake.tls === 'none')) throw new RangeError('tls material and handshake mode disagree');
    this.acc = new ByteAccumulator(ACCUMULATOR_CAPACITY_BYTES);
    this.handshake = new ServerHandshake(config.handshake);
    this.payloadDeadline = new PayloadDeadline(config.payloadTimeoutMs,
      () => (this.phase === 'payload' || this.phase === 'discard' ? this.pending : undefined),
      (p) => this.fatal(`write payload not received within ${config.payloadTimeoutMs} ms (${p.remainingBytes} of ${p.req.lengthBytes} bytes missing; nbd.payloadTimeoutMs)`, 'warn', 'payload-timeout'));
    socket.setNoDelay(true);
    const moved = config.directRead === true && config.tls === undefined
      ? directReadSocket(socket, { nextBuffer: () => this.nextReadBuffer(), onRead: (n, buf) => this.onDirectRead(n, buf) })
      : null;
    this.socket = moved ?? socket;
    this.attach(this.socket, moved === null);
    if (this.socket.isPaused()) this.socket.resume(); // accepted paused (pauseOnConnect)
    // Runs on across a TLS upgrade: a client stalling in the TLS handshake is dropped as well.
    this.handshakeTimer = setTimeout(() => this.onHandshakeTimeout(), config.handshakeTimeoutMs);
    this.socket.write(encodeGreeting(SERVER_HANDSHAKE_FLAGS));
  }

  /** Server shutdown: hard disconnect; in-flight backend work still settles and is released. */
  destroy(): void {
    this.socket.destroy();
  }

  private attach(socket: Socket, dataEvents = true): void {
    if (dataEvents) socket.on('data', this.listeners.data);
    socket.on('error', this.listeners.error).on('close', this.listeners.close);
  }

  /** Zero-copy receive: the rest of the current payload chunk when nothing is buffered ahead of it. */
  private nextReadBuffer(): Uint8Array {
    const p = this.pending;
    const chunk = p?.buffer?.chunks[p.chunkIndex];
    this.directTarget = this.phase === 'payload' && this.acc.length === 0 && chunk !== undefined && p!.remainingBytes > 0
      ? chunk.subarray(p!.chunkOffset, Math.min(chunk.length, p!.chunkOffset + p!.remainingBytes))
      : null;
    return this.directTarget ?? Buffer.allocUnsafe(STAGING_BYTES); // fresh: the accumulator keeps its chunks
  }

  private onDirectRead(n: number, buf: Uint8Array): boolean {
    if (buf !== this.directTarget || this.phase !== 'payload') {
      this.onData(buf.subarray(0, n));
      return true;
    }
    try {
      advancePayload(this.pending as PendingWrite, n);
      this.pump();
    } catch (err) {
      this.fatal(`internal error: ${(err as Error).message}`, 'error');
    }
    return true;
  }

  /** STARTTLS was ACKed: from here on every byte goes through TLS, in both directions. */
  private startTls(): void {
    const tls = this.config.tls;
    const raw = this.socket;
    // The machine closes on bytes behind STARTTLS; bytes still buffered here would bypass TLS.
    if (tls === undefined || this.acc.length !== 0 || raw.readableLength !== 0) throw new Error('STARTTLS with plaintext bytes pending');
    raw.off('data', this.listeners.data).off('error', this.listeners.error).off('close', this.listeners.close);
    this.phase = 'tls';
    try {
      this.socket = upgradeToTls(raw, tls, {
        onSecure: (summary) => {
          if (this.phase !== 'tls') return;
          this.config.log('info', `${this.tag()}: TLS established (${summary})`);
          this.phase = 'handshake';
          this.resumeAfterWait(); // the client's next option may have come with its last TLS flight
        },
        onRefused: (reason) => {
          this.config.log('warn', `${this.tag()}: closing: ${reason}`);
          this.phase = 'closing';
        },
      });
    } finally {
      this.attach(this.socket); // the TLS socket, or the raw one again if wrapping threw (fatal() closes it)
    }
  }

  private tag(): string {
    return `nbd connection ${this.config.id}`;
  }

  private onData(chunk: Uint8Array): void {
    try {
      if (this.phase === 'closed' || this.phase === 'closing' || this.phase === 'disconnecting') return;
      this.acc.push(chunk);
      this.pump();
      if (this.acc.length > PAUSE_ABOVE_BYTES && this.phase === 'acquiring') this.socket.pause();
    } catch (err) {
      this.fatal(`internal error: ${(err as Error).message}`, 'error');
    }
  }

  private pump(): void {
    if (this.pumping) return; // re-entered from a synchronous slot release; the outer loop continues
    this.pumping = true;
    try {
      let steps = 0;
      while (steps < PUMP_STEPS_MAX && this.step()) steps += 1;
      if (steps === PUMP_STEPS_MAX) setImmediate(() => this.pump());
    } finally {
      this.pumping = false;
    }
  }

  /** One unit of progress; false when waiting for bytes, a slot, or the backend. */
  private step(): boolean {
    switch (this.phase) {
      case 'handshake': return this.stepHandshake();
      case 'header': return this.stepHeader();
      case 'payload': return this.stepPayload();
      case 'discard': return this.stepDiscard();
      default: return false;
    }
  }

  private stepHandshake(): boolean {
    const step = this.handshake.advance(this.acc);
    for (const bytes of this.handshake.output.splice(0)) this.socket.write(bytes);
    switch (step.kind) {
      case 'need-more':
        return false;
      case 'starttls':
        this.startTls();
        return false;
      case 'close':
        this.config.log(step.level, `${this.tag()}: handshake ended: ${step.reason}`);
        this.phase = 'closing';
        this.socket.destroySoon(); // flush the last replies (e.g. ABORT's ack), then close
        return false;
      case 'transmission': {
        clearTimeout(this.handshakeTimer);
        this.exp = step.setup.export;
        this.structuredReplies = step.setup.structuredReplies;
        this.replies = new ReplySender(this.socket, this.config.inFlightMax, this.structuredReplies, () => this.onSlotFree());
        this.backend = new BackendDispatcher(this.exp, this.replies,
          (message) => this.config.log('error', `${this.tag()}: backend error, replying EIO (further ones not logged): ${message}`));
        this.phase = 'header';
        this.config.log('info', `${this.tag()}: export ${JSON.stringify(this.exp.name)} (structured replies ${this.structuredReplies ? 'on' : 'off'})`);
        return true;
      }
    }
  }

  private stepHeader(): boolean {
    if (this.acc.length < Size.REQUEST) return false;
    const replies = this.replies as ReplySender;
    const slot = replies.acquire();
    if (slot < 0) {
      this.pausedForSlots = true;
      this.socket.pause();
      // Back-pressure, not an error: noted once per connection (a deep-queue client hits it all the time).
      if (!this.capNoted) this.config.limitLog.note('in-flight', 'info',
        `${this.tag()}: ${this.config.inFlightMax} requests in flight (nbd.inFlightMax): not reading more until one completes`);
      this.capNoted = true;
      return false;
    }
    const decoded = decodeRequest(this.acc.peek(Size.REQUEST));
    if (decoded.kind !== 'value') {
      replies.drop(slot);
      this.fatal(decoded.kind === 'error' ? decoded.error.message : 'short request header', 'warn');
      return false;
    }
    this.acc.consume(Size.REQUEST);
    const req = decoded.value;
    if (req.type === Cmd.DISC) {
      replies.drop(slot);
      this.disconnect();
      return false;
    }
    if (req.type === Cmd.WRITE) return this.startWrite(slot, req);
    const errno = checkRequest(req, this.exp as NbdExport, this.structuredReplies);
    if (errno === Errno.EOVERFLOW) this.noteOversized(req);
    if (errno !== 0) replies.sendError(slot, req.cookieHi, req.cookieLo, errno);
    else (this.backend as BackendDispatcher).dispatch(slot, req);
    return true;
  }

  private noteOversized(req: NbdRequest): void {
    const max = (this.exp as NbdExport).blockSize.maximumBytes;
    this.config.limitLog.note('request-size', 'warn', `${this.tag()}: request of ${req.lengthBytes} bytes above the maximum of ${max} (nbd.maxRequestBytes): EOVERFLOW`);
  }

  private startWrite(slot: number, req: NbdRequest): boolean {
    const exp = this.exp as NbdExport;
    const len = req.lengthBytes;
    if (len > exp.blockSize.maximumBytes && len > this.config.writeDiscardMaxBytes) {
      (this.replies as ReplySender).drop(slot);
      this.fatal(`write of ${len} bytes is above the maximum of ${exp.blockSize.maximumBytes} and too large to skip`, 'warn', 'request-size');
      return false;
    }
    const errno = checkRequest(req, exp, this.structuredReplies);
    if (errno === Errno.EOVERFLOW) this.noteOversized(req);
    const pending = newPendingWrite(slot, req, errno);
    this.pending = pending;
    if (errno !== 0) {
      this.phase = 'discard'; // the payload still has to be read to stay in sync
      return true;
    }
    this.phase = 'acquiring';
    invoke(() => exp.acquireWriteBuffer(len)).then(
      (buffer) => this.onWriteBuffer(pending, buffer),
      (err: unknown) => this.onWriteBufferFailed(pending, err),
    );
    return false;
  }

  private onWriteBuffer(pending: PendingWrite, buffer: NbdWriteBuffer): void {
    pending.acquiring = false;
    if (this.phase === 'closed') {
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
    if (this.phase === 'closed') {
      this.finishPending(pending);
      return;
    }
    pending.errno = (this.backend as BackendDispatcher).errnoOf(err);
    pending.readyMs = Date.now();
    this.phase = 'discard';
    this.resumeAfterWait();
  }

  private resumeAfterWait(): void {
    try {
      this.pump();
      if (!this.pausedForSlots && this.phase !== 'acquiring' && this.socket.isPaused()) this.socket.resume();
    } catch (err) {
      this.fatal(`internal error: ${(err as Error).message}`, 'error');
    }
  }

  private stepPayload(): boolean {
    const pending = this.pending as PendingWrite;
    const buffer = pending.buffer as NbdWriteBuffer;
    if (pending.remainingBytes > 0) {
      if (this.acc.length === 0) {
        this.payloadDeadline.arm();
        return false;
      }
      const chunk = buffer.chunks[pending.chunkIndex] as Uint8Array;
      const end = Math.min(chunk.length, pending.chunkOffset + pending.remainingBytes);
      // Bytes that came in Node's own buffers (TLS, or read ahead with a header) are copied once
      // into the backend's slots; the rest arrive in place (onDirectRead).
      const copied = this.acc.copyTo(chunk.subarray(pending.chunkOffset, end));
      pending.copiedBytes += copied;
      if (this.config.copies !== undefined) this.config.copies.payloadBytesCopied += copied;
      advancePayload(pending, copied);
      if (pending.remainingBytes > 0) return true;
    }
    this.pending = undefined;
    pending.buffer = undefined;
    this.phase = 'header';
    if (this.config.copies !== undefined && pending.copiedBytes > 0) this.config.copies.payloadCopies++;
    (this.backend as BackendDispatcher).write(pending.slot, pending.req, buffer);
    return true;
  }

  private stepDiscard(): boolean {
    const pending = this.pending as PendingWrite;
    if (pending.remainingBytes > 0) {
      const n = Math.min(this.acc.length, pending.remainingBytes);
      if (n === 0) {
        this.payloadDeadline.arm();
        return false;
      }
      this.acc.consume(n);
      pending.remainingBytes -= n;
      if (pending.remainingBytes > 0) return true;
    }
    this.pending = undefined;
    this.phase = 'header';
    (this.replies as ReplySender).sendError(pending.slot, pending.req.cookieHi, pending.req.cookieLo, pending.errno);
    return true;
  }

  private onSlotFree(): void {
    const replies = this.replies as ReplySender;
    if (this.phase === 'closed') {
      this.checkDrained();
    } else if (this.phase === 'disconnecting') {
      if (replies.inFlight === 0) this.socket.destroySoon();
    } else if (this.pausedForSlots) {
      this.pausedForSlots = false;
      this.resumeAfterWait();
    }
  }

  /** NBD_CMD_DISC: read nothing more, let in-flight requests finish, then close. */
  private disconnect(): void {
    this.phase = 'disconnecting';
    this.socket.pause();
    this.acc.clear();
    this.config.log('info', `${this.tag()}: client disconnected`);
    if ((this.replies as ReplySender).inFlight === 0) this.socket.destroySoon();
  }

  /** Hard close. With a limit key the line goes through the rate-limited log. */
  private fatal(reason: string, level: 'warn' | 'error', limit?: LimitKey): void {
    const line = `${this.tag()}: closing: ${reason}`;
    if (limit === undefined) this.config.log(level, line);
    else this.config.limitLog.note(limit, level, line);
    if (this.phase !== 'closed') this.phase = 'closing';
    this.socket.destroy();
  }

  private onHandshakeTimeout(): void {
    if (this.phase !== 'handshake' && this.phase !== 'tls') return;
    // One overall deadline from accept: a client trickling bytes gains nothing by it.
    this.fatal(`handshake timed out after ${this.config.handshakeTimeoutMs} ms (nbd.handshakeTimeoutMs)`, 'warn', 'handshake-timeout');
  }

  private onClose(): void {
    this.phase = 'closed';
    clearTimeout(this.handshakeTimer);
    this.payloadDeadline.stop();
    this.acc.clear();
    const pending = this.pending;
    // A write buffer held for a payload that will never arrive goes back now; one still being
    // acquired goes back when the acquisition settles (onWriteBuffer sees 'closed').
    if (pending !== undefined && !pending.acquiring) {
      pending.buffer?.release();
      pending.buffer = undefined;
      this.finishPending(pending);
    }
    this.replies?.releaseSent();
    this.checkDrained();
  }

  private finishPending(pending: PendingWrite): void {
    if (this.pending === pending) this.pending = undefined;
    (this.replies as ReplySender).drop(pending.slot);
  }

  private checkDrained(): void {
    if (this.phase === 'closed' && (this.replies?.inFlight ?? 0) === 0) this.resolveDrained();
  }
}

/** One short line: OpenSSL's messages carry a pointer and a source path we do not need. */
function describeError(err: Error): string {
  const { reason, code } = err as Error & { reason?: unknown; code?: unknown };
  if (typeof reason !== 'string') return (err.message.split('\n')[0] ?? '').trim();
  return typeof code === 'string' ? `${reason} (${code})` : reason;
}
