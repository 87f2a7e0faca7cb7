// The raid5/6 stripe engine of one volume (main thread): writes (read-modify-write or
// reconstruct-write per unit, journaled), degraded reads, write-zeroes, flush, journal replay when
// the volume is bound, and the maintenance calls that rebuild and scrub use. Element I/O and the
// parity maths travel the common queue (stripe-io.ts); units of one request run a few at a time,
// each under its row lock. Reads whose chunks are all on active elements never come here: the
// middle stage maps them directly (middle-core.ts planParityRead).
import { DataPathError } from './errno.js';
import { replayJournal, writeCheckpoint, type ReplayedRange, type ReplayResult } from './journal-replay.js';
import { journalArea, sameArea, type JournalAreaName } from './journal-area.js';
import { RecordKind } from './journal-format.js';
import { elementOffset, rowCount, segmentBytesFor, unitsOf } from './map-parity.js';
import { bufferHeader, bufferSlot, WRITABLE, type ScratchPool, type StripeIo, type StripeVolume } from './stripe-io.js';
import { GroupFlush, StripeJournal } from './stripe-journal.js';
import { RowLock } from './stripe-lock.js';
import type { StripeIntegrity } from './stripe-integrity.js';
import { checkSpan, rebuildSpan, type StripeCheck } from './stripe-maint.js';
import type { StripeRoleBlocks } from './stripe-maint-verify.js';
import { chunkSource, journaled, readUnit, writeUnit, ZERO_SOURCE, type StripeFaults, type UnitContext, type WriteSource } from './stripe-unit.js';

/** Units of one request in flight at once (more wait; the row lock and scratch slots bound the rest). */
const UNITS_IN_FLIGHT = 16;
/** Journal records carry at most this much (a record must fit the ring with room to spare). */
const SEGMENT_MAX_BYTES = 512 * 1024;
/** Full rows zeroed by one journal transaction. */
const ZERO_ROWS_BYTES_MAX = 1024 * 1024 * 1024;

export class StripeEngine implements UnitContext {
  readonly journal: StripeJournal;
  readonly flusher: GroupFlush;
  private readonly lock: RowLock;
  private segment: number;
  private opened: Promise<ReplayResult> | null = null;
  /** Crash-test seam (stripe-unit.ts StripeFaults); null in service. */
  faults: StripeFaults | null = null;
  /** The volume's checksums when it has integrity (integrity/parity-io.ts); set by the data path. */
  integrity: StripeIntegrity | null = null;

  constructor(
    readonly io: StripeIo,
    readonly scratch: ScratchPool,
    waitersMax: number,
    alignBytes: number,
  ) {
    this.lock = new RowLock(waitersMax);
    this.flusher = new GroupFlush((role) => this.io.flush(role));
    // Checksum pages first: the checkpoint's element flush makes them durable, and the records it
    // retires are never replayed again, so their checksums must be on the elements by then.
    this.journal = new StripeJournal(io.vol.g.n, async (seq) => {
      await this.integrity?.writeBack();
      await this.scratch.withJournalSlot((slot) => writeCheckpoint(this.io, slot, seq));
    }, waitersMax, io.vol.journal.ringBytes);
    this.segment = StripeEngine.segmentFor(io.vol, scratch, alignBytes);
  }

  /** Unit length for a volume (0: the scratch slots are too small for its width). */
  static segmentFor(vol: StripeVolume, scratch: ScratchPool, alignBytes: number): number {
    // n buffers for a write or read, n + np for a check: size for the larger.
    return segmentBytesFor(vol.g.n + vol.g.np, vol.g.chunkBytes, scratch.slotBytes, scratch.slotsPerUnit, alignBytes, SEGMENT_MAX_BYTES);
  }

  get segmentBytes(): number {
    return this.segment;
  }

  /** Replays the journal once (the first call does it; a failed replay is tried again at the next call). */
  open(): Promise<ReplayResult> {
    if (this.opened !== null) return this.opened;
    // Integrity: what replay wrote again gets its checksums recomputed before the checkpoint retires its records.
    const recompute = (ranges: readonly ReplayedRange[]): Promise<void> => this.integrity?.recompute(ranges) ?? Promise.resolve();
    const run = this.scratch.withJournalSlot((slot) => replayJournal(this.io, slot, recompute)).then((r) => {
      this.journal.reset(r.seq);
      return r;
    });
    this.opened = run;
    run.catch(() => {
      if (this.opened === run) this.opened = null;
    });
    return run;
  }

  /** Resolves once the journal is replayed; I/O waits for it (an unreplayed journal may hold acknowledged writes). */
  async ready(): Promise<void> {
    await (this.opened ?? this.open());
  }

  /** True when `vol` keeps this engine's width and journal area (else the volume needs a fresh engine: parity-volumes.ts). */
  fits(vol: StripeVolume): boolean {
    const old = this.io.vol;
    return vol.g.n === old.g.n && vol.g.np === old.g.np && sameArea(vol.journal, old.journal);
  }

