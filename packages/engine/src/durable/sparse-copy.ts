// Sparse-aware copies for resync and rebuild: before a unit is copied, its source leg is asked
// where it holds holes that read as zeroes (allocation/, SEEK_DATA or NBD/iSCSI block status);
// those ranges are zeroed on the target with WRITE_ZEROES (a punched hole) instead of being read
// and written. A rebuilt leg then stays as sparse as its source, so base:allocation and sparse
// copies keep working after a replace, and an empty volume rebuilds in moments. Whatever the
// probe cannot tell is copied as before: a wrong "hole" would lose data, a wrong "data" costs time.
import { withCopy, type RawIo } from '../datapath/raw-io.js';
import type { ElementRuns } from '../allocation/map-allocation.js';

/** The source element's runs over [startBytes, +lengthBytes), or null when unknown. */
export type RunsOf = (element: number, startBytes: number, lengthBytes: number) => Promise<ElementRuns | null>;

export interface SparseCopyStats {
  /** Bytes zeroed on targets because the source held a hole there. */
  holeBytes: number;
  /** Bytes read from a source and written to a target. */
  copiedBytes: number;
}

/** `raw` with a copy() that skips the source's holes; every other call goes straight through. */
export function sparseAwareRaw(raw: RawIo, runsOf: RunsOf, stats: SparseCopyStats, onHole?: (source: number, offsetBytes: number, lengthBytes: number) => Promise<void>): RawIo {
  const copyData = async (source: number, target: number, at: number, len: number): Promise<void> => {
    await raw.copy(source, target, at, len);
    stats.copiedBytes += len;
  };
  return withCopy(raw, async (source: number, target: number, offsetBytes: number, lengthBytes: number): Promise<void> => {
    const answer = await runsOf(source, offsetBytes, lengthBytes).catch(() => null);
    const end = offsetBytes + lengthBytes;
    let at = offsetBytes;
    if (answer !== null && answer.startBytes === offsetBytes) {
      // Bounded by the answer's runs; what they leave uncovered is copied below.
      for (const run of answer.runs) {
        if (at >= end) break;
        if (!(run.lengthBytes > 0)) break;
        const n = Math.min(run.lengthBytes, end - at);
        if (run.zero) {
          await raw.zero(target, at, n);
          await onHole?.(source, at, n); // integrity: the source's hole has no checksum either
          stats.holeBytes += n;
        } else {
          await copyData(source, target, at, n);
        }
        at += n;
      }
    }
    if (at < end) await copyData(source, target, at, end - at);
  });
}
