// One connection in the transmission phase. Requests go out as a 28-byte header (32 with
// extended headers) from a slab (one slot per in-flight request, reused only after its reply, so
// the server has long read it) followed by the caller's payload view — never copied. Replies are
// demultiplexed by cookie (slot index + per-slot generation); read data is copied from the
// socket's chunks straight into the caller's buffer, and block status descriptors are checked
// as they arrive (never buffered whole). Anything off-protocol drops the connection; the owner
// reissues.

import type { Socket } from 'node:net';
import { ByteAccumulator } from '../codec/accumulator.js';
import { decodeExtendedReplyHeader, encodeExtendedRequest } from '../codec/client-extended.js';
import { SMALL_CHUNK_MAX_BYTES, checkChunkHeader, decodeDataChunkOffset, decodeSmallChunk, isDataChunk } from '../codec/client-replies.js';
import { ExtentCollector, decodeStatusChunkHead, isStatusChunk, statusPrefixBytes } from '../codec/client-status.js';
import { type NbdRequest, type ReplyHeader, decodeReplyHeader, encodeRequest } from '../codec/transmission.js';
import { Cmd, Errno, ReplyFlag, ReplyType, Size } from '../constants.js';
import { NbdProtocolError } from '../errors.js';
import type { ConnectionConfig, ConnectionEvents, Part } from './connection-types.js';
import { RemoteError, errnoError, remoteError, socketError } from './errors.js';
import { addReadPiece } from './read-pieces.js';

export type { ConnectionConfig, ConnectionEvents, Part, StatusWanted } from './connection-types.js';

interface Slot<P extends Part> {
  readonly index: number;
  part: P | undefined;
  generation: number;
  receivedBytes: number;
  /** [start, end) pairs of the current READ received so far, sorted, adjacent ones merged (in-order chunks: one pair). */
  readonly extents: number[];
  errno: number;
  message: string;
  /** BLOCK_STATUS: context ids answered so far (each at most once; bounded by the selected contexts). */
  readonly statusIds: number[];
  /** The length put on the wire (a block status length is a hint, narrowed under compact headers). */
  requestBytes: number;
  /** BLOCK_STATUS: the wanted context's extents, once its chunk has started. */
  status: ExtentCollector | undefined;
}

/** A block status question under compact headers covers at most this (a multiple of any block size). */
export const COMPACT_STATUS_MAX_BYTES = 2 ** 31;
/** Extents of one status reply handed to the caller; the rest is checked and dropped (callers loop). */
export const STATUS_EXTENTS_KEPT_MAX = 65_536;
/** Descriptors checked per pass, so one peek() copies at most 64 KiB. */
const STATUS_BATCH_DESCRIPTORS = 4096;

/** Socket chunks are drained on arrival; only a partial header or small chunk ever waits here. */
const RECEIVE_BUFFER_MAX_BYTES = 8 * 1024 * 1024;
const DISC_COOKIE = 0xffffffff;
const U32_MAX = 0xffffffff;

export class ClientConnection<P extends Part> {
  private readonly acc = new ByteAccumulator(RECEIVE_BUFFER_MAX_BYTES, 64);
  private readonly headers: Uint8Array;
  private readonly extended: boolean;
  private readonly requestBytes: number;
  private readonly replyHeaderBytes: number;
  /** Context id → name, for the status chunks of this connection. */
  private readonly contextNames = new Map<number, string>();
  private readonly slots: Slot<P>[] = [];
  private readonly free: number[] = [];
  /** The data of a reply being copied into its part's target. */
  private stream: { slot: Slot<P>; atBytes: number; remainingBytes: number; last: boolean } | undefined;
  /** The descriptors of a status chunk still to come. */
  private statusStream: { slot: Slot<P>; collector: ExtentCollector; remaining: number; descriptorBytes: 8 | 16; last: boolean } | undefined;
  private inFlight = 0;
  private corked = false;
  private dead = false;
  /** NBD_CMD_DISC sent: no new requests, replies still read until the server closes. */
  private ending = false;
  private lastActivityMs = performance.now();
  private readonly chunkPayloadMaxBytes: number;
  private readonly closed: Promise<void>;

