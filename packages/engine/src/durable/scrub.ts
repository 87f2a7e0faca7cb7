// Scrub: reads every copy a layout keeps of each unit of a volume, compares them (check) and on
// request rewrites the odd ones (repair). What a unit is and what "agree" means is the layout's
// business: a UnitChecker (scrub-mirror.ts for raid1/raid10; raid5/6 plug a parity checker into
// CHECKERS). This file runs the units: each under a write fence of its volume range (a client
// write cannot land between the read and the repair, nor make a consistent unit look torn), a
// few at a time, throttled, with progress and cancellation; ScrubJobs keeps one per volume.
import { EngineError, type RebuildStatus, type ScrubStatus } from '../api-types.js';
import type { Layout } from '../config/types.js';
import type { VolumeGeometry } from '../datapath/map.js';
import type { RawIo } from '../datapath/raw-io.js';
import type { WriteGate } from '../datapath/write-gate.js';
import type { ElementState } from '../meta/types.js';
import { mirrorChecker } from './scrub-mirror.js';
import { parityChecker, type StripeChecker } from './scrub-parity.js';
import type { RoleBlocks, ScrubIntegrity } from './scrub-verify.js';

/** The volume a scrub walks, as the control plane sees it when the scrub starts. */
export interface ScrubTarget {
  readonly name: string;
  readonly geometry: VolumeGeometry;
  /** Element indices by role. */
  readonly elements: readonly number[];
  /** Element names by role (for messages). */
  readonly elementNames: readonly string[];
  /** Live state of the element in `role`; 'failed' once it no longer holds that role. */
  readonly state: (role: number) => ElementState;
  /** raid5/raid6: the volume's stripe engine, which checks a row's parity (scrub-parity.ts). */
  readonly stripe?: StripeChecker;
  /** Called once a repair wrote legs under a volume range (the engine drops it from its read cache). */
  readonly onRewrite?: (offsetBytes: number, lengthBytes: number) => void;
  /** Integrity volumes (raid1/raid10): copies are judged by their stored checksums (scrub-verify.ts). */
  readonly integrity?: ScrubIntegrity;
}

export interface ScrubUnit {
  /** The volume range whose bytes the unit holds: fenced against client writes while checked. */
  readonly volumeOffsetBytes: number;
  readonly volumeLengthBytes: number;
}

export interface UnitContext {
  readonly raw: RawIo;
  readonly repair: boolean;
  /** False for a role that is not active now or that had an I/O error earlier in this scrub. */
  readonly usable: (role: number) => boolean;
  /** Reports a failed read or write on a role's element: the scrub leaves that role out from now on. */
  readonly legError: (role: number, err: unknown) => void;
}

export interface UnitVerdict {
  /** False when fewer than two copies could be read: nothing to compare. */
  readonly compared: boolean;
  /** Byte positions where the copies disagree (0: consistent). */
  readonly mismatchedBytes: number;
  readonly repaired: boolean;
  /** Elements written by the repair (flushed at the end of the scrub). */
  readonly written?: readonly number[];
  /** Integrity: the unit is mismatched even when its copies agree byte for byte (they failed their checksums). */
  readonly mismatched?: boolean;
  /** Integrity: per role with blocks that failed their checksums (or disagreed with a copy that verified). */
  readonly byRole?: readonly RoleBlocks[];
}

/** A layout's way of checking a volume, unit by unit. `U` carries whatever the layout needs. */
export interface UnitChecker<U extends ScrubUnit = ScrubUnit> {
  /** Sum of the units' volume lengths (the progress total). */
  readonly totalBytes: number;
  /** Units at most this many at once (small units want more to keep the queue busy). */
  readonly concurrency: number;
  units(): Iterable<U>;
  /** Whether some unit can still be compared with only these roles usable (false: stop, or refuse to start). */
  comparable(usable: (role: number) => boolean): boolean;
  /** Called under the unit's fence; must not throw for a leg error (report it through ctx.legError). */
  check(unit: U, ctx: UnitContext): Promise<UnitVerdict>;
}

export type CheckerFactory = (target: ScrubTarget) => UnitChecker;

/** Layouts that can be scrubbed. raid5/raid6 add their parity checker here. */
const CHECKERS: Partial<Record<Layout, CheckerFactory>> = {
  raid1: mirrorChecker,
  raid10: mirrorChecker,
  raid5: parityChecker,
  raid6: parityChecker,
};

