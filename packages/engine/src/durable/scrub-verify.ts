// Scrub of an integrity mirror (docs/integrity.md): each leg's copy of a unit is checked against
// that leg's stored checksums (CRC32C per 4 KiB block, one kernel call per copy), so the copy that
// is wrong is known whatever the majority says. Per block:
// - some copy verifies: every copy that fails its checksum, or holds other bytes than the first
//   verified copy, is bad; repair rewrites its block AND its stored checksum from that copy;
// - copies carry checksums but none verifies (all bad, even when they agree): unrecoverable,
//   reported and counted, never rewritten (no copy is known good);
// - no copy carries a checksum (stored 0: never written, or trimmed): the rule of a plain mirror
//   (the bytes most copies hold, ties to the lowest role), data only, not counted as a checksum event.
// Runs under the unit's fence (scrub.ts), so no client write lands between the reads and a rewrite.
import { blockChecksums, type Crc32cBlocks } from '@onestack/native';
import { checksumMatches, INTEGRITY_BLOCK_BYTES, storedChecksum, type ChecksumStore } from '../integrity/types.js';
import type { UnitContext, UnitVerdict } from './scrub.js';

const BLOCK = INTEGRITY_BLOCK_BYTES;

/**
 * Adds `blocks` to an element's integrity counter; with `volumeOffsetBytes` (of the first of the
 * consecutive blocks) the event is also placed in the volume's map (integrity/counters.ts countFor).
 */
export type ScrubIntegrityCount = (element: number, event: 'mismatches' | 'repaired' | 'unrecoverable', blocks: number, volumeOffsetBytes?: number) => void;

/** What a scrub of an integrity volume needs: its checksum store and the element counters. */
export interface ScrubIntegrity {
  readonly store: ChecksumStore;
  readonly count: ScrubIntegrityCount;
  /** Tests: the checksum kernel (to count calls); default blockChecksums().crc32cBlocks. */
  readonly crc32cBlocks?: Crc32cBlocks;
}

/** One role's checksum verdicts in a unit (blocks of 4 KiB). */
export interface RoleBlocks {
  readonly role: number;
  badBlocks: number;
  repairedBlocks: number;
  unrecoverableBlocks: number;
}

export interface MirrorCopy {
  readonly role: number;
  readonly bytes: Uint8Array;
}

interface Checked extends MirrorCopy {
  readonly element: number;
  readonly stored: Uint32Array;
  readonly crcs: Uint32Array;
  /** Blocks to rewrite on this leg, with the bytes and checksum to write (sum 0: a plain-rule block). */
  readonly fix: Map<number, { from: Uint8Array; sum: number }>;
  /** Blocks (of the unit) that failed with no copy verifying, and those rewritten from one that did. */
  readonly lost: number[];
  readonly repaired: number[];
  readonly tally: RoleBlocks;
}

export interface VerifyUnit {
  /** Volume offset of the unit's first byte (its blocks follow in order: a raid1 unit or a raid10 chunk). */
  readonly volumeOffsetBytes: number;
  /** Element offset of the unit on every leg, and of block 0 of the data area. */
  readonly elementOffsetBytes: number;
  readonly dataOffsetBytes: number;
}

function blockOf(bytes: Uint8Array, i: number): Uint8Array {
  return bytes.subarray(i * BLOCK, (i + 1) * BLOCK);
}

function sameBlock(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.length), Buffer.from(b.buffer, b.byteOffset, b.length)) === 0;
}

/**
 * Checks (and with ctx.repair fixes) one mirror unit of an integrity volume. `copies` were read
 * from the usable roles (one is enough: it is judged by its own checksums); `elements[role]` is the role's data-path index.
 * `mismatchedBytes` is computed by the caller (byte positions where the copies differ).
 */
