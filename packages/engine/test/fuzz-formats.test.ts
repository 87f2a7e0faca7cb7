// Fuzzing of the on-element formats (issue 8): the superblock, the write-intent bitmap header and
// bit runs, and the raid5/6 journal header and record codecs. Valid encodings round-trip; random,
// bit-flipped, field-edited (with the checksum recomputed, so the field checks are reached) and
// truncated blocks are refused with the codec's own error. Fixed seed in CI; FUZZ_SEED / FUZZ_RUNS.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BitmapError, decodeBitmapHeader, encodeBitmapHeader, countSet, regionBytesFor, regionCountFor, setRuns, type BitmapHeader, REGION_MIN_BYTES } from '../src/durable/bitmap-codec.js';
import {
  decodeJournalHeader, decodeRecordHeader, encodeJournalHeader, encodeRecordHeader, JOURNAL_BLOCK_BYTES, RecordKind, type RecordHeader,
} from '../src/datapath/journal-format.js';
import { crc32c, decodeSuperblock, encodeSuperblock, SuperblockError, type Superblock } from '../src/meta/superblock.js';
import { SUPERBLOCK_BYTES, type ReshapeRecord } from '../src/meta/types.js';
import { applyMutations, embedded, mutations, surround } from '../../../test/lib/fuzz-bytes.js';
import { fuzz, onlyTyped } from '../../../test/lib/fuzz-run.js';

const enc = new TextEncoder();
const LAYOUTS = ['linear', 'raid0', 'raid1', 'raid10', 'raid5', 'raid6'] as const;
const u53 = fc.oneof(fc.constantFrom(0, 1, 2 ** 32, Number.MAX_SAFE_INTEGER), fc.nat({ max: Number.MAX_SAFE_INTEGER }));
const uuidText = fc.uint8Array({ minLength: 16, maxLength: 16 }).map((b) => {
  const hex = Buffer.from(b).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
});

type SuperblockInput = Omit<Superblock, 'version'>;
const superblockArb: fc.Arbitrary<SuperblockInput> = fc.record({
  arrayUuid: uuidText, elementUuid: uuidText,
  volumeName: fc.string({ unit: 'binary', minLength: 1, maxLength: 20 }).filter((s) => enc.encode(s).length <= 64),
  layout: fc.constantFrom(...LAYOUTS), chunkBytes: fc.integer({ min: 12, max: 30 }).map((k) => 2 ** k),
  count: fc.integer({ min: 1, max: 255 }), role: fc.nat({ max: 254 }),
  dataOffsetBytes: fc.nat({ max: 2 ** 40 }).map((n) => (n + 1) * 4096),
  dataSizeBytes: u53, volumeSizeBytes: u53, eventCount: u53, createdMs: u53, bitmapOffsetBytes: u53, bitmapSizeBytes: u53,
  clean: fc.boolean(), needsRebuild: fc.boolean(), faulty: fc.constantFrom(undefined, true),
}, { requiredKeys: ['arrayUuid', 'elementUuid', 'volumeName', 'layout', 'chunkBytes', 'count', 'role', 'dataOffsetBytes', 'dataSizeBytes',
  'volumeSizeBytes', 'eventCount', 'createdMs', 'bitmapOffsetBytes', 'bitmapSizeBytes', 'clean', 'needsRebuild'] })
  .chain((sb) => {
    const { faulty, ...rest } = sb;
    const base = { ...rest, role: sb.role % sb.count, ...(faulty === true ? { faulty: true } : {}) };
    // An integrity area (issue 10) after the data, 4 KiB aligned, when the sum stays a safe integer; else none (zeros).
    const dataEnd = Math.ceil((sb.dataOffsetBytes + sb.dataSizeBytes) / 4096) * 4096;
    const withArea: fc.Arbitrary<SuperblockInput> = !Number.isSafeInteger(dataEnd + 2 ** 45) ? fc.constant(base)
      : fc.option(fc.record({ gapPages: fc.nat({ max: 2 ** 20 }), sizePages: fc.integer({ min: 1, max: 2 ** 24 }) })
        .map(({ gapPages, sizePages }) => ({ offsetBytes: dataEnd + gapPages * 4096, sizeBytes: sizePages * 4096, blockBytes: 4096, algo: 1 })), { nil: undefined })
        .map((integrity) => (integrity === undefined ? base : { ...base, integrity }));
    // A reshape record (issue 11) consistent with the superblock: C0 = its volume size, from count ≤ count.
    // A history id (issue 11 split rule): 16 hex digits, not all zero, or none.
    const historyArb = fc.option(fc.bigInt({ min: 1n, max: 2n ** 64n - 1n }).map((n) => n.toString(16).padStart(16, '0')), { nil: undefined });
    return fc.tuple(withArea, fc.option(reshapeArb(sb.count, sb.volumeSizeBytes), { nil: undefined }), historyArb)
      .map(([v, reshape, historyId]) => ({ ...v, ...(reshape === undefined ? {} : { reshape }), ...(historyId === undefined ? {} : { historyId }) }));
  });

