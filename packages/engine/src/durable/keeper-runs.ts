// One resync or rebuild run of the keeper (keeper.ts), the parts outside the class: the copy
// (mirror units from the bitmap or everything, sparse-aware; raid5/6 rows by the stripe engine),
// and the settle step after it (targets active or failed, superblocks say so).
import type { LastRebuild, RebuildStatus } from '../api-types.js';
import { markClean } from '../meta/assemble.js';
import type { AssembledVolume } from '../meta/types.js';
import type { VolumeEntry } from '../state/registry.js';
import { recomputingRaw } from '../integrity/recompute.js';
import type { KeeperHost } from './host.js';
import type { Keep, Run } from './keeper-shared.js';
import { recoveryKind, runRecovery, type RecoveryPlan } from './recovery.js';
import { sparseAwareRaw, type SparseCopyStats } from './sparse-copy.js';
import { runParityRecovery } from './units-parity.js';

const MiBText = (bytes: number): string => `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;

export async function copyRun(host: KeeperHost, keep: Keep, entry: VolumeEntry, run: Run, plan: RecoveryPlan): Promise<RebuildStatus> {
  await host.stopScrub(keep.name); // a resync or rebuild preempts a scrub, as in md
  const what = run.targets.map((t) => `${t.name} (${t.full ? 'everything' : 'dirty regions'})`).join(', ');
  host.log('info', `volume ${keep.name}: ${recoveryKind(run.targets)} of ${what} started`);
  let lastEmitMs = 0;
  const onProgress = (p: RebuildStatus): void => {
    run.progress = p;
    if (Date.now() - lastEmitMs >= 250) {
      lastEmitMs = Date.now();
      host.changed();
    }
  };
  // Integrity: each unit's checksums recomputed from the source, on every leg, before it counts.
  const it = host.integrityOf?.(keep.name);
  const recompute = it === undefined ? null : recomputingRaw(host.dataPath.raw, it.store, () => entry.assembled.dataOffsetBytes);
  const deps = {
    raw: recompute?.raw ?? host.dataPath.raw, gate: host.dataPath.volumeIo(entry.index).gate, state: (el: number) => host.dataPath.elementState(el),
    maxMiBPerSec: host.rebuildMiBPerSec(), signal: run.controller.signal,
  };
  if (keep.bitmap !== null) {
    const runsOf = host.elementRuns;
    if (runsOf === undefined) return runRecovery(plan, { ...deps, onProgress });
    const stats: SparseCopyStats = { holeBytes: 0, copiedBytes: 0 };
    const final = await runRecovery(plan, { ...deps, raw: sparseAwareRaw(deps.raw, runsOf, stats, recompute?.holeOf), onProgress });
    host.log('info', `volume ${keep.name}: ${MiBText(stats.copiedBytes)} copied, ${MiBText(stats.holeBytes)} of source holes zeroed on the target instead`);
    return final;
  }
  // raid5/6: the volume's stripe engine computes each target row from the others (row lock held).
  const element = run.targets.length === 1 ? run.targets[0]!.name : null;
  const final = await runParityRecovery({ volume: plan.volume, geometry: plan.geometry, elements: plan.elements, targetRoles: run.targets.map((t) => t.role) },
    { ...deps, stripe: host.dataPath.stripe(entry.index), onProgress: (p) => onProgress({ kind: 'rebuild', element, ...p }) });
  return { kind: 'rebuild', element, ...final };
}

/**
 * After the copy, inside exclusive: the targets still in place become active (done) or failed,
 * the superblocks say so; aborted targets go back to pending. `current` says whether `keep` is
 * still the volume's.
 */
export async function settleRun(host: KeeperHost, keep: Keep, run: Run, outcome: LastRebuild['outcome'], message: string | undefined,
  current: () => boolean, withLive: (vol: AssembledVolume) => AssembledVolume): Promise<void> {
  const entry = host.registry.volumes.get(keep.name);
  if (entry === undefined || !current()) return;
  const mine = run.targets.filter((t) => entry.assembled.config.elements[t.role] === t.name && host.dataPath.elementState(t.element) === 'rebuilding');
  if (outcome === 'aborted') {
    for (const t of mine) keep.pending.set(t.role, t);
    return;
  }
  for (const t of mine) host.dataPath.setElementState(t.element, outcome === 'done' ? 'active' : 'failed');
  const names = new Set(mine.map((t) => t.name));
  entry.assembled = { ...entry.assembled, elements: entry.assembled.elements.map((e) => {
    if (!names.has(e.config.name)) return e;
    const { reason: _r, syncedEvents: _s, ...rest } = e;
    return outcome === 'done' ? { ...rest, state: 'active' as const } : { ...rest, state: 'failed' as const, reason: `${keep.last!.kind} failed: ${message ?? ''}`, syncedEvents: e.syncedEvents ?? 0 };
  }) };
  entry.assembled = await markClean(withLive(entry.assembled), false);
}
