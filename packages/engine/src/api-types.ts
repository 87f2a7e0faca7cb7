// Public shapes of the embedding API: status (same as `onestack status --json`) and errors.
import type { ElementKind, Layout } from './config/types.js';
import type { ElementState } from './meta/types.js';

export type VolumeState = 'optimal' | 'degraded' | 'rebuilding' | 'failed';

export interface ElementStatus {
  readonly name: string;
  readonly kind: ElementKind;
  readonly uri: string;
  readonly state: ElementState;
  readonly sizeBytes: number;
  readonly volume: string | null;
  readonly role: number | null;
  readonly errors: number;
  /** Why a failed or stale element is out (I/O error, unreachable, replaced, ...). */
  readonly reason?: string;
  /** A remote leg that went away and is being probed (state `stale`, docs/durability.md); absent otherwise. */
  readonly retry?: ElementRetryStatus;
  /** Element I/O since the daemon started (every sub that ended well, fast-lane reads included); absent from older daemons. */
  readonly stats?: ElementIoStats;
  /** Measured service latency and throughput (EWMAs, docs/transport.md); absent from older daemons. */
  readonly latency?: ElementLatencyStatus;
  /** Remote elements with a local cache tier (config `cacheTier`, write-through): reads served from it since the daemon started. */
  readonly cacheTier?: ElementCacheTierStatus;
  /** Elements of an integrity volume: blocks since the daemon started whose checksum failed, rewritten from a good copy, with no good copy (docs/integrity.md). */
  readonly integrity?: ElementIntegrityStatus;
  /** A raid1 leg written behind (config `writeBehind`, docs/durability.md): its lag now; absent on other elements. */
  readonly writeBehind?: ElementWriteBehindStatus;
  /** rbd:// elements: how the image is reached (remote/rbd-gateway.ts); absent on other elements. */
  readonly rbd?: ElementRbdStatus;
}

/**
 * `path`: 'librbd' = librbd loaded by the native crate, in this process (remote/rbd-native.ts);
 * 'gateway' = a supervised qemu-nbd (pid while it serves), used where librbd cannot be loaded or
 * when the URI asks for it (`?path=gateway`).
 */
export interface ElementRbdStatus {
  readonly path: 'gateway' | 'librbd';
  readonly pool: string;
  readonly image: string;
  /** The gateway's pid while it serves; null on the librbd path. */
  readonly pid: number | null;
  readonly restarts: number;
  /** 'fenced': the ownership lock was lost, nothing more is written to the image. */
  readonly state: 'starting' | 'up' | 'down' | 'stopped' | 'fenced';
  readonly error?: string;
  /** On the gateway path without `?path=gateway`: why librbd was not used (addon not built, librbd.so.1 missing). */
  readonly fallback?: string;
  /** librbd path: this process's Ceph client address(es), which another host's takeover blocklists. */
  readonly clientAddrs?: readonly string[];
  /** librbd path: requests sent to librbd and not yet answered (abandoned ones, past their deadline, included). */
  readonly inFlight?: number;
  /** The ownership lock between hosts (remote/rbd-lock.ts): this host's id, the lease, why it was lost. */
  readonly lock?: { readonly host: string; readonly leaseMs: number; readonly lost?: string };
}

export interface ElementWriteBehindStatus {
  /** Acknowledged bytes not yet on this leg (at most maxLagBytes). */
  readonly lagBytes: number;
  readonly maxLagBytes: number;
  /** Writes sent to the leg and not yet answered. */
  readonly writesInFlight: number;
  /** Acknowledged writes not yet on the leg (in flight included). */
  readonly writesQueued: number;
  /** Writes that reached the leg since start. */
  readonly writesDone: number;
  /** Writes dropped because the leg went down (its regions stay dirty in the bitmap and are resynced). */
  readonly droppedWrites: number;
  readonly peakLagBytes: number;
}

/** Probing of a remote leg that went away: every 3 s for 2 minutes, then doubling up to once a minute. */
export interface ElementRetryStatus {
  /** Probes that found it still away in this outage. */
  readonly attempts: number;
  /** Pause between probes now. */
  readonly delayMs: number;
  /** When the next probe is due (epoch ms); null before the first one is scheduled. */
  readonly nextAttemptMs: number | null;
  /** When the outage began (epoch ms, as the leg watch saw it). */
  readonly sinceMs: number;
  /** Why the last probe failed (or why the leg was taken back no further). */
  readonly lastError: string | null;
}

