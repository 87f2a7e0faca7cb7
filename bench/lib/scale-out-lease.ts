// The ownership lock in the scale-out model (docs/scale-out.md "Failover between hosts"): how long a
// survivor takes to conclude that a dead holder's lease stopped, fence it and take the lock — call
// by call, as packages/engine/src/remote/rbd-lock.ts (acquire, leaseMoves) and rbd-lock-cli.ts
// (fence) make them — and which *live* holders stop themselves under the rule of rbd-lease.ts
// when Ceph cannot renew their lease in time. Pure functions of the parameters, an Rng and times
// in ms; no clock and no I/O.
import { choose, marginMs, renewPeriodMs, type LatencyModel, type ModelParams, type Rng } from './scale-out-model.js';

/** A taker's watch restarts at most this often when the lock object's PG changes (rbd-lock.ts WATCH_ROUNDS_MAX). */
export const WATCH_ROUNDS_MAX = 3;
/** A renewal that failed is retried after this (rbd-lease.ts RETRY_MS). */
export const RENEW_RETRY_MS = 1_000;

/** How the crash touches one volume's lock object (the image header's placement group). */
export interface HeaderFate {
  /** The instant its PG is active again after losing a replica (ms from the crash), or null: untouched. */
  readonly peeredAtMs: number | null;
  /** Its primary died too: reads of the lease block until peeredAtMs (writes block whenever touched). */
  readonly primaryDead: boolean;
}

export const UNTOUCHED: HeaderFate = { peeredAtMs: null, primaryDead: false };

/** Hyperconverged, failure domain = host: the share of lock objects whose PG had a replica on one of the dead hosts. */
export function headerTouchedShare(p: ModelParams): number {
  if (p.osdsPerHost === 0) return 0;
  return 1 - choose(p.hosts - p.failHosts, p.replicas) / choose(p.hosts, p.replicas);
}

/** Ceph on its own nodes, failure domain = node: the share of lock objects one storage node holds a replica of. */
export function storageNodeShare(p: ModelParams): number {
  const nodes = Math.ceil(p.osds / p.osdsPerStorageNode);
  return nodes <= p.replicas ? 1 : p.replicas / nodes;
}

/** The fate of one volume's lock object in a crash whose OSDs are re-peered at peeredAtMs (null: Ceph untouched). */
export function headerFate(p: ModelParams, rng: Rng, peeredAtMs: number | null): HeaderFate {
  const share = headerTouchedShare(p);
  if (peeredAtMs === null || share === 0 || rng.uniform() >= share) return UNTOUCHED;
  // P(primary on a dead host | some replica is) = (K / N) / share.
  return { peeredAtMs, primaryDead: rng.uniform() < p.failHosts / p.hosts / share };
}

/** When the OSDs of hosts that died at 0 are marked down and their PGs active again: the grace, then peering. */
export const peeredAt = (p: ModelParams, m: LatencyModel, rng: Rng): number => p.osdDownGraceMs + m.peering.sample(rng);

export interface TakeoverTimes {
  /** The watch concluded "dead" (ms from the crash). */
  readonly detectedAtMs: number;
  /** Fenced, lock taken and our lease written. */
  readonly lockedAtMs: number;
  /** Watch rounds: 1, more when the lock object's PG changed interval under the watch. */
  readonly rounds: number;
}

/**
 * One takeover started at startMs: `rbd info`, `rados lock info`; a watch (PG interval, first lease
 * read, then a read every watchPollMs until one *issued* lease + watchExtraMs after the first still
 * returns it, PG interval again; a changed interval starts it over); then the fence: `rbd status`,
 * one `ceph osd blocklist add` (the lease names the holder's librbd client: one per image), `rbd lock
 * ls`, `rbd lock rm`, `rados lock break`, `rados lock get`, and the lease write.
 */
