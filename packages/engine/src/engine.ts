// The embedding API: opens a configuration, assembles its volumes from their superblocks,
// starts the data path and serves volumes. Control operations run one at a time.
import { EventEmitter } from 'node:events';
import { EngineError, type BlockExtent, type CheckpointStatus, type ElementStatus, type EngineStatus, type ReshapeStatus, type ScrubStatus } from './api-types.js';
import type { EngineConfig } from './config/types.js';
import { DataPath } from './datapath/datapath.js';
import { createVolumeOp, deleteVolumeOp, failElementOp, startScrubOp, type VolumeOpsHost } from './volume-ops.js';
import { growVolumeOp, type GrowResult, type GrowVolumeSpec } from './volume-grow.js';
import { markClean } from './meta/assemble.js';
import { loadEngine } from './engine-load.js';
import type { AssembledVolume } from './meta/types.js';
import { elementStatus, MAX_ELEMENT_SLOTS, MAX_VOLUME_SLOTS, Registry, type ElementEntry, type LiveView } from './state/registry.js';
import { dataBytesOf, newElement, remoteSpecOf } from './state/runtime-element.js';
import { writeStateFile } from './state/state-file.js';
import { runtimeState } from './state/runtime-state.js';
import { pickBootVolume } from './state/boot.js';
import { discover as discoverRemote, type DiscoverOptions, type DiscoverResult } from './remote/discover.js';
import { Volume } from './volume.js';
import { ScrubJobs, type ScrubStarted } from './durable/scrub-jobs.js';
import type { ScrubSchedule } from './durable/scrub-schedule.js';
import { scheduleVolumeOf, startScrubSchedule } from './durable/scrub-schedule-host.js';
import type { ScrubOptions } from './durable/scrub.js';
import { MirrorKeeper, type KeeperHost } from './durable/keeper.js';
import { replaceLeg } from './durable/replace.js';
import { addMember, removeMember } from './durable/members.js';
import type { ReshapeSpec } from './durable/reshape-start.js';
import { Reshapes } from './durable/reshape-jobs.js';
import { DEFAULT_REBUILD } from './config/validate.js';
import { nbdCopyStats, nbdListenAddresses } from './nbd-export.js';
import { VolumeAllocation } from './allocation/allocator.js';
import { CheckpointKeeper } from './checkpoints/keeper.js';
import { IntegrityStores } from './integrity/stores.js';
import type { IntegrityStore } from './integrity/store.js';
import { buildStatus, liveViewOf, withLiveStates, logOpenReport } from './engine-status.js';
import { stopRbdElementOf, stopRbdElements } from './remote/rbd-access.js';
import { closeVolumes, recordFailures } from './engine-close.js';
import { watchRbdLocks } from './remote/rbd-fence.js';
import { rbdAckGate } from './remote/rbd-ack-gate.js';
import { defaultLog, type AddElementSpec, type CreateVolumeSpec, type EngineOpenOptions, type LogFn } from './engine-types.js';

export type { AddElementSpec, CreateVolumeSpec, EngineOpenOptions, LogFn } from './engine-types.js';

/** How often the control plane looks for legs the data path failed (to record them in superblocks). */
const FAILURE_WATCH_MS = 250;

export class Engine {
  readonly events = new EventEmitter();
  private readonly registry = new Registry();
  private control: Promise<unknown> = Promise.resolve();
  private closing: Promise<void> | null = null;
  private readonly closers = new Set<() => Promise<void>>();
  private failureWatch: NodeJS.Timeout | null = null;
  /** Gives the data dir back at the end of close() (state/data-dir-lock.ts). */
  private unlock: () => void = () => undefined;
  private readonly scrubs = new ScrubJobs({
    raw: () => this.dataPath.raw, log: (level, msg) => this.log(level, msg),
    // A scrub cancelled by close() ends after the engine stopped answering status().
    onChange: () => { this.schedule?.sync(); if (this.closing === null) this.changed(); },
  });
  /** Scheduled scrubs (config `scrub`); started once the engine is open. */
  private schedule: ScrubSchedule | null = null;