export function scrubCheckerFor(target: ScrubTarget): UnitChecker {
  const factory = CHECKERS[target.geometry.layout];
  if (factory === undefined) {
    const layouts = Object.keys(CHECKERS).join(', ');
    throw new EngineError('invalid', `volume ${target.name} is ${target.geometry.layout}: it keeps no second copy to compare`, `volume ${target.name}`, `scrub works on ${layouts}`);
  }
  return factory(target);
}

export interface ScrubOptions {
  /** Rewrite the copies that disagree (default: only count them). */
  readonly repair?: boolean;
  /** Upper bound on volume bytes checked per second; 0 or absent = unthrottled. */
  readonly maxMiBPerSec?: number;
}

export interface ScrubRunOptions extends ScrubOptions {
  readonly target: ScrubTarget;
  readonly checker: UnitChecker;
  readonly raw: RawIo;
  readonly gate: WriteGate;
  readonly signal?: AbortSignal;
  readonly onProgress?: (p: RebuildStatus) => void;
  /** Progress callbacks at most this often (default 250 ms), plus one at the end. */
  readonly progressEveryMs?: number;
  readonly log?: (msg: string) => void;
  /** When the run started (ms since the epoch): the result's startedMs, so callers can match it. */
  readonly startedMs?: number;
}

const MiB = 1024 * 1024;
const CONCURRENCY_MAX = 64;
const THROTTLE_SLEEP_MAX_MS = 250;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export function scrubProgress(kind: 'check' | 'repair', doneBytes: number, totalBytes: number, startedMs: number): RebuildStatus {
  const seconds = Math.max((Date.now() - startedMs) / 1000, 1e-3);
  const mibPerSec = doneBytes / MiB / seconds;
  const percent = totalBytes === 0 ? 100 : Math.min(100, (100 * doneBytes) / totalBytes);
  const etaSeconds = doneBytes === 0 || mibPerSec === 0 ? null : (totalBytes - doneBytes) / MiB / mibPerSec;
  return { kind, element: null, percent, mibPerSec, etaSeconds, doneBytes, totalBytes };
}

interface Tally {
  checkedBytes: number;
  skippedBytes: number;
  mismatchedUnits: number;
  mismatchedBytes: number;
  repairedUnits: number;
  ioErrors: number;
}

type BlockCounts = Omit<RoleBlocks, 'role'>;

/** Walks every unit once; resolves with the result (outcome cancelled on abort, failed on an unexpected error). */
export async function runScrub(opts: ScrubRunOptions): Promise<ScrubStatus> {
  const kind = opts.repair === true ? 'repair' : 'check';
  const startedMs = opts.startedMs ?? Date.now();
  const tally: Tally = { checkedBytes: 0, skippedBytes: 0, mismatchedUnits: 0, mismatchedBytes: 0, repairedUnits: 0, ioErrors: 0 };
  const blocks = new Map<number, BlockCounts>();
  const lost = new Set<number>();
  let lostReason = '';
  const written = new Set<number>();
  const ctx: UnitContext = {
    raw: opts.raw, repair: opts.repair === true,
    usable: (role) => !lost.has(role) && opts.target.state(role) === 'active',
    legError: (role, err) => {
      tally.ioErrors++;
      if (lost.has(role)) return;
      lost.add(role);
      const name = opts.target.elementNames[role] ?? String(role);
      lostReason = `element ${name}: ${(err as Error).message}`;
      opts.log?.(`scrub of ${opts.target.name}: element ${name} left out after an I/O error: ${(err as Error).message}`);
    },
  };
  const everyMs = opts.progressEveryMs ?? 250;
  let lastReportMs = 0;
  const report = (): void => {
    if (opts.onProgress === undefined || Date.now() - lastReportMs < everyMs) return;
    lastReportMs = Date.now();
    opts.onProgress(scrubProgress(kind, tally.checkedBytes + tally.skippedBytes, opts.checker.totalBytes, startedMs));
  };
  let outcome: ScrubStatus['outcome'] = 'done';
  let message: string | undefined;
  try {
    await forEachUnit(opts, async (unit) => {
      const verdict = await opts.checker.check(unit, ctx);
      count(tally, unit, verdict);
      for (const r of verdict.byRole ?? []) addBlocks(blocks, r);
      for (const e of verdict.written ?? []) written.add(e);
      if ((verdict.written?.length ?? 0) > 0) opts.target.onRewrite?.(unit.volumeOffsetBytes, unit.volumeLengthBytes);
      report();
      if (lost.size > 0 && !opts.checker.comparable(ctx.usable)) throw new Error(`not enough usable copies left to check (${lostReason})`);
    }, () => throttle(opts.maxMiBPerSec, tally.checkedBytes + tally.skippedBytes, startedMs, opts.signal));
  } catch (err) {
    outcome = opts.signal?.aborted === true ? 'cancelled' : 'failed';
    message = outcome === 'cancelled' ? String(opts.signal?.reason ?? 'cancelled') : (err as Error).message;
  }
  for (const element of written) await opts.raw.flush(element).catch(() => { tally.ioErrors++; });
  const byElement = opts.target.integrity === undefined ? {} : { byElement: [...blocks].sort(([a], [b]) => a - b).map(([role, b]) => ({ element: opts.target.elementNames[role] ?? String(role), ...b })) };
  const result: ScrubStatus = { kind, startedMs, finishedMs: Date.now(), outcome, ...tally, ...byElement, ...(message !== undefined ? { message } : {}) };
  opts.onProgress?.(scrubProgress(kind, tally.checkedBytes + tally.skippedBytes, opts.checker.totalBytes, startedMs));
  return result;
}

