// Size of a local element (regular file or block device), through @onestack/native
// (BLKGETSIZE64 when the addon is built, sysfs otherwise).
import { deviceSizeBytes } from '@onestack/native';

/** Bytes of a regular file or block device; throws (with an errno code) if it is neither. */
export async function localSizeBytes(path: string): Promise<number> {
  return deviceSizeBytes(path);
}