export interface ElementIntegrityStatus {
  /** Blocks found bad while a good copy existed (each is repaired or waits for its rewrite). */
  readonly mismatches: number;
  readonly repaired: number;
  /** Blocks found bad with no good copy left (not also counted as mismatches). */
  readonly unrecoverable: number;
}

/** `hits` + `misses` = the element's data reads (maintenance reads bypass the tier); `enabled` false once a cache-file error turned it off. */
export interface ElementCacheTierStatus {
  readonly path: string;
  readonly sizeMiB: number;
  readonly blockKiB: number;
  readonly hits: number;
  readonly misses: number;
  readonly hitRatio: number;
  readonly enabled: boolean;
}

/** Successful READ and WRITE subs on one element and their bytes (maintenance I/O included; trims, zeroes and flushes not). */
export interface ElementIoStats {
  readonly readOps: number;
  readonly writeOps: number;
  readonly readBytes: number;
  readonly writeBytes: number;
}

/** Element EWMAs (docs/transport.md): latency µs per successful READ/WRITE (null = no sample yet), throughput MiB/s (~1 s time constant). */
export interface ElementLatencyStatus {
  readonly readUsEwma: number | null;
  readonly writeUsEwma: number | null;
  readonly readMiBPerSec: number;
  readonly writeMiBPerSec: number;
}

/**
 * Upper bounds (µs) of the request latency buckets of `stats.readLatencyUs` / `writeLatencyUs`:
 * 10 µs … 5 s. The histogram has one more bucket for what took longer than the last bound.
 */
export const LATENCY_BUCKET_BOUNDS_US: readonly number[] = Object.freeze([
  10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000,
]);

/**
 * Latency of the requests a volume completed successfully, since the daemon started. `buckets[i]`
 * counts requests that took at most LATENCY_BUCKET_BOUNDS_US[i] and more than the bound before it
 * (per bucket, not cumulative); the last entry counts those above the last bound, so
 * `buckets.length === LATENCY_BUCKET_BOUNDS_US.length + 1` and the buckets add up to `count`.
 * Average latency = sum / count.
 */
export interface LatencyStats {
  readonly sum: number;
  readonly count: number;
  readonly buckets: readonly number[];
}

/** What a volume's maintenance job is: copying onto a leg (rebuild, resync) or comparing legs (check, repair). */
export type MaintenanceKind = 'rebuild' | 'resync' | 'check' | 'repair';

export interface RebuildStatus {
  readonly kind: MaintenanceKind;
  /** The element being rebuilt or resynced; null for a scrub (it covers every leg). */
  readonly element: string | null;
  readonly percent: number;
  readonly mibPerSec: number;
  /** Seconds left at the current rate; null until there is a rate. */
  readonly etaSeconds: number | null;
  readonly doneBytes: number;
  readonly totalBytes: number;
}

/** A running reshape (durable/reshape.ts, docs/reshape.md): [0, positionBytes) holds the new geometry. */
export interface ReshapeStatus {
  readonly from: { readonly layout: Layout; readonly count: number };
  readonly to: { readonly layout: Layout; readonly count: number };
  readonly positionBytes: number;
  /** The size clients see while it runs (C0); sizeBytes is the size once it finishes (C1). */
  readonly totalBytes: number;
  readonly sizeBytes: number;
  readonly percent: number;
  readonly state: 'running' | 'paused' | 'finishing';
  readonly rateMiBps: number;
  /** Steps that first saved their window in the backup area (their new rows overlapped old rows still needed). */
  readonly backupSteps: number;
  readonly startedMs: number;
  /** Why it stopped, absent while it runs. */
  readonly error?: string;
  /** The copy rate limit in MiB/s (0 = unthrottled), kept across restarts. */
  readonly maxMiBPerSec?: number;
  /** Paused by an error that may pass (an element away): when it retries by itself; absent = only `--resume`. */
  readonly retryAtMs?: number;
  /** Resyncs and rebuilds (hot spares, returning legs) held until the finish, one line each. */
  readonly waiting?: readonly string[];
}

/** The last resync or rebuild of a volume (since the engine opened): what it copied and how it ended. */
export interface LastRebuild {
  readonly kind: 'rebuild' | 'resync';
  readonly element: string | null;
  readonly outcome: 'done' | 'failed' | 'aborted';
  readonly doneBytes: number;
  readonly totalBytes: number;
  readonly seconds: number;
  readonly mibPerSec: number;
  readonly finishedMs: number;
  readonly message?: string;
}

