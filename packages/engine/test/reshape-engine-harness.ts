// Shared set-up for the in-process reshape tests (reshape-*.test.ts): element files in a fresh
// temp dir per test, an engine config over them with one volume 'v', and a bounded poll.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach } from 'vitest';
import type { Engine, EngineStatus } from '../dist/index.js';
import { DATA_OFFSET_BYTES } from '../dist/meta/types.js';
import { MiB } from './datapath-harness.js';

export const DATA_BYTES = 4 * MiB;
export const quiet = (): void => undefined;

/** Element files `names` (DATA_BYTES of data each) in a temp dir made before and removed after each test of the file. */
export class ReshapeFiles {
  dir = '';
  constructor(readonly prefix: string, readonly names: readonly string[]) {
    beforeEach(() => {
      this.dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
      for (const f of names) {
        const file = path.join(this.dir, `${f}.img`);
        fs.writeFileSync(file, '');
        fs.truncateSync(file, DATA_OFFSET_BYTES + DATA_BYTES);
      }
    });
    afterEach(() => fs.rmSync(this.dir, { recursive: true, force: true }));
  }

  /** Every file as an element, one volume 'v' (chunk 64 KiB) with `volume`'s fields; no rebuild section when the rate is not given. */
  config(volume: { layout: string; elements: string[]; spares?: string[] }, rateMiBPerSec?: number): unknown {
    return {
      dataDir: path.join(this.dir, 'data'), nbd: { listen: '127.0.0.1:0' },
      ...(rateMiBPerSec === undefined ? {} : { rebuild: { maxMiBPerSec: rateMiBPerSec } }),
      elements: this.names.map((f) => ({ name: f, uri: `file:${path.join(this.dir, `${f}.img`)}` })),
      volumes: [{ name: 'v', chunkKiB: 64, ...volume }],
    };
  }
}

/** Polls `cond` every 20 ms; throws after `timeoutMs` with `context()` (e.g. the engine's log lines) appended. */
export async function until(what: string, cond: () => boolean, timeoutMs = 60_000, context = (): string => ''): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) {
      const extra = context();
      throw new Error(`timed out waiting for ${what}${extra === '' ? '' : `\n${extra}`}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

export const view = (engine: Engine): EngineStatus['volumes'][number] => engine.status().volumes.find((v) => v.name === 'v')!;
