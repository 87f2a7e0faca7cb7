// Text rendering of engine status, laid out like /proc/mdstat: one block per volume with its
// layout, state, size, [n/m] [UU_] map, rebuild progress and elements; then spares and pools.
import type { ElementStatus, EngineStatus, VolumeStatus } from '@onestack/engine';

export interface OpSample {
  readonly atMs: number;
  /** readOps/writeOps per volume name. */
  readonly ops: ReadonlyMap<string, { readonly readOps: number; readonly writeOps: number }>;
}

export function sampleOps(status: EngineStatus, atMs: number): OpSample {
  const ops = new Map<string, { readOps: number; writeOps: number }>();
  for (const v of status.volumes) ops.set(v.name, { readOps: v.stats.readOps, writeOps: v.stats.writeOps });
  return { atMs, ops };
}

export interface Iops { readonly read: number; readonly write: number }

/** IOPS of one volume between two samples; undefined when there is no earlier sample. */
export function iopsBetween(before: OpSample | undefined, after: OpSample, volume: string): Iops | undefined {
  const a = before?.ops.get(volume);
  const b = after.ops.get(volume);
  const seconds = before === undefined ? 0 : (after.atMs - before.atMs) / 1000;
  if (a === undefined || b === undefined || seconds <= 0) return undefined;
  // Counters restart when the daemon restarts: never show a negative rate.
  return { read: Math.max(0, (b.readOps - a.readOps) / seconds), write: Math.max(0, (b.writeOps - a.writeOps) / seconds) };
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit++; }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(2)} ${units[unit]}`;
}

const ROLE_UP: ReadonlySet<string> = new Set(['active']);

/** `[2/2] [UU]`: like mdstat, U for an element in service, _ for one that is not. */
function roleMap(volume: VolumeStatus): string {
  const members = [...volume.elements].filter((e) => e.role !== null).sort((x, y) => (x.role ?? 0) - (y.role ?? 0));
  const up = members.filter((e) => ROLE_UP.has(e.state)).length;
  const map = members.map((e) => (ROLE_UP.has(e.state) ? 'U' : '_')).join('');
  return `[${members.length}/${up}] [${map}]`;
}

function progressBar(percent: number): string {
  const width = 20;
  const filled = Math.min(width, Math.max(0, Math.floor((percent / 100) * width)));
  const arrow = filled < width ? '>' : '';
  return `[${'='.repeat(Math.max(0, filled - (arrow === '' ? 0 : 1)))}${arrow}${'.'.repeat(width - filled)}]`;
}

function elementLine(e: ElementStatus, nameWidth: number): string {
  const role = e.role === null ? '' : `[${e.role}]`;
  const errors = e.errors > 0 ? `  errors ${e.errors}` : '';
  return `      ${(e.name + role).padEnd(nameWidth + 4)} ${e.kind.padEnd(6)} ${e.state.padEnd(11)} ${formatBytes(e.sizeBytes).padStart(11)}  ${e.uri}${errors}`;
}

export function renderVolume(volume: VolumeStatus, iops: Iops | undefined): string[] {
  const members = volume.elements.map((e) => `${e.name}[${e.role ?? '-'}]`).join(' ');
  const flags = [volume.boot ? 'boot' : '', `order ${volume.order}`].filter((f) => f !== '').join(', ');
  const lines = [
    `${volume.name} : ${volume.state} ${volume.layout} ${members}`,
    `      ${formatBytes(volume.sizeBytes)} (${volume.sizeBytes} bytes) chunk ${volume.chunkKiB}K ${roleMap(volume)}  ${flags}`,
  ];
  if (volume.rebuild !== null) {
    lines.push(`      ${progressBar(volume.rebuild.percent)}  rebuild = ${volume.rebuild.percent.toFixed(1)}%`);
  }
  const s = volume.stats;
  const rate = iops === undefined ? '' : `iops: read ${iops.read.toFixed(0)}/s write ${iops.write.toFixed(0)}/s; `;
  lines.push(`      ${rate}ops: read ${s.readOps} write ${s.writeOps}; bytes: read ${formatBytes(s.readBytes)} write ${formatBytes(s.writeBytes)}; errors ${s.errors}`);
  const width = Math.max(0, ...volume.elements.map((e) => e.name.length));
  for (const e of volume.elements) lines.push(elementLine(e, width));
  return lines;
}

/** The whole `onestack status` text. `previous` (from --watch) turns op counters into IOPS. */
export function renderStatus(status: EngineStatus, previous?: OpSample, current?: OpSample): string {
  const lines: string[] = [];
  if (status.volumes.length === 0) lines.push('no volumes (create one with: onestack volume create NAME --layout L --element E...)');
  for (const volume of status.volumes) {
    const iops = current === undefined ? undefined : iopsBetween(previous, current, volume.name);
    lines.push(...renderVolume(volume, iops), '');
  }
  const unused = status.elements.filter((e) => e.volume === null);
  if (unused.length > 0) {
    const width = Math.max(...unused.map((e) => e.name.length));
    lines.push('unused elements:', ...unused.map((e) => elementLine(e, width)), '');
  }
  const p = status.pools;
  const pool = (name: string, x: { threads: number; queueDepth: number }): string =>
    `${name} ${x.threads} thread${x.threads === 1 ? '' : 's'} (queued ${x.queueDepth})`;
  lines.push(`pools: ${pool('top', p.top)}, ${pool('middle', p.middle)}, ${pool('bottom', p.bottom)}`);
  const q = status.queue;
  lines.push(`queue: depth ${q.depth}, in flight ${q.inFlight}, slots ${q.slots} x ${q.slotKiB} KiB; io backend: ${status.native.backend}` +
    (status.native.reason === undefined ? '' : ` (${status.native.reason})`));
  if (status.nbd !== undefined) lines.push(`nbd tls: ${status.nbd.tls}`);
  return lines.join('\n') + '\n';
}

export function renderVolumeList(volumes: readonly VolumeStatus[]): string {
  if (volumes.length === 0) return 'no volumes\n';
  const rows = volumes.map((v) => [v.name, v.layout, v.state, formatBytes(v.sizeBytes),
    v.rebuild === null ? '-' : `${v.rebuild.percent.toFixed(1)}%`, v.elements.map((e) => e.name).join(',')]);
  return table(['NAME', 'LAYOUT', 'STATE', 'SIZE', 'REBUILT', 'ELEMENTS'], rows);
}

export function renderElementList(elements: readonly ElementStatus[]): string {
  if (elements.length === 0) return 'no elements\n';
  const rows = elements.map((e) => [e.name, e.kind, e.state, formatBytes(e.sizeBytes),
    e.volume === null ? '-' : `${e.volume}[${e.role ?? '-'}]`, String(e.errors), e.uri]);
  return table(['NAME', 'KIND', 'STATE', 'SIZE', 'VOLUME', 'ERRORS', 'URI'], rows);
}

export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ');
  return [line(header), ...rows.map(line)].join('\n') + '\n';
}
