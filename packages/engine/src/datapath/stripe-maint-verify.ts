// The integrity half of the raid5/6 maintenance units (stripe-maint.ts), under the row lock its
// caller holds: every entry of a span read into scratch is judged by its own stored checksums
// (integrity/parity-resolve.ts), so a scrub names the unit whose blocks are wrong and a rebuild
// never computes its target from a source block that fails. Fixes go back to the entry's element
// (bytes and checksum); blocks no parity can vouch for are counted unrecoverable, never written.
// A rebuilt target whose block came from a lost source block gets a checksum that can never
// match: the client then gets EIO for it, never wrong bytes.
import { resolveStripeSpan, type BlockFix, type EntrySpan, type SpanResolution } from '../integrity/parity-resolve.js';
import { INTEGRITY_BLOCK_BYTES, storedSums } from '../integrity/types.js';
import { DataPathError } from './errno.js';
import { elementOffset, indexRole, volumeOffset } from './map-parity.js';
import { bufferData, bufferSlot, type Scratch } from './stripe-io.js';
import type { StripeIntegrity } from './stripe-integrity.js';
import type { RowSpan } from './stripe-maint.js';
import type { UnitContext } from './stripe-unit.js';

const BLOCK = INTEGRITY_BLOCK_BYTES;

/** One role's checksum verdicts in a span or row (blocks of 4 KiB); the shape of scrub-verify.ts RoleBlocks. */
export interface StripeRoleBlocks {
  readonly role: number;
  badBlocks: number;
  repairedBlocks: number;
  unrecoverableBlocks: number;
}

/** Blocks of a span; EINVAL unless it covers whole blocks of the data area (checksums cover 4 KiB each). */
export function spanBlocks(ctx: UnitContext, r: RowSpan): number {
  const rel = r.row * ctx.io.vol.g.chunkBytes + r.a;
  if (rel % BLOCK !== 0 || (r.b - r.a) % BLOCK !== 0) {
    throw new DataPathError('EINVAL', `${ctx.io.vol.name}: row ${r.row} bytes [${r.a}, ${r.b}) are not whole ${BLOCK}-byte blocks (integrity)`);
  }
  return (r.b - r.a) / BLOCK;
}

function view(ctx: UnitContext, s: Scratch, e: number, len: number): Uint8Array {
  return ctx.io.v.slab.view(bufferSlot(s, e), bufferData(s, e), len);
}

/** The span's entries as the resolver takes them: the `present` ones' scratch bytes and stored checksums, the rest absent. */
async function spanEntries(ctx: UnitContext, it: StripeIntegrity, r: RowSpan, s: Scratch, present: readonly number[]): Promise<EntrySpan[]> {
  const g = ctx.io.vol.g;
  const len = r.b - r.a;
  return Promise.all(Array.from({ length: g.k + g.np }, async (_, e): Promise<EntrySpan> => {
    if (!present.includes(e)) return { bytes: null, stored: null };
    const role = indexRole(g, r.row, e);
    return { bytes: view(ctx, s, e, len), stored: await it.stored(role, elementOffset(g, role, r.row, r.a), len) };
  }));
}

/** Volume offset of block i of entry e (data only; parity blocks have none). */
function blockAt(ctx: UnitContext, r: RowSpan, e: number, i: number): number | undefined {
  const g = ctx.io.vol.g;
  return e < g.k ? volumeOffset(g, r.row, e, r.a + i * BLOCK) : undefined;
}

/** Consecutive runs of `blocks` (sorted): [first, count]. */
function runsOf(blocks: readonly number[]): [number, number][] {
  const out: [number, number][] = [];
  for (const b of blocks) {
    const last = out[out.length - 1];
    if (last !== undefined && last[0] + last[1] === b) last[1]++;
    else out.push([b, 1]);
  }
  return out;
}

/**
 * Writes entry e's fixes back to its element: the rebuilt bytes of blocks whose bytes changed (in
 * runs, from the scratch buffer), then every fixed block's checksum. False when the write failed
 * (settle failed the element; its checksums are left alone).
 */
async function writeFixes(ctx: UnitContext, it: StripeIntegrity, r: RowSpan, s: Scratch, e: number, fixes: readonly BlockFix[]): Promise<boolean> {
  const { io } = ctx;
  const g = io.vol.g;
  const role = indexRole(g, r.row, e);
  const at = (i: number): number => elementOffset(g, role, r.row, r.a + i * BLOCK);
  const writes = runsOf(fixes.filter((f) => f.data).map((f) => f.block));
  const failed = await io.settle(writes.map(([first, count]) => [role, io.write(role, at(first), count * BLOCK, bufferSlot(s, e), bufferData(s, e) + first * BLOCK)] as const));
  if (failed.length > 0) return false;
  const sumOf = new Map(fixes.map((f) => [f.block, f.sum]));
  for (const [first, count] of runsOf(fixes.map((f) => f.block))) {
    await it.recordSums(role, at(first), Uint32Array.from({ length: count }, (_, j) => sumOf.get(first + j)!));
  }
  return true;
}

