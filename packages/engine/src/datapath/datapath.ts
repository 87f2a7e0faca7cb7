// DataPath: owns the shared memory, the worker pools, the TOP driver and the per-volume I/O
// objects. The control plane (engine) hands it a topology; it never reads superblocks itself.
// Start-up options and checks: datapath-options.ts; topology checks: topology-check.ts; the
// worker loops and topology broadcasts: stage-loops.ts; reshape handles: datapath-reshape.ts.
import { preadNowait } from '@onestack/native';
import { createQueue, type SubmissionQueue } from '@onestack/queue';
import { EngineError, type ElementIoStats, type ElementLatencyStatus, type PoolStatus } from '../api-types.js';
import { readElementIo, resetElementIo } from './complete.js';
import { readLatency, resetLatency } from './transport.js';
import type { ElementState } from '../meta/types.js';
import { isParityLayout } from './map-parity.js';
import { ParityVolumes, stripeSlotsFor } from './parity-volumes.js';
import type { StripeEngine } from './stripe-engine.js';
import type { StageKind } from './pools.js';
import { attach, createShared, type SharedViews } from './shared-layout.js';
import { Top, type AckGate } from './top.js';
import { decodeState, encodeState, type TopologyElement, type TopologyVolume } from './topology.js';
import { RawIoImpl, type RawIo } from './raw-io.js';
import { ReadCache } from './read-cache.js';
import { FastLane, type FastLaneStats } from './fast-lane.js';
import { VolumeIoImpl, type VolumeBinding, type VolumeIo } from './volume-io.js';
import { behindLinkFor, type WriteBehindStatus } from './write-behind-io.js';
import { SlotPool } from './waiters.js';
import { integrityFor, parityIntegrityFor, type IntegrityOptions } from '../integrity/wire.js';
import { Reshapes, VolumeHandle } from './datapath-reshape.js';
import type { ReshapeRouter } from './reshape-router.js';
import type { JournalAreaName } from './journal-area.js';
import { checkStartOptions, DEFAULT_TIMEOUT_MS, DEFAULT_WAITERS_MAX, probeMisalignment, type DataPathOptions } from './datapath-options.js';
import { StageLoops } from './stage-loops.js';
import { checkElementIndex, validateTopology, volumeAlignment } from './topology-check.js';
import { waitUntil } from './settle.js';

export type { TopologyElement, TopologyVolume } from './topology.js';
export type { DataPathOptions } from './datapath-options.js';

export class DataPath {
  private readonly volumeIos = new Map<number, VolumeIoImpl>();
  private readonly queues: (SubmissionQueue | undefined)[] = [];
  private volumes: readonly TopologyVolume[] = [];
  private elements: readonly TopologyElement[] = [];
  private serial: Promise<void> = Promise.resolve();
  private closing: Promise<void> | null = null;
  private openErrors = new Map<number, string>();
  private rawIo: RawIoImpl | null = null;
  private readonly parity: ParityVolumes;
  /** Owned by this (main) thread: every volume's reads and invalidations run here. */
  private readonly readCache: ReadCache;
  /** Inline page-cache reads, or null (no addon, or turned off). */
  private readonly lane: FastLane | null;
  /** Volumes with integrity (raid1/raid10): their checksum stores, rewired on every topology. */
  private readonly integrity = new Map<number, IntegrityOptions>();
  /** What volumeIo hands out: one stable handle per bound volume (datapath-reshape.ts). */
  private readonly handles = new Map<number, VolumeHandle>();
  /** Routers of reshaping volumes (docs/reshape.md). */
  private readonly reshapes: Reshapes;

  private constructor(
    private readonly v: SharedViews,
    private readonly top: Top,
    private readonly slots: SlotPool,
    private readonly loops: StageLoops,
    private readonly opts: DataPathOptions,
  ) {
    this.readCache = new ReadCache((opts.readCacheMiB ?? 0) * 1024 * 1024);
    const pread = opts.fastLane === false ? null : preadNowait();
    this.lane = pread === null ? null : new FastLane(pread, v.slab, v.elemState, v.elemQueued, v.elemIo);
    top.setFastLane(this.lane);
    this.parity = new ParityVolumes(v, top, slots, opts.waitersMax ?? DEFAULT_WAITERS_MAX, this.readCache);
    this.reshapes = new Reshapes(opts.waitersMax ?? DEFAULT_WAITERS_MAX);
  }

