// The discrete-event part of the scale-out model: K of N hosts crash at t = 0; the fleet starts
// each of their volumes on a survivor, which watches the dead holder's lease, fences its client
// and takes the lock (scale-out-lease.ts takeover; one image at a time per survivor), assembles
// the volume degraded from the RBD leg and serves it; then it rebuilds the local leg from RBD
// while every rebuild shares the cluster (scale-out-model.ts shareRebuilds). Simulated time in
// ms, one binary heap of events, no timers; every loop is bounded.
import { headerFate, liveHolderStops, peeredAt, takeover, UNTOUCHED, type StopCounts } from './scale-out-lease.js';
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
  | { readonly kind: 'locked'; readonly at: number; readonly volume: number }
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
  detectedAt: number;
  lockedAt: number;
  servedAt: number;
  remainingMiB: number;
  rateMiBPerSec: number;
  rebuiltAt: number;
}

export interface TrialResult {
  /** The fleet started the takeover → the survivor began it (behind its earlier takeovers). */
  readonly queuedMs: number[];
  /** Crash → the watch concluded the holder is dead. */
  readonly detectMs: number[];
  /** Detected → fenced, locked, lease written. */
  readonly lockMs: number[];
  /** Locked → serving degraded (image open, superblock, Engine.open). */
  readonly assemblyMs: number[];
  /** Watch rounds beyond the first (the lock object's PG changed interval under the watch). */
  readonly extraRounds: number;
  /** Live holders that stop themselves (lease rule) in this trial's draws. */
  readonly stops: StopCounts;
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

class Trial {
  private readonly heap = new EventHeap();
  private readonly m: LatencyModel;
  private readonly volumes: Volume[] = [];
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
    this.res = { queuedMs: [], detectMs: [], lockMs: [], assemblyMs: [], extraRounds: 0, stops: { monOutage: 0, storageNode: 0, survivors: 0 }, outageMs: [], rebuildMs: [], allOptimalMs: 0, peakRho: 0, meanRhoDuringRebuild: 0, peakRebuildMiBPerSec: 0, peakExtraLoad: NO_LOAD, backfillStartMs: Number.NaN, backfillDoneMs: Number.NaN };
  }

  run(): TrialResult {
    const { p, rng } = this;
    const failed = pickHosts(rng, p.hosts, p.failHosts);
    const survivors = Array.from({ length: p.hosts }, (_, i) => i).filter((h) => !failed.includes(h));
    // Hyperconverged: the dead hosts' OSDs held replicas of some lock objects; those PGs change
    // interval and block writes until the OSDs are marked down and the PGs re-peer.
    const peered = p.osdsPerHost > 0 ? peeredAt(p, this.m, rng) : null;
    (this.res as { stops: StopCounts }).stops = liveHolderStops(p, this.m, rng, peered);
    const starts: number[] = [];
    for (const h of failed) {
      const fleetStart = rng.uniform() * p.takerStartMs; // the fleet's decision, once per dead host
      for (let v = 0; v < p.volumesPerHost; v++) {
        // The fleet's choice: round robin over the survivors.
        const to = survivors[this.volumes.length % survivors.length]!;
        starts.push(fleetStart);
        this.volumes.push({ id: this.volumes.length, fromHost: h, toHost: to, detectedAt: NaN, lockedAt: NaN, servedAt: NaN, remainingMiB: p.volumeGiB * 1024 * p.fillRatio, rateMiBPerSec: 0, rebuiltAt: NaN });
      }
    }
    // Takeovers do not depend on the OSD load (CLI and monitor calls, the watch): computed up front,
    // per survivor in the fleet's order, at most takeoversParallel at once.
    for (const to of survivors) {
      const slots: number[] = new Array<number>(p.takeoversParallel).fill(0);
      for (const v of this.volumes.filter((x) => x.toHost === to).sort((a, b) => (starts[a.id]! - starts[b.id]!) || a.id - b.id)) {
        const slot = slots.indexOf(Math.min(...slots));
        const begin = Math.max(starts[v.id]!, slots[slot]!);
        const fate = peered === null ? UNTOUCHED : headerFate(p, rng, peered);
        const t = takeover(p, this.m, rng, begin, fate);
        slots[slot] = t.lockedAtMs;
        v.detectedAt = t.detectedAtMs;
        v.lockedAt = t.lockedAtMs;
        this.res.queuedMs.push(begin - starts[v.id]!);
        this.res.detectMs.push(t.detectedAtMs);
        this.res.lockMs.push(t.lockedAtMs - t.detectedAtMs);
        (this.res as { extraRounds: number }).extraRounds += t.rounds - 1;
        this.heap.push({ kind: 'locked', at: t.lockedAtMs, volume: v.id });
      }
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
      if (e.kind === 'locked') this.heap.push({ kind: 'served', at: e.at + this.assemblyMs(), volume: e.volume });
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

  /** Image open (a few reads), superblock read and write with the new event counter, then the
   * engine brings the volume up degraded; the RBD ops at the cluster's utilisation now. */
  private assemblyMs(): number {
    const { p, m, rng, rho } = this;
    let ms = 0;
    for (let i = 0; i < p.openReads; i++) ms += sampleRbdReadMs(p, m, rng, rho, 4096);
    ms += sampleRbdReadMs(p, m, rng, rho, 4096) + sampleRbdWriteMs(p, m, rng, rho, 4096);
    return ms + p.engineOpenMs;
  }

  private onServed(at: number, id: number): void {
    const v = this.volumes[id]!;
    v.servedAt = at;
    this.res.assemblyMs.push(at - v.lockedAt);
    this.res.outageMs.push(at);
    this.served++;
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
