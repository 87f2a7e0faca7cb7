// The scrub schedule inside the engine: its record in DATA_DIR/scrub-schedule.json (written
// atomically: temp file, fsync, rename) and what it asks of the engine (volumes, their state,
// the running scrubs, startScrub).
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { EngineConfig } from '../config/types.js';
import { effectiveScrubSchedule } from '../config/scrub-schedule.js';
import { DEFAULT_REBUILD } from '../config/validate.js';
import type { ScrubStarted } from './scrub-jobs.js';
import type { ScrubJobs } from './scrub-jobs.js';
import type { ScrubOptions } from './scrub.js';
import type { RebuildStatus } from '../api-types.js';
import type { ElementState } from '../meta/types.js';
import { volumeState, type Registry, type VolumeEntry } from '../state/registry.js';
import { ScrubSchedule, type ScheduleRecord, type ScheduleStore, type ScheduleVolume } from './scrub-schedule.js';

export const SCHEDULE_FILE = 'scrub-schedule.json';
const SCHEDULE_VERSION = 1;
const MAX_SCHEDULE_BYTES = 1024 * 1024;
const MAX_RECORDS = 1024;

/** The schedule's record in the data dir; a missing file is an empty record. */
export function fileScheduleStore(dataDir: string): ScheduleStore {
  const file = path.join(dataDir, SCHEDULE_FILE);
  return {
    load: () => {
      let text: string;
      try {
        if (fs.statSync(file).size > MAX_SCHEDULE_BYTES) throw new Error(`${file} is larger than ${MAX_SCHEDULE_BYTES} bytes`);
        text = fs.readFileSync(file, 'utf8');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new Map();
        throw err;
      }
      return parseRecords(JSON.parse(text) as unknown);
    },
    save: (records) => {
      const volumes = Object.fromEntries([...records].slice(0, MAX_RECORDS));
      const tmp = `${file}.tmp-${process.pid}`;
      const fd = fs.openSync(tmp, 'w', 0o600);
      try {
        fs.writeSync(fd, `${JSON.stringify({ version: SCHEDULE_VERSION, volumes }, null, 2)}\n`);
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
      fs.renameSync(tmp, file);
    },
  };
}

function parseRecords(raw: unknown): Map<string, ScheduleRecord> {
  const doc = raw as { version?: unknown; volumes?: unknown } | null;
  if (doc === null || typeof doc !== 'object' || doc.version !== SCHEDULE_VERSION || doc.volumes === null || typeof doc.volumes !== 'object') {
    throw new Error(`not a version ${SCHEDULE_VERSION} scrub schedule record`);
  }
  const out = new Map<string, ScheduleRecord>();
  const time = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v >= 0;
  for (const [name, value] of Object.entries(doc.volumes as Record<string, unknown>).slice(0, MAX_RECORDS)) {
    const r = value as { arrayUuid?: unknown; sinceMs?: unknown; lastFinishedMs?: unknown } | null;
    if (r === null || typeof r !== 'object' || typeof r.arrayUuid !== 'string' || !time(r.sinceMs) || !(r.lastFinishedMs === null || time(r.lastFinishedMs))) continue;
    out.set(name, { arrayUuid: r.arrayUuid, sinceMs: r.sinceMs, lastFinishedMs: r.lastFinishedMs });
  }
  return out;
}

export interface ScheduleHost {
  readonly base: EngineConfig;
  readonly registry: Registry;
  readonly elementState: (index: number) => ElementState;
  /** The resync or rebuild running on the volume, or null. */
  readonly maintenance: (volume: string) => RebuildStatus | null;
  readonly scrubs: ScrubJobs;
  readonly startScrub: (volume: string, opts: ScrubOptions) => Promise<ScrubStarted>;
  readonly log: (level: 'info' | 'warn' | 'error', msg: string) => void;
}

/** A registry entry as the schedule sees it. */
export function scheduleVolumeOf(base: EngineConfig, entry: VolumeEntry): ScheduleVolume {
  const { config, arrayUuid } = entry.assembled;
  return { name: config.name, arrayUuid, schedule: effectiveScrubSchedule(config.layout, config.scrub, base.scrub) };
}

/** The engine's schedule, started (its timer is unref'd: it never keeps the process alive). */
export function startScrubSchedule(host: ScheduleHost): ScrubSchedule {
  const { registry } = host;
  return new ScrubSchedule({
    now: () => Date.now(),
    setTimer: (fn, ms) => setTimeout(fn, ms).unref(),
    clearTimer: (handle) => clearTimeout(handle as NodeJS.Timeout),
    volumes: () => [...registry.volumes.values()].map((e) => scheduleVolumeOf(host.base, e)),
    blocked: (volume) => {
      const entry = registry.volumes.get(volume);
      if (entry === undefined) return 'the volume is gone';
      const job = host.maintenance(volume);
      if (job !== null) return `a ${job.kind} is running`;
      const states = entry.assembled.config.elements.map((n) => host.elementState(registry.element(n).index));
      const state = volumeState(entry.assembled.config.layout, states);
      return state === 'optimal' ? null : `the volume is ${state}`;
    },
    scrubbing: () => [...registry.volumes.keys()].find((n) => host.scrubs.isRunning(n)) ?? null,
    lastResult: (volume) => host.scrubs.result(volume),
    start: (volume, opts) => host.startScrub(volume, opts),
    defaultMiBPerSec: () => (host.base.rebuild ?? DEFAULT_REBUILD).maxMiBPerSec,
    store: fileScheduleStore(host.base.dataDir),
    log: host.log,
  }).start();
}
