// Per-element transport figures of /metrics (docs/transport.md): the engine's latency EWMAs in
// seconds and throughput EWMAs in bytes per second, as Prometheus base units want. An element
// with no sample yet has no latency row (absent, not 0).
import type { ElementLatencyStatus, ElementStatus } from '@onestack/engine';
import type { Registry } from 'prom-client';
import { gaugeFamily, type Row, type Snapshot } from './metrics-families.js';

type ElementLabel = 'element' | 'kind' | 'volume';

const FAMILIES: readonly (readonly [string, string, (l: ElementLatencyStatus) => number | null])[] = [
  ['onestack_element_read_latency_ewma_seconds', 'Smoothed service time of the element\'s reads (EWMA, gain 1/8).', (l) => (l.readUsEwma === null ? null : l.readUsEwma / 1e6)],
  ['onestack_element_write_latency_ewma_seconds', 'Smoothed service time of the element\'s writes (EWMA, gain 1/8).', (l) => (l.writeUsEwma === null ? null : l.writeUsEwma / 1e6)],
  ['onestack_element_read_throughput_ewma_bytes_per_second', 'Smoothed read throughput of the element (~1 s time constant).', (l) => l.readMiBPerSec * 1048576],
  ['onestack_element_write_throughput_ewma_bytes_per_second', 'Smoothed write throughput of the element (~1 s time constant).', (l) => l.writeMiBPerSec * 1048576],
];

export function registerLatencyFamilies(registry: Registry, snap: Snapshot, labels: readonly ElementLabel[]): void {
  for (const [name, help, pick] of FAMILIES) {
    const rows = (s: { elements: readonly ElementStatus[] }): Row<ElementLabel>[] => s.elements.flatMap((e): Row<ElementLabel>[] => {
      const value = e.latency === undefined ? null : pick(e.latency);
      return value === null ? [] : [[{ element: e.name, kind: e.kind, volume: e.volume ?? '' }, value]];
    });
    gaugeFamily(registry, snap, { name, help, labels, rows });
  }
}