  constructor(private readonly socket: Socket, leftover: ByteAccumulator, readonly config: ConnectionConfig, private readonly events: ConnectionEvents<P>) {
    if (!(config.inFlightMax > 0 && config.maxRequestBytes > 0)) throw new RangeError('bad connection config');
    this.extended = config.extendedHeaders === true;
    if (this.extended && !config.structuredReplies) throw new RangeError('extended headers imply structured replies');
    this.requestBytes = this.extended ? Size.EXTENDED_REQUEST : Size.REQUEST;
    this.replyHeaderBytes = this.extended ? Size.EXTENDED_REPLY_HEADER : Size.STRUCTURED_HEADER;
    for (const [name, id] of config.metaContexts ?? []) this.contextNames.set(id, name);
    this.headers = new Uint8Array(config.inFlightMax * this.requestBytes);
    for (let i = 0; i < config.inFlightMax; i++) {
      this.slots.push({ index: i, part: undefined, generation: 0, receivedBytes: 0, extents: [], errno: 0, message: '', statusIds: [], status: undefined, requestBytes: 0 });
      this.free.push(config.inFlightMax - 1 - i);
    }
    this.chunkPayloadMaxBytes = Math.max(config.maxRequestBytes + 8, SMALL_CHUNK_MAX_BYTES);
    while (leftover.length > 0) {
      const chunk = new Uint8Array(Math.min(leftover.length, 64 * 1024));
      leftover.copyTo(chunk);
      this.acc.push(chunk);
    }
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('data', this.onData);
    socket.on('error', (err) => this.fail(socketError(err, 'during transmission', config.where)));
    socket.on('close', () => this.fail(remoteError('ECONNRESET', 'the server closed the connection', config.where)));
    if (this.acc.length > 0) queueMicrotask(() => this.onData(new Uint8Array(0)));
  }

  get load(): number {
    return this.inFlight;
  }

  get hasRoom(): boolean {
    return !this.dead && !this.ending && this.free.length > 0;
  }

  get alive(): boolean {
    return !this.dead;
  }

  /** Whether this connection selected the meta context (ids may differ between connections). */
  hasContext(name: string): boolean {
    return this.config.metaContexts?.has(name) === true;
  }

  /** Sends one request (and its payload) without copying the payload. */
  send(part: P): void {
    const index = this.free.pop();
    if (index === undefined || this.dead || this.ending) throw new Error('send() without room; check hasRoom');
    const slot = this.slots[index] as Slot<P>;
    if (slot.part !== undefined) throw new Error('slot invariant: free slot in use');
    slot.part = part;
    slot.generation = (slot.generation + 1) >>> 0;
    slot.receivedBytes = 0;
    slot.extents.length = 0;
    slot.errno = 0;
    slot.message = '';
    slot.statusIds.length = 0;
    slot.requestBytes = part.type === Cmd.BLOCK_STATUS && !this.extended ? Math.min(part.lengthBytes, COMPACT_STATUS_MAX_BYTES) : part.lengthBytes;
    slot.status = undefined;
    const at = index * this.requestBytes;
    this.encode(this.headers, at, {
      flags: part.flags, type: part.type, cookieHi: slot.generation, cookieLo: index, offsetBytes: part.offsetBytes, lengthBytes: slot.requestBytes,
    });
    if (this.inFlight === 0) this.lastActivityMs = performance.now();
    this.inFlight += 1;
    this.corkForThisTick();
    this.socket.write(this.headers.subarray(at, at + this.requestBytes));
    if (part.payload !== undefined) this.socket.write(part.payload);
  }

  /**
   * A request's deadline passed while it was here. If nothing at all came back for a whole
   * timeout while requests waited, the server (or the path to it) is presumed hung: drop the
   * connection so the owner reconnects instead of queueing behind it forever.
   */
  checkStalled(timeoutMs: number): void {
    if (this.dead || this.inFlight === 0) return;
    const silentMs = performance.now() - this.lastActivityMs;
    if (silentMs >= timeoutMs * 0.9) this.fail(remoteError('ETIMEDOUT', `no reply for ${Math.round(silentMs)} ms`, this.config.where));
  }

