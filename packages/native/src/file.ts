// Opening files (optionally O_DIRECT) and releasing or zeroing ranges with fallocate.
import { constants, openSync } from 'node:fs';

import { assertByteRange, errorCode, sysError } from './errors.js';
import { nativeAddon } from './loader.js';

export interface OpenFileOptions {
  direct: boolean;
  write: boolean;
}

/**
 * Opens an existing file or block device (never creates) and returns its fd. `direct` adds
 * O_DIRECT: buffers, offsets and lengths must then be aligned (see addressMod4096).
 * Throws an Error with `code` (ENOENT, EACCES, EINVAL when the fs refuses O_DIRECT, ...).
 */
export function openFile(path: string, opts: OpenFileOptions): number {
  const access = opts.write ? constants.O_RDWR : constants.O_RDONLY;
  if (!opts.direct) return openSync(path, access); // libuv adds O_CLOEXEC
  const addon = nativeAddon();
  if (addon !== null) {
    try {
      return addon.openDirect(path, opts.write);
    } catch (error) {
      const code = errorCode(error) || 'EIO';
      throw sysError(code, `open '${path}' with O_DIRECT failed`, { syscall: 'open', path });
    }
  }
  const direct = constants.O_DIRECT;
  if (direct === undefined) {
    throw sysError('EINVAL', `O_DIRECT is not available on ${process.platform}`, { syscall: 'open', path });
  }
  return openSync(path, access | direct);
}

type FallocateCall = (fd: number, offsetBytes: number, lengthBytes: number) => void;

// EOPNOTSUPP (fs or device cannot), ENOSYS (kernel cannot): the caller zero-fills instead.
// Anything else (EBADF, EINVAL for a misaligned block-device range, EIO) is a real error.
function tryFallocate(call: FallocateCall, what: string, fd: number, offsetBytes: number, lengthBytes: number): boolean {
  assertByteRange(offsetBytes, lengthBytes);
  try {
    call(fd, offsetBytes, lengthBytes);
    return true;
  } catch (error) {
    const code = errorCode(error);
    if (code === 'EOPNOTSUPP' || code === 'ENOTSUP' || code === 'ENOSYS') return false;
    throw sysError(code || 'EIO', `${what} fd ${fd} [${offsetBytes}, +${lengthBytes}) failed`, { syscall: 'fallocate' });
  }
}

/**
 * Deallocates a range (reads return zeroes, the size is kept). Returns false when it cannot be
 * done here (no addon, or the fs says EOPNOTSUPP) so the caller writes zeroes instead.
 */
export function punchHole(fd: number, offsetBytes: number, lengthBytes: number): boolean {
  const addon = nativeAddon();
  if (addon === null) {
    assertByteRange(offsetBytes, lengthBytes);
    return false;
  }
  return tryFallocate(addon.punchHole, 'punch hole', fd, offsetBytes, lengthBytes);
}

/** Zeroes a range in place (FALLOC_FL_ZERO_RANGE); same contract as punchHole. */
export function zeroRange(fd: number, offsetBytes: number, lengthBytes: number): boolean {
  const addon = nativeAddon();
  if (addon === null) {
    assertByteRange(offsetBytes, lengthBytes);
    return false;
  }
  return tryFallocate(addon.zeroRange, 'zero range', fd, offsetBytes, lengthBytes);
}
