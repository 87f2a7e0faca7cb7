// Scheduled scrubs: the config fields (durations, overrides, errors naming the field) and the
// scheduler with a fake clock and timer — due times, one scrub at a time, waiting while a volume
// is degraded, retry after a failure, and a restart that neither forgets nor re-runs at once.
// Imports the BUILT dist.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EngineError, normalizeConfig, type ScrubStatus } from '../dist/index.js';
import { effectiveScrubSchedule, formatEvery, parseScrubEvery } from '../dist/config/scrub-schedule.js';
import { ScrubSchedule, type ScheduleRecord, type ScheduleStore, type ScheduleVolume, type ScrubScheduleDeps } from '../dist/durable/scrub-schedule.js';
import { fileScheduleStore } from '../dist/durable/scrub-schedule-host.js';

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;

function configError(raw: unknown): EngineError {
  try {
    normalizeConfig(raw, '/tmp');
  } catch (err) {
    expect(err).toBeInstanceOf(EngineError);
    expect((err as EngineError).code).toBe('config');
    return err as EngineError;
  }
  throw new Error('expected a config error');
}

const ELEMENTS = [{ name: 'a', uri: 'file:/tmp/a.img' }, { name: 'b', uri: 'file:/tmp/b.img' }, { name: 'c', uri: 'file:/tmp/c.img' }];
const volume = (extra: Record<string, unknown> = {}, layout = 'raid1'): Record<string, unknown> => ({ name: 'v', layout, elements: layout === 'linear' ? ['c'] : ['a', 'b'], ...extra });

describe('scrub schedule config', () => {
  it('parses durations and formats them back', () => {
    expect(parseScrubEvery('7d', 'f')).toBe(7 * DAY);
    expect(parseScrubEvery('12h', 'f')).toBe(12 * HOUR);
    expect(parseScrubEvery('30m', 'f')).toBe(30 * MIN);
    expect(parseScrubEvery('1d12h', 'f')).toBe(36 * HOUR);
    expect(parseScrubEvery('90s', 'f')).toBe(90_000);
    expect(parseScrubEvery('2w', 'f')).toBe(14 * DAY);
    expect(parseScrubEvery('off', 'f')).toBeNull();
    expect(formatEvery(7 * DAY)).toBe('7d');
    expect(formatEvery(36 * HOUR + 90_000)).toBe('1d12h1m30s');
  });

  it.each([
    ['7', /expected a duration/], [7, /expected a duration/], ['7 days', /expected a duration/], ['', /expected a duration/],
    ['59s', /shorter than 1m/], ['0m', /shorter than 1m/], ['400d', /longer than 366d/], ['-1h', /expected a duration/],
  ])('every: %j is refused (%s), naming the field', (every, message) => {
    const err = configError({ elements: ELEMENTS, volumes: [volume()], scrub: { every } });
    expect(err.message).toMatch(message);
    expect(err.where).toContain('scrub.every');
  });

  it('a top-level default applies to redundant volumes only; a volume overrides it or turns it off', () => {
    const config = normalizeConfig({ elements: ELEMENTS, scrub: { every: '7d', repair: true, maxMiBPerSec: 50 },
      volumes: [volume({ name: 'm' }), { name: 'l', layout: 'linear', elements: ['c'] }] }, '/tmp');
    expect(config.scrub).toEqual({ everyMs: 7 * DAY, repair: true, maxMiBPerSec: 50 });
    const [m, l] = config.volumes;
    expect(effectiveScrubSchedule(m!.layout, m!.scrub, config.scrub)).toEqual({ everyMs: 7 * DAY, repair: true, maxMiBPerSec: 50 });
    expect(effectiveScrubSchedule(l!.layout, l!.scrub, config.scrub)).toBeNull();
    expect(effectiveScrubSchedule('raid5', { everyMs: DAY }, config.scrub)).toEqual({ everyMs: DAY, repair: true, maxMiBPerSec: 50 });
    expect(effectiveScrubSchedule('raid6', { repair: false }, config.scrub)).toEqual({ everyMs: 7 * DAY, repair: false, maxMiBPerSec: 50 });
    for (const off of [false, { every: 'off' }]) {
      const v = normalizeConfig({ elements: ELEMENTS, scrub: { every: '7d' }, volumes: [volume({ scrub: off })] }, '/tmp').volumes[0]!;
      expect(effectiveScrubSchedule(v.layout, v.scrub, { everyMs: 7 * DAY, repair: false })).toBeNull();
    }
    // Absent: no schedule (repair defaults to a check).
    const none = normalizeConfig({ elements: ELEMENTS, volumes: [volume()] }, '/tmp');
    expect(none.scrub).toBeUndefined();
    expect(effectiveScrubSchedule('raid1', undefined, undefined)).toBeNull();
    expect(effectiveScrubSchedule('raid1', { everyMs: HOUR }, undefined)).toEqual({ everyMs: HOUR, repair: false });
  });

  it('refuses schedules that cannot work, naming the field', () => {
    expect(configError({ elements: ELEMENTS, volumes: [volume({ scrub: { every: '1d' } }, 'linear')] }).where).toContain('volumes[0].scrub');
    expect(configError({ elements: ELEMENTS, volumes: [volume({ scrub: { repair: true } })] }).where).toContain('volumes[0].scrub.every');
    expect(configError({ elements: ELEMENTS, volumes: [volume({ scrub: true })] }).where).toContain('volumes[0].scrub');
    expect(configError({ elements: ELEMENTS, volumes: [volume()], scrub: { repair: true } }).where).toContain('scrub.every');
    expect(configError({ elements: ELEMENTS, volumes: [volume()], scrub: { every: '1d', repiar: true } }).message).toMatch(/unknown key "repiar".*repair/);
    expect(configError({ elements: ELEMENTS, volumes: [volume()], scrub: { every: '1d', repair: 'yes' } }).where).toContain('scrub.repair');
    expect(configError({ elements: ELEMENTS, volumes: [volume()], scrub: { every: '1d', maxMiBPerSec: -1 } }).where).toContain('scrub.maxMiBPerSec');
  });
});

