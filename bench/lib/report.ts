// The results table (stdout) and the ratios of onestack to the best peer.
import type { FioFigures, Workload } from './fio.js';
import type { SystemDef } from './systems.js';

export interface Cell {
  readonly system: string;
  readonly workload: Workload['id'];
  readonly figures?: FioFigures;
  /** Server CPU (user + system, all threads) per operation. */
  readonly serverCpuUsPerOp?: number;
  readonly error?: string;
}

export interface Ratio {
  readonly system: string;
  readonly workload: Workload['id'];
  readonly versus: string;
  /** `best`: against the best peer of this workload; `like`: against the like-for-like peer. */
  readonly kind: 'best' | 'like';
  readonly ratio: number;
}

function headline(f: FioFigures, w: Workload): number {
  return w.headline === 'iops' ? f.iops : f.mibps;
}

function fmt(f: FioFigures | undefined, w: Workload): string {
  if (f === undefined) return 'error';
  if (w.headline === 'mibps') return `${f.mibps.toFixed(0)} MiB/s`;
  return f.iops >= 1000 ? `${(f.iops / 1000).toFixed(1)}k IOPS` : `${f.iops.toFixed(0)} IOPS`;
}

function find(cells: readonly Cell[], system: string, w: Workload): Cell | undefined {
  return cells.find((c) => c.system === system && c.workload === w.id);
}

/** Each onestack system against the best non-onestack system, and against its like-for-like peer. */
export function ratios(systems: readonly SystemDef[], workloads: readonly Workload[], cells: readonly Cell[]): Ratio[] {
  const out: Ratio[] = [];
  for (const w of workloads) {
    const peers = systems.filter((s) => !s.onestack)
      .map((s) => ({ id: s.id, f: find(cells, s.id, w)?.figures }))
      .filter((p): p is { id: string; f: FioFigures } => p.f !== undefined);
    const best = peers.sort((a, b) => headline(b.f, w) - headline(a.f, w))[0];
    for (const s of systems.filter((x) => x.onestack)) {
      const mine = find(cells, s.id, w)?.figures;
      if (mine === undefined) continue;
      if (best !== undefined) out.push({ system: s.id, workload: w.id, versus: best.id, kind: 'best', ratio: headline(mine, w) / headline(best.f, w) });
      const like = peers.find((p) => p.id === s.likePeer);
      if (like !== undefined) out.push({ system: s.id, workload: w.id, versus: like.id, kind: 'like', ratio: headline(mine, w) / headline(like.f, w) });
    }
  }
  return out;
}

function row(cols: readonly string[], widths: readonly number[]): string {
  return cols.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
}

export function table(systems: readonly SystemDef[], workloads: readonly Workload[], cells: readonly Cell[], rs: readonly Ratio[]): string {
  const rows: string[][] = [['system', ...workloads.map((w) => w.title)]];
  for (const s of systems) {
    if (!cells.some((c) => c.system === s.id)) continue;
    rows.push([s.label, ...workloads.map((w) => fmt(find(cells, s.id, w)?.figures, w))]);
  }
  for (const s of systems.filter((x) => x.onestack)) {
    for (const kind of ['best', 'like'] as const) {
      const mine = rs.filter((r) => r.system === s.id && r.kind === kind);
      if (mine.length === 0) continue;
      const label = `${s.label} ÷ ${kind === 'best' ? 'best peer' : s.likePeer ?? ''}`;
      rows.push([label, ...workloads.map((w) => {
        const r = mine.find((x) => x.workload === w.id);
        return r === undefined ? '–' : kind === 'best' ? `${r.ratio.toFixed(2)} (${r.versus})` : r.ratio.toFixed(2);
      })]);
    }
  }
  rows.push(['server CPU µs/op', ...workloads.map(() => '')]);
  for (const s of systems) {
    if (!cells.some((c) => c.system === s.id)) continue;
    rows.push([`  ${s.id}`, ...workloads.map((w) => {
      const v = find(cells, s.id, w)?.serverCpuUsPerOp;
      return v === undefined || !Number.isFinite(v) ? '–' : v.toFixed(1);
    })]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => row(r, widths)).join('\n');
}
