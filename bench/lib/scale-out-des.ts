// The discrete-event part of the scale-out model: K of N hosts crash at t = 0; their volume
// leases expire; a survivor blocklists the dead client, takes each volume's lock, assembles it
// degraded from the RBD leg and serves it; then it rebuilds the local leg from RBD while every
// rebuild shares the cluster (scale-out-model.ts shareRebuilds). Simulated time in ms, one
// binary heap of events, no timers; every loop is bounded.
import {
  addLoad, backfillLoad, degradedVolumeReadLoad, healthyHostLoad, latencyModel, NO_LOAD, rebuildLoad, usedMiBPerOsd,
  Rng, sampleRbdReadMs, sampleRbdWriteMs, shareRebuilds, streamCapMiBPerSec, unitReadMeanMs, utilisation,
  type ClusterLoad, type LatencyModel, type ModelParams, type StreamDemand,
} from './scale-out-model.js';

/** A run that needs more events than this has a bug or absurd input; it stops with an error. */
const EVENTS_MAX = 2_000_000;
/** Remaining bytes below this count as copied (floating-point residue of rate × time). */
const DONE_MIB = 1e-6;

type Event =
  | { readonly kind: 'detect'; readonly at: number; readonly host: number }
  | { readonly kind: 'blocklisted'; readonly at: number; readonly host: number }
  | { readonly kind: 'served'; readonly at: number; readonly volume: number }
  | { readonly kind: 'out'; readonly at: number }
  | { readonly kind: 'rebuilt'; readonly at: number; readonly version: number };

/** Min-heap on (at, seq): ties resolve in insertion order, so runs are reproducible. */
class EventHeap {
  private readonly items: { e: Event; seq: number }[] = [];
  private seq = 0;
  get size(): number { return this.items.length; }
  push(e: Event): void {
    const a = this.items;
    a.push({ e, seq: this.seq++ });
    let i = a.length - 1;
    while (i > 0) {
      const up = (i - 1) >> 1;
      if (!this.less(i, up)) break;
      [a[i], a[up]] = [a[up]!, a[i]!];
      i = up;
    }
  }
  pop(): Event | undefined {
    const a = this.items;
    const top = a[0];
    const last = a.pop();
    if (a.length > 0 && last !== undefined) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && this.less(l, m)) m = l;
        if (r < a.length && this.less(r, m)) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m]!, a[i]!];
        i = m;
      }
    }
    return top?.e;
  }
  private less(i: number, j: number): boolean {
    const x = this.items[i]!;
    const y = this.items[j]!;
    return x.e.at < y.e.at || (x.e.at === y.e.at && x.seq < y.seq);
  }
}

interface Volume {
  readonly id: number;
  readonly fromHost: number;
  readonly toHost: number;
  servedAt: number;
  remainingMiB: number;
  rateMiBPerSec: number;
  rebuiltAt: number;
}

export interface TrialResult {
  readonly detectMs: number[];
  readonly blocklistMs: number[];
  readonly failoverMs: number[];
  readonly outageMs: number[];
  readonly rebuildMs: number[];
  readonly allOptimalMs: number;
  readonly peakRho: number;
  readonly meanRhoDuringRebuild: number;
  readonly peakRebuildMiBPerSec: number;
  readonly peakExtraLoad: ClusterLoad;
  /** Hyperconverged only: Ceph's backfill of the dead hosts' OSDs, ms from the crash (NaN: none). */
  readonly backfillStartMs: number;
  readonly backfillDoneMs: number;
}

/** Picks k distinct hosts out of n (partial Fisher-Yates), ascending. */
function pickHosts(rng: Rng, n: number, k: number): number[] {
  const ids = Array.from({ length: n }, (_, i) => i);
  for (let i = 0; i < k; i++) {
    const j = i + Math.floor(rng.uniform() * (n - i));
    [ids[i], ids[j]] = [ids[j]!, ids[i]!];
  }
  return ids.slice(0, k).sort((a, b) => a - b);
}

/** Lease expiry seen by a claimant polling every pollMs: the dead host's last renewal was a
 * uniform phase of renewMs before the crash, and the claimant's poll clock has its own phase. */
