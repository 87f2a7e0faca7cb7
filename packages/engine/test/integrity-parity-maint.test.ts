// Integrity on raid5/raid6 maintenance: the pure per-block resolver of a stripe span
// (integrity/parity-resolve.ts), then scrub (checkStripe) and rebuild (reconstructElementRange)
// of real stripe engines over local files, whose checksums live in an in-memory store the tests
// seed from the leg files themselves (integrity-parity-rig.ts), so the engine's own write path is
// not what makes the checksums the tests judge it by.
import * as fs from 'node:fs';
import { blockChecksums } from '@onestack/native';
import { afterEach, describe, expect, it } from 'vitest';
import { resolveStripeSpan, type EntrySpan } from '../dist/integrity/parity-resolve.js';
import { runScrub, scrubCheckerFor, type ScrubTarget } from '../dist/durable/scrub.js';
import type { ScrubStatus } from '../src/api-types.js';
import { DATA_OFFSET_BYTES } from '../src/meta/types.js';
import { flipFileBytes, randomBytes, readFileRange } from './helpers.js';
import { refPQ, refRoles } from './raid56-ref.js';
import { BLOCK, failingBlocks, geometryOf, seedSums, startIntegrityParity, startWiredParity, type IntegrityParityRig } from './integrity-parity-rig.js';
import { KiB, equalBytes, pattern } from './datapath-harness.js';
import { stopParity, volumeFromFiles } from './raid56-harness.js';

const crc = blockChecksums().crc32cBlocks;

interface Span {
  /** Entries' bytes (data, P, Q), and the bytes they should hold. */
  readonly bytes: Uint8Array[];
  readonly good: Uint8Array[];
  readonly stored: Uint32Array[];
}

function sumsOf(bytes: Uint8Array): Uint32Array {
  const out = new Uint32Array(bytes.length / BLOCK);
  crc(bytes, BLOCK, out);
  return out.map((x) => (x === 0 ? 1 : x));
}

function makeSpan(k: number, np: 1 | 2, blocks: number, seed: number): Span {
  const data = Array.from({ length: k }, (_, j) => randomBytes(blocks * BLOCK, seed * 10 + j));
  const { p, q } = refPQ(data);
  const good = [...data, p, q].slice(0, k + np).map((b) => Uint8Array.from(b));
  return { bytes: good.map((b) => Uint8Array.from(b)), good, stored: good.map(sumsOf) };
}

function entries(s: Span, absent: readonly number[] = []): EntrySpan[] {
  return s.bytes.map((b, e) => (absent.includes(e) ? { bytes: null, stored: null } : { bytes: b, stored: s.stored[e]! }));
}

function flip(s: Span, e: number, block: number, at = 17): void {
  s.bytes[e]![block * BLOCK + at]! ^= 0x5a;
}

