// The middle stage without its thread: turns a parent descriptor into sub-descriptors on the
// bottom ring. Used by the middle worker loop (which blocks while sub-descriptors run out).
//
// PENDING starts at 1 (a guard held by the middle stage), grows by one before each sub is
// pushed and loses the guard after the last push. So a parent never completes early, and the
// middle stage may push subs as it gets them instead of needing all of them at once — with a
// bounded sub pool and arbitrarily wide requests that is what rules out deadlock.
import { createQueue, D, DESC_WORDS, DescStatus, Op, type SubmissionQueue, pushSure } from '@onestack/queue';
import { errnoCode } from './errno.js';
import { failParent, PEER_NONE, releaseParent, SUB_PEER } from './complete.js';
import { mapLinear, mapRaid0, mapRaid0Coalesced, mapRaid1, type Extent, type VolumeGeometry } from './map.js';
import { isParityLayout, mapParityData, parityGeometry, type ParityGeometry } from './map-parity.js';
import { runCompute } from './compute.js';
import { planPaired } from './plan-raid10.js';
import { pickLeg, readPolicyFromEnv, type ReadPolicy } from './read-choice.js';
import { PUSH_TIMEOUT_MS, type SharedViews } from './shared-layout.js';
import { FLAG_ELEMENT, FLAG_MIRRORED, FLAG_SKIP_BEHIND, ID_CLASS_REMOTE, STATE_ACTIVE, STATE_REBUILDING, type TopologyMessage, type TopologyVolume } from './topology.js';
import { latencyUs, nowMs, readIsStale } from './transport.js';

const EIO = errnoCode('EIO');
const EINVAL = errnoCode('EINVAL');

interface BoundVolume {
  readonly spec: TopologyVolume;
  readonly geom: VolumeGeometry;
  readonly queue: SubmissionQueue;
  /** raid5/raid6 only. */
  readonly parity: ParityGeometry | null;
}

export interface Plan {
  readonly parent: number;
  readonly extents: readonly Extent[];
  readonly roles: readonly number[];
  /** Per role: the sub's SUB_PEER word (raid10 writes), or null for PEER_NONE on every sub. */
  readonly peers: Int32Array | null;
  next: number;
}

export class MiddleCore {
  private volumes: (BoundVolume | undefined)[] = [];
  private bound: BoundVolume[] = [];
  private rotation = 0;
  private nextVolume = 0;
  /** Per element index: -1 = local (bottom ring), k = remote ring k. */
  private routes = new Int32Array(0);
  /** Subs pushed since the last ringBells(), per destination: [bottom, remote 0, remote 1, ...]. */
  private readonly unrung: Int32Array;
  /** Mirrored reads: latency-aware (read-choice.ts) unless ONESTACK_READ_POLICY=queue. */
  private readonly readPolicy: ReadPolicy = readPolicyFromEnv();

  constructor(private readonly v: SharedViews) {
    this.unrung = new Int32Array(1 + v.remote.length);
  }

  /** Wakes each stage that got subs since the last call (one doorbell per batch, CALIBRATION.md). */
  ringBells(): void {
    const u = this.unrung;
    if (u[0]! > 0) this.v.bottomBell.ring(u[0]!);
    for (let k = 1; k < u.length; k++) if (u[k]! > 0) this.v.remoteBells[k - 1]!.ring(u[k]!);
    u.fill(0);
  }

  /** Attaches the volume queues named by the topology (the main thread initialised them). */
  apply(msg: TopologyMessage): void {
    const byIndex = new Map(msg.elements.map((e) => [e.index, e]));
    const routes = new Int32Array(this.v.params.maxElements).fill(-1);
    for (const e of msg.elements) if (e.kind !== 'local') routes[e.index] = e.index % this.v.remote.length;
    this.routes = routes;
    const volumes: (BoundVolume | undefined)[] = [];
    for (const spec of msg.volumes) {
      const elements = spec.elements.map((i) => {
        const e = byIndex.get(i);
        if (e === undefined) throw new Error(`volume ${spec.name}: element index ${i} not in topology`);
        return { dataOffsetBytes: e.dataOffsetBytes, dataSizeBytes: e.dataSizeBytes };
      });
      const old = this.volumes[spec.index];
      const queue = old !== undefined && old.spec.order === spec.order ? old.queue : createQueue(spec.order, this.v.control, this.v.volumeQueueOffset(spec.index), this.v.params.parents, false);
      const geom: VolumeGeometry = { layout: spec.layout, chunkBytes: spec.chunkBytes, sizeBytes: spec.sizeBytes, elements };
      volumes[spec.index] = { spec, queue, geom, parity: isParityLayout(spec.layout) && spec.raw !== true ? parityGeometry(geom) : null };
    }
    this.volumes = volumes;
    this.bound = volumes.filter((x): x is BoundVolume => x !== undefined);
  }

