// The tables of bench/rbd.ts: the systems it compares, one cell per system and workload, the
// figures table with ratios vs qemu-nbd's rbd export, and the rbd path each onestack system used.
import { headline, type Workload } from './fio.js';

export const SYSTEMS = [
  { id: 'qemu-nbd-rbd', label: '(a) qemu-nbd rbd: export, cache=none' },
  { id: 'onestack-linear', label: '(b) onestack linear over rbd:// (librbd)' },
  { id: 'onestack-linear-gw', label: '(b\') (b) through the qemu-nbd gateway (?path=gateway)' },
  { id: 'onestack-raid1', label: '(c) onestack raid1 local file + rbd:// (librbd)' },
  { id: 'onestack-behind', label: '(d) (c) with the rbd leg writeBehind' },
] as const;
export type SystemId = (typeof SYSTEMS)[number]['id'];
export const REFERENCE: SystemId = 'qemu-nbd-rbd';

/** What the onestack daemon reported about its rbd:// element. */
export interface RbdPath { path: string; state: string; pid: number | null; restarts: number; error?: string }

export interface Cell {
  system: SystemId;
  workload: Workload['id'];
  iops?: number;
  mibps?: number;
  latMeanUs?: number;
  /** The serving process and its descendants (onestack: daemon + gateway), over the workload including its ramp. */
  cpuUsPerOp?: number;
  /** onestack: the part of cpuUsPerOp its gateway qemu-nbd used. */
  gatewayCpuUsPerOp?: number;
  /** onestack-behind, write workloads: the lag's peak and how long the flush after the workload took (it drains the lag). */
  peakLagMiB?: number;
  flushMs?: number;
  error?: string;
}

export interface SystemRecord {
  id: SystemId;
  label: string;
  rbd?: RbdPath | null;
  /** CPU of the serving process tree over 2 s without I/O right after start-up, in % of one core. */
  idleCpuPercent?: number;
  /** onestack: volume and r0 state after the last workload, and the share of element reads r0 served. */
  endState?: string;
  error?: string;
}

export const find = (cells: readonly Cell[], s: SystemId, w: Workload['id']): Cell | undefined => cells.find((c) => c.system === s && c.workload === w);

function fmt(c: Cell | undefined, w: Workload): string {
  if (c === undefined) return '–';
  if (c.error !== undefined || c.iops === undefined || c.mibps === undefined) return 'error';
  if (w.headline === 'mibps') return `${c.mibps.toFixed(0)} MiB/s`;
  return c.iops >= 1000 ? `${(c.iops / 1000).toFixed(1)}k IOPS` : `${c.iops.toFixed(0)} IOPS`;
}

function value(c: Cell | undefined, w: Workload): number | undefined {
  if (c?.iops === undefined || c.mibps === undefined || c.latMeanUs === undefined) return undefined;
  return headline({ iops: c.iops, mibps: c.mibps, latMeanUs: c.latMeanUs, ops: 0 }, w);
}

export function ratioOf(cells: readonly Cell[], s: SystemId, w: Workload): number | undefined {
  const mine = value(find(cells, s, w.id), w);
  const ref = value(find(cells, REFERENCE, w.id), w);
  return mine === undefined || ref === undefined || ref <= 0 ? undefined : mine / ref;
}

export function table(ws: readonly Workload[], recs: readonly SystemRecord[], cells: readonly Cell[]): string {
  const rows: string[][] = [['system', ...ws.map((w) => w.title)]];
  for (const r of recs) rows.push([r.label, ...ws.map((w) => fmt(find(cells, r.id, w.id), w))]);
  const section = (title: string, ids: readonly SystemId[], f: (s: SystemId, w: Workload) => string): void => {
    rows.push([title, ...ws.map(() => '')]);
    for (const s of ids) rows.push([`  ${s}`, ...ws.map((w) => f(s, w))]);
  };
  const ids = recs.map((r) => r.id);
  section(`ratio vs ${REFERENCE}`, ids.filter((s) => s !== REFERENCE), (s, w) => ratioOf(cells, s, w)?.toFixed(2) ?? '–');
  section('mean latency µs', ids, (s, w) => find(cells, s, w.id)?.latMeanUs?.toFixed(0) ?? '–');
  section('CPU µs/op (qemu-nbd; onestack daemon + its gateway, the gateway\'s part in brackets; not the OSD)', ids, (s, w) => {
    const c = find(cells, s, w.id);
    const v = c?.cpuUsPerOp;
    if (v === undefined || !Number.isFinite(v)) return '–';
    const gw = c?.gatewayCpuUsPerOp;
    return gw === undefined || !Number.isFinite(gw) ? v.toFixed(0) : `${v.toFixed(0)} (${gw.toFixed(0)})`;
  });
  if (ids.includes('onestack-behind')) {
    section('write-behind: peak lag MiB / flush after, ms', ['onestack-behind'], (s, w) => {
      const c = find(cells, s, w.id);
      return c?.peakLagMiB === undefined ? '' : `${c.peakLagMiB.toFixed(1)} / ${c.flushMs?.toFixed(0) ?? '?'}`;
    });
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.filter((r) => i > 0 || r[1] !== '' || r[0]!.startsWith('  ')).map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd()).join('\n');
}

export function pathLines(recs: readonly SystemRecord[]): string[] {
  return recs.filter((r) => r.id !== REFERENCE).map((r) => {
    if (r.error !== undefined) return `  ${r.id}: did not start`;
    const p = r.rbd;
    const via = p === undefined || p === null ? 'unknown (no elements[].rbd in status)' : `${p.path}${p.path === 'gateway' ? ' (a qemu-nbd started by onestack, our NBD client to it)' : ''}, ${p.state}, pid ${String(p.pid)}, ${p.restarts} restart(s)`;
    return `  ${r.id}: rbd path ${via}; at the end: ${r.endState ?? '?'}`;
  });
}

/** CPU of each system with no I/O (2 s after start-up): what CPU µs/op carries at low IOPS. */
export function idleLine(recs: readonly SystemRecord[]): string {
  return 'idle CPU (no I/O, 2 s after start, % of one core): ' + recs.map((r) => `${r.id} ${r.idleCpuPercent === undefined ? '–' : r.idleCpuPercent.toFixed(1)}`).join(', ');
}