  /** Write-intent bitmaps, resyncs, rebuilds, spares and returning legs of mirror volumes. */
  private readonly keeper: MirrorKeeper;
  /** Checkpoints (dirty bitmaps for incremental backup) of every volume. */
  private readonly ckpts: CheckpointKeeper;
  /** Checksum stores of integrity volumes, their page cache and per-element counters (integrity/). */
  readonly integrity: IntegrityStores;
  /** Online reshapes (durable/reshape*.ts). */
  private readonly reshapes: Reshapes;

  private constructor(
    private readonly base: EngineConfig,
    private readonly dataPath: DataPath,
    private readonly log: LogFn,
  ) {
    this.keeper = new MirrorKeeper(this.keeperHost());
    this.ckpts = new CheckpointKeeper({ dataDir: base.dataDir, log: (level, msg) => this.log(level, msg) });
    this.integrity = new IntegrityStores({ raw: () => this.dataPath.raw, volume: (n) => this.registry.volumes.get(n)?.assembled, elementIndex: (n) => this.registry.elements.get(n)?.index });
    this.reshapes = new Reshapes({ ...this.volumeOpsHost(), closing: () => this.closing !== null }, () => (this.base.rebuild ?? DEFAULT_REBUILD).maxMiBPerSec);
  }

  /** @internal The checksum store of an integrity volume (undefined without integrity). */
  integrityStoreOf(volume: string): IntegrityStore | undefined {
    return this.integrity.of(volume);
  }

  private volumeOpsHost(): VolumeOpsHost {
    return {
      ...this.keeperHost(), base: this.base, keeper: this.keeper, ckpts: this.ckpts, scrubs: this.scrubs, integrity: this.integrity,
      bind: (vol, runtime) => this.bind(vol, runtime), attachCheckpoints: (entry) => this.attachCheckpoints(entry),
    };
  }

  private keeperHost(): KeeperHost {
    return {
      dataPath: this.dataPath, registry: this.registry, log: (level, msg) => this.log(level, msg),
      rebuildMiBPerSec: () => (this.base.rebuild ?? DEFAULT_REBUILD).maxMiBPerSec,
      exclusive: (work) => this.exclusive(work), changed: () => this.changed(), persist: () => this.persist(),
      applyTopology: () => this.applyTopology(), stopScrub: async (volume) => void (await this.scrubs.cancel(volume, 'a resync or rebuild starts')),
      elementRuns: (element, start, len) => this.allocatorOf().elementRuns(element, start, len),
      integrityOf: (volume) => {
        const store = this.integrity.of(volume);
        return store === undefined ? undefined : { store, count: this.integrity.counters.countFor(volume) };
      },
    };
  }