  /** Soft disconnect: NBD_CMD_DISC, end, then drop the socket after at most graceMs. */
  async disconnect(graceMs: number): Promise<void> {
    if (!this.dead && !this.ending) {
      this.ending = true;
      const disc = new Uint8Array(this.requestBytes);
      this.encode(disc, 0, { flags: 0, type: Cmd.DISC, cookieHi: DISC_COOKIE, cookieLo: DISC_COOKIE, offsetBytes: 0, lengthBytes: 0 });
      this.socket.end(disc);
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([this.closed, new Promise<void>((resolve) => { timer = setTimeout(resolve, graceMs); })]);
      clearTimeout(timer);
    }
    this.fail(remoteError('ESHUTDOWN', 'disconnected (NBD_CMD_DISC sent)', this.config.where));
  }

  private encode(target: Uint8Array, at: number, request: NbdRequest): void {
    if (this.extended) encodeExtendedRequest(target, at, request);
    else if (request.lengthBytes > U32_MAX) throw new RangeError('request length above 4 GiB without extended headers');
    else encodeRequest(target, at, request);
  }

  private corkForThisTick(): void {
    if (this.corked) return;
    this.corked = true;
    this.socket.cork();
    // Every request queued in this tick leaves in one writev.
    process.nextTick(() => {
      this.corked = false;
      this.socket.uncork();
    });
  }

  private readonly onData = (chunk: Uint8Array): void => {
    if (this.dead) return;
    this.lastActivityMs = performance.now();
    if (this.acc.length + chunk.length > this.acc.capacityBytes) {
      this.fail(remoteError('EPROTO', 'reply bytes piled up beyond the receive buffer', this.config.where));
      return;
    }
    this.acc.push(chunk);
    try {
      // Bounded: every pass consumes bytes or returns.
      while (!this.dead && (this.stream !== undefined ? this.streamData() : this.statusStream !== undefined ? this.streamStatus() : this.readReply()));
    } catch (err) {
      const message = err instanceof NbdProtocolError ? err.message : String(err);
      this.fail(remoteError('EPROTO', `protocol error from the server: ${message}`, this.config.where));
    }
    if (!this.dead) this.events.onProgress();
  };

  /** Copies (or, for an abandoned request, skips) as much of the current reply's data as has arrived. */
  private streamData(): boolean {
    const s = this.stream;
    if (s === undefined || this.acc.length === 0) return false;
    const n = Math.min(s.remainingBytes, this.acc.length);
    const target = s.slot.part?.abandoned === false ? s.slot.part.target : undefined;
    if (target === undefined) this.acc.consume(n);
    else this.acc.copyTo(target.subarray(s.atBytes, s.atBytes + n));
    s.atBytes += n;
    s.remainingBytes -= n;
    if (s.remainingBytes === 0) {
      this.stream = undefined;
      if (s.last) this.finish(s.slot);
    }
    return true;
  }

  private readReply(): boolean {
    if (this.acc.length < 4) return false;
    // Chunk lengths are checked per type in chunk(); status chunks may be long (they are streamed).
    const decoded = this.extended
      ? decodeExtendedReplyHeader(this.acc.peek(Math.min(this.acc.length, Size.EXTENDED_REPLY_HEADER)))
      : decodeReplyHeader(this.acc.peek(Math.min(this.acc.length, Size.STRUCTURED_HEADER)), U32_MAX);
    if (decoded.kind === 'need') return false;
    if (decoded.kind === 'error') throw decoded.error;
    const header = decoded.value;
    const slot = this.lookup(header.cookieHi, header.cookieLo);
    if (slot === undefined) throw new NbdProtocolError('reply-malformed', `reply for unknown cookie ${header.cookieHi}:${header.cookieLo}`);
    return header.kind === 'simple' ? this.simpleReply(slot, header) : this.chunk(slot, header);
  }

