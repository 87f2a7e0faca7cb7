// Completion bookkeeping shared by the middle and bottom stages: a sub finishes, its parent's
// PENDING count drops, and whoever brings it to zero finalises the parent and hands it to the
// main thread through the completion ring.
import { D, DESC_WORDS, DescStatus, Op, pushSure } from '@onestack/queue';
import type { ElementIoStats } from '../api-types.js';
import { errnoCode } from './errno.js';
import { ELEM_IO, ELEM_IO_WORDS, PUSH_TIMEOUT_MS, type SharedViews } from './shared-layout.js';
import { FLAG_MIRRORED, STATE_ACTIVE, STATE_FAILED, STATE_REBUILDING } from './topology.js';
import { foldThroughput, nowMs, recordLatency } from './transport.js';

const EIO = errnoCode('EIO');
const EINVAL = errnoCode('EINVAL');

/**
 * Sub word that names the leg's mirror partner for the per-pair rule (raid10 writes, trims,
 * zeroes, flushes); the middle stage fills it. Values: PEER_NONE (0, what a reset sub holds, so
 * a sub nobody marked never takes the rule), PEER_UNWRITTEN, or peerWord(partner element).
 */
export const SUB_PEER = D.AUX;
/** No per-pair rule for this sub (raid1, reads, non-mirrored layouts): the counting rule or none. */
export const PEER_NONE = 0;
/** The partner was not active when the request was planned, so it got no copy: this leg alone holds it. */
export const PEER_UNWRITTEN = -1;

/** The SUB_PEER value naming `element` as the partner that got the same copy. */
export function peerWord(element: number): number {
  return element + 1;
}

/** Records a failure on a parent. Mirror legs that fail for a device reason are marked failed. */
export function failParent(v: SharedViews, parent: number, element: number, errno: number): void {
  const w = v.words;
  const pb = parent * DESC_WORDS;
  const mirrored = (w[pb + D.FLAGS]! & FLAG_MIRRORED) !== 0;
  if (element >= 0) Atomics.add(v.elemErrors, element, 1);
  if (mirrored && element >= 0 && errno !== EINVAL) {
    // The leg no longer holds what the others hold: take it out before the write is acked.
    // A leg being rebuilt was not counted as a holder (middle-core SPARE), so it is not counted here.
    const before = Atomics.exchange(v.elemState, element, STATE_FAILED);
    if (before !== STATE_REBUILDING) Atomics.add(w, pb + D.AUX, 1);
  } else {
    Atomics.compareExchange(w, pb + D.RESULT, 0, -errno);
  }
}

/**
 * The per-pair rule, run when a raid10 leg's sub ends (after failParent marked a failing leg):
 * the request fails unless some leg of the pair holds its data and is still active. A leg that
 * ends not active (failed here or by anyone else) counts as not holding it; then the partner
 * must be active, and must have been written (PEER_UNWRITTEN otherwise).
 *
 * Exact without a lock: each ending leg stores its own state (failParent) before loading its
 * partner's, all seq_cst. When both legs end not active, the later of the two in that total
 * order sees the other's state, so at least one of them fails the request. A partner that is
 * active when loaded either finished its own sub while active (it holds the data) or is still
 * running, and then applies this rule itself when it ends.
 */
function checkPair(v: SharedViews, parent: number, element: number, peer: number): void {
  if (Atomics.load(v.elemState, element) === STATE_ACTIVE) return;
  // peer - 1 undoes peerWord.
  const partnerHolds = peer !== PEER_UNWRITTEN && Atomics.load(v.elemState, peer - 1) === STATE_ACTIVE;
  if (!partnerHolds) Atomics.compareExchange(v.words, parent * DESC_WORDS + D.RESULT, 0, -EIO);
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
  // The counting rule: SPARE = failed legs that fail the request (raid1 writes: every leg
  // written; mirrored reads: 1). SPARE = 0: the per-pair rule (checkPair) decides instead.
  const spare = w[pb + D.SPARE]!;
  if ((w[pb + D.FLAGS]! & FLAG_MIRRORED) !== 0 && spare > 0) {
    const failedLegs = Atomics.load(w, pb + D.AUX);
    if (failedLegs >= spare) Atomics.compareExchange(w, pb + D.RESULT, 0, -EIO);
  }
  Atomics.store(w, pb + D.STATUS, DescStatus.DONE);
  // Cannot fail: the ring holds every parent index at most once and has room for all of them.
  if (!pushSure(v.completion, parent, undefined, PUSH_TIMEOUT_MS)) throw new Error(`completion ring refused parent ${parent} for ${PUSH_TIMEOUT_MS} ms`);
  return true;
}

