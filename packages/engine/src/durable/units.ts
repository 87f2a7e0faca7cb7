// Which element bytes hold a volume range on one mirror leg, and where its copy comes from:
// the copy units that resync (dirty regions) and rebuild (everything) hand to runCopyJob.
// raid1: every leg holds volume byte x at dataOffset + x. raid10: chunk k lives on pair k % (n/2)
// at row floor(k / (n/2)); both legs of the pair hold it at the same element offset.
import type { VolumeGeometry } from '../datapath/map.js';
import { raid10Partner } from '../datapath/map-raid10.js';
import type { CopyUnit } from './copy-job.js';

export interface MirrorTarget {
  readonly geometry: VolumeGeometry;
  /** Element indices by role. */
  readonly elements: readonly number[];
  /** The role being brought up to date. */
  readonly targetRole: number;
  /** Picks the source role among the candidates (raid1: any other leg; raid10: the partner); -1 = none usable. */
  readonly pickSource: (candidates: readonly number[]) => number;
}

export interface VolumeRange {
  readonly offsetBytes: number;
  readonly lengthBytes: number;
}

/** Bytes per raid1 unit: big enough for throughput, small enough that a fence is brief. */
export const RAID1_UNIT_BYTES = 1024 * 1024;

function sourceFor(t: MirrorTarget): number {
  const roles = t.geometry.layout === 'raid10' ? [raid10Partner(t.targetRole)] : t.elements.map((_, r) => r).filter((r) => r !== t.targetRole);
  const role = t.pickSource(roles);
  if (role < 0) throw new Error(`no up-to-date leg to copy role ${t.targetRole} from`);
  return role;
}

/** Copy units covering `ranges` (volume offsets, in order) for the target leg. */
export function* mirrorUnits(t: MirrorTarget, ranges: Iterable<VolumeRange>): Generator<CopyUnit> {
  const layout = t.geometry.layout;
  if (layout !== 'raid1' && layout !== 'raid10') throw new Error(`mirrorUnits: ${layout} is not a mirror layout`);
  const sourceRole = sourceFor(t);
  const source = t.elements[sourceRole]!;
  const target = t.elements[t.targetRole]!;
  const dataOffset = t.geometry.elements[t.targetRole]!.dataOffsetBytes;
  if (t.geometry.elements[sourceRole]!.dataOffsetBytes !== dataOffset) throw new Error('mirror legs with different data offsets');
  for (const r of ranges) {
    const end = Math.min(r.offsetBytes + r.lengthBytes, t.geometry.sizeBytes);
    if (layout === 'raid1') {
      for (let off = r.offsetBytes; off < end; off += RAID1_UNIT_BYTES) {
        const len = Math.min(RAID1_UNIT_BYTES, end - off);
        yield { source, target, elementOffsetBytes: dataOffset + off, lengthBytes: len, volumeOffsetBytes: off, volumeLengthBytes: len };
      }
      continue;
    }
    yield* raid10Units(t, source, target, dataOffset, r.offsetBytes, end);
  }
}

function* raid10Units(t: MirrorTarget, source: number, target: number, dataOffset: number, start: number, end: number): Generator<CopyUnit> {
  const chunk = t.geometry.chunkBytes;
  const pairs = t.elements.length / 2;
  const pair = Math.floor(t.targetRole / 2);
  // Only the chunks of the target's pair; each is one unit (a contiguous volume range).
  for (let k = Math.floor(start / chunk); k * chunk < end; k++) {
    if (k % pairs !== pair) continue;
    const from = Math.max(start, k * chunk);
    const to = Math.min(end, (k + 1) * chunk);
    const row = Math.floor(k / pairs);
    const elementOffsetBytes = dataOffset + row * chunk + (from - k * chunk);
    yield { source, target, elementOffsetBytes, lengthBytes: to - from, volumeOffsetBytes: from, volumeLengthBytes: to - from };
  }
}

/** Bytes the units of `ranges` copy to the target leg (for progress totals). */
export function mirrorUnitBytes(t: MirrorTarget, ranges: Iterable<VolumeRange>): number {
  let total = 0;
  for (const u of mirrorUnits(t, ranges)) total += u.lengthBytes;
  return total;
}
