// Text rendering of engine status, laid out like /proc/mdstat: one block per volume with its
// layout, state, size, [n/m] [UU_] map, rebuild/scrub progress, the last scrub and elements;
// then spares and pools.
import type { CheckpointStatus, ElementStatus, EngineStatus, RebuildStatus, ScrubStatus, VolumeStatus } from '@onestack/engine';
import { scheduleLine } from './render-schedule.js';
import { latencySuffix } from './render-latency.js';
import { retryLine } from './render-retry.js';
import { reshapeLine } from './render-reshape.js';
import { rbdLine } from './render-rbd.js';

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

const BAR_WIDTH = 20;

/** `[=====>              ]`: `=` done, `>` the head, blanks to go. */
export function progressBar(percent: number): string {
  const p = Number.isFinite(percent) ? Math.min(100, Math.max(0, percent)) : 0;
  const filled = Math.floor((p / 100) * BAR_WIDTH);
  if (filled >= BAR_WIDTH) return `[${'='.repeat(BAR_WIDTH)}]`;
  return `[${'='.repeat(filled)}>${' '.repeat(BAR_WIDTH - filled - 1)}]`;
}

/** `0:37`, `12:05`, `1:02:03`; `--:--` while there is no rate yet. */
export function formatEta(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds) || seconds < 0) return '--:--';
  const total = Math.round(seconds);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const ss = String(total % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

/** `[=====>      ] 42.0%  123.4 MiB/s  ETA 0:37  rebuild of d1` (a scrub names the volume: `check of m`). */
export function progressLine(r: RebuildStatus, volume: string): string {
  const subject = r.element ?? volume;
  return `${progressBar(r.percent)} ${r.percent.toFixed(1)}%  ${r.mibPerSec.toFixed(1)} MiB/s  ETA ${formatEta(r.etaSeconds)}  ${r.kind} of ${subject}`;
}

/** One line on a finished scrub: outcome, bytes compared, mismatches, repairs. */
export function scrubSummary(s: ScrubStatus, volume: string): string {
  const seconds = Math.max(0, (s.finishedMs - s.startedMs) / 1000);
  const rate = seconds > 0 ? ` (${(s.checkedBytes / 1024 / 1024 / seconds).toFixed(1)} MiB/s)` : '';
  const parts = [`${s.kind} of ${volume}: ${s.outcome === 'done' ? 'done in' : `${s.outcome} after`} ${seconds.toFixed(1)} s${s.message === undefined ? '' : ` (${s.message})`}`,
    `${formatBytes(s.checkedBytes)} compared${rate}`];
  if (s.skippedBytes > 0) parts.push(`${formatBytes(s.skippedBytes)} skipped (fewer than two usable copies)`);
  if (s.mismatchedUnits === 0) parts.push('no mismatch');
  else {
    parts.push(`${s.mismatchedUnits} unit${s.mismatchedUnits === 1 ? '' : 's'} mismatched (${s.mismatchedBytes} byte${s.mismatchedBytes === 1 ? '' : 's'} differ)`);
    if (s.kind === 'repair') parts.push(`${s.repairedUnits} repaired`);
  }
  if (s.ioErrors > 0) parts.push(`${s.ioErrors} I/O error${s.ioErrors === 1 ? '' : 's'}`);
  // Integrity volumes name the element whose copy failed its checksums (absent from older daemons).
  for (const b of s.byElement ?? []) {
    const fixed = s.kind === 'repair' ? `, ${b.repairedBlocks} repaired` : '';
    const lost = b.unrecoverableBlocks > 0 ? `, ${b.unrecoverableBlocks} unrecoverable (no copy verifies)` : '';
    parts.push(`element ${b.element}: ${b.badBlocks} bad block${b.badBlocks === 1 ? '' : 's'}${fixed}${lost}`);
  }
  if (s.byElement !== undefined && s.byElement.length === 0) parts.push('checksums: 0 bad blocks');
  return parts.join(', ');
}

function elementLine(e: ElementStatus, nameWidth: number): string {
  const role = e.role === null ? '' : `[${e.role}]`;
  const errors = e.errors > 0 ? `  errors ${e.errors}` : '';
  return `      ${(e.name + role).padEnd(nameWidth + 4)} ${e.kind.padEnd(6)} ${e.state.padEnd(11)} ${formatBytes(e.sizeBytes).padStart(11)}  ${e.uri}${errors}${latencySuffix(e)}`;
}

export function renderVolume(volume: VolumeStatus, iops: Iops | undefined): string[] {
  const members = volume.elements.map((e) => `${e.name}[${e.role ?? '-'}]`).join(' ');
  const flags = [volume.boot ? 'boot' : '', `order ${volume.order}`].filter((f) => f !== '').join(', ');
  const lines = [
    `${volume.name} : ${volume.state} ${volume.layout} ${members}`,
    `      ${formatBytes(volume.sizeBytes)} (${volume.sizeBytes} bytes) chunk ${volume.chunkKiB}K ${roleMap(volume)}  ${flags}`,
  ];
  if (volume.rebuild !== null) lines.push(`      ${progressLine(volume.rebuild, volume.name)}`);
  if (volume.reshape !== undefined && volume.reshape !== null) lines.push(`      ${reshapeLine(volume.reshape)}`);
  // Older daemons have no scrub field: treat it as absent.
  if (volume.scrub !== undefined && volume.scrub !== null) {
    lines.push(`      last scrub ${new Date(volume.scrub.finishedMs).toISOString()}: ${scrubSummary(volume.scrub, volume.name)}`);
  }
  if (volume.scrubSchedule !== undefined && volume.scrubSchedule !== null) lines.push(`      ${scheduleLine(volume.scrubSchedule, Date.now())}`);
  const s = volume.stats;
  const rate = iops === undefined ? '' : `iops: read ${iops.read.toFixed(0)}/s write ${iops.write.toFixed(0)}/s; `;
  lines.push(`      ${rate}ops: read ${s.readOps} write ${s.writeOps}; bytes: read ${formatBytes(s.readBytes)} write ${formatBytes(s.writeBytes)}; errors ${s.errors}`);
  if (volume.integrity === true) lines.push(`      ${integrityLine(volume)}`);
  // Older daemons have no checkpoints field.
  if (volume.checkpoints !== undefined && volume.checkpoints.length > 0) lines.push(`      checkpoints: ${volume.checkpoints.map(checkpointBrief).join(', ')}`);
  const width = Math.max(0, ...volume.elements.map((e) => e.name.length));
  for (const e of volume.elements) {
    lines.push(elementLine(e, width));
    const retry = retryLine(e, Date.now());
    if (retry !== null) lines.push(retry);
    if (e.writeBehind !== undefined) lines.push(writeBehindLine(e.writeBehind));
    if (e.rbd !== undefined) lines.push(rbdLine(e.rbd));
  }
  return lines;
}

/** `write-behind: lag 1.20 MiB of 64.00 MiB, 32 in flight, 310 queued, 0 dropped` under a leg written behind. */
export function writeBehindLine(wb: NonNullable<ElementStatus['writeBehind']>): string {
  return `        write-behind: lag ${formatBytes(wb.lagBytes)} of ${formatBytes(wb.maxLagBytes)}, ${wb.writesInFlight} in flight, ${wb.writesQueued} queued, ${wb.droppedWrites} dropped`;
}

/**
 * `integrity: crc32c per 4 KiB; d0 2 repaired, 0 unrecoverable; d1 0` — each element's blocks
 * since the daemon started (docs/integrity.md); bad copies not (yet) rewritten are named too.
 */
export function integrityLine(volume: VolumeStatus): string {
  const members = [...volume.elements].sort((x, y) => (x.role ?? Infinity) - (y.role ?? Infinity));
  const parts = members.map((e) => {
    const c = e.integrity ?? { mismatches: 0, repaired: 0, unrecoverable: 0 };
    if (c.mismatches === 0 && c.repaired === 0 && c.unrecoverable === 0) return `${e.name} 0`;
    const pending = c.mismatches - c.repaired;
    return `${e.name} ${c.repaired} repaired, ${c.unrecoverable} unrecoverable${pending > 0 ? `, ${pending} not rewritten` : ''}`;
  });
  return ['integrity: crc32c per 4 KiB', ...parts].join('; ');
}

/** `nightly (12.00 MiB dirty)`, or `old (UNUSABLE)`. */
function checkpointBrief(c: CheckpointStatus): string {
  return `${c.name} (${c.unusable !== undefined ? 'UNUSABLE' : `${formatBytes(c.dirtyBytes)} dirty`})`;
}

export function renderCheckpointList(list: readonly CheckpointStatus[]): string {
  if (list.length === 0) return 'no checkpoints\n';
  const rows = list.map((c) => [c.name, new Date(c.createdMs).toISOString(), formatBytes(c.regionBytes), String(c.dirtyRegions), formatBytes(c.dirtyBytes),
    c.unusable === undefined ? 'ok' : `unusable: ${c.unusable}`]);
  return table(['NAME', 'CREATED', 'REGION', 'DIRTY REGIONS', 'DIRTY', 'STATE'], rows);
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
  if (status.rdma !== undefined) lines.push(status.rdma.summary); // older daemons: no rdma field
  return lines.join('\n') + '\n';
}

export function renderVolumeList(volumes: readonly VolumeStatus[]): string {
  if (volumes.length === 0) return 'no volumes\n';
  // An integrity volume's layout is marked `+integrity` (per-block checksums, docs/integrity.md).
  const rows = volumes.map((v) => [v.name, v.integrity === true ? `${v.layout}+integrity` : v.layout, v.state, formatBytes(v.sizeBytes),
    v.rebuild === null ? '-' : `${v.rebuild.percent.toFixed(1)}% ${v.rebuild.kind}`, v.elements.map((e) => e.name).join(',')]);
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
