// A normal iSCSI session over one TCP connection (ErrorRecoveryLevel 0). It queues commands,
// sends them inside the CmdSN window, lands Data-In in the callers' buffers, answers R2Ts and
// NOP-In pings, pings an idle target, and when the connection dies logs in again (session
// reinstatement: same ISID, TSIH 0) with back-off and reissues what was in flight. Every command
// has its own deadline; past it, the command rejects with ETIMEDOUT.

import { randomBytes } from 'node:crypto';
import type { ReceivedPdu } from './codec/frame.js';
import { isTargetPdu, Opcode, RESERVED_TAG, type NopOut, type Pdu, type TargetPdu } from './codec/pdu.js';
import { testUnitReadyCdb } from './codec/scsi.js';
import { classifyStatus } from './codec/sense.js';
import type { OperationalParams } from './codec/text.js';
import { IscsiConnection, login } from './connection.js';
import { IscsiProtocolError, RemoteError } from './errors.js';
import type { ChapCredentials } from './login.js';
import { LOGIN_ITT, LOGOUT_ITT, PING_ITT, TaskTable, type ScsiRequest, type ScsiResult, type Task } from './tasks.js';
import { answerR2T, dataInView, responseResult, sendCommand, type SendContext } from './transfer.js';
import { SessionEvents } from './session-events.js';

export interface SessionConfig {
  readonly host: string;
  readonly port: number;
  readonly targetName: string;
  readonly initiatorName: string;
  readonly lun: number;
  readonly chap: ChapCredentials | undefined;
  readonly ours: OperationalParams;
  readonly timeoutMs: number;
  readonly log: (line: string) => void;
  /** Commands outstanding at once (queued or sent); more reject with ENOMEM. */
  readonly tasksMax: number;
}

const BACKOFF_FIRST_MS = 50;
const BACKOFF_MAX_MS = 2000;
const KEEPALIVE_IDLE_MS = 5000;
const KEEPALIVE_TICK_MS = 1000;
/** Socket backlog above which new commands wait (Data-Out for R2Ts is always sent). */
const WRITE_BACKLOG_BYTES_MAX = 16 * 1024 * 1024;
const PROBE_ATTEMPTS_MAX = 4;
/** Tolerance above our declared MaxRecvDataSegmentLength before a segment is a protocol error. */
const RECV_SEGMENT_SLACK_BYTES = 4096;

const serialLe = (a: number, b: number): boolean => ((b - a) | 0) >= 0;
const serialGt = (a: number, b: number): boolean => ((a - b) | 0) > 0;

export class IscsiSession {
  private readonly tasks: TaskTable;
  private readonly isid = isidRandom();
  private readonly events: SessionEvents;
  private conn: IscsiConnection | null = null;
  private attempt: IscsiConnection | null = null;
  private params: OperationalParams | null = null;
  private cmdSN = 1;
  private maxCmdSN = 1;
  private expStatSN = 0;
  private probing = false;
  private reconnecting = false;
  private closed = false;
  private lastError: RemoteError | null = null;
  private ping: { sentAt: number } | null = null;
  private keepalive: NodeJS.Timeout | null = null;
  private logoutDone: (() => void) | null = null;
  private discardScratch = new Uint8Array(0);

  constructor(private readonly cfg: SessionConfig) {
    this.tasks = new TaskTable(cfg.tasksMax);
    this.events = new SessionEvents(cfg.log, this.where);
  }

  get where(): string {
    return `iSCSI ${this.cfg.host}:${this.cfg.port} ${this.cfg.targetName} lun ${this.cfg.lun}`;
  }

  get connected(): boolean {
    return this.conn !== null && !this.probing && !this.closed;
  }

  get negotiated(): OperationalParams | null {
    return this.params;
  }

  /** First login: errors (EAUTH, ENOENT, ECONNREFUSED...) reject at once, no retry. */
  async start(): Promise<void> {
    await this.establish(false);
  }

  /** Queues one SCSI command; resolves with its status (CHECK CONDITION included), rejects on transport failure. */
  execute(request: ScsiRequest, probe = false): Promise<ScsiResult> {
    if (this.closed) return Promise.reject(new RemoteError('ESHUTDOWN', `${this.where}: ${request.describe}: session closed`));
    const task = this.tasks.allocate();
    if (task === null) return Promise.reject(new RemoteError('ENOMEM', `${this.where}: ${request.describe}: more than ${this.tasks.capacity} commands outstanding`));
    return new Promise<ScsiResult>((resolve, reject) => {
      task.request = request;
      task.probe = probe;
      task.state = 'queued';
      task.deadlineAt = Date.now() + this.cfg.timeoutMs;
      task.resolve = resolve;
      task.reject = reject;
      task.timer = setTimeout(() => this.expire(task), this.cfg.timeoutMs);
      if (probe) this.tasks.queue.unshift(task);
      else this.tasks.queue.push(task);
      this.pump();
    });
  }

