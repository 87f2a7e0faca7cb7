// The data path's side of integrity for raid1/raid10 volumes (docs/integrity.md): a write's
// checksums are computed on the top thread before its subs are queued and recorded for every leg
// it goes to; a read's whole blocks are compared with the stored checksums when its data is in
// the slot; on a mismatch every active leg's copy is read and checked explicitly (which leg
// served the read is not known up here), a good copy replaces the client's bytes and is written
// over the bad legs. The common case costs one checksum compare per block.
import { blockChecksums, type Crc32cBlocks } from '@onestack/native';
import { DataPathError } from '../datapath/errno.js';
import { stripeSplit } from '../datapath/map.js';
import type { RawIo } from '../datapath/raw-io.js';
import { STATE_ACTIVE, STATE_REBUILDING } from '../datapath/topology.js';
import type { WriteGate } from '../datapath/write-gate.js';
import { RateLimitedLog } from './log.js';
import { checksumMatches, INTEGRITY_BLOCK_BYTES, storedChecksum, storedSums, type ChecksumStore } from './types.js';

const BLOCK = INTEGRITY_BLOCK_BYTES;

/** What a raid1/raid10 volume's integrity needs of its topology. */
export interface IntegrityLayout {
  readonly layout: 'raid1' | 'raid10';
  /** raid10 chunk (a multiple of 4 KiB); ignored for raid1. */
  readonly chunkBytes: number;
  /** By role: the data-path element index and its data area's element offset. */
  readonly elements: readonly { readonly index: number; readonly dataOffsetBytes: number }[];
}

/** Per-element event counts (the element's integrity counters). */
export type IntegrityEvent = 'mismatches' | 'repaired' | 'unrecoverable';
/** volumeOffsetBytes: the block's place in the volume, for the volume's map (integrity/map.ts). */
export type IntegrityCount = (element: number, event: IntegrityEvent, blocks: number, volumeOffsetBytes?: number) => void;

export interface IntegrityDeps {
  readonly store: ChecksumStore;
  readonly layout: IntegrityLayout;
  /** Live element state word (topology.ts STATE_*). */
  readonly state: (element: number) => number;
  readonly raw: RawIo;
  readonly gate: WriteGate;
  readonly count: IntegrityCount;
  /** One line per event; rate-limited here. */
  readonly log: (line: string) => void;
  readonly volume: string;
  /** The checksum kernel (tests count its calls); default: blockChecksums().crc32cBlocks. */
  readonly crc32cBlocks?: Crc32cBlocks;
  /**
   * Whether volume [off, +len) still waits for a resync after an unclean stop (dirty in the
   * write-intent bitmap): a block there may hold data and checksum of different writes, so a
   * mismatch with no good copy is settled from the data (the resync recomputes it anyway), not EIO.
   */
  readonly unsettled?: (offsetBytes: number, lengthBytes: number) => boolean;
  /**
   * Fails a leg whose checksum pages could not be written (a device error): its checksums would
   * no longer describe its data. True when the leg is failed now; absent = never (tests).
   */
  readonly failLeg?: (element: number, err: unknown) => boolean;
  /**
   * The volume's write-behind leg (datapath/write-behind.ts), -1 or absent = none. Its checksums
   * are recorded only once its data is on it (recordLeg), so while it lags they describe its old
   * bytes: the fast check never uses them while another leg is active, and a repair first waits
   * until the leg holds what was acknowledged in the range (gate.settleLagging).
   */
  readonly behindElement?: number;
}

/** A mirror group's share of a block-aligned volume range: the same blocks on each of `roles`. */
interface Piece {
  readonly roles: readonly number[];
  readonly firstBlock: number;
  readonly blocks: number;
  /** Block index of this piece within the request. */
  readonly at: number;
}

/**
 * A store that can answer from its cache without I/O (optional; integrity/store.ts may offer it):
 * true and `out` filled when every page of the blocks is cached, else false (then read() is used).
 */
export interface PeekableStore extends ChecksumStore {
  peek?(element: number, firstBlock: number, count: number, out: Uint32Array): boolean;
}

