// One allocation probe per element, opened lazily on the main thread and kept while the element
// stays the same registry entry: sync() (after every topology change) and close() (engine
// close) release the fds and probe connections of elements that went away or changed.
import { sparseSeek, sparseSeekUnavailable, type SparseSeek } from '@onestack/native';
import type { ElementEntry } from '../state/registry.js';
import { allData, LocalProbe } from './probe-local.js';
import { RemoteProbe } from './probe-remote.js';
import type { ElementRuns } from './map-allocation.js';

type Probe = { readonly kind: 'local'; readonly probe: LocalProbe } | { readonly kind: 'remote'; readonly probe: RemoteProbe };

export class ElementProbes {
  private readonly probes = new Map<string, { entry: ElementEntry; probe: Probe }>();
  private readonly seek: SparseSeek | null;
  private closed = false;

  constructor(private readonly warn: (msg: string) => void) {
    this.seek = sparseSeek();
    const why = sparseSeekUnavailable();
    // Said once per engine: Node has no lseek, so local elements answer "all data".
    if (why !== null) warn(`base:allocation: local elements report all data (${why})`);
  }

  /** Runs of [startBytes, +lengthBytes) of the element; failures and unknowns are data, never holes. */
  async runs(entry: ElementEntry, startBytes: number, lengthBytes: number, runsMax: number): Promise<ElementRuns> {
    if (this.closed) return allData(startBytes, lengthBytes);
    return this.probeOf(entry).probe.runs(startBytes, lengthBytes, runsMax);
  }

  /** Drops the probes of elements no longer in `current` (volume members) or replaced under the same name. */
  sync(current: ReadonlyMap<string, ElementEntry>): void {
    for (const [name, held] of this.probes) {
      if (current.get(name) !== held.entry) {
        this.probes.delete(name);
        void closeProbe(held.probe);
      }
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    const held = [...this.probes.values()];
    this.probes.clear();
    await Promise.all(held.map((h) => closeProbe(h.probe)));
  }

  private probeOf(entry: ElementEntry): Probe {
    const held = this.probes.get(entry.config.name);
    if (held !== undefined && held.entry === entry) return held.probe;
    if (held !== undefined) void closeProbe(held.probe);
    const loc = entry.config.location;
    const element = `element ${entry.config.name}`;
    const probe: Probe = loc.kind === 'local'
      ? { kind: 'local', probe: new LocalProbe(loc.path, this.seek, (msg) => this.warn(`${element}: ${msg}`)) }
      : { kind: 'remote', probe: new RemoteProbe(entry.remote, (msg) => this.warn(`${element}: ${msg}`)) };
    this.probes.set(entry.config.name, { entry, probe });
    return probe;
  }
}

async function closeProbe(p: Probe): Promise<void> {
  if (p.kind === 'local') p.probe.close();
  else await p.probe.close();
}