  static async start(opts: DataPathOptions): Promise<DataPath> {
    checkStartOptions(opts);
    const { depth, slots, slotKiB } = opts.queue;
    const handles = createShared(
      // One more volume slot than users get: the raw maintenance channel (raw-io.ts).
      { parents: depth, subs: 4 * depth, maxVolumes: (opts.maxVolumes ?? 64) + 1, maxElements: opts.maxElements ?? 256, slots, slotBytes: slotKiB * 1024, remoteRings: opts.pools.remote, stripeSlots: stripeSlotsFor(slots) },
      (data) => probeMisalignment(data, opts.probeDir),
    );
    const v = attach(handles);
    const waitersMax = opts.waitersMax ?? DEFAULT_WAITERS_MAX;
    const top = new Top(v, waitersMax);
    let dp: DataPath | undefined;
    const onExit = (kind: StageKind, err: unknown): void => {
      if (dp?.closing !== null && dp?.closing !== undefined) return;
      top.fail('EIO', `${kind} worker stopped unexpectedly: ${err === null ? 'returned' : String(err)}`);
    };
    const loops = StageLoops.start(handles, v, top, opts.pools, onExit);
    dp = new DataPath(v, top, new SlotPool(slots, waitersMax), loops, opts);
    try {
      await dp.broadcast([], []); // proves every loop runs before anyone submits
    } catch (err) {
      await dp.close();
      throw err;
    }
    return dp;
  }

  /** The raw volume's slot: the last one, never given to a user volume. */
  private get rawIndex(): number {
    return this.v.params.maxVolumes - 1;
  }

  /** Maintenance I/O on single elements (element offsets) through the common queue. */
  get raw(): RawIo {
    this.rawIo ??= new RawIoImpl(this.top, this.slots, this.v.slab, this.rawIndex);
    return this.rawIo;
  }

  /** The raid5/6 stripe engine of a volume: rebuild (reconstructElementRange) and scrub (checkStripe) drive it. */
  stripe(index: number): StripeEngine {
    return this.parity.engine(index);
  }

  /** Why a raid5/6 volume's journal could not be replayed when it was bound (it answers EIO until it can), if so. */
  volumeOpenError(index: number): string | undefined {
    return this.parity.openError(index);
  }

  /** Address of the data slab modulo 4096, or null (then O_DIRECT elements are refused). */
  get slabMisalignmentBytes(): number | null {
    return this.v.params.misalignmentBytes;
  }

  setTopology(volumes: readonly TopologyVolume[], elements: readonly TopologyElement[]): Promise<void> {
    if (this.closing !== null) return Promise.reject(new EngineError('closed', 'data path is closed'));
    try {
      this.validate(volumes, elements);
    } catch (err) {
      return Promise.reject(err);
    }
    const run = this.serial.then(() => this.applyTopology(volumes, elements));
    this.serial = run.catch(() => undefined);
    return run;
  }

  /**
   * Turns a bound volume's checksums on (before it serves I/O) or off (null). raid5/6: resolves
   * once its journal is replayed with them (a failed replay is reported as the volume's open error).
   */
  async setIntegrity(index: number, opts: IntegrityOptions | null): Promise<void> {
    const io = this.volumeIos.get(index);
    const vol = this.volumes.find((v) => v.index === index);
    if (io === undefined || vol === undefined) throw new EngineError('not-found', `no volume is bound at index ${index}`);
    if (isParityLayout(vol.layout)) {
      if (opts === null) throw new EngineError('invalid', `volume ${vol.name}: a raid5/6 volume's checksums cannot be turned off while bound`);
      const integrity = parityIntegrityFor(vol, opts, this.parity.engine(index), this.raw);
      io.setIntegrity(null, integrity);
      await this.parity.attachIntegrity(index, integrity);
      return;
    }
    if (opts === null) this.integrity.delete(index);
    else this.integrity.set(index, opts);
    this.wireIntegrity(vol, io);
  }

