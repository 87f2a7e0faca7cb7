// Scheduled scrubs in the config: a top-level `scrub: { every, repair?, maxMiBPerSec? }` default for
// every redundant volume and `volumes[].scrub` to override it (or `false` / `every: off` to turn it
// off for one volume). Durations are written like 30m, 12h, 7d, 1d12h.
import type { Layout } from './types.js';
import { configError, show } from './errors.js';
import { join, readBool, readInt, readMap } from './fields.js';

/** The effective schedule of a volume (top-level default with the volume's overrides applied). */
export interface ScrubScheduleConfig {
  readonly everyMs: number;
  /** Rewrite the copies that disagree (or fail their checksums); false = check and report only. */
  readonly repair: boolean;
  /** Throughput cap of a scheduled scrub; absent = `rebuild.maxMiBPerSec`; 0 = unthrottled. */
  readonly maxMiBPerSec?: number;
}

/** `volumes[].scrub`: each field overrides the top-level default; everyMs null = no schedule for this volume. */
export interface VolumeScrubConfig {
  readonly everyMs?: number | null;
  readonly repair?: boolean;
  readonly maxMiBPerSec?: number;
}

export const SCRUB_EVERY_MIN_MS = 60_000;
export const SCRUB_EVERY_MAX_MS = 366 * 86_400_000;
/** Test-only: a lower bound below one minute (ms, at least 1000), so an e2e test need not wait minutes. */
export const SCRUB_MIN_EVERY_ENV = 'ONESTACK_SCRUB_MIN_EVERY_MS';
const SCRUB_KEYS = ['every', 'repair', 'maxMiBPerSec'];
const UNIT_MS: Readonly<Record<string, number>> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 7 * 86_400_000 };

/** The shortest `every` accepted: one minute, or $ONESTACK_SCRUB_MIN_EVERY_MS (≥ 1000) in tests. */
export function scrubEveryMinMs(): number {
  const env = process.env[SCRUB_MIN_EVERY_ENV];
  const n = env === undefined || env === '' ? NaN : Number(env);
  return Number.isInteger(n) && n >= 1000 && n <= SCRUB_EVERY_MIN_MS ? n : SCRUB_EVERY_MIN_MS;
}

/** Parses `7d`, `12h`, `30m`, `90s`, `1d12h` into ms; null for `off`; a config error otherwise. */
export function parseScrubEvery(raw: unknown, field: string): number | null {
  if (raw === false || raw === 'off') return null;
  const hint = 'a duration like 30m, 12h, 7d or 1d12h (at least 1m), or off';
  if (typeof raw !== 'string' || raw.length > 32 || !/^(\d{1,6}[smhdw])+$/.test(raw)) throw configError(field, `expected a duration, got ${show(raw)}`, hint);
  let ms = 0;
  for (const m of raw.matchAll(/(\d+)([smhdw])/g)) ms += Number(m[1]) * UNIT_MS[m[2]!]!;
  const min = scrubEveryMinMs();
  if (ms < min) throw configError(field, `${raw} is shorter than ${formatEvery(min)}`, hint);
  if (ms > SCRUB_EVERY_MAX_MS) throw configError(field, `${raw} is longer than 366d`, hint);
  return ms;
}

/** `7d`, `12h`, `1d12h`, `30m`, `90s`: the shortest form of a duration in ms. */
export function formatEvery(ms: number): string {
  let left = Math.max(0, Math.round(ms / 1000)) * 1000;
  const parts: string[] = [];
  for (const unit of ['d', 'h', 'm', 's']) {
    const n = Math.floor(left / UNIT_MS[unit]!);
    if (n > 0) parts.push(`${n}${unit}`);
    left -= n * UNIT_MS[unit]!;
  }
  return parts.length === 0 ? '0s' : parts.join('');
}

function readFields(map: Readonly<Record<string, unknown>>, field: string): VolumeScrubConfig {
  return {
    ...(map.every !== undefined ? { everyMs: parseScrubEvery(map.every, join(field, 'every')) } : {}),
    ...(map.repair !== undefined ? { repair: readBool(map.repair, join(field, 'repair')) } : {}),
    ...(map.maxMiBPerSec !== undefined ? { maxMiBPerSec: readInt(map.maxMiBPerSec, join(field, 'maxMiBPerSec'), 0, 1_000_000) } : {}),
  };
}

/** Top-level `scrub`: undefined when absent, false or `every: off` (no default schedule). */
export function normalizeScrubDefault(raw: unknown, field: string): ScrubScheduleConfig | undefined {
  if (raw === undefined || raw === false) return undefined;
  const fields = readFields(readMap(raw, field, SCRUB_KEYS), field);
  if (fields.everyMs === undefined) throw configError(join(field, 'every'), 'missing (how often each redundant volume is scrubbed, like 7d)');
  if (fields.everyMs === null) return undefined;
  return { everyMs: fields.everyMs, repair: fields.repair ?? false, ...(fields.maxMiBPerSec !== undefined ? { maxMiBPerSec: fields.maxMiBPerSec } : {}) };
}

const REDUNDANT: readonly Layout[] = ['raid1', 'raid10', 'raid5', 'raid6'];

/** `volumes[].scrub`: false, or a mapping of overrides; a schedule on a layout without redundancy is refused. */
export function normalizeVolumeScrub(raw: unknown, field: string, layout: Layout): VolumeScrubConfig {
  if (raw === false) return { everyMs: null };
  if (raw === true) throw configError(field, 'scrub: true says nothing on its own', 'write scrub: { every: 7d } (or set a top-level scrub default), or scrub: false');
  const fields = readFields(readMap(raw, field, SCRUB_KEYS), field);
  if (fields.everyMs !== null && !REDUNDANT.includes(layout)) {
    throw configError(field, `scrubs are for raid1, raid10, raid5 and raid6 volumes (this one is ${layout})`, 'remove scrub here, or write scrub: false');
  }
  return fields;
}

/** The schedule a volume runs by: its overrides over the default; null = none. */
export function effectiveScrubSchedule(layout: Layout, own: VolumeScrubConfig | undefined, top: ScrubScheduleConfig | undefined): ScrubScheduleConfig | null {
  if (!REDUNDANT.includes(layout) || own?.everyMs === null) return null;
  const everyMs = own?.everyMs ?? top?.everyMs;
  if (everyMs === undefined) return null;
  const maxMiBPerSec = own?.maxMiBPerSec ?? top?.maxMiBPerSec;
  return { everyMs, repair: own?.repair ?? top?.repair ?? false, ...(maxMiBPerSec !== undefined ? { maxMiBPerSec } : {}) };
}

/** A volume's scrub overrides with nothing to override (no `every` there, no top-level default) would silently do nothing: refused. */
export function checkVolumeScrubs(volumes: readonly { readonly scrub?: VolumeScrubConfig }[], top: ScrubScheduleConfig | undefined): void {
  volumes.forEach((v, i) => {
    if (v.scrub === undefined || v.scrub.everyMs !== undefined || top !== undefined) return;
    throw configError(`volumes[${i}].scrub.every`, 'missing (no top-level scrub default to take it from)', 'add every: 7d here, or a top-level scrub: { every: 7d }');
  });
}
