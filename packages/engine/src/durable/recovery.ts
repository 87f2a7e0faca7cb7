// One resync or rebuild of a mirror volume: copy the bitmap's dirty regions (resync) or the whole
// volume (rebuild) onto each target leg from an active leg of its group (raid1: any other leg,
// raid10: the partner), through runCopyJob (write fences, throttle, progress), then flush the
// targets so what was copied is on stable storage before they are declared up to date.
import type { MaintenanceKind, RebuildStatus } from '../api-types.js';
import type { VolumeGeometry } from '../datapath/map.js';
import type { RawIo } from '../datapath/raw-io.js';
import type { WriteGate } from '../datapath/write-gate.js';
import type { ElementState } from '../meta/types.js';
import { CopyAborted, runCopyJob, type CopyProgress, type CopyUnit } from './copy-job.js';
import { mirrorUnitBytes, mirrorUnits, type MirrorTarget, type VolumeRange } from './units.js';

export interface RecoveryTarget {
  readonly role: number;
  /** Data-path index of the element in that role. */
  readonly element: number;
  readonly name: string;
  /** Copy the whole volume (a new or unknown leg) rather than the bitmap's dirty regions. */
  readonly full: boolean;
}

export interface RecoveryPlan {
  readonly volume: string;
  readonly geometry: VolumeGeometry;
  /** Element indices by role. */
  readonly elements: readonly number[];
  readonly targets: readonly RecoveryTarget[];
  /** Volume ranges a partial target gets (the bitmap's dirty regions when the run starts). */
  readonly dirty: readonly VolumeRange[];
}

export interface RecoveryDeps {
  readonly raw: RawIo;
  readonly gate: WriteGate;
  /** Live state of an element index (the data path's). */
  readonly state: (element: number) => ElementState;
  /** 0 = unthrottled. */
  readonly maxMiBPerSec: number;
  readonly signal: AbortSignal;
  readonly onProgress: (p: RebuildStatus) => void;
}

/** Units copied at once: enough to keep a remote leg's queue busy, few enough to keep fences short. */
const CONCURRENCY = 8;

export function recoveryKind(targets: readonly RecoveryTarget[]): Extract<MaintenanceKind, 'rebuild' | 'resync'> {
  return targets.some((t) => t.full) ? 'rebuild' : 'resync';
}

export function rebuildStatus(plan: Pick<RecoveryPlan, 'targets'>, p: CopyProgress): RebuildStatus {
  const only = plan.targets.length === 1 ? plan.targets[0]!.name : null;
  return { kind: recoveryKind(plan.targets), element: only, percent: p.percent, mibPerSec: p.mibPerSec, etaSeconds: p.etaSeconds, doneBytes: p.doneBytes, totalBytes: p.totalBytes };
}

function mirrorTarget(plan: RecoveryPlan, t: RecoveryTarget, state: (element: number) => ElementState): MirrorTarget {
  const targetRoles = new Set(plan.targets.map((x) => x.role));
  return {
    geometry: plan.geometry, elements: plan.elements, targetRole: t.role,
    // An active leg that is not itself being brought up to date.
    pickSource: (candidates) => candidates.find((r) => !targetRoles.has(r) && state(plan.elements[r]!) === 'active') ?? -1,
  };
}

function rangesOf(plan: RecoveryPlan, t: RecoveryTarget): readonly VolumeRange[] {
  return t.full ? [{ offsetBytes: 0, lengthBytes: plan.geometry.sizeBytes }] : plan.dirty;
}

/** Bytes the plan copies (the progress total). Throws when a target has no active source. */
export function recoveryBytes(plan: RecoveryPlan, state: (element: number) => ElementState): number {
  let total = 0;
  for (const t of plan.targets) total += mirrorUnitBytes(mirrorTarget(plan, t, state), rangesOf(plan, t));
  return total;
}

/** Every unit of every target; each one first checks that its source and target are still usable. */
function* checkedUnits(plan: RecoveryPlan, deps: RecoveryDeps): Generator<CopyUnit> {
  for (const t of plan.targets) {
    for (const unit of mirrorUnits(mirrorTarget(plan, t, deps.state), rangesOf(plan, t))) {
      if (deps.signal.aborted) throw new CopyAborted(String(deps.signal.reason ?? 'aborted'));
      if (deps.state(unit.source) !== 'active') throw new Error(`source leg (element index ${unit.source}) is no longer active`);
      if (deps.state(unit.target) !== 'rebuilding') throw new Error(`element ${t.name} is no longer being rebuilt (${deps.state(unit.target)})`);
      yield unit;
    }
  }
}

/** Runs the plan to the end; rejects on the first failed unit, a lost source or target, or abort. */
export async function runRecovery(plan: RecoveryPlan, deps: RecoveryDeps): Promise<RebuildStatus> {
  if (plan.targets.length === 0) throw new Error(`volume ${plan.volume}: recovery without targets`);
  const totalBytes = recoveryBytes(plan, deps.state);
  const final = await runCopyJob({
    raw: deps.raw, gate: deps.gate, units: checkedUnits(plan, deps), totalBytes, concurrency: CONCURRENCY,
    maxMiBPerSec: deps.maxMiBPerSec, signal: deps.signal, onProgress: (p) => deps.onProgress(rebuildStatus(plan, p)),
  });
  if (final.doneBytes !== totalBytes) throw new Error(`volume ${plan.volume}: copied ${final.doneBytes} of ${totalBytes} bytes`);
  // Writes reached the targets without FUA (copies) or while they were not yet holders: flush first.
  await Promise.all(plan.targets.map((t) => deps.raw.flush(t.element)));
  return rebuildStatus(plan, final);
}