  private wireIntegrity(vol: TopologyVolume, io: VolumeIoImpl): void {
    const opts = this.integrity.get(vol.index);
    const byIndex = new Map(this.elements.map((e) => [e.index, e]));
    io.setIntegrity(opts === undefined ? null : integrityFor(vol, vol.elements.map((i) => byIndex.get(i)!), opts, { elemState: this.v.elemState, raw: this.raw, gate: io.gate }));
  }

  /** The volume's I/O: a stable handle that goes through its ReshapeRouter while it reshapes (datapath-reshape.ts). */
  volumeIo(index: number): VolumeIo {
    const io = this.volumeIos.get(index);
    if (io === undefined) throw new EngineError('not-found', `no volume is bound at index ${index}`);
    let h = this.handles.get(index);
    if (h === undefined) {
      h = new VolumeHandle(() => this.reshapes.router(index) ?? this.volumeIos.get(index), io, this.opts.waitersMax ?? DEFAULT_WAITERS_MAX);
      this.handles.set(index, h);
    }
    return h;
  }

  /** The router of a reshaping volume (its position, fences, the two views), else undefined. */
  reshapeRouter(index: number): ReshapeRouter | undefined {
    return this.reshapes.router(index);
  }

  /** The gate every successful request passes before it is acknowledged (datapath/top.ts AckGate). */
  setAckGate(gate: AckGate | null): void {
    this.top.setAckGate(gate);
  }

  /** Holds new client requests of volume `index` (router or plain) and waits until none is in flight; resolves with the resume. */
  pauseVolume(index: number): Promise<() => void> {
    this.volumeIo(index);
    return this.handles.get(index)!.pause();
  }

  /** raid5/6: retires every transaction begun so far below a durable checkpoint; returns the next sequence. */
  checkpointJournal(index: number): Promise<number> {
    return this.parity.engine(index).checkpointAll();
  }

  /** raid5/6: writes the journal header of `area` with checkpoint `seq` on every writable element of volume `index`. */
  writeJournalHeader(index: number, area: JournalAreaName, seq: number): Promise<void> {
    return this.parity.engine(index).writeJournalHeader(area, seq);
  }

  elementState(index: number): ElementState {
    return decodeState(Atomics.load(this.v.elemState, this.elementIndex(index)));
  }

  elementErrors(index: number): number {
    return Atomics.load(this.v.elemErrors, this.elementIndex(index));
  }

  /** Successful READ/WRITE subs and bytes on the element (complete.ts countElementIo). */
  elementStats(index: number): ElementIoStats {
    return readElementIo(this.v.elemIo, this.elementIndex(index));
  }

  /** The write-behind state of a leg written behind (datapath/write-behind.ts), else undefined. */
  writeBehindStatus(index: number): WriteBehindStatus | undefined {
    for (const io of this.volumeIos.values()) if (io.behindLink?.element === index) return io.behindLink.writer.status();
    return undefined;
  }

  /** Latency and throughput EWMAs of the element (transport.ts). */
  elementLatency(index: number): ElementLatencyStatus {
    return readLatency(this.v.elemLat, this.v.elemMark, this.v.elemIo, this.elementIndex(index));
  }

  /** Why a bottom worker could not open the element (last topology), if it could not. */
  elementOpenError(index: number): string | undefined {
    return this.openErrors.get(index);
  }

  setElementState(index: number, s: ElementState): void {
    Atomics.store(this.v.elemState, this.elementIndex(index), encodeState(s));
  }

