// Superblock writes of a reshape (docs/reshape.md): the record after each step (position, backup),
// the start sequence, and the final superblocks. Element by element, each write flushed (local
// files and remotes alike, element-io.ts writeSuperblockOf); a failed write is reported, not
// fatal: the caller decides (a failed element is out of the volume anyway).
import { superblockFor } from './assemble.js';
import { writeSuperblockOf } from './element-io.js';
import type { AssembledElement, AssembledVolume, ReshapeRecord } from './types.js';

export interface SuperblockWriteFailure {
  readonly element: string;
  readonly role: number;
  readonly message: string;
}

export interface ReshapeRecordOptions {
  /** The volume size the superblocks say (the FINISH: C1); default vol.sizeBytes. */
  readonly finalSizeBytes?: number;
  /** Event counter + 1 (the FINISH); default unchanged, as a step's position write. */
  readonly bumpEvents?: boolean;
  /** Called after each element's write with the count written so far (the test seam between the finish's writes). */
  readonly afterEach?: (written: number) => Promise<void>;
}

/** `vol` as the superblocks say after writeReshapeRecord(vol, record, opts): keep it in the registry. */
export function withReshapeRecord(vol: AssembledVolume, record: ReshapeRecord | null, opts: ReshapeRecordOptions = {}): AssembledVolume {
  const { reshape: _old, ...rest } = vol;
  return {
    ...rest, sizeBytes: opts.finalSizeBytes ?? vol.sizeBytes, eventCount: vol.eventCount + (opts.bumpEvents === true ? 1 : 0),
    ...(record !== null ? { reshape: record } : {}),
  };
}

/** Elements whose superblock a reshape writes: all but the failed ones (a stale leg keeps its mark and own counter). */
function present(vol: AssembledVolume): AssembledElement[] {
  return vol.elements.filter((e) => e.state !== 'failed');
}

async function writeEach(vol: AssembledVolume, targets: readonly AssembledElement[], afterEach?: (written: number) => Promise<void>): Promise<SuperblockWriteFailure[]> {
  const failed: SuperblockWriteFailure[] = [];
  let written = 0;
  for (const e of targets) {
    const active = e.state === 'active';
    // A leg that is not up to date stays marked for rebuild, with what it holds (its own counter).
    const flags = active ? { clean: false, needsRebuild: false } : { clean: false, needsRebuild: true, eventCount: e.syncedEvents ?? 0 };
    try {
      await writeSuperblockOf(e.config, superblockFor(vol, e, flags));
    } catch (err) {
      failed.push({ element: e.config.name, role: e.role, message: (err as Error).message });
    }
    await afterEach?.(++written);
  }
  return failed;
}

/**
 * Writes every present element's superblock with `record` (null: none, as at the FINISH), event
 * counter unchanged unless bumpEvents. Returns the elements whose write failed (empty = all
 * written). The registry should then hold withReshapeRecord(vol, record, opts): every later
 * superblock write (markClean, markNeedsRebuild) repeats vol.reshape, and an older position
 * written back would make a resumed copy read rows already overwritten.
 */
export async function writeReshapeRecord(vol: AssembledVolume, record: ReshapeRecord | null, opts: ReshapeRecordOptions = {}): Promise<SuperblockWriteFailure[]> {
  const next = withReshapeRecord(vol, record, opts);
  return writeEach(next, present(next), opts.afterEach);
}

/**
 * The start sequence (meta/reshape-assemble.ts rule 4): `vol` in the NEW geometry (config layout
 * and elements, new ones included, sizeBytes C0), `record` at position 0 with no backup. The
 * elements in `added` (new to the array: blank, no data anyone needs) get their superblocks
 * first, then the others in role order. Stops at the first failure: nothing moved yet, and
 * assembly rolls back or completes a start cut short. The caller saves the new membership (state
 * file) after this returns no failure, and before the first step.
 */
export async function startReshapeSuperblocks(vol: AssembledVolume, record: ReshapeRecord, added: readonly string[]): Promise<SuperblockWriteFailure[]> {
  if (record.positionBytes !== 0 || record.backup !== undefined) throw new RangeError('a reshape starts at position 0 without a backup');
  const next = withReshapeRecord(vol, record);
  const unknown = added.filter((name) => !next.elements.some((e) => e.config.name === name));
  if (unknown.length > 0) throw new RangeError(`startReshapeSuperblocks: ${unknown.join(', ')} not in volume ${vol.config.name}`);
  const fresh = next.elements.filter((e) => added.includes(e.config.name));
  // Their UUID must be the one the caller keeps (a later write would otherwise pick another).
  const nameless = fresh.filter((e) => e.elementUuid === undefined || e.state !== 'active');
  if (nameless.length > 0) throw new RangeError(`startReshapeSuperblocks: new elements must be active with an elementUuid (${nameless.map((e) => e.config.name).join(', ')})`);
  const old = present(next).filter((e) => !added.includes(e.config.name));
  for (const group of [fresh, old]) {
    const failed = await writeEach(next, group);
    if (failed.length > 0) return failed;
  }
  return [];
}