function reshapeArb(count: number, c0: number): fc.Arbitrary<ReshapeRecord> {
  return fc.record({
    fromLayout: fc.constantFrom(...LAYOUTS), fromCount: fc.integer({ min: 1, max: count }), fromChunkBytes: fc.integer({ min: 12, max: 30 }).map((k) => 2 ** k),
    extra: fc.nat({ max: Number.MAX_SAFE_INTEGER - c0 }), position: fc.nat({ max: c0 }), startedMs: u53,
    backup: fc.option(fc.record({ at: fc.double({ min: 0, max: 1, noNaN: true }), len: fc.integer({ min: 1, max: 0xffffffff }), crc: fc.nat({ max: 0xffffffff }) }), { nil: undefined }),
  }).map(({ extra, position, backup, ...r }) => {
    const room = c0 - position;
    const startBytes = position + Math.floor((backup?.at ?? 0) * Math.max(0, room - 1));
    const b = backup !== undefined && room >= 1 ? { backup: { startBytes, lengthBytes: Math.min(backup.len, c0 - startBytes), crc: backup.crc } } : {};
    return { ...r, fromSizeBytes: c0, toSizeBytes: c0 + extra, positionBytes: position, ...b };
  });
}

/** Recomputes a block's trailing CRC32C (so that edits reach the field checks behind it). */
function withCrc(block: Uint8Array): Uint8Array {
  const out = block.slice();
  if (out.length >= 4096) new DataView(out.buffer).setUint32(4092, crc32c(out.subarray(0, 4092)), true);
  return out;
}

/** A decoder as a total function: its value, or the kind of its own error. */
function outcome<T>(decode: () => T, ...errors: ReadonlyArray<abstract new (...args: never[]) => Error>): T | { error: string } {
  try {
    return decode();
  } catch (err) {
    onlyTyped(err, ...errors);
    return { error: (err as { kind?: string }).kind ?? (err as Error).name };
  }
}

describe('fuzz: superblock', () => {
  it('decode(encode(sb)) == sb', () => {
    fuzz('superblock round trip', fc.property(superblockArb, (sb) => {
      const bytes = encodeSuperblock(sb);
      expect(bytes.length).toBe(SUPERBLOCK_BYTES);
      expect(decodeSuperblock(bytes)).toEqual({ ...sb, version: 1 });
    }), 2000);
  });

  it('random blocks, any single bit flip, truncation: SuperblockError only; the same inside a larger buffer', () => {
    const input = fc.oneof(
      fc.uint8Array({ maxLength: 4200 }),
      fc.tuple(superblockArb, fc.nat({ max: SUPERBLOCK_BYTES * 8 - 1 })).map(([sb, bit]) => {
        const b = encodeSuperblock(sb);
        b[bit >> 3] = b[bit >> 3]! ^ (1 << (bit & 7));
        return b;
      }),
      fc.tuple(superblockArb, fc.nat({ max: SUPERBLOCK_BYTES - 1 })).map(([sb, n]) => encodeSuperblock(sb).slice(0, n)),
    );
    fuzz('superblock corruption', fc.property(input, surround(), (bytes, s) => {
      const d = outcome(() => decodeSuperblock(bytes), SuperblockError);
      expect(outcome(() => decodeSuperblock(embedded(bytes, s)), SuperblockError)).toEqual(d);
      const blank = bytes.length >= SUPERBLOCK_BYTES && bytes.subarray(0, SUPERBLOCK_BYTES).every((b) => b === 0);
      if (!blank) expect(d).toHaveProperty('error');
      if (bytes.length < SUPERBLOCK_BYTES) expect(d).toEqual({ error: 'truncated' });
    }), 2000);
  });

  it('field edits with a valid checksum: refused, or a superblock the encoder accepts and that decodes the same', () => {
    fuzz('superblock field edits', fc.property(superblockArb, mutations(4), (sb, muts) => {
      // Edits confined to the fields (the first 292 bytes, integrity, reshape record and history id included), then the CRC made valid again.
      const edited = withCrc(applyMutations(encodeSuperblock(sb), muts, 292).slice(0, SUPERBLOCK_BYTES));
      const d = outcome(() => decodeSuperblock(edited), SuperblockError);
      if ('error' in d || 'kind' in d) return;
      const again = encodeSuperblock(d);
      expect(decodeSuperblock(again)).toEqual(d);
    }), 3000);
  });
});

