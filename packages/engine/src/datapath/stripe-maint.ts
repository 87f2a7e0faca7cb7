// Maintenance units of raid5/6 volumes, each under its row lock (held by the caller): rebuilding
// one role's bytes from the others (rebuild onto a replacement or spare), and checking a row's
// parity against its data (scrub), with repair of what the check blames. Parity maths run in the
// middle stage like the write path's. Neither goes through the journal: a rebuild target is not
// trusted until its rebuild ends, and a repair rewrites bytes that were wrong already.
// With integrity (docs/integrity.md) every unit carries CRC32C per 4 KiB block: a scrub names the
// unit whose blocks fail (integrity/parity-resolve.ts) and rebuilds them from the others, and a
// rebuild verifies its sources first and records the target's checksums (stripe-maint-verify.ts).
import { CHECK_P_BAD, CHECK_Q_BAD, CHECK_UNLOCATABLE, ComputeMode, oldEntry, PW } from './compute-layout.js';
import { DataPathError } from './errno.js';
import { elementOffset, indexRole, roleIndex } from './map-parity.js';
import { bufferData, bufferSlot, READABLE, type Scratch } from './stripe-io.js';
import { recoverable } from './stripe-plan.js';
import type { StripeIntegrity } from './stripe-integrity.js';
import type { UnitContext } from './stripe-unit.js';
import { recordTarget, spanBlocks, verifySources, verifySpan, type StripeRoleBlocks } from './stripe-maint-verify.js';