/**
 * Counts one successful element READ or WRITE of `lengthBytes` (other ops are not counted).
 * Any thread: the bottom and remote loops where subs end, the fast lane on the main thread.
 */
export function countElementIo(elemIo: BigInt64Array, element: number, op: number, lengthBytes: number): void {
  if (op !== Op.READ && op !== Op.WRITE) return;
  const base = element * ELEM_IO_WORDS;
  if (!(element >= 0 && base < elemIo.length && lengthBytes >= 0)) throw new Error(`element I/O counter: element ${element} or length ${lengthBytes} out of range`);
  const read = op === Op.READ;
  Atomics.add(elemIo, base + (read ? ELEM_IO.READ_OPS : ELEM_IO.WRITE_OPS), 1n);
  Atomics.add(elemIo, base + (read ? ELEM_IO.READ_BYTES : ELEM_IO.WRITE_BYTES), BigInt(lengthBytes));
}

/** The element's counters now (each word read atomically; the four are not one snapshot). */
export function readElementIo(elemIo: BigInt64Array, element: number): ElementIoStats {
  const base = element * ELEM_IO_WORDS;
  if (!(Number.isInteger(element) && element >= 0 && base < elemIo.length)) throw new Error(`element I/O counter: element ${element} out of range`);
  const at = (k: number): number => Number(Atomics.load(elemIo, base + k));
  return { readOps: at(ELEM_IO.READ_OPS), writeOps: at(ELEM_IO.WRITE_OPS), readBytes: at(ELEM_IO.READ_BYTES), writeBytes: at(ELEM_IO.WRITE_BYTES) };
}

/** Zeroes an element slot's counters: another element took the slot. */
export function resetElementIo(elemIo: BigInt64Array, element: number): void {
  const base = element * ELEM_IO_WORDS;
  if (!(Number.isInteger(element) && element >= 0 && base < elemIo.length)) throw new Error(`element I/O counter: element ${element} out of range`);
  for (let k = 0; k < ELEM_IO_WORDS; k++) Atomics.store(elemIo, base + k, 0n);
}

/**
 * A sub finished with `errno` (0 = success): account it, free it, release its parent.
 * `serviceUs`: how long the element took (bottom stage start to completion), < 0 = not timed.
 */
export function finishSub(v: SharedViews, sub: number, errno: number, serviceUs = -1): boolean {
  const w = v.words;
  const sb = sub * DESC_WORDS;
  const parent = w[sb + D.PARENT]!;
  const element = w[sb + D.TARGET]!;
  const peer = w[sb + SUB_PEER]!;
  if (peer < PEER_UNWRITTEN || peer > v.params.maxElements) throw new Error(`sub ${sub}: peer word ${peer} names no element`);
  // Read before table.reset clears the sub.
  if (errno === 0 && element >= 0) {
    const op = w[sb + D.OP]!;
    countElementIo(v.elemIo, element, op, w[sb + D.LENGTH]!);
    const now = nowMs();
    if (serviceUs >= 0 && (op === Op.READ || op === Op.WRITE)) recordLatency(v.elemLat, element, op === Op.READ, serviceUs, now);
    foldThroughput(v.elemLat, v.elemMark, v.elemIo, element, now);
  }
  if (errno !== 0) failParent(v, parent, element, errno);
  if (peer !== PEER_NONE && element >= 0) checkPair(v, parent, element, peer);
  if (element >= 0) Atomics.sub(v.elemQueued, element, 1);
  v.table.reset(sub);
  v.subPool.free(sub - v.params.parents);
  if (v.subFreedBell.sleepers() > 0) v.subFreedBell.ring();
  return releaseParent(v, parent);
}
