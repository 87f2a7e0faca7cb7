// Fuzzing of the iSCSI PDU layer (issue 8): the BHS codec and the PDU reassembler (frame.ts) fed
// random streams, framed valid PDUs in random chunkings with and without digests, corrupted
// frames and oversized declared lengths. Fixed seed in CI; FUZZ_SEED / FUZZ_RUNS override.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { crc32c, writeDigest } from '../src/codec/crc32c.js';
import { framePdu, PduReassembler, type Digests, type ReceivedPdu } from '../src/codec/frame.js';
import { BHS_BYTES, DIGEST_BYTES, Opcode, decodeBhs, encodeBhs, padBytes, type Pdu } from '../src/codec/pdu.js';
import { IscsiProtocolError, RemoteError } from '../src/errors.js';
import { lbaRunsToExtents } from '../src/client.js';
import { parseLbaStatus } from '../src/codec/scsi.js';
import { applyMutations, concatBytes, cuts, embedded, mutations, splitAt, surround } from '../../../test/lib/fuzz-bytes.js';
import { arrayBufferGrowth, fuzz } from '../../../test/lib/fuzz-run.js';

const OPCODES = Object.values(Opcode) as number[];

/** decodeBhs as a total function: a PDU or the code of the IscsiProtocolError it threw. */
function decodeOrCode(bytes: Uint8Array): Pdu | { error: string } {
  try {
    return decodeBhs(bytes);
  } catch (err) {
    if (!(err instanceof IscsiProtocolError)) throw err;
    return { error: err.code };
  }
}

/** What re-encoding cannot keep: a Data-In's status byte means nothing without its S bit. */
function normalized(pdu: Pdu): Pdu {
  return pdu.opcode === Opcode.DataIn && !pdu.hasStatus ? { ...pdu, status: 0 } : pdu;
}

/** 48 random bytes shaped into a BHS of a known opcode, no AHS, a LUN in the encodable range. */
const bhsBytes = fc.record({ bytes: fc.uint8Array({ minLength: BHS_BYTES, maxLength: BHS_BYTES }), opcode: fc.constantFrom(...OPCODES), immediate: fc.boolean() })
  .map(({ bytes, opcode, immediate }) => {
    const b = bytes.slice();
    b[0] = opcode | (immediate ? 0x40 : 0);
    b[4] = 0;
    b[8] = b[8]! & 0x3f; // peripheral or flat addressing only; other methods decode as 0xffff
    return b;
  });

/** A valid PDU (decoded from shaped bytes) with a data segment of `data.length` bytes. */
const pduWithData = fc.record({ bhs: bhsBytes, data: fc.oneof(fc.constant(new Uint8Array(0)), fc.uint8Array({ minLength: 1, maxLength: 700 })) })
  .map(({ bhs, data }) => ({ bhs: { ...normalized(decodeBhs(bhs)), dataSegmentLength: data.length, totalAhsWords: 0 } as Pdu, data }));

const digestsArb: fc.Arbitrary<Digests> = fc.record({ header: fc.boolean(), data: fc.boolean() });

interface Outcome { readonly pdus: Array<{ bhs: Pdu; data: Uint8Array; ahs: Uint8Array | null }>; readonly error: string | null }

/** Feeds `pieces` to a fresh reassembler; the PDUs it emitted and the error code it stopped with. */
function reassemble(pieces: readonly Uint8Array[], digests: Digests, dataSegmentBytesMax: number, copy = true): Outcome {
  const pdus: Outcome['pdus'] = [];
  const r = new PduReassembler({ dataSegmentBytesMax, digests }, (p: ReceivedPdu) => {
    expect(p.data.length).toBe(p.bhs.dataSegmentLength);
    expect(p.data.length).toBeLessThanOrEqual(dataSegmentBytesMax);
    pdus.push({ bhs: p.bhs, data: copy ? p.data.slice() : p.data, ahs: p.ahs });
  });
  for (const piece of pieces) {
    try {
      r.push(piece);
    } catch (err) {
      if (!(err instanceof IscsiProtocolError)) throw err;
      // Once failed, the stream position is lost: every later push is refused.
      let again: unknown = null;
      try { r.push(new Uint8Array(1)); } catch (e) { again = e; }
      expect(again instanceof IscsiProtocolError && again.code === 'reassembler-failed').toBe(true);
      return { pdus, error: err.code };
    }
  }
  return { pdus, error: null };
}