  /** Logs out (bounded wait) and rejects everything still pending with ESHUTDOWN. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.stopKeepalive();
    for (const t of this.tasks.allActive()) this.finish(t, new RemoteError('ESHUTDOWN', `${this.where}: ${t.request.describe}: session closed`));
    this.attempt?.destroy(new RemoteError('ESHUTDOWN', `${this.where}: session closed`));
    const conn = this.conn;
    if (conn === null || conn.closed) { this.conn = null; return; }
    // this.conn stays set until the Logout Response (or the deadline), so onPdu still reads it.
    const waitMs = Math.min(this.cfg.timeoutMs, 2000);
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, waitMs);
      this.logoutDone = () => { clearTimeout(timer); resolve(); };
      conn.onClose(() => this.logoutDone?.());
      conn.send({ opcode: Opcode.LogoutRequest, immediate: true, reason: 0, itt: LOGOUT_ITT, cid: 0, cmdSN: this.cmdSN, expStatSN: this.expStatSN, dataSegmentLength: 0 });
    });
    this.logoutDone = null;
    this.conn = null;
    conn.end(200);
    this.events.closed();
  }

  // ---- connection lifecycle ----

  private async establish(reconnect: boolean): Promise<void> {
    const deadlineAt = Date.now() + this.cfg.timeoutMs;
    const conn = await IscsiConnection.connect(this.cfg.host, this.cfg.port, this.cfg.timeoutMs, this.where);
    this.attempt = conn;
    try {
      if (this.closed) throw new RemoteError('ESHUTDOWN', `${this.where}: session closed`);
      const outcome = await login(conn, {
        initiatorName: this.cfg.initiatorName, targetName: this.cfg.targetName, chap: this.cfg.chap, ours: this.cfg.ours,
        isid: this.isid, tsih: 0, cid: 0, itt: LOGIN_ITT, cmdSN: this.cmdSN, portal: `${this.cfg.host}:${this.cfg.port}`,
      }, deadlineAt);
      if (this.closed) throw new RemoteError('ESHUTDOWN', `${this.where}: session closed`);
      this.params = outcome.params;
      this.cmdSN = outcome.expCmdSN;
      this.maxCmdSN = outcome.maxCmdSN;
      this.expStatSN = (outcome.statSN + 1) >>> 0;
      const recvMax = outcome.params.maxRecvDataSegmentLength + RECV_SEGMENT_SLACK_BYTES;
      conn.setRecvSegmentBytesMax(recvMax);
      if (this.discardScratch.length < recvMax) this.discardScratch = new Uint8Array(recvMax);
      this.events.loggedIn(outcome.params, reconnect);
      conn.attach({ onPdu: (p) => this.onPdu(conn, p), sink: (bhs) => this.sink(bhs) });
      conn.onClose((err) => this.onConnectionLost(conn, err));
      this.conn = conn;
      this.probing = reconnect;
      this.startKeepalive();
      if (reconnect) await this.probe();
    } catch (err) {
      conn.destroy(err instanceof RemoteError ? err : new RemoteError('EPROTO', String(err)));
      throw err;
    } finally {
      this.attempt = null;
    }
    this.probing = false;
    this.pump();
  }

  /** After a reconnect: TEST UNIT READY (absorbing UNIT ATTENTION) before reissuing anything. */
  private async probe(): Promise<void> {
    for (let i = 1; ; i++) {
      const r = await this.execute({ cdb: testUnitReadyCdb(), describe: 'TEST UNIT READY after reconnect' }, true);
      const failure = classifyStatus(r.status, r.sense, false);
      if (failure === null) return;
      if (failure.retry === 'no' || i >= PROBE_ATTEMPTS_MAX) throw new RemoteError(failure.code, `${this.where}: LUN not usable after reconnect: ${failure.text}`);
    }
  }

  private onConnectionLost(conn: IscsiConnection, err: RemoteError): void {
    if (conn !== this.conn) return;
    this.conn = null;
    this.lastError = err;
    this.ping = null;
    this.stopKeepalive();
    if (this.closed) return;
    // A probe belongs to the connection that died; the next login sends its own.
    for (const t of this.tasks.queue.filter((q) => q.probe)) this.finish(t, err);
    const sent = this.tasks.sent(this.cmdSN);
    for (const t of sent) {
      if (t.probe) { this.finish(t, err); continue; }
      t.state = 'queued';
    }
    // Reissue in the original CmdSN order, ahead of commands that never went out.
    this.tasks.queue.unshift(...sent.filter((t) => !t.probe));
    this.events.lost(err, sent.length);
    void this.reconnectLoop();
  }

