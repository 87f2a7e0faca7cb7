// The engine's two ways of writing down what happened to its volumes: the clean stop (close) and
// the failure watch (a leg the data path failed since the last look). Both end in superblock
// writes through markClean; Engine (engine.ts) owns the state and calls these.
import type { CheckpointKeeper } from './checkpoints/keeper.js';
import type { DataPath } from './datapath/datapath.js';
import type { MirrorKeeper } from './durable/keeper.js';
import type { LogFn } from './engine-types.js';
import type { IntegrityStores } from './integrity/stores.js';
import { markClean } from './meta/assemble.js';
import type { AssembledVolume } from './meta/types.js';
import { stopRbdElements } from './remote/rbd-access.js';
import type { LiveView, Registry } from './state/registry.js';

export interface CloseParts {
  readonly registry: Registry;
  readonly keeper: MirrorKeeper;
  readonly ckpts: CheckpointKeeper;
  readonly integrity: IntegrityStores;
  readonly dataPath: DataPath;
  readonly dataDir: string;
  readonly log: LogFn;
  withLiveStates(vol: AssembledVolume): AssembledVolume;
}

/**
 * The clean stop, after the exports closed: write-behind legs catch up, copies stop, every volume
 * is flushed and marked clean, then the stores and the data path close, and the rbd gateways
 * last (the final flush went through them).
 */
export async function closeVolumes(p: CloseParts): Promise<void> {
  // Write-behind legs catch up first, so the clean stop below leaves nothing to resync.
  for (const entry of p.registry.volumes.values()) await Promise.resolve().then(() => entry.handle.io.drainBehind?.()).catch(() => undefined);
  await p.keeper.close(async (name) => p.registry.volumes.get(name)?.handle.flush());
  for (const entry of p.registry.volumes.values()) {
    const name = entry.assembled.config.name;
    try {
      await entry.handle.flush();
      entry.handle.detach();
      entry.assembled = await markClean(p.withLiveStates(entry.assembled), true);
    } catch (err) {
      p.log('error', `volume ${name}: not marked clean: ${(err as Error).message}`);
    }
    entry.handle.detach();
  }
  await p.ckpts.close();
  await p.integrity.close();
  await p.dataPath.close();
  await stopRbdElements(p.dataDir);
}

export interface FailureParts {
  readonly registry: Registry;
  readonly live: LiveView;
  readonly log: LogFn;
  closing(): boolean;
  exclusive(work: () => Promise<void>): Promise<void>;
  withLiveStates(vol: AssembledVolume): AssembledVolume;
  changed(): void;
}

/**
 * A mirror leg that the data path failed (I/O error) must not be trusted after a crash: bump
 * the event counter on the surviving legs at once, so reassembly sees the failed leg as stale.
 */
export function recordFailures(p: FailureParts): void {
  if (p.closing()) return;
  for (const entry of p.registry.volumes.values()) {
    const newlyFailed = entry.assembled.elements.filter((e) => e.state === 'active' && p.live.state(p.registry.element(e.config.name)) === 'failed');
    if (newlyFailed.length === 0) continue;
    void p.exclusive(async () => {
      if (p.closing()) return;
      entry.assembled = await markClean(p.withLiveStates(entry.assembled), false);
      for (const e of newlyFailed) p.log('warn', `volume ${entry.assembled.config.name}: element ${e.config.name} failed (I/O error); volume continues without it`);
      p.changed();
    }).catch((err: Error) => p.log('error', `volume ${entry.assembled.config.name}: could not record a failed element: ${err.message}`));
  }
}
