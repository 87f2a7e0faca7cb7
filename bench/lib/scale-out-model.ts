// The pieces of the scale-out model (bench/scale-out-sim.ts, docs/scale-out.md): a seeded PRNG,
// lognormal latencies given by median and p99, the Ceph cluster's load and what it does to op
// latency, and how concurrent rebuilds share the cluster. Pure functions of their inputs; the
// event loop that uses them is in scale-out-des.ts.

/** Every figure the model needs; units last in names. Defaults and their sources: scale-out-sim.ts. */
export interface ModelParams {
  readonly hosts: number;
  readonly osds: number;
  readonly replicas: number;
  readonly volumesPerHost: number;
  readonly volumeGiB: number;
  /** Share of a volume's bytes that are allocated (a sparse rebuild copies only these). */
  readonly fillRatio: number;
  readonly failHosts: number;
  readonly trials: number;
  readonly seed: number;
  readonly osdWriteMedianMs: number;
  readonly osdWriteP99Ms: number;
  readonly osdReadMedianMs: number;
  readonly osdReadP99Ms: number;
  readonly netRttMs: number;
  readonly osdMiBPerSec: number;
  readonly osdIops: number;
  readonly localWriteMedianUs: number;
  readonly localWriteP99Us: number;
  readonly stackWriteUs: number;
  readonly hostWriteIops: number;
  readonly hostWriteMiBPerSec: number;
  readonly hostReadIops: number;
  readonly hostReadMiBPerSec: number;
  readonly queueDepth: number;
  readonly measuredWriteIopsCeiling: number;
  readonly rebuildMiBPerSec: number;
  readonly localCopyMiBPerSec: number;
  readonly copyUnits: number;
  readonly copyUnitMiB: number;
  readonly nicGbps: number;
  /** The ownership lease (ONESTACK_RBD_LEASE_MS); renewed every lease/3, the holder stops at okMs + lease − margin. */
  readonly leaseMs: number;
  /** A taker's watch lasts lease + this, read by read every watchPollMs (remote/rbd-lock.ts leaseMoves). */
  readonly watchExtraMs: number;
  readonly watchPollMs: number;
  /** Crash → the fleet starts the volume on a survivor (uniform in [0, this]); onestack has no standby of its own. */
  readonly takerStartMs: number;
  /** One `rados` CLI call (getxattr, lock info/get/break, setxattr), one `rbd` call (info, status, lock ls/rm). */
  readonly radosCliMedianMs: number;
  readonly radosCliP99Ms: number;
  readonly rbdCliMedianMs: number;
  readonly rbdCliP99Ms: number;
  /** `ceph osd blocklist add`: a monitor proposal. */
  readonly monCmdMedianMs: number;
  readonly monCmdP99Ms: number;
  /** The placement-group interval check at each end of a watch (`ceph osd map` + `ceph osd dump`, in parallel). */
  readonly pgCheckMedianMs: number;
  readonly pgCheckP99Ms: number;
  readonly openReads: number;
  readonly engineOpenMs: number;
  /** Lock takeovers one survivor runs at once (takeRbdLocks: one image at a time per data dir). */
  readonly takeoversParallel: number;
  /** An OSD that dies without telling the monitors is marked down after this grace, then its PGs re-peer. */
  readonly osdDownGraceMs: number;
  readonly peeringMedianMs: number;
  readonly peeringP99Ms: number;
  /** Ceph on its own nodes: OSDs per storage node (a node's power loss takes them all). */
  readonly osdsPerStorageNode: number;
  /** A monitor quorum loss of this length: how many holders stop (the renewal CLI needs the monitors). */
  readonly monOutageMs: number;
  /** Daemon CPU per 4 KiB write and per 1 MiB write on the librbd path. */
  readonly rbdWriteCpuUs: number;
  readonly rbdWriteCpuUsPerMiB: number;
  readonly writeBehindInFlight: number;
  readonly latencySamples: number;
  /** 0: Ceph on its own storage nodes. K: hyperconverged, K OSDs on every host (they fail with it). */
  readonly osdsPerHost: number;
  readonly downOutMs: number;
  /** Backfill rate per surviving OSD once the dead OSDs are marked out. */
  readonly backfillMiBPerSec: number;
  readonly objectMiB: number;
  readonly minSize: number;
}

/** The lease's renewal period and the holder's safety margin, as packages/engine/src/remote/rbd-lease.ts computes them. */
export const renewPeriodMs = (leaseMs: number): number => Math.max(500, Math.floor(leaseMs / 3));
export const marginMs = (leaseMs: number): number => Math.min(Math.max(1_000, Math.floor(leaseMs / 6)), Math.floor(leaseMs / 3));