/** A fake clock and timer: advance() runs due timers in order. */
class FakeTime {
  nowMs = 1_000_000;
  private timers: { at: number; fn: () => void; id: number }[] = [];
  private ids = 0;
  setTimer = (fn: () => void, ms: number): unknown => {
    const id = ++this.ids;
    this.timers.push({ at: this.nowMs + ms, fn, id });
    return id;
  };
  clearTimer = (id: unknown): void => { this.timers = this.timers.filter((t) => t.id !== id); };
  get pending(): number { return this.timers.length; }
  async advance(ms: number): Promise<void> {
    const end = this.nowMs + ms;
    for (let i = 0; i < 10_000; i++) {
      await flush();
      this.timers.sort((a, b) => a.at - b.at);
      const t = this.timers[0];
      if (t === undefined || t.at > end) break;
      this.timers.shift();
      this.nowMs = Math.max(this.nowMs, t.at);
      t.fn();
    }
    this.nowMs = end;
    await flush();
  }
}

async function flush(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve();
}

class MemStore implements ScheduleStore {
  records = new Map<string, ScheduleRecord>();
  saves = 0;
  load(): ReadonlyMap<string, ScheduleRecord> { return new Map(this.records); }
  save(records: ReadonlyMap<string, ScheduleRecord>): void { this.records = new Map(records); this.saves++; }
}

interface Harness {
  readonly time: FakeTime;
  readonly store: MemStore;
  readonly started: { volume: string; repair: boolean | undefined; maxMiBPerSec: number | undefined; finish: (outcome?: ScrubStatus['outcome']) => void }[];
  readonly blocked: Map<string, string>;
  readonly results: Map<string, ScrubStatus>;
  vols: ScheduleVolume[];
  schedule: ScrubSchedule;
  reopen(): void;
}

