// Invariant checks for the queue package. A failed check throws a typed QueueError so callers
// (engine, tests) can tell a broken invariant in shared memory from any other failure.

export type QueueErrorCode =
  | 'invalid-argument' // caller passed a value outside the documented range
  | 'layout-mismatch' // attaching to a SAB region that was initialised with another shape
  | 'double-free' // an index returned twice / pushed twice while already present
  | 'contention'; // a lock-free retry loop hit its bound: corrupt memory or a runaway peer

export class QueueError extends Error {
  override readonly name = 'QueueError';
  constructor(
    readonly code: QueueErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export function assert(condition: boolean, message: string, code: QueueErrorCode = 'invalid-argument'): asserts condition {
  if (!condition) throw new QueueError(code, message);
}

/**
 * Retry bound for CAS loops. A lock-free loop only retries when another thread made progress,
 * so hitting a million retries in a row means the shared memory is corrupt or a peer is
 * misbehaving; failing loudly beats spinning forever (STYLE.md: bound every loop).
 */
export const CAS_RETRY_MAX = 1 << 20;

export function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
}

export function nextPowerOfTwo(n: number): number {
  assert(Number.isInteger(n) && n > 0 && n <= 2 ** 30, `nextPowerOfTwo: ${n} out of range [1, 2^30]`);
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

export function alignUp(n: number, align: number): number {
  assert(Number.isSafeInteger(n) && n >= 0, `alignUp: n must be a non-negative safe integer, got ${n}`);
  assert(Number.isSafeInteger(align) && align > 0, `alignUp: align must be a positive integer, got ${align}`);
  return Math.ceil(n / align) * align;
}

/** Checks that [byteOffset, byteOffset + bytes) lies inside the SAB and is aligned. */
export function assertRegion(sab: SharedArrayBuffer, byteOffset: number, bytes: number, alignBytes: number, what: string): void {
  assert(Number.isSafeInteger(byteOffset) && byteOffset >= 0, `${what}: byteOffset ${byteOffset} is not a non-negative integer`);
  assert(byteOffset % alignBytes === 0, `${what}: byteOffset ${byteOffset} is not ${alignBytes}-byte aligned`);
  assert(
    byteOffset + bytes <= sab.byteLength,
    `${what}: needs ${bytes} bytes at offset ${byteOffset}, SAB has ${sab.byteLength}`,
  );
}
