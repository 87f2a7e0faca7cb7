// What the control plane tells the data path about volumes and elements, and the messages that
// carry it to the workers. Plain data: it crosses MessagePorts by structured clone.
import type { ElementKind, Layout, QueueOrder } from '../config/types.js';
import type { ElementState } from '../meta/types.js';
import type { RemoteSpec } from '../remote/spec.js';

export interface TopologyVolume {
  readonly index: number;
  readonly name: string;
  readonly layout: Layout;
  readonly chunkBytes: number;
  readonly sizeBytes: number;
  readonly order: QueueOrder;
  /** Element indices by role (role 0 first). */
  readonly elements: readonly number[];
  /**
   * The data path's own maintenance channel (bitmap updates, resync, rebuild, scrub): a parent's
   * AUX word names the element and its offset is an element offset. Never exported.
   */
  readonly raw?: boolean;
  /** The array's UUID (superblocks): raid5/6 stripe journal records carry it, so a reused element's old records are never replayed. */
  readonly arrayId?: string;
  /** Per-block checksums (docs/integrity.md): a raid5/6 volume replays its journal only once they are attached. */
  readonly integrity?: boolean;
  /** raid1/raid10: the leg written after the acknowledgement (datapath/write-behind.ts), by element index. */
  readonly writeBehind?: { readonly element: number; readonly maxLagBytes: number; readonly drainOnFlush: boolean };
  /** raid5/6: where the stripe journal lives (journal-area.ts); absent = full. A reshape splits it between its two views. */
  readonly journal?: 'full' | 'low' | 'high';
  /**
   * This (NEW-geometry) volume is being reshaped from `fromIndex`, an internal volume with the old
   * geometry (docs/reshape.md): clients see `exposedBytes` through a ReshapeRouter. positionBytes
   * is where a new router starts; a router kept across topologies never moves back.
   */
  readonly reshape?: { readonly fromIndex: number; readonly positionBytes: number; readonly exposedBytes: number };
  /** Never exported or listed (the old view of a reshape). */
  readonly internal?: boolean;
}

export interface TopologyElement {
  readonly index: number;
  readonly name: string;
  readonly kind: ElementKind;
  readonly path?: string;
  readonly direct: boolean;
  readonly dataOffsetBytes: number;
  readonly dataSizeBytes: number;
  readonly state: ElementState;
  /** Smallest I/O unit the element accepts (remote block size); 1 for local elements. */
  readonly blockSizeBytes: number;
  /** nbd/iscsi: how the remote loop connects (secrets included: never log this object). */
  readonly remote?: RemoteSpec;
  /** nbd/iscsi with `cacheTier` in the config: the local cache file the remote loop keeps (workers/cache-tier.ts). */
  readonly cacheTier?: TopologyCacheTier;
}

export interface TopologyCacheTier {
  readonly path: string;
  readonly sizeBytes: number;
  readonly blockBytes: number;
  /** Float64 hit/miss/off words (cache-tier.ts TIER_COUNTER): written by the element's remote loop, read by status. */
  readonly counters: SharedArrayBuffer;
}

export interface TopologyMessage {
  readonly type: 'topology';
  readonly generation: number;
  readonly volumes: readonly TopologyVolume[];
  readonly elements: readonly TopologyElement[];
}

export interface AckMessage {
  readonly type: 'ack';
  readonly generation: number;
  /** Per-element open failures seen by a bottom worker (element index → reason). */
  readonly openErrors?: readonly { readonly index: number; readonly reason: string }[];
}

/** Element state words in the control SAB. */
const STATES: readonly ElementState[] = ['active', 'failed', 'spare', 'rebuilding', 'stale'];

export function encodeState(state: ElementState): number {
  const code = STATES.indexOf(state);
  if (code < 0) throw new Error(`unknown element state ${String(state)}`);
  return code;
}

export function decodeState(code: number): ElementState {
  return STATES[code] ?? 'failed';
}

export const STATE_ACTIVE = 0;
export const STATE_FAILED = 1;
/** Being rebuilt: takes writes (so the copied part stays current) but serves no reads. */
export const STATE_REBUILDING = 3;

/**
 * Marks an active or rebuilding element failed from the main thread (a device error its caller
 * saw); the control plane's failure watch takes it from there. False if it was neither.
 */
export function failElementState(elemState: Int32Array, element: number): boolean {
  return Atomics.compareExchange(elemState, element, STATE_ACTIVE, STATE_FAILED) === STATE_ACTIVE
    || Atomics.compareExchange(elemState, element, STATE_REBUILDING, STATE_FAILED) === STATE_REBUILDING;
}

/** Engine-private parent flag (above the queue package's FUA/NO_HOLE bits): subs are mirror legs. */
export const FLAG_MIRRORED = 1 << 8;
/** Engine-private parent flag: element-addressed I/O of the raid5/6 stripe engine (AUX = element, offset = element offset). */
export const FLAG_ELEMENT = 1 << 9;
/** Engine-private parent flag: a raid1 write, trim or flush that skips the volume's write-behind leg (it gets it later). */
export const FLAG_SKIP_BEHIND = 1 << 10;

/** Bit 31 of a descriptor's ID_HI word: the request class (1 = remote). On a sub it says where the element is. */
export const ID_CLASS_REMOTE = 0x8000_0000 | 0;

/** Direct-I/O alignment (O_DIRECT on Linux needs logical-block alignment; 4096 covers 4Kn disks). */
export const DIRECT_ALIGN_BYTES = 4096;
