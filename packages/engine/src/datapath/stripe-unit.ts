// One stripe unit (a row's bytes [a, b), see map-parity.ts) written or read by the stripe engine,
// under the row lock its caller holds. A write: plan (stripe-plan.ts) -> read what the plan needs
// -> compute parity in the middle stage -> journal the new bytes of every role written, flush
// them -> write in place -> end the journal transaction. An element that fails on the way is
// marked failed and the unit starts over with the states as they are now (bounded: each retry
// follows a newly failed element); the write is acknowledged if the volume still has every byte.
import { crc32c } from '@onestack/native';
import { ComputeMode } from './compute-layout.js';
import { DataPathError } from './errno.js';
import { encodeRecordHeader, JOURNAL_BLOCK_BYTES, RecordKind, recordSpanBytes, type RecordKindCode } from './journal-format.js';
import { elementOffset, indexRole, volumeOffset, type StripeUnit } from './map-parity.js';
import { bufferData, bufferHeader, bufferSlot, type Scratch, type ScratchPool, type StripeIo } from './stripe-io.js';
import type { GroupFlush, StripeJournal } from './stripe-journal.js';
import type { StripeIntegrity } from './stripe-integrity.js';
import { planRead, planWrite, type WritePlan } from './stripe-plan.js';
import { readsVerified } from './stripe-verify.js';

export interface UnitContext {
  readonly io: StripeIo;
  readonly scratch: ScratchPool;
  readonly journal: StripeJournal;
  readonly flusher: GroupFlush;
  readonly faults: StripeFaults | null;
  /** The volume's checksums (stripe-integrity.ts); null without integrity. */
  readonly integrity: StripeIntegrity | null;
}

/**
 * Test seam for crash tests: after a unit's journal records are flushed, `afterJournal` may name
 * the roles whose in-place writes still go ahead; the unit then stops for good, as if the process
 * died there. null (the default) lets every write go ahead.
 */
export interface StripeFaults {
  afterJournal(row: number, roles: readonly number[]): readonly number[] | null;
}

/** Where a write's new bytes come from: copies volume bytes [offset, +into.length) into `into`. */
export interface WriteSource {
  copyTo(volumeOffsetBytes: number, into: Uint8Array): void;
}

export const ZERO_SOURCE: WriteSource = { copyTo: (_off, into) => into.fill(0) };

/** A source over consecutive buffers (NBD payload slots, or one embedding-API array) from `offsetBytes`. */
export function chunkSource(offsetBytes: number, chunks: readonly Uint8Array[]): WriteSource {
  const starts: number[] = [];
  let at = 0;
  for (const c of chunks) {
    starts.push(at);
    at += c.length;
  }
  return {
    copyTo(volumeOffsetBytes, into) {
      let rel = volumeOffsetBytes - offsetBytes;
      if (!(rel >= 0 && rel + into.length <= at)) throw new RangeError(`write source: [${rel}, +${into.length}) outside [0, ${at})`);
      let i = starts.findIndex((s, n) => rel < s + chunks[n]!.length);
      for (let done = 0; done < into.length; i++) {
        const c = chunks[i]!;
        const from = rel - starts[i]!;
        const len = Math.min(c.length - from, into.length - done);
        into.set(c.subarray(from, from + len), done);
        done += len;
        rel += len;
      }
    },
  };
}

/** Per stripe entry: the role holding it in this row (old-data entries map to their data index). */
function entryRole(ctx: UnitContext, row: number, e: number): number {
  const g = ctx.io.vol.g;
  return indexRole(g, row, e < g.k + g.np ? e : e - g.k - g.np);
}

function view(ctx: UnitContext, s: Scratch, buffer: number, len: number): Uint8Array {
  return ctx.io.v.slab.view(bufferSlot(s, buffer), bufferData(s, buffer), len);
}

/** Reads entries into their buffers; false when an element failed (the caller re-plans). */
async function readEntries(ctx: UnitContext, u: StripeUnit, s: Scratch, buf: readonly number[], entries: readonly number[]): Promise<boolean> {
  const len = u.b - u.a;
  const failed = await ctx.io.settle(entries.map((e) => {
    const role = entryRole(ctx, u.row, e);
    return [role, ctx.io.read(role, elementOffset(ctx.io.vol.g, role, u.row, u.a), len, bufferSlot(s, buf[e]!), bufferData(s, buf[e]!))] as const;
  }));
  return failed.length === 0;
}

/** Fills a compute block with the entries whose buffers hold meaningful bytes, runs it. */
async function compute(ctx: UnitContext, s: Scratch, len: number, mode: 1 | 2, buf: readonly number[], entries: readonly number[], fails: readonly number[], crcs: readonly number[]): Promise<void> {
  const g = ctx.io.vol.g;
  const p = ctx.io.params(s.block).begin(mode, len, g.k, g.np);
  for (const e of entries) p.entry(e, bufferSlot(s, buf[e]!), bufferData(s, buf[e]!));
  p.fails(fails[0] ?? -1, fails[1] ?? -1);
  for (const e of crcs) p.crc(e);
  await ctx.io.compute(p, len);
}

