// Scheduled scrubs (config `scrub: { every }`, docs/integrity.md "Scheduled scrubs"): one timer
// that starts a volume's scrub once its last finished scrub is older than `every`. Scrubs run one
// at a time across volumes; a volume that is degraded, rebuilt or scrubbed waits and is retried.
// Each volume's last finished time (and when the schedule first saw it) is kept in the data dir,
// so a restart neither forgets a schedule nor runs every scrub at once.
import type { ScrubScheduleStatus, ScrubStatus } from '../api-types.js';
import type { ScrubScheduleConfig } from '../config/scrub-schedule.js';
import type { ScrubOptions } from './scrub.js';

/** What the schedule remembers of a volume across restarts. */
export interface ScheduleRecord {
  /** The array the record belongs to: a volume deleted and created again under its name starts afresh. */
  readonly arrayUuid: string;
  /** When the schedule first saw the volume: the first scrub is due `every` after it. */
  readonly sinceMs: number;
  readonly lastFinishedMs: number | null;
}

export interface ScheduleStore {
  load(): ReadonlyMap<string, ScheduleRecord>;
  save(records: ReadonlyMap<string, ScheduleRecord>): void;
}

export interface ScheduleVolume {
  readonly name: string;
  readonly arrayUuid: string;
  /** The effective schedule (config/scrub-schedule.ts effectiveScrubSchedule), or null. */
  readonly schedule: ScrubScheduleConfig | null;
}

export interface ScrubScheduleDeps {
  readonly now: () => number;
  readonly setTimer: (fn: () => void, ms: number) => unknown;
  readonly clearTimer: (handle: unknown) => void;
  readonly volumes: () => readonly ScheduleVolume[];
  /** Why the volume cannot be scrubbed now (degraded, rebuilding, resyncing), or null. */
  readonly blocked: (volume: string) => string | null;
  /** A volume being scrubbed now (by request or by the schedule), or null: scrubs run one at a time. */
  readonly scrubbing: () => string | null;
  /** The volume's last finished scrub since the engine opened (ScrubJobs.result). */
  readonly lastResult: (volume: string) => ScrubStatus | null;
  readonly start: (volume: string, opts: ScrubOptions) => Promise<{ readonly done: Promise<ScrubStatus> }>;
  /** Throughput cap when the schedule names none (`rebuild.maxMiBPerSec`). */
  readonly defaultMiBPerSec: () => number;
  readonly store: ScheduleStore;
  readonly log: (level: 'info' | 'warn' | 'error', msg: string) => void;
}

/** Longest sleep between ticks: a volume created at run time is picked up within it. */
export const SCHEDULE_TICK_MAX_MS = 3_600_000;
const TICK_MIN_MS = 500;
/** A scrub that could not start or did not finish is tried again after this (or `every`, if shorter). */
export const SCHEDULE_RETRY_MS = 600_000;

export class ScrubSchedule {
  private records = new Map<string, ScheduleRecord>();
  /** In memory: no retry before this (a refused, failed or cancelled scheduled scrub). */
  private readonly notBefore = new Map<string, number>();
  private readonly waiting = new Map<string, string>();
  private timer: unknown = null;
  private running: string | null = null;
  private stopped = false;

  constructor(private readonly deps: ScrubScheduleDeps) {
    try {
      this.records = new Map(deps.store.load());
    } catch (err) {
      deps.log('warn', `scrub schedule: cannot read its record (${(err as Error).message}); every scheduled volume starts its count afresh`);
    }
  }

