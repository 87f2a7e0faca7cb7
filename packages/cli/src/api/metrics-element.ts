// Per-element families of /metrics: I/O counters (every sub that ended well, fast-lane reads
// included), errors and state. Labels: element, kind, volume ('' for a spare).
import type { ElementIoStats, ElementStatus, EngineStatus } from '@onestack/engine';
import type { Registry } from 'prom-client';
import { counterFamily, gaugeFamily, type Row, type Snapshot } from './metrics-families.js';
import { registerLatencyFamilies } from './metrics-latency.js';

export const ELEMENT_STATES = ['active', 'failed', 'spare', 'rebuilding', 'stale'] as const;

type ElementLabel = 'element' | 'kind' | 'volume';

function byElement(pick: (e: ElementStatus) => number | undefined): (s: EngineStatus) => Row<ElementLabel>[] {
  return (s) => s.elements.flatMap((e): Row<ElementLabel>[] => {
    const value = pick(e);
    return value === undefined ? [] : [[{ element: e.name, kind: e.kind, volume: e.volume ?? '' }, value]];
  });
}

const IO_COUNTERS: readonly (readonly [string, keyof ElementIoStats, string])[] = [
  ['onestack_element_read_ops_total', 'readOps', 'Reads completed on the element (parts of volume requests, rebuild and scrub I/O).'],
  ['onestack_element_write_ops_total', 'writeOps', 'Writes completed on the element (parts of volume requests, rebuild and scrub I/O).'],
  ['onestack_element_read_bytes_total', 'readBytes', 'Bytes read from the element.'],
  ['onestack_element_write_bytes_total', 'writeBytes', 'Bytes written to the element.'],
];

export function registerElementFamilies(registry: Registry, snap: Snapshot): void {
  const labels = ['element', 'kind', 'volume'] as const;
  // Older daemons send no element stats: absent, not 0.
  for (const [name, key, help] of IO_COUNTERS) counterFamily(registry, snap, { name, help, labels, rows: byElement((e) => e.stats?.[key]) });
  // Remote elements with a local cache tier (config elements[].cacheTier).
  counterFamily(registry, snap, { name: 'onestack_element_cache_tier_hits_total', help: 'Reads of a remote element served from its local cache tier.', labels, rows: byElement((e) => e.cacheTier?.hits) });
  counterFamily(registry, snap, { name: 'onestack_element_cache_tier_misses_total', help: 'Reads of a remote element its cache tier could not serve.', labels, rows: byElement((e) => e.cacheTier?.misses) });
  gaugeFamily(registry, snap, { name: 'onestack_element_cache_tier_hit_ratio', help: 'hits / (hits + misses) of the element\'s cache tier.', labels, rows: byElement((e) => e.cacheTier?.hitRatio) });
  registerLatencyFamilies(registry, snap, labels);
  // Write-behind legs (config volumes[].writeBehind): acknowledged bytes not yet on the leg.
  gaugeFamily(registry, snap, { name: 'onestack_element_write_behind_lag_bytes', help: 'Bytes acknowledged to clients but not yet on this write-behind leg.', labels, rows: byElement((e) => e.writeBehind?.lagBytes) });
  counterFamily(registry, snap, { name: 'onestack_element_errors_total', help: 'I/O errors seen on the element.', labels, rows: byElement((e) => e.errors) });
  gaugeFamily(registry, snap, {
    name: 'onestack_element_state', help: 'Element state: 1 for the current state, 0 for the others.', labels: ['element', 'state'],
    rows: (s) => s.elements.flatMap((e) => ELEMENT_STATES.map((st): Row<'element' | 'state'> => [{ element: e.name, state: st }, e.state === st ? 1 : 0])),
  });
}