/**
 * A store that can write its changed pages without flushing the element (optional;
 * integrity/store.ts offers it): the volume FLUSH that follows then syncs each element once.
 */
export interface WriteBackStore extends ChecksumStore {
  writeBack?(element: number): Promise<void>;
}

/** What checks a read's bytes against stored checksums (and repairs them): undefined = passed, no promise. */
export interface ReadVerifier {
  verify(offsetBytes: number, view: Uint8Array, gateHeld: boolean): Promise<void> | undefined;
}

/** An integrity volume's binding: element I/O in whole checksum blocks at least (partial ones take the RMW path). */
export function integrityBinding<B extends { readonly alignBytes: number }>(b: B): B {
  const a = Math.max(b.alignBytes, BLOCK);
  return a === b.alignBytes ? b : { ...b, alignBytes: a };
}

/** Whether any of stored[i] fails against crcs[at + i]. */
function mismatchIn(stored: Uint32Array, crcs: Uint32Array, at: number): boolean {
  for (let i = 0; i < stored.length; i++) if (!checksumMatches(stored[i]!, crcs[at + i]!)) return true;
  return false;
}

/** Blocks whose checksums a trim clears per store call (256 MiB of volume). */
const CLEAR_BATCH_BLOCKS = 65536;

export class VolumeIntegrity {
  private readonly crc: Crc32cBlocks;
  private readonly log: RateLimitedLog;
  /** Stored checksums of one peek (verify): 64 blocks covers a 256 KiB slot; grown if ever needed. */
  private peekScratch = new Uint32Array(64);

  constructor(private readonly d: IntegrityDeps) {
    this.crc = d.crc32cBlocks ?? blockChecksums().crc32cBlocks;
    this.log = new RateLimitedLog(d.log, d.volume);
    if (d.layout.layout === 'raid10' && !(d.layout.chunkBytes > 0 && d.layout.chunkBytes % BLOCK === 0)) {
      throw new DataPathError('EINVAL', `${d.volume}: raid10 chunk ${d.layout.chunkBytes} is not a multiple of the ${BLOCK}-byte checksum block`);
    }
  }

  get store(): ChecksumStore {
    return this.d.store;
  }

  /** Stored checksums of whole blocks in `chunks` (consecutive, each a multiple of 4 KiB): one kernel call per chunk. */
  sumsOf(chunks: readonly Uint8Array[]): Uint32Array {
    const total = chunks.reduce((a, c) => a + c.length, 0);
    const sums = new Uint32Array(total / BLOCK);
    let at = 0;
    for (const c of chunks) {
      if (c.length % BLOCK !== 0) throw new DataPathError('EINVAL', `${this.d.volume}: integrity write of ${c.length} bytes is not whole ${BLOCK}-byte blocks`);
      const n = c.length / BLOCK;
      if (n === 0) continue;
      storedSums(this.crc, c, sums.subarray(at, at + n));
      at += n;
    }
    return sums;
  }

  /**
   * Records `sums` (computed from the write's bytes, or zeros) for the volume blocks from
   * `offsetBytes` on every leg the write goes to (active and rebuilding). A leg that failed
   * meanwhile is skipped: its data write failed too and the layout no longer promises it.
   */
  async record(offsetBytes: number, sums: Uint32Array, fua: boolean, only?: { readonly skip?: number; readonly element?: number }): Promise<void> {
    this.checkAligned(offsetBytes, sums.length * BLOCK);
    const writes: Promise<void>[] = [];
    const elements: number[] = [];
    for (const p of this.pieces(offsetBytes, sums.length * BLOCK)) {
      for (const role of p.roles) {
        const el = this.d.layout.elements[role]!.index;
        // `skip`: the write-behind leg gets these later, with its data; `element`: only that leg.
        if (only !== undefined && (el === only.skip || (only.element !== undefined && el !== only.element))) continue;
        const s = this.d.state(el);
        if (s !== STATE_ACTIVE && s !== STATE_REBUILDING) continue;
        writes.push(this.d.store.write(el, p.firstBlock, sums.subarray(p.at, p.at + p.blocks), fua ? { fua: true } : undefined));
        elements.push(el);
      }
    }
    const results = await Promise.allSettled(writes);
    results.forEach((r, i) => {
      if (r.status === 'rejected') {
        const s = this.d.state(elements[i]!);
        if (s === STATE_ACTIVE || s === STATE_REBUILDING) throw r.reason;
      }
    });
  }