  private simpleReply(slot: Slot<P>, header: Extract<ReplyHeader, { kind: 'simple' }>): boolean {
    const part = slot.part as Part;
    this.acc.consume(Size.SIMPLE_REPLY);
    // Servers send no data after a simple error reply (nbdkit, qemu-nbd, ours): the stream stays in step.
    if (header.errno !== 0 || part.type !== Cmd.READ) {
      slot.errno = header.errno;
      this.finish(slot);
      return true;
    }
    if (this.config.structuredReplies) throw new NbdProtocolError('reply-malformed', 'simple reply to READ after structured replies were agreed');
    slot.receivedBytes = part.lengthBytes;
    this.stream = { slot, atBytes: 0, remainingBytes: part.lengthBytes, last: true };
    return true;
  }

  private chunk(slot: Slot<P>, header: Extract<ReplyHeader, { kind: 'structured' }>): boolean {
    if (!this.config.structuredReplies) throw new NbdProtocolError('reply-malformed', 'structured reply that was not agreed');
    checkChunkHeader(header, this.chunkPayloadMaxBytes);
    const part = slot.part as Part;
    const done = (header.flags & ReplyFlag.DONE) !== 0;
    const headerBytes = this.replyHeaderBytes;
    if (isDataChunk(header)) {
      const prefixBytes = headerBytes + 8;
      if (this.acc.length < prefixBytes) return false;
      const offsetBytes = decodeDataChunkOffset(this.acc.peek(prefixBytes).subarray(headerBytes));
      const dataBytes = header.payloadBytes - 8;
      const atBytes = this.claim(slot, part, offsetBytes, dataBytes);
      this.acc.consume(prefixBytes);
      this.stream = { slot, atBytes, remainingBytes: dataBytes, last: done };
      return true;
    }
    if (isStatusChunk(header.type)) return this.statusChunk(slot, part, header, done);
    const totalBytes = headerBytes + header.payloadBytes;
    if (this.acc.length < totalBytes) return false;
    const payload = decodeSmallChunk(header, this.acc.peek(totalBytes).subarray(headerBytes));
    this.acc.consume(totalBytes);
    if (payload.kind === 'hole') {
      const atBytes = this.claim(slot, part, payload.offsetBytes, payload.lengthBytes);
      if (!part.abandoned) part.target?.fill(0, atBytes, atBytes + payload.lengthBytes);
    } else if (payload.kind === 'error' && slot.errno === 0) {
      slot.errno = payload.errno;
      slot.message = payload.message;
    }
    if (done) this.finish(slot);
    return true;
  }

  /** The head of a block status chunk: one per selected context, each at most once; its descriptors stream after. */
  private statusChunk(slot: Slot<P>, part: Part, header: Extract<ReplyHeader, { kind: 'structured' }>, done: boolean): boolean {
    const bad = (why: string): never => { throw new NbdProtocolError('reply-malformed', why); };
    if (header.type !== (this.extended ? ReplyType.BLOCK_STATUS_EXT : ReplyType.BLOCK_STATUS)) {
      bad(`block status chunk of type ${header.type} with ${this.extended ? 'extended' : 'compact'} headers`);
    }
    if (part.type !== Cmd.BLOCK_STATUS) bad('block status chunk in the reply to a request other than BLOCK_STATUS');
    const prefixEnd = this.replyHeaderBytes + statusPrefixBytes(header.type);
    if (this.acc.length < prefixEnd) return false;
    const head = decodeStatusChunkHead(header.type, header.payloadBytes, this.acc.peek(prefixEnd).subarray(this.replyHeaderBytes));
    const name = this.contextNames.get(head.contextId);
    if (name === undefined) bad(`block status for context id ${head.contextId}, which this connection did not select`);
    if (slot.statusIds.includes(head.contextId)) bad(`two block status chunks for context ${JSON.stringify(name)}`);
    slot.statusIds.push(head.contextId);
    this.acc.consume(prefixEnd);
    const wanted = part.status?.context === name;
    const request = { offsetBytes: part.offsetBytes, lengthBytes: slot.requestBytes };
    const collector = new ExtentCollector(request, this.config.exportSizeBytes ?? Number.MAX_SAFE_INTEGER, wanted ? STATUS_EXTENTS_KEPT_MAX : 0);
    if (wanted) slot.status = collector;
    this.statusStream = { slot, collector, remaining: head.descriptorCount, descriptorBytes: head.descriptorBytes, last: done };
    return true;
  }

