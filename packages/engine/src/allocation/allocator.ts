// base:allocation of a volume (what Engine.allocation answers): the volume range is cut into
// segments by the layout (map-allocation.ts), each element asked once over the span its
// segments cover (probes.ts), and the answers combined into volume extents. Flags 3 = hole and
// reads as zeroes, 0 = data; whatever cannot be told is data.
import { EngineError, type BlockExtent } from '../api-types.js';
import type { LogFn } from '../engine-types.js';
import type { VolumeGeometry } from '../datapath/map.js';
import { checkRange } from '../datapath/map.js';
import { DATA_OFFSET_BYTES, type ElementState } from '../meta/types.js';
import type { ElementEntry, Registry, VolumeEntry } from '../state/registry.js';
import { allocationSegments, combineSegments, elementSpans, finishRuns, type ElementRuns } from './map-allocation.js';
import { ElementProbes } from './probes.js';

/** Hole boundaries inside an answer sit on this grid (file systems allocate in 4 KiB blocks). */
export const ALLOCATION_ALIGN_BYTES = 4096;
/** Segments (chunks) one call maps at most: bounds the work of a huge range on a small chunk. */
const SEGMENTS_MAX = 4_096;
const RUNS_MIN = 256;
const RUNS_MAX = 16_384;

export interface AllocationHost {
  readonly registry: Registry;
  /** The data path's live state of an element (by index): only 'active' elements serve reads. */
  elementState(index: number): ElementState;
  readonly log: LogFn;
}

export class VolumeAllocation {
  private readonly probes: ElementProbes;

  /** `onClose` registers the probes' closing with the engine's own close. */
  constructor(private readonly host: AllocationHost, onClose: (closer: () => Promise<void>) => void) {
    this.probes = new ElementProbes((msg) => host.log('warn', msg));
    onClose(() => this.probes.close());
  }

  /** Extents of [offsetBytes, +lengthBytes) from offsetBytes: 1..extentsMax of them, covering at most lengthBytes. */
  async allocation(volume: string, offsetBytes: number, lengthBytes: number, extentsMax: number): Promise<BlockExtent[]> {
    const entry = this.host.registry.volumes.get(volume);
    if (entry === undefined) throw new EngineError('not-found', `no volume named ${volume}`, `volume ${volume}`);
    if (!(Number.isInteger(extentsMax) && extentsMax >= 1)) throw new EngineError('invalid', `extentsMax ${extentsMax} must be a positive integer`, `volume ${volume}`);
    const geom = geometryOf(entry);
    try {
      checkRange(offsetBytes, lengthBytes, geom.sizeBytes);
    } catch (err) {
      throw new EngineError('invalid', (err as Error).message, `volume ${volume}`);
    }
    if (lengthBytes === 0) throw new EngineError('invalid', 'allocation of an empty range', `volume ${volume}`);
    // While a reshape runs two geometries hold the volume (docs/reshape.md): all data, never a wrong hole.
    if (entry.assembled.reshape !== undefined) return [{ lengthBytes, flags: 0 }];
    const members = entry.assembled.config.elements.map((name) => this.host.registry.element(name));
    const readable = members.map((e) => this.host.elementState(e.index) === 'active');
    const segments = allocationSegments(geom, readable, offsetBytes, lengthBytes, SEGMENTS_MAX);
    const runsMax = Math.min(RUNS_MAX, Math.max(RUNS_MIN, 4 * extentsMax));
    const runsByRole = await this.askElements(members, elementSpans(segments), runsMax);
    const extents = finishRuns(combineSegments(segments, runsByRole), offsetBytes, ALLOCATION_ALIGN_BYTES, extentsMax);
    // Nothing known at all (cannot happen with the probes' answers, which always start where asked): data.
    if (extents.length === 0) return [{ lengthBytes: segments[0]!.lengthBytes, flags: 0 }];
    checkAnswer(extents, lengthBytes, extentsMax);
    return extents;
  }

  /**
   * Runs of one element (by data-path index) from startBytes, for a rebuild that skips holes:
   * null when the element is unknown. Unknowns inside are data (zero: false), as for allocation().
   */
  async elementRuns(index: number, startBytes: number, lengthBytes: number): Promise<ElementRuns | null> {
    const entry = [...this.host.registry.elements.values()].find((e) => e.index === index);
    return entry === undefined ? null : this.probes.runs(entry, startBytes, lengthBytes, RUNS_MAX);
  }

  /** After a topology change: release the fds and connections of elements that left their volume or changed. */
  sync(): void {
    const { registry } = this.host;
    const members = [...registry.volumes.values()].flatMap((v) => v.assembled.config.elements);
    this.probes.sync(new Map(members.flatMap((name) => {
      const entry = registry.elements.get(name);
      return entry === undefined ? [] : [[name, entry] as const];
    })));
  }

  private async askElements(members: readonly ElementEntry[], spans: ReadonlyMap<number, { startBytes: number; endBytes: number }>, runsMax: number): Promise<Map<number, ElementRuns>> {
    const asked = [...spans].map(async ([role, span]) => [role, await this.probes.runs(members[role]!, span.startBytes, span.endBytes - span.startBytes, runsMax)] as const);
    return new Map(await Promise.all(asked));
  }
}

/** The volume's geometry as the data path maps it (registry.topology() builds the same numbers). */
function geometryOf(entry: VolumeEntry): VolumeGeometry {
  const vol = entry.assembled;
  const byName = new Map(vol.elements.map((e) => [e.config.name, e]));
  return {
    layout: vol.config.layout, chunkBytes: vol.config.chunkKiB * 1024, sizeBytes: vol.sizeBytes,
    elements: vol.config.elements.map((name) => ({ dataOffsetBytes: DATA_OFFSET_BYTES, dataSizeBytes: byName.get(name)?.dataSizeBytes ?? 0 })),
  };
}

function checkAnswer(extents: readonly BlockExtent[], lengthBytes: number, extentsMax: number): void {
  let total = 0;
  for (const x of extents) {
    if (!(Number.isSafeInteger(x.lengthBytes) && x.lengthBytes > 0)) throw new Error(`allocation: extent of ${x.lengthBytes} bytes`);
    total += x.lengthBytes;
  }
  if (extents.length > extentsMax || total > lengthBytes) throw new Error(`allocation: ${extents.length} extents over ${total} bytes for ${extentsMax} / ${lengthBytes}`);
}
