// NbdClient: block I/O over one or more NBD connections. This is the public face: each call is
// checked here (range, alignment, read-only, what the server offers) so a bad one fails fast and
// clearly, then handed to the connection pool (connection-pool.ts), which cuts it into requests,
// sends them, and reissues them after a reconnect, all within the call's deadline. Block status
// questions travel the same way, one request each, answered for the meta contexts selected.

import type { EventEmitter } from 'node:events';
import type { NbdExtent } from '../backend.js';
import { Cmd, CmdFlag, MetaContext } from '../constants.js';
import { asRemoteError, checkOptions, openConnection } from './connect.js';
import { ConnectionPool } from './connection-pool.js';
import { type RemoteError, remoteError } from './errors.js';
import type { Negotiated } from './handshake.js';
import type { OperationSpec } from './operation.js';
import type { BlockDeviceInfo, NbdClientOptions } from './types.js';
import { describeTarget } from './wire.js';
import { deviceInfoFrom } from './device-info.js';
import { ExportSize } from './export-size.js';

export { deviceInfoFrom };

/** TRIM and WRITE_ZEROES carry no payload; still cut them so one request stays far from 2^32. */
const NO_PAYLOAD_PART_MAX_BYTES = 1024 * 1024 * 1024;
/** The zero buffer written when the server lacks WRITE_ZEROES (allocated on first use). */
const ZERO_BUFFER_MAX_BYTES = 1024 * 1024;
/** Largest block status question: a sparse terabyte at once (compact headers narrow it to 2 GiB). */
const STATUS_REQUEST_MAX_BYTES = 2 ** 40;

export class NbdClient {
  private zeroBuffer: Uint8Array | undefined;
  /** The meta contexts the server selected on the first connection (block status answers only these). */
  readonly metaContexts: readonly string[];
  /** Whether the first connection agreed extended headers (64-bit lengths). */
  readonly extendedHeaders: boolean;
  private readonly metaContextsRefused: string | undefined;
  private readonly size: ExportSize;
  private readonly pool: ConnectionPool;

  private constructor(private readonly opts: NbdClientOptions, private readonly where: string, info: BlockDeviceInfo, connections: number, first: Negotiated) {
    const log = opts.log ?? (() => {});
    // One abort for the side handshakes (size probes) and the pool's connection attempts.
    const abort = new AbortController();
    this.size = new ExportSize(info, opts, where, abort.signal, log);
    this.metaContexts = Object.freeze([...first.metaContexts.keys()]);
    this.extendedHeaders = first.extendedHeaders;
    this.metaContextsRefused = first.metaContextsRefused;
    this.pool = new ConnectionPool(opts, where, this.size, abort, log, this.metaContexts, connections);
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
    client.pool.attachFirst(first);
    client.size.watch(() => client.refreshAndCycle());
    await client.pool.connectOthers();
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
    if (this.pool.closed) throw remoteError('ESHUTDOWN', 'resize: the NBD client is closed', this.where);
    if (this.info.canResize !== true) throw remoteError('ENOTSUP', 'resize: the server does not offer the RESIZE extension (NBD_FLAG_SEND_RESIZE)', this.where);
    if (!(Number.isSafeInteger(sizeBytes) && sizeBytes >= 0)) throw remoteError('EINVAL', `resize: bad size ${sizeBytes}`, this.where);
    // Not range-checked like I/O: the new size is in the offset field, past the current end.
    await this.pool.enqueue({ what: `resize to ${sizeBytes} bytes`, type: Cmd.RESIZE, flags: 0, offsetBytes: sizeBytes, lengthBytes: 0, partMaxBytes: 1, always: true });
    this.size.adopt(sizeBytes);
  }

  /**
   * Asks the server for the export's size now on a short side connection (NBD_OPT_INFO, then
   * NBD_OPT_ABORT), keeping the connections in use; adopts and returns it. Concurrent calls share one probe.
   */
  refreshSize(): Promise<number> {
    if (this.pool.closed) return Promise.reject(remoteError('ESHUTDOWN', 'refreshSize: the NBD client is closed', this.where));
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
    if (this.info.canResize === true || this.pool.closed) return now;
    this.pool.reconnectSmallerThan(now);
    return now;
  }

  get connected(): boolean {
    return this.pool.connected;
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
    if (!this.pool.closed && !this.info.canFlush) return Promise.resolve();
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
    return this.pool.close();
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
    if (this.pool.closed) return remoteError('ESHUTDOWN', `${what}: the NBD client is closed`, this.where);
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
      ? (this.pool.closed ? remoteError('ESHUTDOWN', 'flush: the NBD client is closed', this.where) : undefined)
      : this.check(spec.what, spec.offsetBytes, spec.lengthBytes, modifies);
    if (err !== undefined) return this.pastEnd(spec) ? this.afterRefresh(spec, err) : Promise.reject(err);
    if (spec.lengthBytes === 0 && spec.always !== true) return Promise.resolve();
    return this.pool.enqueue(spec);
  }

  /**
   * A request past the end as last known: the export may have grown since (a volume grow behind
   * a remote element). Ask once (at most one side handshake a second, shared by the requests
   * that wait for it), then check again; the first error stands if nothing changed.
   */
  private pastEnd(spec: OperationSpec): boolean {
    return spec.type !== Cmd.FLUSH && !this.pool.closed && this.size.mayAskFor(spec.offsetBytes, spec.lengthBytes);
  }

  private async afterRefresh(spec: OperationSpec, first: RemoteError): Promise<void> {
    const grown = await this.refreshAndCycle(true).then((n) => spec.offsetBytes + spec.lengthBytes <= n, () => false);
    if (!grown) throw first;
    return this.submit(spec);
  }
}