function count(tally: Tally, unit: ScrubUnit, verdict: UnitVerdict): void {
  if (!verdict.compared) {
    tally.skippedBytes += unit.volumeLengthBytes;
    return;
  }
  tally.checkedBytes += unit.volumeLengthBytes;
  if (verdict.mismatchedBytes === 0 && verdict.mismatched !== true) return;
  tally.mismatchedUnits++;
  tally.mismatchedBytes += verdict.mismatchedBytes;
  if (verdict.repaired) tally.repairedUnits++;
}

function addBlocks(blocks: Map<number, BlockCounts>, r: RoleBlocks): void {
  const b = blocks.get(r.role) ?? { badBlocks: 0, repairedBlocks: 0, unrecoverableBlocks: 0 };
  b.badBlocks += r.badBlocks;
  b.repairedBlocks += r.repairedBlocks;
  b.unrecoverableBlocks += r.unrecoverableBlocks;
  blocks.set(r.role, b);
}

/**
 * Runs `fn` over the checker's units, a few at a time, each under its fence, then `pace` outside
 * it (a throttled scrub must not hold client writes back while it sleeps). Stops at the first
 * error or on abort.
 */
async function forEachUnit(opts: ScrubRunOptions, fn: (unit: ScrubUnit) => Promise<void>, pace: () => Promise<void>): Promise<void> {
  const concurrency = Math.min(Math.max(1, opts.checker.concurrency), CONCURRENCY_MAX);
  const iterator = opts.checker.units()[Symbol.iterator]();
  let failure: unknown = null;
  const worker = async (): Promise<void> => {
    while (failure === null) {
      if (opts.signal?.aborted === true) throw new Error('cancelled');
      const next = iterator.next();
      if (next.done === true) return;
      const unit = next.value;
      const lift = await opts.gate.fence(unit.volumeOffsetBytes, unit.volumeLengthBytes);
      try {
        await fn(unit);
      } finally {
        lift();
      }
      await pace();
    }
  };
  await Promise.all(Array.from({ length: concurrency }, () => worker().catch((err: unknown) => { failure ??= err; })));
  if (failure !== null) throw failure;
}

/** Sleeps until the bytes done fit the rate limit, in short naps so a cancel is seen soon. */
async function throttle(maxMiBPerSec: number | undefined, doneBytes: number, startedMs: number, signal: AbortSignal | undefined): Promise<void> {
  if (maxMiBPerSec === undefined || !(maxMiBPerSec > 0)) return;
  const dueMs = startedMs + (doneBytes / MiB / maxMiBPerSec) * 1000;
  // Bounded: each nap brings Date.now() closer to dueMs, which is fixed.
  for (let waitMs = dueMs - Date.now(); waitMs > 0 && signal?.aborted !== true; waitMs = dueMs - Date.now()) {
    await sleep(Math.min(waitMs, THROTTLE_SLEEP_MAX_MS));
  }
}
