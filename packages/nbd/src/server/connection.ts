// One client connection: the socket's lifecycle, the handshake machine (upgrading the socket to
// TLS on STARTTLS), then the request loop of the transmission phase (request-loop.ts), which this
// feeds with bytes. Nothing thrown here may escape to the event loop. Limits hit here (handshake
// deadline) and in the loop are reported through the server's rate-limited LimitLog.

import type { Socket } from 'node:net';
import { ByteAccumulator } from '../codec/accumulator.js';
import { encodeGreeting } from '../codec/handshake.js';
import { SERVER_HANDSHAKE_FLAGS, ServerHandshake, type TransmissionSetup } from './handshake.js';
import type { ConnectionConfig } from './connection-config.js';
import type { LimitKey } from './limits.js';
import { RequestLoop } from './request-loop.js';
import { upgradeToTls } from './tls.js';
import { directReadSocket } from './direct-read.js';
import { type DetachedConnection, type NbdConnectionState, encodePending, takeHandle } from './handover.js';
import type { Transport } from './listener.js';

export type { LogFn } from './limits.js';
export type { ConnectionConfig, NbdCopyCounters } from './connection-config.js';

/** A connection moved from another server (handover.ts): it starts in transmission, no greeting. */
export interface ConnectionResume {
  readonly setup: TransmissionSetup;
  /** Bytes the previous server had read but not parsed. */
  readonly pending: Uint8Array;
}

// 'tls': STARTTLS was ACKed and the TLS handshake runs; nothing is parsed until it passes.
// 'transmission': the request loop runs; 'closing': fatal() destroyed the socket, 'close' is due.
type Phase = 'handshake' | 'tls' | 'transmission' | 'closing' | 'closed';

// Stop reading once this much waits unparsed (e.g. while the backend finds write-buffer space).
const PAUSE_ABOVE_BYTES = 256 * 1024;
// A takeover polls its connections this often while they quiesce.
const HANDOVER_POLL_MS = 5;
// Hard bound: PAUSE_ABOVE_BYTES plus the socket's in-flight chunks, with a wide margin.
const ACCUMULATOR_CAPACITY_BYTES = 16 * 1024 * 1024;
const PUMP_STEPS_MAX = 65536;
// What a read that is not a payload's in-place read gets: Node's own chunk size.
const STAGING_BYTES = 64 * 1024;

export class NbdConnection {
  private readonly acc: ByteAccumulator;
  private readonly handshake: ServerHandshake;
  private phase: Phase = 'handshake';
  private loop: RequestLoop | undefined;
  private pumping = false;
  private handshakeTimer: NodeJS.Timeout | undefined;
  private setup: TransmissionSetup | undefined;
  /** STARTTLS happened: session keys live in this process, so the connection cannot move. */
  private tlsUsed = false;
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

  constructor(socket: Socket, private readonly config: ConnectionConfig, resume?: ConnectionResume,
    private readonly origin: { transport: Transport; peer: string } = { transport: 'tcp', peer: '?' }) {
    if (!(config.inFlightMax > 0) || !(config.handshakeTimeoutMs > 0)) throw new RangeError('bad connection config');
    if ((config.tls === undefined) !== (config.handshake.tls === 'none')) throw new RangeError('tls material and handshake mode disagree');
    this.acc = new ByteAccumulator(ACCUMULATOR_CAPACITY_BYTES);
    this.handshake = new ServerHandshake(config.handshake);
    socket.setNoDelay(true);
    const moved = config.directRead === true && config.tls === undefined
      ? directReadSocket(socket, { nextBuffer: () => this.nextReadBuffer(), onRead: (n, buf) => this.onDirectRead(n, buf) })
      : null;
    this.socket = moved ?? socket;
    this.attach(this.socket, moved === null);
    if (resume !== undefined) {
      this.acc.push(resume.pending);
      this.enterTransmission(resume.setup, 'resumed after a takeover');
      if (this.socket.isPaused()) this.socket.resume(); // before pumping: a pump that pauses (slots) must win
      this.pumpSafely();
      return;
    }
    if (this.socket.isPaused()) this.socket.resume(); // accepted paused (pauseOnConnect)
    // Runs on across a TLS upgrade: a client stalling in the TLS handshake is dropped as well.
    this.handshakeTimer = setTimeout(() => this.onHandshakeTimeout(), config.handshakeTimeoutMs);
    this.socket.write(encodeGreeting(SERVER_HANDSHAKE_FLAGS));
  }