  /** Round-robin over bound volumes; -1 when every queue is empty. */
  popParent(): number {
    const n = this.bound.length;
    for (let i = 0; i < n; i++) {
      const vol = this.bound[(this.nextVolume + i) % n]!;
      const parent = vol.queue.tryPop();
      if (parent >= 0) {
        this.nextVolume = (this.nextVolume + i + 1) % n;
        return parent;
      }
    }
    return -1;
  }

  queued(): number {
    let total = 0;
    for (const vol of this.bound) total += vol.queue.size();
    return total;
  }

  /** Maps a parent. Returns null when the parent was failed outright (already finalised or not). */
  plan(parent: number): Plan | null {
    const w = this.v.words;
    const pb = parent * DESC_WORDS;
    Atomics.store(w, pb + D.PENDING, 1); // the guard, see the file comment
    w[pb + D.STATUS] = DescStatus.RUNNING;
    try {
      const vol = this.volumes[w[pb + D.TARGET]!];
      if (vol === undefined) return this.reject(parent, EIO);
      const roles = vol.spec.elements;
      if (w[pb + D.OP] === Op.COMPUTE) return this.compute(parent);
      if (vol.spec.raw === true || (w[pb + D.FLAGS]! & FLAG_ELEMENT) !== 0) {
        const extents = this.planRaw(parent, vol);
        return extents === null ? this.reject(parent, EINVAL) : { parent, extents, roles, peers: null, next: 0 };
      }
      if (vol.spec.layout === 'raid10') {
        const paired = planPaired(this.v, parent, vol.spec, vol.geom, this.rotation++ & 0x3fffffff, this.readPolicy);
        if (paired === null) return this.reject(parent, EIO);
        return { parent, extents: paired.extents, roles, peers: paired.peers, next: 0 };
      }
      if (vol.parity !== null) {
        const extents = this.planParityRead(parent, vol, vol.parity);
        return extents === null ? this.reject(parent, EIO) : { parent, extents, roles, peers: null, next: 0 };
      }
      const extents = vol.spec.layout === 'raid1' ? this.planMirror(parent, vol) : this.planStriped(parent, vol);
      if (extents === null) return this.reject(parent, EIO);
      return { parent, extents, roles, peers: null, next: 0 };
    } catch {
      // Bad geometry or range (a bug upstream): fail this request, keep serving the others.
      return this.reject(parent, EINVAL);
    }
  }

  /** Maintenance I/O on one element, whatever its state (a rebuild writes to a leg that is not active). */
  private planRaw(parent: number, vol: BoundVolume): Extent[] | null {
    const w = this.v.words;
    const pb = parent * DESC_WORDS;
    const role = vol.spec.elements.indexOf(w[pb + D.AUX]!);
    if (role < 0) return null;
    const op = w[pb + D.OP]!;
    const len = op === Op.FLUSH ? 0 : w[pb + D.LENGTH]!;
    Atomics.store(w, pb + D.AUX, 0);
    return [{ role, elementOffsetBytes: op === Op.FLUSH ? 0 : this.v.table.getOffset(parent), lengthBytes: len, bufferOffsetBytes: w[pb + D.SLOT]! >= 0 ? 0 : -1 }];
  }

