// The first half of Engine.open: the configuration (file, object or embedded default, with the
// caller's overrides), the data directory, the state file merged in, and every volume assembled
// from its superblocks — all before any thread starts, so a refused element or a bad config fails
// the open with nothing running.
import { loadConfig, type ConfigSource } from './config/load.js';
import type { EngineConfig } from './config/types.js';
import { assembleVolume } from './meta/assemble.js';
import type { AssembledVolume } from './meta/types.js';
import { ensureDataDir } from './state/data-dir.js';
import { lockDataDir } from './state/data-dir-lock.js';
import { mergeState, readStateFile } from './state/state-file.js';
import { attachRbd, stopRbdElements } from './remote/rbd-access.js';
import { forcedTakeover, takeRbdLocks } from './remote/rbd-lock.js';
import { checkLayout, type EngineOpenOptions, type LogFn } from './engine-types.js';

export interface LoadedEngine {
  readonly loaded: EngineConfig;
  readonly merged: ReturnType<typeof mergeState>;
  /** Elements and volumes added at run time (the state file's), as opposed to the config file's. */
  readonly runtimeElements: ReadonlySet<string>;
  readonly runtimeVolumes: ReadonlySet<string>;
  readonly assembled: readonly AssembledVolume[];
  /** Gives the data dir back (state/data-dir-lock.ts); Engine.close calls it last. */
  readonly unlock: () => void;
}

export async function loadEngine(opts: EngineOpenOptions, log: LogFn): Promise<LoadedEngine> {
  const overrides = {
    ...(opts.dataDir !== undefined ? { dataDir: opts.dataDir } : {}),
    ...(opts.nbdListen !== undefined ? { nbdListen: opts.nbdListen } : {}),
    ...(opts.apiListen !== undefined ? { apiListen: opts.apiListen } : {}),
  };
  const source: ConfigSource = opts.configPath !== undefined ? { path: opts.configPath }
    : opts.config !== undefined ? { object: opts.config } : { embeddedDefault: true };
  const loaded = loadConfig(source, overrides);
  ensureDataDir(loaded.dataDir);
  const unlock = lockDataDir(loaded.dataDir); // before anything reads or writes an element
  try {
    return { ...(await assembleAll(loaded, log)), unlock };
  } catch (err) {
    unlock();
    throw err;
  }
}

async function assembleAll(loaded: EngineConfig, log: LogFn): Promise<Omit<LoadedEngine, 'unlock'>> {
  const merged = mergeState(loaded, readStateFile(loaded.dataDir), (msg) => log('warn', msg));
  for (const v of merged.config.volumes) checkLayout(v.layout, v.name);
  const byName = new Map(merged.config.elements.map((e) => [e.name, e]));
  const assembled: AssembledVolume[] = [];
  attachRbd(loaded.dataDir, log);
  try {
    await takeRbdLocks(loaded.dataDir, merged.config.elements, log, forcedTakeover()); // before anything is written to an image
    for (const v of merged.config.volumes) assembled.push(await assembleVolume(v, byName, { create: true }));
  } catch (err) {
    await stopRbdElements(loaded.dataDir); // rbd:// paths opened by the probes
    throw err;
  }
  return {
    loaded, merged, assembled,
    runtimeElements: new Set(merged.runtime.elements.map((e) => e.name)),
    runtimeVolumes: new Set(merged.runtime.volumes.map((v) => v.name)),
  };
}
