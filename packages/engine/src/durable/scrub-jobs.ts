// The engine's scrubs: at most one per volume, each cancellable, with its live progress (status
// `rebuild`, kind check|repair) and the last result per volume (status `scrub`).
import { EngineError, type RebuildStatus, type ScrubStatus } from '../api-types.js';
import type { RawIo } from '../datapath/raw-io.js';
import type { WriteGate } from '../datapath/write-gate.js';
import { runScrub, scrubCheckerFor, scrubProgress, type ScrubOptions, type ScrubTarget } from './scrub.js';

export interface ScrubStarted {
  readonly volume: string;
  readonly kind: 'check' | 'repair';
  /** Identifies this run: the volume's `scrub.startedMs` equals it once the run has finished. */
  readonly startedMs: number;
  readonly progress: RebuildStatus;
  /** Settles when the scrub ends (never rejects: a failure is outcome 'failed'). */
  readonly done: Promise<ScrubStatus>;
}

export interface ScrubJobsDeps {
  readonly raw: () => RawIo;
  /** Called on start, at most every 250 ms of progress, and at the end. */
  readonly onChange: () => void;
  readonly log: (level: 'info' | 'warn' | 'error', msg: string) => void;
  /** What else keeps the volume busy (a resync or rebuild job), or null: a scrub is refused meanwhile. */
  readonly busy?: (volume: string) => string | null;
}

interface Running {
  readonly kind: 'check' | 'repair';
  readonly startedMs: number;
  readonly live: { progress: RebuildStatus };
  readonly controller: AbortController;
  readonly done: Promise<ScrubStatus>;
}

/** Bound on the rate a caller may ask for (a typo like 1e12 is refused rather than meaning "unthrottled"). */
const MAX_MIB_PER_SEC_LIMIT = 1_000_000;

export class ScrubJobs {
  private readonly running = new Map<string, Running>();
  private readonly results = new Map<string, ScrubStatus>();

  constructor(private readonly deps: ScrubJobsDeps) {}

  /** Starts a scrub of `target`; throws EngineError conflict (one running, or nothing to compare) or invalid. */
  start(target: ScrubTarget, gate: WriteGate, opts: ScrubOptions = {}): ScrubStarted {
    const name = target.name;
    if (this.running.has(name)) {
      throw new EngineError('conflict', `volume ${name} is already being scrubbed`, `volume ${name}`, 'wait for it, or cancel it first');
    }
    const max = opts.maxMiBPerSec ?? 0;
    if (!(Number.isFinite(max) && max >= 0 && max <= MAX_MIB_PER_SEC_LIMIT)) {
      throw new EngineError('invalid', `maxMiBPerSec ${max} must be a number from 0 (unthrottled) to ${MAX_MIB_PER_SEC_LIMIT}`, 'maxMiBPerSec');
    }
    const busy = this.deps.busy?.(name) ?? null;
    if (busy !== null) throw new EngineError('conflict', `volume ${name} is busy: ${busy}`, `volume ${name}`, 'scrub when it is done');
    const rebuilding = target.elements.findIndex((_, role) => target.state(role) === 'rebuilding');
    if (rebuilding >= 0) {
      throw new EngineError('conflict', `volume ${name} is rebuilding element ${target.elementNames[rebuilding] ?? rebuilding}`, `volume ${name}`, 'scrub after the rebuild');
    }
    const checker = scrubCheckerFor(target);
    if (!checker.comparable((role) => target.state(role) === 'active')) {
      throw new EngineError('conflict', `volume ${name} has no two active copies to compare`, `volume ${name}`, 'replace the failed element first');
    }
    const kind = opts.repair === true ? 'repair' : 'check';
    const controller = new AbortController();
    const startedMs = Date.now();
    const live = { progress: scrubProgress(kind, 0, checker.totalBytes, startedMs) };
    const done = runScrub({
      ...opts, target, checker, raw: this.deps.raw(), gate, signal: controller.signal, startedMs,
      onProgress: (p) => {
        live.progress = p;
        this.deps.onChange();
      },
      log: (msg) => this.deps.log('warn', msg),
    }).catch((err: unknown): ScrubStatus => ({
      kind, startedMs, finishedMs: Date.now(), outcome: 'failed', checkedBytes: 0, skippedBytes: 0, mismatchedUnits: 0,
      mismatchedBytes: 0, repairedUnits: 0, ioErrors: 0, message: (err as Error).message,
    })).then((result) => this.finish(name, result));
    const job: Running = { kind, startedMs, controller, live, done };
    this.running.set(name, job);
    this.deps.log('info', `scrub (${kind}) of volume ${name} started: ${checker.totalBytes} bytes${max > 0 ? `, at most ${max} MiB/s` : ''}`);
    this.deps.onChange();
    return { volume: name, kind, startedMs, progress: live.progress, done };
  }

  /** Live progress of the volume's scrub, or null. */
  progress(volume: string): RebuildStatus | null {
    return this.running.get(volume)?.live.progress ?? null;
  }

  isRunning(volume: string): boolean {
    return this.running.has(volume);
  }

  /** The last finished scrub of the volume, or null. */
  result(volume: string): ScrubStatus | null {
    return this.results.get(volume) ?? null;
  }

  /** Cancels the volume's scrub and waits for it to stop (at most one unit); false when none ran. */
  async cancel(volume: string, reason = 'cancelled by request'): Promise<boolean> {
    const job = this.running.get(volume);
    if (job === undefined) return false;
    job.controller.abort(reason);
    await job.done;
    return true;
  }

  async cancelAll(reason: string): Promise<void> {
    await Promise.all([...this.running.keys()].map((name) => this.cancel(name, reason)));
  }

  /** Drops the volume's last result (volume deleted). */
  forget(volume: string): void {
    this.results.delete(volume);
  }

  private finish(name: string, result: ScrubStatus): ScrubStatus {
    this.running.delete(name);
    this.results.set(name, result);
    const what = `scrub (${result.kind}) of volume ${name}: ${result.outcome}${result.message !== undefined ? ` (${result.message})` : ''}; ` +
      `${result.checkedBytes} bytes compared, ${result.skippedBytes} skipped, ${result.mismatchedUnits} unit(s) mismatched ` +
      `(${result.mismatchedBytes} bytes), ${result.repairedUnits} repaired, ${result.ioErrors} I/O error(s)` +
      (result.byElement ?? []).map((b) => `; element ${b.element}: ${b.badBlocks} block(s) failed their checksums, ${b.repairedBlocks} repaired, ${b.unrecoverableBlocks} unrecoverable`).join('');
    this.deps.log(result.outcome === 'failed' || result.mismatchedUnits > result.repairedUnits ? 'warn' : 'info', what);
    this.deps.onChange();
    return result;
  }
}
