// The scrub unit checker for mirrors. raid1: 1 MiB of the volume on every leg. raid10: one chunk
// on the two legs of its pair (both hold it at the same element offset, see units.ts).
// Repair picks a reference copy and rewrites the others from it: with three or more legs the
// copy most legs agree on (ties: the lowest role); with two legs there is no majority, so the
// first active role wins. A 2-way mirror cannot know which copy is right: without checksums a
// repair only makes the legs agree (md does the same). A volume with integrity judges every copy
// by its stored checksums instead (scrub-verify.ts), and falls back to this rule only for blocks
// that carry none.
import { INTEGRITY_BLOCK_BYTES } from '../integrity/types.js';
import { RAID1_UNIT_BYTES } from './units.js';
import { verifyMirrorUnit } from './scrub-verify.js';
import type { ScrubTarget, ScrubUnit, UnitChecker, UnitContext, UnitVerdict } from './scrub.js';

export interface MirrorUnit extends ScrubUnit {
  /** Roles holding a copy. */
  readonly roles: readonly number[];
  /** Same element offset on every role (mirror legs share the data offset). */
  readonly elementOffsetBytes: number;
}

/** Blocks compared natively before counting differing bytes one by one. */
const BLOCK_BYTES = 4096;
/** Volume bytes in flight per scrub, roughly (each read on every leg): small raid10 chunks get more units at once, and client I/O keeps most of the slab. */
const INFLIGHT_BYTES = 2 * 1024 * 1024;

export function mirrorChecker(t: ScrubTarget): UnitChecker<MirrorUnit> {
  const g = t.geometry;
  if (g.layout !== 'raid1' && g.layout !== 'raid10') throw new Error(`mirrorChecker: ${g.layout} is not a mirror layout`);
  const dataOffset = g.elements[0]?.dataOffsetBytes ?? 0;
  if (g.elements.some((e) => e.dataOffsetBytes !== dataOffset)) throw new Error(`volume ${t.name}: mirror legs with different data offsets`);
  if (t.integrity !== undefined && (g.sizeBytes % INTEGRITY_BLOCK_BYTES !== 0 || (g.layout === 'raid10' && g.chunkBytes % INTEGRITY_BLOCK_BYTES !== 0))) {
    throw new Error(`volume ${t.name}: integrity scrub needs whole ${INTEGRITY_BLOCK_BYTES}-byte blocks (size ${g.sizeBytes}, chunk ${g.chunkBytes})`);
  }
  const groups = g.layout === 'raid1' ? [t.elements.map((_, role) => role)] : pairsOf(t.elements.length);
  // With checksums one copy can be judged alone (a degraded mirror still learns what is bad);
  // without them it takes two to compare.
  const minCopies = copiesNeeded(t);
  const unitBytes = g.layout === 'raid1' ? RAID1_UNIT_BYTES : g.chunkBytes;
  return {
    totalBytes: g.sizeBytes,
    concurrency: Math.max(4, Math.floor(INFLIGHT_BYTES / unitBytes)),
    units: () => (g.layout === 'raid1' ? raid1Units(g.sizeBytes, dataOffset, groups[0]!) : raid10Units(g.sizeBytes, g.chunkBytes, dataOffset, groups)),
    comparable: (usable) => groups.some((roles) => roles.filter(usable).length >= minCopies),
    check: (unit, ctx) => checkMirrorUnit(t, unit, ctx, dataOffset),
  };
}

function copiesNeeded(t: ScrubTarget): number {
  return t.integrity !== undefined ? 1 : 2;
}

function pairsOf(count: number): number[][] {
  return Array.from({ length: count / 2 }, (_, p) => [2 * p, 2 * p + 1]);
}

function* raid1Units(sizeBytes: number, dataOffset: number, roles: readonly number[]): Generator<MirrorUnit> {
  for (let off = 0; off < sizeBytes; off += RAID1_UNIT_BYTES) {
    const len = Math.min(RAID1_UNIT_BYTES, sizeBytes - off);
    yield { volumeOffsetBytes: off, volumeLengthBytes: len, roles, elementOffsetBytes: dataOffset + off };
  }
}

