// Shared by the keeper (keeper.ts) and its runs (keeper-runs.ts): what the keeper holds per
// volume, and pure geometry helpers (which legs mirror which, what can be rebuilt).
import type { LastRebuild, RebuildStatus } from '../api-types.js';
import type { VolumeGeometry } from '../datapath/map.js';
import type { AssembledVolume, ElementState } from '../meta/types.js';
import type { WriteIntentBitmap } from './bitmap.js';
import type { RecoveryTarget } from './recovery.js';

export interface Run {
  readonly targets: readonly RecoveryTarget[];
  readonly controller: AbortController;
  readonly startedMs: number;
  progress: RebuildStatus;
  /** Settles when the copy stops (done, failed or aborted); the finish step runs after it. */
  copying: Promise<void>;
}

export interface Keep {
  readonly name: string;
  /** null for raid5/6 volumes: they keep no bitmap, every target is rebuilt in full. */
  readonly bitmap: WriteIntentBitmap | null;
  /** Whether the bitmap read at attach was usable (else dirty regions before it are unknown). */
  readonly bitmapLoaded: boolean;
  run: Run | null;
  readonly pending: Map<number, RecoveryTarget>;
  last: LastRebuild | null;
}

export const isMirror = (layout: string): boolean => layout === 'raid1' || layout === 'raid10';
export const isParity = (layout: string): boolean => layout === 'raid5' || layout === 'raid6';

/**
 * Whether `role` can be rebuilt from the other legs in their live states: a mirror needs an
 * active leg of its group; raid5/6 need every data index of a row, i.e. n - parity active others.
 */
export function canRebuild(vol: AssembledVolume, role: number, live: (name: string) => ElementState): boolean {
  const active = (r: number): boolean => live(vol.config.elements[r]!) === 'active';
  if (!isParity(vol.config.layout)) return groupOf(vol, role).some(active);
  const n = vol.config.elements.length;
  const others = vol.config.elements.map((_, r) => r).filter((r) => r !== role && active(r)).length;
  return others >= n - (vol.config.layout === 'raid5' ? 1 : 2);
}

/** Roles that mirror `role`: raid1 every other leg, raid10 the partner. */
export function groupOf(vol: AssembledVolume, role: number): number[] {
  if (vol.config.layout === 'raid10') return [role ^ 1];
  return vol.config.elements.map((_, r) => r).filter((r) => r !== role);
}

export function geometryOf(vol: AssembledVolume): VolumeGeometry {
  return {
    layout: vol.config.layout, chunkBytes: vol.config.chunkKiB * 1024, sizeBytes: vol.sizeBytes,
    elements: [...vol.elements].sort((a, b) => a.role - b.role).map((e) => ({ dataOffsetBytes: vol.dataOffsetBytes, dataSizeBytes: e.dataSizeBytes })),
  };
}
