// Transport-aware I/O: per-element latency and throughput EWMAs in shared memory, which the read
// rule (read-choice.ts) uses to send a mirrored read to the copy expected to answer first
// (docs/transport.md).
//
// Latency is the element's service time: from the moment the bottom stage starts a sub (sync
// call, io_uring batch submission, or remote request) to its completion, in µs, successful
// READs and WRITEs only. It is updated on every completion with integer maths and one CAS, no
// allocation. Throughput is folded per element in windows of at least WINDOW_MS from the
// 64-bit byte counters (shared-layout elemIo), by whichever thread first sees the window end
// (a completion, or a status reader), so an idle element decays towards 0.
import type { ElementLatencyStatus } from '../api-types.js';
import { ELEM_IO, ELEM_IO_WORDS, ELEM_LAT, ELEM_LAT_WORDS, ELEM_MARK, ELEM_MARK_WORDS } from './shared-layout.js';

/**
 * EWMA gain 1/8 (shift 3), TCP's SRTT gain (RFC 6298): one outlier (a page-cache miss among
 * hits) moves the mean by an eighth, a lasting change is followed within ~16 samples. Stored
 * ×16 so µs-scale local latencies keep fractional precision in an Int32.
 */
const GAIN_SHIFT = 3;
const SCALE = 16;
/** Samples are clamped here so SCALE × sample stays far inside int32 (a 60 s op is a failure anyway). */
const SAMPLE_MAX_US = 60_000_000;
/** Throughput windows: at least this long; the weight of a window is 1 - exp(-elapsed / TAU). */
export const WINDOW_MS = 200;
const TAU_MS = 1000;
const MS_MASK = 0x7fffffff;

/**
 * A latency EWMA with no new sample for this long is stale: the read rule probes the leg at the
 * next chance (read-choice.ts), and that sample restarts the mean instead of moving it by 1/8.
 * Without it a leg that stopped getting reads (a cold first read, a past hiccup) would be judged
 * by an old figure for as long as it is avoided.
 */
export const STALE_MS = 1000;

/** Wall-clock ms, 31 bits (differences are taken mod 2^31: right for spans under 12 days); never 0. */
export function nowMs(): number {
  return Date.now() & MS_MASK || 1; // 0 means "never"
}

function ageMs(now: number, at: number): number {
  return at === 0 ? Infinity : (now - at) & MS_MASK;
}

/** Records one successful element READ (`read` true) or WRITE that took `us` µs of service, at `now` (nowMs). */
export function recordLatency(lat: Int32Array, element: number, read: boolean, us: number, now = nowMs()): void {
  const base = element * ELEM_LAT_WORDS;
  const at = base + (read ? ELEM_LAT.READ_US_X16 : ELEM_LAT.WRITE_US_X16);
  const stamp = base + (read ? ELEM_LAT.READ_AT_MS : ELEM_LAT.WRITE_AT_MS);
  const sample = (us > SAMPLE_MAX_US ? SAMPLE_MAX_US : us > 0 ? us : 0) * SCALE | 0;
  const old = Atomics.load(lat, at);
  // 0 = no sample yet, or a stale one: the new sample is taken as it is; a stored value is never 0.
  const fresh = old !== 0 && ageMs(now, Atomics.load(lat, stamp)) <= STALE_MS;
  const next = fresh ? old + ((sample - old) >> GAIN_SHIFT) : sample;
  // One try: a concurrent update by another worker wins and this sample is dropped (an EWMA
  // loses nothing that matters; a retry loop would be unbounded under contention).
  if (Atomics.compareExchange(lat, at, old, next === 0 ? 1 : next) === old) Atomics.store(lat, stamp, now);
}

/** The read (or write) latency EWMA in µs, 0 when the element has no sample yet. */
export function latencyUs(lat: Int32Array, element: number, read: boolean): number {
  return Atomics.load(lat, element * ELEM_LAT_WORDS + (read ? ELEM_LAT.READ_US_X16 : ELEM_LAT.WRITE_US_X16)) / SCALE;
}

/** True when the element's read EWMA has no sample of the last STALE_MS (or none at all). */
export function readIsStale(lat: Int32Array, element: number, now: number): boolean {
  return ageMs(now, Atomics.load(lat, element * ELEM_LAT_WORDS + ELEM_LAT.READ_AT_MS)) > STALE_MS;
}

/**
 * Closes the element's throughput window when it is WINDOW_MS old (cheap check otherwise). Any
 * thread; only the thread whose CAS moves the window start folds it.
 */
export function foldThroughput(lat: Int32Array, mark: BigInt64Array, elemIo: BigInt64Array, element: number, now = nowMs()): void {
  const base = element * ELEM_LAT_WORDS;
  const start = Atomics.load(lat, base + ELEM_LAT.WINDOW_MS);
  const elapsedMs = (now - start) & MS_MASK;
  if (start !== 0 && elapsedMs < WINDOW_MS) return;
  if (Atomics.compareExchange(lat, base + ELEM_LAT.WINDOW_MS, start, now) !== start) return;
  const io = element * ELEM_IO_WORDS;
  const mb = element * ELEM_MARK_WORDS;
  const pairs = [[ELEM_IO.READ_BYTES, ELEM_MARK.READ_BYTES, ELEM_LAT.READ_KIBPS], [ELEM_IO.WRITE_BYTES, ELEM_MARK.WRITE_BYTES, ELEM_LAT.WRITE_KIBPS]] as const;
  for (const [counter, markWord, rateWord] of pairs) {
    const bytes = Atomics.load(elemIo, io + counter);
    const before = Atomics.exchange(mark, mb + markWord, bytes);
    if (start === 0) continue; // first window: marks only
    const kib = Number(bytes - before) / 1024;
    const rate = kib / (elapsedMs / 1000);
    const old = Atomics.load(lat, base + rateWord);
    const weight = 1 - Math.exp(-elapsedMs / TAU_MS);
    Atomics.store(lat, base + rateWord, Math.min(MS_MASK, Math.round(old + weight * (rate - old))));
  }
}

/** Status view of one element (folds a window that is due first, so idle elements read ~0). */
export function readLatency(lat: Int32Array, mark: BigInt64Array, elemIo: BigInt64Array, element: number): ElementLatencyStatus {
  foldThroughput(lat, mark, elemIo, element);
  const base = element * ELEM_LAT_WORDS;
  const us = (read: boolean): number | null => {
    const x = latencyUs(lat, element, read);
    return x === 0 ? null : Math.round(x * 10) / 10;
  };
  const mibps = (word: number): number => Math.round((Atomics.load(lat, base + word) / 1024) * 100) / 100;
  return { readUsEwma: us(true), writeUsEwma: us(false), readMiBPerSec: mibps(ELEM_LAT.READ_KIBPS), writeMiBPerSec: mibps(ELEM_LAT.WRITE_KIBPS) };
}

/** Another element took the slot: it starts unknown. */
export function resetLatency(lat: Int32Array, mark: BigInt64Array, element: number): void {
  for (let k = 0; k < ELEM_LAT_WORDS; k++) Atomics.store(lat, element * ELEM_LAT_WORDS + k, 0);
  for (let k = 0; k < ELEM_MARK_WORDS; k++) Atomics.store(mark, element * ELEM_MARK_WORDS + k, 0n);
}
