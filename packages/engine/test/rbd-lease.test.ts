// The rbd lease's pure parts (remote/rbd-lease.ts): the record format of both versions, client
// addresses and whom a takeover blocklists, and the holder's decision, driven over simulated time
// through partitions, OSD outages, hanging CLI calls and clock steps. No cluster needed.
import { describe, expect, it } from 'vitest';
import {
  type LeaseAction, type LeaseObservation, type LeaseState, decide, deadlineOf, fenceTargets, formatLease, holderClock, marginMs, newLeaseState,
  normalizeAddrs, observe, parseLease, wakeAt,
} from '../dist/remote/rbd-lease.js';

describe('rbd lease record and client addresses', () => {
  it('writes the first version\'s fields, adds addrs only when there are some, and reads both versions', () => {
    const base = { host: 'a-1', seq: 3, leaseMs: 15000, renewedMs: 1700000000000, pid: 42 };
    expect(JSON.parse(formatLease(base))).toEqual(base);
    expect(JSON.parse(formatLease({ ...base, addrs: [] }))).toEqual(base);
    const v2 = formatLease({ ...base, addrs: ['127.0.0.1:0/123456789'] });
    expect(JSON.parse(v2)).toEqual({ ...base, addrs: ['127.0.0.1:0/123456789'] });
    expect(parseLease(v2)).toEqual({ host: 'a-1', leaseMs: 15000, renewedMs: 1700000000000, addrs: ['127.0.0.1:0/123456789'] });
    // The first version (no addrs), as written by an older host: still read.
    expect(parseLease('{"host":"b-2","seq":9,"leaseMs":4000,"renewedMs":5,"pid":7}')).toEqual({ host: 'b-2', leaseMs: 4000, renewedMs: 5, addrs: [] });
    for (const junk of [null, '', 'not json', '42', '[]']) expect(parseLease(junk)?.addrs ?? []).toEqual([]);
    expect(parseLease('{"addrs":["v2:10.0.0.1:0/5", 7, "junk"]}')?.addrs).toEqual(['10.0.0.1:0/5']);
  });

  it('reads addresses as rados_getaddrs and rbd status print them, with or without a type, deduplicated', () => {
    expect(normalizeAddrs('v2:127.0.0.1:0/123456789')).toEqual(['127.0.0.1:0/123456789']);
    expect(normalizeAddrs('127.0.0.1:0/123456789')).toEqual(['127.0.0.1:0/123456789']);
    expect(normalizeAddrs('[v2:10.1.2.3:0/55,v1:10.1.2.3:0/55]')).toEqual(['10.1.2.3:0/55']);
    expect(normalizeAddrs('v2:[::1]:0/7,any:10.0.0.2:6800/9')).toEqual(['[::1]:0/7', '10.0.0.2:6800/9']);
    expect(normalizeAddrs('client.4 at somewhere; rm -rf /')).toEqual([]);
  });

  it('fences exactly the addresses the lease names, else every watcher', () => {
    const watchers = [{ address: '127.0.0.1:0/111', client: 4100 }, { address: '127.0.0.1:0/222', client: 4200 }];
    // Gateway path or an older holder: every client of the image, as before.
    expect(fenceTargets([], watchers).map((t) => t.addr)).toEqual(['127.0.0.1:0/111', '127.0.0.1:0/222']);
    expect(fenceTargets([], watchers)[0]!.label).toBe('client.4100 at 127.0.0.1:0/111');
    // librbd path: only the holder's client, found among the watchers (the v2: spelling matches loosely).
    const narrow = fenceTargets(normalizeAddrs('v2:127.0.0.1:0/222'), watchers);
    expect(narrow).toEqual([{ addr: '127.0.0.1:0/222', label: 'client.4200 at 127.0.0.1:0/222' }]);
    // Its watch already timed out and nobody else has the image open: still exactly the named one.
    expect(fenceTargets(['127.0.0.1:0/333'], []).map((t) => t.addr)).toEqual(['127.0.0.1:0/333']);
    // Named but not watching while others watch (reopened after its last lease write): named + every watcher.
    expect(fenceTargets(['127.0.0.1:0/333'], watchers).map((t) => t.addr)).toEqual(['127.0.0.1:0/333', '127.0.0.1:0/111', '127.0.0.1:0/222']);
  });
});

/** What a CLI call does in the simulated world, asked when it starts. */
interface World {
  renew(t: number): { endMs: number; ok: boolean } ;
  check(t: number): { endMs: number; unservable: boolean };
}

interface Run { fencedMs: number | null; reason: string | null; okMs: number[]; checks: number; maxOkGapMs: number }

/**
 * Drives decide/observe like the keeper of rbd-lock.ts: a tick every 100 ms of simulated time, CLI
 * calls that end when the world says or are killed at their timeout (a failure). Returns when it
 * fenced and the write starts of the successful renewals.
 */
