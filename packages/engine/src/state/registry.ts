// The engine's in-memory registry: elements and volumes with their stable data-path slots
// (volume index < 64, element index < 256; a freed slot is reused), the topology handed to
// the data path, and the status shapes built from it. Control plane only.
import type { ElementStatus, VolumeState } from '../api-types.js';
import { EngineError } from '../api-types.js';
import type { ElementConfig } from '../config/types.js';
import { writeBehindTopology } from '../config/write-behind.js';
import type { TopologyElement, TopologyVolume } from '../datapath/topology.js';
import { volumeHealth } from '../meta/layout.js';
import { DATA_OFFSET_BYTES, type AssembledVolume, type ElementState, type ReshapeRecord } from '../meta/types.js';
import { copyGeometry } from '../meta/reshape-plan.js';
import type { RemoteSpec } from '../remote/spec.js';
import type { Volume } from '../volume.js';
import { tierCounters, tierStatus } from '../workers/cache-tier.js';

const MIB = 1024 * 1024;

export const MAX_VOLUME_SLOTS = 64;
export const MAX_ELEMENT_SLOTS = 256;

export interface ElementEntry {
  readonly index: number;
  readonly config: ElementConfig;
  /** Created at run time (persisted in the state file) rather than by the config. */
  readonly runtime: boolean;
  /** Usable bytes after the header area (0 when unknown, e.g. remote). */
  dataSizeBytes: number;
  /** State while not part of a volume (spare, or failed by request). */
  idleState: ElementState;
  /** Why it is failed while not part of a volume (replaced, unusable spare). */
  reason?: string;
  /** nbd/iscsi: how the remote loops connect (holds secrets: never log or serialise it). */
  readonly remote?: RemoteSpec;
  /** Config `cacheTier`: its hit/miss counters, shared with the element's remote loop (workers/cache-tier.ts). */
  readonly tierCounters?: SharedArrayBuffer;
}

export interface VolumeEntry {
  readonly index: number;
  assembled: AssembledVolume;
  readonly handle: Volume;
  readonly runtime: boolean;
  /** While it is reshaped (assembled.reshape): the data-path slot of its internal old view. */
  reshapeFromIndex?: number;
}

/** Lowest free slot below `max`. */
export function freeSlot(used: Iterable<number>, max: number, what: string): number {
  const taken = new Set(used);
  for (let i = 0; i < max; i++) if (!taken.has(i)) return i;
  throw new EngineError('conflict', `no free ${what} slot (at most ${max})`, what, `delete a ${what} first`);
}

export class Registry {
  readonly elements = new Map<string, ElementEntry>();
  readonly volumes = new Map<string, VolumeEntry>();

  addElement(config: ElementConfig, runtime: boolean, dataSizeBytes: number, remote?: RemoteSpec): ElementEntry {
    if (this.elements.has(config.name)) throw new EngineError('conflict', `element ${config.name} already exists`, `element ${config.name}`);
    if ((remote !== undefined) !== (config.location.kind !== 'local')) throw new Error(`element ${config.name}: remote spec ${remote === undefined ? 'missing' : 'given for a local element'}`);
    const index = freeSlot([...this.elements.values()].map((e) => e.index), MAX_ELEMENT_SLOTS, 'element');
    const tier = remote !== undefined && config.cacheTier !== undefined ? { tierCounters: tierCounters() } : {};
    const entry: ElementEntry = { index, config, runtime, dataSizeBytes, idleState: 'spare', ...(remote !== undefined ? { remote } : {}), ...tier };
    this.elements.set(config.name, entry);
    return entry;
  }

  element(name: string): ElementEntry {
    const entry = this.elements.get(name);
    if (entry === undefined) throw new EngineError('not-found', `no element named ${name}`, `element ${name}`, 'list elements with `onestack element list`');
    return entry;
  }

  volumeIndex(): number {
    const used = [...this.volumes.values()].flatMap((v) => (v.reshapeFromIndex === undefined ? [v.index] : [v.index, v.reshapeFromIndex]));
    return freeSlot(used, MAX_VOLUME_SLOTS, 'volume');
  }

  /** The slot of a reshaping volume's old view: allocated on first use (start, or assembly after a restart), freed when the reshape ends. */
  reshapeIndexOf(entry: VolumeEntry): number {
    entry.reshapeFromIndex ??= this.volumeIndex();
    return entry.reshapeFromIndex;
  }

  /** The volume using element `name`, if any. */
  ownerOf(name: string): VolumeEntry | undefined {
    for (const v of this.volumes.values()) if (v.assembled.config.elements.includes(name)) return v;
    return undefined;
  }

