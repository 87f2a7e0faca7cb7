// The API's JSON shapes the GUI reads (a subset of `onestack status --json`, docs/SPEC.md).
// Kept here rather than imported from @onestack/engine: the browser bundle must not pull Node code.

export type VolumeState = 'optimal' | 'degraded' | 'rebuilding' | 'failed';
export type ElementState = 'active' | 'failed' | 'spare' | 'rebuilding' | 'stale';

export interface ElementStatus {
  name: string;
  kind: 'local' | 'nbd' | 'iscsi';
  uri: string;
  state: ElementState;
  sizeBytes: number;
  volume: string | null;
  role: number | null;
  errors: number;
  reason?: string;
  /** Measured service latency and throughput (docs/transport.md); absent from older daemons. */
  latency?: ElementLatency;
  /** A raid1/raid10 leg written behind (config `writeBehind`): its lag now; absent on other elements. */
  writeBehind?: ElementWriteBehind;
  /** A remote leg that went away and is being probed (state `stale`, docs/durability.md). */
  retry?: ElementRetry;
  /** rbd:// elements: how the image is reached and the ownership lock between hosts (docs/rbd.md); absent on other elements. */
  rbd?: ElementRbd;
}

/**
 * `path`: 'librbd' = librbd in the daemon; 'gateway' = a qemu-nbd the daemon supervises (`pid` while
 * it serves), with `fallback` saying why librbd was not used. 'fenced': the ownership lock was lost,
 * nothing more is written to the image.
 */
export interface ElementRbd {
  path: 'gateway' | 'librbd';
  pool: string;
  image: string;
  pid: number | null;
  restarts: number;
  state: 'starting' | 'up' | 'down' | 'stopped' | 'fenced';
  error?: string;
  fallback?: string;
  /** librbd path: this process's Ceph client address(es), which another host's takeover blocklists. */
  clientAddrs?: string[];
  /** librbd path: requests sent to librbd and not yet answered. */
  inFlight?: number;
  lock?: { host: string; leaseMs: number; lost?: string };
}

/** EWMAs: µs per successful READ / WRITE (null = no sample yet), MiB/s with a ~1 s time constant. */
export interface ElementLatency { readUsEwma: number | null; writeUsEwma: number | null; readMiBPerSec: number; writeMiBPerSec: number }

export interface ElementWriteBehind {
  /** Acknowledged bytes not yet on the leg (at most maxLagBytes). */
  lagBytes: number; maxLagBytes: number;
  writesInFlight: number; writesQueued: number; writesDone: number;
  /** Writes dropped because the leg went down (resynced from the bitmap). */
  droppedWrites: number; peakLagBytes: number;
}

export interface ElementRetry {
  /** Probes that found it still away in this outage. */
  attempts: number;
  delayMs: number;
  /** Epoch ms of the next probe; null before the first one is scheduled. */
  nextAttemptMs: number | null;
  /** Epoch ms the outage began. */
  sinceMs: number;
  lastError: string | null;
}

/** An online reshape in progress (status().volumes[].reshape, issue 11 contract); absent otherwise. */
export interface ReshapeStatus {
  from: { layout: string; count: number };
  to: { layout: string; count: number };
  /** Volume bytes already in the new geometry. */
  positionBytes: number;
  /** The old capacity (what clients see while it runs). */
  totalBytes: number;
  /** The new capacity (seen when it finishes). */
  sizeBytes: number;
  percent: number;
  state: 'running' | 'paused' | 'finishing';
  rateMiBps: number;
  backupSteps: number;
  startedMs: number;
  error?: string;
}

export interface RebuildStatus {
  kind: 'rebuild' | 'resync' | 'check' | 'repair';
  element: string | null;
  percent: number;
  mibPerSec: number;
  etaSeconds: number | null;
  doneBytes: number;
  totalBytes: number;
}

export interface LastRebuild {
  kind: 'rebuild' | 'resync';
  element: string | null;
  outcome: 'done' | 'failed' | 'aborted';
  seconds: number;
  mibPerSec: number;
  finishedMs: number;
  message?: string;
}

/** Latency histogram (added by the metrics work; absent from older daemons). */
export interface LatencyStats { sum: number; count: number; buckets?: unknown }

export interface VolumeStats {
  readOps: number; writeOps: number; readBytes: number; writeBytes: number; errors: number;
  readLatencyUs?: LatencyStats; writeLatencyUs?: LatencyStats;
}

export interface VolumeStatus {
  name: string;
  layout: string;
  sizeBytes: number;
  chunkKiB: number;
  boot: boolean;
  state: VolumeState;
  rebuild: RebuildStatus | null;
  lastRebuild?: LastRebuild | null;
  elements: ElementStatus[];
  stats: VolumeStats;
  /** Dirty bitmaps for incremental backup (NBD qemu:dirty-bitmap:NAME); absent from older daemons. */
  checkpoints?: CheckpointStatus[];
  /** Online reshape (grow / level migration) in progress; absent otherwise and from older daemons. */
  reshape?: ReshapeStatus | null;
}

export interface CheckpointStatus { name: string; createdMs: number; regionBytes: number; dirtyBytes: number; unusable?: string }

export interface PoolStatus { threads: number; queueDepth: number }
export type PoolName = 'top' | 'middle' | 'bottom' | 'remote';

export interface EngineStatus {
  volumes: VolumeStatus[];
  elements: ElementStatus[];
  pools: Partial<Record<PoolName, PoolStatus>>;
  queue?: { depth: number; inFlight: number };
  native?: { backend: string };
  dataDir: string;
}

export interface FileCandidate { name: string; path: string; uri: string; sizeBytes: number }
export interface DeviceCandidate {
  name: string; path: string; uri: string; sizeBytes: number; model: string | null; readOnly: boolean; removable: boolean;
  /** Mounted, swap, held by md/dm: the GUI does not offer it. */
  inUse: string | null;
  partitions: number;
}
export interface Candidates { dataDir: string; files: FileCandidate[]; devices: DeviceCandidate[] }

export interface DiscoverResult { kind: 'nbd' | 'iscsi'; where: string; items: { name: string; uri: string; description?: string }[] }

export const LAYOUTS = ['raid1', 'raid0', 'linear', 'raid10', 'raid5', 'raid6'] as const;
/** Layouts whose legs can be failed and replaced (the engine's replaceElement). */
export const REPLACEABLE = new Set(['raid1', 'raid10', 'raid5', 'raid6']);
