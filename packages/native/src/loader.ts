// Loads the napi-rs addon once, lazily. Any failure (not built, wrong ABI, ONESTACK_NATIVE=off)
// selects the pure-JS backend and is reported by nativeInfo(); nothing here ever throws.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

import type { NativeRdmaProbe } from './rdma.js';
import type { NativeUringClass } from './uring.js';

export type NativeBackend = 'native' | 'js';
export interface NativeInfo {
  backend: NativeBackend;
  reason?: string;
  version?: string;
}

/** What the Rust crate (crates/onestack-native) exports. */
export interface NativeAddon {
  version(): string;
  bufferAddress(view: Uint8Array): bigint;
  openDirect(path: string, write: boolean): number;
  punchHole(fd: number, offsetBytes: number, lengthBytes: number): void;
  zeroRange(fd: number, offsetBytes: number, lengthBytes: number): void;
  blockDeviceSize(fd: number): number;
  logicalBlockSize(fd: number): number;
  /** Optional: an addon built before the RDMA probe keeps serving O_DIRECT and fallocate. */
  rdmaProbe?(): NativeRdmaProbe;
  /** Optional (older builds lack it): bytes read, or -errno (-EAGAIN: not all in the page cache). */
  preadNowait?(fd: number, view: Uint8Array, viewOffsetBytes: number, lengthBytes: number, fileOffsetBytes: number): number;
  /** Optional too: an addon built before io_uring support keeps everything else (sync I/O then). */
  Uring?: NativeUringClass;
  /** Optional (older builds lack them): per-block checksums into `out`; the block count. */
  crc32cBlocks?(data: Uint8Array, blockBytes: number, out: Uint32Array): number;
  xxh64Blocks?(data: Uint8Array, blockBytes: number, out: BigUint64Array): number;
}

const addonFunctions: readonly (keyof NativeAddon)[] = [
  'version', 'bufferAddress', 'openDirect', 'punchHole', 'zeroRange', 'blockDeviceSize', 'logicalBlockSize',
];

/** Same relative place from src/ (vitest) and dist/ (built). */
export const addonPath = fileURLToPath(new URL('../native/onestack-native.node', import.meta.url));

let loaded: { addon: NativeAddon | null; info: NativeInfo } | null = null;

function tryLoad(): { addon: NativeAddon | null; info: NativeInfo } {
  if (process.env['ONESTACK_NATIVE'] === 'off') {
    return { addon: null, info: { backend: 'js', reason: 'ONESTACK_NATIVE=off' } };
  }
  if (process.platform !== 'linux') {
    return { addon: null, info: { backend: 'js', reason: `platform ${process.platform} is not Linux` } };
  }
  if (!existsSync(addonPath)) {
    return { addon: null, info: { backend: 'js', reason: `addon not built (${addonPath} missing; run pnpm build:native)` } };
  }
  try {
    const require = createRequire(import.meta.url);
    const candidate = require(addonPath) as Partial<NativeAddon>;
    const missing = addonFunctions.filter((name) => typeof candidate[name] !== 'function');
    if (missing.length > 0) {
      return { addon: null, info: { backend: 'js', reason: `addon at ${addonPath} lacks ${missing.join(', ')} (stale build?)` } };
    }
    const addon = candidate as NativeAddon;
    return { addon, info: { backend: 'native', reason: `loaded ${addonPath}`, version: addon.version() } };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    return { addon: null, info: { backend: 'js', reason: `addon failed to load: ${message}` } };
  }
}

/** The addon, or null when the pure-JS fallback is active. */
export function nativeAddon(): NativeAddon | null {
  loaded ??= tryLoad();
  return loaded.addon;
}

/** Which backend is active and why. */
export function nativeInfo(): NativeInfo {
  loaded ??= tryLoad();
  return { ...loaded.info };
}