function simulate(leaseMs: number, world: World, untilMs: number): Run {
  let s: LeaseState = newLeaseState(leaseMs, 0);
  const pending: { at: number; o: LeaseObservation }[] = [];
  const run: Run = { fencedMs: null, reason: null, okMs: [0], checks: 0, maxOkGapMs: 0 };
  for (let t = 0; t <= untilMs; t += 100) {
    pending.sort((a, b) => a.at - b.at);
    while (pending.length > 0 && pending[0]!.at <= t) s = observe(s, t, pending.shift()!.o);
    const d = decide(s, t);
    s = d.state;
    for (const a of d.actions) start(a, t);
    if (s.fenced !== null) {
      run.fencedMs = t;
      run.reason = s.fenced;
      return run;
    }
    expect(wakeAt(s)).toBeLessThanOrEqual(deadlineOf(s));
  }
  return run;

  function start(a: LeaseAction, t: number): void {
    if (a.kind === 'renew') {
      const w = world.renew(t);
      const killed = w.endMs > t + a.timeoutMs;
      const at = killed ? t + a.timeoutMs : w.endMs;
      if (w.ok && !killed) {
        run.maxOkGapMs = Math.max(run.maxOkGapMs, t - run.okMs[run.okMs.length - 1]!);
        run.okMs.push(t);
        pending.push({ at, o: { kind: 'renewed', writeStartMs: t } });
      } else pending.push({ at, o: { kind: 'renewFailed', why: killed ? 'timed out' : 'failed' } });
    } else if (a.kind === 'check') {
      run.checks++;
      const w = world.check(t);
      const killed = w.endMs > t + a.timeoutMs;
      pending.push({ at: killed ? t + a.timeoutMs : w.endMs, o: { kind: 'checked', startedMs: t, unservableAtMs: !killed && w.unservable ? t : null } });
    }
  }
}

const L = 15_000;
const M = marginMs(L);