export function takeover(p: ModelParams, m: LatencyModel, rng: Rng, startMs: number, fate: HeaderFate): TakeoverTimes {
  const rados = (): number => m.radosCli.sample(rng);
  const rbd = (): number => m.rbdCli.sample(rng);
  const peered = fate.peeredAtMs ?? -Infinity;
  const read = (at: number): number => (fate.primaryDead && at < peered ? peered : at) + rados();
  let t = startMs + rbd() + rados();
  const windowMs = p.leaseMs + p.watchExtraMs;
  let rounds = 0;
  for (;;) {
    rounds++;
    const begin = t;
    t = read(t + m.pgCheck.sample(rng));
    const fromMs = t;
    for (let i = 0; i < 1_000_000; i++) {
      t += p.watchPollMs;
      const issued = t;
      t = read(t);
      if (issued - fromMs >= windowMs) break;
    }
    t += m.pgCheck.sample(rng);
    // The interval changed inside the round (the dead OSDs were marked down): watch again.
    if (!(begin < peered && peered <= t) || rounds >= WATCH_ROUNDS_MAX) break;
  }
  const detectedAtMs = t;
  t += rbd() + m.monCmd.sample(rng) + rbd();
  t = Math.max(t, peered); // lock rm, break, get and the lease write modify the header object
  t += rbd() + rados() + rados() + rados();
  return { detectedAtMs, lockedAtMs: t, rounds };
}

/**
 * A live holder whose renewals start failing at 0: it stops serving this long after, unless one
 * succeeds first. Its last successful write began a uniform phase of the renewal period earlier.
 */
export function holderDeadlineMs(p: ModelParams, rng: Rng): number {
  return p.leaseMs - marginMs(p.leaseMs) - rng.uniform() * renewPeriodMs(p.leaseMs);
}

/** A renewal blocked from 0 succeeds at renewedAtMs; the holder stops if its deadline came first. */
export const holderStops = (p: ModelParams, rng: Rng, renewedAtMs: number): boolean => holderDeadlineMs(p, rng) < renewedAtMs;

export interface StopCounts {
  /** Live holders (volumes) that stop when the monitors lose quorum for monOutageMs. */
  readonly monOutage: number;
  /** … when one storage node loses power (its OSDs are marked down only after the grace). */
  readonly storageNode: number;
  /** Hyperconverged: surviving hosts' volumes that stop because the crash took a replica of their lock object. */
  readonly survivors: number;
}

/**
 * One draw over every live holder of the fleet. A monitor outage: every renewal (a `rados` process,
 * which needs the monitors to connect) fails, and the monitors cannot prove anything, so a holder
 * stops unless a renewal retried after the monitors return lands before its deadline. A lock object
 * on a silently dead OSD: its writes block until the OSD is marked down and the PG re-peers; the
 * monitors show it servable meanwhile (the OSD is still "up"), so that is no evidence either.
 */
export function liveHolderStops(p: ModelParams, m: LatencyModel, rng: Rng, peeredAtMs: number | null): StopCounts {
  const all = p.hosts * p.volumesPerHost;
  const live = (p.hosts - p.failHosts) * p.volumesPerHost;
  let monOutage = 0;
  let storageNode = 0;
  let survivors = 0;
  const nodeShare = storageNodeShare(p);
  for (let v = 0; v < all; v++) {
    if (holderStops(p, rng, p.monOutageMs + rng.uniform() * RENEW_RETRY_MS + m.radosCli.sample(rng))) monOutage++;
    if (rng.uniform() < nodeShare && holderStops(p, rng, p.osdDownGraceMs + m.peering.sample(rng) + m.radosCli.sample(rng))) storageNode++;
  }
  for (let v = 0; v < live && peeredAtMs !== null; v++) {
    if (headerFate(p, rng, peeredAtMs).peeredAtMs !== null && holderStops(p, rng, peeredAtMs + m.radosCli.sample(rng))) survivors++;
  }
  return { monOutage, storageNode, survivors };
}
