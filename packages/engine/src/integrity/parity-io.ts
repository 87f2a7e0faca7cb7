// Integrity of a raid5/6 volume (docs/integrity.md): the stripe engine's checksum hooks
// (datapath/stripe-integrity.ts) over the volume's checksum store, and the verification of client
// reads. Every unit of a row, parity included, carries its own checksums, so a failing block is
// known whichever unit holds it and is rebuilt from the others (parity-resolve.ts), block by
// block, under the row lock; the client never sees bytes that failed.
import { blockChecksums, type Crc32cBlocks } from '@onestack/native';
import { DataPathError } from '../datapath/errno.js';
import { elementOffset, indexRole, mapParityData, volumeOffset } from '../datapath/map-parity.js';
import type { RawIo } from '../datapath/raw-io.js';
import { READABLE, WRITABLE } from '../datapath/stripe-io.js';
import type { StripeEngine } from '../datapath/stripe-engine.js';
import type { SpanRepair, StripeIntegrity, StripeIntegrityEvent } from '../datapath/stripe-integrity.js';
import type { IntegrityCount, PeekableStore, WriteBackStore } from './checksum-io.js';
import { RateLimitedLog } from './log.js';
import { resolveStripeSpan, type EntrySpan } from './parity-resolve.js';
import { checksumMatches, INTEGRITY_BLOCK_BYTES, storedSums, type ChecksumStore } from './types.js';

const BLOCK = INTEGRITY_BLOCK_BYTES;
/** Checksums written per store call when a large range is zeroed (256 MiB of element). */
const SUMS_BATCH = 65536;
/** Bytes read back per step when replay's ranges are recomputed. */
const RECOMPUTE_STEP_BYTES = 1024 * 1024;

export interface ParityIntegrityDeps {
  readonly store: ChecksumStore;
  readonly stripe: StripeEngine;
  readonly raw: RawIo;
  readonly count: IntegrityCount;
  readonly log: (line: string) => void;
  readonly volume: string;
  readonly crc32cBlocks?: Crc32cBlocks;
}

export class ParityIntegrity implements StripeIntegrity {
  readonly crc32cBlocks: Crc32cBlocks;
  private readonly log: RateLimitedLog;
  /** Stored checksums of one peek (verify, stored()); used and dropped before anything awaits. */
  private peekScratch = new Uint32Array(64);

  constructor(private readonly d: ParityIntegrityDeps) {
    this.crc32cBlocks = d.crc32cBlocks ?? blockChecksums().crc32cBlocks;
    this.log = new RateLimitedLog(d.log, d.volume);
    const g = d.stripe.io.vol.g;
    if (g.chunkBytes % BLOCK !== 0) throw new DataPathError('EINVAL', `${d.volume}: chunk ${g.chunkBytes} is not a multiple of the ${BLOCK}-byte checksum block`);
  }

  get store(): ChecksumStore {
    return this.d.store;
  }

  private get io() {
    return this.d.stripe.io;
  }

  private element(role: number): number {
    const el = this.io.vol.elements[role];
    if (el === undefined) throw new DataPathError('EINVAL', `${this.d.volume}: no role ${role}`);
    return el;
  }

  /** Block number (from the element's data area) of element offset `off` of `role`; whole blocks only. */
  private block(role: number, elementOffsetBytes: number, lengthBytes: number): number {
    const rel = elementOffsetBytes - this.io.vol.g.dataOffsets[role]!;
    if (!(rel >= 0 && rel % BLOCK === 0 && lengthBytes % BLOCK === 0)) {
      throw new DataPathError('EINVAL', `${this.d.volume}: role ${role} range [${elementOffsetBytes}, +${lengthBytes}) is not whole ${BLOCK}-byte blocks of the data area`);
    }
    return rel / BLOCK;
  }

  async record(role: number, elementOffsetBytes: number, lengthBytes: number, bytes: Uint8Array | null): Promise<void> {
    const first = this.block(role, elementOffsetBytes, lengthBytes);
    if (bytes !== null) {
      if (bytes.length !== lengthBytes) throw new DataPathError('EINVAL', `${this.d.volume}: ${bytes.length} bytes recorded for ${lengthBytes}`);
      return this.d.store.write(this.element(role), first, storedSums(this.crc32cBlocks, bytes));
    }
    // Zeroed: no checksum (a sparse, trimmed range stays unverified, as on raid1).
    const blocks = lengthBytes / BLOCK;
    const zeros = new Uint32Array(Math.min(blocks, SUMS_BATCH));
    for (let b = 0; b < blocks; b += SUMS_BATCH) await this.d.store.write(this.element(role), first + b, zeros.subarray(0, Math.min(SUMS_BATCH, blocks - b)));
  }

  recordSums(role: number, elementOffsetBytes: number, sums: Uint32Array): Promise<void> {
    return this.d.store.write(this.element(role), this.block(role, elementOffsetBytes, sums.length * BLOCK), sums);
  }

