// What a reshape job was started with that its superblock record has no room for (the rate
// limit), kept in <dataDir>/reshape-jobs.json so a restart resumes with it (docs/reshape.md).
// Keyed by volume and tied to the record's start time: a file left from an earlier reshape of
// the volume never applies to a later one. Written to a temporary file, then renamed.
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface ReshapeSettings {
  /** The reshape record's startedMs. */
  readonly startedMs: number;
  readonly maxMiBPerSec: number;
}

const FILE = 'reshape-jobs.json';
/** Bounded: a volume name is short, there are at most a few hundred volumes. */
const FILE_BYTES_MAX = 1024 * 1024;

function readAll(dataDir: string): Record<string, ReshapeSettings> {
  const file = path.join(dataDir, FILE);
  if (!fs.existsSync(file)) return {};
  if (fs.statSync(file).size > FILE_BYTES_MAX) throw new Error(`${file} is larger than ${FILE_BYTES_MAX} bytes`);
  const raw = JSON.parse(fs.readFileSync(file, 'utf8')) as unknown;
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new Error(`${file}: expected an object`);
  const out: Record<string, ReshapeSettings> = {};
  for (const [name, v] of Object.entries(raw as Record<string, unknown>)) {
    const s = v as Partial<ReshapeSettings> | null;
    if (s === null || typeof s !== 'object' || !Number.isSafeInteger(s.startedMs) || typeof s.maxMiBPerSec !== 'number' || !Number.isFinite(s.maxMiBPerSec) || s.maxMiBPerSec < 0) continue;
    out[name] = { startedMs: s.startedMs!, maxMiBPerSec: s.maxMiBPerSec };
  }
  return out;
}

/** The settings of volume `name`'s reshape started at `startedMs`, or undefined (none, another reshape's, or unreadable: `warn` says why). */
export function loadReshapeSettings(dataDir: string, name: string, startedMs: number, warn: (line: string) => void): ReshapeSettings | undefined {
  try {
    const s = readAll(dataDir)[name];
    return s !== undefined && s.startedMs === startedMs ? s : undefined;
  } catch (err) {
    warn(`volume ${name}: the saved reshape settings cannot be read (${(err as Error).message}); the config's rate applies`);
    return undefined;
  }
}

/** Saves (or with null forgets) volume `name`'s settings. Throws on I/O errors of the write. */
export function saveReshapeSettings(dataDir: string, name: string, settings: ReshapeSettings | null): void {
  let all: Record<string, ReshapeSettings>;
  try {
    all = readAll(dataDir);
  } catch {
    all = {}; // an unreadable file is replaced
  }
  if (settings === null) {
    if (!(name in all)) return;
    delete all[name];
  } else {
    all[name] = settings;
  }
  const file = path.join(dataDir, FILE);
  if (Object.keys(all).length === 0) {
    fs.rmSync(file, { force: true });
    return;
  }
  fs.mkdirSync(dataDir, { recursive: true });
  const tmp = `${file}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(all, null, 2) + '\n');
  fs.renameSync(tmp, file);
}
