// The stripe journal's pure parts: record and header codecs (round trip; torn, foreign or
// corrupted blocks refused), the per-element ring (wrapping, reuse only below the checkpoint),
// transactions waiting for space until a checkpoint frees it, and shared flushes.
import { describe, expect, it } from 'vitest';
import { arrayIdBytes, decodeJournalHeader, decodeRecordHeader, encodeJournalHeader, encodeRecordHeader, RecordKind, recordSpanBytes } from '../src/datapath/journal-format.js';
import { GroupFlush, JournalRing, StripeJournal } from '../src/datapath/stripe-journal.js';

const ID = arrayIdBytes('0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0');

describe('journal codecs', () => {
  it('round-trips a record header and refuses another array, a flipped bit or a blank block', () => {
    const block = new Uint8Array(4096);
    const r = { kind: RecordKind.DATA, arrayId: ID, seq: 2 ** 40 + 7, role: 33, width: 40, participants: [1, 33, 39], elementOffsetBytes: 2 ** 36 + 4096, lengthBytes: 65536, payloadCrc: 0xdeadbeef } as const;
    encodeRecordHeader(block, r);
    expect(decodeRecordHeader(block, ID)).toEqual({ ...r, arrayId: ID, participants: [1, 33, 39] });
    expect(decodeRecordHeader(block, arrayIdBytes(undefined))).toBeNull();
    block[40] ^= 1;
    expect(decodeRecordHeader(block, ID)).toBeNull();
    expect(decodeRecordHeader(new Uint8Array(4096), ID)).toBeNull();
    expect(() => encodeRecordHeader(block, { ...r, participants: [40] })).toThrow(/participant 40 of 40/);
    expect(recordSpanBytes(RecordKind.DATA, 5000)).toBe(4096 + 8192);
    expect(recordSpanBytes(RecordKind.ZERO, 2 ** 30)).toBe(4096);
  });

  it('round-trips the journal header (the checkpoint) and refuses a torn one', () => {
    const block = new Uint8Array(4096).fill(0xff);
    encodeJournalHeader(block, { arrayId: ID, checkpointSeq: 123_456_789_012 });
    expect(decodeJournalHeader(block)).toEqual({ arrayId: ID, checkpointSeq: 123_456_789_012 });
    expect(block.subarray(64).every((b) => b === 0)).toBe(true);
    block[30] ^= 0x80;
    expect(decodeJournalHeader(block)).toBeNull();
    expect(() => arrayIdBytes('not-a-uuid')).toThrow(/not a UUID/);
  });
});

describe('journal ring and transactions', () => {
  it('places records one after another, wraps, and never overlaps a live record', () => {
    const ring = new JournalRing(100);
    expect(ring.place(40)).toBe(0);
    ring.push(1, 0, 40);
    ring.push(2, 40, 40);
    expect(ring.place(30)).toBe(-1); // 20 left at the end, the start is live
    ring.freeBelow(2);
    expect(ring.place(30)).toBe(0); // wraps before record 2
    ring.push(3, 0, 30);
    expect(ring.place(20)).toBe(-1); // [30, 40) is 10 bytes: too small
    expect(ring.place(10)).toBe(30);
    expect(ring.usedBytes).toBe(100 - 40 + 30);
    ring.freeBelow(10);
    expect(ring.usedBytes).toBe(0);
    expect(ring.place(101)).toBe(-1);
  });

  it('a transaction that finds no room waits for a checkpoint above the records in its way', async () => {
    const persisted: number[] = [];
    const j = new StripeJournal(2, async (seq) => { persisted.push(seq); }, 8, 100);
    j.reset(50);
    const a = await j.begin([{ role: 0, bytes: 60 }, { role: 1, bytes: 60 }]);
    expect(a.seq).toBe(50);
    let got: number | null = null;
    const waiting = j.begin([{ role: 1, bytes: 60 }]).then((t) => { got = t.seq; return t; });
    await new Promise((r) => setTimeout(r, 10));
    expect(got).toBeNull(); // the checkpoint could not pass transaction 50, still in flight
    j.end(a);
    const b = await waiting;
    expect(b.seq).toBe(51);
    expect(persisted.at(-1)).toBe(51);
    j.end(b);
    await j.checkpoint();
    expect(j.checkpointSeq).toBe(52);
    await expect(j.begin([{ role: 0, bytes: 101 }])).rejects.toThrow(/exceeds the ring/);
  });

  it('a failed checkpoint fails the transactions waiting for space (the volume lost too much)', async () => {
    const j = new StripeJournal(1, async () => { throw new Error('EIO: 2 elements lost'); }, 8, 100);
    const a = await j.begin([{ role: 0, bytes: 100 }]);
    const waiting = j.begin([{ role: 0, bytes: 10 }]);
    j.end(a);
    await expect(waiting).rejects.toThrow(/elements lost/);
  });

  it('group flush: callers during a running flush share the next one, which starts after it', async () => {
    const started: number[] = [];
    const gates: (() => void)[] = [];
    const f = new GroupFlush((role) => {
      started.push(role);
      return new Promise<void>((resolve) => gates.push(resolve));
    });
    const first = f.flush(0);
    const second = f.flush(0);
    const third = f.flush(0);
    expect(second).toBe(third);
    expect(started).toEqual([0]);
    gates[0]!();
    await first;
    await new Promise((r) => setTimeout(r, 0));
    expect(started).toEqual([0, 0]);
    gates[1]!();
    await second;
    expect(started).toHaveLength(2);
  });
});
