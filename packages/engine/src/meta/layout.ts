// Layout arithmetic for assembly: capacity and redundancy. The data path's map.ts does the
// byte mapping; these rules must agree with it for the layouts it supports.
import type { Layout } from '../config/types.js';
import { INTEGRITY_ALGO_CRC32C, INTEGRITY_BLOCK_BYTES, INTEGRITY_SUM_BYTES, type IntegrityArea } from '../integrity/types.js';
import { DATA_OFFSET_BYTES, type ElementState } from './types.js';

/** Layouts that survive losing a leg (a blank or lagging leg can be rebuilt from the others). */
export function isRedundant(layout: Layout): boolean {
  return layout === 'raid1' || layout === 'raid10' || layout === 'raid5' || layout === 'raid6';
}

/**
 * Usable bytes from per-element data sizes (already rounded down to a chunk multiple):
 * linear sum; raid0 n × min; raid1 min; raid10 n/2 × min; raid5 (n-1) × min; raid6 (n-2) × min.
 */
export function layoutCapacityBytes(layout: Layout, dataSizes: readonly number[], chunkBytes: number): number {
  const n = dataSizes.length;
  if (n === 0) return 0;
  const min = Math.floor(Math.min(...dataSizes) / chunkBytes) * chunkBytes;
  switch (layout) {
    case 'linear': return dataSizes.reduce((a, b) => a + b, 0);
    case 'raid0': return n * min;
    case 'raid1': return min;
    case 'raid10': return Math.floor(n / 2) * min;
    case 'raid5': return (n - 1) * min;
    case 'raid6': return (n - 2) * min;
  }
}

/** Whether a volume with these element states (by role) can still serve every byte. */
export function layoutSurvives(layout: Layout, states: readonly ElementState[]): boolean {
  const up = (s: ElementState | undefined): boolean => s === 'active';
  const down = states.filter((s) => !up(s)).length;
  switch (layout) {
    case 'linear':
    case 'raid0': return down === 0;
    case 'raid1': return down < states.length;
    // Near-2 layout: roles 2k and 2k+1 mirror each other.
    case 'raid10': return states.every((_, i) => i % 2 === 1 || up(states[i]) || up(states[i + 1]));
    case 'raid5': return down <= 1;
    case 'raid6': return down <= 2;
  }
}

/** Volume state from element states: optimal, degraded (still serving), or failed. */
export function volumeHealth(layout: Layout, states: readonly ElementState[]): 'optimal' | 'degraded' | 'failed' {
  if (states.every((s) => s === 'active')) return 'optimal';
  return layoutSurvives(layout, states) ? 'degraded' : 'failed';
}

const PAGE_BYTES = 4096;

/** Bytes of the checksum area for `dataBytes` of data: one u32 per 4 KiB block, rounded up to 4 KiB pages. */
export function integrityAreaBytes(dataBytes: number): number {
  const sums = Math.ceil(dataBytes / INTEGRITY_BLOCK_BYTES) * INTEGRITY_SUM_BYTES;
  return Math.ceil(sums / PAGE_BYTES) * PAGE_BYTES;
}

/**
 * Data bytes an element of `rawBytes` holds with integrity on: the largest multiple of 4 KiB, D,
 * with header + D + its checksum area <= rawBytes (before any chunk rounding). 0 when none fits.
 */
export function integrityDataBytes(rawBytes: number): number {
  const avail = rawBytes - DATA_OFFSET_BYTES;
  if (!(avail > 0)) return 0;
  // D × 1025/1024 ≈ avail; the two bounded loops fix the page rounding (a step or two at most).
  let d = Math.floor((avail * 1024) / 1025 / PAGE_BYTES) * PAGE_BYTES;
  while (d + PAGE_BYTES + integrityAreaBytes(d + PAGE_BYTES) <= avail) d += PAGE_BYTES;
  while (d > 0 && d + integrityAreaBytes(d) > avail) d -= PAGE_BYTES;
  return d;
}

/** The checksum area of an element whose data area holds `dataSizeBytes`: right after the data. */
export function integrityAreaFor(dataSizeBytes: number): IntegrityArea {
  return { offsetBytes: DATA_OFFSET_BYTES + dataSizeBytes, sizeBytes: integrityAreaBytes(dataSizeBytes), blockBytes: INTEGRITY_BLOCK_BYTES, algo: INTEGRITY_ALGO_CRC32C };
}
