// The connections of one NbdClient and the calls waiting for them. A call becomes an operation
// with one deadline; operations are cut into requests lazily (at most maxRequestBytes each) only
// when a connection has a free slot, so memory stays bounded however large the call. A dropped
// connection hands its in-flight requests back; they are reissued (block I/O is idempotent)
// after a reconnect with back-off, each still bounded by its operation's deadline. Kept apart
// from client.ts so the public calls there only check and describe, and all the scheduling and
// reconnecting lives in one place.

import { asRemoteError, openConnection, type OpenedConnection } from './connect.js';
import { ClientConnection } from './connection.js';
import { RemoteError, remoteError } from './errors.js';
import type { ExportSize } from './export-size.js';
import type { Negotiated } from './handshake.js';
import { OpPart, OpQueue, Operation, type OperationSpec } from './operation.js';
import type { NbdClientOptions } from './types.js';

/** Requests in flight per connection; more wait in the client's queue. */
const IN_FLIGHT_PER_CONNECTION = 128;
const BACKOFF_FIRST_MS = 50;
const BACKOFF_MAX_MS = 2000;
const CLOSE_GRACE_MAX_MS = 1000;

interface Link {
  readonly id: number;
  conn: ClientConnection<OpPart> | undefined;
  state: 'up' | 'down' | 'connecting';
  /** Failed attempts since the last success; sets the back-off. */
  attempts: number;
  /** When the last attempt started: the back-off counts from it, not from the next call. */
  lastAttemptMs: number;
  /** The export's size when this connection was negotiated (servers may size each connection). */
  negotiatedBytes: number;
  timer: NodeJS.Timeout | undefined;
}

export class ConnectionPool {
  private readonly links: Link[] = [];
  private readonly queue = new OpQueue();
  /** Every unsettled operation, queued or in flight, so close() can end them all. */
  private readonly live = new Set<Operation>();
  private lastConnectError: RemoteError | undefined;
  private closing: Promise<void> | undefined;
  private roundRobin = 0;

  constructor(
    private readonly opts: NbdClientOptions,
    private readonly where: string,
    /** The export's size as known: read live by the connections, adopted from reconnects. */
    private readonly size: ExportSize,
    /** Aborted on close: connection attempts in progress give up. */
    private readonly abort: AbortController,
    private readonly log: (line: string) => void,
    /** The meta contexts the first connection selected: a reconnect that selects others says so. */
    private readonly metaContexts: readonly string[],
    connections: number,
  ) {
    for (let id = 0; id < connections; id++) this.links.push({ id, conn: undefined, state: 'down', attempts: 0, lastAttemptMs: 0, negotiatedBytes: 0, timer: undefined });
  }

  /** Takes the connection NbdClient.connect opened (and haggled on) first. */
  attachFirst(first: OpenedConnection): void {
    this.attach(this.links[0] as Link, first);
  }

  /** Opens the other connections. */
  async connectOthers(): Promise<void> {
    // Extra connections are a bonus: one that fails now is retried when there is work for it.
    await Promise.all(this.links.slice(1).map((link) => this.reconnect(link, true)));
  }

  /** Whether close() has begun: every later call fails with ESHUTDOWN. */
  get closed(): boolean {
    return this.closing !== undefined;
  }

  get connected(): boolean {
    return this.closing === undefined && this.links.some((l) => l.state === 'up');
  }

  /**
   * The export grew to `sizeBytes` on a server that may size each connection at its handshake:
   * NBD_CMD_DISC on the connections negotiated at a smaller size once their requests are
   * answered; a new handshake follows when there is work.
   */
  reconnectSmallerThan(sizeBytes: number): void {
    const graceMs = Math.min(this.opts.timeoutMs, CLOSE_GRACE_MAX_MS);
    for (const link of this.links) {
      if (link.conn === undefined || link.state !== 'up' || link.negotiatedBytes >= sizeBytes) continue;
      link.negotiatedBytes = sizeBytes; // once per link and size
      this.log(`connection ${link.id}: reconnecting to see the export's new size`);
      void link.conn.disconnect(graceMs);
    }
  }

