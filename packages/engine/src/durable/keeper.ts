// Keeps mirror volumes (raid1, raid10) durable: one write-intent bitmap per volume (installed as
// its write-gate hook), and the resyncs and rebuilds that bring legs up to date: after an
// unclean stop (dirty regions), for a stale or returning leg (dirty regions, or everything when
// the bitmap does not cover its absence), onto a replacement or spare (everything). One copy run
// per volume at a time; legs that need one meanwhile wait in `pending` for the next run.
// raid5/6 volumes are kept too, without a bitmap (their stripe journal covers crashes): a stale,
// returning or replaced leg is rebuilt in full from the others by the stripe engine
// (units-parity.ts runParityRecovery) through the same runs, progress and finish step.
// Control plane only; every byte moves through DataPath.raw, so remote legs work the same.
// Runs start and finish inside host.exclusive (superblocks, states); the copy runs outside it.
import type { LastRebuild, RebuildStatus } from '../api-types.js';
import type { VolumeGeometry } from '../datapath/map.js';
import { markClean } from '../meta/assemble.js';
import type { AssembledVolume, ElementState } from '../meta/types.js';
import type { VolumeEntry } from '../state/registry.js';
import { WriteIntentBitmap } from './bitmap.js';
import { REGION_DEFAULT_BYTES, regionBytesFor } from './bitmap-codec.js';
import { CopyAborted } from './copy-job.js';
import { recoveryBytes, recoveryKind, runRecovery, type RecoveryPlan, type RecoveryTarget } from './recovery.js';
import { parityRebuildBytes, runParityRecovery } from './units-parity.js';
import type { KeeperHost } from './host.js';
import { LegWatch } from './leg-watch.js';
import { sparseAwareRaw, type SparseCopyStats } from './sparse-copy.js';
import { recomputingRaw } from '../integrity/recompute.js';

