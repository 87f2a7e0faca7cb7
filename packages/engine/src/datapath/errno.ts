// Errno values carried in descriptor RESULT words (as -errno) and on rejected promises.
// Linux numbers, so a RESULT word reads the same in a debugger as in strace.
import { Errno, NbdError, type NbdErrno } from '@onestack/nbd';

// The data path's errno set is exactly what the NBD protocol can carry, with the same numbers.
export type DataPathErrno = NbdErrno;
const CODES: Readonly<Record<DataPathErrno, number>> = Errno;

const NAMES = new Map<number, DataPathErrno>(Object.entries(CODES).map(([name, code]) => [code, name as DataPathErrno]));

export function errnoCode(name: DataPathErrno): number {
  return CODES[name];
}

/** Unknown numbers read as EIO: the caller must see a failure, never a success. */
export function errnoName(code: number): DataPathErrno {
  return NAMES.get(Math.abs(code)) ?? 'EIO';
}

/** Maps a Node fs error (err.code) onto the errno set the NBD protocol can carry. */
export function errnoFromError(err: unknown): DataPathErrno {
  const code = typeof err === 'object' && err !== null && 'code' in err ? String((err as { code: unknown }).code) : '';
  switch (code) {
    case 'EINVAL':
      return 'EINVAL';
    case 'ENOSPC':
    case 'EDQUOT':
    case 'EFBIG':
      return 'ENOSPC';
    case 'EPERM':
    case 'EACCES':
    case 'EROFS':
      return 'EPERM';
    case 'ENOMEM':
      return 'ENOMEM';
    case 'EOPNOTSUPP':
    case 'ENOTSUP':
      return 'ENOTSUP';
    default:
      return 'EIO';
  }
}

/**
 * The error every data-path promise rejects with. It IS an NbdError (same errno set), so the
 * NBD export passes it to clients as it is.
 */
export class DataPathError extends NbdError {
  constructor(errno: DataPathErrno, message: string) {
    super(errno, message);
    this.name = 'DataPathError';
  }
}

/** Errors that say nothing about the element they came from (the request was bad, or the engine is stopping). */
const NOT_DEVICE: readonly DataPathErrno[] = ['EINVAL', 'ESHUTDOWN', 'ENOMEM'];

/** Whether `err` is an element's own failure (a leg that returns it is failed, as complete.ts does). */
export function isDeviceError(err: unknown): boolean {
  return err instanceof DataPathError && !NOT_DEVICE.includes(err.errno);
}
