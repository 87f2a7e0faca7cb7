// Whole PDUs on a byte stream: BHS, AHS, optional HeaderDigest, data segment padded to 4 bytes,
// optional DataDigest. The reassembler is socket-free: push() chunks in, complete PDUs come out
// through a callback. Data segments can land straight in a caller's buffer (a "sink"), so a
// Data-In is copied once, from the socket's chunk into the read buffer.

import { IscsiProtocolError } from '../errors.js';
import { CRC32C_INIT, crc32c, crc32cFinish, crc32cUpdate, readDigest, writeDigest } from './crc32c.js';
import { AHS_BYTES_MAX, BHS_BYTES, DIGEST_BYTES, decodeBhs, encodeBhs, opcodeName, padBytes, type Pdu } from './pdu.js';

export interface Digests { readonly header: boolean; readonly data: boolean }

const ZERO_PAD = new Uint8Array(4);

/**
 * Encodes one PDU as the parts to write, in order: header (+digest), data (the caller's view,
 * not copied), padding (+digest). Empty parts are left out.
 */
export function framePdu(bhs: Pdu, data: Uint8Array | null, digests: Digests): Uint8Array[] {
  const length = data?.length ?? 0;
  if (length !== bhs.dataSegmentLength) throw new IscsiProtocolError('bad-field', `DataSegmentLength ${bhs.dataSegmentLength} but ${length} data bytes`);
  if ((bhs.totalAhsWords ?? 0) !== 0) throw new IscsiProtocolError('bad-field', 'sending an AHS is not supported');
  const header = new Uint8Array(BHS_BYTES + (digests.header ? DIGEST_BYTES : 0));
  header.set(encodeBhs(bhs), 0);
  if (digests.header) writeDigest(header, BHS_BYTES, crc32c(header.subarray(0, BHS_BYTES)));
  const parts: Uint8Array[] = [header];
  if (data === null || length === 0) return parts;
  parts.push(data);
  const pad = padBytes(length);
  const tail = new Uint8Array(pad + (digests.data ? DIGEST_BYTES : 0));
  if (digests.data) {
    const state = crc32cUpdate(crc32cUpdate(CRC32C_INIT, data), ZERO_PAD.subarray(0, pad));
    writeDigest(tail, pad, crc32cFinish(state));
  }
  if (tail.length > 0) parts.push(tail);
  return parts;
}

export interface ReceivedPdu {
  readonly bhs: Pdu;
  /** The AHS bytes (rare; kept for completeness), or null. */
  readonly ahs: Uint8Array | null;
  /** The data segment without padding: the sink's view when one was given, else a fresh copy. */
  readonly data: Uint8Array;
}

/** Chooses where a PDU's data segment goes: a view of exactly dataSegmentLength bytes, or null. */
export type DataSink = (bhs: Pdu) => Uint8Array | null;

export interface ReassemblerOptions {
  /** Largest data segment accepted; bigger ones are a protocol error (bounds memory). */
  readonly dataSegmentBytesMax: number;
  readonly digests: Digests;
  readonly sink?: DataSink;
}

type Phase = 'header' | 'data' | 'trailer';
const EMPTY = new Uint8Array(0);

export class PduReassembler {
  private readonly headerBuf = new Uint8Array(BHS_BYTES + AHS_BYTES_MAX + DIGEST_BYTES);
  private readonly trailerBuf = new Uint8Array(3 + DIGEST_BYTES);
  private digests: Digests;
  private dataSegmentBytesMax: number;
  private readonly sink: DataSink | undefined;
  private phase: Phase = 'header';
  private have = 0;
  private headerNeed = BHS_BYTES;
  private bhs: Pdu | null = null;
  private data: Uint8Array = EMPTY;
  private dataCrc = CRC32C_INIT;
  private failed: IscsiProtocolError | null = null;
  private paused = false;
  private held: Uint8Array[] = [];

  constructor(opts: ReassemblerOptions, private readonly onPdu: (pdu: ReceivedPdu) => void) {
    if (!(opts.dataSegmentBytesMax > 0 && opts.dataSegmentBytesMax <= 0xffffff)) throw new RangeError(`dataSegmentBytesMax ${opts.dataSegmentBytesMax}`);
    this.digests = opts.digests;
    this.dataSegmentBytesMax = opts.dataSegmentBytesMax;
    this.sink = opts.sink;
  }

  /** Takes effect from the next PDU (digests start after the final Login Response). */
  setDigests(digests: Digests): void {
    this.digests = digests;
  }

  setDataSegmentBytesMax(bytes: number): void {
    this.dataSegmentBytesMax = bytes;
  }