describe('fuzz: write-intent bitmap', () => {
  const headerArb: fc.Arbitrary<BitmapHeader> = fc.record({
    arrayUuid: uuidText, volumeSizeBytes: fc.oneof(fc.nat({ max: 2 ** 40 }), u53), minRegionLog2: fc.integer({ min: 16, max: 30 }), eventsCleared: u53,
  }).map(({ arrayUuid, volumeSizeBytes, minRegionLog2, eventsCleared }) => {
    const regionBytes = regionBytesFor(volumeSizeBytes, Math.max(REGION_MIN_BYTES, 2 ** minRegionLog2));
    return { arrayUuid, regionBytes, regionCount: regionCountFor(volumeSizeBytes, regionBytes), volumeSizeBytes, eventsCleared };
  });

  it('decode(encode(h)) == h; any single bit flip or truncation is a BitmapError', () => {
    fuzz('bitmap header round trip and flips', fc.property(headerArb, fc.nat({ max: 4096 * 8 - 1 }), fc.nat({ max: 4095 }), surround(), (h, bit, cut, s) => {
      const bytes = encodeBitmapHeader(h);
      expect(decodeBitmapHeader(bytes)).toEqual(h);
      expect(decodeBitmapHeader(embedded(bytes, s))).toEqual(h);
      const flipped = bytes.slice();
      flipped[bit >> 3] = flipped[bit >> 3]! ^ (1 << (bit & 7));
      expect(outcome(() => decodeBitmapHeader(flipped), BitmapError)).toHaveProperty('error');
      expect(outcome(() => decodeBitmapHeader(bytes.slice(0, cut)), BitmapError)).toEqual({ error: 'truncated' });
    }), 2000);
  });

  it('random blocks and field edits with a valid checksum: BitmapError, or a header the encoder reproduces', () => {
    fuzz('bitmap header edits', fc.property(fc.oneof(headerArb.map(encodeBitmapHeader), fc.uint8Array({ minLength: 4096, maxLength: 4096 })), mutations(4), fc.boolean(), (bytes, muts, fix) => {
      const edited = applyMutations(bytes, muts, 64).slice(0, 4096);
      const input = fix ? withCrc(edited) : edited;
      const d = outcome(() => decodeBitmapHeader(input), BitmapError);
      if ('error' in d || 'kind' in d) return;
      expect(decodeBitmapHeader(encodeBitmapHeader(d))).toEqual(d);
    }), 3000);
  });

  it('setRuns and countSet agree with a bit-by-bit count, for any bits and region count', () => {
    fuzz('bitmap runs', fc.property(fc.uint8Array({ maxLength: 64 }), fc.nat({ max: 600 }), (bits, regionCount) => {
      const runs = [...setRuns(bits, regionCount)];
      const set: number[] = [];
      for (let r = 0; r < regionCount; r++) if (((bits[r >> 3] ?? 0) >> (r & 7)) & 1) set.push(r);
      expect(runs.flatMap((run) => Array.from({ length: run.regions }, (_, i) => run.firstRegion + i))).toEqual(set);
      for (let i = 1; i < runs.length; i++) expect(runs[i]!.firstRegion).toBeGreaterThan(runs[i - 1]!.firstRegion + runs[i - 1]!.regions);
      expect(countSet(bits, regionCount)).toBe(set.length);
    }), 3000);
  });
});