/** Utilisation is capped here: past it a queue model says "unbounded", which no run shows. */
export const RHO_MAX = 0.95;
const Z99 = 2.3263478740408408; // standard normal quantile at 0.99

/** sfc32 seeded through splitmix32: fast, 128-bit state, reproducible across platforms. */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  private spare: number | null = null;

  constructor(seed: number) {
    let s = seed >>> 0;
    const next = (): number => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = next(); this.b = next(); this.c = next(); this.d = next();
    for (let i = 0; i < 12; i++) this.uniform();
  }

  /** Uniform in [0, 1). */
  uniform(): number {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0;
    this.d = (this.d + 1) >>> 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) >>> 0;
    this.c = ((this.c << 21) | (this.c >>> 11)) >>> 0;
    this.c = (this.c + t) >>> 0;
    return t / 4294967296;
  }

  /** Standard normal (Box-Muller; the second value is kept for the next call). */
  normal(): number {
    if (this.spare !== null) { const v = this.spare; this.spare = null; return v; }
    const u1 = Math.max(this.uniform(), 1e-12);
    const u2 = this.uniform();
    const r = Math.sqrt(-2 * Math.log(u1));
    this.spare = r * Math.sin(2 * Math.PI * u2);
    return r * Math.cos(2 * Math.PI * u2);
  }
}

/** A lognormal given as median and p99 (what benchmarks report), in the caller's unit. */
export class Lognormal {
  readonly mu: number;
  readonly sigma: number;
  constructor(readonly median: number, readonly p99: number) {
    if (!(median > 0) || !(p99 >= median)) throw new RangeError(`lognormal needs 0 < median <= p99 (got ${median}, ${p99})`);
    this.mu = Math.log(median);
    this.sigma = Math.log(p99 / median) / Z99;
  }
  sample(rng: Rng): number { return Math.exp(this.mu + this.sigma * rng.normal()); }
  get mean(): number { return Math.exp(this.mu + (this.sigma * this.sigma) / 2); }
}

/** Offered load on the cluster, as bytes and ops that reach OSDs (replica writes counted each). */
export interface ClusterLoad {
  readonly miBPerSec: number;
  readonly iops: number;
}

export const addLoad = (x: ClusterLoad, y: ClusterLoad): ClusterLoad => ({ miBPerSec: x.miBPerSec + y.miBPerSec, iops: x.iops + y.iops });
export const NO_LOAD: ClusterLoad = { miBPerSec: 0, iops: 0 };

/** What one healthy host sends: its client writes, times the replicas. Reads stay local
 * (latency-aware reads put 0.0 % of them on the remote leg, docs/transport.md). */
export function healthyHostLoad(p: ModelParams): ClusterLoad {
  const leaseIops = (p.volumesPerHost * p.replicas * 1000) / renewPeriodMs(p.leaseMs);
  return { miBPerSec: p.hostWriteMiBPerSec * p.replicas, iops: p.hostWriteIops * p.replicas + leaseIops };
}

/** A volume serving from its RBD leg alone: its reads now reach the cluster too. */
export function degradedVolumeReadLoad(p: ModelParams): ClusterLoad {
  return { miBPerSec: p.hostReadMiBPerSec / p.volumesPerHost, iops: p.hostReadIops / p.volumesPerHost };
}

/** Utilisation: the share of OSD time the load takes. Each capacity figure was measured with
 * one kind of load alone (small ops, or large transfers), so a mix adds their shares. */
export function utilisation(p: ModelParams, load: ClusterLoad, osdsUp = p.osds): number {
  const bw = load.miBPerSec / (osdsUp * p.osdMiBPerSec);
  const ops = load.iops / (osdsUp * p.osdIops);
  return bw + ops;
}

/** Data each OSD holds: every volume's allocated bytes, times the replicas, spread evenly. */
export function usedMiBPerOsd(p: ModelParams): number {
  return (p.hosts * p.volumesPerHost * p.volumeGiB * 1024 * p.fillRatio * p.replicas) / p.osds;
}

/** Backfill moves each byte once: a read on one OSD and a write on another, by whole objects. */
export function backfillLoad(p: ModelParams, miBPerSec: number): ClusterLoad {
  return { miBPerSec: 2 * miBPerSec, iops: (2 * miBPerSec) / p.objectMiB };
}

export function choose(n: number, k: number): number {
  if (k < 0 || k > n) return 0;
  let r = 1;
  for (let i = 1; i <= k; i++) r = (r * (n - k + i)) / i;
  return r;
}

