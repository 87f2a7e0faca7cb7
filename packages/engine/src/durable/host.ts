// What the mirror keeper needs from the engine: its data path and registry, one-at-a-time
// control operations, and the side effects of a change (status event, state file, topology).
import type { DataPath } from '../datapath/datapath.js';
import type { Registry } from '../state/registry.js';
import type { RunsOf } from './sparse-copy.js';
import type { ChecksumStore } from '../integrity/types.js';
import type { IntegrityCount } from '../integrity/checksum-io.js';

export interface KeeperHost {
  readonly dataPath: DataPath;
  readonly registry: Registry;
  log(level: 'info' | 'warn' | 'error', msg: string): void;
  /** Copy throughput limit of resyncs and rebuilds (config rebuild.maxMiBPerSec; 0 = unthrottled). */
  rebuildMiBPerSec(): number;
  /** Runs `work` after every other control operation (Engine.exclusive). */
  exclusive<T>(work: () => Promise<T>): Promise<T>;
  /** Emits the engine's 'change' event (status). */
  changed(): void;
  /** Saves run-time changes (a replacement) in the state file. */
  persist(): void;
  /** Hands the registry's topology to the data path. */
  applyTopology(): Promise<void>;
  /** Stops a scrub of the volume, if one runs (a resync or rebuild preempts it). */
  stopScrub(volume: string): Promise<void>;
  /** Where an element holds holes that read as zeroes (allocation probes), so copies can skip them; absent = copy everything. */
  elementRuns?: RunsOf;
  /** The checksum store and counters of an integrity volume (integrity/); undefined = none. */
  integrityOf?(volume: string): { store: ChecksumStore; count: IntegrityCount } | undefined;
}
