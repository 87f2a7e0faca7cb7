// Where a raid5/6 volume's stripe journal lives on each element (docs/reshape.md). A volume has
// the whole journal region [1 MiB, 4 MiB) ('full', the on-disk format as it always was). While a
// reshape runs, both views of the volume journal at once over the same elements: the OLD view in
// the low part ('low') and the NEW view in the high part ('high'), so neither replays the other's
// records. A header block (the checkpoint) starts each area; its ring follows.
import { DATA_OFFSET_BYTES, JOURNAL_OFFSET_BYTES } from '../meta/types.js';
import { JOURNAL_BLOCK_BYTES } from './journal-format.js';

export interface JournalArea {
  /** Element offset of the 4 KiB journal header (the checkpoint). */
  readonly headerOffsetBytes: number;
  /** Element offset of the ring of records. */
  readonly ringOffsetBytes: number;
  readonly ringBytes: number;
}

export type JournalAreaName = 'full' | 'low' | 'high';

/** Where the low area ends and the high one's header starts (2.5 MiB). */
const SPLIT_BYTES = 2.5 * 1024 * 1024;

function area(headerOffsetBytes: number, endBytes: number): JournalArea {
  const ringOffsetBytes = headerOffsetBytes + JOURNAL_BLOCK_BYTES;
  return Object.freeze({ headerOffsetBytes, ringOffsetBytes, ringBytes: endBytes - ringOffsetBytes });
}

export const JOURNAL_AREAS: Readonly<Record<JournalAreaName, JournalArea>> = Object.freeze({
  full: area(JOURNAL_OFFSET_BYTES, DATA_OFFSET_BYTES),
  low: area(JOURNAL_OFFSET_BYTES, SPLIT_BYTES),
  high: area(SPLIT_BYTES, DATA_OFFSET_BYTES),
});

/** The area a topology names (absent = full). */
export function journalArea(name: JournalAreaName | undefined): JournalArea {
  const a = JOURNAL_AREAS[name ?? 'full'];
  if (a === undefined) throw new RangeError(`unknown journal area ${String(name)}`);
  return a;
}

export function sameArea(a: JournalArea, b: JournalArea): boolean {
  return a.headerOffsetBytes === b.headerOffsetBytes && a.ringOffsetBytes === b.ringOffsetBytes && a.ringBytes === b.ringBytes;
}