  /**
   * Every transaction begun so far retired below a durable checkpoint (the caller stopped new
   * writes first if it needs none after); resolves with the next sequence.
   */
  async checkpointAll(): Promise<number> {
    await this.ready();
    return this.journal.retireAll();
  }

  /** Writes checkpoint `seq` into the header of journal area `area` on every writable element (a reshape's hand-over between areas). */
  writeJournalHeader(area: JournalAreaName, seq: number): Promise<void> {
    if (!(Number.isSafeInteger(seq) && seq >= 0)) return Promise.reject(new DataPathError('EINVAL', `${this.io.vol.name}: journal sequence ${seq} is not a u64 we can hold`));
    return this.scratch.withJournalSlot((slot) => writeCheckpoint(this.io, slot, seq, journalArea(area)));
  }

  /** The control plane changed the volume (an element replaced): a role with a new element has no records of ours. */
  rebind(vol: StripeVolume, alignBytes: number): void {
    const old = this.io.vol;
    if (!this.fits(vol)) throw new Error(`${vol.name}: width or journal area changed (${old.g.n} to ${vol.g.n} elements): needs a fresh stripe engine`);
    vol.elements.forEach((e, role) => {
      if (old.elements[role] !== e) this.journal.forgetRole(role);
    });
    this.io.vol = vol;
    this.segment = StripeEngine.segmentFor(vol, this.scratch, alignBytes);
  }


  async write(offsetBytes: number, chunks: readonly Uint8Array[]): Promise<void> {
    await this.ready();
    const len = chunks.reduce((a, c) => a + c.length, 0);
    await this.writeFrom(offsetBytes, len, chunkSource(offsetBytes, chunks));
  }

  private writeFrom(offsetBytes: number, lengthBytes: number, src: WriteSource): Promise<void> {
    return this.rowsOf(unitsOf(this.io.vol.g, offsetBytes, lengthBytes, this.segment), (u) => writeUnit(this, u, src));
  }

  /** Reads [offset, +length) into `slot` at `slotOffset`, rebuilding lost chunks from parity. */
  async read(offsetBytes: number, lengthBytes: number, slot: number, slotOffset: number): Promise<void> {
    await this.ready();
    const dst = { slot, slotOffset, volumeOffsetBytes: offsetBytes };
    await this.rowsOf(unitsOf(this.io.vol.g, offsetBytes, lengthBytes, this.segment), (u) => readUnit(this, u, dst));
  }