describe('resolveStripeSpan (pure)', () => {
  it('raid5: one bad data block is rebuilt from the others in place, with its stored checksum', () => {
    const s = makeSpan(3, 1, 4, 1);
    flip(s, 1, 2);
    const r = resolveStripeSpan(3, 1, entries(s), 4, crc);
    expect(r.bad).toEqual([[], [2], [], []]);
    expect(r.fixes[1]).toEqual([{ block: 2, data: true, sum: s.stored[1]![2] }]);
    expect(r.lost.flat()).toEqual([]);
    expect(equalBytes(s.bytes[1]!, s.good[1]!)).toBe(true);
  });

  it('raid5 and raid6: a bad parity block is rebuilt from the data', () => {
    for (const np of [1, 2] as const) {
      const s = makeSpan(3, np, 3, 2);
      flip(s, 3 + np - 1, 0);
      const r = resolveStripeSpan(3, np, entries(s), 3, crc);
      expect(r.bad[3 + np - 1]).toEqual([0]);
      expect(r.fixes[3 + np - 1]).toEqual([{ block: 0, data: true, sum: s.stored[3 + np - 1]![0] }]);
      expect(equalBytes(s.bytes[3 + np - 1]!, s.good[3 + np - 1]!)).toBe(true);
    }
  });

  it('a wrong stored checksum over right bytes is a checksum-only fix when every input verified', () => {
    const s = makeSpan(4, 1, 2, 3);
    const right = s.stored[0]![1]!;
    s.stored[0]![1] = right ^ 0x1234;
    const r = resolveStripeSpan(4, 1, entries(s), 2, crc);
    expect(r.bad[0]).toEqual([1]);
    expect(r.fixes[0]).toEqual([{ block: 1, data: false, sum: right }]);
    expect(r.lost.flat()).toEqual([]);
  });

  it('two bad entries at different blocks are two single faults, both fixed (raid5)', () => {
    const s = makeSpan(3, 1, 4, 4);
    flip(s, 0, 0);
    flip(s, 2, 3);
    const r = resolveStripeSpan(3, 1, entries(s), 4, crc);
    expect(r.fixes[0]!.map((f) => f.block)).toEqual([0]);
    expect(r.fixes[2]!.map((f) => f.block)).toEqual([3]);
    expect(r.lost.flat()).toEqual([]);
    s.bytes.forEach((b, e) => expect(equalBytes(b, s.good[e]!)).toBe(true));
  });

  it('raid5: two bad entries at one block are lost, their bytes untouched', () => {
    const s = makeSpan(3, 1, 2, 5);
    flip(s, 0, 1);
    flip(s, 3, 1);
    const before = s.bytes.map((b) => Uint8Array.from(b));
    const r = resolveStripeSpan(3, 1, entries(s), 2, crc);
    expect(r.bad).toEqual([[1], [], [], [1]]);
    expect(r.lost).toEqual([[1], [], [], [1]]);
    expect(r.fixes.flat()).toEqual([]);
    s.bytes.forEach((b, e) => expect(equalBytes(b, before[e]!)).toBe(true));
  });

  it('raid6: two bad entries at one block (data + data, data + Q) are both fixed', () => {
    for (const pair of [[0, 2], [1, 4]] as const) {
      const s = makeSpan(3, 2, 2, 6);
      flip(s, pair[0], 1);
      flip(s, pair[1], 1, 900);
      const r = resolveStripeSpan(3, 2, entries(s), 2, crc);
      expect(r.lost.flat()).toEqual([]);
      for (const e of pair) expect(r.fixes[e]).toEqual([{ block: 1, data: true, sum: s.stored[e]![1] }]);
      s.bytes.forEach((b, e) => expect(equalBytes(b, s.good[e]!)).toBe(true));
    }
  });

  it('unchecked inputs: the rebuilt block is trusted only when it matches the stored checksum', () => {
    // Data 1 has no checksum at block 0 but right bytes: the rebuild matches data 0's stored sum.
    const s = makeSpan(3, 1, 1, 7);
    s.stored[1]![0] = 0;
    flip(s, 0, 0);
    expect(resolveStripeSpan(3, 1, entries(s), 1, crc).fixes[0]).toEqual([{ block: 0, data: true, sum: s.stored[0]![0] }]);
    expect(equalBytes(s.bytes[0]!, s.good[0]!)).toBe(true);
    // Data 1 unchecked AND wrong: the rebuild of data 0 does not match: lost, never written.
    const t = makeSpan(3, 1, 1, 8);
    t.stored[1]![0] = 0;
    flip(t, 1, 0);
    flip(t, 0, 0);
    const r = resolveStripeSpan(3, 1, entries(t), 1, crc);
    expect(r.lost[0]).toEqual([0]);
    expect(r.fixes.flat()).toEqual([]);
    // A wrong checksum with an unchecked input: cannot tell which was wrong: lost.
    const u = makeSpan(3, 1, 1, 9);
    u.stored[2]![0] = 0;
    u.stored[0]![0] ^= 0x77;
    expect(resolveStripeSpan(3, 1, entries(u), 1, crc).lost[0]).toEqual([0]);
  });

  it('raid6 with one fault rebuilds from verified units only: an unchecked wrong P does not spoil the fix', () => {
    const s = makeSpan(3, 2, 1, 13);
    s.stored[3]![0] = 0;
    flip(s, 3, 0); // P unchecked and wrong
    flip(s, 0, 0, 300);
    const r = resolveStripeSpan(3, 2, entries(s), 1, crc);
    expect(r.fixes[0]).toEqual([{ block: 0, data: true, sum: s.stored[0]![0] }]);
    expect(r.lost.flat()).toEqual([]);
    expect(equalBytes(s.bytes[0]!, s.good[0]!)).toBe(true);
    // Unchecked P is not a fix target: its bytes stay as they are (a parity scrub's business).
    expect(r.fixes[3]).toEqual([]);
    // And a wrong stored checksum with an unchecked data unit: P and Q (verified) vouch for the bytes.
    const t = makeSpan(3, 2, 1, 14);
    t.stored[1]![0] = 0;
    const right = t.stored[2]![0]!;
    t.stored[2]![0] = right ^ 0x99;
    expect(resolveStripeSpan(3, 2, entries(t), 1, crc).fixes[2]).toEqual([{ block: 0, data: false, sum: right }]);
  });

  it('absent entries (a rebuild target) count against the parity: raid6 fixes one bad source, raid5 none', () => {
    const s6 = makeSpan(3, 2, 2, 10);
    flip(s6, 1, 0);
    const r6 = resolveStripeSpan(3, 2, entries(s6, [2]), 2, crc);
    expect(r6.fixes[1]).toEqual([{ block: 0, data: true, sum: s6.stored[1]![0] }]);
    expect(equalBytes(s6.bytes[1]!, s6.good[1]!)).toBe(true);
    const s5 = makeSpan(3, 1, 2, 11);
    flip(s5, 1, 0);
    const r5 = resolveStripeSpan(3, 1, entries(s5, [2]), 2, crc);
    expect(r5.lost[1]).toEqual([0]);
  });

  it('refuses entries of the wrong count or length', () => {
    const s = makeSpan(3, 1, 2, 12);
    expect(() => resolveStripeSpan(3, 2, entries(s), 2, crc)).toThrow(RangeError);
    expect(() => resolveStripeSpan(3, 1, entries(s), 3, crc)).toThrow(RangeError);
  });
});

