// Scale-out capacity model (issue 12, docs/scale-out.md): N hosts, each serving volumes that are
// a raid1 of a local disk and an RBD leg on one shared Ceph cluster. K hosts crash at once; the
// model prints, per volume, how long a survivor takes to see the dead holder's ownership lease
// stopped (the watch of remote/rbd-lock.ts), to fence it and take the lock, to assemble the volume
// degraded from its RBD leg, and to rebuild its local leg there; what the cluster carries
// meanwhile; client write latency with and without write-behind; and which live holders stop
// themselves under the lease rule (a monitor outage, a storage node's power loss). With
// --osds-per-host the hosts also run the OSDs, and Ceph's backfill of the dead ones is modelled too. A seeded discrete-event model in simulated time: no timers, no I/O.
// It models; it measures nothing. Every default names its source (`--help`): a figure measured
// by our benches, a Ceph default, or an assumption.
// Build: pnpm exec tsc -p bench    Run: pnpm bench:scale-out [--hosts 100] [--fail 10] [--json]
import { parseArgs } from 'node:util';
import { runTrials, type TrialResult } from './lib/scale-out-des.js';
import { headerTouchedShare, storageNodeShare } from './lib/scale-out-lease.js';
import {
  marginMs, renewPeriodMs,
  healthyHostLoad, inactivePgShare, latencyModel, quantiles, Rng, usedMiBPerOsd, utilisation, writeLatency,
  type ModelParams, type Quantiles, type WriteLatency,
} from './lib/scale-out-model.js';

interface Flag {
  readonly key: keyof ModelParams;
  readonly def: number;
  readonly min: number;
  readonly max: number;
  readonly int?: boolean;
  readonly source: string;
}

