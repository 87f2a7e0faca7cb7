// One real daemon per describe block: temp dir, optional config, start before, stop and clean after.
import path from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { Daemon } from './daemon.js';
import { removeDir, tempDir, writeConfig, type ElementSpec, type VolumeSpec } from './files.js';

export interface DaemonFixture {
  readonly daemon: Daemon;
  readonly dir: string;
  /** Element name → image path (empty for the embedded default). */
  readonly images: ReadonlyMap<string, string>;
}

/** Starts the daemon on a config of `file:` elements (or the embedded default when `elements` is omitted). */
export function useDaemon(name: string, elements?: readonly ElementSpec[], volumes?: readonly VolumeSpec[]): DaemonFixture {
  let daemon: Daemon | null = null;
  let dir = '';
  let images: ReadonlyMap<string, string> = new Map();
  beforeAll(async () => {
    dir = tempDir(name);
    let configPath: string | undefined;
    if (elements !== undefined && volumes !== undefined) {
      const written = await writeConfig(dir, elements, volumes);
      configPath = written.configPath;
      images = written.images;
    }
    daemon = await Daemon.start({ dataDir: path.join(dir, 'data'), ...(configPath === undefined ? {} : { configPath }) });
  });
  afterAll(async () => {
    try {
      const stopped = await daemon?.stop();
      if (stopped?.killed === true) console.warn(`[${name}] daemon ignored SIGTERM and was killed\n${daemon?.logs() ?? ''}`);
    } finally {
      if (dir !== '') removeDir(dir);
    }
  });
  return {
    get daemon(): Daemon {
      if (daemon === null) throw new Error(`[${name}] daemon not started (see the beforeAll error)`);
      return daemon;
    },
    get dir(): string { return dir; },
    get images(): ReadonlyMap<string, string> { return images; },
  };
}
