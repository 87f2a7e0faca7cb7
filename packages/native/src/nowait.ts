// Page-cache reads that never block (preadv2 with RWF_NOWAIT): the top driver serves cached
// reads inline with them and queues the rest. Null when the addon lacks it (then every read
// takes the queue, which is always correct).
import { nativeAddon } from './loader.js';

/** Reads into view[viewOffsetBytes, +lengthBytes) from fd at fileOffsetBytes; bytes read or -errno. */
export type PreadNowait = (fd: number, view: Uint8Array, viewOffsetBytes: number, lengthBytes: number, fileOffsetBytes: number) => number;

/** The non-blocking read, or null (no addon, an addon built before it, or ONESTACK_NOWAIT=off). */
export function preadNowait(): PreadNowait | null {
  if (process.env['ONESTACK_NOWAIT'] === 'off') return null;
  const addon = nativeAddon();
  const fn = addon?.preadNowait;
  return typeof fn === 'function' ? fn.bind(addon) : null;
}