describe('rbd lease: when the holder stops serving', () => {
  it('uses a margin of lease/6 (1 s at least, lease/3 at most)', () => {
    expect(M).toBe(2500);
    expect(marginMs(4000)).toBe(1000);
    expect(marginMs(2000)).toBe(666);
    expect(marginMs(300_000)).toBe(50_000);
  });

  it('a healthy cluster: renews every lease/3 and never stops', () => {
    const run = simulate(L, { renew: (t) => ({ endMs: t + 300, ok: true }), check: (t) => ({ endMs: t + 300, unservable: false }) }, 120_000);
    expect(run.fencedMs).toBeNull();
    expect(run.checks).toBe(0);
    expect(run.okMs.length).toBeGreaterThanOrEqual(23);
  });

  it('a partition (every CLI call hangs, the monitors too): stops before any other host can conclude the lease expired', () => {
    const cut = 20_000;
    const run = simulate(L, {
      renew: (t) => (t < cut ? { endMs: t + 300, ok: true } : { endMs: Infinity, ok: false }),
      check: () => ({ endMs: Infinity, unservable: false }),
    }, 120_000);
    const lastOk = run.okMs[run.okMs.length - 1]!;
    // A taker's first read sees the last write at lastOk at the earliest; it concludes a lease + 1 s later.
    expect(run.fencedMs).not.toBeNull();
    expect(run.fencedMs!).toBeLessThanOrEqual(lastOk + L - M + 100);
    expect(run.fencedMs!).toBeLessThan(lastOk + L + 1000 - M);
    expect(run.reason).toMatch(/monitors did not show its lock object unservable/);
  });

  it('the monitors answer "servable" but renewals keep failing fast: stops at the same deadline, retrying meanwhile', () => {
    const cut = 20_000;
    let renewals = 0;
    const run = simulate(L, {
      renew: (t) => { renewals++; return t < cut ? { endMs: t + 200, ok: true } : { endMs: t + 200, ok: false }; },
      check: (t) => ({ endMs: t + 400, unservable: false }),
    }, 120_000);
    const lastOk = run.okMs[run.okMs.length - 1]!;
    expect(run.fencedMs!).toBeGreaterThan(lastOk + L - M - 200);
    expect(run.fencedMs!).toBeLessThanOrEqual(lastOk + L - M + 100);
    expect(renewals).toBeGreaterThan(run.okMs.length + 5); // retried about every second, not once a period
    expect(run.checks).toBeGreaterThanOrEqual(2);
  });

  it('an OSD outage (renewals hang, the monitors say no OSD up): serves on and renews once the OSD is back', () => {
    const down = 20_000;
    const back = 50_000; // 30 s away: twice the lease
    const run = simulate(L, {
      // An op to an inactive PG waits in the client and completes once it is active again (2 s of peering).
      renew: (t) => (t < down ? { endMs: t + 300, ok: true } : t < back + 2000 ? { endMs: back + 2300, ok: true } : { endMs: t + 300, ok: true }),
      check: (t) => ({ endMs: t + 500, unservable: t >= down && t < back }),
    }, 120_000);
    expect(run.fencedMs, run.reason ?? '').toBeNull();
    expect(run.okMs.some((x) => x > back)).toBe(true);
  });

  it('the OSD back but renewals still failing: stops a lease − margin after the monitors last said "unservable"', () => {
    const down = 20_000;
    const back = 50_000;
    let lastStranded = -1;
    const run = simulate(L, {
      renew: (t) => (t < down ? { endMs: t + 300, ok: true } : { endMs: t + 300, ok: false }),
      check: (t) => { const u = t >= down && t < back; if (u) lastStranded = t; return { endMs: t + 500, unservable: u }; },
    }, 120_000);
    expect(run.fencedMs).not.toBeNull();
    expect(run.fencedMs!).toBeGreaterThan(back);
    // A taker's watch cannot start before the object is servable again (after lastStranded).
    expect(run.fencedMs!).toBeLessThanOrEqual(lastStranded + L - M + 100);
    expect(run.reason).toMatch(/monitors last showed its lock object unservable 1\d\.\d s ago/);
  });

  it('a renewal that hangs past the deadline and then succeeds does not revive the lease', () => {
    let s = newLeaseState(L, 0);
    let d = decide(s, 5000);
    expect(d.actions).toEqual([{ kind: 'renew', timeoutMs: L - M - 5000 }]);
    s = d.state;
    d = decide(s, L - M); // the timer fires while the renewal still hangs
    expect(d.actions[0]?.kind).toBe('fence');
    s = d.state;
    expect(observe(s, L - M + 50, { kind: 'renewed', writeStartMs: 5000 }).fenced).not.toBeNull();
    // A late timer: the success is observed after the deadline, before decide ran: still fenced.
    const late = observe({ ...newLeaseState(L, 0), renewing: true }, L - M + 300, { kind: 'renewed', writeStartMs: 5000 });
    expect(late.fenced).toMatch(/not renewed for 12\.8 s/);
  });

  it('a stranded answer arriving after the deadline does not revive the lease either', () => {
    const s = { ...newLeaseState(L, 0), checking: true };
    expect(observe(s, L - M, { kind: 'checked', startedMs: L - M - 1000, unservableAtMs: L - M - 1000 }).fenced).not.toBeNull();
    const inTime = observe(s, L - M - 1, { kind: 'checked', startedMs: L - M - 1000, unservableAtMs: L - M - 1000 });
    expect(inTime.fenced).toBeNull();
    expect(deadlineOf(inTime)).toBe(L - M - 1000 + L - M);
  });

  it('bounds the monitors\' answer to end before the deadline, and asks only while a renewal is overdue', () => {
    const s = { ...newLeaseState(L, 0), renewing: true };
    expect(decide(s, 5500).actions).toEqual([]);
    const d = decide(s, 6000);
    expect(d.actions).toEqual([{ kind: 'check', timeoutMs: 5000 }]);
    // Too close to the deadline: no check is started (it could not help), the fence comes on time.
    expect(decide({ ...s, lastCheckMs: 6000 }, L - M - 900).actions).toEqual([]);
    const near = decide({ ...s, lastCheckMs: 6000 }, L - M - 2000).actions;
    expect(near).toEqual([{ kind: 'check', timeoutMs: 1500 }]);
  });

  it('a kick (new client addresses) renews at once', () => {
    const s = observe(newLeaseState(L, 0), 1000, { kind: 'kick' });
    expect(decide(s, 1000).actions).toEqual([{ kind: 'renew', timeoutMs: L - M - 1000 }]);
  });
});

describe('rbd lease: the holder\'s clock', () => {
  it('follows the larger elapsed time of the monotonic and the boot clock, never goes back, and reads no wall clock', () => {
    let mono = 1000;
    let boot = 50_000;
    const now = holderClock(() => mono, () => boot);
    expect(now()).toBe(1000);
    mono += 500; boot += 500;
    expect(now()).toBe(1500);
    mono += 100; boot += 90; // /proc/uptime's 10 ms steps: no drift accumulates
    expect(now()).toBe(1600);
    mono += 100; boot += 110;
    expect(now()).toBe(1700);
    mono += 100; boot += 100;
    expect(now()).toBe(1800);
    boot += 60_000; // suspended for a minute: the monotonic clock stood still
    expect(now()).toBe(61_800);
    mono += 100; boot += 100; // after resume both run again; never back
    expect(now()).toBe(61_900);
  });

  it('falls back to the monotonic clock alone where the boot clock cannot be read', () => {
    let mono = 0;
    const now = holderClock(() => mono, () => NaN);
    mono += 700;
    expect(now()).toBe(700);
  });

  it('a suspend longer than the lease is a fence on resume, whatever the wall clock did', () => {
    let mono = 0;
    let boot = 0;
    const now = holderClock(() => mono, () => boot);
    const s = newLeaseState(L, now());
    mono += 1000; boot += 1000;
    expect(decide(s, now()).actions).toEqual([]);
    boot += 20_000;
    expect(decide(s, now()).actions[0]?.kind).toBe('fence');
  });
});