  poolStatus(): { top: PoolStatus; middle: PoolStatus; bottom: PoolStatus; remote: PoolStatus } {
    let middleDepth = 0;
    for (const q of this.queues) if (q !== undefined) middleDepth += q.size();
    return {
      top: { threads: 1, queueDepth: this.top.waiting + this.slots.waiting },
      middle: { threads: this.loops.middle?.threads ?? 0, queueDepth: middleDepth + this.top.stalledCount },
      bottom: { threads: this.loops.bottom.threads, queueDepth: this.v.bottom.size() },
      remote: { threads: this.loops.remote.threads, queueDepth: this.v.remote.reduce((sum, r) => sum + r.size(), 0) },
    };
  }

  /**
   * True when the fast lane serves this volume's reads from the page cache: the RAM read cache
   * would then hold a second copy of the same pages (and cost a copy per fill), so it stays off.
   */
  private laneServes(vol: TopologyVolume, els: readonly TopologyElement[]): boolean {
    return this.lane !== null && LANE_LAYOUTS.includes(vol.layout) && vol.writeBehind === undefined && els.every((e) => e.kind === 'local' && !e.direct);
  }

  /** Reads served inline from the page cache (fast-lane.ts), or null when the lane is off. */
  fastLaneStats(): FastLaneStats | null {
    return this.lane === null ? null : { ...this.lane.stats };
  }

  queueStatus(): { depth: number; inFlight: number; slots: number; slotKiB: number } {
    const p = this.v.params;
    return { depth: p.parents, inFlight: this.top.outstanding, slots: p.slots, slotKiB: p.slotBytes / 1024 };
  }

