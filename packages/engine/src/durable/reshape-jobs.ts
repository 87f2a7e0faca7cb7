// The reshape jobs of an engine (docs/reshape.md): one per reshaping volume. Starts them
// (reshape-start.ts), resumes them at start-up and on request (`volume reshape NAME --resume`),
// retries a job stopped by an error that may pass (an element away) with a back-off, keeps each
// job's rate limit across restarts (reshape-settings.ts), and refuses other operations meanwhile.
import { EngineError, type ReshapeStatus } from '../api-types.js';
import type { VolumeEntry } from '../state/registry.js';
import { finishLinear, finishReshape } from './reshape-finish.js';
import { ReshapeJob, type ReshapeHost } from './reshape.js';
import { loadReshapeSettings, saveReshapeSettings } from './reshape-settings.js';
import { startReshape, type ReshapeSpec } from './reshape-start.js';

/** Back-off of the automatic retries: the first after this long (test seam ONESTACK_RESHAPE_RETRY_MS), doubling. */
const RETRY_FIRST_MS = Math.max(100, Math.min(600_000, Number(process.env['ONESTACK_RESHAPE_RETRY_MS'] ?? 0) || 5000));
const RETRY_MAX_MS = 5 * 60_000;

interface Retry {
  attempts: number;
  /** The position when it last failed: a retry that moved on starts the back-off afresh. */
  positionBytes: number;
  atMs: number;
  timer: NodeJS.Timeout | null;
}

function refuse(name: string, message: string, hint?: string): EngineError {
  return new EngineError('conflict', `volume ${name}: ${message}`, `volume ${name}`, hint);
}

export class Reshapes {
  private readonly jobs = new Map<string, ReshapeJob>();
  private readonly retries = new Map<string, Retry>();
  private closed = false;

  constructor(private readonly host: ReshapeHost, private readonly defaultMiBPerSec: () => number) {}

  /** Engine.reshapeVolume, inside exclusive(): starts the job (or appends linear members at once), or resumes a paused one. */
  async start(name: string, spec: ReshapeSpec): Promise<ReshapeStatus | null> {
    const entry = this.host.registry.volumes.get(name);
    if (entry === undefined) throw new EngineError('not-found', `no volume named ${name}`, `volume ${name}`, 'list volumes with `onestack volume list`');
    if (spec.maxMiBPerSec !== undefined && !(Number.isFinite(spec.maxMiBPerSec) && spec.maxMiBPerSec >= 0)) {
      throw new EngineError('invalid', `volume ${name}: maxMiBPerSec must be a number ≥ 0 (0 = unthrottled)`, `volume ${name}`);
    }
    if (spec.resume === true) return this.resumeOnRequest(entry, spec);
    const how = await startReshape(this.host, entry, spec, this.jobs.has(name));
    this.host.changed();
    if (how === 'done') return null;
    const rate = spec.maxMiBPerSec ?? this.defaultMiBPerSec();
    this.save(entry, rate);
    return this.run(entry, rate).status();
  }

  /** `--resume`: a paused job starts again at once (a new rate, if given, is kept). */
  private resumeOnRequest(entry: VolumeEntry, spec: ReshapeSpec): ReshapeStatus | null {
    const name = entry.assembled.config.name;
    if (spec.add.length > 0 || spec.layout !== undefined) throw new EngineError('invalid', `volume ${name}: --resume takes no elements nor layout`, `volume ${name}`);
    const r = entry.assembled.reshape;
    if (r === undefined) throw refuse(name, 'no reshape to resume', 'start one with onestack volume reshape NAME --add ELEMENT');
    const job = this.jobs.get(name);
    if (job !== undefined && job.state !== 'paused') throw refuse(name, `its reshape is ${job.state}, not paused`, 'follow it with onestack status');
    const rate = spec.maxMiBPerSec ?? job?.maxMiBPerSec ?? this.settingsRate(entry);
    if (spec.maxMiBPerSec !== undefined) this.save(entry, rate);
    this.cancelRetry(name);
    this.retries.delete(name);
    this.host.log('info', `volume ${name}: reshape resumed on request at ${r.positionBytes} of ${r.fromSizeBytes} bytes`);
    return this.run(entry, rate).status();
  }

  /** At start-up: a volume assembled in the middle of a reshape goes on from its position, at the rate it was started with. */
  resume(entry: VolumeEntry): void {
    const r = entry.assembled.reshape;
    if (r === undefined || this.jobs.has(entry.assembled.config.name)) return;
    this.host.log('warn', `volume ${entry.assembled.config.name}: resuming its reshape at ${r.positionBytes} of ${r.fromSizeBytes} bytes`);
    this.run(entry, this.settingsRate(entry));
  }

  private settingsRate(entry: VolumeEntry): number {
    const r = entry.assembled.reshape;
    const saved = r === undefined ? undefined : loadReshapeSettings(this.host.base.dataDir, entry.assembled.config.name, r.startedMs, (line) => this.host.log('warn', line));
    return saved?.maxMiBPerSec ?? this.defaultMiBPerSec();
  }