// ---- Engine level: scrub and rebuild of raid5/raid6 volumes whose units carry checksums ----

const CHUNK = 64 * KiB;
/** Rows the tests write and scrub (the scrub target is cut to them: the rest of the volume is sparse). */
const ROWS = 3;

let held: IntegrityParityRig | undefined;
afterEach(async () => {
  await stopParity(held?.rig);
  held = undefined;
});

async function startWritten(layout: 'raid5' | 'raid6', n: number, seed: number): Promise<{ r: IntegrityParityRig; data: Uint8Array }> {
  const r = await startIntegrityParity(layout, n, { chunkBytes: CHUNK });
  held = r;
  const data = pattern(ROWS * (n - r.rig.np) * CHUNK, seed);
  await r.rig.dp.volumeIo(0).write(0, data);
  await r.rig.dp.volumeIo(0).flush();
  await seedSums(r, ROWS);
  r.events.clear();
  return { r, data };
}

/** Byte `at` of block `block` of `role`'s chunk in `row`, flipped in the leg file behind the engine's back. */
function flipLeg(r: IntegrityParityRig, role: number, row: number, block: number, at = 10): void {
  flipFileBytes(r.rig.paths[role]!, DATA_OFFSET_BYTES + row * CHUNK + block * BLOCK + at, 1);
}

function scrub(r: IntegrityParityRig, repair: boolean): Promise<ScrubStatus> {
  const { rig } = r;
  const g = { ...geometryOf(rig), sizeBytes: ROWS * (rig.n - rig.np) * CHUNK };
  const target: ScrubTarget = {
    name: 'v0', geometry: g, elements: rig.paths.map((_, i) => i), elementNames: rig.paths.map((_, i) => `e${i}`),
    state: () => 'active', stripe: rig.dp.stripe(0),
    integrity: { store: r.store, count: () => undefined },
  };
  return runScrub({ target, checker: scrubCheckerFor(target), raw: rig.dp.raw, gate: rig.dp.volumeIo(0).gate, repair });
}