  static async open(opts: EngineOpenOptions = {}): Promise<Engine> {
    const log = opts.log ?? defaultLog;
    const { loaded, merged, runtimeElements, runtimeVolumes, assembled, unlock } = await loadEngine(opts, log);
    const dataPath = await DataPath.start({ pools: loaded.pools, queue: loaded.queue, probeDir: loaded.dataDir, readCacheMiB: loaded.cache.readMiB, maxVolumes: MAX_VOLUME_SLOTS, maxElements: MAX_ELEMENT_SLOTS })
      .catch(async (err: unknown) => { await stopRbdElements(loaded.dataDir); unlock(); throw err; });
    const engine = new Engine(loaded, dataPath, log);
    engine.unlock = unlock;
    try {
      // Remote members were just probed by assembly: no second connection (and no second timeout).
      const legBytes = new Map(assembled.flatMap((v) => v.elements.map((e) => [e.config.name, e.dataSizeBytes] as const)));
      for (const e of merged.config.elements) {
        const known = e.location.kind !== 'local' ? legBytes.get(e.name) : undefined;
        engine.registry.addElement(e, runtimeElements.has(e.name), known ?? (await dataBytesOf(e)), await remoteSpecOf(e));
      }
      for (const vol of assembled) engine.bind(vol, runtimeVolumes.has(vol.config.name));
      await engine.applyTopology();
      for (const entry of engine.registry.volumes.values()) entry.assembled = await markClean(entry.assembled, false);
      // Checksum stores before the keeper: a resync recomputes the checksums of what it settles.
      for (const name of engine.registry.volumes.keys()) engine.integrity.attach(name);
      // Bitmaps, then the resyncs an unclean stop or a stale leg needs (they run in the background).
      for (const entry of engine.registry.volumes.values()) await engine.keeper.attach(entry);
      for (const entry of engine.registry.volumes.values()) await engine.attachCheckpoints(entry);
      engine.keeper.start();
      for (const entry of engine.registry.volumes.values()) engine.reshapes.resume(entry);
      engine.onClose(() => engine.reshapes.close());
      const unwatch = watchRbdLocks(loaded.dataDir, { registry: engine.registry, dataPath, log, changed: () => engine.changed() });
      dataPath.setAckGate(rbdAckGate({ dataDir: loaded.dataDir, registry: engine.registry, dataPath }));
      engine.onClose(async () => { unwatch(); dataPath.setAckGate(null); });
    } catch (err) {
      await engine.close().catch(() => undefined);
      throw err;
    }
    logOpenReport([...engine.registry.volumes.values()], (index) => engine.dataPath.volumeOpenError(index), log);
    engine.failureWatch = setInterval(() => engine.recordFailures(), FAILURE_WATCH_MS).unref();
    engine.schedule = startScrubSchedule({ base: loaded, registry: engine.registry, elementState: (i) => dataPath.elementState(i),
      maintenance: (v) => engine.keeper.progress(v), scrubs: engine.scrubs, startScrub: (v, o) => engine.startScrub(v, o), log });
    engine.onClose(() => engine.scrubs.cancelAll('engine closing'));
    log('info', `engine open: ${engine.registry.volumes.size} volume(s), data dir ${loaded.dataDir}`);
    return engine;
  }

  /** The effective configuration: the loaded config plus run-time elements and volumes. */
  get config(): EngineConfig {
    return {
      ...this.base,
      elements: [...this.registry.elements.values()].map((e) => e.config),
      volumes: [...this.registry.volumes.values()].map((v) => v.assembled.config),
    };
  }

  volume(name: string): Volume {
    this.checkOpen();
    const entry = this.registry.volumes.get(name);
    if (entry === undefined) throw new EngineError('not-found', `no volume named ${name}`, `volume ${name}`, 'list volumes with `onestack volume list`');
    return entry.handle;
  }

  volumes(): readonly Volume[] {
    return [...this.registry.volumes.values()].map((v) => v.handle);
  }

  status(): EngineStatus {
    this.checkOpen();
    return buildStatus({ nbdCopies: () => nbdCopyStats(this), nbdListen: () => nbdListenAddresses(this), registry: this.registry, dataPath: this.dataPath, keeper: this.keeper, scrubs: this.scrubs, base: this.base, checkpoints: (v) => this.ckpts.list(v, true), integrityCounts: (i) => this.integrity.counters.snapshot(i),
      scrubSchedule: (v) => this.schedule?.statusOf(scheduleVolumeOf(this.base, v)) ?? null, reshape: (v) => this.reshapes.status(v) });
  }

  bootVolume(): Volume | undefined {
    const entries = [...this.registry.volumes.values()];
    return (entries.find((v) => v.assembled.config.boot) ?? this.registry.volumes.get('default'))?.handle;
  }

