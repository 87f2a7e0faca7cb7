// Completion bookkeeping shared by the middle and bottom stages: a sub finishes, its parent's
// PENDING count drops, and whoever brings it to zero finalises the parent and hands it to the
// main thread through the completion ring.
import { D, DESC_WORDS, DescStatus, pushSure } from '@onestack/queue';
import { errnoCode } from './errno.js';
import { PUSH_TIMEOUT_MS, type SharedViews } from './shared-layout.js';
import { FLAG_MIRRORED, STATE_FAILED } from './topology.js';

const EIO = errnoCode('EIO');
const EINVAL = errnoCode('EINVAL');

/** Records a failure on a parent. Mirror legs that fail for a device reason are marked failed. */
export function failParent(v: SharedViews, parent: number, element: number, errno: number): void {
  const w = v.words;
  const pb = parent * DESC_WORDS;
  const mirrored = (w[pb + D.FLAGS]! & FLAG_MIRRORED) !== 0;
  if (element >= 0) Atomics.add(v.elemErrors, element, 1);
  if (mirrored && element >= 0 && errno !== EINVAL) {
    // The leg no longer holds what the others hold: take it out before the write is acked.
    Atomics.store(v.elemState, element, STATE_FAILED);
    Atomics.add(w, pb + D.AUX, 1);
  } else {
    Atomics.compareExchange(w, pb + D.RESULT, 0, -errno);
  }
}

/**
 * Drops one reference on `parent`. Returns true when this call finalised it (pushed it onto the
 * completion ring); the caller then rings the completion doorbell once per batch.
 */
export function releaseParent(v: SharedViews, parent: number): boolean {
  const w = v.words;
  const pb = parent * DESC_WORDS;
  const before = Atomics.sub(w, pb + D.PENDING, 1);
  if (before !== 1) {
    if (before < 1) throw new Error(`parent ${parent}: PENDING went below zero`);
    return false;
  }
  if ((w[pb + D.FLAGS]! & FLAG_MIRRORED) !== 0) {
    const failedLegs = Atomics.load(w, pb + D.AUX);
    if (failedLegs >= w[pb + D.SPARE]!) Atomics.compareExchange(w, pb + D.RESULT, 0, -EIO);
  }
  Atomics.store(w, pb + D.STATUS, DescStatus.DONE);
  // Cannot fail: the ring holds every parent index at most once and has room for all of them.
  if (!pushSure(v.completion, parent, undefined, PUSH_TIMEOUT_MS)) throw new Error(`completion ring refused parent ${parent} for ${PUSH_TIMEOUT_MS} ms`);
  return true;
}

/** A sub finished with `errno` (0 = success): account it, free it, release its parent. */
export function finishSub(v: SharedViews, sub: number, errno: number): boolean {
  const w = v.words;
  const sb = sub * DESC_WORDS;
  const parent = w[sb + D.PARENT]!;
  const element = w[sb + D.TARGET]!;
  if (errno !== 0) failParent(v, parent, element, errno);
  if (element >= 0) Atomics.sub(v.elemQueued, element, 1);
  v.table.reset(sub);
  v.subPool.free(sub - v.params.parents);
  if (v.subFreedBell.sleepers() > 0) v.subFreedBell.ring();
  return releaseParent(v, parent);
}
