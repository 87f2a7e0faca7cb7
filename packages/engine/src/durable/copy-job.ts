// The one loop behind resync, rebuild and repair: copy units of a volume from a good leg to
// another through the raw channel, each under a write fence of its volume range (so a client
// write cannot be overwritten by older bytes), a few at a time, throttled to a MiB/s limit so
// foreground I/O keeps priority, with progress (%, MiB/s, ETA) and cancellation.
import type { RawIo } from '../datapath/raw-io.js';
import type { WriteGate } from '../datapath/write-gate.js';

export interface CopyUnit {
  readonly source: number;
  readonly target: number;
  /** Same offsets on both elements (mirror legs hold a chunk at the same element offset). */
  readonly elementOffsetBytes: number;
  readonly lengthBytes: number;
  /** The volume range these bytes hold, fenced while they are copied. */
  readonly volumeOffsetBytes: number;
  readonly volumeLengthBytes: number;
}

export interface CopyProgress {
  readonly doneBytes: number;
  readonly totalBytes: number;
  readonly percent: number;
  readonly mibPerSec: number;
  /** Seconds left at the current rate; null until there is a rate. */
  readonly etaSeconds: number | null;
}

export interface CopyJobOptions {
  readonly raw: RawIo;
  readonly gate: WriteGate;
  readonly units: Iterable<CopyUnit>;
  readonly totalBytes: number;
  /** Units copied at once (default 4). */
  readonly concurrency?: number;
  /** Upper bound on copy throughput; 0 or absent = unthrottled. */
  readonly maxMiBPerSec?: number;
  readonly signal?: AbortSignal;
  readonly onProgress?: (p: CopyProgress) => void;
  /** Progress callbacks at most this often (default 250 ms), plus one at the end. */
  readonly progressEveryMs?: number;
}

const MiB = 1024 * 1024;
const CONCURRENCY_MAX = 64;
const THROTTLE_SLEEP_MAX_MS = 1000;

export class CopyAborted extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = 'CopyAborted';
  }
}

function progressOf(doneBytes: number, totalBytes: number, startedMs: number): CopyProgress {
  const seconds = Math.max((Date.now() - startedMs) / 1000, 1e-3);
  const mibPerSec = doneBytes / MiB / seconds;
  const percent = totalBytes === 0 ? 100 : Math.min(100, (100 * doneBytes) / totalBytes);
  const etaSeconds = doneBytes === 0 || mibPerSec === 0 ? null : (totalBytes - doneBytes) / MiB / mibPerSec;
  return { doneBytes, totalBytes, percent, mibPerSec, etaSeconds };
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Runs the copy; resolves with the final progress, rejects on the first failed unit or on abort. */
export async function runCopyJob(opts: CopyJobOptions): Promise<CopyProgress> {
  const concurrency = Math.min(Math.max(1, opts.concurrency ?? 4), CONCURRENCY_MAX);
  const startedMs = Date.now();
  const everyMs = opts.progressEveryMs ?? 250;
  const iterator = opts.units[Symbol.iterator]();
  let doneBytes = 0;
  /** Bytes of the units started so far: the throttle paces starts, so no burst beats the limit. */
  let claimedBytes = 0;
  let lastReportMs = 0;
  let failure: unknown = null;
  const next = (): CopyUnit | undefined => {
    if (failure !== null) return undefined;
    const r = iterator.next();
    return r.done === true ? undefined : r.value;
  };
  const worker = async (): Promise<void> => {
    for (let unit = next(); unit !== undefined; unit = next()) {
      claimedBytes += unit.lengthBytes;
      await throttle(opts.maxMiBPerSec, claimedBytes, startedMs, opts.signal);
      if (opts.signal?.aborted === true) throw new CopyAborted(String(opts.signal.reason ?? 'aborted'));
      const lift = await opts.gate.fence(unit.volumeOffsetBytes, unit.volumeLengthBytes);
      try {
        await opts.raw.copy(unit.source, unit.target, unit.elementOffsetBytes, unit.lengthBytes);
      } finally {
        lift();
      }
      doneBytes += unit.lengthBytes;
      if (opts.onProgress !== undefined && Date.now() - lastReportMs >= everyMs) {
        lastReportMs = Date.now();
        opts.onProgress(progressOf(doneBytes, opts.totalBytes, startedMs));
      }
    }
  };
  const results = await Promise.allSettled(Array.from({ length: concurrency }, () => worker().catch((err: unknown) => {
    failure ??= err;
    throw err;
  })));
  if (failure !== null) throw failure;
  if (results.some((r) => r.status === 'rejected')) throw new Error('copy job failed');
  const final = progressOf(doneBytes, opts.totalBytes, startedMs);
  opts.onProgress?.(final);
  return final;
}

/**
 * Sleeps until `claimedBytes` (this unit included) fit the rate limit since the start, so the
 * bytes done never run ahead of it, not even at the start. Sleeps in bounded steps: an abort is
 * seen within THROTTLE_SLEEP_MAX_MS.
 */
async function throttle(maxMiBPerSec: number | undefined, claimedBytes: number, startedMs: number, signal: AbortSignal | undefined): Promise<void> {
  if (maxMiBPerSec === undefined || maxMiBPerSec <= 0) return;
  const dueMs = startedMs + (claimedBytes / MiB / maxMiBPerSec) * 1000;
  for (let waitMs = dueMs - Date.now(); waitMs > 0 && signal?.aborted !== true; waitMs = dueMs - Date.now()) {
    await sleep(Math.min(waitMs, THROTTLE_SLEEP_MAX_MS));
  }
}