  /** Makes `name` the boot volume (what the empty NBD export name serves); saved in the state file. */
  setBootVolume(name: string): Promise<void> {
    return this.exclusive(async () => {
      const undo = pickBootVolume(this.registry, name);
      try {
        this.persist();
      } catch (err) {
        undo();
        throw err;
      }
      this.log('info', `boot volume: ${name}`);
      this.changed();
    });
  }

  createVolume(spec: CreateVolumeSpec): Promise<Volume> {
    return this.exclusive(() => createVolumeOp(this.volumeOpsHost(), spec));
  }

  /** Grows a volume into room its elements already have (volume-grow.ts); the NBD export's size follows. */
  growVolume(name: string, spec: GrowVolumeSpec): Promise<GrowResult> {
    return this.exclusive(async () => (this.reshapes.refuseBusy(name, 'a grow'), growVolumeOp(this.volumeOpsHost(), name, spec)));
  }

  /** Starts an online reshape (durable/reshape*.ts): more elements, raid1→raid5, raid5→raid6; progress in status `reshape`. */
  reshapeVolume(name: string, spec: ReshapeSpec): Promise<ReshapeStatus | null> {
    return this.exclusive(() => this.reshapes.start(name, spec));
  }

  deleteVolume(name: string): Promise<void> {
    return this.exclusive(async () => (this.reshapes.refuseBusy(name, 'deleting it'), deleteVolumeOp(this.volumeOpsHost(), name)));
  }

  addElement(spec: AddElementSpec): Promise<ElementStatus> {
    return this.exclusive(async () => {
      const entry = await newElement(this.registry, this.base.dataDir, spec);
      try {
        await this.applyTopology();
      } catch (err) {
        this.registry.elements.delete(entry.config.name);
        throw err;
      }
      this.persist();
      this.changed();
      return elementStatus(this.registry, entry, this.liveView());
    });
  }

  removeElement(name: string): Promise<void> {
    return this.exclusive(async () => {
      const entry = this.registry.element(name);
      const owner = this.registry.ownerOf(name);
      if (owner !== undefined) throw new EngineError('conflict', `element ${name} is used by volume ${owner.assembled.config.name}`, `element ${name}`, 'delete the volume first (or replace the element)');
      this.registry.elements.delete(name);
      await this.applyTopology();
      await stopRbdElementOf(entry.config);
      if (!entry.runtime) this.log('warn', `element ${name} is defined in the config file: it comes back at the next start unless removed there`);
      this.persist();
      this.changed();
    });
  }

  failElement(name: string): Promise<void> {
    return this.exclusive(() => failElementOp(this.volumeOpsHost(), name));
  }

  /**
   * Starts a scrub of a mirror volume (durable/scrub.ts): compares the legs unit by unit and, with
   * `repair`, rewrites the odd ones. Resolves once it runs; `done` settles when it ends. Refused
   * (EngineError conflict) while the volume is scrubbed or rebuilt, or has no two active legs.
   */
  async startScrub(volume: string, opts: ScrubOptions = {}): Promise<ScrubStarted> {
    this.checkOpen();
    this.reshapes.refuseBusy(volume, 'a scrub');
    return startScrubOp(this.volumeOpsHost(), volume, opts);
  }

  /** Scrubs a volume to the end: startScrub, then its result. */
  async scrub(volume: string, opts: ScrubOptions = {}): Promise<ScrubStatus> {
    return (await this.startScrub(volume, opts)).done;
  }

  /** Stops the volume's scrub (at most one unit later); false when none was running. */
  cancelScrub(volume: string): Promise<boolean> {
    this.checkOpen();
    if (!this.registry.volumes.has(volume)) return Promise.reject(new EngineError('not-found', `no volume named ${volume}`, `volume ${volume}`));
    return this.scrubs.cancel(volume);
  }

