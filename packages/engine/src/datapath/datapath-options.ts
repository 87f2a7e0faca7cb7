// What DataPath.start is given (DataPathOptions), their defaults, and the start-up checks that
// refuse a bad configuration before any shared memory or worker exists.
import * as fs from 'node:fs';
import { addressMod4096, probeAddressMod4096 } from '@onestack/native';
import { EngineError } from '../api-types.js';
import type { PoolsConfig, QueueConfig } from '../config/types.js';

export interface DataPathOptions {
  readonly pools: PoolsConfig;
  readonly queue: QueueConfig;
  /** A directory on the data disk, for the slab alignment probe when the addon cannot tell directly. */
  readonly probeDir: string;
  readonly maxVolumes?: number;
  readonly maxElements?: number;
  /** Bound of each back-pressure FIFO (descriptors, slots). */
  readonly waitersMax?: number;
  readonly ackTimeoutMs?: number;
  readonly closeTimeoutMs?: number;
  /** RAM read cache budget shared by the volumes (config `cache.readMiB`); 0 or absent = off. */
  readonly readCacheMiB?: number;
  /** Serve page-cache reads inline on the main thread (fast-lane.ts). Default: on when the addon has preadNowait. */
  readonly fastLane?: boolean;
}

/** Defaults of the optional bounds above. */
export const DEFAULT_WAITERS_MAX = 65536;
export const DEFAULT_TIMEOUT_MS = 10_000;

/** Refuses queue and pool sizes the shared layout or the worker pools cannot take (config errors name the key). */
export function checkStartOptions(opts: DataPathOptions): void {
  const { depth, slots, slotKiB } = opts.queue;
  if (!(Number.isInteger(depth) && depth >= 1 && (depth & (depth - 1)) === 0)) throw new EngineError('config', `queue.depth ${depth} must be a power of two`, 'queue.depth');
  if (!(Number.isInteger(slotKiB) && slotKiB >= 4 && slotKiB % 4 === 0)) throw new EngineError('config', `queue.slotKiB ${slotKiB} must be a positive multiple of 4`, 'queue.slotKiB');
  if (!(Number.isInteger(slots) && slots >= 1)) throw new EngineError('config', `queue.slots ${slots} must be a positive integer`, 'queue.slots');
  const { middle: middleThreads, bottom: bottomThreads, remote: remoteThreads } = opts.pools;
  if (!(Number.isInteger(remoteThreads) && remoteThreads >= 1 && remoteThreads <= 8)) throw new EngineError('config', `pools.remote ${remoteThreads} must be in [1, 8]`, 'pools.remote');
  if (!(Number.isInteger(middleThreads) && middleThreads >= 0 && middleThreads <= 64)) throw new EngineError('config', `pools.middle ${middleThreads} must be in [0, 64]`, 'pools.middle');
  if (!(Number.isInteger(bottomThreads) && bottomThreads >= 1 && bottomThreads <= 64)) throw new EngineError('config', `pools.bottom ${bottomThreads} must be in [1, 64]`, 'pools.bottom');
}

/** The data slab's address modulo 4096, or null when neither the addon nor the probe file can tell (O_DIRECT is then refused). */
export function probeMisalignment(data: SharedArrayBuffer, probeDir: string): number | null {
  try {
    const direct = addressMod4096(new Uint8Array(data));
    if (direct !== null) return direct;
    fs.mkdirSync(probeDir, { recursive: true });
    return probeAddressMod4096(data, probeDir);
  } catch {
    return null;
  }
}
