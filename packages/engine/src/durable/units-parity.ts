// Rebuild of a raid5/6 role with the same loop as mirrors (copy-job.ts runCopyJob: write fences,
// throttle, progress, abort): one unit per row, whose "copy" computes the target role's chunk
// from the other roles (the stripe engine's reconstructElementRange: reads, parity maths in the
// middle stage, one write to the target) instead of copying it from a source leg.
import type { VolumeGeometry } from '../datapath/map.js';
import { withCopy, type RawIo } from '../datapath/raw-io.js';
import type { WriteGate } from '../datapath/write-gate.js';
import type { ElementState } from '../meta/types.js';
import { runCopyJob, type CopyProgress, type CopyUnit } from './copy-job.js';

/** What the rebuild needs of the volume's stripe engine. */
export interface StripeRebuilder {
  reconstructElementRange(targetRole: number, elementOffsetBytes: number, lengthBytes: number): Promise<void>;
  /** Integrity: writes the checksum pages the rebuild changed (the targets' flush then makes them durable). */
  writeBackChecksums?(): Promise<void>;
}

/** Marks units whose bytes are computed, not copied: there is no source leg. */
export const NO_SOURCE = -1;

/** One unit per row: the target's chunk, fenced by the row's whole volume range (every chunk of it feeds the parity). */
export function* parityRebuildUnits(g: VolumeGeometry, elements: readonly number[], targetRole: number): Generator<CopyUnit> {
  if (g.layout !== 'raid5' && g.layout !== 'raid6') throw new Error(`parityRebuildUnits: ${g.layout} keeps no parity`);
  const k = elements.length - (g.layout === 'raid5' ? 1 : 2);
  const rowBytes = k * g.chunkBytes;
  const target = elements[targetRole];
  const dataOffset = g.elements[targetRole]?.dataOffsetBytes;
  if (target === undefined || dataOffset === undefined) throw new Error(`parityRebuildUnits: no role ${targetRole}`);
  for (let row = 0; row * rowBytes < g.sizeBytes; row++) {
    yield {
      source: NO_SOURCE, target, elementOffsetBytes: dataOffset + row * g.chunkBytes, lengthBytes: g.chunkBytes,
      volumeOffsetBytes: row * rowBytes, volumeLengthBytes: Math.min(rowBytes, g.sizeBytes - row * rowBytes),
    };
  }
}

/** Bytes the rebuild writes to the target (the progress total). */
export function parityRebuildBytes(g: VolumeGeometry, elements: readonly number[], targetRole: number): number {
  let total = 0;
  for (const u of parityRebuildUnits(g, elements, targetRole)) total += u.lengthBytes;
  return total;
}

/** The raw channel for runCopyJob, with copy() computing the target's bytes (see the file comment). */
export function parityRebuildRaw(raw: RawIo, stripe: StripeRebuilder, elements: readonly number[]): RawIo {
  return withCopy(raw, (source, target, off, len) => {
    const role = elements.indexOf(target);
    if (source !== NO_SOURCE || role < 0) return Promise.reject(new Error(`parity rebuild: unit for element ${target} from ${source} is not a rebuild unit`));
    return stripe.reconstructElementRange(role, off, len);
  });
}

export interface ParityRecoveryPlan {
  readonly volume: string;
  readonly geometry: VolumeGeometry;
  /** Element indices by role. */
  readonly elements: readonly number[];
  /** Roles being rebuilt (raid5: one; raid6: up to two), each 'rebuilding' while it runs. */
  readonly targetRoles: readonly number[];
}

export interface ParityRecoveryDeps {
  readonly raw: RawIo;
  readonly gate: WriteGate;
  readonly stripe: StripeRebuilder;
  /** Live state of an element index. */
  readonly state: (element: number) => ElementState;
  readonly maxMiBPerSec: number;
  readonly signal: AbortSignal;
  readonly onProgress: (p: CopyProgress) => void;
}

/**
 * The raid5/6 twin of recovery.ts runRecovery: rebuilds every target role in full through
 * runCopyJob, each unit checking that its target is still being rebuilt, then flushes the
 * targets. For the rebuild keeper: `isMirror ? runRecovery(...) : runParityRecovery(...)`.
 */
export async function runParityRecovery(plan: ParityRecoveryPlan, deps: ParityRecoveryDeps): Promise<CopyProgress> {
  if (plan.targetRoles.length === 0) throw new Error(`volume ${plan.volume}: rebuild without targets`);
  const totalBytes = plan.targetRoles.reduce((sum, role) => sum + parityRebuildBytes(plan.geometry, plan.elements, role), 0);
  function* units(): Generator<CopyUnit> {
    for (const role of plan.targetRoles) {
      for (const unit of parityRebuildUnits(plan.geometry, plan.elements, role)) {
        if (deps.state(unit.target) !== 'rebuilding') throw new Error(`element index ${unit.target} is no longer being rebuilt (${deps.state(unit.target)})`);
        yield unit;
      }
    }
  }
  const final = await runCopyJob({
    raw: parityRebuildRaw(deps.raw, deps.stripe, plan.elements), gate: deps.gate, units: units(), totalBytes, concurrency: 4,
    maxMiBPerSec: deps.maxMiBPerSec, signal: deps.signal, onProgress: deps.onProgress,
  });
  await deps.stripe.writeBackChecksums?.();
  await Promise.all(plan.targetRoles.map((role) => deps.raw.flush(plan.elements[role]!)));
  return final;
}
