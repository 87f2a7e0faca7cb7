// Building blocks of /metrics: prom-client families whose samples are read, at scrape time, from
// the engine status the scrape took (metrics.ts). Counters and gauges are reset and refilled in
// their collect() callbacks; the latency histogram reports the engine's own buckets.
import type { EngineStatus, LatencyStats } from '@onestack/engine';
import { LATENCY_BUCKET_BOUNDS_US } from '@onestack/engine';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

/** The status of the scrape in progress. */
export type Snapshot = () => EngineStatus;
export type Labels<L extends string> = Readonly<Record<L, string>>;
export type Row<L extends string> = readonly [Labels<L>, number];
type Rows<L extends string> = (status: EngineStatus) => Iterable<Row<L>>;

export interface FamilySpec<L extends string> {
  readonly name: string;
  readonly help: string;
  readonly labels: readonly L[];
  readonly rows: Rows<L>;
}

/** A counter family set to the status' cumulative values on each scrape. Bad values are left out, never thrown. */
export function counterFamily<L extends string>(registry: Registry, snap: Snapshot, spec: FamilySpec<L>): Counter<L> {
  return new Counter<L>({
    name: spec.name, help: spec.help, labelNames: spec.labels, registers: [registry],
    collect() {
      this.reset();
      for (const [labels, value] of spec.rows(snap())) if (Number.isFinite(value) && value >= 0) this.inc(labels, value);
    },
  });
}

/** A gauge family set from the status on each scrape. */
export function gaugeFamily<L extends string>(registry: Registry, snap: Snapshot, spec: FamilySpec<L>): Gauge<L> {
  return new Gauge<L>({
    name: spec.name, help: spec.help, labelNames: spec.labels, registers: [registry],
    collect() {
      this.reset();
      for (const [labels, value] of spec.rows(snap())) if (!Number.isNaN(value)) this.set(labels, value);
    },
  });
}

/** Label value for one le bound: seconds, as Prometheus histograms use. */
export const LATENCY_BOUNDS_SECONDS: readonly number[] = LATENCY_BUCKET_BOUNDS_US.map((us) => us / 1e6);

type HistogramLabel = 'volume' | 'op' | 'le';
type HistogramData = Awaited<ReturnType<Histogram<HistogramLabel>['get']>>;
type HistogramValue = HistogramData['values'][number];
export type HistogramRow = readonly [Labels<'volume' | 'op'>, LatencyStats];

/**
 * A histogram whose buckets come from the engine (per-bucket counts in µs, api-types.ts
 * LatencyStats) instead of observe(): prom-client cannot set a histogram, so get() and the
 * getForPromString() its Registry calls are replaced. Cumulative buckets, +Inf = count.
 */
export class SnapshotHistogram extends Histogram<HistogramLabel> {
  readonly #name: string;
  readonly #help: string;
  readonly #rows: (status: EngineStatus) => Iterable<HistogramRow>;
  readonly #snap: Snapshot;

  constructor(registry: Registry, snap: Snapshot, spec: { name: string; help: string; rows: (status: EngineStatus) => Iterable<HistogramRow> }) {
    super({ name: spec.name, help: spec.help, labelNames: ['volume', 'op'], buckets: [...LATENCY_BOUNDS_SECONDS], registers: [registry] });
    this.#name = spec.name;
    this.#help = spec.help;
    this.#rows = spec.rows;
    this.#snap = snap;
  }

  override async get(): Promise<HistogramData> {
    return this.#data();
  }

  /** What prom-client's Registry.metrics() calls on a histogram (absent from its typings). */
  async getForPromString(): Promise<HistogramData> {
    return this.#data();
  }

  #data(): HistogramData {
    const values: HistogramValue[] = [];
    for (const [labels, stats] of this.#rows(this.#snap())) values.push(...histogramSamples(this.#name, labels, stats));
    // prom-client's typings declare `type` as a numeric enum; at run time it is the string.
    return { name: this.#name, help: this.#help, type: 'histogram' as unknown as HistogramData['type'], aggregator: 'sum', values } as HistogramData;
  }
}

/** _bucket (cumulative, +Inf = count), _sum (seconds) and _count of one label set; none if the buckets do not match the bounds. */
export function histogramSamples(name: string, labels: Labels<'volume' | 'op'>, stats: LatencyStats): HistogramValue[] {
  const bounds = LATENCY_BOUNDS_SECONDS;
  if (stats.buckets.length !== bounds.length + 1) return [];
  const out: HistogramValue[] = [];
  let cumulative = 0;
  for (let i = 0; i < bounds.length; i++) {
    cumulative += stats.buckets[i]!;
    out.push({ metricName: `${name}_bucket`, labels: { ...labels, le: bounds[i]! }, value: cumulative });
  }
  out.push({ metricName: `${name}_bucket`, labels: { ...labels, le: '+Inf' }, value: stats.count });
  out.push({ metricName: `${name}_sum`, labels: { ...labels }, value: stats.sum / 1e6 });
  out.push({ metricName: `${name}_count`, labels: { ...labels }, value: stats.count });
  return out;
}
