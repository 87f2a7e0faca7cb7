// The engine's status() document: volumes (state, rebuild or scrub progress, last rebuild,
// bitmap, checkpoints), elements with live states and error counts, pools, queue, native backend, NBD TLS, RDMA
// devices, the bottom driver's I/O backend (io_uring or sync).
import { formatRdmaLine, ioBackendInfo, nativeInfo, rdmaProbe } from '@onestack/native';
import type { CheckpointStatus, ReshapeStatus, ElementIntegrityStatus, ScrubScheduleStatus, ElementStatus, EngineIoStatus, EngineRdmaStatus, EngineStatus, VolumeStatus } from './api-types.js';
import type { EngineConfig } from './config/types.js';
import type { DataPath } from './datapath/datapath.js';
import { isMirror, isParity, type MirrorKeeper } from './durable/keeper.js';
import { retryView } from './durable/leg-watch.js';
import type { ScrubJobs } from './durable/scrub-jobs.js';
import type { AssembledVolume, ElementState } from './meta/types.js';
import { nbdTlsMode } from './nbd-tls.js';
import { rbdField } from './remote/rbd-access.js';
import { elementStatus, volumeState, type ElementEntry, type LiveView, type Registry, type VolumeEntry } from './state/registry.js';
import type { LogFn } from './engine-types.js';
import { BOTTOM_BATCH_MAX, uringScope } from './workers/uring-batch.js';

export interface StatusSources {
  /** Payload copies of the NBD servers over this engine (nbd-export.ts). */
  readonly nbdCopies: () => { payloadCopies: number; payloadBytesCopied: number };
  /** The NBD listeners' addresses (nbd-export.ts). */
  readonly nbdListen: () => string[];
  readonly registry: Registry;
  readonly dataPath: DataPath;
  readonly keeper: MirrorKeeper;
  readonly scrubs: ScrubJobs;
  readonly base: EngineConfig;
  /** Every checkpoint of a volume, unusable ones included. */
  readonly checkpoints?: (volume: string) => readonly CheckpointStatus[];
  /** An element's integrity counters (by data-path index). */
  readonly integrityCounts?: (element: number) => ElementIntegrityStatus;
  /** A volume's scrub schedule (durable/scrub-schedule.ts), or null. */
  readonly scrubSchedule?: (volume: VolumeEntry) => ScrubScheduleStatus | null;
  /** A volume's running reshape (durable/reshape.ts), or null. */
  readonly reshape?: (volume: string) => ReshapeStatus | null;
}

/** Element states and error counters as the data path sees them now. */
export function liveViewOf(dataPath: DataPath): LiveView {
  return {
    state: (e: ElementEntry): ElementState => dataPath.elementState(e.index),
    errors: (e: ElementEntry): number => dataPath.elementErrors(e.index),
  };
}

/** The assembled volume with element states as the data path sees them now (it may have failed legs). */
export function withLiveStates(registry: Registry, dataPath: DataPath, vol: AssembledVolume): AssembledVolume {
  const live = liveViewOf(dataPath);
  return { ...vol, elements: vol.elements.map((e) => {
    const state = live.state(registry.element(e.config.name));
    return state === e.state ? e : { ...e, state, reason: e.reason ?? `${state} while running` };
  }) };
}

/** Probed once per process: RDMA devices do not come and go under a running daemon, and
 *  status --watch asks four times a second. */
let rdmaStatus: EngineRdmaStatus | undefined;
function rdmaStatusOnce(): EngineRdmaStatus {
  if (rdmaStatus === undefined) {
    const probe = rdmaProbe();
    rdmaStatus = { ...probe, summary: formatRdmaLine(probe) };
  }
  return rdmaStatus;
}

/**
 * Probed once per process, like RDMA: the bottom workers run in this process with this env and
 * kernel, so a ring that opens here opens there (a worker that still fails logs why on stderr).
 */
let ioStatus: EngineIoStatus | undefined;
export function ioStatusOnce(): EngineIoStatus {
  if (ioStatus === undefined) {
    const info = ioBackendInfo();
    const batch = `batch ≤${BOTTOM_BATCH_MAX}`;
    if (info.backend === 'sync') {
      ioStatus = { backend: 'sync', scope: null, batchMax: 1, reason: info.reason, summary: `io: sync (${info.reason})` };
    } else {
      const scope = uringScope();
      const summary = scope === 'all' ? `io: io_uring (${batch})` : `io: io_uring for cache:none elements (${batch}), sync for page-cache elements`;
      ioStatus = { backend: 'io_uring', scope, batchMax: BOTTOM_BATCH_MAX, reason: info.reason, summary };
    }
  }
  return ioStatus;
}

