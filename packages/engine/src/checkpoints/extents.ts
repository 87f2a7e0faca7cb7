// Dirty and clean runs of a checkpoint's bitmap as NBD block-status extents (pure, fuzzable):
// extents start at the asked offset, alternate flags, never run past the asked range or the
// volume, each is > 0 bytes, and there are 1..extentsMax of them.
import type { BlockExtent } from '../api-types.js';

/** Flag of a dirty extent (NBD qemu:dirty-bitmap: 1 = written since the checkpoint). */
export const DIRTY = 1;

export interface BitmapView {
  readonly bits: Uint8Array;
  readonly regionBytes: number;
  readonly regionCount: number;
  readonly volumeSizeBytes: number;
}

const bitAt = (bits: Uint8Array, r: number): number => ((bits[r >> 3]! >> (r & 7)) & 1);

/** First region in (r, limit) whose bit differs from `flag`, or `limit`; skips whole bytes when it can. */
function runEnd(bits: Uint8Array, r: number, limit: number, flag: number): number {
  const same = flag === 1 ? 0xff : 0;
  let i = r + 1;
  while (i < limit) {
    if ((i & 7) === 0 && i + 8 <= limit && bits[i >> 3] === same) {
      i += 8;
      continue;
    }
    if (bitAt(bits, i) !== flag) return i;
    i++;
  }
  return limit;
}

/** Extents of [offsetBytes, +lengthBytes) clipped to the volume; the caller checked the range starts inside it. */
export function dirtyExtents(view: BitmapView, offsetBytes: number, lengthBytes: number, extentsMax: number): BlockExtent[] {
  const end = Math.min(offsetBytes + lengthBytes, view.volumeSizeBytes);
  if (!(offsetBytes >= 0 && offsetBytes < end && extentsMax >= 1)) throw new RangeError(`no extents for [${offsetBytes}, +${lengthBytes}) of ${view.volumeSizeBytes} bytes`);
  const out: BlockExtent[] = [];
  const lastRegion = Math.min(view.regionCount, Math.ceil(end / view.regionBytes));
  let pos = offsetBytes;
  // Bounded: each turn moves pos forward by at least one byte, and by whole runs of regions.
  while (pos < end && out.length < extentsMax) {
    const r = Math.floor(pos / view.regionBytes);
    const flag = bitAt(view.bits, r);
    const next = Math.min(end, runEnd(view.bits, r, lastRegion, flag) * view.regionBytes);
    if (next <= pos) throw new Error(`dirty extents: no progress at ${pos}`);
    out.push({ lengthBytes: next - pos, flags: flag === 1 ? DIRTY : 0 });
    pos = next;
  }
  return out;
}
