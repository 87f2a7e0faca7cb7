// Assembly of a volume whose superblocks carry a reshape record (docs/reshape.md), pure: which
// record holds, and how superblocks written before or during the start sequence count.
//
// The rules:
// 1. Only the superblocks at the reference event counter, not marked for rebuild, speak for the
//    reshape (a leg out since an earlier reshape keeps an old record that means nothing now).
//    If none of them has a record, there is no reshape.
// 2. Their records must agree (geometry from and to, C0, C1, start time); else a clear error.
// 3. The position is the LARGEST among them: a position is written only after the new rows below
//    it are flushed, so any superblock's position is covered. The backup is that of a superblock
//    at this position whose backup starts at it (written and flushed before the first superblock
//    named it, so it is complete); else none.
// 4. "Nothing moved" = position 0 and no superblock names a backup: the first step always needs a
//    backup and saves it before writing any new row, so before that every byte is where the old
//    geometry has it. The start sequence (reshape-meta.ts startReshapeSuperblocks) writes the new
//    elements' superblocks first, then the old ones', then the caller saves the new membership
//    (state file). A crash in between leaves, with the same array UUID:
//    a. the config in the NEW geometry, some old elements without the record: nothing moved, so
//       they count as carrying it (the next superblock write gives it to them). Should data have
//       moved, such an element missed the reshape: it is rebuilt in full (a non-redundant volume
//       cannot assemble).
//    b. the config still in the OLD geometry (the state was not saved): nothing moved, so the
//       start is rolled back: superblocks with the record count as the old geometry (the next
//       superblock write drops it; the new elements stay out, as the config says).
// 5. Any other disagreement between the config and the record (element count, layout, chunk; or
//    the old geometry once data moved) is a clear error: guessing could read rows in the wrong
//    geometry.
import { EngineError } from '../api-types.js';
import type { VolumeConfig } from '../config/types.js';
import type { Superblock } from './superblock.js';
import type { ReshapeRecord } from './types.js';

export interface ReshapeAssembly {
  /** The reshape in progress; absent when there is none or its start was rolled back. */
  readonly record?: ReshapeRecord;
  /** The superblocks as assembly should judge them, by probe (undefined: blank, unreadable, unreachable). */
  readonly effective: readonly (Superblock | undefined)[];
}

interface Geometry { readonly layout: string; readonly count: number; readonly chunkBytes: number }

const text = (g: Geometry): string => `${g.layout} over ${g.count} elements, ${g.chunkBytes / 1024} KiB chunks`;
const same = (a: Geometry, b: Geometry): boolean => a.layout === b.layout && a.count === b.count && a.chunkBytes === b.chunkBytes;
const fromOf = (r: ReshapeRecord): Geometry => ({ layout: r.fromLayout, count: r.fromCount, chunkBytes: r.fromChunkBytes });

function withoutRecord(sb: Superblock): Superblock {
  const { reshape: _gone, ...rest } = sb;
  return rest;
}

/** Rules 1-3: the record the current superblocks agree on, or undefined. */
function agreedRecord(volume: VolumeConfig, current: readonly Superblock[]): { record: ReshapeRecord; to: Geometry; moved: boolean } | undefined {
  const withRecord = current.filter((sb) => sb.reshape !== undefined);
  const first = withRecord[0];
  if (first === undefined) return undefined;
  const r0 = first.reshape!;
  const key = (sb: Superblock): string => {
    const r = sb.reshape!;
    return JSON.stringify([sb.layout, sb.count, sb.chunkBytes, r.fromLayout, r.fromCount, r.fromChunkBytes, r.fromSizeBytes, r.toSizeBytes, r.startedMs]);
  };
  const odd = withRecord.find((sb) => key(sb) !== key(first));
  if (odd !== undefined) {
    throw new EngineError('conflict', `volume ${volume.name}: its superblocks disagree about the reshape in progress (element role ${first.role}: ${text(fromOf(r0))} → ${text(first)}; role ${odd.role}: ${text(fromOf(odd.reshape!))} → ${text(odd)})`,
      `volume ${volume.name}`, 'the elements do not belong to one reshape: restore the elements of the volume as they were');
  }
  const positionBytes = Math.max(...withRecord.map((sb) => sb.reshape!.positionBytes));
  const backup = withRecord.map((sb) => sb.reshape!).find((r) => r.positionBytes === positionBytes && r.backup?.startBytes === positionBytes)?.backup;
  const { backup: _b, ...base } = r0;
  const record: ReshapeRecord = { ...base, positionBytes, ...(backup !== undefined ? { backup } : {}) };
  const moved = positionBytes > 0 || withRecord.some((sb) => sb.reshape!.backup !== undefined);
  return { record, to: { layout: first.layout, count: first.count, chunkBytes: first.chunkBytes }, moved };
}

/**
 * Applies the rules above. `sbs` by probe; `ref` the reference superblock (freshest up to date).
 * Throws EngineError('conflict') when the config and the record disagree.
 */
export function reconcileReshape(volume: VolumeConfig, sbs: readonly (Superblock | undefined)[], ref: Superblock): ReshapeAssembly {
  const mine = (sb: Superblock | undefined): sb is Superblock => sb !== undefined && sb.arrayUuid === ref.arrayUuid;
  const current = sbs.filter((sb): sb is Superblock => mine(sb) && !sb.needsRebuild && sb.eventCount === ref.eventCount);
  const agreed = agreedRecord(volume, current);
  if (agreed === undefined) return { effective: sbs };
  const { record, to, moved } = agreed;
  const from = fromOf(record);
  const config: Geometry = { layout: volume.layout, count: volume.elements.length, chunkBytes: volume.chunkKiB * 1024 };
  if (same(config, to)) {
    const effective = sbs.map((sb) => {
      if (!mine(sb) || sb.reshape !== undefined || sb.needsRebuild || !same(sb, from)) return sb;
      // Rule 4a: an old element the start sequence had not reached yet.
      const asNew: Superblock = { ...sb, layout: to.layout as Superblock['layout'], count: to.count, chunkBytes: to.chunkBytes, reshape: record };
      return moved ? { ...asNew, needsRebuild: true, eventCount: 0 } : asNew;
    });
    return { record, effective };
  }
  if (!moved && same(config, from)) {
    // Rule 4b: the start is rolled back; the old geometry holds every byte.
    const effective = sbs.map((sb) => (mine(sb) && sb.reshape !== undefined ? { ...withoutRecord(sb), layout: record.fromLayout, count: from.count, chunkBytes: from.chunkBytes } : sb));
    return { effective };
  }
  const at = `${record.positionBytes} of ${record.fromSizeBytes} bytes`;
  throw new EngineError('conflict', `volume ${volume.name} is being reshaped from ${text(from)} to ${text(to)} (at ${at}); the config says ${text(config)}`, `volume ${volume.name}`,
    `list the volume's ${to.count} elements as ${to.layout} (the state file of the data dir records them; restore it if it was lost), or restore the elements as they were`);
}

/**
 * A superblock an abandoned start left on an element the config does not list (rule 4b): this
 * array, a record at position 0 without a backup, a role only the new geometry has. Such an
 * element holds nothing anyone needs; a new reshape may take it.
 */
export function isLeftoverOfStart(sb: Superblock, arrayUuid: string): boolean {
  const r = sb.reshape;
  return sb.arrayUuid === arrayUuid && r !== undefined && r.positionBytes === 0 && r.backup === undefined && sb.role >= r.fromCount;
}