  /** Stops accepting, waits (bounded) for in-flight requests, stops the loops (they close their fds). */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    const timeoutMs = this.opts.closeTimeoutMs ?? DEFAULT_TIMEOUT_MS;
    for (const io of this.volumeIos.values()) io.setWriteBehind(null);
    this.top.close('data path is closing');
    this.slots.close('data path is closing');
    this.lane?.close();
    await waitUntil(() => this.top.outstanding === 0, timeoutMs);
    await this.loops.stop(timeoutMs);
    // Whatever the loops left behind can no longer complete: settle it rather than hang.
    this.top.fail('ESHUTDOWN', 'data path closed before the request completed');
  }

  private elementIndex(index: number): number {
    return checkElementIndex(index, this.v.params.maxElements);
  }

  private validate(volumes: readonly TopologyVolume[], elements: readonly TopologyElement[]): void {
    const p = this.v.params;
    validateTopology(volumes, elements, { maxElements: p.maxElements, rawIndex: this.rawIndex, misalignmentBytes: p.misalignmentBytes }, this.parity);
  }

  private async applyTopology(volumes: readonly TopologyVolume[], elements: readonly TopologyElement[]): Promise<void> {
    const next = new Map(volumes.map((vol) => [vol.index, vol]));
    const changed = this.volumes.filter((old) => {
      const now = next.get(old.index);
      return now === undefined || now.name !== old.name || now.order !== old.order;
    });
    if (changed.length > 0) await this.unbindChanged(changed);
    const prevElements = new Map(this.elements.map((e) => [e.index, e]));
    for (const e of elements) {
      const prev = prevElements.get(e.index);
      if (prev === undefined || prev.name !== e.name) {
        resetElementIo(this.v.elemIo, e.index); // a new element in the slot starts at zero
        resetLatency(this.v.elemLat, this.v.elemMark, e.index);
      }
      // A live element keeps its live state (the data path may have failed it); use setElementState to change it.
      if (prev === undefined || prev.name !== e.name || prev.path !== e.path || prev.direct !== e.direct || prev.kind !== e.kind) this.setElementState(e.index, e.state);
    }
    for (const vol of volumes) {
      // Formatted here, on the main thread, while no worker has the slot in its topology.
      this.queues[vol.index] ??= createQueue(vol.order, this.v.control, this.v.volumeQueueOffset(vol.index), this.v.params.parents, true);
    }
    this.queues[this.rawIndex] ??= createQueue('fifo', this.v.control, this.v.volumeQueueOffset(this.rawIndex), this.v.params.parents, true);
    const acks = await this.broadcast(volumes, elements);
    this.top.bindVolume(this.rawIndex, 'linear', elements.length, this.queues[this.rawIndex]!);
    this.openErrors = new Map(acks.flatMap((a) => (a.openErrors ?? []).map((x) => [x.index, x.reason] as [number, string])));
    this.volumes = volumes;
    this.elements = elements;
    const byIndex = new Map(elements.map((e) => [e.index, e]));
    for (const vol of volumes) {
      const els = vol.elements.map((i) => byIndex.get(i)!);
      const binding: VolumeBinding = { index: vol.index, name: vol.name, sizeBytes: vol.sizeBytes, ...volumeAlignment(els), cacheReads: !this.laneServes(vol, els) };
      this.top.bindVolume(vol.index, vol.layout, vol.elements.length, this.queues[vol.index]!);
      if (isParityLayout(vol.layout)) {
        this.volumeIos.set(vol.index, await this.parity.bind(vol, binding, vol.elements.map((i) => byIndex.get(i)!), this.volumeIos.get(vol.index)));
        continue;
      }
      const io = this.volumeIos.get(vol.index);
      if (io === undefined) this.volumeIos.set(vol.index, new VolumeIoImpl(binding, this.top, this.slots, this.v.slab, this.readCache));
      else io.rebind(binding);
      this.volumeIos.get(vol.index)!.setWriteBehind(behindLinkFor(vol, byIndex, { top: this.top, slots: this.slots, slab: this.v.slab, rawIndex: this.rawIndex, v: this.v }, this.volumeIos.get(vol.index)!.behindLink));
      if (this.integrity.has(vol.index)) this.wireIntegrity(vol, this.volumeIos.get(vol.index)!);
    }
    for (const index of this.integrity.keys()) if (!volumes.some((v) => v.index === index)) this.integrity.delete(index);
    this.reshapes.apply(volumes, this.volumeIos);
  }

  /** Takes volumes that left (or changed name or order) out of service: no new requests, in-flight ones drained (bounded), loops told. */
  private async unbindChanged(changed: readonly TopologyVolume[]): Promise<void> {
    for (const old of changed) {
      this.handles.get(old.index)?.detach();
      this.handles.delete(old.index);
      this.top.unbindVolume(old.index);
      this.volumeIos.get(old.index)?.setWriteBehind(null);
      this.volumeIos.delete(old.index);
      this.parity.unbind(old.index);
    }
    const timeoutMs = this.opts.closeTimeoutMs ?? DEFAULT_TIMEOUT_MS;
    const drained = await waitUntil(() => changed.every((old) => this.top.volumeOutstanding(old.index) === 0), timeoutMs);
    if (!drained) throw new EngineError('conflict', `volumes ${changed.map((c) => c.name).join(', ')} still have requests in flight after ${timeoutMs} ms`);
    const keep = this.volumes.filter((old) => !changed.includes(old));
    await this.broadcast(keep, this.elements);
    for (const old of changed) this.queues[old.index] = undefined;
    this.volumes = keep;
  }

  /** Sends a topology (and the raw channel) to every loop and the fast lane; waits for all acks (stage-loops.ts). */
  private broadcast(volumes: readonly TopologyVolume[], elements: readonly TopologyElement[]) {
    // Once elements exist, the raw channel reaches each of them (it is never a user volume).
    const raw: TopologyVolume[] = this.queues[this.rawIndex] === undefined ? [] : [{
      index: this.rawIndex, name: '@raw', layout: 'linear', chunkBytes: 0, sizeBytes: 0, order: 'fifo', raw: true,
      elements: elements.map((e) => e.index).sort((a, b) => a - b),
    }];
    return this.loops.broadcast([...volumes, ...raw], elements, this.lane, this.opts.ackTimeoutMs ?? DEFAULT_TIMEOUT_MS);
  }
}

/** Layouts whose reads the fast lane serves (fast-lane.ts). */
const LANE_LAYOUTS: readonly string[] = ['linear', 'raid0', 'raid1'];