describe('fuzz: iSCSI BHS codec', () => {
  it('decodeBhs of any bytes: a PDU or IscsiProtocolError, the same inside a larger buffer', () => {
    fuzz('iscsi decodeBhs random', fc.property(fc.oneof(fc.uint8Array({ maxLength: 60 }), bhsBytes), surround(), (bytes, s) => {
      const d = decodeOrCode(bytes);
      expect(decodeOrCode(embedded(bytes, s))).toEqual(d);
      if ('error' in d) expect(['short-buffer', 'unknown-opcode']).toContain(d.error);
      else {
        expect(OPCODES).toContain(d.opcode);
        expect(d.dataSegmentLength).toBeLessThanOrEqual(0xffffff);
      }
    }), 5000);
  });

  it('decode(encode(decode(b))) == decode(b): every decoded field survives re-encoding', () => {
    fuzz('iscsi BHS round trip', fc.property(fc.oneof(bhsBytes, fc.uint8Array({ minLength: BHS_BYTES, maxLength: BHS_BYTES })), (bytes) => {
      const d = decodeOrCode(bytes);
      if ('error' in d) return;
      let encoded: Uint8Array;
      try {
        encoded = encodeBhs(d);
      } catch (err) {
        // Only fields we never send can be refused: an AHS, or a LUN outside the single-level range.
        expect(err).toBeInstanceOf(IscsiProtocolError);
        expect((d.totalAhsWords ?? 0) > 0 || ('lun' in d && d.lun > 0x3fff)).toBe(true);
        return;
      }
      expect(encoded.length).toBe(BHS_BYTES);
      expect(normalized(decodeBhs(encoded))).toEqual(normalized(d));
    }), 5000);
  });
});

