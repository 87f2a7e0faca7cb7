// What the state file keeps of a running engine: run-time elements and volumes, and config-file
// volumes whose legs were replaced or that were reshaped at run time (they reassemble from these
// at the next start), and the boot volume when it was picked at run time.
import type { EngineConfig } from '../config/types.js';
import type { PersistedState } from './state-file.js';
import type { Registry } from './registry.js';
import { currentBootPick } from './boot.js';

export function runtimeState(registry: Registry, base: EngineConfig): PersistedState {
  const elements = [...registry.elements.values()].filter((e) => e.runtime).map((e) => e.config);
  const volumes = [...registry.volumes.values()].filter((v) => v.runtime).map((v) => v.assembled.config);
  // Config-file volumes whose legs were replaced at run time (they reassemble from these).
  const changed = [...registry.volumes.values()].flatMap((v) => {
    const configured = base.volumes.find((c) => c.name === v.assembled.config.name);
    const now = v.assembled.config.elements;
    if (v.runtime || configured === undefined) return [];
    if (configured.layout !== v.assembled.config.layout || (configured.layout !== 'raid1' && configured.elements.length !== now.length)) return [];
    if (configured.elements.length === now.length && configured.elements.every((e) => now.includes(e))) return [];
    return [{ volume: configured.name, configElements: configured.elements, elements: now }];
  });
  // Layout or (for other than raid1) element count changed: a reshape, started or finished (state-file.ts withReshaped).
  const reshaped = [...registry.volumes.values()].flatMap((v) => {
    const configured = base.volumes.find((c) => c.name === v.assembled.config.name);
    const now = v.assembled.config;
    if (v.runtime || configured === undefined) return [];
    if (configured.layout === now.layout && (configured.layout === 'raid1' || configured.elements.length === now.elements.length)) return [];
    return [{ volume: configured.name, configLayout: configured.layout, configElements: configured.elements, layout: now.layout, elements: now.elements }];
  });
  // Same member count: legs replaced; another count: members added or removed (state-file.ts withMembers).
  const count = (r: { volume: string; elements: readonly string[] }): number => base.volumes.find((c) => c.name === r.volume)?.elements.length ?? -1;
  const replaced = changed.filter((r) => r.elements.length === count(r));
  const members = changed.filter((r) => r.elements.length !== count(r));
  const bootPick = currentBootPick(registry, base);
  return { elements, volumes, replaced, members, reshaped, ...(bootPick !== undefined ? { bootPick } : {}) };
}