/** Hyperconverged, failure domain = host: the share of PGs that keep fewer than min_size
 * replicas when failHosts of the hosts die (their replicas sit on distinct random hosts).
 * I/O to those PGs blocks until Ceph recovers them. 0 when OSDs live on their own nodes. */
export function inactivePgShare(p: ModelParams): number {
  if (p.osdsPerHost === 0) return 0;
  const lostAtLeast = p.replicas - p.minSize + 1;
  let share = 0;
  for (let k = lostAtLeast; k <= p.replicas; k++) share += (choose(p.failHosts, k) * choose(p.hosts - p.failHosts, p.replicas - k)) / choose(p.hosts, p.replicas);
  return share;
}

/** Service-time inflation of an M/M/1 queue at utilisation rho (waiting + service = 1/(1-rho)). */
export function inflation(rho: number): number {
  return 1 / (1 - Math.min(Math.max(rho, 0), RHO_MAX));
}

export interface LatencyModel {
  readonly osdWrite: Lognormal;
  readonly osdRead: Lognormal;
  readonly localWrite: Lognormal;
  readonly monCmd: Lognormal;
  readonly radosCli: Lognormal;
  readonly rbdCli: Lognormal;
  readonly pgCheck: Lognormal;
  readonly peering: Lognormal;
}

export function latencyModel(p: ModelParams): LatencyModel {
  return {
    osdWrite: new Lognormal(p.osdWriteMedianMs, p.osdWriteP99Ms),
    osdRead: new Lognormal(p.osdReadMedianMs, p.osdReadP99Ms),
    localWrite: new Lognormal(p.localWriteMedianUs / 1000, p.localWriteP99Us / 1000),
    monCmd: new Lognormal(p.monCmdMedianMs, p.monCmdP99Ms),
    radosCli: new Lognormal(p.radosCliMedianMs, p.radosCliP99Ms),
    rbdCli: new Lognormal(p.rbdCliMedianMs, p.rbdCliP99Ms),
    pgCheck: new Lognormal(p.pgCheckMedianMs, p.pgCheckP99Ms),
    peering: new Lognormal(p.peeringMedianMs, p.peeringP99Ms),
  };
}

const nicMiBPerSec = (p: ModelParams): number => (p.nicGbps * 1e9) / 8 / (1024 * 1024);

/** Transfer time of `bytes` over the host's NIC, ms. */
function wireMs(p: ModelParams, bytes: number): number {
  return (bytes / (1024 * 1024) / nicMiBPerSec(p)) * 1000;
}

/** One RBD write as the client sees it, ms: to the primary, which commits and forwards to the
 * other replicas in parallel; the ack waits for the slowest replica. */
export function sampleRbdWriteMs(p: ModelParams, m: LatencyModel, rng: Rng, rho: number, bytes: number): number {
  const k = inflation(rho);
  const wire = wireMs(p, bytes);
  let slowest = m.osdWrite.sample(rng) * k;
  for (let r = 1; r < p.replicas; r++) slowest = Math.max(slowest, p.netRttMs + wire + m.osdWrite.sample(rng) * k);
  return p.netRttMs + wire + slowest;
}

/** One RBD read, ms: the primary OSD alone answers. */
export function sampleRbdReadMs(p: ModelParams, m: LatencyModel, rng: Rng, rho: number, bytes: number): number {
  return p.netRttMs + wireMs(p, bytes) + m.osdRead.sample(rng) * inflation(rho);
}

/** Mean latency of one rebuild unit read (copyUnitMiB) at utilisation rho, ms. */
export function unitReadMeanMs(p: ModelParams, m: LatencyModel, rho: number): number {
  const mediaMs = (p.copyUnitMiB / p.osdMiBPerSec) * 1000;
  return p.netRttMs + wireMs(p, p.copyUnitMiB * 1024 * 1024) + (m.osdRead.mean + mediaMs) * inflation(rho);
}

/** A rebuild stream's own ceiling, MiB/s: the throttle (or the local copy rate when
 * unthrottled), and what `copyUnits` reads in flight of `copyUnitMiB` can fetch from RBD. */
export function streamCapMiBPerSec(p: ModelParams, meanUnitReadMs: number): number {
  const local = p.rebuildMiBPerSec > 0 ? Math.min(p.rebuildMiBPerSec, p.localCopyMiBPerSec) : p.localCopyMiBPerSec;
  const rbd = (p.copyUnits * p.copyUnitMiB * 1000) / meanUnitReadMs;
  return Math.min(local, rbd);
}

export interface StreamDemand {
  /** The host whose NIC and local copy rate the stream uses; null for Ceph's own backfill. */
  readonly host: number | null;
  capMiBPerSec: number;
  /** Cluster load of 1 MiB/s of this stream. */
  readonly perMiB: ClusterLoad;
}

