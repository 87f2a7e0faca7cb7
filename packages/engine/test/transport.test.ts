// Transport-aware reads (docs/transport.md): the latency-aware read rule as a pure function,
// the integer EWMA, and the throughput windows, on plain shared arrays.
import { describe, expect, it } from 'vitest';
import { ELEM_IO, ELEM_IO_WORDS, ELEM_LAT, ELEM_LAT_WORDS, ELEM_MARK_WORDS } from '../src/datapath/shared-layout.js';
import { PROBE_EVERY, PROBE_STRETCH_MAX, TIE_FACTOR, pickFastestLeg, pickLeg, readPolicyFromEnv } from '../src/datapath/read-choice.js';
import { STALE_MS, WINDOW_MS, foldThroughput, latencyUs, readIsStale, readLatency, recordLatency, resetLatency } from '../src/datapath/transport.js';

const lat = (table: Record<number, number>) => (role: number): number => table[role] ?? 0;
const queue = (table: Record<number, number>) => (role: number): number => table[role] ?? 0;

/** How often each role is picked over `n` consecutive rotations. */
function shares(pick: (rotation: number) => number, n: number): Map<number, number> {
  const out = new Map<number, number>();
  for (let r = 0; r < n; r++) out.set(pick(r), (out.get(pick(r)) ?? 0) + 1);
  return out;
}

describe('pickFastestLeg', () => {
  it('sends reads to the leg with the lowest latency × (queued + 1); a much slower leg is probed once in PROBE_EVERY × 64', () => {
    const n = PROBE_EVERY * PROBE_STRETCH_MAX * 4;
    const s = shares((r) => pickFastestLeg([0, 1], queue({}), lat({ 0: 50, 1: 20_000 }), r), n);
    expect(s.get(1)).toBe(4); // exactly the probes
    expect(s.get(0)).toBe(n - 4);
  });

  it('a leg k times slower is probed once in PROBE_EVERY × k decisions (k a power of two), never while it has reads queued', () => {
    const n = PROBE_EVERY * 64;
    // 150 / 50 = 3 → 4: one probe per 256 decisions.
    expect(shares((r) => pickFastestLeg([0, 1], queue({}), lat({ 0: 50, 1: 150 }), r), n).get(1)).toBe(n / 256);
    expect(shares((r) => pickFastestLeg([0, 1], queue({ 1: 1 }), lat({ 0: 50, 1: 150 }), r), n).get(1)).toBeUndefined();
  });

  it('queue depth counts: a busy fast leg loses to an idle one once its expected time is TIE_FACTOR worse', () => {
    // 100 µs × (30 + 1) = 3.1 ms vs 1 ms × 1: the remote is expected first.
    expect(pickFastestLeg([0, 1], queue({ 0: 30 }), lat({ 0: 100, 1: 1000 }), 1)).toBe(1);
    expect(pickFastestLeg([0, 1], queue({ 0: 3 }), lat({ 0: 100, 1: 1000 }), 1)).toBe(0);
  });

  it('legs within TIE_FACTOR share the reads as before (least queued, ties alternate)', () => {
    expect(TIE_FACTOR).toBeGreaterThan(1);
    const s = shares((r) => pickFastestLeg([0, 1], queue({}), lat({ 0: 40, 1: 70 }), r), 1000);
    expect(s.get(0)).toBe(500);
    expect(s.get(1)).toBe(500);
    expect(pickFastestLeg([0, 1], queue({ 0: 2 }), lat({ 0: 40, 1: 40 }), 1)).toBe(1);
  });

  it('an unknown latency counts as the mean of the known ones; nothing known = least queued', () => {
    // legs 0 (10 µs) and 2 (unknown → mean 505) vs 1 (1000): 0 wins, 2 is not within 2× of 10.
    expect(pickFastestLeg([0, 1, 2], queue({}), lat({ 0: 10, 1: 1000 }), 3)).toBe(0);
    // 1 known at 100, 0 unknown = 100: equal, so they alternate.
    expect([1, 2].map((r) => pickFastestLeg([0, 1], queue({}), lat({ 1: 100 }), r))).toEqual([1, 0]);
    expect([1, 2, 3].map((r) => pickFastestLeg([0, 1, 2], queue({ 0: 1 }), lat({}), r))).toEqual([1, 2, 1]);
  });

  it('never picks a role it was not given (only active legs are passed), one leg or none', () => {
    for (let r = 0; r < 4 * PROBE_EVERY; r++) expect([1, 3]).toContain(pickFastestLeg([1, 3], queue({}), lat({ 0: 1, 1: 9000, 2: 1, 3: 5 }), r));
    expect(pickFastestLeg([2], queue({}), lat({ 2: 1e6 }), 0)).toBe(2);
    expect(pickFastestLeg([], queue({}), lat({}), 0)).toBe(-1);
  });

  it('still picks a leg while the queue words change under it (other threads)', () => {
    let calls = 0;
    const growing = (): number => calls++ * 3; // every read of a queue word sees more queued
    for (let r = 1; r < 200; r++) expect([0, 1]).toContain(pickFastestLeg([0, 1], growing, lat({ 0: 50, 1: 60 }), r));
  });

  it('a slow leg whose figure is stale is probed at the next decision, if idle', () => {
    const stale = (role: number): boolean => role === 1;
    expect(pickFastestLeg([0, 1], queue({}), lat({ 0: 50, 1: 20_000 }), 5, stale)).toBe(1);
    expect(pickFastestLeg([0, 1], queue({ 1: 1 }), lat({ 0: 50, 1: 20_000 }), 5, stale)).toBe(0); // one probe in flight at most
    expect(pickFastestLeg([0, 1], queue({}), lat({ 0: 50, 1: 20_000 }), 5)).toBe(0); // fresh: no probe at rotation 5
  });

  it('probes take the slow legs in turn, and are at most 1 in PROBE_EVERY', () => {
    const n = 2 * PROBE_EVERY * PROBE_STRETCH_MAX;
    const s = shares((r) => pickFastestLeg([0, 1, 2], queue({}), lat({ 0: 10, 1: 5000, 2: 9000 }), r), n);
    expect(s.get(1)).toBe(2);
    expect(s.get(2)).toBe(2);
    // Legs just outside TIE_FACTOR: the most probing there is, 1 in PROBE_EVERY per slow leg at most.
    const close = shares((r) => pickFastestLeg([0, 1], queue({}), lat({ 0: 10, 1: 21 }), r), n);
    expect(close.get(1)).toBeLessThanOrEqual(n / PROBE_EVERY);
    expect(close.get(1)).toBeGreaterThan(0);
  });

  it('policy "queue" is the old rule; the env switch picks it', () => {
    expect(pickLeg('queue', [0, 1], queue({}), lat({ 0: 10, 1: 1e6 }), 1)).toBe(1);
    expect(pickLeg('latency', [0, 1], queue({}), lat({ 0: 10, 1: 1e6 }), 1)).toBe(0);
    expect(readPolicyFromEnv({ ONESTACK_READ_POLICY: 'queue' })).toBe('queue');
    expect(readPolicyFromEnv({})).toBe('latency');
  });
});