function copyNew(ctx: UnitContext, u: StripeUnit, s: Scratch, plan: WritePlan, src: WriteSource): void {
  const g = ctx.io.vol.g;
  for (const j of u.touched) src.copyTo(volumeOffset(g, u.row, j, u.a), view(ctx, s, plan.buf[j]!, u.b - u.a));
}

/** Runs one attempt of a planned write; false when a read failed (states changed: plan again). */
async function attemptWrite(ctx: UnitContext, u: StripeUnit, src: WriteSource, plan: WritePlan, s: Scratch): Promise<boolean> {
  const g = ctx.io.vol.g;
  const len = u.b - u.a;
  const data = Array.from({ length: g.k }, (_, j) => j);
  if (plan.kind !== 'recon') copyNew(ctx, u, s, plan, src);
  if (!(await readEntries(ctx, u, s, plan.buf, plan.reads))) return false;
  // Parity is never computed from bytes that fail their checksums: repaired first, then read again.
  const inputs = plan.reads.map((e) => ({ index: e < g.k + g.np ? e : e - g.k - g.np, view: view(ctx, s, plan.buf[e]!, len) }));
  if (!(await readsVerified(ctx, u.row, u.a, u.b, inputs))) return false;
  let crcOf: (e: number) => number;
  if (plan.kind === 'direct') {
    crcOf = (e) => crc32c(view(ctx, s, plan.buf[e]!, len));
  } else {
    if (plan.kind === 'recon') {
      const parityIn = plan.reads.filter((e) => e >= g.k);
      await compute(ctx, s, len, ComputeMode.RECONSTRUCT, plan.buf, [...data, ...parityIn], plan.lost, []);
      copyNew(ctx, u, s, plan, src);
    }
    const mode = plan.kind === 'rmw' ? ComputeMode.RMW : ComputeMode.RECONSTRUCT;
    const entries = plan.kind === 'rmw' ? plan.buf.flatMap((b, e) => (b >= 0 ? [e] : [])) : [...data, ...plan.parityOut];
    await compute(ctx, s, len, mode, plan.buf, entries, mode === ComputeMode.RECONSTRUCT ? plan.parityOut : [], plan.writes);
    const p = ctx.io.params(s.block);
    crcOf = (e) => p.crcOf(e);
  }
  await commit(ctx, u, s, plan, crcOf);
  return true;
}

/** A journal record about to be written: its header block sits in `slot` at `header`, its payload (DATA) right after. */
export interface PendingRecord {
  readonly role: number;
  readonly slot: number;
  readonly header: number;
  readonly kind: RecordKindCode;
  readonly elementOffsetBytes: number;
  readonly lengthBytes: number;
  readonly payloadCrc: number;
  /** The in-place write (or zeroing), once the journal is durable. */
  readonly inPlace: () => Promise<void>;
}

/**
 * One journal transaction (see the file comment): records, shared flush, in-place writes, end.
 * Elements that fail on the way are failed; EIO when the volume lost too much.
 */
export async function journaled(ctx: UnitContext, row: number, records: readonly PendingRecord[]): Promise<void> {
  const { io, journal } = ctx;
  const participants = records.map((r) => r.role);
  const spans = records.map((r) => ({ role: r.role, bytes: recordSpanBytes(r.kind, r.lengthBytes) }));
  const txn = await journal.begin(spans);
  try {
    for (const r of records) {
      encodeRecordHeader(io.v.slab.view(r.slot, r.header, JOURNAL_BLOCK_BYTES), {
        kind: r.kind, arrayId: io.vol.arrayId, seq: txn.seq, role: r.role, width: io.vol.g.n, participants,
        elementOffsetBytes: r.elementOffsetBytes, lengthBytes: r.lengthBytes, payloadCrc: r.payloadCrc,
      });
    }
    const written = (r: PendingRecord): number => JOURNAL_BLOCK_BYTES + (r.kind === RecordKind.DATA ? r.lengthBytes : 0);
    const lost1 = await io.settle(records.map((r) => [r.role, io.write(r.role, io.vol.journal.ringOffsetBytes + txn.at.get(r.role)!, written(r), r.slot, r.header)] as const));
    const journaledRecords = records.filter((r) => !lost1.includes(r.role));
    const lost2 = await io.settle(journaledRecords.map((r) => [r.role, ctx.flusher.flush(r.role)] as const));
    io.checkSurvives('journal write');
    const durable = journaledRecords.filter((r) => !lost2.includes(r.role));
    const crash = ctx.faults?.afterJournal(row, durable.map((r) => r.role)) ?? null;
    // Checksums once the journal holds the bytes: a crash from here on is replayed, and replay recomputes them.
    if (ctx.integrity !== null) await recordChecksums(ctx, durable);
    const inPlace = crash === null ? durable : durable.filter((r) => crash.includes(r.role));
    await io.settle(inPlace.map((r) => [r.role, r.inPlace()] as const));
    if (crash !== null) await new Promise<never>(() => undefined); // the simulated crash: this unit never ends
    io.checkSurvives('write');
  } finally {
    journal.end(txn);
  }
}