  topology(): { volumes: TopologyVolume[]; elements: TopologyElement[] } {
    const roleState = new Map<string, { state: ElementState; dataSizeBytes: number; blockSizeBytes: number }>();
    for (const v of this.volumes.values()) {
      for (const e of v.assembled.elements) roleState.set(e.config.name, { state: e.state, dataSizeBytes: e.dataSizeBytes, blockSizeBytes: e.blockSizeBytes ?? 1 });
    }
    const elements: TopologyElement[] = [];
    for (const e of this.elements.values()) {
      const member = roleState.get(e.config.name);
      const loc = e.config.location;
      elements.push({
        index: e.index, name: e.config.name, kind: loc.kind, direct: loc.kind === 'local' && e.config.cache === 'none',
        dataOffsetBytes: DATA_OFFSET_BYTES, dataSizeBytes: member?.dataSizeBytes ?? e.dataSizeBytes, state: member?.state ?? e.idleState,
        blockSizeBytes: member?.blockSizeBytes ?? 1,
        ...(loc.kind === 'local' ? { path: loc.path } : {}), ...(e.remote !== undefined ? { remote: e.remote } : {}),
        ...(e.tierCounters !== undefined && e.config.cacheTier !== undefined ? { cacheTier: {
          path: e.config.cacheTier.path, sizeBytes: e.config.cacheTier.sizeMiB * MIB, blockBytes: e.config.cacheTier.blockKiB * 1024, counters: e.tierCounters } } : {}),
      });
    }
    const volumes = [...this.volumes.values()].flatMap((v): TopologyVolume[] => {
      const plain: TopologyVolume = {
        index: v.index, name: v.assembled.config.name, layout: v.assembled.config.layout, chunkBytes: v.assembled.config.chunkKiB * 1024,
        sizeBytes: v.assembled.sizeBytes, order: v.assembled.config.order, arrayId: v.assembled.arrayUuid,
        ...(v.assembled.config.integrity === true ? { integrity: true } : {}),
        ...writeBehindTopology(v.assembled.config.writeBehind, v.assembled.config.elements, (name) => this.element(name).index),
        elements: v.assembled.config.elements.map((name) => this.element(name).index),
      };
      return v.assembled.reshape === undefined ? [plain] : reshapeViews(plain, v.assembled.reshape, this.reshapeIndexOf(v));
    });
    return { volumes, elements };
  }
}

/**
 * A reshaping volume is two data-path volumes over the same elements (docs/reshape.md): the public
 * one in the NEW geometry (capacity C1, clients see C0 through its router; journal in the high
 * area) and an internal one in the geometry the copy reads (copyGeometry of the old; the first
 * roles; journal in the low area).
 */
function reshapeViews(plain: TopologyVolume, r: ReshapeRecord, fromIndex: number): TopologyVolume[] {
  const oldView = copyGeometry({ layout: r.fromLayout, count: r.fromCount, chunkBytes: r.fromChunkBytes, dataSizeBytes: 0 }, plain);
  const parity = (layout: string): boolean => layout === 'raid5' || layout === 'raid6';
  const pub: TopologyVolume = { ...plain, sizeBytes: r.toSizeBytes, ...(parity(plain.layout) ? { journal: 'high' as const } : {}),
    reshape: { fromIndex, positionBytes: r.positionBytes, exposedBytes: r.fromSizeBytes } };
  const { writeBehind: _none, ...base } = plain;
  const internal: TopologyVolume = { ...base, index: fromIndex, name: `${plain.name}~reshape-old`, layout: oldView.layout, chunkBytes: r.fromChunkBytes,
    sizeBytes: r.fromSizeBytes, elements: plain.elements.slice(0, oldView.count), ...(parity(oldView.layout) ? { journal: 'low' as const } : {}), internal: true };
  return [pub, internal];
}

export interface LiveView {
  state(entry: ElementEntry): ElementState;
  errors(entry: ElementEntry): number;
}

export function elementStatus(registry: Registry, entry: ElementEntry, live: LiveView): ElementStatus {
  const owner = registry.ownerOf(entry.config.name);
  const role = owner?.assembled.config.elements.indexOf(entry.config.name);
  const state = live.state(entry);
  const member = owner?.assembled.elements.find((e) => e.config.name === entry.config.name);
  const reason = state === 'active' || state === 'spare' ? undefined : member !== undefined ? member.reason ?? (state === 'failed' ? 'I/O error' : undefined) : entry.reason;
  return {
    name: entry.config.name, kind: entry.config.location.kind, uri: entry.config.uri, state,
    sizeBytes: entry.dataSizeBytes, volume: owner?.assembled.config.name ?? null, role: role ?? null, errors: live.errors(entry),
    ...(reason !== undefined ? { reason } : {}),
    ...(entry.tierCounters !== undefined && entry.config.cacheTier !== undefined ? { cacheTier: tierStatus(entry.config.cacheTier, entry.tierCounters) } : {}),
  };
}

export function volumeState(layout: AssembledVolume['config']['layout'], states: readonly ElementState[]): VolumeState {
  const health = volumeHealth(layout, states);
  if (health !== 'failed' && states.includes('rebuilding')) return 'rebuilding';
  return health;
}