  /**
   * The write-behind leg's checksums of a piece now on it (sums of the volume blocks from
   * `offsetBytes`, as computed when the write was acknowledged): recorded after its data, so the
   * leg's checksum pages never run ahead of its bytes.
   */
  recordLeg(element: number, offsetBytes: number, sums: Uint32Array): Promise<void> {
    return this.record(offsetBytes, sums, false, { element });
  }

  /** Trim and write-zeroes: the whole blocks of [off, +len) carry no checksum any more. */
  async clear(offsetBytes: number, lengthBytes: number, fua: boolean): Promise<void> {
    const first = Math.ceil(offsetBytes / BLOCK);
    const end = Math.floor((offsetBytes + lengthBytes) / BLOCK);
    // One bounded batch of zeros at a time: a trim of a whole large volume allocates 256 KiB.
    const zeros = new Uint32Array(Math.min(Math.max(end - first, 0), CLEAR_BATCH_BLOCKS));
    for (let at = first; at < end; at += CLEAR_BATCH_BLOCKS) await this.record(at * BLOCK, zeros.subarray(0, Math.min(CLEAR_BATCH_BLOCKS, end - at)), fua);
  }

  /**
   * Writes every checksum page changed so far on every leg; the caller (volume-io.ts flushAll)
   * then flushes the elements, which makes them durable with the data. A store without
   * writeBack() is flushed instead (its own element flush, then the caller's).
   */
  async flush(): Promise<void> {
    const store = this.d.store as WriteBackStore;
    await Promise.all(this.d.layout.elements.map(async (e) => {
      const s = this.d.state(e.index);
      if (s !== STATE_ACTIVE && s !== STATE_REBUILDING) return;
      try {
        await (store.writeBack !== undefined ? store.writeBack(e.index) : store.flush(e.index));
      } catch (err) {
        if (this.d.state(e.index) !== s) return; // failed meanwhile: the layout no longer promises it
        // A leg that cannot keep its checksums leaves the volume, as one that cannot keep its data does.
        if (this.d.failLeg?.(e.index, err) !== true) throw err;
        this.note(`volume ${this.d.volume}: element index ${e.index} failed: its checksum pages could not be written: ${(err as Error).message}`);
      }
    }));
  }

  /**
   * Checks `view` (the bytes just read for volume [offsetBytes, +view.length), whole blocks)
   * against the stored checksums; on a mismatch replaces them with a verified copy and repairs
   * the bad legs, or throws EIO. `gateHeld`: the caller holds the range exclusively at the write
   * gate (a read-modify-write), so no fence is needed (and one would wait for the caller itself).
   */
  verify(offsetBytes: number, view: Uint8Array, gateHeld: boolean): Promise<void> | undefined {
    this.checkAligned(offsetBytes, view.length);
    if (view.length === 0) return undefined;
    const crcs = new Uint32Array(view.length / BLOCK);
    this.crc(view, BLOCK, crcs);
    const pieces = this.pieces(offsetBytes, view.length);
    const store = this.d.store as PeekableStore;
    if (store.peek !== undefined) {
      // Cached checksums answer without a promise: a passing read costs no extra turn.
      let known = true;
      let bad = false;
      for (const p of pieces) {
        const el = this.referenceLeg(p);
        if (el < 0) continue;
        // Used and dropped before anything awaits: one scratch array serves every read.
        if (this.peekScratch.length < p.blocks) this.peekScratch = new Uint32Array(p.blocks);
        const stored = this.peekScratch.subarray(0, p.blocks);
        if (!store.peek(el, p.firstBlock, p.blocks, stored)) {
          known = false;
          break;
        }
        if (mismatchIn(stored, crcs, p.at)) {
          bad = true;
          break;
        }
      }
      if (known) return bad ? this.repair(offsetBytes, view, gateHeld) : undefined;
    }
    return this.verifyStored(offsetBytes, view, crcs, pieces, gateHeld);
  }

