// One engine per data dir. Two daemons on the same data dir (or the same elements through it)
// would both replay journals, write superblocks and serve: nothing stops them at the element
// level, so the data dir holds `engine.pid` for as long as an engine is open. A file whose
// process is gone (kill -9, a crash) is taken over; one whose process lives is refused.
// A takeover (SIGUSR2) works because the old process closes its engine before the new one opens.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { EngineError } from '../api-types.js';

export const ENGINE_LOCK_FILE = 'engine.pid';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'; // exists, another user's
  }
}

function holderOf(file: string): number | null {
  try {
    const pid = Number(fs.readFileSync(file, 'utf8').trim());
    return Number.isSafeInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null; // gone meanwhile, or unreadable: the next attempt decides
  }
}

/**
 * Takes the data dir for this process; returns the release. A live holder in another process is
 * refused; the holder being this very process counts as stale (an engine of ours that was never
 * closed, as crash tests leave them), so the embedder stays responsible for its own engines.
 */
export function lockDataDir(dataDir: string): () => void {
  const file = path.join(dataDir, ENGINE_LOCK_FILE);
  // Two attempts: the second follows the removal of a stale file (bounded, no spinning).
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.writeFileSync(file, `${process.pid}\n`, { flag: 'wx', mode: 0o600 });
      return () => release(file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new EngineError('io', `cannot lock the data dir: ${(err as Error).message}`, dataDir);
      const pid = holderOf(file);
      if (pid !== null && pid !== process.pid && alive(pid)) {
        throw new EngineError('conflict', `data dir ${dataDir} is in use by onestack (pid ${pid})`, dataDir,
          `stop that daemon first, or use another --data-dir; to restart it without dropping clients: kill -USR2 ${pid}`);
      }
      fs.rmSync(file, { force: true });
    }
  }
  throw new EngineError('conflict', `data dir ${dataDir}: another engine took it while this one started`, dataDir);
}

function release(file: string): void {
  // Only our own file: a successor may already hold the data dir.
  if (holderOf(file) === process.pid) fs.rmSync(file, { force: true });
}