  private save(entry: VolumeEntry, maxMiBPerSec: number): void {
    const r = entry.assembled.reshape;
    if (r === undefined) return;
    try {
      saveReshapeSettings(this.host.base.dataDir, entry.assembled.config.name, { startedMs: r.startedMs, maxMiBPerSec });
    } catch (err) {
      // The job runs all the same; a restart would use the config's rate.
      this.host.log('warn', `volume ${entry.assembled.config.name}: cannot save the reshape's rate limit: ${(err as Error).message}`);
    }
  }

  private run(entry: VolumeEntry, maxMiBPerSec: number): ReshapeJob {
    const name = entry.assembled.config.name;
    // Linear + elements moves no data: a resumed one only writes its final superblocks.
    const finish = entry.assembled.reshape?.fromLayout === 'linear' ? (): Promise<void> => finishLinear(this.host, entry) : (j: ReshapeJob) => finishReshape(this.host, j);
    const job = new ReshapeJob(this.host, entry, { maxMiBPerSec }, finish);
    this.jobs.set(name, job);
    job.start();
    void job.done.then(() => {
      if (this.jobs.get(name) !== job) return;
      if (job.error === undefined && entry.assembled.reshape === undefined) {
        this.jobs.delete(name);
        this.retries.delete(name);
        saveReshapeSettings(this.host.base.dataDir, name, null);
      } else if (job.error !== undefined) {
        this.scheduleRetry(entry, job);
      }
    });
    return job;
  }

  /** After an error: retry with a back-off unless it cannot pass (then only `--resume`). */
  private scheduleRetry(entry: VolumeEntry, job: ReshapeJob): void {
    const name = job.name;
    const position = entry.assembled.reshape?.positionBytes ?? 0;
    if (job.halted || this.closed || this.host.closing()) {
      this.host.log('error', `volume ${name}: the reshape stays paused until onestack volume reshape ${name} --resume (or the next start)`);
      return;
    }
    const prev = this.retries.get(name);
    const attempts = prev !== undefined && prev.positionBytes === position ? prev.attempts + 1 : 1;
    const delayMs = Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** Math.min(attempts - 1, 20));
    const retry: Retry = { attempts, positionBytes: position, atMs: Date.now() + delayMs, timer: null };
    retry.timer = setTimeout(() => {
      retry.timer = null;
      void this.host.exclusive(async () => {
        if (this.closed || this.jobs.get(name) !== job || entry.assembled.reshape === undefined) return;
        this.host.log('info', `volume ${name}: reshape retry ${attempts} at ${position} bytes`);
        this.run(entry, job.maxMiBPerSec);
      }).catch(() => undefined);
    }, delayMs);
    retry.timer.unref();
    this.retries.set(name, retry);
    this.host.log('warn', `volume ${name}: the reshape retries in ${(delayMs / 1000).toFixed(1)} s (attempt ${attempts}; or now: onestack volume reshape ${name} --resume)`);
    this.host.changed();
  }

  private cancelRetry(name: string): void {
    const r = this.retries.get(name);
    if (r?.timer) clearTimeout(r.timer);
    if (r !== undefined) r.timer = null;
  }

  status(name: string): ReshapeStatus | null {
    const s = this.jobs.get(name)?.status() ?? null;
    if (s === null) return null;
    const retry = this.retries.get(name);
    const waiting = this.waiting(name);
    return { ...s, ...(s.state === 'paused' && retry?.timer ? { retryAtMs: retry.atMs } : {}), ...(waiting.length > 0 ? { waiting } : {}) };
  }

  /** What the keeper holds until the finish (keeper.ts kick, leg-watch.ts): failed legs and pending rebuilds. */
  private waiting(name: string): string[] {
    const entry = this.host.registry.volumes.get(name);
    if (entry === undefined) return [];
    const pending = this.host.keeper.waiting(name).map((e) => `${e}: its rebuild waits for the reshape to finish`);
    const failed = entry.assembled.config.elements.filter((e) => this.host.keeper.liveState(e) === 'failed')
      .map((e) => `${e} failed: a hot spare or its return waits for the reshape to finish`);
    return [...failed, ...pending];
  }

  /** Refuses `what` (grow, scrub, member changes, delete) while the volume is reshaped. */
  refuseBusy(name: string, what: string): void {
    const entry = this.host.registry.volumes.get(name);
    if (this.jobs.has(name) || entry?.assembled.reshape !== undefined) {
      throw refuse(name, `a reshape runs: ${what} is refused until it finishes`, 'follow it with onestack status');
    }
  }

  /** Stops every job between steps (the superblocks keep their positions) and every pending retry. */
  async close(): Promise<void> {
    this.closed = true;
    for (const name of this.retries.keys()) this.cancelRetry(name);
    await Promise.all([...this.jobs.values()].map((j) => j.stop()));
  }
}