const MiBText = (bytes: number): string => `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;

export type { KeeperHost } from './host.js';

interface Run {
  readonly targets: readonly RecoveryTarget[];
  readonly controller: AbortController;
  readonly startedMs: number;
  progress: RebuildStatus;
  /** Settles when the copy stops (done, failed or aborted); the finish step runs after it. */
  copying: Promise<void>;
}

export interface Keep {
  readonly name: string;
  /** null for raid5/6 volumes: they keep no bitmap, every target is rebuilt in full. */
  readonly bitmap: WriteIntentBitmap | null;
  /** Whether the bitmap read at attach was usable (else dirty regions before it are unknown). */
  readonly bitmapLoaded: boolean;
  run: Run | null;
  readonly pending: Map<number, RecoveryTarget>;
  last: LastRebuild | null;
}

export const isMirror = (layout: string): boolean => layout === 'raid1' || layout === 'raid10';
export const isParity = (layout: string): boolean => layout === 'raid5' || layout === 'raid6';

/**
 * Whether `role` can be rebuilt from the other legs in their live states: a mirror needs an
 * active leg of its group; raid5/6 need every data index of a row, i.e. n - parity active others.
 */
export function canRebuild(vol: AssembledVolume, role: number, live: (name: string) => ElementState): boolean {
  const active = (r: number): boolean => live(vol.config.elements[r]!) === 'active';
  if (!isParity(vol.config.layout)) return groupOf(vol, role).some(active);
  const n = vol.config.elements.length;
  const others = vol.config.elements.map((_, r) => r).filter((r) => r !== role && active(r)).length;
  return others >= n - (vol.config.layout === 'raid5' ? 1 : 2);
}

/** Roles that mirror `role`: raid1 every other leg, raid10 the partner. */
export function groupOf(vol: AssembledVolume, role: number): number[] {
  if (vol.config.layout === 'raid10') return [role ^ 1];
  return vol.config.elements.map((_, r) => r).filter((r) => r !== role);
}

export function geometryOf(vol: AssembledVolume): VolumeGeometry {
  return {
    layout: vol.config.layout, chunkBytes: vol.config.chunkKiB * 1024, sizeBytes: vol.sizeBytes,
    elements: [...vol.elements].sort((a, b) => a.role - b.role).map((e) => ({ dataOffsetBytes: vol.dataOffsetBytes, dataSizeBytes: e.dataSizeBytes })),
  };
}

export class MirrorKeeper {
  private readonly keeps = new Map<string, Keep>();
  private readonly watch: LegWatch;
  private closed = false;

  constructor(private readonly host: KeeperHost) {
    this.watch = new LegWatch(host, this);
  }

  keep(name: string): Keep | undefined {
    return this.keeps.get(name);
  }

  liveState(name: string): ElementState {
    return this.host.dataPath.elementState(this.host.registry.element(name).index);
  }

  /** The assembled volume with live element states (as Engine.withLiveStates). */
  withLive(vol: AssembledVolume): AssembledVolume {
    return { ...vol, elements: vol.elements.map((e) => {
      const state = this.liveState(e.config.name);
      return state === e.state ? e : { ...e, state, reason: e.reason ?? `${state} while running` };
    }) };
  }

  /**
   * Takes a volume in charge (open, create): loads or creates its bitmap on the active legs,
   * installs the write hook, and queues what needs copying: stale legs, and after an unclean stop
   * every leg but one reference per mirror group. Copies start in the background.
   */
  async attach(entry: VolumeEntry): Promise<void> {
    const vol = entry.assembled;
    if (this.closed) return;
    if (isParity(vol.config.layout)) return this.attachParity(entry);
    if (!isMirror(vol.config.layout)) return;
    const dp = this.host.dataPath;
    // Checksums on before anything else: a write without them would fail its check later.
    await this.wireIntegrity(entry);
    const index = (name: string): number => this.host.registry.element(name).index;
    const sources = vol.config.elements.filter((n) => this.liveState(n) === 'active').map(index);
    const want = regionBytesFor(vol.sizeBytes, (vol.config.bitmapRegionKiB ?? REGION_DEFAULT_BYTES / 1024) * 1024);
    const loaded = await WriteIntentBitmap.load(dp.raw, sources, vol.arrayUuid, vol.sizeBytes, want);
    const name = vol.config.name;
    const io = dp.volumeIo(entry.index);
    const bitmap = new WriteIntentBitmap({
      raw: dp.raw, gate: io.gate, arrayUuid: vol.arrayUuid, volumeSizeBytes: vol.sizeBytes, regionBytes: loaded.regionBytes,
      legs: {
        targets: () => this.members(name).filter((m) => m.state === 'active' || m.state === 'rebuilding').map((m) => m.index),
        failLeg: (element, err) => this.failLeg(name, element, err),
        canClear: () => this.canClear(name),
        eventCount: () => this.host.registry.volumes.get(name)?.assembled.eventCount ?? 0,
      },
      // Integrity keeps checksum pages write-back: a bit is cleared only once they are durable on every leg (bitmap.ts).
      beforeClear: () => this.flushChecksums(name),
    }, loaded.valid ? loaded : undefined);
    if (!loaded.valid && sources.length > 0 && vol.wasClean === false) this.host.log('warn', `volume ${name}: no usable write-intent bitmap (${loaded.problems.join('; ')}): the resync copies everything`);
    await bitmap.writeImage(sources);
    const keep: Keep = { name, bitmap, bitmapLoaded: loaded.valid, run: null, pending: new Map(), last: null };
    this.keeps.set(name, keep);
    io.gate.setHook(bitmap.hook);
    for (const target of this.openTargets(entry, keep)) await this.addTarget(keep, target);
    this.kick(keep);
  }

  /** raid5/6: no bitmap, no hook; a stale leg (older counter, needs rebuild) is rebuilt in full. */
  private async attachParity(entry: VolumeEntry): Promise<void> {
    // Integrity: the journal replay waits for the checksums (it recomputes what it writes again).
    await this.wireIntegrity(entry);
    const keep: Keep = { name: entry.assembled.config.name, bitmap: null, bitmapLoaded: false, run: null, pending: new Map(), last: null };
    this.keeps.set(keep.name, keep);
    for (const e of entry.assembled.elements) {
      if (this.liveState(e.config.name) !== 'stale' || e.faulty === true) continue;
      await this.addTarget(keep, { role: e.role, element: this.host.registry.element(e.config.name).index, name: e.config.name, full: true });
    }
    this.kick(keep);
  }

  /** What needs copying at attach: stale legs, and after an unclean stop the non-reference legs. */
  private openTargets(entry: VolumeEntry, keep: Keep): RecoveryTarget[] {
    const vol = entry.assembled;
    const targets: RecoveryTarget[] = [];
    const reference = new Set<number>();
    // A write-behind leg (config writeBehind) may lag: it is the reference only when no other leg can be.
    const behind = (e: { config: { name: string } }): number => (vol.config.writeBehind?.element === e.config.name ? 1 : 0);
    for (const e of [...vol.elements].sort((a, b) => behind(a) - behind(b) || a.role - b.role)) {
      const live = this.liveState(e.config.name);
      const element = this.host.registry.element(e.config.name).index;
      if (live === 'stale' && e.faulty !== true) {
        targets.push({ role: e.role, element, name: e.config.name, full: !this.covers(keep, e.syncedEvents ?? 0) });
        continue;
      }
      if (live !== 'active' || vol.wasClean !== false) continue;
      // Unclean stop: the first active leg of each group is the reference, the others are resynced.
      if (groupOf(vol, e.role).some((r) => reference.has(r))) targets.push({ role: e.role, element, name: e.config.name, full: !keep.bitmapLoaded });
      else reference.add(e.role);
    }
    return targets;
  }

  /** Whether the bitmap holds every write a leg synced up to `syncedEvents` missed. */
  covers(keep: Keep, syncedEvents: number): boolean {
    return keep.bitmap !== null && syncedEvents > 0 && keep.bitmap.eventsClearedCount <= syncedEvents;
  }

  /**
   * Makes a leg a target: seeds its bitmap area, lets it take writes (rebuilding), then queues it.
   * The caller has written its superblock (needsRebuild) if it must not pass for up to date.
   */
  async addTarget(keep: Keep, target: RecoveryTarget): Promise<boolean> {
    let catchUp: () => Promise<void> = async () => undefined;
    try {
      if (keep.bitmap !== null) catchUp = await keep.bitmap.seedLeg(target.element);
    } catch (err) {
      // The leg cannot take writes: it stays out (a remote one is probed again later).
      this.host.dataPath.setElementState(target.element, 'failed');
      this.host.log('warn', `volume ${keep.name}: element ${target.name} refused its bitmap: ${(err as Error).message}; left failed`);
      return false;
    }
    this.host.dataPath.setElementState(target.element, 'rebuilding');
    await catchUp().catch(() => undefined); // a page write that fails has failed its leg already
    keep.pending.set(target.role, target);
    return true;
  }

  /** Starts a run with every pending target, unless one runs already (its finish kicks again). */
  kick(keep: Keep): void {
    if (keep.run !== null || keep.pending.size === 0 || this.closed || this.keeps.get(keep.name) !== keep) return;
    const entry = this.host.registry.volumes.get(keep.name);
    if (entry === undefined) return;
    const targets = [...keep.pending.values()].filter((t) => entry.assembled.config.elements[t.role] === t.name && this.host.dataPath.elementState(t.element) === 'rebuilding');
    keep.pending.clear();
    if (targets.length === 0) return;
    const controller = new AbortController();
    const vol = entry.assembled;
    // The dirty regions as they are now: regions dirtied later are written to the targets too.
    const plan: RecoveryPlan = {
      volume: keep.name, geometry: geometryOf(vol), elements: vol.config.elements.map((n) => this.host.registry.element(n).index),
      targets, dirty: keep.bitmap?.dirtyRanges() ?? [],
    };
    let totalBytes = 0;
    try {
      totalBytes = keep.bitmap === null ? targets.reduce((sum, t) => sum + parityRebuildBytes(plan.geometry, plan.elements, t.role), 0)
        : recoveryBytes(plan, (el) => this.host.dataPath.elementState(el));
    } catch {
      // No source for some target: runRecovery fails the same way, and finish() records it.
    }
    const zero: RebuildStatus = { kind: recoveryKind(targets), element: targets.length === 1 ? targets[0]!.name : null, percent: 0, mibPerSec: 0, etaSeconds: null, doneBytes: 0, totalBytes };
    const run: Run = { targets, controller, startedMs: Date.now(), progress: zero, copying: Promise.resolve() };
    keep.run = run;
    const copied = this.copy(keep, entry, run, plan).then((final) => ({ final }), (err: unknown) => ({ err }));
    // `copying` settles when the copy stops, before the finish step (which waits for exclusive):
    // a control operation may abort the run and wait for the copy without waiting for itself.
    run.copying = copied.then(() => undefined);
    void copied.then((how) => this.finish(keep, run, how));
    this.host.changed();
  }

  /**
   * Makes an integrity volume's checksum pages durable on every leg (write, then element flush);
   * nothing without integrity. canClear() holds every leg active, so every leg is flushed.
   */
  private async flushChecksums(name: string): Promise<void> {
    const store = this.host.integrityOf?.(name)?.store;
    if (store === undefined) return;
    await Promise.all(this.members(name).map((m) => store.flush(m.index)));
  }

  /** Integrity volumes: the data path records and verifies checksums (integrity/checksum-io.ts). */
  private async wireIntegrity(entry: VolumeEntry): Promise<void> {
    const name = entry.assembled.config.name;
    const it = this.host.integrityOf?.(name);
    if (it === undefined) return;
    await this.host.dataPath.setIntegrity(entry.index, {
      store: it.store, count: it.count, log: (line) => this.host.log('warn', line),
      unsettled: (off, len) => {
        const keep = this.keeps.get(name);
        if (keep === undefined || keep.bitmap === null || (keep.run === null && keep.pending.size === 0)) return false;
        return keep.bitmap.dirtyRanges().some((r) => r.offsetBytes < off + len && off < r.offsetBytes + r.lengthBytes);
      },
    });
  }

  private async copy(keep: Keep, entry: VolumeEntry, run: Run, plan: RecoveryPlan): Promise<RebuildStatus> {
    await this.host.stopScrub(keep.name); // a resync or rebuild preempts a scrub, as in md
    const what = run.targets.map((t) => `${t.name} (${t.full ? 'everything' : 'dirty regions'})`).join(', ');
    this.host.log('info', `volume ${keep.name}: ${recoveryKind(run.targets)} of ${what} started`);
    let lastEmitMs = 0;
    const onProgress = (p: RebuildStatus): void => {
      run.progress = p;
      if (Date.now() - lastEmitMs >= 250) {
        lastEmitMs = Date.now();
        this.host.changed();
      }
    };
    // Integrity: each unit's checksums recomputed from the source, on every leg, before it counts.
    const it = this.host.integrityOf?.(keep.name);
    const recompute = it === undefined ? null : recomputingRaw(this.host.dataPath.raw, it.store, () => entry.assembled.dataOffsetBytes);
    const deps = {
      raw: recompute?.raw ?? this.host.dataPath.raw, gate: this.host.dataPath.volumeIo(entry.index).gate, state: (el: number) => this.host.dataPath.elementState(el),
      maxMiBPerSec: this.host.rebuildMiBPerSec(), signal: run.controller.signal,
    };
    if (keep.bitmap !== null) {
      const runsOf = this.host.elementRuns;
      if (runsOf === undefined) return runRecovery(plan, { ...deps, onProgress });
      const stats: SparseCopyStats = { holeBytes: 0, copiedBytes: 0 };
      const final = await runRecovery(plan, { ...deps, raw: sparseAwareRaw(deps.raw, runsOf, stats, recompute?.holeOf), onProgress });
      this.host.log('info', `volume ${keep.name}: ${MiBText(stats.copiedBytes)} copied, ${MiBText(stats.holeBytes)} of source holes zeroed on the target instead`);
      return final;
    }
    // raid5/6: the volume's stripe engine computes each target row from the others (row lock held).
    const element = run.targets.length === 1 ? run.targets[0]!.name : null;
    const final = await runParityRecovery({ volume: plan.volume, geometry: plan.geometry, elements: plan.elements, targetRoles: run.targets.map((t) => t.role) },
      { ...deps, stripe: this.host.dataPath.stripe(entry.index), onProgress: (p) => onProgress({ kind: 'rebuild', element, ...p }) });
    return { kind: 'rebuild', element, ...final };
  }

  /** After the copy: targets become active (or failed), superblocks say so; then the next run. */
  private finish(keep: Keep, run: Run, how: { final?: RebuildStatus; err?: unknown }): Promise<void> {
    const aborted = how.err instanceof CopyAborted || run.controller.signal.aborted;
    const outcome: LastRebuild['outcome'] = how.err === undefined ? 'done' : aborted ? 'aborted' : 'failed';
    const seconds = (Date.now() - run.startedMs) / 1000;
    const p = how.final ?? run.progress;
    const message = how.err === undefined ? undefined : (how.err as Error).message;
    keep.last = { kind: p.kind === 'resync' ? 'resync' : 'rebuild', element: p.element, outcome, doneBytes: p.doneBytes, totalBytes: p.totalBytes,
      seconds, mibPerSec: seconds > 0 ? p.doneBytes / 1048576 / seconds : 0, finishedMs: Date.now(), ...(message !== undefined ? { message } : {}) };
    const settle = async (): Promise<void> => {
      const entry = this.host.registry.volumes.get(keep.name);
      if (entry === undefined || this.keeps.get(keep.name) !== keep) return;
      const mine = run.targets.filter((t) => entry.assembled.config.elements[t.role] === t.name && this.host.dataPath.elementState(t.element) === 'rebuilding');
      if (outcome === 'aborted') {
        for (const t of mine) keep.pending.set(t.role, t);
        return;
      }
      for (const t of mine) this.host.dataPath.setElementState(t.element, outcome === 'done' ? 'active' : 'failed');
      const names = new Set(mine.map((t) => t.name));
      entry.assembled = { ...entry.assembled, elements: entry.assembled.elements.map((e) => {
        if (!names.has(e.config.name)) return e;
        const { reason: _r, syncedEvents: _s, ...rest } = e;
        return outcome === 'done' ? { ...rest, state: 'active' as const } : { ...rest, state: 'failed' as const, reason: `${keep.last!.kind} failed: ${message ?? ''}`, syncedEvents: e.syncedEvents ?? 0 };
      }) };
      entry.assembled = await markClean(this.withLive(entry.assembled), false);
    };
    const level = outcome === 'done' ? 'info' : 'warn';
    this.host.log(level, `volume ${keep.name}: ${keep.last.kind} ${outcome}: ${p.doneBytes} of ${p.totalBytes} bytes in ${seconds.toFixed(1)} s${message !== undefined ? ` (${message})` : ''}`);
    return this.host.exclusive(settle)
      .catch((err: Error) => {
        if (!this.closed) this.host.log('error', `volume ${keep.name}: after the ${keep.last?.kind}: ${err.message}`);
      })
      .finally(() => {
        if (keep.run === run) keep.run = null;
        this.host.changed();
        this.kick(keep);
      });
  }

  /** Stops the volume's run (its unfinished targets go back to pending) and waits for the copy to stop. */
  async abortRun(name: string, reason: string): Promise<void> {
    const run = this.keeps.get(name)?.run;
    if (run === null || run === undefined) return;
    run.controller.abort(reason);
    await run.copying.catch(() => undefined);
  }

  /** Forgets a volume (deleted): stops its run, sweep and hook. */
  async detach(name: string, io?: { gate: { setHook(h: null): void } }): Promise<void> {
    const keep = this.keeps.get(name);
    if (keep === undefined) return;
    this.keeps.delete(name);
    keep.run?.controller.abort('volume deleted');
    io?.gate.setHook(null);
    await keep.bitmap?.close();
  }

  members(name: string): { name: string; role: number; index: number; state: ElementState }[] {
    const entry = this.host.registry.volumes.get(name);
    if (entry === undefined) return [];
    return entry.assembled.config.elements.map((n, role) => {
      const index = this.host.registry.element(n).index;
      return { name: n, role, index, state: this.host.dataPath.elementState(index) };
    });
  }

  /** md's rule: bits are cleared only while every leg is active, recorded so, and nothing is copied. */
  private canClear(name: string): boolean {
    const keep = this.keeps.get(name);
    const entry = this.host.registry.volumes.get(name);
    if (keep === undefined || entry === undefined || keep.run !== null || keep.pending.size > 0) return false;
    return entry.assembled.elements.every((e) => e.state === 'active') && this.members(name).every((m) => m.state === 'active');
  }

  private failLeg(volume: string, element: number, err: unknown): void {
    const state = this.host.dataPath.elementState(element);
    if (state !== 'active' && state !== 'rebuilding') return;
    this.host.dataPath.setElementState(element, 'failed');
    this.host.log('warn', `volume ${volume}: element index ${element} failed: write-intent bitmap update: ${(err as Error)?.message ?? String(err)}`);
  }

  /** Live progress of the volume's resync or rebuild, or null. */
  progress(name: string): RebuildStatus | null {
    return this.keeps.get(name)?.run?.progress ?? null;
  }

  lastRebuild(name: string): LastRebuild | null {
    return this.keeps.get(name)?.last ?? null;
  }

  bitmapStatus(name: string): { regionBytes: number; regions: number; dirtyRegions: number; eventsCleared: number } | null {
    const b = this.keeps.get(name)?.bitmap;
    return b === undefined || b === null ? null : { regionBytes: b.regionBytes, regions: b.regionCount, dirtyRegions: b.dirtyRegions, eventsCleared: b.eventsClearedCount };
  }

  /** Starts the leg watch (returning remote legs, spares). */
  start(): void {
    this.watch.start();
  }

  /**
   * Engine close, after the exports closed: stops runs and the watch; for volumes whose legs are
   * all active, flushes and clears every bit (a clean stop leaves nothing to resync).
   */
  async close(flush: (name: string) => Promise<void>): Promise<void> {
    this.closed = true;
    this.watch.stop();
    for (const keep of this.keeps.values()) keep.run?.controller.abort('engine closing');
    for (const keep of this.keeps.values()) {
      await keep.run?.copying.catch(() => undefined);
      if (keep.bitmap === null) continue; // raid5/6: the engine's flush writes the journal checkpoint
      try {
        await flush(keep.name);
        await keep.bitmap.sweep(true);
      } catch (err) {
        this.host.log('warn', `volume ${keep.name}: bitmap not cleared at close: ${(err as Error).message}`);
      }
      await keep.bitmap.close();
    }
  }

  get isClosed(): boolean {
    return this.closed;
  }

  volumes(): IterableIterator<Keep> {
    return this.keeps.values();
  }
}