  private async reconnectLoop(): Promise<void> {
    if (this.reconnecting) return;
    this.reconnecting = true;
    let delayMs = BACKOFF_FIRST_MS;
    let attempts = 0;
    while (!this.closed && this.conn === null) {
      await sleep(delayMs);
      if (this.closed) break;
      attempts++;
      try {
        await this.establish(true);
        this.events.reconnected(attempts);
      } catch (err) {
        this.lastError = err instanceof RemoteError ? err : new RemoteError('EIO', String(err));
        this.events.reconnectFailed(this.lastError, attempts);
        delayMs = Math.min(delayMs * 2, BACKOFF_MAX_MS);
      }
    }
    this.reconnecting = false;
  }

  // ---- sending ----

  private sendContext(conn: IscsiConnection): SendContext {
    return { conn, params: this.params!, lun: this.cfg.lun, expStatSN: this.expStatSN };
  }

  private pump(): void {
    const conn = this.conn;
    if (conn === null || this.closed) return;
    const queue = this.tasks.queue;
    while (queue.length > 0 && serialLe(this.cmdSN, this.maxCmdSN) && conn.pendingWriteBytes < WRITE_BACKLOG_BYTES_MAX) {
      const task = queue[0]!;
      if (this.probing && !task.probe) break;
      queue.shift();
      this.tasks.assignTag(task);
      task.cmdSN = this.cmdSN;
      this.cmdSN = (this.cmdSN + 1) >>> 0;
      task.state = 'sent';
      sendCommand(this.sendContext(conn), task);
    }
    if (queue.length > 0 && conn.pendingWriteBytes >= WRITE_BACKLOG_BYTES_MAX) conn.onDrain(() => this.pump());
  }

  // ---- receiving ----

  private sink(bhs: Pdu): Uint8Array | null {
    if (bhs.opcode !== Opcode.DataIn) return null;
    const task = this.tasks.bySentTag(bhs.itt);
    // A late Data-In for a command that already ended lands in scratch, never in a reused buffer.
    if (task === null) return this.discardScratch.subarray(0, bhs.dataSegmentLength);
    return dataInView(task, bhs.bufferOffset, bhs.dataSegmentLength);
  }

  private onPdu(conn: IscsiConnection, pdu: ReceivedPdu): void {
    if (conn !== this.conn) return;
    const bhs = pdu.bhs;
    if (!isTargetPdu(bhs)) throw new IscsiProtocolError('unknown-opcode', `initiator opcode 0x${bhs.opcode.toString(16)} from the target`);
    this.updateWindow(bhs);
    switch (bhs.opcode) {
      case Opcode.ScsiResponse: {
        const task = this.tasks.bySentTag(bhs.itt);
        if (task === null) break;
        const r = responseResult(bhs, pdu.data);
        if ('failure' in r) this.finish(task, new RemoteError('EIO', `${this.where}: ${task.request.describe}: ${r.failure}`));
        else this.finish(task, r);
        break;
      }
      case Opcode.DataIn: {
        const task = this.tasks.bySentTag(bhs.itt);
        if (task !== null && bhs.hasStatus) this.finish(task, { status: bhs.status, sense: null, residualBytes: bhs.underflow ? bhs.residualCount : 0 });
        break;
      }
      case Opcode.R2T: {
        const task = this.tasks.bySentTag(bhs.itt);
        if (task !== null) answerR2T(this.sendContext(conn), task, bhs);
        break;
      }
      case Opcode.NopIn:
        if (bhs.itt === PING_ITT) this.ping = null;
        if (bhs.ttt !== RESERVED_TAG) this.answerNopIn(conn, bhs.ttt, bhs.lun);
        break;
      case Opcode.Reject:
        this.onReject(pdu.data, bhs.reason);
        break;
      case Opcode.AsyncMessage:
        this.onAsync(conn, bhs.asyncEvent, pdu.data);
        break;
      case Opcode.LogoutResponse:
        if (this.logoutDone !== null) this.logoutDone();
        else conn.end(200);
        break;
      default:
        throw new IscsiProtocolError('bad-field', `unexpected opcode 0x${bhs.opcode.toString(16)} in full feature phase`);
    }
    this.pump();
  }