  /** WRITE_ZEROES and TRIM: whole rows by one journaled zeroing per element; the partial rows at the ends as writes of zeroes. */
  async writeZeroes(offsetBytes: number, lengthBytes: number): Promise<void> {
    await this.ready();
    const g = this.io.vol.g;
    const rowBytes = g.k * g.chunkBytes;
    const end = offsetBytes + lengthBytes;
    const r0 = Math.ceil(offsetBytes / rowBytes);
    const r1 = Math.min(Math.floor(end / rowBytes), rowCount(g));
    if (r0 >= r1) return this.writeFrom(offsetBytes, lengthBytes, ZERO_SOURCE);
    const batch = Math.max(1, Math.floor(ZERO_ROWS_BYTES_MAX / g.chunkBytes));
    const parts: Promise<void>[] = [this.writeFrom(offsetBytes, r0 * rowBytes - offsetBytes, ZERO_SOURCE), this.writeFrom(r1 * rowBytes, end - r1 * rowBytes, ZERO_SOURCE)];
    for (let r = r0; r < r1; r += batch) parts.push(this.zeroRows(r, Math.min(r1, r + batch)));
    const results = await Promise.allSettled(parts);
    const failed = results.find((x): x is PromiseRejectedResult => x.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
  }

  /** Rows [r0, r1) zeroed on every writable element: one ZERO record each (no payload), then the zeroing. */
  private async zeroRows(r0: number, r1: number): Promise<void> {
    const { io } = this;
    const g = io.vol.g;
    const len = (r1 - r0) * g.chunkBytes;
    const release = await this.lock.acquire(r0, r1);
    try {
      io.checkSurvives('write zeroes');
      const roles = io.roles(WRITABLE);
      const s = await this.scratch.acquire(roles.length, 0);
      try {
        await journaled(this, r0, roles.map((role, i) => {
          const at = elementOffset(g, role, r0, 0);
          return { role, slot: bufferSlot(s, i), header: bufferHeader(s, i), kind: RecordKind.ZERO, elementOffsetBytes: at, lengthBytes: len, payloadCrc: 0, inPlace: () => io.zero(role, at, len) };
        }));
      } finally {
        this.scratch.release(s);
      }
    } finally {
      release();
    }
  }

  /**
   * FLUSH: the journal already made every acknowledged write durable; a checkpoint flushes the
   * elements and records that, so the journal stays short and replay after a crash has little to do.
   */
  async flush(): Promise<void> {
    await this.ready();
    await this.journal.checkpoint();
  }

  /** Rebuild: computes `targetRole`'s bytes for element range [offset, +length) from the other roles and writes them (no journal). */
  async reconstructElementRange(targetRole: number, elementOffsetBytes: number, lengthBytes: number): Promise<void> {
    await this.ready();
    const g = this.io.vol.g;
    if (!(Number.isInteger(targetRole) && targetRole >= 0 && targetRole < g.n)) throw new DataPathError('EINVAL', `${this.io.vol.name}: no role ${targetRole}`);
    const from = elementOffsetBytes - g.dataOffsets[targetRole]!;
    const end = Math.min(from + lengthBytes, rowCount(g) * g.chunkBytes);
    if (!(Number.isSafeInteger(from) && from >= 0 && lengthBytes >= 0)) throw new DataPathError('EINVAL', `${this.io.vol.name}: element range [${elementOffsetBytes}, +${lengthBytes}) is not in the data area`);
    const spans: { row: number; a: number; b: number }[] = [];
    for (let at = from; at < end; ) {
      const row = Math.floor(at / g.chunkBytes);
      const a = at - row * g.chunkBytes;
      const b = Math.min(g.chunkBytes, end - row * g.chunkBytes, (Math.floor(a / this.segment) + 1) * this.segment);
      spans.push({ row, a, b });
      at = row * g.chunkBytes + b;
    }
    await this.rowsOf(spans, (r) => rebuildSpan(this, r, targetRole));
  }

  /** Runs `fn` holding row `row`'s lock (integrity repairs: no stripe write lands between their reads and rewrites). */
  async underRow<T>(row: number, fn: () => Promise<T>): Promise<T> {
    const release = await this.lock.acquire(row, row + 1);
    try {
      return await fn();
    } finally {
      release();
    }
  }

  /** Writes the volume's changed checksum pages (a rebuild's end, before it flushes its targets); nothing without integrity. */
  async writeBackChecksums(): Promise<void> {
    await this.integrity?.writeBack();
  }

  /** Scrub: checks (and with `repair`, fixes) every segment of a row; one verdict for the row (with integrity, its blocks per role). */
  async checkStripe(row: number, repair = false): Promise<StripeCheck> {
    await this.ready();
    const g = this.io.vol.g;
    if (!(Number.isInteger(row) && row >= 0 && row < rowCount(g))) throw new DataPathError('EINVAL', `${this.io.vol.name}: no row ${row}`);
    const release = await this.lock.acquire(row, row + 1);
    try {
      const bad = new Set<number>();
      const blocks = new Map<number, StripeRoleBlocks>();
      let compared = true;
      let repaired = true;
      let mismatchedBytes = 0;
      for (let a = 0; a < g.chunkBytes; a += this.segment) {
        const r = await checkSpan(this, { row, a, b: Math.min(g.chunkBytes, a + this.segment) }, repair);
        compared &&= r.compared;
        mismatchedBytes += r.mismatchedBytes;
        if (!r.ok) repaired &&= r.repaired;
        for (const role of r.badRoles) bad.add(role);
        for (const x of r.byRole ?? []) {
          const sum = blocks.get(x.role) ?? { role: x.role, badBlocks: 0, repairedBlocks: 0, unrecoverableBlocks: 0 };
          sum.badBlocks += x.badBlocks;
          sum.repairedBlocks += x.repairedBlocks;
          sum.unrecoverableBlocks += x.unrecoverableBlocks;
          blocks.set(x.role, sum);
        }
      }
      // Repaired checksums go to their pages now: the scrub's closing flush of the written elements makes them durable.
      if (this.integrity !== null && [...blocks.values()].some((x) => x.repairedBlocks > 0)) await this.integrity.writeBack();
      const byRole = this.integrity === null ? {} : { byRole: [...blocks.values()].sort((x, y) => x.role - y.role) };
      return { compared, ok: bad.size === 0, badRoles: [...bad].sort((x, y) => x - y), mismatchedBytes, repaired: bad.size > 0 && repaired, ...byRole };
    } finally {
      release();
    }
  }

  /** Runs fn over row pieces, a few at once, each under its row's lock. */
  private rowsOf<T extends { row: number }>(spans: readonly T[], fn: (s: T) => Promise<void>): Promise<void> {
    return runBounded(spans, UNITS_IN_FLIGHT, async (s) => {
      const release = await this.lock.acquire(s.row, s.row + 1);
      try {
        await fn(s);
      } finally {
        release();
      }
    });
  }
}

/** Runs fn over items, at most `limit` at once; settles after all started ones (nothing left running), rejects with the first error. */
async function runBounded<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: unknown = null;
  const worker = async (): Promise<void> => {
    while (failure === null && next < items.length) {
      const item = items[next++]!;
      try {
        await fn(item);
      } catch (err) {
        failure ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure !== null) throw failure;
}
