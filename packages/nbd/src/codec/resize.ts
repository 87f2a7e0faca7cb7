// The experimental RESIZE extension (NBD_FLAG_SEND_RESIZE, transmission flag bit 9 in proto.md's
// list; NBD_CMD_RESIZE = 8), as we read its draft: the client asks for a new export size in the
// request's offset field with length 0 and no payload; the reply is a plain success or an error.
// Pure: building the request (client) and checking it (server). See docs/nbd.md "Growing a volume".
import { Cmd, Errno, TransmissionFlag } from '../constants.js';
import type { NbdRequest } from './transmission.js';

/** What the server knows when it checks a RESIZE request. */
export interface ResizeTarget {
  readonly sizeBytes: number;
  readonly readOnly: boolean;
  /** The backend has the resize hook (and the flag was advertised). */
  readonly canResize: boolean;
}

/** The request a client sends to ask for `sizeBytes` (cookie halves as for any request). */
export function resizeRequest(sizeBytes: number, cookieHi: number, cookieLo: number): NbdRequest {
  if (!(Number.isSafeInteger(sizeBytes) && sizeBytes >= 0)) throw new RangeError(`resize to ${sizeBytes} bytes: not a size`);
  return { flags: 0, type: Cmd.RESIZE, cookieHi, cookieLo, offsetBytes: sizeBytes, lengthBytes: 0 };
}

/**
 * 0 when the backend may be asked, else the errno: EINVAL when RESIZE was not offered, for a
 * nonzero length or any command flag, and for a smaller size (growth only, here); EPERM on a
 * read-only export. Sizes past 2^53 arrive saturated (decodeRequest) and fail in the backend
 * (ENOSPC). The same size is accepted: the backend answers it without doing anything.
 */
export function checkResize(req: NbdRequest, target: ResizeTarget): number {
  if (!target.canResize) return Errno.EINVAL;
  if (target.readOnly) return Errno.EPERM;
  if (req.lengthBytes !== 0 || req.flags !== 0) return Errno.EINVAL;
  if (req.offsetBytes < target.sizeBytes) return Errno.EINVAL;
  return 0;
}

/** Whether transmission flags advertise RESIZE (client side). */
export function canResize(transmissionFlags: number): boolean {
  return (transmissionFlags & TransmissionFlag.HAS_FLAGS) !== 0 && (transmissionFlags & TransmissionFlag.SEND_RESIZE) !== 0;
}