  private updateWindow(bhs: TargetPdu): void {
    // RFC 7143 4.2.2.1: a MaxCmdSN below ExpCmdSN-1 is invalid; ignore both then.
    if (serialGt((bhs.expCmdSN - 1) >>> 0, bhs.maxCmdSN)) return;
    if (serialGt(bhs.maxCmdSN, this.maxCmdSN)) this.maxCmdSN = bhs.maxCmdSN;
    const carriesStatus = bhs.opcode === Opcode.ScsiResponse || (bhs.opcode === Opcode.DataIn && bhs.hasStatus) ||
      bhs.opcode === Opcode.LogoutResponse || bhs.opcode === Opcode.Reject || bhs.opcode === Opcode.AsyncMessage ||
      (bhs.opcode === Opcode.NopIn && bhs.itt !== RESERVED_TAG);
    if (carriesStatus && serialGt((bhs.statSN + 1) >>> 0, this.expStatSN)) this.expStatSN = (bhs.statSN + 1) >>> 0;
  }

  private answerNopIn(conn: IscsiConnection, ttt: number, lun: number): void {
    const pdu: NopOut = { opcode: Opcode.NopOut, immediate: true, lun, itt: RESERVED_TAG, ttt, cmdSN: this.cmdSN, expStatSN: this.expStatSN, dataSegmentLength: 0 };
    conn.send(pdu);
  }

  private onReject(data: Uint8Array, reason: number): void {
    const itt = data.length >= 20 ? ((data[16]! << 24) | (data[17]! << 16) | (data[18]! << 8) | data[19]!) >>> 0 : RESERVED_TAG;
    const task = this.tasks.bySentTag(itt);
    this.events.rejected(reason, task?.request.describe ?? null);
    if (task !== null) this.finish(task, new RemoteError('EPROTO', `${this.where}: ${task.request.describe}: rejected by the target (reason 0x${reason.toString(16)})`));
  }

  private onAsync(conn: IscsiConnection, event: number, data: Uint8Array): void {
    this.events.asyncEvent(event, data);
    if (event === 1) {
      // The target asks us to log out; reconnecting afterwards reissues whatever is in flight.
      conn.send({ opcode: Opcode.LogoutRequest, immediate: true, reason: 0, itt: LOGOUT_ITT, cid: 0, cmdSN: this.cmdSN, expStatSN: this.expStatSN, dataSegmentLength: 0 });
    }
  }

  // ---- completion, deadlines, keepalive ----

  private finish(task: Task, outcome: ScsiResult | RemoteError): void {
    const { resolve, reject } = task;
    this.tasks.release(task);
    if (outcome instanceof RemoteError) reject(outcome);
    else resolve(outcome);
  }

  private expire(task: Task): void {
    task.timer = null;
    const wasSent = task.state === 'sent';
    const why = this.conn === null
      ? `not connected (${this.lastError?.message ?? 'connecting'})`
      : wasSent ? 'no response from the target' : 'waiting for the CmdSN window';
    this.finish(task, new RemoteError('ETIMEDOUT', `${this.where}: ${task.request.describe}: timed out after ${this.cfg.timeoutMs} ms, ${why}`));
    // The target may still hold the task (and ask for its data): reinstating the session clears it.
    if (wasSent && this.conn !== null) this.conn.destroy(new RemoteError('ETIMEDOUT', `${this.where}: a command timed out in flight; reconnecting`));
  }

  private startKeepalive(): void {
    this.stopKeepalive();
    const pingTimeoutMs = Math.min(Math.max(this.cfg.timeoutMs, 1000), 15_000);
    this.keepalive = setInterval(() => {
      const conn = this.conn;
      if (conn === null) return;
      const now = Date.now();
      if (this.ping !== null && now - this.ping.sentAt > pingTimeoutMs) {
        conn.destroy(new RemoteError('ETIMEDOUT', `${this.where}: no answer to NOP-Out for ${pingTimeoutMs} ms, connection considered dead`));
      } else if (this.ping === null && now - conn.lastReceiveAt >= KEEPALIVE_IDLE_MS) {
        this.ping = { sentAt: now };
        conn.send({ opcode: Opcode.NopOut, immediate: true, lun: 0, itt: PING_ITT, ttt: RESERVED_TAG, cmdSN: this.cmdSN, expStatSN: this.expStatSN, dataSegmentLength: 0 });
      }
    }, KEEPALIVE_TICK_MS);
    this.keepalive.unref();
  }

  private stopKeepalive(): void {
    if (this.keepalive !== null) clearInterval(this.keepalive);
    this.keepalive = null;
  }
}

function isidRandom(): Uint8Array {
  // Type 10b "random" ISID (RFC 7143 11.12.5): kept for the session's life so a re-login reinstates it.
  const r = new Uint8Array(randomBytes(6));
  r[0] = 0x80;
  return r;
}

/** Back-off sleep; unref'd so a session with nothing pending never holds the process open. */
function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
