// Size of a backing store: a regular file's length or a block device's capacity.
import { closeSync, constants, openSync, readFileSync, statSync } from 'node:fs';

import { errorCode, sysError } from './errors.js';
import { nativeAddon } from './loader.js';

const sectorBytes = 512; // /sys/.../size counts 512-byte sectors whatever the logical block size

export function isBlockDevice(path: string): boolean {
  return statSync(path).isBlockDevice();
}

/** Linux dev_t split (glibc's gnu_dev_major/minor), exact for 64-bit rdev values. */
export function devMajorMinor(rdev: bigint): { major: number; minor: number } {
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
  return { major: Number(major), minor: Number(minor) };
}

/** Pure-JS block-device size from sysfs; works without opening the device. */
export function blockDeviceSizeFromSysfs(path: string): number {
  const { major, minor } = devMajorMinor(statSync(path, { bigint: true }).rdev);
  const sysPath = `/sys/dev/block/${major}:${minor}/size`;
  const sectors = Number(readFileSync(sysPath, 'utf8').trim());
  if (!Number.isSafeInteger(sectors) || sectors < 0) {
    throw sysError('EIO', `unexpected sector count in ${sysPath}`, { path });
  }
  return sectors * sectorBytes;
}

function blockDeviceSizeFromIoctl(blockDeviceSize: (fd: number) => number, path: string): number {
  const fd = openSync(path, constants.O_RDONLY);
  try {
    return blockDeviceSize(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Regular file: its size. Block device: BLKGETSIZE64 through the addon, else sysfs.
 * Anything else (directory, char device, socket) throws EINVAL.
 */
export function deviceSizeBytes(path: string): number {
  const stats = statSync(path, { bigint: true });
  if (stats.isFile()) return Number(stats.size);
  if (!stats.isBlockDevice()) {
    throw sysError('EINVAL', `'${path}' is neither a regular file nor a block device`, { syscall: 'stat', path });
  }
  const addon = nativeAddon();
  if (addon === null) return blockDeviceSizeFromSysfs(path);
  try {
    return blockDeviceSizeFromIoctl(addon.blockDeviceSize, path);
  } catch (ioctlError) {
    // Opening needs read permission on the device; sysfs does not. Report the first cause if both fail.
    try {
      return blockDeviceSizeFromSysfs(path);
    } catch {
      throw sysError(errorCode(ioctlError) || 'EIO', `size of block device '${path}' unknown`, { path });
    }
  }
}
