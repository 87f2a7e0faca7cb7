// Request checks before anything reaches the backend, as a pure function so they can be tested
// without a socket. Errors follow proto.md and nbdkit: writes past the end are ENOSPC, other
// out-of-range requests EINVAL; payload-sized commands above the maximum block size EOVERFLOW.

import type { NbdExport } from '../backend.js';
import type { NbdRequest } from '../codec/transmission.js';
import { checkResize } from '../codec/resize.js';
import { Cmd, CmdFlag, Errno } from '../constants.js';

/**
 * 0 when the request may go to the backend, else the errno to reply with. `metaContexts` is the
 * number of contexts SET_META_CONTEXT selected (BLOCK_STATUS needs at least one).
 */
export function checkRequest(req: NbdRequest, exp: NbdExport, structuredReplies: boolean, metaContexts = 0): number {
  const len = req.lengthBytes;
  switch (req.type) {
    case Cmd.READ:
      if ((req.flags & CmdFlag.DF) !== 0 && !structuredReplies) return Errno.EINVAL;
      if (len > exp.blockSize.maximumBytes) return Errno.EOVERFLOW;
      return inRange(req, exp) ? 0 : Errno.EINVAL;
    case Cmd.WRITE:
      if (exp.readOnly) return Errno.EPERM;
      if (len > exp.blockSize.maximumBytes) return Errno.EOVERFLOW;
      return inRange(req, exp) ? 0 : Errno.ENOSPC;
    case Cmd.FLUSH:
      return exp.canFlush ? 0 : Errno.EINVAL;
    case Cmd.TRIM:
      if (exp.readOnly) return Errno.EPERM;
      if (!exp.canTrim) return Errno.EINVAL;
      return inRange(req, exp) ? 0 : Errno.EINVAL;
    case Cmd.WRITE_ZEROES:
      if (exp.readOnly) return Errno.EPERM;
      if (!exp.canWriteZeroes) return Errno.EINVAL;
      // We never advertise fast zero; the spec says fail such a request quickly with ENOTSUP.
      if ((req.flags & CmdFlag.FAST_ZERO) !== 0) return Errno.ENOTSUP;
      return inRange(req, exp) ? 0 : Errno.ENOSPC;
    case Cmd.CACHE:
      if (!exp.canCache) return Errno.EINVAL;
      return inRange(req, exp) ? 0 : Errno.EINVAL;
    case Cmd.BLOCK_STATUS:
      // The length is a hint, but it must be nonzero and stay inside the export (proto.md).
      if (metaContexts === 0) return Errno.EINVAL;
      return inRange(req, exp) ? 0 : Errno.EINVAL;
    case Cmd.RESIZE:
      return checkResize(req, { sizeBytes: exp.sizeBytes, readOnly: exp.readOnly, canResize: exp.resize !== undefined });
    default:
      return Errno.EINVAL;
  }
}

/** Nonzero length, fully inside the export (trim/zero/cache/block status may exceed the max block size). */
function inRange(req: NbdRequest, exp: NbdExport): boolean {
  return req.lengthBytes > 0 && req.offsetBytes <= exp.sizeBytes && req.offsetBytes + req.lengthBytes <= exp.sizeBytes;
}
