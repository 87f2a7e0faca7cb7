// Errors shaped like Node's fs errors (`code`, `syscall`, `path`), so callers branch on `code`
// whichever backend produced them.

export interface SysError extends Error {
  code: string;
  syscall?: string;
  path?: string;
}

export function sysError(code: string, message: string, details: { syscall?: string; path?: string } = {}): SysError {
  const error = new Error(`${code}: ${message}`) as SysError;
  error.code = code;
  if (details.syscall !== undefined) error.syscall = details.syscall;
  if (details.path !== undefined) error.path = details.path;
  return error;
}

/** The errno name of an error thrown by the addon or by node:fs, or '' if it has none. */
export function errorCode(error: unknown): string {
  if (typeof error !== 'object' || error === null) return '';
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && /^E[A-Z0-9]+$/.test(code)) return code;
  // The addon also puts the errno name first in its message ("EOPNOTSUPP: fallocate ...").
  const message = (error as { message?: unknown }).message;
  const match = typeof message === 'string' ? /^(E[A-Z0-9]+):/.exec(message) : null;
  return match?.[1] ?? '';
}

/** Byte offsets and lengths must be exact non-negative integers: a NaN never becomes 0. */
export function assertByteRange(offsetBytes: number, lengthBytes: number): void {
  if (!Number.isSafeInteger(offsetBytes) || offsetBytes < 0) {
    throw sysError('EINVAL', `offsetBytes must be a non-negative safe integer, got ${offsetBytes}`);
  }
  if (!Number.isSafeInteger(lengthBytes) || lengthBytes <= 0) {
    throw sysError('EINVAL', `lengthBytes must be a positive safe integer, got ${lengthBytes}`);
  }
}
