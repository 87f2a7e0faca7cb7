// The embedding API's option types and the small checks the engine's entry points share.
import { EngineError } from './api-types.js';
import type { ElementCache, Layout, QueueOrder } from './config/types.js';
import { SUPPORTED_LAYOUTS } from './datapath/map.js';

export type LogFn = (level: 'info' | 'warn' | 'error', msg: string) => void;

export interface EngineOpenOptions {
  /** A YAML/JSON file; without it and without `config` the embedded default is used. */
  configPath?: string;
  /** An inline config object (same shape as the file); relative paths resolve against the cwd. */
  config?: unknown;
  dataDir?: string;
  nbdListen?: string;
  apiListen?: string;
  log?: LogFn;
}

export interface CreateVolumeSpec {
  name: string;
  layout: Layout;
  /** Element names or URIs (a URI adds an element named after the file). */
  elements: readonly string[];
  chunkKiB?: number;
  /** Creates missing local files with this many data bytes each. */
  sizeBytes?: number;
  order?: QueueOrder;
  /** Per-block checksums on every element (raid1/raid10; docs/integrity.md). */
  integrity?: boolean;
  /** A raid1/raid10 leg written after the acknowledgement (config volumes[].writeBehind; docs/durability.md). */
  writeBehind?: { element: string; maxLagMiB?: number; drainOnFlush?: boolean };
}

export interface AddElementSpec {
  uri: string; name?: string; cache?: ElementCache;
  /** iscsi: a file holding the CHAP secret on its first line (relative paths: the data dir). */
  secretFile?: string;
}

export const defaultLog: LogFn = (level, msg) => {
  if (level !== 'info') console.error(`onestack: ${level}: ${msg}`);
};

export function checkLayout(layout: Layout, name: string): void {
  if (!SUPPORTED_LAYOUTS.includes(layout)) {
    throw new EngineError('invalid', `volume ${name}: layout ${layout} is not served yet (supported: ${SUPPORTED_LAYOUTS.join(', ')})`, `volume ${name}`, `use one of ${SUPPORTED_LAYOUTS.join(', ')} for now`);
  }
}