function detectAt(p: ModelParams, rng: Rng): number {
  const expiry = p.leaseMs - rng.uniform() * p.renewMs;
  const phase = rng.uniform() * p.pollMs;
  return expiry <= phase ? phase : phase + Math.ceil((expiry - phase) / p.pollMs) * p.pollMs;
}

class Trial {
  private readonly heap = new EventHeap();
  private readonly m: LatencyModel;
  private readonly volumes: Volume[] = [];
  private readonly waiting = new Map<number, Volume[]>();
  private readonly busy = new Map<number, number>();
  private readonly detectedAt = new Map<number, number>();
  private readonly rebuilding = new Set<Volume>();
  private readonly res: TrialResult;
  private served = 0;
  private lastT = 0;
  private rho = 0;
  private rhoIntegral = 0;
  private rebuildSpanMs = 0;
  private events = 0;
  /** Rates change at every start and end of a rebuild; only the newest finishing event counts. */
  private rebuildVersion = 0;
  private readonly osdsUp: number;
  private backfillMiB = 0;
  private backfillRate = 0;
  private backfillStartMs = Number.NaN;
  private backfillDoneMs = Number.NaN;

  constructor(private readonly p: ModelParams, private readonly rng: Rng) {
    this.m = latencyModel(p);
    this.osdsUp = p.osds - p.osdsPerHost * p.failHosts;
    this.res = { detectMs: [], blocklistMs: [], failoverMs: [], outageMs: [], rebuildMs: [], allOptimalMs: 0, peakRho: 0, meanRhoDuringRebuild: 0, peakRebuildMiBPerSec: 0, peakExtraLoad: NO_LOAD, backfillStartMs: Number.NaN, backfillDoneMs: Number.NaN };
  }

  run(): TrialResult {
    const { p, rng } = this;
    const failed = pickHosts(rng, p.hosts, p.failHosts);
    const survivors = Array.from({ length: p.hosts }, (_, i) => i).filter((h) => !failed.includes(h));
    for (const h of failed) {
      for (let v = 0; v < p.volumesPerHost; v++) {
        // The orchestrator's choice: the survivor with the fewest volumes taken over so far
        // (ties to the lowest index), which is round robin over the survivors.
        const to = survivors[this.volumes.length % survivors.length]!;
        this.volumes.push({ id: this.volumes.length, fromHost: h, toHost: to, servedAt: NaN, remainingMiB: p.volumeGiB * 1024 * p.fillRatio, rateMiBPerSec: 0, rebuiltAt: NaN });
      }
      this.heap.push({ kind: 'detect', at: detectAt(p, rng), host: h });
    }
    // Hyperconverged: the dead hosts' OSDs are down from the crash; Ceph marks them out and
    // starts backfilling their data onto the others after mon_osd_down_out_interval.
    if (p.osdsPerHost > 0) this.heap.push({ kind: 'out', at: p.downOutMs });
    this.rho = utilisation(p, this.load(), this.osdsUp);
    this.loop();
    const rebuildEnd = this.volumes.reduce((a, v) => Math.max(a, v.rebuiltAt), 0);
    return {
      ...this.res, allOptimalMs: rebuildEnd, meanRhoDuringRebuild: this.rebuildSpanMs > 0 ? this.rhoIntegral / this.rebuildSpanMs : this.rho,
      backfillStartMs: this.backfillStartMs, backfillDoneMs: this.backfillDoneMs,
    };
  }

  private loop(): void {
    for (let e = this.heap.pop(); e !== undefined; e = this.heap.pop()) {
      if (++this.events > EVENTS_MAX) throw new Error(`scale-out model: more than ${EVENTS_MAX} events; check the inputs`);
      this.advance(e.at);
      if (e.kind === 'detect') this.onDetect(e.at, e.host);
      else if (e.kind === 'blocklisted') this.onBlocklisted(e.at, e.host);
      else if (e.kind === 'served') this.onServed(e.at, e.volume);
      else if (e.kind === 'out') this.onOut(e.at);
      else if (e.version === this.rebuildVersion) this.onRebuilt(e.at);
    }
    const stuck = this.volumes.filter((v) => Number.isNaN(v.rebuiltAt));
    if (stuck.length > 0 || this.backfillMiB > 0) throw new Error(`scale-out model: ${stuck.length} rebuild(s)${this.backfillMiB > 0 ? ' and the Ceph backfill' : ''} never finish: the client load alone saturates the cluster (utilisation ${this.rho.toFixed(2)}); add OSDs or lower the host load`);
  }

