// NbdClient: block I/O over one or more NBD connections. A call becomes an operation with one
// deadline; operations are cut into requests lazily (at most maxRequestBytes each) only when a
// connection has a free slot, so memory stays bounded however large the call. A dropped
// connection hands its in-flight requests back; they are reissued (block I/O is idempotent)
// after a reconnect with back-off, each still bounded by its operation's deadline. Block status
// questions travel the same way, one request each, answered for the meta contexts selected.

import type { EventEmitter } from 'node:events';
import type { NbdExtent } from '../backend.js';
import { Cmd, CmdFlag, MetaContext } from '../constants.js';
import { asRemoteError, checkOptions, openConnection, type OpenedConnection } from './connect.js';
import { ClientConnection } from './connection.js';
import { RemoteError, remoteError } from './errors.js';
import type { Negotiated } from './handshake.js';
import { OpPart, OpQueue, Operation, type OperationSpec } from './operation.js';
import type { BlockDeviceInfo, NbdClientOptions } from './types.js';
import { describeTarget } from './wire.js';
import { deviceInfoFrom } from './device-info.js';
import { ExportSize } from './export-size.js';

export { deviceInfoFrom };

/** Requests in flight per connection; more wait in the client's queue. */
const IN_FLIGHT_PER_CONNECTION = 128;
/** TRIM and WRITE_ZEROES carry no payload; still cut them so one request stays far from 2^32. */
const NO_PAYLOAD_PART_MAX_BYTES = 1024 * 1024 * 1024;
/** The zero buffer written when the server lacks WRITE_ZEROES (allocated on first use). */
const ZERO_BUFFER_MAX_BYTES = 1024 * 1024;
const BACKOFF_FIRST_MS = 50;
const BACKOFF_MAX_MS = 2000;
const CLOSE_GRACE_MAX_MS = 1000;
/** Largest block status question: a sparse terabyte at once (compact headers narrow it to 2 GiB). */
const STATUS_REQUEST_MAX_BYTES = 2 ** 40;


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

export class NbdClient {
  private readonly links: Link[] = [];
  private readonly queue = new OpQueue();
  /** Every unsettled operation, queued or in flight, so close() can end them all. */
  private readonly live = new Set<Operation>();
  private readonly abort = new AbortController();
  private readonly log: (line: string) => void;
  private lastConnectError: RemoteError | undefined;
  private zeroBuffer: Uint8Array | undefined;
  private closing: Promise<void> | undefined;
  private roundRobin = 0;
  /** The meta contexts the server selected on the first connection (block status answers only these). */
  readonly metaContexts: readonly string[];
  /** Whether the first connection agreed extended headers (64-bit lengths). */
  readonly extendedHeaders: boolean;
  private readonly metaContextsRefused: string | undefined;
  private readonly size: ExportSize;

  private constructor(private readonly opts: NbdClientOptions, private readonly where: string, info: BlockDeviceInfo, connections: number, first: Negotiated) {
    this.log = opts.log ?? (() => {});
    this.size = new ExportSize(info, opts, where, this.abort.signal, this.log);
    this.metaContexts = Object.freeze([...first.metaContexts.keys()]);
    this.extendedHeaders = first.extendedHeaders;
    this.metaContextsRefused = first.metaContextsRefused;
    for (let id = 0; id < connections; id++) this.links.push({ id, conn: undefined, state: 'down', attempts: 0, lastAttemptMs: 0, negotiatedBytes: 0, timer: undefined });
  }

  /** Connects (and haggles) within opts.timeoutMs; rejects with a RemoteError. */
  static async connect(opts: NbdClientOptions): Promise<NbdClient> {
    const where = describeTarget(opts);
    checkOptions(opts, where);
    const first = await openConnection(opts, where);
    let info: BlockDeviceInfo;
    try {
      info = deviceInfoFrom(first.negotiated);
    } catch (err) {
      first.socket.destroy();
      throw asRemoteError(err, where);
    }
    const wanted = opts.connections ?? 1;
    if (wanted > 1 && !info.canMultiConn) opts.log?.(`the server does not advertise CAN_MULTI_CONN: using 1 connection, not ${wanted}`);
    const client = new NbdClient(opts, where, info, info.canMultiConn ? wanted : 1, first.negotiated);
    client.attach(client.links[0] as Link, first);
    client.size.watch(() => client.refreshAndCycle());
    // Extra connections are a bonus: one that fails now is retried when there is work for it.
    await Promise.all(client.links.slice(1).map((link) => client.reconnect(link, true)));
    return client;
  }