  private async verifyStored(offsetBytes: number, view: Uint8Array, crcs: Uint32Array, pieces: readonly Piece[], gateHeld: boolean): Promise<void> {
    // A checksum page that cannot be read sends the request down the slow path (other legs' pages).
    const stored = await Promise.all(pieces.map((p) => {
      const el = this.referenceLeg(p);
      return el < 0 ? null : this.d.store.read(el, p.firstBlock, p.blocks).catch(() => undefined); // el < 0: the read itself failed
    }));
    if (pieces.some((p, k) => stored[k] === undefined || (stored[k] !== null && mismatchIn(stored[k]!, crcs, p.at)))) await this.repair(offsetBytes, view, gateHeld);
  }

  /** The slow path: every active leg's copy of the range, each checked against its own checksums. */
  private async repair(offsetBytes: number, into: Uint8Array, gateHeld: boolean): Promise<void> {
    // Under a fence: no client write can land between reading a good copy and rewriting a bad
    // leg with it, and a write that raced the first check (new data, old checksum, or the
    // reverse) has finished, so a mismatch seen now is real.
    const lift = gateHeld ? null : await this.d.gate.fence(offsetBytes, into.length);
    try {
      // The fence waits for the write-behind leg; a caller holding the range must wait here.
      if (gateHeld) await this.d.gate.settleLagging(offsetBytes, offsetBytes + into.length);
      for (const p of this.pieces(offsetBytes, into.length)) await this.repairPiece(p, offsetBytes, into);
    } finally {
      lift?.();
    }
  }