  /**
   * Takeover: finish the request being read and every reply, read nothing more, then give up the
   * socket. Resolves with the handle and state to resume elsewhere, or null when the connection
   * closed instead: during its handshake or a disconnect, over TLS (after its replies), or not
   * quiet by `deadlineMs` (Date.now() based).
   */
  async handOver(deadlineMs: number): Promise<DetachedConnection | null> {
    for (;;) {
      if (this.phase === 'closed') return null;
      if (this.phase === 'transmission' && this.loop !== undefined && !this.loop.disconnecting) {
        this.loop.quiesce();
        this.pumpSafely();
        if (this.loop.quiescent && this.socket.writableLength === 0) {
          if (!this.tlsUsed) return this.detach(this.loop);
          this.config.log('info', `${this.tag()}: closing: TLS connections cannot move to the next process (the client reconnects)`);
          this.phase = 'closing';
          this.socket.destroySoon();
        }
      }
      if (Date.now() >= deadlineMs) {
        if (this.phase !== 'closing') this.fatal('the server is restarting and this connection did not become idle in time', 'warn');
        return null;
      }
      await new Promise((resolve) => setTimeout(resolve, HANDOVER_POLL_MS));
    }
  }

  private detach(loop: RequestLoop): DetachedConnection | null {
    const setup = this.setup as TransmissionSetup;
    const socket = this.socket;
    socket.off('data', this.listeners.data).off('error', this.listeners.error).off('close', this.listeners.close);
    const handle = takeHandle(socket);
    // A socket without the zero-copy reader may hold bytes Node read ahead (paused stream): they
    // come after what the accumulator holds.
    for (let chunk = socket.read() as Buffer | null; chunk !== null; chunk = socket.read() as Buffer | null) this.acc.push(chunk);
    const pending = new Uint8Array(this.acc.length);
    this.acc.copyTo(pending);
    socket.destroy(); // closes nothing: the handle is no longer the socket's
    this.phase = 'closed';
    loop.onClose();
    this.resolveDrained();
    if (handle === null) return null;
    const exp = setup.export;
    const state: NbdConnectionState = {
      exportName: exp.name, structuredReplies: setup.structuredReplies, extendedHeaders: setup.extendedHeaders,
      metaContexts: setup.metaContexts.map((c) => ({ id: c.id, name: c.name })), transmissionFlags: setup.transmissionFlags,
      sizeBytes: exp.sizeBytes, pendingBase64: encodePending(pending), transport: this.origin.transport, peer: this.origin.peer,
    };
    this.config.log('info', `${this.tag()}: handed over (${pending.length} bytes read ahead)`);
    return { handle, state };
  }

  /** Server shutdown: hard disconnect; in-flight backend work still settles and is released. */
  destroy(): void {
    this.socket.destroy();
  }

  private tag(): string {
    return `nbd connection ${this.config.id}`;
  }

  private attach(socket: Socket, dataEvents = true): void {
    if (dataEvents) socket.on('data', this.listeners.data);
    socket.on('error', this.listeners.error).on('close', this.listeners.close);
  }

  /** Where the kernel reads next: in place into a WRITE payload when possible, else a fresh staging buffer. */
  private nextReadBuffer(): Uint8Array {
    const target = this.phase === 'transmission' ? this.loop?.directReadTarget() : null;
    return target ?? Buffer.allocUnsafe(STAGING_BYTES); // fresh: the accumulator keeps its chunks
  }