describe('fuzz: iSCSI PDU reassembler', () => {
  it('random streams: PDUs or one IscsiProtocolError, independent of chunking; segments capped', () => {
    const stream = fc.array(fc.oneof(bhsBytes, fc.uint8Array({ maxLength: 80 })), { maxLength: 8 }).map(concatBytes);
    fuzz('iscsi reassembler random streams', fc.property(stream, cuts(12), digestsArb, fc.constantFrom(512, 8192, 0xffffff), (bytes, points, digests, max) => {
      const whole = reassemble([bytes], digests, max);
      const pieces = reassemble(splitAt(bytes, points), digests, max);
      expect(pieces).toEqual(whole);
    }), 3000);
  });

  it('framed PDUs in any chunking come out as they went in, digests or not', () => {
    fuzz('iscsi frame round trip', fc.property(fc.array(pduWithData, { minLength: 1, maxLength: 6 }), digestsArb, cuts(16), (pdus, digests, points) => {
      const stream = concatBytes(pdus.flatMap((p) => framePdu(p.bhs, p.data, digests)));
      const out = reassemble(splitAt(stream, points), digests, 0xffffff);
      expect(out.error).toBeNull();
      expect(out.pdus).toEqual(pdus.map((p) => ({ bhs: p.bhs, data: p.data, ahs: null })));
    }), 2000);
  });

  it('with both digests, a corrupted frame is never delivered: corruption is refused or still awaited', () => {
    fuzz('iscsi digest corruption', fc.property(fc.array(pduWithData, { minLength: 1, maxLength: 3 }), fc.nat(), fc.nat({ max: 7 }), cuts(8), (pdus, where, bit, points) => {
      const digests = { header: true, data: true };
      const stream = concatBytes(pdus.flatMap((p) => framePdu(p.bhs, p.data, digests)));
      const at = where % stream.length;
      const bad = stream.slice();
      bad[at] = bad[at]! ^ (1 << bit);
      const out = reassemble(splitAt(bad, points), digests, 0xffffff);
      const sent = pdus.map((p) => ({ bhs: p.bhs, data: p.data, ahs: null }));
      // Every PDU delivered is one that was sent, in order, and the corrupted one is not among them.
      expect(out.pdus).toEqual(sent.slice(0, out.pdus.length));
      let end = 0;
      const frameEnds = pdus.map((p) => (end += framePdu(p.bhs, p.data, digests).reduce((n, part) => n + part.length, 0)));
      expect(out.pdus.length).toBeLessThanOrEqual(frameEnds.findIndex((e) => at < e));
      if (out.error !== null) expect(['header-digest', 'data-digest', 'segment-too-large', 'unknown-opcode']).toContain(out.error);
    }), 3000);
  });

  it('mutated frames without digests: only IscsiProtocolError, and every delivered segment has its declared length', () => {
    fuzz('iscsi frame mutations', fc.property(fc.array(pduWithData, { minLength: 1, maxLength: 4 }), mutations(4), cuts(8), fc.constantFrom(512, 65536), (pdus, muts, points, max) => {
      const digests = { header: false, data: false };
      const stream = applyMutations(concatBytes(pdus.flatMap((p) => framePdu(p.bhs, p.data, digests))), muts);
      reassemble(splitAt(stream, points), digests, max, false);
    }), 3000);
  });

  it('a declared segment above the cap is refused right after its header, before any allocation', () => {
    fuzz('iscsi segment cap', fc.property(bhsBytes, fc.integer({ min: 1, max: 0xffffff }), fc.constantFrom(512, 8192, 262144), digestsArb, (bhs, length, max, digests) => {
      fc.pre(length > max);
      const b = bhs.slice();
      b[5] = length >>> 16;
      b[6] = (length >>> 8) & 0xff;
      b[7] = length & 0xff;
      // A valid header digest, so the length itself is what gets judged.
      const header = digests.header ? concatBytes([b, new Uint8Array(DIGEST_BYTES)]) : b;
      if (digests.header) writeDigest(header, BHS_BYTES, crc32c(b));
      const { value: out, grownBytes } = arrayBufferGrowth(() => reassemble([header], digests, max));
      expect(out.error).toBe('segment-too-large');
      expect(grownBytes).toBeLessThan(64 * 1024);
    }), 2000);
  });

  it('framePdu refuses a PDU whose DataSegmentLength disagrees with its data', () => {
    fuzz('iscsi framePdu mismatch', fc.property(pduWithData, fc.integer({ min: 1, max: 100 }), digestsArb, (p, extra, digests) => {
      expect(() => framePdu({ ...p.bhs, dataSegmentLength: p.data.length + extra }, p.data, digests)).toThrow(IscsiProtocolError);
      const framed = framePdu(p.bhs, p.data, digests);
      const total = framed.reduce((n, part) => n + part.length, 0);
      const dataPart = p.data.length === 0 ? 0 : p.data.length + padBytes(p.data.length) + (digests.data ? DIGEST_BYTES : 0);
      expect(total).toBe(BHS_BYTES + (digests.header ? DIGEST_BYTES : 0) + dataPart);
    }), 2000);
  });

  it('GET LBA STATUS data and runs: only IscsiProtocolError / RemoteError escape, extents stay inside the asked range', () => {
    fuzz('iscsi GET LBA STATUS parse', fc.property(fc.uint8Array({ maxLength: 200 }), fc.nat(64), fc.integer({ min: 1, max: 64 }), (bytes, first, blocks) => {
      let runs;
      try {
        runs = parseLbaStatus(bytes);
      } catch (err) {
        expect(err).toBeInstanceOf(IscsiProtocolError);
        return;
      }
      expect(runs.length * 16 + 8).toBeLessThanOrEqual(Math.max(bytes.length, 8));
      try {
        const ext = lbaRunsToExtents(runs, first, blocks, 512, 3, 'fuzz');
        const total = ext.reduce((a, e) => a + e.lengthBytes, 0);
        expect(total).toBeGreaterThan(0);
        expect(total).toBeLessThanOrEqual(blocks * 512);
        for (const e of ext) expect(e.lengthBytes).toBeGreaterThan(0);
      } catch (err) {
        expect(err).toBeInstanceOf(RemoteError);
      }
    }), 5000);
  });
});