  /** Parity work (compute.ts): done here, no subs; the parent completes at once. */
  private compute(parent: number): null {
    const w = this.v.words;
    const pb = parent * DESC_WORDS;
    let errno: number;
    try {
      errno = runCompute(this.v, w[pb + D.AUX]!, EINVAL);
    } catch {
      errno = EINVAL; // a malformed block (a bug upstream): fail this op, keep the stage running
    }
    Atomics.store(w, pb + D.AUX, 0);
    if (errno !== 0) failParent(this.v, parent, -1, errno);
    if (releaseParent(this.v, parent)) this.completedAny = true;
    return null;
  }

  /**
   * raid5/6 reads whose chunks are all on active elements go straight to them (like raid0); any
   * other case fails with EIO and the stripe engine (main thread) reconstructs it. Writes never
   * come here: the stripe engine sends element-addressed I/O (FLAG_ELEMENT) instead.
   */
  private planParityRead(parent: number, vol: BoundVolume, g: ParityGeometry): Extent[] | null {
    const w = this.v.words;
    const pb = parent * DESC_WORDS;
    const op = w[pb + D.OP]!;
    if (op !== Op.READ && op !== Op.CACHE) return null;
    const extents = mapParityData(g, this.v.table.getOffset(parent), w[pb + D.LENGTH]!);
    for (const x of extents) if (Atomics.load(this.v.elemState, vol.spec.elements[x.role]!) !== STATE_ACTIVE) return null;
    return extents;
  }

  private planStriped(parent: number, vol: BoundVolume): Extent[] | null {
    const w = this.v.words;
    const pb = parent * DESC_WORDS;
    const op = w[pb + D.OP]!;
    const off = this.v.table.getOffset(parent);
    const len = w[pb + D.LENGTH]!;
    let extents: Extent[];
    if (op === Op.FLUSH) extents = vol.geom.elements.map((_, role) => ({ role, elementOffsetBytes: 0, lengthBytes: 0, bufferOffsetBytes: -1 }));
    else if (vol.spec.layout === 'linear') extents = mapLinear(vol.geom, off, len);
    else if (vol.spec.layout !== 'raid0') return null;
    else if (op === Op.READ || op === Op.WRITE) extents = mapRaid0(vol.geom, off, len);
    else extents = mapRaid0Coalesced(vol.geom, off, len);
    // No redundancy: an element the control plane took out fails the request before any I/O.
    for (const x of extents) if (Atomics.load(this.v.elemState, vol.spec.elements[x.role]!) !== STATE_ACTIVE) return null;
    return extents;
  }

  private planMirror(parent: number, vol: BoundVolume): Extent[] | null {
    const w = this.v.words;
    const pb = parent * DESC_WORDS;
    const op = w[pb + D.OP]!;
    const active: number[] = [];
    const rebuilding: number[] = [];
    vol.spec.elements.forEach((el, role) => {
      const state = Atomics.load(this.v.elemState, el);
      if (state === STATE_ACTIVE) active.push(role);
      else if (state === STATE_REBUILDING) rebuilding.push(role);
    });
    if (active.length === 0) return null;
    // Writes also go to legs being rebuilt: the part already copied must stay current.
    let legs = op === Op.READ || op === Op.CACHE ? active : [...active, ...rebuilding].sort((a, b) => a - b);
    const behind = vol.spec.writeBehind === undefined ? -1 : vol.spec.elements.indexOf(vol.spec.writeBehind.element);
    if (behind >= 0 && (op === Op.READ || op === Op.CACHE ? active.length > 1 : (w[pb + D.FLAGS]! & FLAG_SKIP_BEHIND) !== 0)) {
      // The write-behind leg may lag: it serves no read while another leg can, and a write the
      // volume I/O stages for it later (write-behind.ts) skips it; one with no other active leg fails.
      legs = legs.filter((role) => role !== behind);
      if (!legs.some((role) => active.includes(role))) return null;
    }
    if (op === Op.READ || op === Op.CACHE) {
      const q = (role: number): number => Atomics.load(this.v.elemQueued, vol.spec.elements[role]!);
      const now = nowMs();
      const us = (role: number): number => latencyUs(this.v.elemLat, vol.spec.elements[role]!, true);
      const stale = (role: number): boolean => readIsStale(this.v.elemLat, vol.spec.elements[role]!, now);
      legs = [pickLeg(this.readPolicy, legs, q, us, this.rotation++ & 0x3fffffff, stale)];
    }
    const off = op === Op.FLUSH ? 0 : this.v.table.getOffset(parent);
    const len = op === Op.FLUSH ? 0 : w[pb + D.LENGTH]!;
    w[pb + D.FLAGS] = w[pb + D.FLAGS]! | FLAG_MIRRORED;
    // Legs whose failure fails the request: the active ones written (a leg being rebuilt holds
    // only part of the volume, so a write that reached only it is not safe).
    w[pb + D.SPARE] = legs.filter((role) => active.includes(role)).length;
    Atomics.store(w, pb + D.AUX, 0);
    const extents = mapRaid1(vol.geom, legs, off, len);
    return op === Op.FLUSH ? extents.map((x) => ({ ...x, elementOffsetBytes: 0, bufferOffsetBytes: -1 })) : extents;
  }

