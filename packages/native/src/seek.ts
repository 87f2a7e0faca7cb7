// lseek(SEEK_DATA / SEEK_HOLE) through the addon: where a sparse file holds data. Node has no
// lseek, so without the addon (or with one built before seek.rs) this is null and callers must
// treat every byte as data — the conservative answer.
import { nativeAddon } from './loader.js';

export interface SparseSeek {
  /** First offset >= offsetBytes holding data, or -1 when none before the end. Throws (err.code = errno name) on EINVAL, EBADF, ... */
  seekData(fd: number, offsetBytes: number): number;
  /** First offset >= offsetBytes inside a hole (the end counts), or -1 when offsetBytes is at or past the end. */
  seekHole(fd: number, offsetBytes: number): number;
}

/** Why sparseSeek() is null, or null when it is available. */
export function sparseSeekUnavailable(): string | null {
  const addon = nativeAddon() as (Partial<SparseSeek> & object) | null;
  if (addon === null) return 'the native addon is not loaded (ONESTACK_NATIVE=off or not built: pnpm build:native)';
  if (typeof addon.seekData !== 'function' || typeof addon.seekHole !== 'function') return 'the native addon predates seekData/seekHole (rebuild: pnpm build:native)';
  return null;
}

/** SEEK_DATA / SEEK_HOLE, or null (no addon, or one without them). */
export function sparseSeek(): SparseSeek | null {
  if (sparseSeekUnavailable() !== null) return null;
  const addon = nativeAddon() as unknown as SparseSeek;
  return { seekData: addon.seekData.bind(addon), seekHole: addon.seekHole.bind(addon) };
}
