// Where an integrity volume's blocks were found bad since the daemon started (docs/integrity.md),
// served over NBD as the meta context `x-onestack:integrity`: flag 1 = found bad and not
// repaired (or unrecoverable), 2 = repaired, 0 = nothing known. Kept in memory only, per volume,
// as a sorted list of runs of 4 KiB blocks with the same state: events are rare (a bad disk
// gives a few runs, not one entry per block), and the list is capped: past the cap the two
// closest runs are merged (the gap between them takes the worse state), so a bad mark is never
// dropped, only widened.
import type { BlockExtent } from '../api-types.js';
import { INTEGRITY_BLOCK_BYTES } from './types.js';

const BLOCK = INTEGRITY_BLOCK_BYTES;

/** Runs kept per volume before coarse merging (about 24 bytes each: ~100 KiB per volume). */
export const DEFAULT_MAP_RUNS = 4096;

/** Context flags (api: BlockExtent.flags of `x-onestack:integrity`). */
export const INTEGRITY_FLAG_BAD = 1;
export const INTEGRITY_FLAG_REPAIRED = 2;

// Internal states, ordered by how bad (a merge keeps the worst): a mismatch whose repair may
// still come, a repaired block, a block with no good copy (sticky: nothing repairs it).
const REPAIRED = 1;
const PENDING = 2;
const LOST = 3;
type State = typeof REPAIRED | typeof PENDING | typeof LOST;

const flagOf = (s: State): number => (s === REPAIRED ? INTEGRITY_FLAG_REPAIRED : INTEGRITY_FLAG_BAD);

interface Run {
  /** Blocks [startBlock, endBlock). */
  startBlock: number;
  endBlock: number;
  state: State;
}

export type IntegrityMapEvent = 'mismatches' | 'repaired' | 'unrecoverable';

/** One volume's record. */
export class IntegrityMap {
  private runs: Run[] = [];

  constructor(private readonly maxRuns: number = DEFAULT_MAP_RUNS) {
    if (!(Number.isSafeInteger(maxRuns) && maxRuns >= 1)) throw new RangeError(`maxRuns must be a positive integer, not ${maxRuns}`);
  }

  get runCount(): number {
    return this.runs.length;
  }

  /** Records `event` for the block holding volume offset `offsetBytes`. */
  mark(offsetBytes: number, event: IntegrityMapEvent): void {
    if (!(Number.isSafeInteger(offsetBytes) && offsetBytes >= 0)) return;
    const block = Math.floor(offsetBytes / BLOCK);
    const i = this.find(block);
    const run = i >= 0 ? this.runs[i] : undefined;
    const cur = run !== undefined && run.startBlock <= block && block < run.endBlock ? run.state : undefined;
    const next = nextState(cur, event);
    if (next === cur) return;
    this.set(block, next);
    while (this.runs.length > this.maxRuns) this.coarsen();
  }

  /** Extents of [offsetBytes, +lengthBytes) in order from offsetBytes, adjacent equal flags merged, at most extentsMax. */
  extents(offsetBytes: number, lengthBytes: number, extentsMax: number): BlockExtent[] {
    const out: { lengthBytes: number; flags: number }[] = [];
    const end = offsetBytes + lengthBytes;
    const max = Math.max(1, Math.floor(extentsMax));
    const push = (from: number, to: number, flags: number): boolean => {
      if (to <= from) return true;
      const last = out[out.length - 1];
      if (last !== undefined && last.flags === flags) last.lengthBytes += to - from;
      else {
        if (out.length >= max) return false;
        out.push({ lengthBytes: to - from, flags });
      }
      return true;
    };
    let at = offsetBytes;
    let i = Math.max(0, this.find(Math.floor(offsetBytes / BLOCK)));
    for (; i < this.runs.length && at < end; i++) {
      const r = this.runs[i]!;
      const from = Math.max(at, r.startBlock * BLOCK);
      const to = Math.min(end, r.endBlock * BLOCK);
      if (to <= at) continue;
      if (from >= end) break;
      if (!push(at, from, 0) || !push(from, to, flagOf(r.state))) return out;
      at = to;
    }
    push(at, end, 0);
    return out;
  }

  /** Index of the last run starting at or before `block` (-1: none). */
  private find(block: number): number {
    let lo = 0;
    let hi = this.runs.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.runs[mid]!.startBlock <= block) {
        found = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return found;
  }

  /** Sets one block's state: splits the run holding it, joins equal neighbours. */
  private set(block: number, state: State): void {
    const i = this.find(block);
    const run = i >= 0 ? this.runs[i] : undefined;
    const pieces: Run[] = [];
    let at = i + 1; // where the pieces go
    let remove = 0;
    if (run !== undefined && block < run.endBlock) {
      at = i;
      remove = 1;
      if (run.startBlock < block) pieces.push({ startBlock: run.startBlock, endBlock: block, state: run.state });
      pieces.push({ startBlock: block, endBlock: block + 1, state });
      if (block + 1 < run.endBlock) pieces.push({ startBlock: block + 1, endBlock: run.endBlock, state: run.state });
    } else pieces.push({ startBlock: block, endBlock: block + 1, state });
    this.runs.splice(at, remove, ...pieces);
    // Join equal neighbours around the changed block.
    for (let k = Math.min(this.runs.length - 1, at + pieces.length); k > Math.max(0, at - 1); k--) {
      const a = this.runs[k - 1]!;
      const b = this.runs[k]!;
      if (a.endBlock === b.startBlock && a.state === b.state) {
        a.endBlock = b.endBlock;
        this.runs.splice(k, 1);
      }
    }
  }

  /** Merges the two runs with the smallest gap into one of the worse state (marks widen, none is lost). */
  private coarsen(): void {
    let best = 1;
    let bestGap = Infinity;
    for (let k = 1; k < this.runs.length; k++) {
      const gap = this.runs[k]!.startBlock - this.runs[k - 1]!.endBlock;
      if (gap < bestGap) {
        bestGap = gap;
        best = k;
      }
    }
    const a = this.runs[best - 1]!;
    const b = this.runs[best]!;
    a.endBlock = b.endBlock;
    a.state = Math.max(a.state, b.state) as State;
    this.runs.splice(best, 1);
  }
}

function nextState(cur: State | undefined, event: IntegrityMapEvent): State {
  if (cur === LOST || event === 'unrecoverable') return LOST;
  return event === 'repaired' ? REPAIRED : PENDING;
}

/** The records of every volume of an engine (volume name → map, created on the first event). */
export class IntegrityMaps {
  private readonly byVolume = new Map<string, IntegrityMap>();

  constructor(private readonly maxRuns: number = DEFAULT_MAP_RUNS) {}

  mark(volume: string, offsetBytes: number, event: IntegrityMapEvent): void {
    let m = this.byVolume.get(volume);
    if (m === undefined) {
      m = new IntegrityMap(this.maxRuns);
      this.byVolume.set(volume, m);
    }
    m.mark(offsetBytes, event);
  }

  /** Extents of a volume (all flag 0 when nothing happened). */
  extents(volume: string, offsetBytes: number, lengthBytes: number, extentsMax: number): BlockExtent[] {
    const m = this.byVolume.get(volume);
    if (m !== undefined) return m.extents(offsetBytes, lengthBytes, extentsMax);
    return lengthBytes > 0 ? [{ lengthBytes, flags: 0 }] : [];
  }

  /** The volume was deleted: a new one with its name starts clean. */
  forget(volume: string): void {
    this.byVolume.delete(volume);
  }
}