/**
 * Shares the cluster among rebuild streams. Each stream asks for its cap; streams on one host
 * are scaled down together to what its NIC and local copy rate allow; then all are
 * scaled by one factor so the cluster stays at or below RHO_MAX given the other load.
 * Proportional scaling, not max-min fairness: a simplification stated in docs/scale-out.md.
 */
export function shareRebuilds(p: ModelParams, streams: readonly StreamDemand[], otherLoad: ClusterLoad, hostClientMiBPerSec: number, osdsUp = p.osds): number[] {
  const rates = streams.map((s) => s.capMiBPerSec);
  const perHost = new Map<number, number>();
  streams.forEach((s, i) => { if (s.host !== null) perHost.set(s.host, (perHost.get(s.host) ?? 0) + (rates[i] ?? 0)); });
  // One host's rebuilds share its NIC (what its clients leave) and its local copy rate.
  const hostLimit = Math.min(Math.max(nicMiBPerSec(p) - hostClientMiBPerSec, 0), p.localCopyMiBPerSec);
  streams.forEach((s, i) => {
    const sum = s.host === null ? 0 : perHost.get(s.host) ?? 0;
    if (sum > hostLimit && sum > 0) rates[i] = (rates[i] ?? 0) * (hostLimit / sum);
  });
  // Utilisation is linear in the rates: scale them all so the total stays at RHO_MAX.
  let cost = 0;
  const costOf = new Map<ClusterLoad, number>();
  streams.forEach((s, i) => {
    let c = costOf.get(s.perMiB);
    if (c === undefined) { c = utilisation(p, s.perMiB, osdsUp); costOf.set(s.perMiB, c); }
    cost += (rates[i] ?? 0) * c;
  });
  if (cost <= 0) return rates;
  const room = Math.max(RHO_MAX - utilisation(p, otherLoad, osdsUp), 0);
  const scale = cost > room ? room / cost : 1;
  return rates.map((r) => r * scale);
}

/** Load that rebuild reads put on the cluster. */
export function rebuildLoad(p: ModelParams, totalMiBPerSec: number): ClusterLoad {
  return { miBPerSec: totalMiBPerSec, iops: totalMiBPerSec / p.copyUnitMiB };
}

/** Percentile of an ascending-sorted array (nearest rank). */
export function percentile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i] ?? Number.NaN;
}

export interface Quantiles { readonly p50: number; readonly p99: number; readonly max: number }

export function quantiles(values: readonly number[]): Quantiles {
  const s = [...values].sort((a, b) => a - b);
  return { p50: percentile(s, 0.5), p99: percentile(s, 0.99), max: s[s.length - 1] ?? Number.NaN };
}

export interface WriteLatency {
  readonly syncMirror: Quantiles;
  readonly writeBehind: Quantiles;
  readonly degraded: Quantiles;
  readonly degradedRead: Quantiles;
  /** The RBD op alone, without our stack: compare with `rbd bench` on a real cluster. */
  readonly rbdWrite: Quantiles;
  readonly rbdWriteMeanMs: number;
}

/** Client write latency at cluster utilisation rho, ms: raid1 waits for the slower leg; with
 * write-behind only the local one; a degraded volume (RBD leg alone) the RBD op. */
export function writeLatency(p: ModelParams, m: LatencyModel, rng: Rng, rho: number): WriteLatency {
  const n = p.latencySamples;
  const sync: number[] = new Array<number>(n);
  const behind: number[] = new Array<number>(n);
  const degraded: number[] = new Array<number>(n);
  const degradedRead: number[] = new Array<number>(n);
  const rbdWrite: number[] = new Array<number>(n);
  const stackMs = p.stackWriteUs / 1000;
  let rbdSum = 0;
  for (let i = 0; i < n; i++) {
    const local = m.localWrite.sample(rng);
    const rbd = sampleRbdWriteMs(p, m, rng, rho, 4096);
    rbdSum += rbd;
    rbdWrite[i] = rbd;
    sync[i] = stackMs + Math.max(local, rbd);
    behind[i] = stackMs + local;
    degraded[i] = stackMs + sampleRbdWriteMs(p, m, rng, rho, 4096);
    degradedRead[i] = stackMs + sampleRbdReadMs(p, m, rng, rho, 4096);
  }
  return {
    syncMirror: quantiles(sync), writeBehind: quantiles(behind), degraded: quantiles(degraded),
    degradedRead: quantiles(degradedRead), rbdWrite: quantiles(rbdWrite), rbdWriteMeanMs: rbdSum / n,
  };
}
