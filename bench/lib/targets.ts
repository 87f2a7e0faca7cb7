// The ratios the table prints (a onestack system ÷ the best of its reference systems, per
// workload) and the targets of GitHub issue 6, each judged met / NOT met from one run's figures.
import { headline, WORKLOADS, type FioFigures, type Workload } from './fio.js';

export interface Cell {
  readonly system: string;
  readonly workload: Workload['id'];
  readonly figures?: FioFigures;
  /** CPU (user + system, all threads) per operation: the server and its helpers, or the measuring process. */
  readonly cpuUsPerOp?: number;
  /** Peak VmRSS of the serving process, sampled during QD32 workloads only. */
  readonly rssPeakBytes?: number;
  /** onestack only: copies per request over this workload; null when the engine does not report them. */
  readonly copies?: { readonly requests: number; readonly copiesPerRequest: number; readonly bytesCopiedPerRequest: number } | null;
  readonly error?: string;
}

export interface Comparison {
  readonly id: string;
  readonly label: string;
  readonly system: string;
  /** The ratio is taken against the best of these (per workload). */
  readonly versus: readonly string[];
}

export const COMPARISONS: readonly Comparison[] = [
  { id: 'plain-vs-nbd', label: 'onestack linear ÷ best of qemu-nbd/nbdkit', system: 'onestack-linear', versus: ['qemu-nbd-none', 'qemu-nbd-writeback', 'nbdkit-file'] },
  { id: 'direct-vs-qemu-nbd', label: 'onestack linear cache=none ÷ qemu-nbd cache=none', system: 'onestack-linear-direct', versus: ['qemu-nbd-none'] },
  { id: 'plain-vs-qsd', label: 'onestack linear ÷ qsd file', system: 'onestack-linear', versus: ['qsd-plain'] },
  { id: 'raid1-vs-quorum', label: 'onestack raid1 of 2 ÷ qsd quorum of 2', system: 'onestack-raid1', versus: ['qsd-quorum'] },
  { id: 'raid1-remote-vs-quorum', label: 'onestack raid1 local+remote ÷ qsd quorum local+remote', system: 'onestack-raid1-remote', versus: ['qsd-quorum-remote'] },
  { id: 'embedded-vs-raw', label: 'onestack embedded ÷ raw fio', system: 'onestack-embedded', versus: ['raw-fio'] },
  { id: 'plain-vs-raw', label: 'onestack linear ÷ raw fio', system: 'onestack-linear', versus: ['raw-fio'] },
];

export interface Ratio {
  readonly comparison: string;
  readonly workload: Workload['id'];
  /** The reference system that was best for this workload. */
  readonly versus: string;
  readonly ratio: number;
}

export function findCell(cells: readonly Cell[], system: string, w: Workload['id']): Cell | undefined {
  return cells.find((c) => c.system === system && c.workload === w);
}

export function ratios(workloads: readonly Workload[], cells: readonly Cell[]): Ratio[] {
  const out: Ratio[] = [];
  for (const c of COMPARISONS) {
    for (const w of workloads) {
      const mine = findCell(cells, c.system, w.id)?.figures;
      const refs = c.versus.map((id) => ({ id, f: findCell(cells, id, w.id)?.figures }))
        .filter((r): r is { id: string; f: FioFigures } => r.f !== undefined && headline(r.f, w) > 0)
        .sort((a, b) => headline(b.f, w) - headline(a.f, w));
      const best = refs[0];
      if (mine === undefined || best === undefined) continue;
      out.push({ comparison: c.id, workload: w.id, versus: best.id, ratio: headline(mine, w) / headline(best.f, w) });
    }
  }
  return out;
}

export const RSS_TARGET_MIB = 256;

interface RatioTarget {
  readonly kind: 'ratio';
  readonly label: string;
  readonly comparison: string;
  readonly workloads: readonly Workload['id'][];
  readonly min: number;
}

interface RssTarget { readonly kind: 'rss'; readonly label: string; readonly maxMiB: number }

