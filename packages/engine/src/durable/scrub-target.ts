// The control plane's view of a volume for a scrub: geometry, element indices by role, and the
// live state of each role. Roles are pinned when the scrub starts: if an element leaves its role
// (replaced, volume deleted) the role reads as 'failed' and the scrub stops using it.
import type { ElementState } from '../meta/types.js';
import type { Registry, VolumeEntry } from '../state/registry.js';
import type { ScrubTarget } from './scrub.js';

export function scrubTargetOf(registry: Registry, entry: VolumeEntry, liveState: (elementIndex: number) => ElementState): ScrubTarget {
  const vol = entry.assembled;
  const names = [...vol.config.elements];
  const elements = names.map((n) => registry.element(n).index);
  const state = (role: number): ElementState => {
    const now = registry.volumes.get(vol.config.name);
    const name = names[role];
    if (now !== entry || name === undefined || now.assembled.config.elements[role] !== name) return 'failed';
    const element = registry.elements.get(name);
    return element === undefined || element.index !== elements[role] ? 'failed' : liveState(element.index);
  };
  return {
    name: vol.config.name,
    geometry: {
      layout: vol.config.layout, chunkBytes: vol.config.chunkKiB * 1024, sizeBytes: vol.sizeBytes,
      elements: [...vol.elements].sort((a, b) => a.role - b.role).map((e) => ({ dataOffsetBytes: vol.dataOffsetBytes, dataSizeBytes: e.dataSizeBytes })),
    },
    elements, elementNames: names, state,
  };
}