const M = 'measured';
const A = 'assumed';
const FLAGS: Readonly<Record<string, Flag>> = {
  hosts: { key: 'hosts', def: 10, min: 2, max: 10_000, int: true, source: 'fleet size (issue 12 asks for 10 and 100)' },
  osds: { key: 'osds', def: 0, min: 0, max: 100_000, int: true, source: `${A}: 0 = 3 per host (a cluster sized with the fleet)` },
  replicas: { key: 'replicas', def: 3, min: 1, max: 6, int: true, source: 'Ceph default osd_pool_default_size = 3 (ceph-conf -D, 16.2.15)' },
  'volumes-per-host': { key: 'volumesPerHost', def: 8, min: 1, max: 1000, int: true, source: A },
  'volume-gib': { key: 'volumeGiB', def: 100, min: 0.001, max: 1_000_000, source: A },
  fill: { key: 'fillRatio', def: 0.5, min: 0, max: 1, source: `${A}; rebuilds copy only allocated bytes (sparse rebuild, docs/durability.md)` },
  fail: { key: 'failHosts', def: 1, min: 1, max: 9_999, int: true, source: 'hosts crashing at once (a rack: --fail 10)' },
  trials: { key: 'trials', def: 20, min: 1, max: 1000, int: true, source: 'repetitions with derived seeds, for the p99 columns' },
  seed: { key: 'seed', def: 1, min: 0, max: 4294967295, int: true, source: 'PRNG seed: same seed, same output' },
  'osd-write-median-ms': { key: 'osdWriteMedianMs', def: 0.4, min: 0.001, max: 10_000, source: `${A}: one replica's commit; the composed op is the "RBD write alone" row (Ceph Reef NVMe lab: <0.5 ms mean 4k sync write; SATA SSD clusters ~1 ms)` },
  'osd-write-p99-ms': { key: 'osdWriteP99Ms', def: 2, min: 0.001, max: 100_000, source: A },
  'osd-read-median-ms': { key: 'osdReadMedianMs', def: 0.25, min: 0.001, max: 10_000, source: `${A} (SATA SSD clusters ~0.57 ms per 4k read end to end)` },
  'osd-read-p99-ms': { key: 'osdReadP99Ms', def: 1.5, min: 0.001, max: 100_000, source: A },
  'net-rtt-ms': { key: 'netRttMs', def: 0.1, min: 0, max: 1000, source: `${A}: one TCP round trip in a data centre` },
  'osd-mibps': { key: 'osdMiBPerSec', def: 1100, min: 1, max: 1_000_000, source: 'Ceph Reef lab: 71 GB/s reads over 60 NVMe OSDs (a best case)' },
  'osd-iops': { key: 'osdIops', def: 40_000, min: 1, max: 10_000_000, source: 'Ceph Reef lab: 2.4M replica 4k writes/s over 60 NVMe OSDs (a best case)' },
  'local-write-median-us': { key: 'localWriteMedianUs', def: 20, min: 0.1, max: 1_000_000, source: `${M}: a page-cache leg's write EWMA was 16 µs (docs/transport.md)` },
  'local-write-p99-us': { key: 'localWriteP99Us', def: 200, min: 0.1, max: 10_000_000, source: A },
  'stack-write-us': { key: 'stackWriteUs', def: 142, min: 0, max: 1_000_000, source: `${M}: in-process QD1 4k write through the engine (issue 6 note)` },
  'host-write-iops': { key: 'hostWriteIops', def: 2000, min: 0, max: 10_000_000, source: `${A}: ~60 % of the measured 4k randwrite ceiling (--measured-write-iops)` },
  'host-write-mibps': { key: 'hostWriteMiBPerSec', def: 40, min: 0, max: 1_000_000, source: A },
  'host-read-iops': { key: 'hostReadIops', def: 4000, min: 0, max: 10_000_000, source: A },
  'host-read-mibps': { key: 'hostReadMiBPerSec', def: 80, min: 0, max: 1_000_000, source: A },
  qd: { key: 'queueDepth', def: 32, min: 1, max: 4096, int: true, source: 'client queue depth for the throughput bound' },
  'measured-write-iops': { key: 'measuredWriteIopsCeiling', def: 3360, min: 1, max: 10_000_000, source: `${M}: raid1 local + rbd:// (librbd) 4k randwrite QD32 (pnpm bench:rbd, one loaded 2-core run, one-OSD Ceph: bench/results/rbd-2026-11-30T06-51-19-931Z.json)` },
  'rebuild-mibps': { key: 'rebuildMiBPerSec', def: 162, min: 0, max: 1_000_000, source: `${M}: rebuild under the default 200 MiB/s throttle, 161.8 and 165.2 MiB/s (bench/results/rebuild-*.json); 0 = unthrottled` },
  'local-copy-mibps': { key: 'localCopyMiBPerSec', def: 690, min: 1, max: 1_000_000, source: `${M}: unthrottled add-member rebuild, 680-700 MiB/s local to local (issue 11 note)` },
  'copy-units': { key: 'copyUnits', def: 8, min: 1, max: 64, int: true, source: 'code: durable/recovery.ts copies 8 units at once' },
  'copy-unit-mib': { key: 'copyUnitMiB', def: 1, min: 0.0625, max: 64, source: 'code: 1 MiB rebuild units' },
  'nic-gbps': { key: 'nicGbps', def: 25, min: 0.1, max: 10_000, source: A },
  'lease-ms': { key: 'leaseMs', def: 15_000, min: 2_000, max: 300_000, source: 'code: LEASE_MS_DEFAULT (remote/rbd-lock.ts), ONESTACK_RBD_LEASE_MS 2 s..300 s; renewed every lease/3' },
  'watch-extra-ms': { key: 'watchExtraMs', def: 1_000, min: 0, max: 60_000, source: 'code: a taker watches lease + 1 s (rbd-lock.ts leaseMoves)' },
  'watch-poll-ms': { key: 'watchPollMs', def: 500, min: 1, max: 60_000, source: 'code: one lease read every 0.5 s during the watch' },
  'taker-start-ms': { key: 'takerStartMs', def: 0, min: 0, max: 86_400_000, source: `${A}: the fleet starts a dead host's volumes on survivors uniform 0..this after the crash (0: at once, as test/rbd-failover.test.ts)` },
  'rados-cli-median-ms': { key: 'radosCliMedianMs', def: 50, min: 0.001, max: 600_000, source: `${M}: one rados call ~0.05 s (docs/rbd.md "Measured", one-node Ceph)` },
  'rados-cli-p99-ms': { key: 'radosCliP99Ms', def: 300, min: 0.001, max: 600_000, source: A },
  'rbd-cli-median-ms': { key: 'rbdCliMedianMs', def: 300, min: 0.001, max: 600_000, source: `${M}: one rbd call 0.2-0.7 s (docs/rbd.md "Measured")` },
  'rbd-cli-p99-ms': { key: 'rbdCliP99Ms', def: 1_000, min: 0.001, max: 600_000, source: A },
  'mon-cmd-median-ms': { key: 'monCmdMedianMs', def: 1_500, min: 0.001, max: 600_000, source: `${M}: ceph osd blocklist add 1-3 s (docs/rbd.md); a monitor proposal waits up to paxos_propose_interval = 1 s` },
  'mon-cmd-p99-ms': { key: 'monCmdP99Ms', def: 3_000, min: 0.001, max: 600_000, source: `${M}: the top of the 1-3 s range` },
  'pg-check-median-ms': { key: 'pgCheckMedianMs', def: 350, min: 0.001, max: 600_000, source: `${M}: ceph osd map + osd dump in parallel ~0.35 s (docs/rbd.md, one manual run)` },
  'pg-check-p99-ms': { key: 'pgCheckP99Ms', def: 1_500, min: 0.001, max: 600_000, source: A },
  'open-reads': { key: 'openReads', def: 4, min: 0, max: 1000, int: true, source: `${A}: image open reads (header, id, object map)` },
  'engine-open-ms': { key: 'engineOpenMs', def: 450, min: 0, max: 600_000, source: `${M}: Engine.open's share of the takeover pause, ~450 ms (issue 11 note)` },
  'takeovers-parallel': { key: 'takeoversParallel', def: 1, min: 1, max: 1000, int: true, source: 'code: takeRbdLocks takes one image at a time per data dir (one daemon per host)' },
  'osd-down-grace-ms': { key: 'osdDownGraceMs', def: 20_000, min: 0, max: 86_400_000, source: 'Ceph default osd_heartbeat_grace = 20 s: a silently dead OSD is marked down after it' },
  'peering-median-ms': { key: 'peeringMedianMs', def: 1_000, min: 0.001, max: 600_000, source: `${A}: mark-down reports and re-peering after the grace` },
  'peering-p99-ms': { key: 'peeringP99Ms', def: 5_000, min: 0.001, max: 600_000, source: A },
  'osds-per-storage-node': { key: 'osdsPerStorageNode', def: 6, min: 1, max: 1000, int: true, source: 'Ceph Reef lab layout: 60 OSDs on 10 nodes' },
  'mon-outage-ms': { key: 'monOutageMs', def: 10_000, min: 0, max: 86_400_000, source: `${A}: a monitor quorum loss of this length (how many holders stop)` },
  'rbd-write-cpu-us': { key: 'rbdWriteCpuUs', def: 379, min: 0, max: 1_000_000, source: `${M}: daemon CPU per 4k write, raid1 local + rbd:// on librbd (pnpm bench:rbd, one loaded 2-core run: bench/results/rbd-2026-11-30T06-51-19-931Z.json)` },
  'rbd-write-cpu-us-per-mib': { key: 'rbdWriteCpuUsPerMiB', def: 2587, min: 0, max: 10_000_000, source: `${M}: daemon CPU per 1 MiB write, same system and run` },
  'write-behind-in-flight': { key: 'writeBehindInFlight', def: 128, min: 1, max: 65_536, int: true, source: 'code: write-behind keeps at most 128 writes in flight to its leg' },
  'osds-per-host': { key: 'osdsPerHost', def: 0, min: 0, max: 64, int: true, source: '0 = Ceph on its own nodes; K = hyperconverged, K OSDs per host that fail with it (then --osds must be 0)' },
  'down-out-ms': { key: 'downOutMs', def: 600_000, min: 0, max: 86_400_000, source: 'Ceph default mon_osd_down_out_interval = 600 s' },
  'backfill-mibps': { key: 'backfillMiBPerSec', def: 100, min: 0.1, max: 100_000, source: `${A}: backfill per surviving OSD (osd_max_backfills = 1)` },
  'object-mib': { key: 'objectMiB', def: 4, min: 0.0625, max: 1024, source: 'Ceph default rbd_default_order = 22: 4 MiB objects' },
  'min-size': { key: 'minSize', def: 2, min: 1, max: 6, int: true, source: 'Ceph default: osd_pool_default_min_size 0 = size - size/2 = 2 for size 3' },
  'latency-samples': { key: 'latencySamples', def: 20_000, min: 100, max: 2_000_000, int: true, source: 'Monte Carlo writes per latency row' },
};