  /** Called from onPdu: holds later bytes until resume(), so settings change on a PDU boundary. */
  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    while (!this.paused && this.held.length > 0) this.push(this.held.shift()!);
  }

  /** Bytes held while paused (bounded by what the peer sent before we answered). */
  heldBytes(): number {
    return this.held.reduce((n, c) => n + c.length, 0);
  }

  /** Feeds bytes. Throws IscsiProtocolError on malformed input; after that every push throws. */
  push(chunk: Uint8Array): void {
    if (this.failed !== null) throw new IscsiProtocolError('reassembler-failed', `stream already failed: ${this.failed.message}`);
    try {
      let at = 0;
      while (at < chunk.length) {
        if (this.paused) {
          this.held.push(chunk.slice(at));
          return;
        }
        at += this.phase === 'header' ? this.takeHeader(chunk, at) : this.phase === 'data' ? this.takeData(chunk, at) : this.takeTrailer(chunk, at);
      }
    } catch (err) {
      // Either way the stream position is lost: refuse further bytes, keep the original error.
      this.failed = err instanceof IscsiProtocolError ? err : new IscsiProtocolError('bad-field', `PDU handler failed: ${String(err)}`);
      throw err;
    }
  }

  private takeHeader(chunk: Uint8Array, at: number): number {
    const n = Math.min(this.headerNeed - this.have, chunk.length - at);
    this.headerBuf.set(chunk.subarray(at, at + n), this.have);
    this.have += n;
    if (this.have < this.headerNeed) return n;
    if (this.headerNeed === BHS_BYTES) {
      // Now we know the AHS length; the header (and its digest) may be longer than the BHS.
      const full = BHS_BYTES + this.headerBuf[4]! * 4 + (this.digests.header ? DIGEST_BYTES : 0);
      if (full > BHS_BYTES) { this.headerNeed = full; return n; }
    }
    this.headerDone();
    return n;
  }

  private headerDone(): void {
    const ahsBytes = this.headerBuf[4]! * 4;
    if (this.digests.header) {
      const covered = this.headerBuf.subarray(0, BHS_BYTES + ahsBytes);
      const want = crc32c(covered);
      const got = readDigest(this.headerBuf, BHS_BYTES + ahsBytes);
      if (want !== got) throw new IscsiProtocolError('header-digest', `header digest mismatch: got 0x${got.toString(16)}, computed 0x${want.toString(16)}`);
    }
    const bhs = decodeBhs(this.headerBuf);
    if (bhs.dataSegmentLength > this.dataSegmentBytesMax) {
      throw new IscsiProtocolError('segment-too-large', `${opcodeName(bhs.opcode)} data segment of ${bhs.dataSegmentLength} bytes exceeds ${this.dataSegmentBytesMax}`);
    }
    this.bhs = bhs;
    this.have = 0;
    this.dataCrc = CRC32C_INIT;
    const sunk = bhs.dataSegmentLength > 0 ? this.sink?.(bhs) ?? null : null;
    if (sunk !== null && sunk.length !== bhs.dataSegmentLength) throw new RangeError(`sink gave ${sunk.length} bytes for a ${bhs.dataSegmentLength}-byte segment`);
    this.data = sunk ?? (bhs.dataSegmentLength > 0 ? new Uint8Array(bhs.dataSegmentLength) : EMPTY);
    this.phase = 'data';
    if (bhs.dataSegmentLength === 0) this.dataDone();
  }

  private takeData(chunk: Uint8Array, at: number): number {
    const n = Math.min(this.data.length - this.have, chunk.length - at);
    const piece = chunk.subarray(at, at + n);
    this.data.set(piece, this.have);
    if (this.digests.data) this.dataCrc = crc32cUpdate(this.dataCrc, piece);
    this.have += n;
    if (this.have === this.data.length) this.dataDone();
    return n;
  }

  private dataDone(): void {
    this.have = 0;
    const length = this.data.length;
    const trailer = length === 0 ? 0 : padBytes(length) + (this.digests.data ? DIGEST_BYTES : 0);
    if (trailer === 0) { this.emit(); return; }
    this.headerNeed = trailer;
    this.phase = 'trailer';
  }

  private takeTrailer(chunk: Uint8Array, at: number): number {
    const n = Math.min(this.headerNeed - this.have, chunk.length - at);
    this.trailerBuf.set(chunk.subarray(at, at + n), this.have);
    this.have += n;
    if (this.have < this.headerNeed) return n;
    const pad = padBytes(this.data.length);
    if (this.digests.data) {
      const want = crc32cFinish(crc32cUpdate(this.dataCrc, this.trailerBuf.subarray(0, pad)));
      const got = readDigest(this.trailerBuf, pad);
      if (want !== got) throw new IscsiProtocolError('data-digest', `data digest mismatch on ${opcodeName(this.bhs!.opcode)}: got 0x${got.toString(16)}, computed 0x${want.toString(16)}`);
    }
    this.emit();
    return n;
  }

  private emit(): void {
    const bhs = this.bhs!;
    const ahsBytes = (bhs.totalAhsWords ?? 0) * 4;
    const ahs = ahsBytes > 0 ? this.headerBuf.slice(BHS_BYTES, BHS_BYTES + ahsBytes) : null;
    const data = this.data;
    this.bhs = null;
    this.data = EMPTY;
    this.phase = 'header';
    this.have = 0;
    this.headerNeed = BHS_BYTES;
    this.onPdu({ bhs, ahs, data });
  }
}
