// The scale-out model (bench/scale-out-sim.ts, docs/scale-out.md), run as users run it: the built
// script with --json. It models, so these check that it is reproducible, that its figures obey
// the rules it is built on (lease timing, the rebuild formula, the slower leg, the cluster cap),
// and that bad input gets a clear error. Needs `pnpm exec tsc -p bench` (scripts/test.sh does it).
import { existsSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from './lib/daemon.js';
import { explain, run, type RunResult } from './lib/proc.js';

const SIM = path.join(REPO_ROOT, 'bench', 'dist', 'scale-out-sim.js');

interface Q { p50: number; p99: number; max: number }
interface Lat { syncMirror: Q; writeBehind: Q; degraded: Q; degradedRead: Q; rbdWrite: Q }
interface Out {
  params: Record<string, number>;
  sources: Record<string, string>;
  summary: {
    detectMs: Q; blocklistMs: Q; failoverMs: Q; outageMs: Q; rebuildMs: Q; allOptimalMs: Q;
    rhoSteady: number; rhoPeak: number; peakRebuildMiBPerSec: number; rebuildStreamsMax: number;
    osdsLost: number; backfillGiB: number; backfillDoneMs: Q | null; inactivePgShare: number;
    steady: Lat; duringRebuild: Lat;
  };
}

const sim = (args: readonly string[]): Promise<RunResult> => run(process.execPath, [SIM, ...args], { timeoutMs: 60_000 });

async function simJson(args: readonly string[]): Promise<Out> {
  const r = await sim([...args, '--json']);
  expect(r.code, explain(r)).toBe(0);
  return JSON.parse(r.stdout) as Out;
}

describe('bench/scale-out-sim', () => {
  it('is built', () => {
    expect(existsSync(SIM), `${SIM} is missing: run pnpm exec tsc -p bench`).toBe(true);
  });

  it('the same seed gives the same output; another seed another one', async () => {
    const a = await sim(['--trials', '5', '--json']);
    const b = await sim(['--trials', '5', '--json']);
    const c = await sim(['--trials', '5', '--seed', '7', '--json']);
    expect(a.code, explain(a)).toBe(0);
    expect(b.stdout).toBe(a.stdout);
    expect(c.stdout).not.toBe(a.stdout);
  });

  it('default run: lease timing, failover, the rebuild formula and the slower leg', async () => {
    const { params: p, summary: s, sources } = await simJson([]);
    expect(p.hosts).toBe(10);
    expect(p.osds).toBe(30);
    // Detection lies between the lease minus one renewal interval and the lease plus one poll.
    expect(s.detectMs.p50).toBeGreaterThanOrEqual(p.leaseMs! - p.renewMs!);
    expect(s.detectMs.max).toBeLessThanOrEqual(p.leaseMs! + p.pollMs!);
    expect(s.failoverMs.p50).toBeGreaterThan(p.engineOpenMs!);
    expect(s.outageMs.max).toBeLessThanOrEqual(s.detectMs.max + s.failoverMs.max + 1e-6);
    // An unloaded cluster: each rebuild runs at the throttle, so time = allocated bytes / rate.
    const expectMs = ((p.volumeGiB! * 1024 * p.fillRatio!) / p.rebuildMiBPerSec!) * 1000;
    expect(s.rebuildMs.p50).toBeGreaterThan(expectMs * 0.999);
    expect(s.rebuildMs.p50).toBeLessThan(expectMs * 1.001);
    expect(s.peakRebuildMiBPerSec).toBeCloseTo(p.rebuildMiBPerSec! * s.rebuildStreamsMax, 3);
    expect(s.rhoPeak).toBeGreaterThan(s.rhoSteady);
    // raid1 waits for the slower leg (RBD); write-behind only for the local one.
    expect(s.steady.syncMirror.p50).toBeGreaterThan(s.steady.rbdWrite.p50);
    expect(s.steady.writeBehind.p99).toBeLessThan(s.steady.syncMirror.p50);
    expect(sources.rebuildMiBPerSec).toMatch(/^measured: .*bench\/results\/rebuild/);
    expect(sources.volumeGiB).toMatch(/^assumed/);
  });

  it('100 hosts with a rack down: every volume of the rack fails over and is rebuilt', async () => {
    const { summary: s } = await simJson(['--hosts', '100', '--fail', '10', '--trials', '3']);
    expect(s.rebuildStreamsMax).toBe(80);
    expect(s.allOptimalMs.max).toBeGreaterThan(s.outageMs.max);
  });

  it('a small cluster limits the rebuilds and slows every write during them', async () => {
    const { params: p, summary: s } = await simJson(['--hosts', '20', '--osds', '8', '--fail', '8', '--trials', '3']);
    const unbound = ((p.volumeGiB! * 1024 * p.fillRatio!) / p.rebuildMiBPerSec!) * 1000;
    expect(s.rhoPeak).toBeLessThanOrEqual(0.95 + 1e-9);
    expect(s.rhoPeak).toBeGreaterThan(0.9);
    expect(s.rebuildMs.p50).toBeGreaterThan(unbound * 1.5);
    expect(s.duringRebuild.syncMirror.p50).toBeGreaterThan(s.steady.syncMirror.p50 * 2);
  });

  it('hyperconverged: the dead hosts take their OSDs; Ceph backfills after down-out; PGs below min_size', async () => {
    const { params: p, summary: s } = await simJson(['--hosts', '100', '--fail', '10', '--osds-per-host', '3', '--trials', '2']);
    expect(p.osds).toBe(300);
    expect(s.osdsLost).toBe(30);
    // 800 volumes × 50 GiB × 3 replicas over 300 OSDs = 400 GiB each; 30 of them lost.
    expect(s.backfillGiB).toBeCloseTo(12_000, 6);
    // An idle cluster: 270 surviving OSDs × 100 MiB/s, from the down-out interval on.
    const doneMs = p.downOutMs! + ((12_000 * 1024) / (270 * p.backfillMiBPerSec!)) * 1000;
    expect(s.backfillDoneMs!.p50).toBeCloseTo(doneMs, 0);
    // P(≥ 2 of a PG's 3 hosts among the 10 dead of 100) = (C(10,2)·90 + C(10,3)) / C(100,3).
    expect(s.inactivePgShare).toBeCloseTo((45 * 90 + 120) / 161_700, 9);
    const r = await sim(['--osds', '30', '--osds-per-host', '3']);
    expect(r.code, explain(r)).toBe(2);
    expect(r.stderr).toMatch(/--osds and --osds-per-host exclude each other/);
  });

  it('a cluster the clients alone saturate is reported, not simulated forever', async () => {
    const r = await sim(['--osds', '3', '--host-write-iops', '50000', '--trials', '1']);
    expect(r.code, explain(r)).toBe(1);
    expect(r.stderr).toMatch(/never finish: the client load alone saturates the cluster/);
  });

  it('bad input: exit 2 with the flag named', async () => {
    const cases: [string[], RegExp][] = [
      [['--hosts', '1'], /--hosts: 1 is out of range/],
      [['--hosts', 'ten'], /--hosts: "ten" is not a number/],
      [['--fail', '10'], /--fail 10: at least one of the 10 hosts must survive/],
      [['--osd-write-p99-ms', '0.1'], /--osd-write-p99 must be at least --osd-write-median/],
      [['--trials', '2.5'], /--trials: 2.5 must be a whole number/],
      [['--bogus', '1'], /Unknown option '--bogus'/],
    ];
    for (const [args, msg] of cases) {
      const r = await sim(args);
      expect(r.code, `${args.join(' ')}: ${explain(r)}`).toBe(2);
      expect(r.stderr).toMatch(msg);
      expect(r.stdout).toBe('');
    }
  });

  it('--help names the source of every default', async () => {
    const r = await sim(['--help']);
    expect(r.code, explain(r)).toBe(0);
    expect(r.stdout).toMatch(/--lease-ms +30000 +Ceph default osd_client_watch_timeout/);
    expect(r.stdout).toMatch(/--stack-write-us +142 +measured/);
  });
});