/** An element's status with its I/O counters from the data path. */
function elementWithStats(ctx: StatusSources, e: ElementEntry, live: LiveView): ElementStatus {
  const integrity = ctx.registry.ownerOf(e.config.name)?.assembled.config.integrity === true ? ctx.integrityCounts?.(e.index) : undefined;
  return { ...retryView(ctx.keeper, elementStatus(ctx.registry, e, live)), stats: ctx.dataPath.elementStats(e.index), latency: ctx.dataPath.elementLatency(e.index), ...(integrity !== undefined ? { integrity } : {}),
    ...writeBehindField(ctx.dataPath.writeBehindStatus(e.index)), ...rbdField(e.config) };
}

export function buildStatus(ctx: StatusSources): EngineStatus {
  const live = liveViewOf(ctx.dataPath);
  const volumes = [...ctx.registry.volumes.values()].map((v): VolumeStatus => {
    const elements = v.assembled.config.elements.map((name) => elementWithStats(ctx, ctx.registry.element(name), live));
    const { config } = v.assembled;
    return {
      name: config.name, layout: config.layout, sizeBytes: v.assembled.sizeBytes, chunkKiB: config.chunkKiB, order: config.order, boot: config.boot,
      state: volumeState(config.layout, elements.map((e) => e.state)), rebuild: ctx.keeper.progress(config.name) ?? ctx.scrubs.progress(config.name), reshape: ctx.reshape?.(config.name) ?? null,
      scrub: ctx.scrubs.result(config.name), scrubSchedule: ctx.scrubSchedule?.(v) ?? null, elements, stats: v.handle.io.stats(), cache: v.handle.io.cacheStats(),
      checkpoints: ctx.checkpoints?.(config.name) ?? [], integrity: config.integrity === true,
      ...(isMirror(config.layout) ? { lastRebuild: ctx.keeper.lastRebuild(config.name), bitmap: ctx.keeper.bitmapStatus(config.name) } : {}),
      ...(isParity(config.layout) ? { lastRebuild: ctx.keeper.lastRebuild(config.name) } : {}),
    };
  });
  const native = nativeInfo();
  return {
    volumes,
    elements: [...ctx.registry.elements.values()].map((e) => elementWithStats(ctx, e, live)),
    pools: ctx.dataPath.poolStatus(),
    queue: ctx.dataPath.queueStatus(),
    native: { backend: native.backend, ...(native.reason !== undefined ? { reason: native.reason } : {}) },
    dataDir: ctx.base.dataDir,
    nbd: { tls: nbdTlsMode(ctx.base.nbd.tls), listen: ctx.nbdListen() },
    rdma: rdmaStatusOnce(),
    io: { ...ioStatusOnce(), copies: copyTotals(volumes, ctx.nbdCopies()), fastLane: ctx.dataPath.fastLaneStats() },
  };
}

function copyTotals(volumes: readonly VolumeStatus[], nbd: { payloadCopies: number; payloadBytesCopied: number }): NonNullable<EngineIoStatus['copies']> {
  let requests = 0;
  let copies = nbd.payloadCopies;
  let bytesCopied = nbd.payloadBytesCopied;
  for (const v of volumes) {
    requests += v.stats.readOps + v.stats.writeOps;
    copies += v.stats.copies ?? 0;
    bytesCopied += v.stats.bytesCopied ?? 0;
  }
  return { requests, copies, bytesCopied, perRequest: requests === 0 ? 0 : copies / requests };
}

/** What start-up found, one line each: unreplayed journals, unclean stops, elements not active. */
export function logOpenReport(entries: readonly VolumeEntry[], openError: (index: number) => string | undefined, log: LogFn): void {
  for (const entry of entries) {
    const layout = entry.assembled.config.layout;
    const replay = openError(entry.index);
    if (replay !== undefined) log('error', `volume ${entry.assembled.config.name}: stripe journal not replayed (${replay}); it answers EIO until enough elements return`);
    if (entry.assembled.wasClean === false) {
      const after = isMirror(layout) ? 'resyncing the regions written last' : isParity(layout) && replay === undefined ? 'its stripe journal was replayed, data and parity agree' : 'writes in flight at the crash may be torn';
      log('warn', `volume ${entry.assembled.config.name} was not closed cleanly: ${after}`);
    }
    const stale = entry.assembled.elements.filter((e) => e.state !== 'active');
    for (const e of stale) log('warn', `volume ${entry.assembled.config.name}: element ${e.config.name} is ${e.state}: ${e.reason ?? ''}`);
  }
}

function writeBehindField(wb: ElementStatus['writeBehind']): { writeBehind?: NonNullable<ElementStatus['writeBehind']> } {
  return wb === undefined ? {} : { writeBehind: wb };
}
