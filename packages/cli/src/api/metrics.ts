// GET /api/v1/metrics: Prometheus text exposition format 0.0.4 through prom-client, on a registry
// of our own (never prom-client's global one). Families are built once; each scrape takes one
// engine status and every family reads its samples from it in collect(), so a scrape is one
// consistent snapshot. Counters are cumulative since the daemon started. Families by role:
// metrics-volume.ts, metrics-element.ts, metrics-engine.ts.
import type { EngineStatus } from '@onestack/engine';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { registerElementFamilies } from './metrics-element.js';
import { registerEngineFamilies } from './metrics-engine.js';
import { registerVolumeFamilies } from './metrics-volume.js';

export const METRICS_CONTENT_TYPE = Registry.PROMETHEUS_CONTENT_TYPE;

export interface MetricsExporterOptions {
  /** Node process metrics (CPU, memory, event loop lag, GC: prom-client's default metrics) on this registry. */
  readonly processMetrics?: boolean;
}

export class MetricsExporter {
  readonly contentType = METRICS_CONTENT_TYPE;
  readonly #registry = new Registry();
  #status: EngineStatus | undefined;
  /** Scrapes run one after another, each on its own status. */
  #last: Promise<unknown> = Promise.resolve();

  constructor(opts: MetricsExporterOptions = {}) {
    const snap = (): EngineStatus => {
      if (this.#status === undefined) throw new Error('metrics: collect outside a scrape');
      return this.#status;
    };
    registerVolumeFamilies(this.#registry, snap);
    registerElementFamilies(this.#registry, snap);
    registerEngineFamilies(this.#registry, snap);
    if (opts.processMetrics === true) collectDefaultMetrics({ register: this.#registry });
  }

  /** The exposition text for `status`. */
  render(status: EngineStatus): Promise<string> {
    const run = this.#last.then(async () => {
      this.#status = status;
      try {
        return await this.#registry.metrics();
      } finally {
        this.#status = undefined;
      }
    });
    this.#last = run.catch(() => undefined);
    return run;
  }
}

let daemonExporter: MetricsExporter | undefined;

/** The daemon's exporter (with process metrics), made on first use. */
export function renderMetrics(status: EngineStatus): Promise<string> {
  daemonExporter ??= new MetricsExporter({ processMetrics: true });
  return daemonExporter.render(status);
}

/** Label values escape backslash, double quote and newline, as the format requires. */
export function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}