  /** The device as last learnt (sizeBytes follows resize() and refreshSize()). */
  get info(): BlockDeviceInfo {
    return this.size.info;
  }

  get sizeBytes(): number {
    return this.size.info.sizeBytes;
  }

  /**
   * 'size' (sizeBytes, previousBytes): the export's size changed — learnt from resize(),
   * refreshSize() (or watchSizeMs), or a reconnect that found it larger.
   */
  get events(): EventEmitter {
    return this.size.events;
  }

  /**
   * NBD_CMD_RESIZE (experimental RESIZE extension, docs/nbd.md): asks the server to make the
   * export `sizeBytes` large; on success sizeBytes says so and I/O up to the new end is allowed.
   * ENOTSUP when the server did not advertise NBD_FLAG_SEND_RESIZE.
   */
  async resize(sizeBytes: number): Promise<void> {
    if (this.closing !== undefined) throw remoteError('ESHUTDOWN', 'resize: the NBD client is closed', this.where);
    if (this.info.canResize !== true) throw remoteError('ENOTSUP', 'resize: the server does not offer the RESIZE extension (NBD_FLAG_SEND_RESIZE)', this.where);
    if (!(Number.isSafeInteger(sizeBytes) && sizeBytes >= 0)) throw remoteError('EINVAL', `resize: bad size ${sizeBytes}`, this.where);
    // Not range-checked like I/O: the new size is in the offset field, past the current end.
    await this.enqueue({ what: `resize to ${sizeBytes} bytes`, type: Cmd.RESIZE, flags: 0, offsetBytes: sizeBytes, lengthBytes: 0, partMaxBytes: 1, always: true });
    this.size.adopt(sizeBytes);
  }

  /**
   * Asks the server for the export's size now on a short side connection (NBD_OPT_INFO, then
   * NBD_OPT_ABORT), keeping the connections in use; adopts and returns it. Concurrent calls share one probe.
   */
  refreshSize(): Promise<number> {
    if (this.closing !== undefined) return Promise.reject(remoteError('ESHUTDOWN', 'refreshSize: the NBD client is closed', this.where));
    return this.refreshAndCycle();
  }

  /**
   * refresh, and when the export grew on a server that does not offer RESIZE (so it may size
   * each connection at its handshake, as nbdkit and qemu-nbd do), re-establish the connections
   * negotiated at a smaller size: NBD_CMD_DISC once their requests are answered, then a new
   * handshake when there is work. A server offering RESIZE (ours) serves the new size on the
   * connections it has, so they stay.
   */
  private async refreshAndCycle(pastEnd = false): Promise<number> {
    const now = await this.size.refresh(pastEnd);
    if (this.info.canResize === true || this.closing !== undefined) return now;
    const graceMs = Math.min(this.opts.timeoutMs, CLOSE_GRACE_MAX_MS);
    for (const link of this.links) {
      if (link.conn === undefined || link.state !== 'up' || link.negotiatedBytes >= now) continue;
      link.negotiatedBytes = now; // once per link and size
      this.log(`connection ${link.id}: reconnecting to see the export's new size`);
      void link.conn.disconnect(graceMs);
    }
    return now;
  }

  get connected(): boolean {
    return this.closing === undefined && this.links.some((l) => l.state === 'up');
  }

  read(offsetBytes: number, into: Uint8Array): Promise<void> {
    return this.submit({ what: 'read', type: Cmd.READ, flags: 0, offsetBytes, lengthBytes: into.length, buffer: into, partMaxBytes: this.info.maxRequestBytes });
  }

  async write(offsetBytes: number, data: Uint8Array, flags: { fua?: boolean } = {}): Promise<void> {
    const { fuaFlag, flushAfter } = this.fua(flags.fua);
    await this.submit({ what: 'write', type: Cmd.WRITE, flags: fuaFlag, offsetBytes, lengthBytes: data.length, buffer: data, partMaxBytes: this.info.maxRequestBytes });
    if (flushAfter) await this.flush();
  }

  flush(): Promise<void> {
    if (this.closing === undefined && !this.info.canFlush) return Promise.resolve();
    // With CAN_MULTI_CONN a flush on any one connection covers the writes completed on all.
    return this.submit({ what: 'flush', type: Cmd.FLUSH, flags: 0, offsetBytes: 0, lengthBytes: 0, partMaxBytes: 1, always: true });
  }