  async stored(role: number, elementOffsetBytes: number, lengthBytes: number): Promise<Uint32Array | null> {
    const first = this.block(role, elementOffsetBytes, lengthBytes);
    const n = lengthBytes / BLOCK;
    const out = new Uint32Array(n);
    const store = this.d.store as PeekableStore;
    if (store.peek?.(this.element(role), first, n, out) === true) return out;
    return this.d.store.read(this.element(role), first, n).catch(() => null);
  }

  async writeBack(): Promise<void> {
    const store = this.d.store as WriteBackStore;
    await Promise.all(this.io.vol.elements.map(async (el, role) => {
      const s = this.io.state(role);
      if (s < WRITABLE) return;
      try {
        await (store.writeBack !== undefined ? store.writeBack(el) : store.flush(el));
      } catch (err) {
        if (this.io.state(role) !== s) return; // an element that failed meanwhile has nothing to keep
        // Its checksums would no longer describe its data: it leaves the volume (rethrows a non-device error).
        this.io.fail(role, err);
        this.note(`volume ${this.d.volume}: element index ${el} failed: its checksum pages could not be written: ${(err as Error).message}`);
        this.io.checkSurvives('checksum write-back');
      }
    }));
  }

  count(role: number, event: StripeIntegrityEvent, blocks: number, volumeOffsetBytes?: number): void {
    this.d.count(this.element(role), event, blocks, volumeOffsetBytes);
  }

  note(line: string): void {
    this.log.line(line);
  }

  async recompute(ranges: readonly { readonly role: number; readonly elementOffsetBytes: number; readonly lengthBytes: number }[]): Promise<void> {
    for (const r of ranges) {
      if (this.io.state(r.role) < WRITABLE) continue;
      // Whole blocks around the range (a record is whole blocks when the volume has integrity; widening is harmless).
      const rel = r.elementOffsetBytes - this.io.vol.g.dataOffsets[r.role]!;
      const start = r.elementOffsetBytes - (rel % BLOCK);
      const end = r.elementOffsetBytes + r.lengthBytes + ((BLOCK - ((rel + r.lengthBytes) % BLOCK)) % BLOCK);
      for (let at = start; at < end; at += RECOMPUTE_STEP_BYTES) {
        const len = Math.min(RECOMPUTE_STEP_BYTES, end - at);
        await this.record(r.role, at, len, await this.d.raw.read(this.element(r.role), at, len));
      }
    }
    await this.writeBack();
    this.note(`volume ${this.d.volume}: checksums of ${ranges.length} range(s) replayed from the stripe journal recomputed`);
  }

  /**
   * Checks a client read's bytes (whole blocks of volume [offset, +view.length)) against the
   * stored checksums of the units they came from; on a mismatch replaces them with bytes rebuilt
   * from parity and repairs the units, or throws EIO. Cached checksums answer without a promise.
   */
  verify(offsetBytes: number, view: Uint8Array, _gateHeld: boolean): Promise<void> | undefined {
    if (offsetBytes % BLOCK !== 0 || view.length % BLOCK !== 0) throw new DataPathError('EINVAL', `${this.d.volume}: integrity range [${offsetBytes}, +${view.length}) is not whole ${BLOCK}-byte blocks`);
    if (view.length === 0) return undefined;
    const crcs = new Uint32Array(view.length / BLOCK);
    this.crc32cBlocks(view, BLOCK, crcs);
    // The common case: every chunk's checksums cached and matching, checked without building extent lists.
    if (this.cachedPass(offsetBytes, view.length, crcs)) return undefined;
    // Chunks on a role that is not readable were rebuilt from parity: stripe-verify.ts checked their inputs.
    const extents = mapParityData(this.io.vol.g, offsetBytes, view.length).filter((x) => this.io.state(x.role) === READABLE);
    return this.verifyStored(offsetBytes, view, crcs, extents);
  }

  /** True when the store answers for every readable chunk of the range from its cache and every block matches. */
  private cachedPass(offsetBytes: number, lengthBytes: number, crcs: Uint32Array): boolean {
    const store = this.d.store as PeekableStore;
    if (store.peek === undefined) return false;
    const g = this.io.vol.g;
    const end = offsetBytes + lengthBytes;
    for (let at = offsetBytes; at < end; ) {
      const chunk = Math.floor(at / g.chunkBytes);
      const within = at - chunk * g.chunkBytes;
      const len = Math.min(end - at, g.chunkBytes - within);
      const row = Math.floor(chunk / g.k);
      const role = indexRole(g, row, chunk % g.k);
      if (this.io.state(role) === READABLE) {
        const n = len / BLOCK;
        if (this.peekScratch.length < n) this.peekScratch = new Uint32Array(n);
        const stored = this.peekScratch.subarray(0, n);
        const elementAt = elementOffset(g, role, row, within);
        if (!store.peek(this.element(role), this.block(role, elementAt, len), n, stored)) return false;
        if (mismatchIn(stored, crcs, (at - offsetBytes) / BLOCK)) return false;
      }
      at += len;
    }
    return true;
  }