  /** Client and degraded-read load of everything serving now, plus leases. */
  private load(): ClusterLoad {
    const p = this.p;
    const perVolume = healthyHostLoad(p);
    const serving = (p.hosts - p.failHosts) * p.volumesPerHost + this.served;
    const load: ClusterLoad = { miBPerSec: (perVolume.miBPerSec * serving) / p.volumesPerHost, iops: (perVolume.iops * serving) / p.volumesPerHost };
    const dr = degradedVolumeReadLoad(p);
    return addLoad(load, { miBPerSec: dr.miBPerSec * this.rebuilding.size, iops: dr.iops * this.rebuilding.size });
  }

  private advance(now: number): void {
    const dt = now - this.lastT;
    if (dt <= 0) return;
    if (this.rebuilding.size > 0) { this.rhoIntegral += this.rho * dt; this.rebuildSpanMs += dt; }
    for (const v of this.rebuilding) v.remainingMiB = Math.max(v.remainingMiB - (v.rateMiBPerSec * dt) / 1000, 0);
    this.backfillMiB = Math.max(this.backfillMiB - (this.backfillRate * dt) / 1000, 0);
    this.lastT = now;
  }

  private onDetect(at: number, host: number): void {
    this.res.detectMs.push(at);
    this.detectedAt.set(host, at);
    const took = this.m.monCmd.sample(this.rng); // the monitors, not the OSDs: no OSD queueing
    this.res.blocklistMs.push(took);
    this.heap.push({ kind: 'blocklisted', at: at + took, host });
  }

  private onBlocklisted(at: number, host: number): void {
    for (const v of this.volumes.filter((x) => x.fromHost === host)) {
      const q = this.waiting.get(v.toHost) ?? [];
      q.push(v);
      this.waiting.set(v.toHost, q);
    }
    for (const h of new Set(this.volumes.filter((x) => x.fromHost === host).map((x) => x.toHost))) this.startFailovers(at, h);
  }

  /** Lock takeover (one write on the image header), image open, superblock read and write with
   * the new event counter and lease, then the engine brings the volume up. */
  private failoverMs(): number {
    const { p, m, rng, rho } = this;
    let ms = sampleRbdWriteMs(p, m, rng, rho, 4096);
    for (let i = 0; i < p.openReads; i++) ms += sampleRbdReadMs(p, m, rng, rho, 4096);
    ms += sampleRbdReadMs(p, m, rng, rho, 4096) + sampleRbdWriteMs(p, m, rng, rho, 4096);
    return ms + p.engineOpenMs;
  }

  private startFailovers(at: number, host: number): void {
    const q = this.waiting.get(host) ?? [];
    while (q.length > 0 && (this.busy.get(host) ?? 0) < this.p.failoverParallel) {
      const v = q.shift()!;
      this.busy.set(host, (this.busy.get(host) ?? 0) + 1);
      this.heap.push({ kind: 'served', at: at + this.failoverMs(), volume: v.id });
    }
  }

  private onServed(at: number, id: number): void {
    const v = this.volumes[id]!;
    const detected = this.detectedAt.get(v.fromHost) ?? 0;
    v.servedAt = at;
    this.res.failoverMs.push(at - detected);
    this.res.outageMs.push(at);
    this.served++;
    this.busy.set(v.toHost, (this.busy.get(v.toHost) ?? 1) - 1);
    this.startFailovers(at, v.toHost);
    if (v.remainingMiB <= 0) { v.rebuiltAt = at; this.res.rebuildMs.push(0); }
    else this.rebuilding.add(v);
    this.reallocate(at);
  }

  private onOut(at: number): void {
    this.backfillMiB = this.p.failHosts * this.p.osdsPerHost * usedMiBPerOsd(this.p);
    this.backfillStartMs = at;
    this.reallocate(at);
  }