  /** NBD_CMD_DISC on every connection, then close; pending calls reject with ESHUTDOWN. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.abort.abort();
    const err = remoteError('ESHUTDOWN', 'the NBD client was closed', this.where);
    for (const op of [...this.live]) this.settle(op, err);
    this.queue.clear();
    const graceMs = Math.min(this.opts.timeoutMs, CLOSE_GRACE_MAX_MS);
    const closing: Promise<void>[] = [];
    for (const link of this.links) {
      clearTimeout(link.timer);
      link.timer = undefined;
      if (link.conn !== undefined) closing.push(link.conn.disconnect(graceMs));
    }
    await Promise.all(closing);
  }

  /** Queues a checked call (bounded by its deadline) and sends what fits. */
  enqueue(spec: OperationSpec): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const op = new Operation(spec, resolve, reject);
      op.timer = setTimeout(() => this.expire(op), this.opts.timeoutMs);
      this.live.add(op);
      this.queue.pushBack(op);
      // Connections lost while idle come back now that there is work (each at its back-off).
      this.wantConnections();
      this.dispatch();
    });
  }

  /** Sends queued requests while some connection has a free slot. */
  private dispatch(): void {
    // Bounded: each pass sends one request or removes one operation from the queue.
    for (;;) {
      const op = this.queue.peek();
      if (op === undefined) return;
      if (op.settled) {
        this.queue.popFront();
        continue;
      }
      const link = this.pickLink();
      if (link === undefined) {
        this.wantConnections();
        return;
      }
      const part = op.nextPart();
      if (part === undefined) {
        this.queue.popFront();
        continue;
      }
      const conn = link.conn as ClientConnection<OpPart>;
      if (part.status !== undefined && !conn.hasContext(part.status.context)) {
        // A reconnect may select fewer contexts than the first connection did.
        this.settle(op, remoteError('ENOTSUP', `${op.what}: connection ${link.id} has no meta context ${JSON.stringify(part.status.context)} since it reconnected`, this.where));
        continue;
      }
      conn.send(part);
    }
  }

  /** The least-loaded connection with a free slot; ties go round robin. */
  private pickLink(): Link | undefined {
    let best: Link | undefined;
    const n = this.links.length;
    for (let i = 0; i < n; i++) {
      const link = this.links[(this.roundRobin + i) % n] as Link;
      if (link.state !== 'up' || link.conn?.hasRoom !== true) continue;
      if (best === undefined || link.conn.load < (best.conn as ClientConnection<OpPart>).load) best = link;
    }
    if (best !== undefined) this.roundRobin = (best.id + 1) % n;
    return best;
  }

  private onReply(part: OpPart, err: RemoteError | undefined): void {
    const op = part.op;
    if (op.settled) return; // a late reply to a call that already timed out
    if (err?.code === 'ESHUTDOWN' && this.closing === undefined) {
      // The server is going away (and this connection with it): reissue after reconnecting.
      this.requeue(op, part);
      return;
    }
    if (err !== undefined) return this.settle(op, err);
    op.partDone();
    if (op.complete) this.settle(op, undefined);
  }

  private requeue(op: Operation, part: OpPart): void {
    op.retry(part);
    if (!op.queued) this.queue.pushFront(op);
  }

  private settle(op: Operation, err: RemoteError | undefined): void {
    if (op.settled) return;
    this.live.delete(op);
    op.settle(err);
  }

  /** A call's deadline: reject it, and drop any connection that has gone silent meanwhile. */
  private expire(op: Operation): void {
    if (op.settled) return;
    const ms = this.opts.timeoutMs;
    const up = this.links.some((l) => l.state === 'up');
    const last = this.lastConnectError;
    const reason = last?.message.replace(` (${this.where})`, '');
    const err = !up && last !== undefined
      ? remoteError(last.code === 'ECONNRESET' ? 'ETIMEDOUT' : last.code, `${op.what} not done within ${ms} ms: reconnecting failed: ${reason}`, this.where)
      : remoteError('ETIMEDOUT', `${op.what} not answered within ${ms} ms`, this.where);
    this.settle(op, err);
    for (const link of this.links) link.conn?.checkStalled(ms);
  }

  private attach(link: Link, opened: OpenedConnection): void {
    const size = this.size;
    const conn: ClientConnection<OpPart> = new ClientConnection<OpPart>(opened.socket, opened.acc, {
      id: link.id, where: this.where, structuredReplies: opened.negotiated.structuredReplies,
      extendedHeaders: opened.negotiated.extendedHeaders, metaContexts: opened.negotiated.metaContexts,
      // Read live: a grow learnt later (resize, refreshSize) widens block status bounds at once.
      get exportSizeBytes(): number { return size.info.sizeBytes; },
      maxRequestBytes: this.size.info.maxRequestBytes, inFlightMax: IN_FLIGHT_PER_CONNECTION,
    }, {
      onReply: (part, err) => this.onReply(part, err),
      onProgress: () => this.dispatch(),
      onDown: (err, parts) => this.onDown(link, conn, err, parts),
    });
    link.conn = conn;
    link.negotiatedBytes = opened.negotiated.sizeBytes;
    link.state = 'up';
    link.attempts = 0;
  }

  /** Says so when a connection selected other meta contexts than the first (its requests for missing ones fail). */
  private noteSelection(link: Link, n: Negotiated): void {
    const now = [...n.metaContexts.keys()];
    if (now.length === this.metaContexts.length && now.every((c) => this.metaContexts.includes(c))) return;
    this.log(`connection ${link.id}: the server now selects meta contexts [${now.join(', ')}], not [${this.metaContexts.join(', ')}]`);
  }

  private onDown(link: Link, conn: ClientConnection<OpPart>, err: RemoteError, parts: OpPart[]): void {
    if (link.conn !== conn) return;
    link.conn = undefined;
    link.state = 'down';
    if (this.closing !== undefined) return;
    const again = parts.filter((p) => !p.abandoned);
    this.log(`connection ${link.id} lost: ${err.message.replace(` (${this.where})`, '')}; ${again.length} request(s) to reissue`);
    // Reverse order keeps the first-sent request first in the queue.
    for (let i = again.length - 1; i >= 0; i--) {
      const part = again[i] as OpPart;
      this.requeue(part.op, part);
    }
    this.dispatch();
    if (this.hasDemand()) this.scheduleReconnect(link);
  }

  /** Whether calls wait for a connection (settled ones at the front are dropped first). */
  private hasDemand(): boolean {
    // Bounded by the queue's length.
    while (this.queue.peek()?.settled === true) this.queue.popFront();
    return this.queue.length > 0;
  }

  /** Work is waiting and no connection can take it: bring the dead ones back. */
  private wantConnections(): void {
    for (const link of this.links) if (link.state === 'down') this.scheduleReconnect(link);
  }

  private scheduleReconnect(link: Link): void {
    if (this.closing !== undefined || link.state !== 'down' || link.timer !== undefined) return;
    // Counted from the last attempt: a call that comes after a long idle outage tries at once,
    // rather than waiting out a back-off that may be longer than its own deadline.
    const delayMs = Math.max(0, link.lastAttemptMs + Math.min(BACKOFF_FIRST_MS * 2 ** link.attempts, BACKOFF_MAX_MS) - Date.now());
    // Unref'd: pending calls' own deadline timers keep the process alive while they wait.
    link.timer = setTimeout(() => {
      link.timer = undefined;
      void this.reconnect(link, false);
    }, delayMs);
    link.timer.unref();
  }

  /** One connection attempt. Without `eager`, only while calls are waiting (reconnects are lazy). */
  private async reconnect(link: Link, eager: boolean): Promise<void> {
    if (this.closing !== undefined || link.state !== 'down' || !(eager || this.hasDemand())) return;
    link.state = 'connecting';
    link.lastAttemptMs = Date.now();
    try {
      const opened = await openConnection(this.opts, this.where, this.abort.signal);
      if (this.closing !== undefined) {
        opened.socket.destroy();
        return;
      }
      // A larger export grew meanwhile (volume grow, RESIZE by another client): adopt it. A
      // smaller one would cut off requests already accepted: refuse.
      if (opened.negotiated.sizeBytes < this.size.info.sizeBytes) {
        opened.socket.destroy();
        throw remoteError('EPROTO', `the export's size shrank from ${this.size.info.sizeBytes} to ${opened.negotiated.sizeBytes} bytes`, this.where);
      }
      this.size.adopt(opened.negotiated.sizeBytes);
      this.attach(link, opened);
      this.noteSelection(link, opened.negotiated);
      this.lastConnectError = undefined;
      if (!eager) this.log(`connection ${link.id} reconnected`);
      this.dispatch();
    } catch (err) {
      link.state = 'down';
      link.attempts += 1;
      if (this.closing !== undefined) return;
      this.lastConnectError = asRemoteError(err, this.where);
      // Logged at attempts 1, 2, 4, 8, ...: a long outage costs a few lines, not one per retry.
      if ((link.attempts & (link.attempts - 1)) === 0) {
        this.log(`connection ${link.id}: connect attempt ${link.attempts} failed: ${this.lastConnectError.message.replace(` (${this.where})`, '')}`);
      }
      if (this.hasDemand()) this.scheduleReconnect(link);
    }
  }
}
