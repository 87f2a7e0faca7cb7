// The index of a volume's checkpoints (<dataDir>/checkpoints/<volume>/index.json): which exist,
// in creation order, and which are broken. A checkpoint exists once the index names it: its bits
// file is written and fsync'd first, the index after (temp file, fsync, rename, fsync of the
// directory), so a crash leaves either the old index or the new one, never half of one. Files
// the index does not name are leftovers of a creation or deletion cut short.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { NAME_RE } from './format.js';

export const CATALOG_FILE = 'index.json';
const CATALOG_VERSION = 1;
const CATALOG_BYTES_MAX = 1024 * 1024;
/** Checkpoints a volume keeps at most (each costs a bitmap update on a first write to a region). */
export const CHECKPOINTS_MAX = 8;

export interface CatalogEntry {
  readonly name: string;
  readonly id: string;
  readonly createdMs: number;
  readonly regionBytes: number;
  /**
   * Why the checkpoint can no longer be trusted (its file could not be read at some start, so
   * writes went untracked): kept until it is deleted, so a later start never offers it.
   */
  readonly broken?: string;
}

export interface Catalog {
  /** The volume the checkpoints belong to: a volume deleted and created again has another UUID. */
  readonly arrayUuid: string;
  readonly volumeSizeBytes: number;
  /** N of the next default name ckpt-N (never reused, so a backup tool never mistakes one for another). */
  readonly nextDefault: number;
  readonly entries: readonly CatalogEntry[];
}

export const newId = (): string => randomBytes(16).toString('hex');
export const bitsPath = (dir: string, name: string): string => path.join(dir, `${name}.bits`);

function fail(file: string, why: string): Error {
  return new Error(`${file}: ${why}`);
}

function entryOf(raw: unknown, file: string, i: number): CatalogEntry {
  if (typeof raw !== 'object' || raw === null) throw fail(file, `checkpoints[${i}] is not an object`);
  const e = raw as Record<string, unknown>;
  const { name, id, createdMs, regionBytes, broken } = e;
  if (typeof name !== 'string' || !NAME_RE.test(name)) throw fail(file, `checkpoints[${i}].name is not a checkpoint name`);
  if (typeof id !== 'string' || !/^([0-9a-f]{32})?$/.test(id)) throw fail(file, `checkpoints[${i}].id is not an id`);
  if (!Number.isSafeInteger(createdMs) || (createdMs as number) < 0) throw fail(file, `checkpoints[${i}].createdMs is not a time`);
  if (!Number.isSafeInteger(regionBytes) || (regionBytes as number) <= 0) throw fail(file, `checkpoints[${i}].regionBytes is not a size`);
  if (broken !== undefined && typeof broken !== 'string') throw fail(file, `checkpoints[${i}].broken is not a reason`);
  return { name, id, createdMs: createdMs as number, regionBytes: regionBytes as number, ...(broken !== undefined ? { broken: broken.slice(0, 500) } : {}) };
}

/** The volume's catalog, or null when there is none; throws (with the file named) when it is unreadable. */
export async function readCatalog(dir: string): Promise<Catalog | null> {
  const file = path.join(dir, CATALOG_FILE);
  let text: string;
  try {
    const stat = await fs.stat(file);
    if (stat.size > CATALOG_BYTES_MAX) throw fail(file, `${stat.size} bytes is too large for a checkpoint index`);
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw fail(file, `not JSON (${(err as Error).message})`);
  }
  if (typeof doc !== 'object' || doc === null) throw fail(file, 'not an object');
  const d = doc as Record<string, unknown>;
  if (d['version'] !== CATALOG_VERSION) throw fail(file, `version ${JSON.stringify(d['version'])} (this build reads ${CATALOG_VERSION})`);
  const { arrayUuid, volumeSizeBytes, nextDefault, checkpoints } = d;
  if (typeof arrayUuid !== 'string' || arrayUuid.length > 64) throw fail(file, 'arrayUuid is not a UUID');
  if (!Number.isSafeInteger(volumeSizeBytes) || !Number.isSafeInteger(nextDefault) || (nextDefault as number) < 1) throw fail(file, 'bad volumeSizeBytes or nextDefault');
  if (!Array.isArray(checkpoints) || checkpoints.length > CHECKPOINTS_MAX) throw fail(file, `checkpoints is not a list of at most ${CHECKPOINTS_MAX}`);
  const entries = checkpoints.map((c, i) => entryOf(c, file, i));
  const names = new Set(entries.map((e) => e.name));
  if (names.size !== entries.length) throw fail(file, 'a checkpoint is named twice');
  return { arrayUuid, volumeSizeBytes: volumeSizeBytes as number, nextDefault: nextDefault as number, entries };
}

/** Fsyncs a directory, so a rename or unlink in it is durable. */
export async function syncDir(dir: string): Promise<void> {
  const handle = await fs.open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Replaces the catalog atomically (temp file, fsync, rename, fsync of the directory). */
export async function writeCatalog(dir: string, catalog: Catalog): Promise<void> {
  if (catalog.entries.length > CHECKPOINTS_MAX) throw new Error(`catalog of ${catalog.entries.length} checkpoints (at most ${CHECKPOINTS_MAX})`);
  const file = path.join(dir, CATALOG_FILE);
  const tmp = `${file}.tmp`;
  const body = { version: CATALOG_VERSION, arrayUuid: catalog.arrayUuid, volumeSizeBytes: catalog.volumeSizeBytes, nextDefault: catalog.nextDefault, checkpoints: catalog.entries };
  const handle = await fs.open(tmp, 'w', 0o600);
  try {
    await handle.writeFile(`${JSON.stringify(body, null, 2)}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await fs.rename(tmp, file);
  await syncDir(dir);
}
