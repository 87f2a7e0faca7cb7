// Checks a topology before the data path applies it: bad input gets a clear error and nothing
// changes, since DataPath.setTopology queues only a topology that passed. Also what a volume's
// elements require of request alignment, which the checks and the volume bindings share.
import { EngineError } from '../api-types.js';
import { SUPPORTED_LAYOUTS, volumeCapacityBytes } from './map.js';
import { isParityLayout } from './map-parity.js';
import type { ParityVolumes } from './parity-volumes.js';
import { validateReshapes } from './datapath-reshape.js';
import { DIRECT_ALIGN_BYTES, type TopologyElement, type TopologyVolume } from './topology.js';

export interface TopologyLimits {
  readonly maxElements: number;
  /** The raw maintenance channel's volume slot: user volumes lie below it. */
  readonly rawIndex: number;
  /** The data slab's address modulo 4096 (null: unknown, O_DIRECT refused). */
  readonly misalignmentBytes: number | null;
}

/** `index` when it names an element slot, else a clear error. */
export function checkElementIndex(index: number, maxElements: number): number {
  if (!(Number.isInteger(index) && index >= 0 && index < maxElements)) {
    throw new EngineError('invalid', `element index ${index} outside [0, ${maxElements})`);
  }
  return index;
}

export function validateTopology(volumes: readonly TopologyVolume[], elements: readonly TopologyElement[], limits: TopologyLimits, parity: Pick<ParityVolumes, 'validate'>): void {
  const byIndex = new Map<number, TopologyElement>();
  for (const e of elements) {
    checkElementIndex(e.index, limits.maxElements);
    if (byIndex.has(e.index)) throw new EngineError('invalid', `element index ${e.index} appears twice`, e.name);
    byIndex.set(e.index, e);
    if (e.direct && limits.misalignmentBytes === null) {
      throw new EngineError('invalid', `element ${e.name} asks for O_DIRECT, but the data slab's memory alignment is unknown (native addon unavailable)`, e.name, 'build the native addon or set cache: writeback');
    }
  }
  const seen = new Set<number>();
  validateReshapes(volumes);
  for (const vol of volumes) {
    if (!(Number.isInteger(vol.index) && vol.index >= 0 && vol.index < limits.rawIndex) || seen.has(vol.index)) {
      throw new EngineError('invalid', `volume index ${vol.index} is out of range or used twice`, vol.name);
    }
    seen.add(vol.index);
    if (!SUPPORTED_LAYOUTS.includes(vol.layout)) throw new EngineError('invalid', `layout ${vol.layout} is not supported by the data path yet`, vol.name);
    const els = vol.elements.map((i) => byIndex.get(i));
    if (els.length === 0 || els.some((e) => e === undefined)) throw new EngineError('invalid', `volume ${vol.name} names an element missing from the topology`, vol.name);
    const direct = els.some((e) => e!.direct);
    // An internal view may be a raid10 of one pair: how a raid1 is read while it becomes a raid10 (docs/reshape.md).
    const raid10Min = vol.internal === true ? 2 : 4;
    if (vol.layout === 'raid10' && (els.length < raid10Min || els.length % 2 !== 0)) throw new EngineError('invalid', `volume ${vol.name}: raid10 needs an even number of elements, at least ${raid10Min} (got ${els.length})`, vol.name);
    if ((vol.layout === 'raid0' || vol.layout === 'raid10') && !(Number.isSafeInteger(vol.chunkBytes) && vol.chunkBytes > 0 && vol.chunkBytes % (direct ? 4096 : 512) === 0)) {
      throw new EngineError('invalid', `volume ${vol.name}: chunk ${vol.chunkBytes} bytes must be a positive multiple of ${direct ? 4096 : 512}`, vol.name);
    }
    if (isParityLayout(vol.layout)) parity.validate(vol, els as TopologyElement[], volumeAlignment(els as TopologyElement[]).alignBytes);
    const cap = volumeCapacityBytes(vol.layout, els.map((e) => e!.dataSizeBytes), vol.chunkBytes);
    if (!(Number.isSafeInteger(vol.sizeBytes) && vol.sizeBytes >= 0 && vol.sizeBytes <= cap)) {
      throw new EngineError('invalid', `volume ${vol.name}: size ${vol.sizeBytes} exceeds the layout's capacity ${cap}`, vol.name);
    }
  }
}

/** What a volume's elements require of request alignment (see VolumeBinding). */
export function volumeAlignment(elements: readonly TopologyElement[]): { alignBytes: number; trimAlignBytes: number } {
  const remote = Math.max(1, ...elements.map((e) => (e.kind === 'local' ? 1 : e.blockSizeBytes)));
  const direct = elements.some((e) => e.direct) ? DIRECT_ALIGN_BYTES : 1;
  return { alignBytes: Math.max(remote, direct), trimAlignBytes: remote };
}