/** A mirror volume's write-intent bitmap (durable/bitmap.ts). */
export interface BitmapStatus {
  readonly regionBytes: number;
  readonly regions: number;
  /** Regions written recently (or missed by an absent leg): what a resync would copy now. */
  readonly dirtyRegions: number;
  readonly eventsCleared: number;
}

/** The result of a finished scrub (durable/scrub.ts). */
export interface ScrubStatus {
  readonly kind: 'check' | 'repair';
  readonly startedMs: number;
  readonly finishedMs: number;
  /** done: every unit was looked at; cancelled: stopped on request (or engine close); failed: see message. */
  readonly outcome: 'done' | 'cancelled' | 'failed';
  /** Volume bytes compared. */
  readonly checkedBytes: number;
  /** Volume bytes that could not be compared (fewer than two usable legs there). */
  readonly skippedBytes: number;
  readonly mismatchedUnits: number;
  /** Byte positions where the legs of a mismatched unit disagree. */
  readonly mismatchedBytes: number;
  readonly repairedUnits: number;
  /** Leg reads or writes that failed; such a leg is left out for the rest of the scrub. */
  readonly ioErrors: number;
  /**
   * Integrity volumes: per element whose copy failed its checksums, the 4 KiB blocks found bad,
   * rewritten from a copy that verifies, and left bad (no copy verified); present (maybe empty) on
   * integrity volumes, absent elsewhere and from older daemons.
   */
  readonly byElement?: readonly ScrubElementCount[];
  readonly message?: string;
}

/** A volume's scrub schedule (durable/scrub-schedule.ts). */
export interface ScrubScheduleStatus {
  readonly everyMs: number;
  readonly repair: boolean;
  /** When the last scrub that ran to the end (scheduled or by request) finished, kept across restarts; null before the first. */
  readonly lastFinishedMs: number | null;
  /** When the next scrub is due: `every` after the last finished scrub (or after the schedule first saw the volume). */
  readonly nextMs: number;
  /** Why a due scrub has not started (the volume is degraded, rebuilt, or another scrub runs); absent otherwise. */
  readonly waiting?: string;
}

/** One element's share of a scrub's checksum verdicts (ScrubStatus.byElement). */
export interface ScrubElementCount {
  readonly element: string;
  readonly badBlocks: number;
  readonly repairedBlocks: number;
  readonly unrecoverableBlocks: number;
}

/** One extent of a block status answer (NBD_CMD_BLOCK_STATUS): base:allocation or a dirty bitmap. */
export interface BlockExtent {
  readonly lengthBytes: number;
  /** base:allocation: 1 = hole, 2 = reads as zeroes (3 = both, 0 = data). Dirty bitmap: 1 = written since the checkpoint. */
  readonly flags: number;
}

/** A checkpoint: the volume's regions written since it started (exported as qemu:dirty-bitmap:NAME). */
export interface CheckpointStatus {
  readonly name: string;
  readonly createdMs: number;
  /** Tracking granularity: a write marks every region it touches. */
  readonly regionBytes: number;
  readonly dirtyRegions: number;
  /** dirtyRegions × regionBytes, capped at the volume size. */
  readonly dirtyBytes: number;
  /** Set when the checkpoint cannot be trusted (why): it is not offered over NBD; delete it. */
  readonly unusable?: string;
}

export interface VolumeStatus {
  readonly name: string;
  readonly layout: Layout;
  readonly sizeBytes: number;
  readonly chunkKiB: number;
  readonly order: string;
  readonly boot: boolean;
  readonly state: VolumeState;
  /** The maintenance job running on the volume (rebuild, resync, scrub check or repair), or null. */
  readonly rebuild: RebuildStatus | null;
  /** A running reshape (`onestack volume reshape`), or null; absent from older daemons. */
  readonly reshape?: ReshapeStatus | null;
  /** The last scrub's result (since the engine opened), or null. */
  readonly scrub: ScrubStatus | null;
  /** Scheduled scrubs (config `scrub`, docs/integrity.md): the volume's schedule, or null when it has none; absent from older daemons. */
  readonly scrubSchedule?: ScrubScheduleStatus | null;
  /** The last resync or rebuild (since the engine opened); absent for layouts without one. */
  readonly lastRebuild?: LastRebuild | null;
  /** raid1/raid10 only. */
  readonly bitmap?: BitmapStatus | null;
  readonly elements: readonly ElementStatus[];
  readonly stats: {
    readonly readOps: number; readonly writeOps: number; readonly readBytes: number; readonly writeBytes: number; readonly errors: number;
    /** Unaligned requests served by read-modify-write; user-space payload copies and their bytes (volume-io.ts). */
    readonly rmwOps?: number; readonly copies?: number; readonly bytesCopied?: number;
    /** Request latency of successful reads and writes, in µs (count = readOps resp. writeOps); absent from older daemons. */
    readonly readLatencyUs?: LatencyStats; readonly writeLatencyUs?: LatencyStats;
  };
  /** RAM read cache (config `cache.readMiB`): reads served from it and not; zeros when it is off. Absent from older daemons. */
  readonly cache?: { readonly hits: number; readonly misses: number; readonly hitRatio: number };
  /** Checkpoints (dirty bitmaps) of the volume, oldest first. Absent from older daemons. */
  readonly checkpoints?: readonly CheckpointStatus[];
  /** Per-block checksums on every element (docs/integrity.md); always present from this daemon on, absent from older ones. */
  readonly integrity?: boolean;
}