  /** Arms the timer (the first tick looks at every volume). */
  start(): this {
    this.arm(0);
    return this;
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) this.deps.clearTimer(this.timer);
    this.timer = null;
  }

  /** The volume's schedule for status, or null when it has none. */
  statusOf(volume: ScheduleVolume): ScrubScheduleStatus | null {
    const s = volume.schedule;
    if (s === null) return null;
    const record = this.recordOf(volume);
    const waiting = this.waiting.get(volume.name);
    return {
      everyMs: s.everyMs, repair: s.repair, lastFinishedMs: record?.lastFinishedMs ?? null,
      nextMs: this.dueMs(s, record), ...(waiting !== undefined ? { waiting } : {}),
    };
  }

  /**
   * Takes in scrubs that ran to the end (by request too) and volumes new to the schedule, and drops
   * records of volumes that are gone; saves when something changed. Cheap: called on scrub changes.
   */
  sync(): void {
    const now = this.deps.now();
    const volumes = this.deps.volumes();
    let changed = false;
    const present = new Set(volumes.map((v) => v.name));
    for (const name of [...this.records.keys()]) {
      if (present.has(name)) continue;
      this.records.delete(name);
      changed = true;
    }
    for (const v of volumes) {
      const old = this.recordOf(v);
      const result = this.deps.lastResult(v.name);
      const finished = result !== null && result.outcome === 'done' ? result.finishedMs : null;
      const base = old ?? (v.schedule !== null || finished !== null ? { arrayUuid: v.arrayUuid, sinceMs: now, lastFinishedMs: null } : undefined);
      if (base === undefined) continue;
      const next = finished !== null && finished > (base.lastFinishedMs ?? -Infinity) ? { ...base, lastFinishedMs: finished } : base;
      if (next === old) continue;
      this.records.set(v.name, next);
      changed = true;
    }
    if (changed) this.save();
  }

  /** One pass: starts at most one due scrub, marks the others waiting, and re-arms the timer. */
  tick(): void {
    this.timer = null;
    if (this.stopped) return;
    this.sync();
    const now = this.deps.now();
    const volumes = this.deps.volumes().filter((v) => v.schedule !== null);
    const due = volumes.filter((v) => this.dueMs(v.schedule!, this.recordOf(v)) <= now);
    for (const v of volumes) if (!due.includes(v)) this.waiting.delete(v.name);
    due.sort((a, b) => this.dueMs(a.schedule!, this.recordOf(a)) - this.dueMs(b.schedule!, this.recordOf(b)));
    let busy = this.running ?? this.deps.scrubbing();
    for (const v of due) {
      if ((this.notBefore.get(v.name) ?? 0) > now) continue;
      const why = busy !== null ? `waiting for the scrub of ${busy}` : this.deps.blocked(v.name);
      if (why !== null) {
        this.waiting.set(v.name, why);
        continue;
      }
      this.launch(v, v.schedule!);
      busy = v.name;
    }
    this.arm(this.nextWakeMs(volumes, now));
  }

  private launch(v: ScheduleVolume, s: ScrubScheduleConfig): void {
    const name = v.name;
    this.running = name;
    this.waiting.delete(name);
    const maxMiBPerSec = s.maxMiBPerSec ?? this.deps.defaultMiBPerSec();
    this.deps.log('info', `volume ${name}: scheduled scrub (${s.repair ? 'repair' : 'check'}, every ${Math.round(s.everyMs / 1000)} s) starts`);
    this.deps.start(name, { repair: s.repair, maxMiBPerSec })
      .then((started) => started.done)
      .then((result) => {
        if (result.outcome !== 'done') this.retryLater(name, s, `the last scheduled scrub ended ${result.outcome}${result.message !== undefined ? ` (${result.message})` : ''}`);
      }, (err: Error) => this.retryLater(name, s, `could not start: ${err.message}`))
      .finally(() => {
        this.running = null;
        // A scrub that finished while closing is still recorded; nothing new starts.
        this.sync();
        if (!this.stopped) this.arm(0);
      })
      .catch((err: Error) => this.deps.log('error', `scrub schedule: ${err.message}`));
  }

  private retryLater(name: string, s: ScrubScheduleConfig, why: string): void {
    const retryMs = Math.min(s.everyMs, SCHEDULE_RETRY_MS);
    this.notBefore.set(name, this.deps.now() + retryMs);
    this.waiting.set(name, `${why}; retried in ${Math.round(retryMs / 1000)} s`);
    if (!this.stopped) this.deps.log('warn', `volume ${name}: scheduled scrub: ${why}; retried in ${Math.round(retryMs / 1000)} s`);
  }

  /** Sleep until the earliest due (or retry) time, within [TICK_MIN_MS, SCHEDULE_TICK_MAX_MS]. */
  private nextWakeMs(volumes: readonly ScheduleVolume[], now: number): number {
    let wake = now + SCHEDULE_TICK_MAX_MS;
    for (const v of volumes) {
      const at = Math.max(this.dueMs(v.schedule!, this.recordOf(v)), this.notBefore.get(v.name) ?? 0);
      // A due volume held back (busy, degraded) is looked at again after a retry interval.
      wake = Math.min(wake, at > now ? at : now + Math.min(v.schedule!.everyMs, SCHEDULE_RETRY_MS));
    }
    return Math.max(TICK_MIN_MS, wake - now);
  }

  private arm(ms: number): void {
    if (this.stopped) return;
    if (this.timer !== null) this.deps.clearTimer(this.timer);
    this.timer = this.deps.setTimer(() => this.tick(), ms);
  }

  private recordOf(v: ScheduleVolume): ScheduleRecord | undefined {
    const record = this.records.get(v.name);
    return record !== undefined && record.arrayUuid === v.arrayUuid ? record : undefined;
  }

  private dueMs(s: ScrubScheduleConfig, record: ScheduleRecord | undefined): number {
    // Not yet seen by a tick (created a moment ago): due `every` from now.
    return (record?.lastFinishedMs ?? record?.sinceMs ?? this.deps.now()) + s.everyMs;
  }

  private save(): void {
    try {
      this.deps.store.save(this.records);
    } catch (err) {
      this.deps.log('warn', `scrub schedule: cannot save its record: ${(err as Error).message}`);
    }
  }
}
