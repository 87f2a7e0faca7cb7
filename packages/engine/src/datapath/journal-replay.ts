// Journal replay when a raid5/6 volume is bound (after a crash: before any client I/O), and the
// checkpoint writer. A transaction is COMMITTED when every participant that is active now holds a
// valid record of it: the in-place writes start only after all records are written and flushed,
// so a transaction missing a record on a present element never touched the data area, and one
// whose records are all there may have been cut half-way. Committed transactions at or above the
// checkpoint are applied again, in sequence order (idempotent: the records carry the new bytes of
// data and parity alike), so data and parity agree whatever the crash interrupted.
import { crc32c } from '@onestack/native';
import { DataPathError } from './errno.js';
import { decodeJournalHeader, decodeRecordHeader, encodeJournalHeader, JOURNAL_BLOCK_BYTES, RecordKind, recordSpanBytes, sameArray, type RecordHeader } from './journal-format.js';
import type { JournalArea } from './journal-area.js';
import { rowCount } from './map-parity.js';
import { READABLE, WRITABLE, type StripeIo } from './stripe-io.js';

/**
 * New sequences after a replay start this far above the highest one seen: an element that was
 * away (failed) may hold records of transactions that no present element saw, at most as many as
 * were in flight at the crash; the gap keeps their numbers below every new transaction's.
 */
export const SEQ_GAP_AT_OPEN = 2 ** 20;

interface Found {
  readonly h: RecordHeader;
  readonly payload: Uint8Array | null;
}

export interface ReplayResult {
  /** The checkpoint written: new transactions start here. */
  readonly seq: number;
  /** Transactions applied again. */
  readonly applied: number;
  /** Transactions dropped because a present participant lacked its record (never reached the data area). */
  readonly dropped: number;
  /** Element ranges written again (integrity recomputes their checksums: integrity/parity-io.ts). */
  readonly rewritten: readonly ReplayedRange[];
}

/** A range a replayed record wrote (bounded by the rings' size: one per record). */
export interface ReplayedRange {
  readonly role: number;
  readonly elementOffsetBytes: number;
  readonly lengthBytes: number;
}

/**
 * Flushes the writable roles, then writes checkpoint `seq` into their journal headers (FUA), in the
 * volume's own journal area unless `area` names another (a reshape's hand-over). Lost elements are
 * failed; EIO if the volume cannot survive.
 */
export async function writeCheckpoint(io: StripeIo, slot: number, seq: number, area: JournalArea = io.vol.journal): Promise<void> {
  const roles = io.roles(WRITABLE);
  await io.settle(roles.map((r) => [r, io.flush(r)] as const));
  io.checkSurvives('checkpoint');
  encodeJournalHeader(io.v.slab.view(slot, 0, JOURNAL_BLOCK_BYTES), { arrayId: io.vol.arrayId, checkpointSeq: seq });
  const live = io.roles(WRITABLE);
  await io.settle(live.map((r) => [r, io.write(r, area.headerOffsetBytes, JOURNAL_BLOCK_BYTES, slot, 0, true)] as const));
  io.checkSurvives('checkpoint');
}

/** Reads [offset, +length) of an element through `slot`, piece by piece, into a new buffer. */
async function readElement(io: StripeIo, role: number, slot: number, offsetBytes: number, lengthBytes: number): Promise<Uint8Array> {
  const out = new Uint8Array(lengthBytes);
  const piece = io.v.params.slotBytes;
  for (let at = 0; at < lengthBytes; at += piece) {
    const len = Math.min(piece, lengthBytes - at);
    await io.read(role, offsetBytes + at, len, slot, 0);
    out.set(io.v.slab.view(slot, 0, len), at);
  }
  return out;
}

/** Valid records of this array in one element's ring (payload CRC checked), each with its bytes. */
function scanRing(io: StripeIo, role: number, ring: Uint8Array, fromSeq: number): Found[] {
  const g = io.vol.g;
  const dataEnd = g.dataOffsets[role]! + rowCount(g) * g.chunkBytes;
  const found: Found[] = [];
  for (let at = 0; at + JOURNAL_BLOCK_BYTES <= ring.length; ) {
    const h = decodeRecordHeader(ring.subarray(at, at + JOURNAL_BLOCK_BYTES), io.vol.arrayId);
    const span = h === null ? 0 : recordSpanBytes(h.kind, h.lengthBytes);
    const sane = h !== null && h.role === role && h.width === g.n && h.participants.includes(role) && at + span <= ring.length &&
      h.elementOffsetBytes >= g.dataOffsets[role]! && h.elementOffsetBytes + h.lengthBytes <= dataEnd;
    if (!sane) {
      at += JOURNAL_BLOCK_BYTES;
      continue;
    }
    const payload = h.kind === RecordKind.DATA ? ring.subarray(at + JOURNAL_BLOCK_BYTES, at + JOURNAL_BLOCK_BYTES + h.lengthBytes) : null;
    if (payload !== null && crc32c(payload) !== h.payloadCrc) {
      at += JOURNAL_BLOCK_BYTES; // torn: the transaction did not commit
      continue;
    }
    if (h.seq >= fromSeq) found.push({ h, payload: payload === null ? null : payload.slice() });
    at += span;
  }
  return found;
}

