// One TCP connection carrying PDUs: connect with a deadline, frame outgoing PDUs (data views go
// to the socket uncopied), reassemble incoming ones, and run the login exchange. The session
// owns policy (what to send, when to reconnect); this file only moves PDUs.

import { createConnection, type Socket } from 'node:net';
import { framePdu, PduReassembler, type DataSink, type Digests, type ReceivedPdu } from './codec/frame.js';
import { Opcode, type Pdu } from './codec/pdu.js';
import { IscsiProtocolError, RemoteError, socketErrorCode } from './errors.js';
import { LoginNegotiator, type LoginConfig, type LoginOutcome } from './login.js';

/** Login and Text responses wait in a short queue until read; more than this is a misbehaving target. */
const WAITING_PDUS_MAX = 16;
/** Before login sets our MaxRecvDataSegmentLength, the RFC default bounds incoming segments. */
const LOGIN_SEGMENT_BYTES_MAX = 64 * 1024;

export interface ConnectionHandlers {
  readonly onPdu: (pdu: ReceivedPdu) => void;
  readonly sink: DataSink;
}

export class IscsiConnection {
  private readonly reassembler: PduReassembler;
  private digests: Digests = { header: false, data: false };
  private handlers: ConnectionHandlers | null = null;
  private waiting: ReceivedPdu[] = [];
  private waiter: { resolve: (p: ReceivedPdu) => void; reject: (e: Error) => void } | null = null;
  private closedError: RemoteError | null = null;
  private closeListeners: Array<(err: RemoteError) => void> = [];
  private drainPending = false;
  lastReceiveAt = Date.now();