  private onDirectRead(n: number, buf: Uint8Array): boolean {
    try {
      if (this.phase === 'transmission' && this.loop?.takeDirectRead(n, buf) === true) return true;
    } catch (err) {
      this.fatal(`internal error: ${(err as Error).message}`, 'error');
      return true;
    }
    this.onData(buf.subarray(0, n));
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
    this.tlsUsed = true;
    try {
      this.socket = upgradeToTls(raw, tls, {
        onSecure: (summary) => {
          if (this.phase !== 'tls') return;
          this.config.log('info', `${this.tag()}: TLS established (${summary})`);
          this.phase = 'handshake';
          this.pumpSafely(); // the client's next option may have come with its last TLS flight
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

  private onData(chunk: Uint8Array): void {
    try {
      if (this.phase === 'closed' || this.phase === 'closing' || this.loop?.disconnecting === true) return;
      this.acc.push(chunk);
      this.pump();
      if (this.acc.length > PAUSE_ABOVE_BYTES && this.loop?.acquiring === true) this.socket.pause();
    } catch (err) {
      this.fatal(`internal error: ${(err as Error).message}`, 'error');
    }
  }

  private pumpSafely(): void {
    try {
      this.pump();
    } catch (err) {
      this.fatal(`internal error: ${(err as Error).message}`, 'error');
    }
  }

  /** Runs steps until none makes progress; re-entered from a synchronous slot release, the outer loop continues. */
  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    try {
      let steps = 0;
      while (steps < PUMP_STEPS_MAX && this.step()) steps += 1;
      if (steps === PUMP_STEPS_MAX) setImmediate(() => this.pumpSafely());
    } finally {
      this.pumping = false;
    }
  }

  /** One unit of progress; false when waiting for bytes, a slot, or the backend. */
  private step(): boolean {
    switch (this.phase) {
      case 'handshake': return this.stepHandshake();
      case 'transmission': return (this.loop as RequestLoop).step();
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
      case 'transmission':
        this.enterTransmission(step.setup, '');
        return true;
    }
  }

  private enterTransmission(setup: TransmissionSetup, note: string): void {
    clearTimeout(this.handshakeTimer);
    this.setup = setup;
    this.loop = new RequestLoop({
      socket: this.socket, // final: STARTTLS is only possible before transmission
      acc: this.acc,
      config: this.config,
      tag: () => this.tag(),
      pump: () => this.pump(),
      fatal: (reason, level, limit) => this.fatal(reason, level, limit),
      checkDrained: () => this.checkDrained(),
    }, setup);
    this.phase = 'transmission';
    this.config.log('info', `${this.tag()}: ${describeSetup(setup)}${note === '' ? '' : ` (${note})`}`);
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
    this.acc.clear();
    this.loop?.onClose();
    this.checkDrained();
  }

  private checkDrained(): void {
    if (this.phase === 'closed' && (this.loop?.inFlight ?? 0) === 0) this.resolveDrained();
  }
}

/** The transmission log line: which export, and what was negotiated for it. */
function describeSetup(setup: TransmissionSetup): string {
  const headers = setup.extendedHeaders ? 'extended headers' : setup.structuredReplies ? 'structured replies' : 'simple replies';
  const contexts = setup.metaContexts.length === 0 ? 'none' : setup.metaContexts.map((c) => c.name).join(', ');
  return `export ${JSON.stringify(setup.export.name)} (${headers}, meta contexts: ${contexts})`;
}

/** One short line: OpenSSL's messages carry a pointer and a source path we do not need. */
function describeError(err: Error): string {
  const { reason, code } = err as Error & { reason?: unknown; code?: unknown };
  if (typeof reason !== 'string') return (err.message.split('\n')[0] ?? '').trim();
  return typeof code === 'string' ? `${reason} (${code})` : reason;
}