function harness(vols: ScheduleVolume[], store = new MemStore(), time = new FakeTime()): Harness {
  const h: Harness = { time, store, started: [], blocked: new Map(), results: new Map(), vols, schedule: undefined as unknown as ScrubSchedule, reopen: () => undefined };
  let running: string | null = null;
  const deps = (): ScrubScheduleDeps => ({
    now: () => time.nowMs, setTimer: time.setTimer, clearTimer: time.clearTimer,
    volumes: () => h.vols, blocked: (v) => h.blocked.get(v) ?? null, scrubbing: () => running,
    lastResult: (v) => h.results.get(v) ?? null, defaultMiBPerSec: () => 200, store, log: () => undefined,
    start: (volume, opts) => {
      if (running !== null) return Promise.reject(new Error(`${running} is being scrubbed`));
      running = volume;
      const startedMs = time.nowMs;
      const done = new Promise<ScrubStatus>((resolve) => {
        h.started.push({ volume, repair: opts.repair, maxMiBPerSec: opts.maxMiBPerSec, finish: (outcome = 'done') => {
          const result: ScrubStatus = { kind: opts.repair === true ? 'repair' : 'check', startedMs, finishedMs: time.nowMs, outcome, checkedBytes: 1, skippedBytes: 0,
            mismatchedUnits: 0, mismatchedBytes: 0, repairedUnits: 0, ioErrors: 0 };
          h.results.set(volume, result);
          running = null;
          resolve(result);
        } });
      });
      return Promise.resolve({ done });
    },
  });
  h.schedule = new ScrubSchedule(deps()).start();
  h.reopen = () => {
    h.schedule.stop();
    h.results.clear();
    h.schedule = new ScrubSchedule(deps()).start();
  };
  return h;
}

const vol = (name: string, everyMs: number | null, repair = true): ScheduleVolume => ({ name, arrayUuid: `uuid-${name}`, schedule: everyMs === null ? null : { everyMs, repair } });