/** Replaces `role` with a blank element (random bytes, no checksums) and rebuilds it over rows [0, ROWS). */
async function replaceAndRebuild(r: IntegrityParityRig, role: number): Promise<void> {
  const { rig } = r;
  rig.dp.setElementState(role, 'failed');
  const fd = fs.openSync(rig.paths[role]!, 'r+');
  fs.writeSync(fd, randomBytes(ROWS * CHUNK, 99), 0, ROWS * CHUNK, DATA_OFFSET_BYTES);
  fs.closeSync(fd);
  r.store.forget(role);
  rig.dp.setElementState(role, 'rebuilding');
  await rig.dp.stripe(0).reconstructElementRange(role, DATA_OFFSET_BYTES, ROWS * CHUNK);
  rig.dp.setElementState(role, 'active');
}

function blockOfRow(row: number, block: number): number {
  return row * (CHUNK / BLOCK) + block;
}

for (const [layout, n] of [['raid5', 4], ['raid6', 5]] as const) {
  describe(`integrity scrub of a ${layout} volume over ${n} files`, () => {
    it('names the element of a bad data block and of a bad parity block, repairs both, then finds nothing', async () => {
      const { r, data } = await startWritten(layout, n, 21);
      const np = r.rig.np;
      const row0 = refRoles(n, np, 0);
      const row1 = refRoles(n, np, 1);
      const dataRole = row0.data[1]!;
      flipLeg(r, dataRole, 0, 3);
      flipLeg(r, row1.p, 1, 5);
      // A wrong stored checksum over right bytes: only the checksum is rewritten.
      const sumRole = row1.data[0]!;
      const right = r.store.get(sumRole, blockOfRow(1, 2));
      await r.store.write(sumRole, blockOfRow(1, 2), Uint32Array.of(right ^ 0xabcd));

      const check = await scrub(r, false);
      expect(check).toMatchObject({ outcome: 'done', mismatchedUnits: 2, repairedUnits: 0 });
      const named = (s: ScrubStatus, role: number) => s.byElement?.find((x) => x.element === `e${role}`);
      expect(named(check, dataRole)).toEqual({ element: `e${dataRole}`, badBlocks: 1, repairedBlocks: 0, unrecoverableBlocks: 0 });
      expect(named(check, row1.p)).toMatchObject({ badBlocks: 1, repairedBlocks: 0 });
      expect(named(check, sumRole)).toMatchObject({ badBlocks: 1, repairedBlocks: 0 });
      expect(failingBlocks(r, dataRole, ROWS)).toEqual([blockOfRow(0, 3)]); // a check writes nothing

      const repair = await scrub(r, true);
      expect(repair).toMatchObject({ outcome: 'done', mismatchedUnits: 2, repairedUnits: 2, ioErrors: 0 });
      expect(named(repair, dataRole)).toEqual({ element: `e${dataRole}`, badBlocks: 1, repairedBlocks: 1, unrecoverableBlocks: 0 });
      expect(named(repair, row1.p)).toMatchObject({ badBlocks: 1, repairedBlocks: 1 });
      expect(named(repair, sumRole)).toMatchObject({ badBlocks: 1, repairedBlocks: 1 });
      for (let role = 0; role < n; role++) expect(failingBlocks(r, role, ROWS), `role ${role}`).toEqual([]);
      expect(r.store.get(sumRole, blockOfRow(1, 2))).toBe(right);
      expect(equalBytes(volumeFromFiles(r.rig, data.length), data)).toBe(true);
      // Counted once found per scrub, once repaired; the data block placed at its volume offset.
      expect(r.events.get(`${dataRole}:mismatches`)).toBe(2);
      expect(r.events.get(`${dataRole}:repaired`)).toBe(1);
      expect(r.events.get(`${row1.p}:repaired`)).toBe(1);
      expect(r.placed).toContainEqual({ element: dataRole, event: 'repaired', volumeOffsetBytes: 1 * CHUNK + 3 * BLOCK });
      expect(r.placed.some((x) => x.element === row1.p)).toBe(false);

      const again = await scrub(r, false);
      expect(again).toMatchObject({ outcome: 'done', mismatchedUnits: 0, mismatchedBytes: 0, byElement: [] });
    });

    it('two bad units at one block: raid5 cannot tell (unrecoverable, nothing written), raid6 repairs both', async () => {
      const { r } = await startWritten(layout, n, 22);
      const row = refRoles(n, r.rig.np, 2);
      const [a, b] = [row.data[0]!, row.data[2]!];
      flipLeg(r, a, 2, 7);
      flipLeg(r, b, 2, 7, 2000);
      const before = [readFileRange(r.rig.paths[a]!, DATA_OFFSET_BYTES, ROWS * CHUNK), readFileRange(r.rig.paths[b]!, DATA_OFFSET_BYTES, ROWS * CHUNK)];
      const s = await scrub(r, true);
      const named = (role: number) => s.byElement?.find((x) => x.element === `e${role}`);
      if (layout === 'raid5') {
        expect(named(a)).toMatchObject({ badBlocks: 1, repairedBlocks: 0, unrecoverableBlocks: 1 });
        expect(named(b)).toMatchObject({ badBlocks: 1, repairedBlocks: 0, unrecoverableBlocks: 1 });
        expect(s.repairedUnits).toBe(0);
        expect(equalBytes(readFileRange(r.rig.paths[a]!, DATA_OFFSET_BYTES, ROWS * CHUNK), before[0]!)).toBe(true);
        expect(equalBytes(readFileRange(r.rig.paths[b]!, DATA_OFFSET_BYTES, ROWS * CHUNK), before[1]!)).toBe(true);
        expect(r.events.get(`${a}:unrecoverable`)).toBe(1);
      } else {
        expect(named(a)).toMatchObject({ badBlocks: 1, repairedBlocks: 1, unrecoverableBlocks: 0 });
        expect(named(b)).toMatchObject({ badBlocks: 1, repairedBlocks: 1, unrecoverableBlocks: 0 });
        expect(failingBlocks(r, a, ROWS)).toEqual([]);
        expect(failingBlocks(r, b, ROWS)).toEqual([]);
      }
    });
  });

  describe(`integrity rebuild of a ${layout} volume over ${n} files`, () => {

    it('a replaced leg is rebuilt with checksums of every block, which its bytes verify', async () => {
      const { r, data } = await startWritten(layout, n, 23);
      await replaceAndRebuild(r, 1);
      expect(failingBlocks(r, 1, ROWS)).toEqual([]);
      expect(equalBytes(volumeFromFiles(r.rig, data.length), data)).toBe(true);
      expect([...r.events.keys()]).toEqual([]);
      expect((await scrub(r, false)).mismatchedUnits).toBe(0);
    });

    it('a source block that fails its checksum: raid6 repairs it and rebuilds right; raid5 marks the target block unreadable', async () => {
      const { r, data } = await startWritten(layout, n, 24);
      const target = 2;
      const row = refRoles(n, r.rig.np, 1);
      const source = row.data.find((x) => x !== target)!;
      flipLeg(r, source, 1, 4);
      await replaceAndRebuild(r, target);
      if (layout === 'raid6') {
        expect(failingBlocks(r, source, ROWS)).toEqual([]);
        expect(failingBlocks(r, target, ROWS)).toEqual([]);
        expect(r.events.get(`${source}:mismatches`)).toBe(1);
        expect(r.events.get(`${source}:repaired`)).toBe(1);
        expect(equalBytes(volumeFromFiles(r.rig, data.length), data)).toBe(true);
      } else {
        // The target's block at row 1, block 4 came from a bad source: its checksum never matches.
        expect(failingBlocks(r, target, ROWS)).toEqual([blockOfRow(1, 4)]);
        expect(failingBlocks(r, source, ROWS)).toEqual([blockOfRow(1, 4)]);
        expect(r.events.get(`${target}:unrecoverable`)).toBe(1);
        expect(r.notes.some((l) => l.includes('marked unreadable'))).toBe(true);
      }
    });
  });
}

