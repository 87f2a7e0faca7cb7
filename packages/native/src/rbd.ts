// rbd:// through librbd (crates/onestack-native rbd.rs): the addon dlopens librados/librbd and
// runs rbd_aio_* requests; results come back in batches (one wakeup per batch, then drain()).
// Never throws at import: without the addon or librbd, rbdUnavailable() says why and the engine
// uses its qemu-nbd gateway instead.
import { nativeAddon, nativeInfo } from './loader.js';

export interface RbdTargetOptions {
  readonly conf: string;
  readonly id: string;
  readonly keyring?: string;
  readonly pool: string;
  readonly image: string;
  /** rados_connect's bound (client_mount_timeout). */
  readonly mountTimeoutS: number;
  /** Every monitor and OSD request's bound (rados_osd_op_timeout, rados_mon_op_timeout). */
  readonly opTimeoutS: number;
}

/** One finished request: ret < 0 is a negated errno (code names it); a read's bytes in data. */
export interface RbdDone {
  readonly tag: number;
  readonly ret: number;
  readonly code?: string | null;
  readonly data?: Uint8Array | null;
}

/** The addon's class: one thread's channel onto this process's handle of an image. */
export interface NativeRbdImage {
  connect(): Promise<number>;
  sizeBytes(): number;
  clientAddrs(): string;
  /** This channel's requests with librbd (deadline-abandoned ones included). */
  inFlight(): number;
  /** Every channel's requests on this process's handle of the image. */
  imageInFlight(): number;
  /** True once rbdFence() fenced this process's handle. */
  fenced(): boolean;
  read(tag: number, offsetBytes: number, lengthBytes: number): void;
  write(tag: number, offsetBytes: number, data: Uint8Array): void;
  writeZeroes(tag: number, offsetBytes: number, lengthBytes: number): void;
  flush(tag: number): void;
  drain(): RbdDone[];
  /** Allocated ranges of [offset, offset+length) (whole objects): flat [offset, length, …]; endBytes is where the answer ends. */
  allocated(offsetBytes: number, lengthBytes: number, maxExtents: number): Promise<{ extents: number[]; endBytes: number }>;
  close(): Promise<void>;
}

export interface NativeRbdImageClass {
  new (options: RbdTargetOptions, notify: () => void): NativeRbdImage;
}

/** What the addon exports for rbd (optional: older builds lack it). */
export interface NativeRbdExports {
  RbdImage?: NativeRbdImageClass;
  rbdUnavailable?(): string | null;
  rbdFence?(pool: string, image: string): number;
}

function rbdExports(): NativeRbdExports | null {
  return nativeAddon() as NativeRbdExports | null;
}

/** Why librbd cannot be used in this process, or null when it can. */
export function rbdUnavailable(): string | null {
  const addon = rbdExports();
  if (addon === null) return `native addon not loaded (${nativeInfo().reason ?? 'unknown reason'})`;
  if (addon.RbdImage === undefined || addon.rbdUnavailable === undefined) return 'native addon built without rbd support (rebuild: pnpm build:native)';
  const why = addon.rbdUnavailable();
  return why === null || why === undefined ? null : `librbd not loadable: ${why}`;
}

/** A new channel; throws when rbdUnavailable() is not null. `notify` runs on this thread when results wait. */
export function openRbdImage(options: RbdTargetOptions, notify: () => void): NativeRbdImage {
  const why = rbdUnavailable();
  if (why !== null) throw new Error(why);
  return new (rbdExports()!.RbdImage!)(options, notify);
}

/** Marks every handle of pool/image in this process fenced: later requests fail with ESHUTDOWN. */
export function rbdFence(pool: string, image: string): number {
  return rbdExports()?.rbdFence?.(pool, image) ?? 0;
}
