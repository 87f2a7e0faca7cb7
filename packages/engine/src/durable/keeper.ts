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
// The copy and the settle step are keeper-runs.ts; per-volume state and geometry helpers keeper-shared.ts.
import type { LastRebuild, RebuildStatus } from '../api-types.js';
import type { ElementState, AssembledVolume } from '../meta/types.js';
import type { VolumeEntry } from '../state/registry.js';
import { WriteIntentBitmap } from './bitmap.js';
import { REGION_DEFAULT_BYTES, regionBytesFor } from './bitmap-codec.js';
import { CopyAborted } from './copy-job.js';
import type { KeeperHost } from './host.js';
import { copyRun, settleRun } from './keeper-runs.js';
import { geometryOf, groupOf, isMirror, isParity, type Keep, type Run } from './keeper-shared.js';
import { LegWatch } from './leg-watch.js';
import { recoveryBytes, recoveryKind, type RecoveryPlan, type RecoveryTarget } from './recovery.js';
import { parityRebuildBytes } from './units-parity.js';

export type { KeeperHost } from './host.js';

export { canRebuild, geometryOf, groupOf, isMirror, isParity, type Keep } from './keeper-shared.js';

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
    // A reshaping mirror keeps no bitmap: its area holds the reshape backup (durable/reshape-start.ts).
    if (isParity(vol.config.layout) || vol.reshape !== undefined) return this.attachParity(entry);
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
    // A reshape has two geometries live: a copy by either would be wrong for the other half. The
    // targets stay pending (writes reach them); the reshape's finish kicks again (reshape-finish.ts).
    if (entry.assembled.reshape !== undefined) return this.holdForReshape(keep);
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
    const copied = copyRun(this.host, keep, entry, run, plan).then((final) => ({ final }), (err: unknown) => ({ err }));
    // `copying` settles when the copy stops, before the finish step (which waits for exclusive):
    // a control operation may abort the run and wait for the copy without waiting for itself.
    run.copying = copied.then(() => undefined);
    void copied.then((how) => this.finish(keep, run, how));
    this.host.changed();
  }

  private holdForReshape(keep: Keep): void {
    const names = [...keep.pending.values()].map((t) => t.name).join(', ');
    this.host.log('info', `volume ${keep.name}: the ${recoveryKind([...keep.pending.values()])} of ${names} waits for the reshape to finish`);
    this.host.changed();
  }

  /** Element names whose resync or rebuild waits (for a reshape to finish). */
  waiting(name: string): string[] {
    const keep = this.keeps.get(name);
    return keep === undefined || keep.run !== null ? [] : [...keep.pending.values()].map((t) => t.name);
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

  /** After the copy: targets become active (or failed), superblocks say so; then the next run. */
  private finish(keep: Keep, run: Run, how: { final?: RebuildStatus; err?: unknown }): Promise<void> {
    const aborted = how.err instanceof CopyAborted || run.controller.signal.aborted;
    const outcome: LastRebuild['outcome'] = how.err === undefined ? 'done' : aborted ? 'aborted' : 'failed';
    const seconds = (Date.now() - run.startedMs) / 1000;
    const p = how.final ?? run.progress;
    const message = how.err === undefined ? undefined : (how.err as Error).message;
    keep.last = { kind: p.kind === 'resync' ? 'resync' : 'rebuild', element: p.element, outcome, doneBytes: p.doneBytes, totalBytes: p.totalBytes,
      seconds, mibPerSec: seconds > 0 ? p.doneBytes / 1048576 / seconds : 0, finishedMs: Date.now(), ...(message !== undefined ? { message } : {}) };
    const settle = (): Promise<void> => settleRun(this.host, keep, run, outcome, message, () => this.keeps.get(keep.name) === keep, (v) => this.withLive(v));
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