  private reject(parent: number, errno: number): null {
    failParent(this.v, parent, -1, errno);
    if (releaseParent(this.v, parent)) this.completedAny = true;
    return null;
  }

  /** Set when a parent was finalised here; the loop rings the completion doorbell and clears it. */
  completedAny = false;

  /** Gives up on the rest of a plan (shutdown): the subs already pushed still complete it. */
  abandon(plan: Plan, errno: number): void {
    failParent(this.v, plan.parent, -1, errno);
    plan.next = plan.extents.length;
    if (releaseParent(this.v, plan.parent)) this.completedAny = true;
  }

  /**
   * Pushes as many subs as the pool gives. Returns the number pushed; `plan.next` says where to
   * resume. When the last one is pushed the guard is dropped.
   */
  push(plan: Plan): number {
    const v = this.v;
    const w = v.words;
    const pb = plan.parent * DESC_WORDS;
    let pushed = 0;
    while (plan.next < plan.extents.length) {
      const idx = v.subPool.tryAlloc();
      if (idx < 0) return pushed;
      const sub = v.params.parents + idx;
      const x = plan.extents[plan.next]!;
      const element = plan.roles[x.role]!;
      const sb = sub * DESC_WORDS;
      v.table.reset(sub);
      w[sb + SUB_PEER] = plan.peers === null ? PEER_NONE : plan.peers[x.role]!;
      const route = this.routes[element] ?? -1;
      // A sub's class bit says where its element is (the parent's says where the request came from).
      w[sb + D.ID_HI] = route < 0 ? w[pb + D.ID_HI]! & ~ID_CLASS_REMOTE : w[pb + D.ID_HI]! | ID_CLASS_REMOTE;
      w[sb + D.ID_LO] = w[pb + D.ID_LO]!;
      v.table.setOffset(sub, x.elementOffsetBytes);
      w[sb + D.LENGTH] = x.lengthBytes;
      w[sb + D.SLOT] = x.bufferOffsetBytes < 0 ? -1 : w[pb + D.SLOT]!;
      w[sb + D.SLOT_OFFSET] = x.bufferOffsetBytes < 0 ? 0 : w[pb + D.SLOT_OFFSET]! + x.bufferOffsetBytes;
      w[sb + D.FLAGS] = w[pb + D.FLAGS]!;
      w[sb + D.OP] = w[pb + D.OP]!;
      w[sb + D.TARGET] = element;
      w[sb + D.PARENT] = plan.parent;
      w[sb + D.STATUS] = DescStatus.QUEUED;
      Atomics.add(w, pb + D.PENDING, 1);
      Atomics.add(v.elemQueued, element, 1);
      // The ring has room for every sub-descriptor; only a stuck consumer makes this fail.
      const ring = route < 0 ? v.bottom : v.remote[route]!;
      if (!pushSure(ring, sub, undefined, PUSH_TIMEOUT_MS)) throw new Error(`${route < 0 ? 'bottom' : `remote ${route}`} ring refused sub ${sub} for ${PUSH_TIMEOUT_MS} ms`);
      this.unrung[route + 1]!++;
      plan.next++;
      pushed++;
    }
    if (releaseParent(v, plan.parent)) this.completedAny = true;
    return pushed;
  }
}