export async function verifyMirrorUnit(it: ScrubIntegrity, elements: readonly number[], unit: VerifyUnit, copies: readonly MirrorCopy[],
  mismatchedBytes: number, ctx: UnitContext): Promise<UnitVerdict> {
  const crc = it.crc32cBlocks ?? blockChecksums().crc32cBlocks;
  const rel = unit.elementOffsetBytes - unit.dataOffsetBytes;
  const length = copies[0]!.bytes.length;
  if (rel < 0 || rel % BLOCK !== 0 || length % BLOCK !== 0) throw new Error(`integrity scrub unit at element offset ${unit.elementOffsetBytes} (+${length}) is not whole ${BLOCK}-byte blocks of the data area`);
  const firstBlock = rel / BLOCK;
  const blocks = length / BLOCK;
  // A leg whose checksums cannot be read is left out like one whose data cannot be read.
  const checked = (await Promise.all(copies.map(async (c): Promise<Checked | null> => {
    const element = elements[c.role]!;
    try {
      const stored = await it.store.read(element, firstBlock, blocks);
      const crcs = new Uint32Array(blocks);
      crc(c.bytes, BLOCK, crcs);
      return { ...c, element, stored, crcs, fix: new Map(), lost: [], repaired: [], tally: { role: c.role, badBlocks: 0, repairedBlocks: 0, unrecoverableBlocks: 0 } };
    } catch (err) {
      ctx.legError(c.role, err);
      return null;
    }
  }))).filter((c): c is Checked => c !== null);
  // One copy is judged by its checksums alone (a degraded mirror): it can be found bad, not repaired.
  if (checked.length < 1) return { compared: false, mismatchedBytes: 0, repaired: false };
  let unrecoverable = 0;
  for (let i = 0; i < blocks; i++) {
    const withSum = checked.filter((c) => c.stored[i] !== 0);
    if (withSum.length === 0) {
      plainRule(checked, i);
      continue;
    }
    const good = withSum.find((c) => checksumMatches(c.stored[i]!, c.crcs[i]!));
    if (good === undefined) {
      // Every copy that carries a checksum fails it: no copy is known good, none is rewritten.
      for (const c of withSum) {
        c.tally.badBlocks++;
        c.tally.unrecoverableBlocks++;
        c.lost.push(i);
      }
      unrecoverable++;
      continue;
    }
    const goodBlock = blockOf(good.bytes, i);
    const goodSum = storedChecksum(good.crcs[i]!);
    for (const c of checked) {
      if (c === good) continue;
      const fails = c.stored[i] !== 0 && !checksumMatches(c.stored[i]!, c.crcs[i]!);
      // Two copies that both verify but differ: the first verified (lowest role) stands, as a plain mirror would decide.
      if (!fails && sameBlock(blockOf(c.bytes, i), goodBlock)) continue;
      c.tally.badBlocks++;
      c.fix.set(i, { from: goodBlock, sum: goodSum });
    }
  }
  const byRole = checked.map((c) => c.tally).filter((t) => t.badBlocks > 0);
  const anyFix = checked.some((c) => c.fix.size > 0);
  if (mismatchedBytes === 0 && byRole.length === 0 && !anyFix) return { compared: true, mismatchedBytes: 0, repaired: false };
  const written: number[] = [];
  let repaired = unrecoverable === 0;
  if (ctx.repair) {
    for (const c of checked) {
      if (c.fix.size === 0) continue;
      if (await rewrite(it.store, ctx, c, unit.elementOffsetBytes, firstBlock)) written.push(c.element);
      else repaired = false;
    }
  } else {
    repaired = false;
  }
  // One call per block: events are rare, and each carries its volume offset for the map.
  const at = (i: number): number => unit.volumeOffsetBytes + i * BLOCK;
  for (const c of checked) {
    for (const [i, f] of c.fix) if (f.sum !== 0) it.count(c.element, 'mismatches', 1, at(i));
    for (const i of c.repaired) it.count(c.element, 'repaired', 1, at(i));
    for (const i of c.lost) it.count(c.element, 'unrecoverable', 1, at(i));
  }
  return { compared: true, mismatchedBytes, repaired, written, byRole, mismatched: true };
}

/** No copy of block i carries a checksum: the copies most legs agree on win (ties: lowest role). */
function plainRule(checked: readonly Checked[], i: number): void {
  const classes: Checked[][] = [];
  for (const c of checked) {
    const match = classes.find((k) => sameBlock(blockOf(k[0]!.bytes, i), blockOf(c.bytes, i)));
    if (match !== undefined) match.push(c);
    else classes.push([c]);
  }
  if (classes.length === 1) return;
  let best = classes[0]!;
  for (const k of classes) if (k.length > best.length) best = k;
  const from = blockOf(best[0]!.bytes, i);
  for (const k of classes) if (k !== best) for (const c of k) c.fix.set(i, { from, sum: 0 });
}

/**
 * Writes a leg's fixed blocks, run by run of consecutive blocks: the good bytes and their checksums
 * (the good copy's, since the bytes are the same). False (and the leg reported) on an I/O error.
 */
async function rewrite(store: ChecksumStore, ctx: UnitContext, c: Checked, elementOffsetBytes: number, firstBlock: number): Promise<boolean> {
  const order = [...c.fix.keys()].sort((a, b) => a - b);
  for (let k = 0; k < order.length;) {
    let end = k + 1;
    while (end < order.length && order[end] === order[end - 1]! + 1) end++;
    const start = order[k]!;
    const count = end - k;
    const data = new Uint8Array(count * BLOCK);
    const sums = new Uint32Array(count);
    for (let j = 0; j < count; j++) {
      const f = c.fix.get(start + j)!;
      data.set(f.from, j * BLOCK);
      sums[j] = f.sum;
    }
    try {
      await Promise.all([ctx.raw.write(c.element, elementOffsetBytes + start * BLOCK, data), store.write(c.element, firstBlock + start, sums)]);
    } catch (err) {
      ctx.legError(c.role, err);
      return false;
    }
    // Only checksum-verified bad blocks count as repaired (plain-rule blocks carry sum 0).
    for (let j = 0; j < count; j++) {
      if (c.fix.get(start + j)!.sum === 0) continue;
      c.tally.repairedBlocks++;
      c.repaired.push(start + j);
    }
    k = end;
  }
  return true;
}