  /**
   * Replaces a leg of a mirror volume by an unused element of sufficient size (a spare): the old
   * leg is failed and leaves the volume, the new one is rebuilt in the background (status
   * `rebuild`), and the change is saved so a restart reassembles the volume the same way.
   */
  replaceElement(volume: string, oldElement: string, newElement: string): Promise<void> {
    return this.exclusive(async () => (this.reshapes.refuseBusy(volume, 'replacing an element'), replaceLeg(this.keeperHost(), this.keeper, volume, oldElement, newElement, 'by request')));
  }

  /** Adds an unused element to a raid1 as a new leg, rebuilt in full in the background (durable/members.ts). */
  addMember(volume: string, element: string): Promise<void> {
    return this.exclusive(async () => (this.reshapes.refuseBusy(volume, 'add-member'), addMember(this.keeperHost(), this.keeper, volume, element)));
  }

  /** Removes a leg from a raid1 of 3+ legs (at least 2 active stay); it becomes an idle spare. */
  removeMember(volume: string, element: string): Promise<void> {
    return this.exclusive(async () => (this.reshapes.refuseBusy(volume, 'remove-member'), removeMember(this.keeperHost(), this.keeper, volume, element)));
  }

  /**
   * What an NBD server or iSCSI portal offers (`onestack discover`). Touches no volume, so it
   * does not wait behind control operations.
   */
  async discover(uri: string, opts: DiscoverOptions = {}): Promise<DiscoverResult> {
    this.checkOpen();
    return discoverRemote(uri, opts);
  }

  // ---- block status (issue 9) -------------------------------------------------------------
  // [allocation methods] — allocation/ (base:allocation through every layout)

  private allocator: VolumeAllocation | null = null;

  /** @internal base:allocation of [offset, +length) of a volume: extents in order from offsetBytes (at most extentsMax). */
  allocation(volume: string, offsetBytes: number, lengthBytes: number, extentsMax: number): Promise<readonly BlockExtent[]> {
    if (this.closing !== null) return Promise.reject(new EngineError('closed', 'the engine is closed'));
    return this.allocatorOf().allocation(volume, offsetBytes, lengthBytes, extentsMax);
  }

  /** The allocation probes, opened on first use (block status, sparse rebuilds). */
  private allocatorOf(): VolumeAllocation {
    this.allocator ??= new VolumeAllocation({ registry: this.registry, elementState: (i) => this.dataPath.elementState(i), log: this.log }, (closer) => this.onClose(closer));
    return this.allocator;
  }

  /** @internal x-onestack:integrity of [offset, +length) of an integrity volume (integrity/map.ts flags: 1 bad, 2 repaired). */
  integrityExtents(volume: string, offsetBytes: number, lengthBytes: number, extentsMax: number): Promise<readonly BlockExtent[]> {
    if (this.closing !== null) return Promise.reject(new EngineError('closed', 'the engine is closed'));
    if (this.integrity.of(volume) === undefined) return Promise.reject(new EngineError('not-found', `volume ${JSON.stringify(volume)} has no integrity`));
    return Promise.resolve(this.integrity.counters.maps.extents(volume, offsetBytes, lengthBytes, extentsMax));
  }

  // [checkpoint methods] — checkpoints/ (dirty bitmaps since a checkpoint)

  /**
   * Starts a checkpoint (name default: ckpt-N; at most 8 per volume): from now on every write,
   * trim and zeroing marks its regions in it, durably before it is submitted. Resolves once the
   * checkpoint is on disk (writes in flight when it started are marked in it too).
   */
  checkpoint(volume: string, name?: string): Promise<CheckpointStatus> {
    return this.exclusive(() => this.ckpts.create(volume, name));
  }

  /** The volume's usable checkpoints, oldest first (what NBD offers); `all` adds unusable ones (`unusable` says why). */
  checkpoints(volume: string, opts: { all?: boolean } = {}): readonly CheckpointStatus[] {
    return this.ckpts.list(volume, opts.all === true);
  }

