// io_uring through the addon (crates/onestack-native/src/uring.rs): one ring per thread, fed
// batches of fixed-width records whose buffers are byte ranges of one registered slab view.
// Never throws on "cannot here": without the addon, with ONESTACK_URING=off or when the kernel
// refuses io_uring_setup, openUring answers { ring: null, reason } and callers stay on sync I/O.
import { errorCode } from './errors.js';
import { nativeAddon, nativeInfo } from './loader.js';

/** f64 numbers per record: opcode, fd, slabOffsetBytes, lengthBytes, fileOffsetBytes, flags (0). */
export const URING_RECORD_F64S = 6;

/** Record opcodes (uring_record.rs). WRITE_DSYNC is a FUA write (RWF_DSYNC). */
export const UringOp = { READ: 1, WRITE: 2, WRITE_DSYNC: 3, FDATASYNC: 4 } as const;
export type UringOpCode = (typeof UringOp)[keyof typeof UringOp];

/** What the addon's Uring class instances offer. */
export interface UringRing {
  readonly entries: number;
  /** Records name byte ranges of this view; the ring holds it (its SAB stays alive). */
  registerSlab(view: Uint8Array): void;
  /**
   * Submits `count` records and waits for all of them; results[i] = bytes done or -errno for
   * record i. Throws (EINVAL, nothing submitted) for a bad record, EBADF once closed.
   */
  submitAndWait(ops: Float64Array, count: number, results: Int32Array): number;
  close(): void;
}

export type NativeUringClass = new (entries: number) => UringRing;

export type OpenUring = { readonly ring: UringRing; readonly reason: string } | { readonly ring: null; readonly reason: string };

/** Ring sizes the addon accepts. */
export const URING_ENTRIES_MAX = 4096;

/** Writes record `index` of `ops` (the layout submitAndWait reads). */
export function putUringRecord(ops: Float64Array, index: number, op: UringOpCode, fd: number, slabOffsetBytes: number,
  lengthBytes: number, fileOffsetBytes: number): void {
  const at = index * URING_RECORD_F64S;
  ops[at] = op;
  ops[at + 1] = fd;
  ops[at + 2] = slabOffsetBytes;
  ops[at + 3] = lengthBytes;
  ops[at + 4] = fileOffsetBytes;
  ops[at + 5] = 0;
}

/** Why no ring can be had before trying one, or null. */
function offReason(): string | null {
  if (process.env['ONESTACK_URING'] === 'off') return 'ONESTACK_URING=off';
  const addon = nativeAddon();
  if (addon === null) {
    const why = nativeInfo().reason ?? 'not loaded';
    return why === 'ONESTACK_NATIVE=off' ? why : why.startsWith('addon not built') ? 'native addon not built' : `native addon not loaded: ${why}`;
  }
  if (addon.Uring === undefined) return 'native addon lacks Uring (stale build? run pnpm build:native)';
  return null;
}

/** The kernel's refusals, said the way an operator would look them up. */
function refusal(code: string, message: string): string {
  switch (code) {
    case 'ENOSYS': return 'kernel has no io_uring (ENOSYS)';
    case 'EPERM': return 'io_uring not permitted (EPERM: kernel.io_uring_disabled or a seccomp filter)';
    case 'ENOMEM': return 'io_uring_setup: ENOMEM (locked-memory limit?)';
    default: return `io_uring_setup failed: ${message}`;
  }
}

/** A ring of `entries` entries, or null and why (addon absent or old, ONESTACK_URING=off, kernel refusal). */
export function openUring(entries: number): OpenUring {
  if (!(Number.isInteger(entries) && entries >= 1 && entries <= URING_ENTRIES_MAX)) {
    throw new RangeError(`openUring: entries ${entries} outside [1, ${URING_ENTRIES_MAX}]`);
  }
  const off = offReason();
  if (off !== null) return { ring: null, reason: off };
  const Uring = nativeAddon()?.Uring;
  if (Uring === undefined) return { ring: null, reason: 'native addon lacks Uring' };
  try {
    return { ring: new Uring(entries), reason: `io_uring, ${entries} entries` };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    return { ring: null, reason: refusal(errorCode(error), message) };
  }
}

export interface IoBackendInfo {
  readonly backend: 'io_uring' | 'sync';
  readonly reason: string;
}

let probed: IoBackendInfo | undefined;

/** Whether this process can use io_uring: one small ring is opened and closed, once per process. */
export function ioBackendInfo(): IoBackendInfo {
  if (probed === undefined) {
    const opened = openUring(4);
    opened.ring?.close();
    probed = opened.ring === null
      ? { backend: 'sync', reason: opened.reason }
      : { backend: 'io_uring', reason: 'io_uring_setup works here' };
  }
  return { ...probed };
}
