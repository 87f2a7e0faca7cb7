// The results table (stdout): one row per system with its peak RSS at QD32, the ratio rows of
// targets.ts, CPU per operation, and copies per request of the onestack systems.
import { formatCopies } from './copies.js';
import type { FioFigures, Workload } from './fio.js';
import { isOnestack, type SystemDef } from './systems.js';
import { COMPARISONS, findCell, rssPeaks, type Cell, type Ratio } from './targets.js';

function fmt(f: FioFigures | undefined, w: Workload): string {
  if (f === undefined) return 'error';
  if (w.headline === 'mibps') return `${f.mibps.toFixed(0)} MiB/s`;
  return f.iops >= 1000 ? `${(f.iops / 1000).toFixed(1)}k IOPS` : `${f.iops.toFixed(0)} IOPS`;
}

function row(cols: readonly string[], widths: readonly number[]): string {
  return cols.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
}

function ratioRows(workloads: readonly Workload[], rs: readonly Ratio[]): string[][] {
  const rows: string[][] = [];
  for (const c of COMPARISONS) {
    const mine = rs.filter((r) => r.comparison === c.id);
    if (mine.length === 0) continue;
    rows.push([c.label, ...workloads.map((w) => {
      const r = mine.find((x) => x.workload === w.id);
      if (r === undefined) return '–';
      return c.versus.length > 1 ? `${r.ratio.toFixed(2)} (${r.versus})` : r.ratio.toFixed(2);
    }), '']);
  }
  return rows;
}

function perSystemRows(title: string, systems: readonly SystemDef[], workloads: readonly Workload[], cells: readonly Cell[], value: (c: Cell | undefined) => string): string[][] {
  const rows = systems.map((s) => [`  ${s.id}`, ...workloads.map((w) => value(findCell(cells, s.id, w.id))), '']);
  return [[title, ...workloads.map(() => ''), ''], ...rows];
}

export function table(systems: readonly SystemDef[], workloads: readonly Workload[], cells: readonly Cell[], rs: readonly Ratio[]): string {
  const ran = systems.filter((s) => cells.some((c) => c.system === s.id));
  const peaks = rssPeaks(cells);
  const rows: string[][] = [['system', ...workloads.map((w) => w.title), 'RSS at QD32']];
  for (const s of ran) {
    const rss = peaks.get(s.id);
    rows.push([s.label, ...workloads.map((w) => fmt(findCell(cells, s.id, w.id)?.figures, w)), rss === undefined ? '–' : `${(rss / (1024 * 1024)).toFixed(0)} MiB`]);
  }
  rows.push(...ratioRows(workloads, rs));
  rows.push(...perSystemRows('CPU µs/op (server + its helpers; raw fio: fio itself; embedded: the whole process)', ran, workloads, cells, (c) => {
    const v = c?.cpuUsPerOp;
    return v === undefined || !Number.isFinite(v) ? '–' : v.toFixed(1);
  }));
  rows.push(...perSystemRows('copies/request (bytes copied/request)', ran.filter(isOnestack), workloads, cells, (c) => (c?.figures === undefined ? '–' : formatCopies(c.copies))));
  // Section titles are long: they do not widen the first column.
  const widths = rows[0]!.map((_, i) => Math.max(...rows.filter((r) => i > 0 || r[1] !== '' || r[0]!.startsWith('  ')).map((r) => (r[i] ?? '').length)));
  return rows.map((r) => row(r, widths)).join('\n');
}