describe('latency EWMA', () => {
  const arrays = () => ({ lat: new Int32Array(new SharedArrayBuffer(4 * 4 * ELEM_LAT_WORDS)), mark: new BigInt64Array(new SharedArrayBuffer(8 * 4 * ELEM_MARK_WORDS)), io: new BigInt64Array(new SharedArrayBuffer(8 * 4 * ELEM_IO_WORDS)) });

  it('starts unknown, takes the first sample as is, then moves 1/8 of the way per sample', () => {
    const { lat: l } = arrays();
    expect(latencyUs(l, 2, true)).toBe(0);
    recordLatency(l, 2, true, 100);
    expect(latencyUs(l, 2, true)).toBe(100);
    recordLatency(l, 2, true, 900);
    expect(latencyUs(l, 2, true)).toBe(200);
    expect(latencyUs(l, 2, false)).toBe(0); // writes are separate
    expect(latencyUs(l, 1, true)).toBe(0); // and so are other elements
  });

  it('converges on a steady value, keeps sub-µs precision, and clamps absurd samples', () => {
    const { lat: l } = arrays();
    for (let i = 0; i < 200; i++) recordLatency(l, 0, false, 2.5);
    expect(latencyUs(l, 0, false)).toBeCloseTo(2.5, 1);
    for (let i = 0; i < 200; i++) recordLatency(l, 0, false, 20_000);
    expect(latencyUs(l, 0, false)).toBeGreaterThan(19_000);
    recordLatency(l, 1, true, 1e12);
    expect(latencyUs(l, 1, true)).toBe(60_000_000);
    recordLatency(l, 3, true, -5); // a clock step backwards: recorded as 0, still "known"
    expect(Atomics.load(l, 3 * ELEM_LAT_WORDS + ELEM_LAT.READ_US_X16)).toBe(1);
  });

  it('an EWMA with no sample for STALE_MS is stale, and its next sample restarts it', () => {
    const { lat: l } = arrays();
    const t = 5_000_000;
    recordLatency(l, 0, true, 800, t); // a cold first read
    expect(readIsStale(l, 0, t + STALE_MS)).toBe(false);
    expect(readIsStale(l, 0, t + STALE_MS + 1)).toBe(true);
    expect(latencyUs(l, 0, true)).toBe(800); // the figure stays (status shows it)
    recordLatency(l, 0, true, 16, t + STALE_MS + 5);
    expect(latencyUs(l, 0, true)).toBe(16); // restarted, not 800 + (16 - 800) / 8
    recordLatency(l, 0, true, 32, t + STALE_MS + 6);
    expect(latencyUs(l, 0, true)).toBe(18);
    expect(readIsStale(l, 1, t)).toBe(true); // never sampled
  });

  it('folds throughput per window from the byte counters and decays when idle; status rounds; reset forgets', () => {
    const { lat: l, mark, io } = arrays();
    const t0 = 1_000_000;
    foldThroughput(l, mark, io, 1, t0); // first window: marks only
    Atomics.add(io, ELEM_IO_WORDS + ELEM_IO.READ_BYTES, BigInt(100 * 1048576));
    foldThroughput(l, mark, io, 1, t0 + WINDOW_MS - 1); // not due yet
    expect(Atomics.load(l, ELEM_LAT_WORDS + ELEM_LAT.READ_KIBPS)).toBe(0);
    foldThroughput(l, mark, io, 1, t0 + 10_000); // 100 MiB over 10 s, weight ~1
    expect(Atomics.load(l, ELEM_LAT_WORDS + ELEM_LAT.READ_KIBPS)).toBe(10 * 1024);
    foldThroughput(l, mark, io, 1, t0 + 20_000); // then 10 idle seconds
    expect(Atomics.load(l, ELEM_LAT_WORDS + ELEM_LAT.READ_KIBPS)).toBe(0);
    recordLatency(l, 1, true, 42);
    const s = readLatency(l, mark, io, 1);
    expect(s).toEqual({ readUsEwma: 42, writeUsEwma: null, readMiBPerSec: 0, writeMiBPerSec: 0 });
    resetLatency(l, mark, 1);
    expect(readLatency(l, mark, io, 1).readUsEwma).toBeNull();
  });
});