  /** The earliest rebuild (or the backfill) ended; others may end at the same instant. */
  private onRebuilt(at: number): void {
    if (this.backfillRate > 0 && this.backfillMiB <= DONE_MIB) { this.backfillMiB = 0; this.backfillRate = 0; this.backfillDoneMs = at; }
    for (const v of [...this.rebuilding]) {
      if (v.remainingMiB > DONE_MIB) continue;
      v.rebuiltAt = at;
      v.remainingMiB = 0;
      this.rebuilding.delete(v);
      this.res.rebuildMs.push(at - v.servedAt);
    }
    this.reallocate(at);
  }

  /** New rates for every running rebuild, and their finishing events. The unit read latency
   * depends on the utilisation the rates cause, so this iterates a few times to a fixed point. */
  private reallocate(at: number): void {
    const p = this.p;
    const other = this.load();
    const streams = [...this.rebuilding];
    const backfilling = this.backfillMiB > 0;
    // One demand per stream, built once; only the rebuild cap changes between iterations.
    const perRebuild = rebuildLoad(p, 1);
    const demands: StreamDemand[] = streams.map((v) => ({ host: v.toHost, capMiBPerSec: 0, perMiB: perRebuild }));
    if (backfilling) demands.push({ host: null, capMiBPerSec: this.osdsUp * p.backfillMiBPerSec, perMiB: backfillLoad(p, 1) });
    let rebuildTotal = 0;
    let rates: number[] = [];
    for (let iter = 0; iter < 3; iter++) {
      const backfill = backfilling ? backfillLoad(p, rates[streams.length] ?? 0) : NO_LOAD;
      const rho = utilisation(p, addLoad(addLoad(other, rebuildLoad(p, rebuildTotal)), backfill), this.osdsUp);
      const cap = streamCapMiBPerSec(p, unitReadMeanMs(p, this.m, rho));
      for (let i = 0; i < streams.length; i++) demands[i]!.capMiBPerSec = cap;
      rates = shareRebuilds(p, demands, other, p.hostWriteMiBPerSec, this.osdsUp);
      rebuildTotal = 0;
      for (let i = 0; i < streams.length; i++) rebuildTotal += rates[i] ?? 0;
    }
    this.backfillRate = backfilling ? rates[streams.length] ?? 0 : 0;
    const ceph = backfillLoad(p, this.backfillRate);
    const degradedReads = { miBPerSec: (p.hostReadMiBPerSec / p.volumesPerHost) * streams.length, iops: (p.hostReadIops / p.volumesPerHost) * streams.length };
    this.rho = utilisation(p, addLoad(addLoad(other, rebuildLoad(p, rebuildTotal)), ceph), this.osdsUp);
    const r = this.res as { peakRho: number; peakRebuildMiBPerSec: number; peakExtraLoad: ClusterLoad };
    r.peakRho = Math.max(r.peakRho, this.rho);
    if (rebuildTotal > r.peakRebuildMiBPerSec) { r.peakRebuildMiBPerSec = rebuildTotal; r.peakExtraLoad = addLoad(addLoad(rebuildLoad(p, rebuildTotal), degradedReads), ceph); }
    let next = this.backfillRate > 0 ? (this.backfillMiB / this.backfillRate) * 1000 : Infinity;
    streams.forEach((v, i) => {
      v.rateMiBPerSec = rates[i] ?? 0;
      if (v.rateMiBPerSec > 0) next = Math.min(next, (v.remainingMiB / v.rateMiBPerSec) * 1000);
    });
    this.rebuildVersion++;
    if (next < Infinity) this.heap.push({ kind: 'rebuilt', at: at + next, version: this.rebuildVersion });
  }

}

/** Seed of trial t: the run's seed mixed with t, so trials are independent yet reproducible. */
export const trialSeed = (seed: number, t: number): number => (Math.imul(seed >>> 0, 0x9e3779b1) ^ Math.imul(t + 1, 0x85ebca77)) >>> 0;

export function runTrials(p: ModelParams): TrialResult[] {
  const out: TrialResult[] = [];
  for (let t = 0; t < p.trials; t++) out.push(new Trial(p, new Rng(trialSeed(p.seed, t))).run());
  return out;
}