describe('fuzz: raid5/6 journal blocks', () => {
  const arrayId = fc.uint8Array({ minLength: 16, maxLength: 16 });
  const recordArb: fc.Arbitrary<RecordHeader> = fc.record({
    kind: fc.constantFrom(RecordKind.DATA, RecordKind.ZERO), arrayId, seq: u53, width: fc.integer({ min: 1, max: 64 }), role: fc.nat({ max: 63 }),
    participants: fc.array(fc.nat({ max: 63 }), { maxLength: 10 }), elementOffsetBytes: u53, lengthBytes: fc.nat({ max: 0xffffffff }),
    payloadCrc: fc.nat({ max: 0xffffffff }),
  }).map((r) => ({ ...r, role: r.role % r.width, participants: [...new Set(r.participants.map((p) => p % r.width))].sort((a, b) => a - b) }));

  it('records and headers round-trip; any bit flip in the covered fields makes the block unreadable', () => {
    fuzz('journal round trip and flips', fc.property(recordArb, u53, fc.nat({ max: 64 * 8 - 1 }), (r, checkpointSeq, bit) => {
      const block = new Uint8Array(JOURNAL_BLOCK_BYTES);
      encodeRecordHeader(block, r);
      expect(decodeRecordHeader(block, r.arrayId)).toEqual(r);
      const other = r.arrayId.slice();
      other[0] = other[0]! ^ 1;
      expect(decodeRecordHeader(block, other)).toBeNull();
      const flipped = block.slice();
      flipped[bit >> 3] = flipped[bit >> 3]! ^ (1 << (bit & 7));
      expect(decodeRecordHeader(flipped, r.arrayId)).toBeNull();
      encodeJournalHeader(block, { arrayId: r.arrayId, checkpointSeq });
      expect(decodeJournalHeader(block)).toEqual({ arrayId: r.arrayId, checkpointSeq });
      const flippedHeader = block.slice();
      flippedHeader[(bit >> 3) % 36] = flippedHeader[(bit >> 3) % 36]! ^ (1 << (bit & 7));
      expect(decodeJournalHeader(flippedHeader)).toBeNull();
    }), 3000);
  });

  it('random, mutated and truncated blocks: a record, null, or RangeError for a short block; never read past the view', () => {
    const block = fc.oneof(
      fc.uint8Array({ maxLength: 200 }),
      fc.tuple(recordArb, mutations(3)).map(([r, muts]) => {
        const b = new Uint8Array(JOURNAL_BLOCK_BYTES);
        encodeRecordHeader(b, r);
        return applyMutations(b.subarray(0, 128), muts);
      }),
      fc.tuple(recordArb, u53, fc.nat({ max: 70 }), fc.boolean()).map(([r, seq, cut, header]) => {
        const b = new Uint8Array(JOURNAL_BLOCK_BYTES);
        if (header) encodeJournalHeader(b, { arrayId: r.arrayId, checkpointSeq: seq });
        else encodeRecordHeader(b, r);
        return b.subarray(0, cut);
      }),
    );
    fuzz('journal corruption', fc.property(block, arrayId, surround(), (bytes, id, s) => {
      for (const decode of [(b: Uint8Array) => decodeRecordHeader(b, id), (b: Uint8Array) => decodeRecordHeader(b, bytes.slice(8, 24)), decodeJournalHeader]) {
        const tight = outcome(() => decode(bytes.slice()), RangeError);
        // A view into a larger block (how the replay scans its ring) must read only its own bytes.
        const inside = outcome(() => decode(embedded(bytes, s)), RangeError);
        expect(inside, `decoding ${bytes.length} bytes as a view`).toEqual(tight);
      }
    }), 4000);
  });
});