  async trim(offsetBytes: number, lengthBytes: number, flags: { fua?: boolean } = {}): Promise<void> {
    const check = this.check('trim', offsetBytes, lengthBytes, true);
    if (check !== undefined) throw check;
    if (!this.info.canTrim) return;
    const { fuaFlag, flushAfter } = this.fua(flags.fua);
    await this.submit({ what: 'trim', type: Cmd.TRIM, flags: fuaFlag, offsetBytes, lengthBytes, partMaxBytes: NO_PAYLOAD_PART_MAX_BYTES });
    if (flushAfter) await this.flush();
  }

  async writeZeroes(offsetBytes: number, lengthBytes: number, flags: { fua?: boolean; noHole?: boolean } = {}): Promise<void> {
    const { fuaFlag, flushAfter } = this.fua(flags.fua);
    if (this.info.canWriteZeroes) {
      const noHole = flags.noHole === true ? CmdFlag.NO_HOLE : 0;
      await this.submit({ what: 'write zeroes', type: Cmd.WRITE_ZEROES, flags: fuaFlag | noHole, offsetBytes, lengthBytes, partMaxBytes: NO_PAYLOAD_PART_MAX_BYTES });
    } else {
      // No WRITE_ZEROES on the server: write one shared zero buffer over the range.
      const zeroes = this.zeroes();
      await this.submit({ what: 'write zeroes', type: Cmd.WRITE, flags: fuaFlag, offsetBytes, lengthBytes, zeroes, partMaxBytes: zeroes.length });
    }
    if (flushAfter) await this.flush();
  }

  /**
   * NBD_CMD_BLOCK_STATUS: the status of [offsetBytes, offsetBytes + lengthBytes) in a selected
   * meta context (see metaContexts), as extents in order from offsetBytes: at least one, each
   * > 0, adjacent equal ones merged, flags as the context defines them (base:allocation:
   * AllocationFlag HOLE | ZERO). They may cover LESS than asked — servers answer part of a range,
   * long ranges are asked in pieces of 2 GiB (1 TiB with extended headers), and at most 65,536
   * extents come back — so callers loop from the end of the last extent. Rejects with ENOTSUP when
   * the context was not selected, EINVAL for a bad range; bounded by timeoutMs and reissued after
   * a reconnect like reads.
   */
  async blockStatus(offsetBytes: number, lengthBytes: number, context: string = MetaContext.BASE_ALLOCATION): Promise<NbdExtent[]> {
    const what = `block status (${context})`;
    const bad = this.check(what, offsetBytes, lengthBytes, false);
    if (bad !== undefined) throw bad;
    if (!this.metaContexts.includes(context)) {
      const why = this.metaContextsRefused ?? `the server selected ${this.metaContexts.length === 0 ? 'none' : this.metaContexts.map((c) => JSON.stringify(c)).join(', ')}`;
      const asked = (this.opts.metaContexts ?? []).includes(context) ? '' : ' (add it to the metaContexts option)';
      throw remoteError('ENOTSUP', `${what}: meta context ${JSON.stringify(context)} is not selected${asked}: ${why}`, this.where);
    }
    if (lengthBytes === 0) throw remoteError('EINVAL', `${what}: the length must not be 0`, this.where);
    const askedBytes = Math.min(lengthBytes, STATUS_REQUEST_MAX_BYTES);
    let extents: NbdExtent[] | undefined;
    await this.submit({
      what, type: Cmd.BLOCK_STATUS, flags: 0, offsetBytes, lengthBytes: askedBytes, partMaxBytes: askedBytes,
      status: { context, deliver: (e) => { extents = e; } },
    });
    if (extents === undefined || extents.length === 0) throw new Error('block status invariant: success without extents');
    return extents;
  }