/**
 * Counts a resolution per role (each fix once as a mismatch, once more as repaired when written;
 * lost blocks as unrecoverable) and, with `repair`, writes the fixes. Returns the roles' verdicts
 * (only those with bad blocks) and whether every bad block was repaired.
 */
async function applyResolution(ctx: UnitContext, it: StripeIntegrity, r: RowSpan, s: Scratch, res: SpanResolution, repair: boolean): Promise<{ byRole: StripeRoleBlocks[]; repaired: boolean }> {
  const g = ctx.io.vol.g;
  const byRole: StripeRoleBlocks[] = [];
  let repaired = true;
  for (let e = 0; e < g.k + g.np; e++) {
    const bad = res.bad[e]!;
    if (bad.length === 0) continue;
    const role = indexRole(g, r.row, e);
    const fixes = res.fixes[e]!;
    const lost = res.lost[e]!;
    const tally: StripeRoleBlocks = { role, badBlocks: bad.length, repairedBlocks: 0, unrecoverableBlocks: lost.length };
    byRole.push(tally);
    for (const f of fixes) it.count(role, 'mismatches', 1, blockAt(ctx, r, e, f.block));
    for (const i of lost) it.count(role, 'unrecoverable', 1, blockAt(ctx, r, e, i));
    if (lost.length > 0) repaired = false;
    if (fixes.length === 0) continue;
    if (!repair || !(await writeFixes(ctx, it, r, s, e, fixes))) {
      repaired = false;
      continue;
    }
    tally.repairedBlocks = fixes.length;
    for (const f of fixes) it.count(role, 'repaired', 1, blockAt(ctx, r, e, f.block));
  }
  return { byRole, repaired };
}

/** Scrub: judges the k + np entries read into scratch by their checksums (see the file comment). */
export async function verifySpan(ctx: UnitContext, it: StripeIntegrity, r: RowSpan, s: Scratch, repair: boolean): Promise<{ byRole: StripeRoleBlocks[]; repaired: boolean }> {
  const g = ctx.io.vol.g;
  const blocks = spanBlocks(ctx, r);
  const entries = await spanEntries(ctx, it, r, s, Array.from({ length: g.k + g.np }, (_, e) => e));
  const res = resolveStripeSpan(g.k, g.np, entries, blocks, it.crc32cBlocks);
  return applyResolution(ctx, it, r, s, res, repair);
}

/**
 * Rebuild: judges the sources read into scratch (`reads`; the rest are absent) before the target
 * is computed from them; fixes bad source blocks in scratch and on their elements. Returns the
 * blocks of the span some source could not vouch for (the target's bytes there are unknown).
 */
export async function verifySources(ctx: UnitContext, it: StripeIntegrity, r: RowSpan, s: Scratch, reads: readonly number[]): Promise<Set<number>> {
  const g = ctx.io.vol.g;
  const blocks = spanBlocks(ctx, r);
  const entries = await spanEntries(ctx, it, r, s, reads);
  const res = resolveStripeSpan(g.k, g.np, entries, blocks, it.crc32cBlocks);
  if (res.bad.every((b) => b.length === 0)) return new Set();
  await applyResolution(ctx, it, r, s, res, true);
  return new Set(res.lost.flat());
}

/**
 * Records the rebuilt target's checksums after its write: the CRC of what was computed, except
 * for `lost` blocks, which get one that can never match (their bytes came from a bad source).
 */
export async function recordTarget(ctx: UnitContext, it: StripeIntegrity, r: RowSpan, s: Scratch, target: number, lost: ReadonlySet<number>): Promise<void> {
  const g = ctx.io.vol.g;
  const len = r.b - r.a;
  const role = indexRole(g, r.row, target);
  const sums = storedSums(it.crc32cBlocks, view(ctx, s, target, len));
  for (const i of lost) sums[i] = (sums[i]! ^ 0xffffffff) >>> 0 || 1;
  await it.recordSums(role, elementOffset(g, role, r.row, r.a), sums);
  if (lost.size === 0) return;
  for (const i of [...lost].sort((x, y) => x - y)) it.count(role, 'unrecoverable', 1, blockAt(ctx, r, target, i));
  it.note(`${ctx.io.vol.name}: rebuild of role ${role}, row ${r.row}: ${lost.size} block(s) from sources that failed their checksums and could not be repaired; marked unreadable`);
}