  /** `label` starts every message: the portal, or the session's "iSCSI host:port iqn lun N". */
  private constructor(private readonly socket: Socket, readonly portal: string) {
    this.reassembler = new PduReassembler(
      { dataSegmentBytesMax: LOGIN_SEGMENT_BYTES_MAX, digests: this.digests, sink: (bhs) => this.handlers?.sink(bhs) ?? null },
      (pdu) => this.deliver(pdu),
    );
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => this.fail(new RemoteError(socketErrorCode(err), `${portal}: ${err.message}`)));
    socket.on('close', () => this.fail(new RemoteError('ECONNRESET', `${portal}: connection closed by the target`)));
  }

  /** TCP connect bounded by timeoutMs; rejects with a RemoteError starting with `label` (default host:port). */
  static connect(host: string, port: number, timeoutMs: number, label?: string): Promise<IscsiConnection> {
    const portal = label ?? `${host.includes(':') ? `[${host}]` : host}:${port}`;
    return new Promise((resolve, reject) => {
      const socket = createConnection({ host, port });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new RemoteError('ETIMEDOUT', `${portal}: TCP connect timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        resolve(new IscsiConnection(socket, portal));
      });
      socket.once('error', (err) => {
        clearTimeout(timer);
        socket.destroy();
        reject(new RemoteError(socketErrorCode(err), `${portal}: ${err.message}`));
      });
    });
  }

  get closed(): boolean {
    return this.closedError !== null;
  }

  onClose(listener: (err: RemoteError) => void): void {
    if (this.closedError !== null) listener(this.closedError);
    else this.closeListeners.push(listener);
  }

  /** From now on PDUs go to the handlers instead of the login queue. */
  attach(handlers: ConnectionHandlers): void {
    this.handlers = handlers;
    for (const pdu of this.waiting.splice(0)) handlers.onPdu(pdu);
  }

  send(bhs: Pdu, data: Uint8Array | null = null): void {
    if (this.closedError !== null) return;
    const parts = framePdu(bhs, data, this.digests);
    this.socket.cork();
    for (const part of parts) this.socket.write(part);
    this.socket.uncork();
  }

  /** Bytes queued in the socket but not yet handed to the kernel. */
  get pendingWriteBytes(): number {
    return this.socket.writableLength;
  }

  /** Calls `fn` once when the socket's write backlog drains (one pending registration at most). */
  onDrain(fn: () => void): void {
    if (this.drainPending) return;
    this.drainPending = true;
    this.socket.once('drain', () => { this.drainPending = false; fn(); });
  }

  /** Ends the connection now; listeners hear `err`. */
  destroy(err: RemoteError): void {
    this.fail(err);
  }

  /** Half-closes politely (after a Logout Response), then destroys after graceMs. */
  end(graceMs: number): void {
    this.socket.end();
    setTimeout(() => this.socket.destroy(), graceMs).unref();
  }

  private onData(chunk: Buffer): void {
    this.lastReceiveAt = Date.now();
    try {
      this.reassembler.push(chunk);
    } catch (err) {
      const why = err instanceof IscsiProtocolError ? err.message : `internal error: ${String(err)}`;
      this.fail(new RemoteError('EPROTO', `${this.portal}: ${why}`));
    }
  }

  private deliver(pdu: ReceivedPdu): void {
    if (this.handlers !== null) { this.handlers.onPdu(pdu); return; }
    const bhs = pdu.bhs;
    // Digests start with the PDU after the final Login Response: hold later bytes until set.
    if (bhs.opcode === Opcode.LoginResponse && bhs.transit && bhs.nsg === 3 && bhs.statusClass === 0) this.reassembler.pause();
    if (this.waiter !== null) {
      const w = this.waiter;
      this.waiter = null;
      w.resolve(pdu);
      return;
    }
    if (this.waiting.length >= WAITING_PDUS_MAX) throw new IscsiProtocolError('bad-field', `more than ${WAITING_PDUS_MAX} unexpected PDUs during login`);
    this.waiting.push(pdu);
  }

  /** The next PDU while no handlers are attached (login, discovery text). */
  nextPdu(timeoutMs: number, what: string): Promise<ReceivedPdu> {
    const queued = this.waiting.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    if (this.closedError !== null) return Promise.reject(this.closedError);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = null;
        reject(new RemoteError('ETIMEDOUT', `${this.portal}: no answer to ${what} within ${timeoutMs} ms`));
      }, Math.max(1, timeoutMs));
      this.waiter = {
        resolve: (p) => { clearTimeout(timer); resolve(p); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      };
    });
  }

  setRecvSegmentBytesMax(bytes: number): void {
    this.reassembler.setDataSegmentBytesMax(bytes);
  }

  /** Switches digests and the receive bound for full feature phase, then lets held bytes through. */
  startFullFeature(digests: Digests, recvSegmentBytesMax: number): void {
    this.digests = digests;
    this.reassembler.setDigests(digests);
    this.reassembler.setDataSegmentBytesMax(recvSegmentBytesMax);
    try {
      this.reassembler.resume();
    } catch (err) {
      this.fail(new RemoteError('EPROTO', `${this.portal}: ${err instanceof Error ? err.message : String(err)}`));
    }
  }

  private fail(err: RemoteError): void {
    if (this.closedError !== null) return;
    this.closedError = err;
    this.socket.destroy();
    const w = this.waiter;
    this.waiter = null;
    w?.reject(err);
    for (const l of this.closeListeners.splice(0)) l(err);
  }
}

/** Runs the login exchange on a fresh connection, bounded by deadlineAt (ms since epoch). */
export async function login(conn: IscsiConnection, cfg: LoginConfig, deadlineAt: number): Promise<LoginOutcome> {
  const negotiator = new LoginNegotiator(cfg);
  let step = negotiator.start();
  for (;;) {
    if (step.kind === 'done') {
      const p = step.outcome.params;
      conn.startFullFeature({ header: p.headerDigest, data: p.dataDigest }, p.maxRecvDataSegmentLength);
      return step.outcome;
    }
    if (step.kind === 'fail') {
      const err = new RemoteError(step.code, step.message);
      conn.destroy(err);
      throw err;
    }
    conn.send(step.request.bhs, step.request.data);
    const pdu = await conn.nextPdu(deadlineAt - Date.now(), 'the login request');
    if (pdu.bhs.opcode !== Opcode.LoginResponse) {
      const err = new RemoteError('EPROTO', `${conn.portal}: expected a Login Response, got opcode 0x${pdu.bhs.opcode.toString(16)}`);
      conn.destroy(err);
      throw err;
    }
    step = negotiator.onResponse(pdu.bhs, pdu.data);
  }
}