  /** NBD_CMD_DISC on every connection, then close; pending calls reject with ESHUTDOWN. */
  close(): Promise<void> {
    this.size.stop();
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

  /** FUA when the server offers it; otherwise a flush after the write keeps the caller's promise. */
  private fua(wanted: boolean | undefined): { fuaFlag: number; flushAfter: boolean } {
    if (wanted !== true) return { fuaFlag: 0, flushAfter: false };
    return this.info.canFua ? { fuaFlag: CmdFlag.FUA, flushAfter: false } : { fuaFlag: 0, flushAfter: this.info.canFlush };
  }

  private zeroes(): Uint8Array {
    const bytes = Math.min(this.info.maxRequestBytes, ZERO_BUFFER_MAX_BYTES);
    this.zeroBuffer ??= new Uint8Array(bytes - (bytes % this.info.blockSizeBytes));
    return this.zeroBuffer;
  }

  /** Local checks, so a bad call fails fast and clearly instead of at the server. */
  private check(what: string, offsetBytes: number, lengthBytes: number, modifies: boolean): RemoteError | undefined {
    if (this.closing !== undefined) return remoteError('ESHUTDOWN', `${what}: the NBD client is closed`, this.where);
    const { sizeBytes, blockSizeBytes, readOnly } = this.info;
    if (!(Number.isSafeInteger(offsetBytes) && offsetBytes >= 0 && Number.isSafeInteger(lengthBytes) && lengthBytes >= 0)) {
      return remoteError('EINVAL', `${what}: bad offset ${offsetBytes} or length ${lengthBytes}`, this.where);
    }
    if (modifies && readOnly) return remoteError('EPERM', `${what}: the export is read-only`, this.where);
    if (offsetBytes + lengthBytes > sizeBytes) {
      return remoteError('EINVAL', `${what} of ${lengthBytes} bytes at ${offsetBytes} goes beyond the end of the export (${sizeBytes} bytes)`, this.where);
    }
    if (offsetBytes % blockSizeBytes !== 0 || lengthBytes % blockSizeBytes !== 0) {
      return remoteError('EINVAL', `${what} of ${lengthBytes} bytes at ${offsetBytes} is not aligned to the ${blockSizeBytes}-byte block size`, this.where);
    }
    return undefined;
  }

  private submit(spec: OperationSpec): Promise<void> {
    const modifies = spec.type === Cmd.WRITE || spec.type === Cmd.TRIM || spec.type === Cmd.WRITE_ZEROES;
    const err = spec.type === Cmd.FLUSH
      ? (this.closing !== undefined ? remoteError('ESHUTDOWN', 'flush: the NBD client is closed', this.where) : undefined)
      : this.check(spec.what, spec.offsetBytes, spec.lengthBytes, modifies);
    if (err !== undefined) return this.pastEnd(spec) ? this.afterRefresh(spec, err) : Promise.reject(err);
    if (spec.lengthBytes === 0 && spec.always !== true) return Promise.resolve();
    return this.enqueue(spec);
  }

  /**
   * A request past the end as last known: the export may have grown since (a volume grow behind
   * a remote element). Ask once (at most one side handshake a second, shared by the requests
   * that wait for it), then check again; the first error stands if nothing changed.
   */
  private pastEnd(spec: OperationSpec): boolean {
    return spec.type !== Cmd.FLUSH && this.closing === undefined && this.size.mayAskFor(spec.offsetBytes, spec.lengthBytes);
  }

  private async afterRefresh(spec: OperationSpec, first: RemoteError): Promise<void> {
    const grown = await this.refreshAndCycle(true).then((n) => spec.offsetBytes + spec.lengthBytes <= n, () => false);
    if (!grown) throw first;
    return this.submit(spec);
  }

  /** Queues a checked call (bounded by its deadline) and sends what fits. */
  private enqueue(spec: OperationSpec): Promise<void> {
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
    const client = this; // eslint-disable-line @typescript-eslint/no-this-alias -- the config getter below reads the size live
    const conn: ClientConnection<OpPart> = new ClientConnection<OpPart>(opened.socket, opened.acc, {
      id: link.id, where: this.where, structuredReplies: opened.negotiated.structuredReplies,
      extendedHeaders: opened.negotiated.extendedHeaders, metaContexts: opened.negotiated.metaContexts,
      // Read live: a grow learnt later (resize, refreshSize) widens block status bounds at once.
      get exportSizeBytes(): number { return client.info.sizeBytes; },
      maxRequestBytes: this.info.maxRequestBytes, inFlightMax: IN_FLIGHT_PER_CONNECTION,
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
      if (opened.negotiated.sizeBytes < this.info.sizeBytes) {
        opened.socket.destroy();
        throw remoteError('EPROTO', `the export's size shrank from ${this.info.sizeBytes} to ${opened.negotiated.sizeBytes} bytes`, this.where);
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
