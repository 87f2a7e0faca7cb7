// Holds back acknowledgements that another host could never see. A volume with an rbd:// leg
// under the ownership lock (rbd-lock.ts) may fail over: another host then assembles it from the
// RBD image. A write that succeeded while that leg was not active is on this host's local leg
// only; if this host is cut off from the cluster (the leg timed out because of that), it stops
// serving at its lease deadline and the taker's copy would lack the write. So such a write is
// acknowledged only once this host proved it still owns the image *after* the leg left: a lease
// renewal that started later, or the monitors showing the lock object unservable (an OSD outage:
// nobody can take it over, and this host resyncs the leg when it returns). Until then the
// acknowledgement waits; if the lock is lost instead (the self-fence at the deadline), the write
// fails: the client never hears "done" for bytes the new owner lacks. Writes, zeroes, trims and
// flushes; reads pass. raid5/6 (stripe engine) writes are not gated (docs/rbd.md "Not yet").
import { Op } from '@onestack/queue';
import type { DataPath } from '../datapath/datapath.js';
import type { AckGate } from '../datapath/top.js';
import { DataPathError } from '../datapath/errno.js';
import type { Registry } from '../state/registry.js';
import { rbdLocksHeld, rbdOwnershipProof, renewRbdLeaseNow } from './rbd-lock.js';

const POLL_MS = 100;
/** A renewal retried every second once it fails (rbd-lease.ts RETRY_MS): proof this old still counts. */
const PROOF_SLACK_MS = 1_000;
/** Bound on one wait: the self-fence comes within a lease (at most 300 s); past this, fail. */
const WAIT_MS_MAX = 310_000;

export interface AckGateHost {
  readonly dataDir: string;
  readonly registry: Registry;
  readonly dataPath: DataPath;
}

const GATED_OPS: ReadonlySet<number> = new Set([Op.WRITE, Op.WRITE_ZEROES, Op.TRIM, Op.FLUSH]);

/** Element index → when (holder's clock) the gate first saw that rbd leg not active. */
type AwaySince = Map<number, number>;

/** The rbd elements of volume `volumeIndex` that hold the ownership lock, as [index, name]. */
function lockedRbdLegs(host: AckGateHost, volumeIndex: number): [number, string][] {
  for (const v of host.registry.volumes.values()) {
    if (v.index !== volumeIndex) continue;
    const out: [number, string][] = [];
    for (const name of v.assembled.config.elements) {
      const e = host.registry.elements.get(name);
      const loc = e?.config.location;
      if (e !== undefined && loc?.kind === 'nbd' && loc.rbd !== undefined) out.push([e.index, name]);
    }
    return out;
  }
  return [];
}

/**
 * Null when the acknowledgement may go now, else the element it waits for; throws when the lock
 * is lost, or (`waiting`) released meanwhile — an engine closing must not acknowledge it either.
 */
function blocker(host: AckGateHost, legs: readonly [number, string][], away: AwaySince, waiting: boolean): string | null {
  for (const [index, name] of legs) {
    if (host.dataPath.elementState(index) === 'active') { // first: the common case reads no clock
      away.delete(index);
      continue;
    }
    const proof = rbdOwnershipProof(host.dataDir, name);
    if (proof === null) { // not locked here: not yet taken, or released
      if (waiting && away.has(index)) throw new DataPathError('EIO', `not acknowledged: element ${name} released its ownership lock (onestack is stopping) before the write reached it`);
      continue;
    }
    if (proof.lost !== null) throw new DataPathError('EIO', `not acknowledged: element ${name} lost its ownership lock (${proof.lost}), so another host may serve the volume without this write`);
    let since = away.get(index);
    if (since === undefined) {
      since = proof.nowMs;
      away.set(index, since);
      renewRbdLeaseNow(host.dataDir, name); // a proof now rather than at the next period
    }
    const fresh = proof.nowMs <= proof.provenMs + proof.periodMs + PROOF_SLACK_MS;
    if (!(proof.provenMs > since && fresh)) return name;
  }
  return null;
}

async function waitFor(host: AckGateHost, legs: readonly [number, string][], away: AwaySince, firstBlocker: string): Promise<void> {
  const startedMs = Date.now();
  let waiting: string | null = firstBlocker;
  while (waiting !== null) {
    if (Date.now() - startedMs > WAIT_MS_MAX) throw new DataPathError('EIO', `not acknowledged: element ${waiting} did not prove its ownership lock within ${WAIT_MS_MAX / 1000} s`);
    await new Promise((r) => setTimeout(r, POLL_MS));
    waiting = blocker(host, legs, away, true);
  }
}

/** The gate for the engine whose data dir is host.dataDir (installed with DataPath.setAckGate). */
export function rbdAckGate(host: AckGateHost): AckGate {
  const away: AwaySince = new Map();
  return (volumeIndex, op) => {
    if (!GATED_OPS.has(op) || !rbdLocksHeld(host.dataDir)) return null;
    const legs = lockedRbdLegs(host, volumeIndex);
    if (legs.length === 0) return null;
    let first: string | null;
    try {
      first = blocker(host, legs, away, false);
    } catch (err) {
      return Promise.reject(err);
    }
    return first === null ? null : waitFor(host, legs, away, first);
  };
}