  /** Checks as many whole descriptors of the current status chunk as have arrived. */
  private streamStatus(): boolean {
    const s = this.statusStream;
    if (s === undefined) return false;
    const n = Math.min(s.remaining, Math.floor(this.acc.length / s.descriptorBytes), STATUS_BATCH_DESCRIPTORS);
    if (n === 0) return false;
    const bytes = n * s.descriptorBytes;
    s.collector.add(this.acc.peek(bytes), s.descriptorBytes);
    this.acc.consume(bytes);
    s.remaining -= n;
    if (s.remaining === 0) {
      this.statusStream = undefined;
      if (s.last) this.finish(s.slot);
    }
    return true;
  }

  /** Checks that a data or hole chunk lies inside its READ and that chunks do not add up past it. */
  private claim(slot: Slot<P>, part: Part, offsetBytes: number, lengthBytes: number): number {
    const atBytes = offsetBytes - part.offsetBytes;
    if (part.type !== Cmd.READ) throw new NbdProtocolError('reply-malformed', 'data chunk in the reply to a request other than READ');
    if (!(atBytes >= 0 && atBytes + lengthBytes <= part.lengthBytes)) {
      throw new NbdProtocolError('reply-malformed', `chunk [${offsetBytes}, +${lengthBytes}) outside the read [${part.offsetBytes}, +${part.lengthBytes})`);
    }
    // Chunks that overlap could add up to the read's length while leaving some of it unwritten.
    const problem = addReadPiece(slot.extents, atBytes, atBytes + lengthBytes);
    if (problem !== undefined) throw new NbdProtocolError('reply-malformed', problem);
    slot.receivedBytes += lengthBytes;
    if (slot.receivedBytes > part.lengthBytes) throw new NbdProtocolError('reply-malformed', 'read reply chunks overlap');
    return atBytes;
  }

  private lookup(cookieHi: number, cookieLo: number): Slot<P> | undefined {
    const slot = this.slots[cookieLo];
    return slot !== undefined && slot.part !== undefined && slot.generation === cookieHi ? slot : undefined;
  }

  private finish(slot: Slot<P>): void {
    const part = slot.part;
    if (part === undefined) throw new Error('slot invariant: finishing an empty slot');
    slot.part = undefined;
    this.free.push(slot.index);
    this.inFlight -= 1;
    let err: RemoteError | undefined;
    const status = slot.status;
    slot.status = undefined;
    if (slot.errno !== 0) err = errnoError(slot.errno, part.what, this.config.where, slot.message);
    else if (part.type === Cmd.READ && slot.receivedBytes !== part.lengthBytes) {
      err = remoteError('EPROTO', `${part.what}: the server's reply covered ${slot.receivedBytes} of ${part.lengthBytes} bytes`, this.config.where);
    } else if (part.type === Cmd.BLOCK_STATUS) {
      if (status === undefined) {
        err = remoteError('EPROTO', `${part.what}: the server's reply held no extents for ${JSON.stringify(part.status?.context)}`, this.config.where);
      } else if (!part.abandoned) {
        part.status?.deliver(status.extents());
      }
    }
    this.events.onReply(part, err);
    // proto.md: a client that receives ESHUTDOWN MUST initiate a soft disconnect.
    if (slot.errno === Errno.ESHUTDOWN) void this.disconnect(1000);
  }

  /** The connection is gone: hand every in-flight part back to the owner, once. */
  private fail(err: RemoteError): void {
    if (this.dead) return;
    this.dead = true;
    this.socket.destroy();
    this.stream = undefined;
    this.statusStream = undefined;
    this.acc.clear();
    const parts: P[] = [];
    for (const slot of this.slots) {
      if (slot.part !== undefined) parts.push(slot.part);
      slot.part = undefined;
    }
    this.inFlight = 0;
    this.events.onDown(err, parts);
  }
}