describe('scrub and rebuild over the data path\'s own integrity wiring (the write path records every unit\'s checksums)', () => {
  for (const [layout, n] of [['raid5', 4], ['raid6', 5]] as const) {
    it(`${layout}: written units verify; a flipped data and parity block are named, repaired, then clean; a rebuilt leg verifies and reads right`, async () => {
      const r = await startWiredParity(layout, n, { chunkBytes: CHUNK });
      held = r;
      const io = r.rig.dp.volumeIo(0);
      const data = pattern(ROWS * (n - r.rig.np) * CHUNK, 31);
      await io.write(0, data);
      await io.flush();
      for (let role = 0; role < n; role++) expect(failingBlocks(r, role, ROWS), `role ${role} after the write`).toEqual([]);
      const row0 = refRoles(n, r.rig.np, 0);
      flipLeg(r, row0.data[2]!, 0, 9);
      flipLeg(r, row0.p, 0, 1);
      const repair = await scrub(r, true);
      expect(repair).toMatchObject({ outcome: 'done', mismatchedUnits: 1, repairedUnits: 1 });
      expect(repair.byElement).toEqual([row0.data[2]!, row0.p].sort((x, y) => x - y).map((role) => ({ element: `e${role}`, badBlocks: 1, repairedBlocks: 1, unrecoverableBlocks: 0 })));
      expect(r.events.get(`${row0.data[2]!}:repaired`)).toBe(1);
      expect(r.placed).toContainEqual({ element: row0.data[2]!, event: 'repaired', volumeOffsetBytes: 2 * CHUNK + 9 * BLOCK });
      expect(await scrub(r, false)).toMatchObject({ mismatchedUnits: 0, byElement: [] });
      await replaceAndRebuild(r, 0);
      for (let role = 0; role < n; role++) expect(failingBlocks(r, role, ROWS), `role ${role} after the rebuild`).toEqual([]);
      expect(equalBytes(await io.read(0, data.length), data)).toBe(true);
      expect(equalBytes(volumeFromFiles(r.rig, data.length), data)).toBe(true);
    });
  }

  it('raid5: a rebuild over a source block that fails its checksum leaves that target block unreadable: the client gets EIO, never its bytes', async () => {
    const r = await startWiredParity('raid5', 4, { chunkBytes: CHUNK });
    held = r;
    const io = r.rig.dp.volumeIo(0);
    const data = pattern(ROWS * 3 * CHUNK, 32);
    await io.write(0, data);
    await io.flush();
    const row1 = refRoles(4, 1, 1);
    const [target, source] = [row1.data[0]!, row1.data[1]!];
    flipLeg(r, source, 1, 6);
    await replaceAndRebuild(r, target);
    expect(r.events.get(`${target}:unrecoverable`)).toBe(1);
    expect(failingBlocks(r, target, ROWS)).toEqual([blockOfRow(1, 6)]);
    // Volume offsets of the target's and the source's block 6 in row 1 (data indices 0 and 1).
    const targetAt = 3 * CHUNK + 6 * BLOCK;
    await expect(io.read(targetAt, BLOCK)).rejects.toMatchObject({ errno: 'EIO' });
    await expect(io.read(targetAt + CHUNK, BLOCK)).rejects.toMatchObject({ errno: 'EIO' });
    // Every other block reads right.
    expect(equalBytes(await io.read(0, targetAt), data.subarray(0, targetAt))).toBe(true);
    expect(equalBytes(await io.read(targetAt + BLOCK, CHUNK - BLOCK), data.subarray(targetAt + BLOCK, targetAt + CHUNK))).toBe(true);
  });
});