  private async verifyStored(offsetBytes: number, view: Uint8Array, crcs: Uint32Array, extents: ReturnType<typeof mapParityData>): Promise<void> {
    const stored = await Promise.all(extents.map((x) => this.stored(x.role, x.elementOffsetBytes, x.lengthBytes)));
    // Unreadable checksum pages send the extent down the repair path (the other units' pages and parity).
    const bad = extents.filter((x, i) => stored[i] === null || mismatchIn(stored[i]!, crcs, x.bufferOffsetBytes / BLOCK));
    if (bad.length > 0) await this.repairExtents(offsetBytes, view, bad);
  }

  /** Each bad chunk extent: its row span repaired under the row lock, the client's bytes taken from the result. */
  private async repairExtents(offsetBytes: number, into: Uint8Array, extents: ReturnType<typeof mapParityData>): Promise<void> {
    const g = this.io.vol.g;
    for (const x of extents) {
      const volumeAt = offsetBytes + x.bufferOffsetBytes;
      const chunk = Math.floor(volumeAt / g.chunkBytes);
      const row = Math.floor(chunk / g.k);
      const j = chunk % g.k;
      const a = volumeAt - chunk * g.chunkBytes;
      const r = await this.d.stripe.underRow(row, () => this.repairSpan(row, a, a + x.lengthBytes, [j]));
      const bytes = r.bytes[j];
      if (bytes === null || bytes === undefined) throw new DataPathError('EIO', `${this.d.volume}: volume offset ${volumeAt}: its unit became unreadable during the check`);
      into.set(bytes, x.bufferOffsetBytes);
    }
  }

  async repairSpan(row: number, a: number, b: number, needed: readonly number[]): Promise<SpanRepair> {
    const g = this.io.vol.g;
    const len = b - a;
    const blocks = len / BLOCK;
    const roles = Array.from({ length: g.k + g.np }, (_, e) => indexRole(g, row, e));
    const entries: EntrySpan[] = await Promise.all(roles.map(async (role) => {
      if (this.io.state(role) !== READABLE) return { bytes: null, stored: null };
      const at = elementOffset(g, role, row, a);
      try {
        const [bytes, stored] = await Promise.all([this.d.raw.read(this.element(role), at, len), this.stored(role, at, len)]);
        return { bytes, stored };
      } catch (err) {
        this.note(`volume ${this.d.volume}: role ${role} row ${row}: no copy to verify: ${(err as Error).message}`);
        return { bytes: null, stored: null };
      }
    }));
    const res = resolveStripeSpan(g.k, g.np, entries, blocks, this.crc32cBlocks);
    const volumeAt = (e: number, block: number): number | undefined => (e < g.k ? volumeOffset(g, row, e, a + block * BLOCK) : undefined);
    const rewrites: Promise<void>[] = [];
    res.fixes.forEach((fixes, e) => {
      for (const f of fixes) {
        this.count(roles[e]!, 'mismatches', 1, volumeAt(e, f.block));
        rewrites.push(this.rewrite(roles[e]!, elementOffset(g, roles[e]!, row, a + f.block * BLOCK), f.data ? entries[e]!.bytes!.subarray(f.block * BLOCK, (f.block + 1) * BLOCK) : null, f.sum, volumeAt(e, f.block)));
      }
    });
    res.lost.forEach((lost, e) => {
      for (const block of lost) this.count(roles[e]!, 'unrecoverable', 1, volumeAt(e, block));
    });
    const failed = (await Promise.allSettled(rewrites)).find((x): x is PromiseRejectedResult => x.status === 'rejected');
    if (failed !== undefined) this.note(`volume ${this.d.volume}: rewriting a bad block failed: ${String(failed.reason)}`);
    const lostNeeded = needed.filter((e) => res.lost[e]!.length > 0);
    if (lostNeeded.length > 0) {
      this.note(`volume ${this.d.volume}: row ${row}: ${lostNeeded.map((e) => `${res.lost[e]!.length} block(s) of index ${e}`).join(', ')} failed their checksums and cannot be rebuilt: EIO`);
      throw new DataPathError('EIO', `${this.d.volume}: row ${row}: blocks failed their checksums and parity cannot rebuild them`);
    }
    return { bytes: entries.map((x) => x.bytes), bad: res.bad, fixed: res.fixes.map((f) => f.map((x) => x.block)), lost: res.lost };
  }

  /** Writes a rebuilt block (or only its checksum) over a unit; counts it repaired once both are there. */
  private async rewrite(role: number, elementOffsetBytes: number, data: Uint8Array | null, sum: number, volumeOffsetBytes: number | undefined): Promise<void> {
    const el = this.element(role);
    await Promise.all([data === null ? undefined : this.d.raw.write(el, elementOffsetBytes, data), this.recordSums(role, elementOffsetBytes, Uint32Array.of(sum))]);
    this.count(role, 'repaired', 1, volumeOffsetBytes);
    this.note(`volume ${this.d.volume}: element index ${el} at ${elementOffsetBytes} failed its checksum; ${data === null ? 'checksum' : 'data'} rewritten from parity`);
  }
}

function mismatchIn(stored: Uint32Array, crcs: Uint32Array, at: number): boolean {
  for (let i = 0; i < stored.length; i++) if (!checksumMatches(stored[i]!, crcs[at + i]!)) return true;
  return false;
}