export type Target = RatioTarget | RssTarget;

const ALL_WORKLOADS = WORKLOADS.map((w) => w.id);

export const TARGETS: readonly Target[] = [
  { kind: 'ratio', label: 'plain ≥ 1.0× best of qemu-nbd/nbdkit, all four', comparison: 'plain-vs-nbd', workloads: ALL_WORKLOADS, min: 1.0 },
  { kind: 'ratio', label: 'raid1 local+remote ≥ 1.5× qsd quorum, all four', comparison: 'raid1-remote-vs-quorum', workloads: ALL_WORKLOADS, min: 1.5 },
  { kind: 'ratio', label: 'embedded ≥ 0.9× raw fio, 4k randread + 1M read', comparison: 'embedded-vs-raw', workloads: ['randread4k', 'seqread1m'], min: 0.9 },
  { kind: 'rss', label: `daemon RSS ≤ ${RSS_TARGET_MIB} MiB at QD32`, maxMiB: RSS_TARGET_MIB },
];

export type Verdict = 'met' | 'NOT met' | 'incomplete' | 'not measured';

export interface TargetResult {
  readonly label: string;
  readonly verdict: Verdict;
  /** The worst figure: the lowest ratio, or the highest RSS in MiB. */
  readonly worst?: number;
  readonly detail: string;
}

function judgeRatio(t: RatioTarget, rs: readonly Ratio[]): TargetResult {
  const got = t.workloads.map((w) => ({ w, r: rs.find((x) => x.comparison === t.comparison && x.workload === w) }));
  const have = got.filter((g): g is { w: Workload['id']; r: Ratio } => g.r !== undefined);
  if (have.length === 0) return { label: t.label, verdict: 'not measured', detail: 'the systems or workloads it needs did not run' };
  const worst = Math.min(...have.map((g) => g.r.ratio));
  const verdict: Verdict = worst < t.min ? 'NOT met' : have.length < got.length ? 'incomplete' : 'met';
  const parts = got.map((g) => `${g.w} ${g.r === undefined ? '–' : `${g.r.ratio.toFixed(2)}×`}`);
  return { label: t.label, verdict, worst, detail: `min ${worst.toFixed(2)}× (${parts.join(', ')})` };
}

/** Peak RSS (bytes) per system over its QD32 workloads; systems without samples are left out. */
export function rssPeaks(cells: readonly Cell[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const c of cells) {
    if (c.rssPeakBytes === undefined || !Number.isFinite(c.rssPeakBytes)) continue;
    out.set(c.system, Math.max(out.get(c.system) ?? 0, c.rssPeakBytes));
  }
  return out;
}

function judgeRss(t: RssTarget, cells: readonly Cell[], daemonIds: readonly string[]): TargetResult {
  const peaks = [...rssPeaks(cells)].filter(([id]) => daemonIds.includes(id)).sort((a, b) => b[1] - a[1]);
  const top = peaks[0];
  if (top === undefined) return { label: t.label, verdict: 'not measured', detail: 'no onestack daemon ran a QD32 workload' };
  const worst = top[1] / (1024 * 1024);
  const parts = peaks.map(([id, b]) => `${id} ${(b / (1024 * 1024)).toFixed(0)}`);
  return { label: t.label, verdict: worst > t.maxMiB ? 'NOT met' : 'met', worst, detail: `max ${worst.toFixed(0)} MiB (${parts.join(', ')})` };
}

export function judge(rs: readonly Ratio[], cells: readonly Cell[], daemonIds: readonly string[]): TargetResult[] {
  return TARGETS.map((t) => (t.kind === 'ratio' ? judgeRatio(t, rs) : judgeRss(t, cells, daemonIds)));
}

export function targetsText(results: readonly TargetResult[]): string {
  const width = Math.max(...results.map((r) => r.label.length));
  const lines = results.map((r) => `  ${r.label.padEnd(width)}  ${r.verdict.padEnd(12)}  ${r.detail}`);
  return ['targets (issue 6)', ...lines].join('\n');
}