/** A read of one element's journal; a device error fails the element (null) unless the volume cannot spare it. */
async function readJournal(io: StripeIo, role: number, slot: number, offsetBytes: number, lengthBytes: number): Promise<Uint8Array | null> {
  try {
    return await readElement(io, role, slot, offsetBytes, lengthBytes);
  } catch (err) {
    io.fail(role, err);
    io.checkSurvives('journal replay');
    return null;
  }
}

/** Highest checkpoint among the journal headers of `roles` (0 when none is ours). */
async function readCheckpoint(io: StripeIo, roles: readonly number[], slot: number): Promise<number> {
  let seq = 0;
  for (const role of roles) {
    const block = await readJournal(io, role, slot, io.vol.journal.headerOffsetBytes, JOURNAL_BLOCK_BYTES);
    const h = block === null ? null : decodeJournalHeader(block);
    if (h !== null && sameArray(h.arrayId, io.vol.arrayId)) seq = Math.max(seq, h.checkpointSeq);
  }
  return seq;
}

async function applyRecord(io: StripeIo, f: Found, slot: number): Promise<void> {
  const { h } = f;
  if (f.payload === null) return io.zero(h.role, h.elementOffsetBytes, h.lengthBytes);
  const piece = io.v.params.slotBytes;
  for (let at = 0; at < h.lengthBytes; at += piece) {
    const len = Math.min(piece, h.lengthBytes - at);
    io.v.slab.view(slot, 0, len).set(f.payload.subarray(at, at + len));
    await io.write(h.role, h.elementOffsetBytes + at, len, slot, 0);
  }
}

/**
 * Replays the journal of a volume (see the file comment); ends with a fresh checkpoint on every
 * element. `beforeCheckpoint` runs between the last re-applied record and that checkpoint.
 */
export async function replayJournal(io: StripeIo, slot: number, beforeCheckpoint?: (rewritten: readonly ReplayedRange[]) => Promise<void>): Promise<ReplayResult> {
  io.checkSurvives('journal replay');
  const scanned = io.roles(WRITABLE);
  const fromSeq = await readCheckpoint(io, scanned, slot);
  const byRole = new Map<number, Found[]>();
  let maxSeq = fromSeq - 1;
  for (const role of scanned) {
    const ring = await readJournal(io, role, slot, io.vol.journal.ringOffsetBytes, io.vol.journal.ringBytes);
    if (ring === null) continue;
    const found = scanRing(io, role, ring, fromSeq);
    byRole.set(role, found);
    for (const f of found) maxSeq = Math.max(maxSeq, f.h.seq);
  }
  const txns = new Map<number, Found[]>();
  for (const found of byRole.values()) for (const f of found) txns.set(f.h.seq, [...(txns.get(f.h.seq) ?? []), f]);
  let applied = 0;
  let dropped = 0;
  const rewritten: ReplayedRange[] = [];
  for (const seq of [...txns.keys()].sort((a, b) => a - b)) {
    const records = txns.get(seq)!;
    const holders = new Set(records.map((f) => f.h.role));
    const committed = records[0]!.h.participants.every((role) => io.state(role) !== READABLE || holders.has(role));
    if (!committed) {
      dropped++;
      continue;
    }
    // One record at a time: the journal slot is the only buffer replay uses.
    for (const f of records) {
      const [failed] = await io.settle([[f.h.role, applyRecord(io, f, slot)]]);
      if (failed !== undefined) io.checkSurvives('journal replay');
      else rewritten.push({ role: f.h.role, elementOffsetBytes: f.h.elementOffsetBytes, lengthBytes: f.h.lengthBytes });
    }
    applied++;
  }
  const next = Math.max(fromSeq, maxSeq + 1) + SEQ_GAP_AT_OPEN;
  if (!Number.isSafeInteger(next)) throw new DataPathError('EIO', `${io.vol.name}: journal sequence ${next} overflows`);
  if (beforeCheckpoint !== undefined && rewritten.length > 0) await beforeCheckpoint(rewritten);
  await writeCheckpoint(io, slot, next);
  return { seq: next, applied, dropped, rewritten };
}