export interface RowSpan {
  readonly row: number;
  readonly a: number;
  readonly b: number;
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

async function readAll(ctx: UnitContext, r: RowSpan, s: Scratch, entries: readonly number[]): Promise<boolean> {
  const { io } = ctx;
  const len = r.b - r.a;
  const failed = await io.settle(entries.map((e) => {
    const role = indexRole(io.vol.g, r.row, e);
    return [role, io.read(role, elementOffset(io.vol.g, role, r.row, r.a), len, bufferSlot(s, e), bufferData(s, e))] as const;
  }));
  return failed.length === 0;
}

async function runBlock(ctx: UnitContext, s: Scratch, len: number, mode: 1 | 3, entries: readonly number[], fails: readonly number[]): Promise<void> {
  const g = ctx.io.vol.g;
  const p = ctx.io.params(s.block).begin(mode, len, g.k, g.np);
  for (const e of entries) p.entry(e, bufferSlot(s, e), bufferData(s, e));
  p.fails(fails[0] ?? -1, fails[1] ?? -1);
  await ctx.io.compute(p, len);
}

/** Which indices to rebuild so that `target` gets its bytes, and from which readable ones. */
function rebuildPlan(ctx: UnitContext, row: number, target: number): { fails: number[]; reads: number[] } {
  const g = ctx.io.vol.g;
  const readable = (e: number): boolean => e !== target && ctx.io.state(indexRole(g, row, e)) === READABLE;
  const lostData = range(g.k).filter((j) => !readable(j));
  const parityIn = [g.k, g.k + 1].slice(0, g.np).filter(readable);
  if (!recoverable(g, lostData, parityIn)) throw new DataPathError('EIO', `${ctx.io.vol.name}: row ${row}: too many elements lost to rebuild index ${target}`);
  const fails = target >= g.k ? [...lostData, target] : lostData;
  if (fails.length > g.np) throw new DataPathError('EIO', `${ctx.io.vol.name}: row ${row}: ${fails.length} indices lost, parity covers ${g.np}`);
  return { fails, reads: [...range(g.k).filter(readable), ...parityIn] };
}

/** Rebuilds `targetRole`'s bytes [a, b) of a row from the other roles and writes them to it. */
export async function rebuildSpan(ctx: UnitContext, r: RowSpan, targetRole: number): Promise<void> {
  const { io } = ctx;
  const g = io.vol.g;
  const len = r.b - r.a;
  for (let attempt = 0; attempt <= g.np + 1; attempt++) {
    const target = roleIndex(g, r.row, targetRole);
    const plan = rebuildPlan(ctx, r.row, target);
    const s = await ctx.scratch.acquire(g.k + g.np, len);
    try {
      if (!(await readAll(ctx, r, s, plan.reads))) continue;
      const it = ctx.integrity;
      // Integrity: sources are verified (and fixed in scratch) before the target is computed from them.
      const lost = it === null ? null : await verifySources(ctx, it, r, s, plan.reads);
      const entries = [...new Set([...range(g.k), ...plan.reads, ...plan.fails])];
      await runBlock(ctx, s, len, ComputeMode.RECONSTRUCT, entries, plan.fails);
      const [failed] = await io.settle([[targetRole, io.write(targetRole, elementOffset(g, targetRole, r.row, r.a), len, bufferSlot(s, target), bufferData(s, target))]]);
      if (failed !== undefined) throw new DataPathError('EIO', `${io.vol.name}: rebuild target role ${targetRole} failed`);
      if (it !== null && lost !== null) await recordTarget(ctx, it, r, s, target, lost);
      return;
    } finally {
      ctx.scratch.release(s);
    }
  }
  throw new DataPathError('EIO', `${io.vol.name}: row ${r.row}: elements kept failing during the rebuild`);
}

export interface StripeCheck {
  /** False when some role could not be read: nothing was compared. */
  readonly compared: boolean;
  readonly ok: boolean;
  /** The roles the check blames: P/Q when they disagree with the data; a data role that raid6 located; with integrity, roles whose blocks failed their checksums. */
  readonly badRoles: readonly number[];
  /** Byte positions (within the row's chunks) where parity and data disagree. */
  readonly mismatchedBytes: number;
  readonly repaired: boolean;
  /** Integrity: per role with blocks that failed their checksums (absent without integrity). */
  readonly byRole?: readonly StripeRoleBlocks[];
}

function blamed(ctx: UnitContext, flags: number, dataLo: number, dataHi: number): number[] {
  const g = ctx.io.vol.g;
  const bad = new Set<number>();
  for (let j = 0; j < g.k; j++) if ((((j < 32 ? dataLo : dataHi) >>> (j & 31)) & 1) !== 0) bad.add(j);
  // Unlocatable (raid6), or any raid5 mismatch: the parity is what gets rewritten, as md's repair does.
  if ((flags & CHECK_P_BAD) !== 0 || (flags & CHECK_UNLOCATABLE) !== 0) bad.add(g.k);
  if (g.np === 2 && ((flags & CHECK_Q_BAD) !== 0 || (flags & CHECK_UNLOCATABLE) !== 0)) bad.add(g.k + 1);
  return [...bad].sort((x, y) => x - y);
}

/**
 * Checks a row's bytes [a, b): every role must be readable. With `repair`, rewrites what it blames.
 * With integrity, checksums decide first (stripe-maint-verify.ts): when some block fails its
 * checksum the span is judged by them alone; only when none fails does the parity CHECK rule apply
 * (it covers blocks without checksums), and then it never rewrites a data unit that carries any.
 */
export async function checkSpan(ctx: UnitContext, r: RowSpan, repair: boolean): Promise<StripeCheck> {
  const { io } = ctx;
  const g = io.vol.g;
  const len = r.b - r.a;
  const all = range(g.k + g.np);
  const skipped: StripeCheck = { compared: false, ok: true, badRoles: [], mismatchedBytes: 0, repaired: false };
  if (!all.every((e) => io.state(indexRole(g, r.row, e)) === READABLE)) return skipped;
  const it = ctx.integrity;
  if (it !== null) spanBlocks(ctx, r);
  // Buffers: the n roles, then the computed P (and Q) at the entries CHECK reads them from.
  const s = await ctx.scratch.acquire(g.k + 2 * g.np, len);
  try {
    if (!(await readAll(ctx, r, s, all))) return skipped;
    const scratch = [oldEntry(g.k, g.np, 0), oldEntry(g.k, g.np, 1)].slice(0, g.np);
    await runBlock(ctx, s, len, ComputeMode.CHECK, [...all, ...scratch], []);
    const p = io.params(s.block);
    let bad = blamed(ctx, p.word(PW.OUT_FLAGS), p.word(PW.OUT_DATA_LO), p.word(PW.OUT_DATA_HI));
    const mismatchedBytes = p.word(PW.OUT_MISMATCHED);
    if (it !== null) {
      const v = await verifySpan(ctx, it, r, s, repair);
      if (v.byRole.length > 0) return { compared: true, ok: false, badRoles: v.byRole.map((x) => x.role), mismatchedBytes, repaired: repair && v.repaired, byRole: v.byRole };
      bad = await plainBlame(ctx, it, r, bad);
    }
    const badRoles = bad.map((e) => indexRole(g, r.row, e));
    const byRole = it === null ? {} : { byRole: [] };
    if (bad.length === 0 || !repair || bad.length > g.np) return { compared: true, ok: bad.length === 0, badRoles, mismatchedBytes, repaired: false, ...byRole };
    await runBlock(ctx, s, len, ComputeMode.RECONSTRUCT, all, bad);
    const writes = bad.map((e) => [indexRole(g, r.row, e), io.write(indexRole(g, r.row, e), elementOffset(g, indexRole(g, r.row, e), r.row, r.a), len, bufferSlot(s, e), bufferData(s, e))] as const);
    const failed = await io.settle(writes);
    // The rewritten units' checksums follow their new bytes.
    if (it !== null) {
      for (const e of bad) {
        const role = indexRole(g, r.row, e);
        if (!failed.includes(role)) await it.record(role, elementOffset(g, role, r.row, r.a), len, io.v.slab.view(bufferSlot(s, e), bufferData(s, e), len));
      }
    }
    return { compared: true, ok: false, badRoles, mismatchedBytes, repaired: failed.length === 0, ...byRole };
  } finally {
    ctx.scratch.release(s);
  }
}

/**
 * Integrity, no checksum failed: the parity CHECK's blame stands, but a data unit that carries a
 * checksum on some block of the span verified there and is not rewritten: its blame falls to P
 * (and Q), which the data then rebuild.
 */
async function plainBlame(ctx: UnitContext, it: StripeIntegrity, r: RowSpan, bad: readonly number[]): Promise<number[]> {
  const g = ctx.io.vol.g;
  const out = new Set<number>();
  for (const e of bad) {
    if (e >= g.k) {
      out.add(e);
      continue;
    }
    const role = indexRole(g, r.row, e);
    const stored = await it.stored(role, elementOffset(g, role, r.row, r.a), r.b - r.a);
    if (stored !== null && stored.every((x) => x === 0)) out.add(e);
    else for (let x = g.k; x < g.k + g.np; x++) out.add(x);
  }
  return [...out].sort((x, y) => x - y);
}