describe('scrub scheduler (fake clock)', () => {
  it('starts a scrub `every` after it first saw the volume, then `every` after each finished one', async () => {
    const h = harness([vol('m', DAY), vol('off', null)]);
    await h.time.advance(1000);
    const seen = h.time.nowMs - 1000;
    expect(h.started).toHaveLength(0);
    expect(h.schedule.statusOf(h.vols[0]!)).toEqual({ everyMs: DAY, repair: true, lastFinishedMs: null, nextMs: seen + DAY });
    expect(h.schedule.statusOf(h.vols[1]!)).toBeNull();
    await h.time.advance(DAY - 2000);
    expect(h.started).toHaveLength(0);
    await h.time.advance(2000);
    expect(h.started.map((s) => [s.volume, s.repair, s.maxMiBPerSec])).toEqual([['m', true, 200]]);
    await h.time.advance(5 * MIN);
    h.started[0]!.finish();
    const finishedMs = h.time.nowMs;
    await h.time.advance(1000);
    expect(h.schedule.statusOf(h.vols[0]!)).toMatchObject({ lastFinishedMs: finishedMs, nextMs: finishedMs + DAY });
    expect(h.store.records.get('m')?.lastFinishedMs).toBe(finishedMs);
    await h.time.advance(DAY - 2000);
    expect(h.started).toHaveLength(1);
    await h.time.advance(2000);
    expect(h.started).toHaveLength(2);
    expect(h.time.pending).toBe(1); // one timer, always
  });

  it('runs scrubs of volumes due at once one at a time, oldest due first', async () => {
    const h = harness([vol('a', 2 * HOUR), vol('b', HOUR), vol('c', 2 * HOUR)]);
    await h.time.advance(2 * HOUR + 1000);
    expect(h.started.map((s) => s.volume)).toEqual(['b']);
    expect(h.schedule.statusOf(h.vols[0]!)?.waiting).toBe('waiting for the scrub of b');
    await h.time.advance(10 * MIN);
    expect(h.started).toHaveLength(1);
    h.started[0]!.finish();
    await h.time.advance(1000);
    expect(h.started.map((s) => s.volume)).toEqual(['b', 'a']);
    h.started[1]!.finish();
    await h.time.advance(1000);
    expect(h.started.map((s) => s.volume)).toEqual(['b', 'a', 'c']);
    expect(h.schedule.statusOf(h.vols[0]!)?.waiting).toBeUndefined();
  });

  it('waits while the volume is degraded or rebuilt, and starts once it is not', async () => {
    const h = harness([vol('m', HOUR)]);
    h.blocked.set('m', 'the volume is degraded');
    await h.time.advance(HOUR + 1000);
    expect(h.started).toHaveLength(0);
    expect(h.schedule.statusOf(h.vols[0]!)).toMatchObject({ waiting: 'the volume is degraded' });
    await h.time.advance(3 * HOUR);
    expect(h.started).toHaveLength(0);
    h.blocked.delete('m');
    await h.time.advance(HOUR);
    expect(h.started).toHaveLength(1);
  });

  it('a scrub by request counts as the last one; a failed or cancelled scheduled scrub is retried later', async () => {
    const h = harness([vol('m', DAY)]);
    await h.time.advance(1000);
    await h.time.advance(12 * HOUR);
    // Finished by request, half-way to the due time: the next is due a day after it.
    const manualMs = h.time.nowMs;
    h.results.set('m', { kind: 'check', startedMs: manualMs - 1000, finishedMs: manualMs, outcome: 'done', checkedBytes: 1, skippedBytes: 0, mismatchedUnits: 0, mismatchedBytes: 0, repairedUnits: 0, ioErrors: 0 });
    h.schedule.sync();
    expect(h.schedule.statusOf(h.vols[0]!)?.nextMs).toBe(manualMs + DAY);
    await h.time.advance(DAY - 1000);
    expect(h.started).toHaveLength(0);
    await h.time.advance(2000);
    expect(h.started).toHaveLength(1);
    h.started[0]!.finish('cancelled');
    await h.time.advance(1000);
    expect(h.schedule.statusOf(h.vols[0]!)?.waiting).toMatch(/ended cancelled; retried in 600 s/);
    await h.time.advance(9 * MIN);
    expect(h.started).toHaveLength(1);
    await h.time.advance(MIN);
    expect(h.started).toHaveLength(2);
  });

  it('a restart keeps the record: nothing runs at once, the due time stays', async () => {
    const h = harness([vol('m', DAY)]);
    await h.time.advance(DAY + 1000);
    h.started[0]!.finish();
    await h.time.advance(1000);
    const finishedMs = h.store.records.get('m')!.lastFinishedMs!;
    await h.time.advance(6 * HOUR);
    h.reopen();
    await h.time.advance(1000);
    expect(h.started).toHaveLength(1);
    expect(h.schedule.statusOf(h.vols[0]!)?.nextMs).toBe(finishedMs + DAY);
    await h.time.advance(DAY);
    expect(h.started).toHaveLength(2);
    // A volume created again under the same name (new array) starts afresh; a deleted one is dropped.
    h.vols = [{ ...vol('m', DAY), arrayUuid: 'other' }];
    h.schedule.sync();
    expect(h.store.records.get('m')).toMatchObject({ arrayUuid: 'other', lastFinishedMs: null });
    h.vols = [];
    h.schedule.sync();
    expect(h.store.records.size).toBe(0);
    h.schedule.stop();
    expect(h.time.pending).toBe(0);
  });
});

describe('scrub schedule record file', () => {
  let dir = '';
  beforeAll(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'onestack-scrub-schedule-')); });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('saves and loads the records; a damaged file is an error the scheduler logs, never a crash', () => {
    const store = fileScheduleStore(dir);
    expect(store.load().size).toBe(0);
    const records = new Map([['m', { arrayUuid: 'u1', sinceMs: 5, lastFinishedMs: 10 }], ['n', { arrayUuid: 'u2', sinceMs: 7, lastFinishedMs: null }]]);
    store.save(records);
    expect(new Map(store.load())).toEqual(records);
    fs.writeFileSync(path.join(dir, 'scrub-schedule.json'), '{ not json');
    expect(() => store.load()).toThrow();
    const logs: string[] = [];
    const time = new FakeTime();
    const s = new ScrubSchedule({ now: () => time.nowMs, setTimer: time.setTimer, clearTimer: time.clearTimer, volumes: () => [], blocked: () => null, scrubbing: () => null,
      lastResult: () => null, start: () => Promise.reject(new Error('no')), defaultMiBPerSec: () => 0, store, log: (_l, m) => logs.push(m) });
    expect(logs.join('\n')).toMatch(/cannot read its record/);
    s.stop();
  });
});
