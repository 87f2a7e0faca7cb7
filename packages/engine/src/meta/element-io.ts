// Superblock I/O on local elements: read, write + fsync, wipe, and sparse file creation
// (remote elements go through remote-io.ts; writeSuperblockOf picks by kind).
// Control plane only (start-up, create, delete, close); the data path never calls these.
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { EngineError } from '../api-types.js';
import type { ElementConfig } from '../config/types.js';
import { writeRemoteSuperblock } from './remote-io.js';
import { decodeSuperblock, SuperblockError, type Superblock } from './superblock.js';
import { SUPERBLOCK_BYTES } from './types.js';

export type ReadSuperblock = Superblock | { kind: 'blank' } | SuperblockError;

export async function readSuperblockFile(file: string): Promise<ReadSuperblock> {
  const handle = await fs.open(file, 'r');
  try {
    const bytes = new Uint8Array(SUPERBLOCK_BYTES);
    const { bytesRead } = await handle.read(bytes, 0, SUPERBLOCK_BYTES, 0);
    try {
      return decodeSuperblock(bytes.subarray(0, bytesRead));
    } catch (err) {
      if (err instanceof SuperblockError) return err;
      throw err;
    }
  } finally {
    await handle.close();
  }
}

/** Writes a 4096-byte block at offset 0 and fsyncs it before returning. */
export async function writeSuperblockFile(file: string, bytes: Uint8Array): Promise<void> {
  if (bytes.length !== SUPERBLOCK_BYTES) throw new Error(`superblock write of ${bytes.length} bytes`);
  const handle = await fs.open(file, 'r+');
  try {
    const { bytesWritten } = await handle.write(bytes, 0, SUPERBLOCK_BYTES, 0);
    if (bytesWritten !== SUPERBLOCK_BYTES) throw new Error(`short superblock write (${bytesWritten} bytes)`);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Creates a sparse file of `sizeBytes` (and its directory); fails if the file exists. */
export async function createSparseFile(file: string, sizeBytes: number): Promise<void> {
  await fs.mkdir(path.dirname(file), { recursive: true });
  const handle = await fs.open(file, 'wx', 0o600);
  try {
    await handle.truncate(sizeBytes);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Writes (and flushes) an element's superblock, local or remote. */
export async function writeSuperblockOf(config: ElementConfig, bytes: Uint8Array): Promise<void> {
  if (config.location.kind === 'local') return writeSuperblockFile(config.location.path, bytes);
  return writeRemoteSuperblock(config, bytes);
}

/** Zeroes the superblock of each element that still exists (volume delete); the data stays. */
export async function wipeSuperblocks(elements: readonly ElementConfig[]): Promise<void> {
  const zero = new Uint8Array(SUPERBLOCK_BYTES);
  for (const config of elements) {
    try {
      await writeSuperblockOf(config, zero);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw new EngineError('io', `cannot wipe the superblock of element ${config.name}: ${(err as Error).message}`, config.uri);
    }
  }
}