/** Records the checksums of each record's bytes (a ZERO record clears them) on its element; a store error fails that element. */
async function recordChecksums(ctx: UnitContext, records: readonly PendingRecord[]): Promise<void> {
  const it = ctx.integrity!;
  const { io } = ctx;
  await io.settle(records.map((r) => {
    const bytes = r.kind === RecordKind.DATA ? io.v.slab.view(r.slot, r.header + JOURNAL_BLOCK_BYTES, r.lengthBytes) : null;
    return [r.role, it.record(r.role, r.elementOffsetBytes, r.lengthBytes, bytes)] as const;
  }));
  io.checkSurvives('checksum write');
}

/** The data unit's records: one per stripe index written, its buffer holding header then new bytes. */
function commit(ctx: UnitContext, u: StripeUnit, s: Scratch, plan: WritePlan, crcOf: (e: number) => number): Promise<void> {
  const { io } = ctx;
  const g = io.vol.g;
  const len = u.b - u.a;
  return journaled(ctx, u.row, plan.writes.map((e) => {
    const role = entryRole(ctx, u.row, e);
    const slot = bufferSlot(s, plan.buf[e]!);
    const header = bufferHeader(s, plan.buf[e]!);
    const at = elementOffset(g, role, u.row, u.a);
    return { role, slot, header, kind: RecordKind.DATA, elementOffsetBytes: at, lengthBytes: len, payloadCrc: crcOf(e), inPlace: () => io.write(role, at, len, slot, header + JOURNAL_BLOCK_BYTES) };
  }));
}

/** Writes one unit (the caller holds its row lock). */
export async function writeUnit(ctx: UnitContext, u: StripeUnit, src: WriteSource): Promise<void> {
  const g = ctx.io.vol.g;
  for (let attempt = 0; attempt <= g.np + 1; attempt++) {
    const plan = planWrite(g, u.touched, (e) => ctx.io.state(indexRole(g, u.row, e)));
    const s = await ctx.scratch.acquire(plan.buffers, u.b - u.a);
    try {
      if (await attemptWrite(ctx, u, src, plan, s)) return;
    } finally {
      ctx.scratch.release(s);
    }
  }
  throw new DataPathError('EIO', `${ctx.io.vol.name}: row ${u.row}: elements kept failing during the write`);
}

/** Where a read's bytes go: volume offset `volumeOffsetBytes` is byte `slotOffset` of `slot`. */
export interface ReadTarget {
  readonly slot: number;
  readonly slotOffset: number;
  readonly volumeOffsetBytes: number;
}

/** Reads one unit's touched data (the caller holds the row lock when elements are lost). */
export async function readUnit(ctx: UnitContext, u: StripeUnit, dst: ReadTarget): Promise<void> {
  const { io } = ctx;
  const g = io.vol.g;
  const len = u.b - u.a;
  const at = (j: number): number => dst.slotOffset + volumeOffset(g, u.row, j, u.a) - dst.volumeOffsetBytes;
  for (let attempt = 0; attempt <= g.np + 1; attempt++) {
    const plan = planRead(g, u.touched, (e) => io.state(indexRole(g, u.row, e)));
    if (plan.direct) {
      const failed = await io.settle(u.touched.map((j) => {
        const role = indexRole(g, u.row, j);
        return [role, io.read(role, elementOffset(g, role, u.row, u.a), len, dst.slot, at(j))] as const;
      }));
      if (failed.length === 0) return;
      continue;
    }
    const buf = Array.from({ length: g.k + g.np }, (_, e) => e);
    const s = await ctx.scratch.acquire(g.k + g.np, len);
    try {
      if (!(await readEntries(ctx, u, s, buf, plan.reads))) continue;
      // A rebuilt read comes only from units that verify (a failing one is repaired, then read again).
      if (!(await readsVerified(ctx, u.row, u.a, u.b, plan.reads.map((e) => ({ index: e, view: view(ctx, s, e, len) }))))) continue;
      const data = buf.slice(0, g.k);
      await compute(ctx, s, len, ComputeMode.RECONSTRUCT, buf, [...data, ...plan.reads.filter((e) => e >= g.k)], plan.lost, []);
      for (const j of u.touched) io.v.slab.view(dst.slot, at(j), len).set(view(ctx, s, j, len));
      return;
    } finally {
      ctx.scratch.release(s);
    }
  }
  throw new DataPathError('EIO', `${io.vol.name}: row ${u.row}: elements kept failing during the read`);
}
