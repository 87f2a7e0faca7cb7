// Helpers shared by the assembly and superblock tests (they import the sources, not dist).
import * as path from 'node:path';
import { expect } from 'vitest';
import { EngineError } from '../src/api-types.js';
import { readSuperblockFile } from '../src/meta/element-io.js';
import type { Superblock } from '../src/meta/superblock.js';

/** The superblock of `DIR/NAME.img`; throws when it is blank or unreadable. */
export async function superblockIn(dir: string, name: string): Promise<Superblock> {
  const sb = await readSuperblockFile(path.join(dir, `${name}.img`));
  if (!('arrayUuid' in sb)) throw new Error(`no superblock on ${name}`);
  return sb;
}

/** The EngineError a promise rejects with; fails the test when it resolves or rejects otherwise. */
export async function refusal(promise: Promise<unknown>): Promise<EngineError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(EngineError);
    return err as EngineError;
  }
  throw new Error('expected a refusal');
}