  private async repairPiece(p: Piece, requestOffsetBytes: number, into: Uint8Array): Promise<void> {
    const unsettled = this.d.unsettled?.(requestOffsetBytes + p.at * BLOCK, p.blocks * BLOCK) === true;
    const legs = p.roles.map((r) => this.d.layout.elements[r]!).filter((e) => this.d.state(e.index) === STATE_ACTIVE);
    const off = (e: { dataOffsetBytes: number }): number => e.dataOffsetBytes + p.firstBlock * BLOCK;
    // A leg whose data or checksums cannot be read offers no copy (its own errors fail it elsewhere).
    const copies = (await Promise.all(legs.map(async (e) => {
      try {
        const [data, stored] = await Promise.all([this.d.raw.read(e.index, off(e), p.blocks * BLOCK), this.d.store.read(e.index, p.firstBlock, p.blocks)]);
        const crcs = new Uint32Array(p.blocks);
        this.crc(data, BLOCK, crcs);
        return { e, data, stored, crcs };
      } catch (err) {
        this.note(`volume ${this.d.volume}: element index ${e.index}: no copy to verify: ${(err as Error).message}`);
        return null;
      }
    }))).filter((c) => c !== null);
    const lost: number[] = [];
    const rewrites: Promise<void>[] = [];
    for (let i = 0; i < p.blocks; i++) {
      const verified = copies.find((c) => c.stored[i] !== 0 && checksumMatches(c.stored[i]!, c.crcs[i]!));
      // No leg has a checksum for the block: nothing to verify (the first check passed on it too).
      const good = verified ?? (copies.every((c) => c.stored[i] === 0) || unsettled ? copies[0] : undefined);
      if (verified === undefined && unsettled && good !== undefined && good.stored[i] !== 0) {
        // In flight at the crash: the data stands, its checksum is recomputed (no event counted).
        rewrites.push(this.d.store.write(good.e.index, p.firstBlock + i, Uint32Array.of(storedChecksum(good.crcs[i]!))));
        good.stored[i] = storedChecksum(good.crcs[i]!);
      }
      const block = (c: { data: Uint8Array }): Uint8Array => c.data.subarray(i * BLOCK, (i + 1) * BLOCK);
      if (good === undefined) {
        for (const c of copies) this.d.count(c.e.index, 'unrecoverable', 1, requestOffsetBytes + (p.at + i) * BLOCK);
        lost.push(p.firstBlock + i);
        continue;
      }
      into.set(block(good), (p.at + i) * BLOCK);
      const goodSum = storedChecksum(good.crcs[i]!);
      // Legs of a range still waiting for its resync may differ: the resync settles them.
      for (const c of unsettled ? [] : copies) {
        if (c === good) continue;
        const dataBad = storedChecksum(c.crcs[i]!) !== goodSum;
        const sumBad = c.stored[i] !== (good.stored[i] === 0 ? 0 : goodSum);
        if (!dataBad && !sumBad) continue;
        this.d.count(c.e.index, 'mismatches', 1, requestOffsetBytes + (p.at + i) * BLOCK);
        rewrites.push(this.rewrite(c.e, p.firstBlock + i, dataBad ? block(good) : null, good.stored[i] === 0 ? 0 : goodSum, requestOffsetBytes + (p.at + i) * BLOCK));
      }
    }
    const results = await Promise.allSettled(rewrites);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed !== undefined) this.note(`volume ${this.d.volume}: rewriting a bad block failed: ${String(failed.reason)}`);
    if (lost.length > 0) {
      this.note(`volume ${this.d.volume}: ${lost.length} block(s) from element block ${lost[0]} failed their checksum on every leg (${copies.map((c) => c.e.index).join(', ')}): EIO`);
      throw new DataPathError('EIO', `${this.d.volume}: ${lost.length} block(s) at volume offset ${requestOffsetBytes + p.at * BLOCK} failed their checksum on every leg`);
    }
  }

  /** Writes the good block (and its checksum) over a bad leg's copy; counts it repaired once both are on the leg. */
  private async rewrite(e: { index: number; dataOffsetBytes: number }, block: number, data: Uint8Array | null, sum: number, volumeOffsetBytes: number): Promise<void> {
    await Promise.all([
      data === null ? undefined : this.d.raw.write(e.index, e.dataOffsetBytes + block * BLOCK, data),
      this.d.store.write(e.index, block, Uint32Array.of(sum)),
    ]);
    this.d.count(e.index, 'repaired', 1, volumeOffsetBytes);
    this.note(`volume ${this.d.volume}: element index ${e.index} block ${block} failed its checksum; ${data === null ? 'checksum' : 'data'} rewritten from a verified copy`);
  }

  private note(line: string): void {
    this.log.line(line);
  }

  /**
   * The first active leg of a piece, whose checksums the fast check uses (legs hold the same
   * ones); the write-behind leg only when no other is active (its checksums may lag; reads then
   * wait until it has caught up, volume-piece-io.ts readPiece).
   */
  private referenceLeg(p: Piece): number {
    let behind = -1;
    for (const role of p.roles) {
      const el = this.d.layout.elements[role]!.index;
      if (this.d.state(el) !== STATE_ACTIVE) continue;
      if (el !== this.d.behindElement) return el;
      behind = el;
    }
    return behind;
  }

  /** raid1: one piece over every leg; raid10: one per chunk, over the pair's legs. */
  private pieces(offsetBytes: number, lengthBytes: number): Piece[] {
    const l = this.d.layout;
    if (l.layout === 'raid1') return [{ roles: l.elements.map((_, r) => r), firstBlock: offsetBytes / BLOCK, blocks: lengthBytes / BLOCK, at: 0 }];
    return stripeSplit(l.chunkBytes, l.elements.length / 2, offsetBytes, lengthBytes).map((x) => ({
      roles: [2 * x.column, 2 * x.column + 1], firstBlock: x.columnOffsetBytes / BLOCK, blocks: x.lengthBytes / BLOCK, at: x.bufferOffsetBytes / BLOCK,
    }));
  }

  private checkAligned(offsetBytes: number, lengthBytes: number): void {
    if (offsetBytes % BLOCK !== 0 || lengthBytes % BLOCK !== 0) {
      throw new DataPathError('EINVAL', `${this.d.volume}: integrity range [${offsetBytes}, +${lengthBytes}) is not whole ${BLOCK}-byte blocks`);
    }
  }
}
