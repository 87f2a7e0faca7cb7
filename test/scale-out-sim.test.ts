// The scale-out model (bench/scale-out-sim.ts, docs/scale-out.md), run as users run it: the built
// script with --json. It models, so these check that it is reproducible, that its figures obey
// the rules it is built on (the taker's watch, the holder's self-fencing rule as the engine
// computes it, one takeover at a time per survivor, the rebuild formula, the slower leg, the
// cluster cap), and that bad input gets a clear error. Needs `pnpm exec tsc -p bench` and the
// engine built (scripts/test.sh does both).
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from './lib/daemon.js';
import { explain, run, type RunResult } from './lib/proc.js';

const SIM = path.join(REPO_ROOT, 'bench', 'dist', 'scale-out-sim.js');

interface Q { p50: number; p99: number; max: number }
interface Lat { syncMirror: Q; writeBehind: Q; degraded: Q; degradedRead: Q; rbdWrite: Q }
interface MeanMax { mean: number; max: number }
interface Out {
  params: Record<string, number>;
  sources: Record<string, string>;
  summary: {
    queuedMs: Q; detectMs: Q; lockMs: Q; assemblyMs: Q; outageMs: Q; rebuildMs: Q; allOptimalMs: Q;
    rhoSteady: number; rhoPeak: number; peakRebuildMiBPerSec: number; rebuildStreamsMax: number;
    osdsLost: number; backfillGiB: number; backfillDoneMs: Q | null; inactivePgShare: number;
    steady: Lat; duringRebuild: Lat;
    renewPeriodMs: number; marginMs: number; blocklistsPerFailure: number; extraWatchRounds: number;
    stopsMonOutage: MeanMax; stopsStorageNode: MeanMax; stopsSurvivors: MeanMax;
    storageNodeShare: number; headerTouchedShare: number;
  };
}
const LEASE_JS = path.join(REPO_ROOT, 'packages', 'engine', 'dist', 'remote', 'rbd-lease.js');
const LOCK_TS = path.join(REPO_ROOT, 'packages', 'engine', 'src', 'remote', 'rbd-lock.ts');

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

  it('default run: the watch, fence and assembly add up to the outage; the rebuild formula; the slower leg', async () => {
    const { params: p, summary: s, sources } = await simJson([]);
    expect(p.hosts).toBe(10);
    expect(p.osds).toBe(30);
    // A taker concludes "dead" only after a read issued a whole lease + 1 s after its first one.
    expect(s.detectMs.p50).toBeGreaterThan(p.takerStartMs! + p.leaseMs! + p.watchExtraMs!);
    // Fencing includes one monitor command (the blocklist) and five more CLI calls.
    expect(s.lockMs.p50).toBeGreaterThan(p.monCmdMedianMs!);
    expect(s.assemblyMs.p50).toBeGreaterThan(p.engineOpenMs!);
    // 8 volumes over 9 survivors: nobody waits for another takeover.
    expect(s.queuedMs.max).toBe(0);
    expect(s.outageMs.p50).toBeGreaterThan(s.detectMs.p50);
    expect(s.outageMs.max).toBeLessThanOrEqual(s.detectMs.max + s.lockMs.max + s.assemblyMs.max + 1e-6);
    // One blocklist per volume: the lease names each image's own librbd client.
    expect(s.blocklistsPerFailure).toBe(p.failHosts! * p.volumesPerHost!);
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
    expect(sources.leaseMs).toMatch(/^code: /);
    expect(sources.volumeGiB).toMatch(/^assumed/);
  });

  it('the lease is the engine\'s: same default, same renewal period and margin', async () => {
    const { params: p, summary: s } = await simJson(['--trials', '1']);
    expect(readFileSync(LOCK_TS, 'utf8')).toMatch(new RegExp(`LEASE_MS_DEFAULT = ${p.leaseMs!.toLocaleString('en').replace(/,/g, '_')};`));
    expect(existsSync(LEASE_JS), `${LEASE_JS} is missing: build the engine`).toBe(true);
    const engine = (await import(LEASE_JS)) as { renewPeriodMs: (l: number) => number; marginMs: (l: number) => number };
    expect(s.renewPeriodMs).toBe(engine.renewPeriodMs(p.leaseMs!));
    expect(s.marginMs).toBe(engine.marginMs(p.leaseMs!));
    for (const lease of [2_000, 4_000, 9_000, 60_000, 300_000]) {
      const { summary: x } = await simJson(['--trials', '1', '--lease-ms', String(lease)]);
      expect([x.renewPeriodMs, x.marginMs]).toEqual([engine.renewPeriodMs(lease), engine.marginMs(lease)]);
    }
  });

  it('a shorter lease shortens detection by the difference, within the watch\'s read interval', async () => {
    const { params: p, summary: long } = await simJson([]);
    const { summary: short } = await simJson(['--lease-ms', '4000']);
    const diff = long.detectMs.p50 - short.detectMs.p50;
    expect(Math.abs(diff - (p.leaseMs! - 4000))).toBeLessThan(2 * p.watchPollMs!);
  });

  it('self-fencing: a monitor outage shorter than lease − margin − period stops nobody; one past lease − margin stops every holder', async () => {
    const { params: p, summary: s } = await simJson(['--mon-outage-ms', '3000', '--trials', '3']);
    expect(3000 + 1000 + 3 * p.radosCliP99Ms!).toBeLessThan(p.leaseMs! - s.marginMs - s.renewPeriodMs);
    expect(s.stopsMonOutage.max).toBe(0);
    const { summary: all } = await simJson(['--hosts', '100', '--mon-outage-ms', String(p.leaseMs! - s.marginMs), '--trials', '3']);
    expect(all.stopsMonOutage.mean).toBe(800);
    const { summary: mid } = await simJson(['--hosts', '100', '--mon-outage-ms', '9000', '--trials', '3']);
    expect(mid.stopsMonOutage.mean).toBeGreaterThan(0);
    expect(mid.stopsMonOutage.mean).toBeLessThan(800);
    // A storage node of 6 OSDs in 30 (5 nodes) holds a replica of 3/5 of the lock objects; the
    // mark-down grace (20 s) outlasts every deadline, so about those stop.
    expect(s.storageNodeShare).toBeCloseTo(3 / 5, 12);
    expect(p.osdDownGraceMs!).toBeGreaterThan(p.leaseMs! - s.marginMs);
    expect(s.stopsStorageNode.mean / 80).toBeGreaterThan(0.45);
    expect(s.stopsStorageNode.mean / 80).toBeLessThan(0.75);
  });

  it('one takeover at a time per survivor: many volumes on few survivors queue', async () => {
    const { params: p, summary: s } = await simJson(['--hosts', '10', '--fail', '5', '--trials', '3']);
    // 40 volumes on 5 survivors: the last of each survivor's 8 waits for 7 whole takeovers.
    expect(s.queuedMs.max).toBeGreaterThan(7 * (p.leaseMs! + p.watchExtraMs!));
    expect(s.outageMs.max).toBeGreaterThan(8 * (p.leaseMs! + p.watchExtraMs!));
    const { summary: par } = await simJson(['--hosts', '10', '--fail', '5', '--trials', '3', '--takeovers-parallel', '8']);
    expect(par.queuedMs.max).toBe(0);
    expect(par.outageMs.max).toBeLessThan(s.outageMs.max / 3);
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
    // Lock objects with a replica on a dead host: their PG changes interval under a taker's watch
    // (it restarts) and blocks the holder's renewals until the mark-down, past every deadline.
    expect(s.headerTouchedShare).toBeCloseTo(1 - 117_480 / 161_700, 9);
    expect(s.extraWatchRounds).toBeGreaterThan(0);
    expect(s.stopsSurvivors.mean / 720).toBeGreaterThan(s.headerTouchedShare * 0.8);
    expect(s.stopsSurvivors.mean / 720).toBeLessThan(s.headerTouchedShare * 1.2);
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
      [['--pg-check-p99-ms', '1'], /--pg-check-p99 must be at least --pg-check-median/],
      [['--lease-ms', '1000'], /--lease-ms: 1000 is out of range/],
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
    expect(r.stdout).toMatch(/--lease-ms +15000 +code: LEASE_MS_DEFAULT/);
    expect(r.stdout).toMatch(/--takeovers-parallel +1 +code: takeRbdLocks/);
    expect(r.stdout).toMatch(/--stack-write-us +142 +measured/);
  });
});