class UsageError extends Error {}

/** Each failing volume is one rebuild stream; every rate change touches all of them. */
const FAILING_VOLUMES_MAX = 2_000;

function parseParams(argv: readonly string[]): { params: ModelParams; json: boolean; help: boolean } {
  const options = Object.fromEntries(Object.keys(FLAGS).map((k) => [k, { type: 'string' as const }]));
  let parsed;
  try {
    parsed = parseArgs({ args: [...argv], options: { ...options, json: { type: 'boolean' }, help: { type: 'boolean' } }, strict: true, allowPositionals: false });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const values = parsed.values as Record<string, string | boolean | undefined>;
  const out: Record<string, number> = {};
  for (const [name, f] of Object.entries(FLAGS)) {
    const raw = values[name];
    const v = typeof raw === 'string' ? Number(raw) : f.def;
    if (typeof raw === 'string' && (raw.trim() === '' || !Number.isFinite(v))) throw new UsageError(`--${name}: "${raw}" is not a number`);
    if (v < f.min || v > f.max) throw new UsageError(`--${name}: ${v} is out of range [${f.min}, ${f.max}]`);
    if (f.int === true && !Number.isInteger(v)) throw new UsageError(`--${name}: ${v} must be a whole number`);
    out[f.key] = v;
  }
  const p = out as unknown as ModelParams;
  if (p.osdsPerHost > 0 && p.osds !== 0) throw new UsageError(`--osds and --osds-per-host exclude each other (hyperconverged: osds = hosts × osds-per-host)`);
  const params: ModelParams = { ...p, osds: p.osdsPerHost > 0 ? p.osdsPerHost * p.hosts : p.osds === 0 ? 3 * p.hosts : p.osds };
  if (params.failHosts * params.volumesPerHost > FAILING_VOLUMES_MAX) throw new UsageError(`--fail × --volumes-per-host = ${params.failHosts * params.volumesPerHost}: the model takes at most ${FAILING_VOLUMES_MAX} failing volumes`);
  if (params.minSize > params.replicas) throw new UsageError(`--min-size ${params.minSize} is above --replicas ${params.replicas}`);
  if (params.failHosts >= params.hosts) throw new UsageError(`--fail ${params.failHosts}: at least one of the ${params.hosts} hosts must survive`);
  if (params.replicas > params.osds) throw new UsageError(`--replicas ${params.replicas} needs at least as many OSDs (--osds ${params.osds})`);
  for (const [m, q] of [['osd-write', [params.osdWriteMedianMs, params.osdWriteP99Ms]], ['osd-read', [params.osdReadMedianMs, params.osdReadP99Ms]], ['local-write', [params.localWriteMedianUs, params.localWriteP99Us]], ['mon-cmd', [params.monCmdMedianMs, params.monCmdP99Ms]],
    ['rados-cli', [params.radosCliMedianMs, params.radosCliP99Ms]], ['rbd-cli', [params.rbdCliMedianMs, params.rbdCliP99Ms]], ['pg-check', [params.pgCheckMedianMs, params.pgCheckP99Ms]],
    ['peering', [params.peeringMedianMs, params.peeringP99Ms]]] as const) {
    if (q[1] < q[0]) throw new UsageError(`--${m}-p99 must be at least --${m}-median (${q[1]} < ${q[0]})`);
  }
  return { params, json: values.json === true, help: values.help === true };
}

export interface Summary {
  readonly queuedMs: Quantiles;
  readonly detectMs: Quantiles;
  readonly lockMs: Quantiles;
  readonly assemblyMs: Quantiles;
  readonly outageMs: Quantiles;
  readonly rebuildMs: Quantiles;
  readonly allOptimalMs: Quantiles;
  readonly rhoSteady: number;
  readonly rhoPeak: number;
  readonly rhoMeanDuringRebuild: number;
  readonly peakRebuildMiBPerSec: number;
  readonly peakExtraMiBPerSec: number;
  readonly peakExtraIops: number;
  readonly rebuildStreamsMax: number;
  readonly steady: WriteLatency;
  readonly duringRebuild: WriteLatency;
  readonly syncWriteIopsQd: number;
  readonly writeBehindDrainIopsPerVolume: number;
  readonly leaseOpsPerSec: number;
  readonly renewPeriodMs: number;
  readonly marginMs: number;
  /** Each renewal is one `rados` process: a new monitor session, fleet-wide per second. */
  readonly renewCliPerSec: number;
  /** One per volume: the lease names the holder's librbd client, one per image. */
  readonly blocklistsPerFailure: number;
  readonly extraWatchRounds: number;
  /** Live holders that stop themselves (mean and max over trials); the volumes that could. */
  readonly stopsMonOutage: { mean: number; max: number };
  readonly stopsStorageNode: { mean: number; max: number };
  readonly stopsSurvivors: { mean: number; max: number };
  readonly storageNodeShare: number;
  readonly headerTouchedShare: number;
  /** Daemon CPU (cores) a host spends on its RBD-leg writes at the offered load. */
  readonly rbdWriteCores: number;
  readonly osdsLost: number;
  readonly backfillGiB: number;
  readonly backfillStartMs: number;
  readonly backfillDoneMs: Quantiles | null;
  readonly inactivePgShare: number;
}

const meanMax = (xs: readonly number[]): { mean: number; max: number } => ({ mean: xs.reduce((a, x) => a + x, 0) / xs.length, max: Math.max(...xs) });

function summarise(p: ModelParams, trials: readonly TrialResult[]): Summary {
  const all = (f: (t: TrialResult) => readonly number[]): number[] => trials.flatMap((t) => [...f(t)]);
  const rhoSteady = utilisation(p, { miBPerSec: healthyHostLoad(p).miBPerSec * p.hosts, iops: healthyHostLoad(p).iops * p.hosts });
  const rhoPeak = Math.max(...trials.map((t) => t.peakRho));
  const worst = trials.reduce((a, b) => (b.peakRebuildMiBPerSec > a.peakRebuildMiBPerSec ? b : a));
  const m = latencyModel(p);
  const rng = new Rng(p.seed ^ 0x5bd1e995);
  const steady = writeLatency(p, m, rng, rhoSteady);
  const duringRebuild = writeLatency(p, m, rng, rhoPeak);
  const syncMeanMs = p.stackWriteUs / 1000 + Math.max(steady.rbdWriteMeanMs, m.localWrite.mean);
  return {
    queuedMs: quantiles(all((t) => t.queuedMs)), detectMs: quantiles(all((t) => t.detectMs)),
    lockMs: quantiles(all((t) => t.lockMs)), assemblyMs: quantiles(all((t) => t.assemblyMs)), outageMs: quantiles(all((t) => t.outageMs)),
    rebuildMs: quantiles(all((t) => t.rebuildMs)), allOptimalMs: quantiles(trials.map((t) => t.allOptimalMs)),
    rhoSteady, rhoPeak, rhoMeanDuringRebuild: trials.reduce((a, t) => a + t.meanRhoDuringRebuild, 0) / trials.length,
    peakRebuildMiBPerSec: worst.peakRebuildMiBPerSec, peakExtraMiBPerSec: worst.peakExtraLoad.miBPerSec, peakExtraIops: worst.peakExtraLoad.iops,
    rebuildStreamsMax: p.failHosts * p.volumesPerHost,
    steady, duringRebuild,
    syncWriteIopsQd: Math.min(p.measuredWriteIopsCeiling, (p.queueDepth * 1000) / syncMeanMs),
    writeBehindDrainIopsPerVolume: (p.writeBehindInFlight * 1000) / steady.rbdWriteMeanMs,
    leaseOpsPerSec: (p.hosts * p.volumesPerHost * p.replicas * 1000) / renewPeriodMs(p.leaseMs),
    renewPeriodMs: renewPeriodMs(p.leaseMs), marginMs: marginMs(p.leaseMs),
    renewCliPerSec: (p.hosts * p.volumesPerHost * 1000) / renewPeriodMs(p.leaseMs),
    blocklistsPerFailure: p.failHosts * p.volumesPerHost,
    extraWatchRounds: trials.reduce((a, t) => a + t.extraRounds, 0),
    stopsMonOutage: meanMax(trials.map((t) => t.stops.monOutage)),
    stopsStorageNode: meanMax(trials.map((t) => t.stops.storageNode)),
    stopsSurvivors: meanMax(trials.map((t) => t.stops.survivors)),
    storageNodeShare: storageNodeShare(p), headerTouchedShare: headerTouchedShare(p),
    rbdWriteCores: (p.hostWriteIops * p.rbdWriteCpuUs + p.hostWriteMiBPerSec * p.rbdWriteCpuUsPerMiB) / 1e6,
    osdsLost: p.osdsPerHost * p.failHosts,
    backfillGiB: (p.osdsPerHost * p.failHosts * usedMiBPerOsd(p)) / 1024,
    backfillStartMs: p.osdsPerHost > 0 ? p.downOutMs : Number.NaN,
    backfillDoneMs: p.osdsPerHost > 0 ? quantiles(trials.map((t) => t.backfillDoneMs)) : null,
    inactivePgShare: inactivePgShare(p),
  };
}

const secs = (ms: number): string => (ms >= 100_000 ? `${(ms / 60_000).toFixed(1)} min` : ms >= 1000 ? `${(ms / 1000).toFixed(1)} s` : `${ms.toFixed(0)} ms`);
const msf = (ms: number): string => (ms < 1 ? `${(ms * 1000).toFixed(0)} µs` : `${ms.toFixed(2)} ms`);
const pct = (x: number): string => `${(x * 100).toFixed(1)} %`;
const pad = (s: string, n: number): string => s.padEnd(n);

function render(p: ModelParams, s: Summary): string {
  const lines: string[] = [];
  lines.push(`scale-out model: ${p.hosts} hosts, ${p.osds} OSDs (replicas ${p.replicas}), ${p.volumesPerHost} volumes/host of ${p.volumeGiB} GiB (${(p.fillRatio * 100).toFixed(0)} % allocated), ${p.failHosts} host(s) fail at once, ${p.trials} trials, seed ${p.seed}`);
  lines.push(`${pad('', 46)}${pad('p50', 12)}${pad('p99', 12)}max`);
  const row = (name: string, q: Quantiles): void => { lines.push(`${pad(name, 46)}${pad(secs(q.p50), 12)}${pad(secs(q.p99), 12)}${secs(q.max)}`); };
  row('queued behind the survivor\'s takeovers', s.queuedMs);
  row('detect (crash -> watch sees the lease stop)', s.detectMs);
  row('fence + lock (blocklist, lock rm, break/get)', s.lockMs);
  row('assembly (open, superblock, serve degraded)', s.assemblyMs);
  row('client outage (crash -> serving degraded)', s.outageMs);
  row('rebuild of one local leg', s.rebuildMs);
  row('all volumes optimal again (from crash)', s.allOptimalMs);
  lines.push(`cluster utilisation: steady ${pct(s.rhoSteady)}, peak after the crash ${pct(s.rhoPeak)}, mean during rebuilds ${pct(s.rhoMeanDuringRebuild)}`);
  lines.push(`extra cluster load at the rebuilds' peak: +${s.peakExtraMiBPerSec.toFixed(0)} MiB/s, +${s.peakExtraIops.toFixed(0)} ops/s (${s.rebuildStreamsMax} rebuilds reading ${s.peakRebuildMiBPerSec.toFixed(0)} MiB/s in all, ${(s.peakRebuildMiBPerSec / s.rebuildStreamsMax).toFixed(0)} MiB/s each, plus degraded volumes' reads)`);
  lines.push(`${pad('4 KiB ops at QD1, as the client sees them', 42)}${pad('steady', 21)}at the peak after the crash`);
  lines.push(`${pad('', 42)}${pad('p50', 10)}${pad('p99', 11)}${pad('p50', 10)}p99`);
  const lat = (name: string, a: Quantiles, b: Quantiles): void => { lines.push(`  ${pad(name, 40)}${pad(msf(a.p50), 10)}${pad(msf(a.p99), 11)}${pad(msf(b.p50), 10)}${msf(b.p99)}`); };
  lat('write, raid1 local + RBD (sync)', s.steady.syncMirror, s.duringRebuild.syncMirror);
  lat('write, raid1 with write-behind RBD leg', s.steady.writeBehind, s.duringRebuild.writeBehind);
  lat('write, degraded (RBD leg alone)', s.steady.degraded, s.duringRebuild.degraded);
  lat('read, degraded (RBD leg alone)', s.steady.degradedRead, s.duringRebuild.degradedRead);
  lat('RBD write alone (no onestack)', s.steady.rbdWrite, s.duringRebuild.rbdWrite);
  lines.push(`per-host 4k write bound at QD${p.queueDepth}: sync mirror ${s.syncWriteIopsQd.toFixed(0)} IOPS (the lower of measured ${p.measuredWriteIopsCeiling} and QD / mean latency)`);
  lines.push(`write-behind RBD leg keeps up while a volume writes under ${s.writeBehindDrainIopsPerVolume.toFixed(0)} 4k/s (${p.writeBehindInFlight} in flight / mean RBD write); offered here ${(p.hostWriteIops / p.volumesPerHost).toFixed(0)}/s per volume`);
  const vols = p.hosts * p.volumesPerHost;
  const stop = (x: { mean: number; max: number }, of: number): string => `${x.mean.toFixed(0)} of ${of} volumes stop (max ${x.max} in ${p.trials} trials)`;
  lines.push(`lease: renewed every ${secs(s.renewPeriodMs)}: ${s.leaseOpsPerSec.toFixed(0)} replica ops/s and ${s.renewCliPerSec.toFixed(0)} rados processes/s (each a new monitor session) fleet-wide; ${s.blocklistsPerFailure} blocklist command(s) per failure (one librbd client per image)${s.extraWatchRounds > 0 ? `; ${s.extraWatchRounds} watch(es) restarted (PG interval changed)` : ''}`);
  lines.push(`self-fencing: a holder whose renewals fail stops ${secs(p.leaseMs - s.marginMs - s.renewPeriodMs)}-${secs(p.leaseMs - s.marginMs)} after its renewals start failing (lease ${secs(p.leaseMs)}, margin ${secs(s.marginMs)}) unless the monitors prove its lock object unservable; a stopped volume serves again only after onestack restarts`);
  lines.push(`  monitor quorum lost for ${secs(p.monOutageMs)}: ${stop(s.stopsMonOutage, vols)}: renewals need the monitors and they can prove nothing`);
  if (p.osdsPerHost === 0) lines.push(`  a storage node (${p.osdsPerStorageNode} OSDs) loses power: ${stop(s.stopsStorageNode, vols)}: the ${pct(s.storageNodeShare)} whose lock object's PG it holds wait ${secs(p.osdDownGraceMs)}+ for the mark-down`);
  else lines.push(`  hyperconverged: ${stop(s.stopsSurvivors, (p.hosts - p.failHosts) * p.volumesPerHost)} on surviving hosts: the ${pct(s.headerTouchedShare)} whose lock object had a replica on a dead host`);
  lines.push(`daemon CPU for the RBD leg's writes at the offered load: ${s.rbdWriteCores.toFixed(2)} core per host (${p.rbdWriteCpuUs} µs per 4k write, ${p.rbdWriteCpuUsPerMiB} µs per MiB)`);
  if (s.backfillDoneMs !== null) {
    lines.push(`Ceph, hyperconverged (${p.osdsPerHost} OSDs/host): ${s.osdsLost} OSDs die with the hosts; marked out after ${secs(s.backfillStartMs)}; backfill of ${s.backfillGiB.toFixed(0)} GiB done ${secs(s.backfillDoneMs.p50)} after the crash (max ${secs(s.backfillDoneMs.max)})`);
    if (s.inactivePgShare > 0) lines.push(`PGs left below min_size ${p.minSize} (failure domain = host): ${(s.inactivePgShare * 100).toFixed(2)} % of them; I/O to those blocks until Ceph recovers them, and each image's objects span thousands of PGs`);
  }
  return lines.join('\n');
}

function help(): string {
  const rows = Object.entries(FLAGS).map(([name, f]) => `  --${pad(name, 26)}${pad(String(f.def), 8)}${f.source}`);
  return ['usage: node bench/dist/scale-out-sim.js [--FLAG N ...] [--json]', 'flags (default, source):', ...rows].join('\n');
}

function main(): void {
  let parsed;
  try {
    parsed = parseParams(process.argv.slice(2));
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`scale-out-sim: ${err.message}\n${help()}\n`);
    process.exit(2);
  }
  if (parsed.help) { process.stdout.write(`${help()}\n`); return; }
  const { params: p } = parsed;
  const t0 = performance.now();
  let summary: Summary;
  try {
    summary = summarise(p, runTrials(p));
  } catch (err) {
    process.stderr.write(`scale-out-sim: ${(err as Error).message}\n`);
    process.exit(1);
  }
  if (parsed.json) {
    const sources = Object.fromEntries(Object.values(FLAGS).map((f) => [f.key, f.source]));
    process.stdout.write(`${JSON.stringify({ params: p, sources, summary }, null, 2)}\n`);
  } else {
    process.stdout.write(`${render(p, summary)}\n`);
  }
  process.stderr.write(`scale-out-sim: modelled in ${((performance.now() - t0) / 1000).toFixed(2)} s\n`);
}

main();