export interface PoolStatus {
  readonly threads: number;
  /** Requests waiting in this pool's queue(s) right now. */
  readonly queueDepth: number;
}

export interface EngineStatus {
  readonly volumes: readonly VolumeStatus[];
  readonly elements: readonly ElementStatus[];
  readonly pools: { readonly top: PoolStatus; readonly middle: PoolStatus; readonly bottom: PoolStatus; readonly remote: PoolStatus };
  readonly queue: { readonly depth: number; readonly inFlight: number; readonly slots: number; readonly slotKiB: number };
  readonly native: { readonly backend: 'native' | 'js'; readonly reason?: string };
  readonly dataDir: string;
  /** NBD TLS as configured (nbd.tls): required, optional or off. Never any key material. */
  readonly nbd?: {
    readonly tls: 'required' | 'optional' | 'off';
    /** Where NBD is served now: "HOST:PORT" or "unix:PATH" (empty when no export was started, e.g. embedded). */
    readonly listen?: readonly string[];
  };
  /** RDMA verbs probe (devices and port states) plus its one-line summary; absent from older daemons. */
  readonly rdma?: EngineRdmaStatus;
  /** How the bottom driver does local element I/O; absent from older daemons. */
  readonly io?: EngineIoStatus;
}

export interface EngineIoStatus {
  /** io_uring: READ/WRITE/FLUSH in batches through the native addon; sync: one syscall per sub. */
  readonly backend: 'io_uring' | 'sync';
  /** Elements whose I/O uses the ring: every local one, or O_DIRECT (`cache: none`) ones only; null when sync. */
  readonly scope: 'all' | 'direct' | null;
  /** Most subs one submitAndWait carries. */
  readonly batchMax: number;
  readonly reason: string;
  /** e.g. `io: io_uring (batch ≤32)` or `io: sync (ONESTACK_URING=off)`. */
  readonly summary: string;
  /**
   * User-space copies of payload bytes since start: NBD WRITE payloads not read in place, and
   * the volume layer's (API read/write, read cache, bounce buffers). requests = volume reads + writes.
   */
  readonly copies?: { readonly requests: number; readonly copies: number; readonly bytesCopied: number; readonly perRequest: number };
  /** Reads served inline from the page cache by the top driver (preadv2 RWF_NOWAIT), or null when off. */
  readonly fastLane?: { readonly hits: number; readonly misses: number } | null;
}

export interface EngineRdmaStatus {
  readonly library: 'missing' | 'loaded' | 'unknown';
  readonly devices: readonly { readonly name: string; readonly ports: readonly { readonly port: number; readonly state: string }[] }[];
  readonly reason?: string;
  /** e.g. `rdma: no RDMA device (libibverbs loaded, 0 devices)`. */
  readonly summary: string;
}


/** `unreachable`: a remote element did not answer, or refused us (wrong password): not the daemon's fault. */
export type EngineErrorCode = 'config' | 'not-found' | 'conflict' | 'invalid' | 'io' | 'closed' | 'unreachable';

/** Every error the engine raises on purpose. `where` names the field/file/element concerned. */
export class EngineError extends Error {
  readonly code: EngineErrorCode;
  readonly where?: string;
  readonly hint?: string;
  constructor(code: EngineErrorCode, message: string, where?: string, hint?: string) {
    super(message);
    this.name = 'EngineError';
    this.code = code;
    if (where !== undefined) this.where = where;
    if (hint !== undefined) this.hint = hint;
  }
}