  deleteCheckpoint(volume: string, name: string): Promise<void> {
    return this.exclusive(() => this.ckpts.delete(volume, name));
  }

  /** @internal Dirty extents of [offset, +length) in a checkpoint (flags 1 = written since it started). */
  dirtyExtents(volume: string, checkpoint: string, offsetBytes: number, lengthBytes: number, extentsMax: number): Promise<readonly BlockExtent[]> {
    try {
      this.checkOpen();
      return Promise.resolve(this.ckpts.extents(volume, checkpoint, offsetBytes, lengthBytes, extentsMax));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  private attachCheckpoints(entry: { assembled: AssembledVolume; handle: Volume }): Promise<void> {
    const { config, arrayUuid, sizeBytes } = entry.assembled;
    return this.ckpts.attach({ name: config.name, arrayUuid, sizeBytes, gate: entry.handle.io.gate });
  }

  /** @internal Registers something to close before the engine (NBD exports). */
  onClose(closer: () => Promise<void>): () => void {
    this.closers.add(closer);
    return () => this.closers.delete(closer);
  }

  /** Closes exports, flushes every volume, marks superblocks clean and stops the data path. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      if (this.failureWatch !== null) clearInterval(this.failureWatch);
      this.schedule?.stop();
      await this.control.catch(() => undefined);
      for (const closer of [...this.closers]) await closer().catch((err: Error) => this.log('warn', `closing an export: ${err.message}`));
      try {
        await closeVolumes({ registry: this.registry, keeper: this.keeper, ckpts: this.ckpts, integrity: this.integrity, dataPath: this.dataPath,
          dataDir: this.base.dataDir, log: this.log, withLiveStates: (vol) => this.withLiveStates(vol) });
      } finally {
        this.unlock();
      }
      this.log('info', 'engine closed');
    })();
    return this.closing;
  }

  private recordFailures(): void {
    recordFailures({ registry: this.registry, live: this.liveView(), log: this.log, closing: () => this.closing !== null,
      exclusive: (work) => this.exclusive(work), withLiveStates: (vol) => this.withLiveStates(vol), changed: () => this.changed() });
  }

  private checkOpen(): void {
    if (this.closing !== null) throw new EngineError('closed', 'the engine is closed');
  }

  private exclusive<T>(work: () => Promise<T>): Promise<T> {
    if (this.closing !== null) return Promise.reject(new EngineError('closed', 'the engine is closed'));
    const run = this.control.then(work);
    this.control = run.catch(() => undefined);
    return run;
  }

  private bind(vol: AssembledVolume, runtime: boolean): { handle: Volume } {
    const index = this.registry.volumeIndex();
    const dataPath = this.dataPath;
    const handle = new Volume(vol.config.name, vol.config.layout, vol.sizeBytes, () => dataPath.volumeIo(index));
    const entry = { index, assembled: vol, handle, runtime };
    this.registry.volumes.set(vol.config.name, entry);
    return entry;
  }

  private async applyTopology(): Promise<void> {
    const { volumes, elements } = this.registry.topology();
    await this.dataPath.setTopology(volumes, elements);
    this.allocator?.sync();
  }

  private liveView(): LiveView {
    return liveViewOf(this.dataPath);
  }

  private withLiveStates(vol: AssembledVolume): AssembledVolume {
    return withLiveStates(this.registry, this.dataPath, vol);
  }

  private persist(): void {
    try {
      writeStateFile(this.base.dataDir, runtimeState(this.registry, this.base));
    } catch (err) {
      this.log('error', `cannot save the runtime state in ${this.base.dataDir}: ${(err as Error).message}`);
      throw new EngineError('io', `cannot save the runtime state: ${(err as Error).message}`, this.base.dataDir);
    }
  }

  private changed(): void {
    try {
      this.events.emit('change', this.status());
    } catch (err) {
      this.log('warn', `status after a change: ${(err as Error).message}`);
    }
  }
}