/** Chunk k lives on pair k % pairs at row floor(k / pairs), on both legs. */
function* raid10Units(sizeBytes: number, chunkBytes: number, dataOffset: number, pairs: readonly (readonly number[])[]): Generator<MirrorUnit> {
  for (let k = 0; k * chunkBytes < sizeBytes; k++) {
    const len = Math.min(chunkBytes, sizeBytes - k * chunkBytes);
    const row = Math.floor(k / pairs.length);
    yield { volumeOffsetBytes: k * chunkBytes, volumeLengthBytes: len, roles: pairs[k % pairs.length]!, elementOffsetBytes: dataOffset + row * chunkBytes };
  }
}

interface Copy {
  readonly role: number;
  readonly bytes: Uint8Array;
}

async function readCopies(t: ScrubTarget, unit: MirrorUnit, ctx: UnitContext): Promise<Copy[]> {
  const roles = unit.roles.filter(ctx.usable);
  if (roles.length < copiesNeeded(t)) return [];
  const reads = await Promise.all(roles.map(async (role): Promise<Copy | null> => {
    try {
      return { role, bytes: await ctx.raw.read(t.elements[role]!, unit.elementOffsetBytes, unit.volumeLengthBytes) };
    } catch (err) {
      ctx.legError(role, err);
      return null;
    }
  }));
  return reads.filter((c): c is Copy => c !== null);
}

async function checkMirrorUnit(t: ScrubTarget, unit: MirrorUnit, ctx: UnitContext, dataOffsetBytes: number): Promise<UnitVerdict> {
  const copies = await readCopies(t, unit, ctx);
  if (copies.length < copiesNeeded(t)) return { compared: false, mismatchedBytes: 0, repaired: false };
  if (t.integrity !== undefined) {
    // Copies that agree are still verified: all of them may have gone bad together.
    const mismatchedBytes = sameBytes(copies).length === 1 ? 0 : differingBytes(copies.map((c) => c.bytes));
    return verifyMirrorUnit(t.integrity, t.elements, { volumeOffsetBytes: unit.volumeOffsetBytes, elementOffsetBytes: unit.elementOffsetBytes, dataOffsetBytes }, copies, mismatchedBytes, ctx);
  }
  const classes = sameBytes(copies);
  if (classes.length === 1) return { compared: true, mismatchedBytes: 0, repaired: false };
  const mismatchedBytes = differingBytes(copies.map((c) => c.bytes));
  if (!ctx.repair) return { compared: true, mismatchedBytes, repaired: false };
  const reference = referenceOf(classes);
  const written: number[] = [];
  let repaired = true;
  for (const odd of classes.filter((c) => c !== reference).flat()) {
    try {
      await ctx.raw.write(t.elements[odd.role]!, unit.elementOffsetBytes, reference[0]!.bytes);
      written.push(t.elements[odd.role]!);
    } catch (err) {
      ctx.legError(odd.role, err);
      repaired = false;
    }
  }
  return { compared: true, mismatchedBytes, repaired, written };
}

/** Copies grouped by identical content, in role order of their first member. */
function sameBytes(copies: readonly Copy[]): Copy[][] {
  const classes: Copy[][] = [];
  for (const c of copies) {
    const match = classes.find((k) => equal(k[0]!.bytes, c.bytes));
    if (match !== undefined) match.push(c);
    else classes.push([c]);
  }
  return classes;
}

/** The class most legs agree on; ties go to the class with the lowest role (copies are in role order). */
function referenceOf(classes: readonly Copy[][]): Copy[] {
  let best = classes[0]!;
  for (const k of classes) if (k.length > best.length) best = k;
  return best;
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(view(a), view(b)) === 0;
}

function view(a: Uint8Array): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, a.length);
}

/** Positions where not every copy holds the same byte; whole equal blocks are skipped natively. */
export function differingBytes(copies: readonly Uint8Array[]): number {
  const first = copies[0]!;
  let count = 0;
  for (let at = 0; at < first.length; at += BLOCK_BYTES) {
    const end = Math.min(first.length, at + BLOCK_BYTES);
    const blocks = copies.map((c) => c.subarray(at, end));
    if (blocks.every((b) => equal(b, blocks[0]!))) continue;
    for (let i = at; i < end; i++) {
      const byte = first[i];
      if (copies.some((c) => c[i] !== byte)) count++;
    }
  }
  return count;
}
