// TOP driver (main thread): gives each request a parent descriptor and a 64-bit ID, queues it
// on its volume's middle queue and settles its promise when the completion ring hands it back.
// One Atomics.waitAsync is armed on the completion doorbell only while requests are outstanding.
import { D, DESC_WORDS, DescStatus, Op, requestIdHi, requestIdLo, SEQUENCE_MODULUS, type OpCode, type RequestClass, type SubmissionQueue, pushSure } from '@onestack/queue';
import type { Layout } from '../config/types.js';
import { DataPathError, errnoCode, errnoName, type DataPathErrno } from './errno.js';
import { PUSH_TIMEOUT_MS, type SharedViews } from './shared-layout.js';
import type { MiddleCore, Plan } from './middle-core.js';
import { FLAG_ELEMENT } from './topology.js';
import { BoundedFifo } from './waiters.js';
import type { FastLane } from './fast-lane.js';

const EIO = -errnoCode('EIO');
/** A sleeping main thread still re-checks this often (a lost wakeup would cost at most this). */
const COMPLETION_SLEEP_MS = 1000;
/** Inline middle stage waiting for sub-descriptors: re-check at least this often. */
const SUB_WAIT_MS = 100;

interface Pending {
  readonly volumeIndex: number;
  readonly op: OpCode;
  readonly offsetBytes: number;
  readonly lengthBytes: number;
  readonly flags: number;
  readonly slot: number;
  readonly cls: RequestClass;
  /** raid1 reads: how many more legs may be tried after a leg failure. */
  readonly retries: number;
  /** Element-addressed I/O (the raw volume, the stripe engine): the element index, else -1. COMPUTE: the parameter block. */
  readonly element: number;
  /** Where in the slot the data starts. */
  readonly slotOffset: number;
  readonly resolve: () => void;
  readonly reject: (err: Error) => void;
}

interface TopVolume {
  readonly layout: Layout;
  readonly legs: number;
  readonly queue: SubmissionQueue;
}

type ParentWaiter = { resolve: (parent: number) => void; reject: (err: Error) => void };

/**
 * Decides, for a request that succeeded, whether its acknowledgement must wait (a promise that
 * resolves to acknowledge or rejects to fail it) or may go now (null). Runs on every successful
 * completion: it must answer null cheaply for what it does not hold (remote/rbd-ack-gate.ts).
 */
export type AckGate = (volumeIndex: number, op: number) => Promise<void> | null;

export class Top {
  private readonly pending: (Pending | undefined)[];
  private readonly volumes: (TopVolume | undefined)[] = [];
  private readonly perVolume: number[] = [];
  private readonly parentWaiters: BoundedFifo<ParentWaiter>;
  private sequence = 0;
  private outstandingCount = 0;
  private armed = false;
  private ringScheduled = false;
  /** pools.middle = 0: the middle stage runs here, on the main thread. */
  private inline: MiddleCore | null = null;
  private lane: FastLane | null = null;
  /**
   * Routes element-addressed parents (FLAG_ELEMENT: the raid5/6 stripe engine's I/O, one sub
   * each, nothing to map) here even with middle workers: a hop and a wakeup less per element op.
   */
  private router: MiddleCore | null = null;
  private middleToRing = false;
  /** Inline plans waiting for sub-descriptors, in order (at most one per parent). */
  private readonly stalled: Plan[] = [];
  private subWaitArmed = false;
  private subsToWake = 0;
  private closedReason: string | null = null;
  private ackGate: AckGate | null = null;

  constructor(
    private readonly v: SharedViews,
    waitersMax: number,
  ) {
    this.pending = new Array<Pending | undefined>(v.params.parents);
    this.parentWaiters = new BoundedFifo(waitersMax);
  }

  /** Installs (or removes, null) the acknowledgement gate. */
  setAckGate(gate: AckGate | null): void {
    this.ackGate = gate;
  }

  bindVolume(index: number, layout: Layout, legs: number, queue: SubmissionQueue): void {
    this.volumes[index] = { layout, legs, queue };
    this.perVolume[index] ??= 0;
  }

  unbindVolume(index: number): void {
    this.volumes[index] = undefined;
  }

  get outstanding(): number {
    return this.outstandingCount;
  }

  get waiting(): number {
    return this.parentWaiters.size;
  }

  volumeOutstanding(index: number): number {
    return this.perVolume[index] ?? 0;
  }

  submit(volumeIndex: number, op: OpCode, offsetBytes: number, lengthBytes: number, flags: number, slot: number, cls: RequestClass, element = -1, slotOffset = 0): Promise<void> {
    const vol = this.volumes[volumeIndex];
    // Page-cache hits complete here (fast-lane.ts); the ID's sequence still advances.
    if (this.lane !== null && vol !== undefined && this.closedReason === null && this.lane.tryRead(volumeIndex, op, flags, offsetBytes, lengthBytes, slot, slotOffset)) {
      this.sequence = (this.sequence + 1) % SEQUENCE_MODULUS;
      return Promise.resolve();
    }
    const retries = op === Op.READ || op === Op.CACHE ? readRetries(vol) : 0;
    return new Promise<void>((resolve, reject) => {
      this.start({ volumeIndex, op, offsetBytes, lengthBytes, flags, slot, cls, retries, element, slotOffset, resolve, reject });
    });
  }

  private start(p: Pending): void {
    if (this.closedReason !== null) return p.reject(new DataPathError('ESHUTDOWN', this.closedReason));
    if (this.volumes[p.volumeIndex] === undefined) return p.reject(new DataPathError('EINVAL', `volume index ${p.volumeIndex} is not bound`));
    const parent = this.v.parentPool.tryAlloc();
    if (parent >= 0 && this.parentWaiters.size === 0) return this.issue(parent, p);
    if (parent >= 0) this.v.parentPool.free(parent); // older waiters go first
    const queued = this.parentWaiters.push({ resolve: (idx) => this.issue(idx, p), reject: p.reject });
    if (!queued) p.reject(new DataPathError('ENOMEM', `more than ${this.parentWaiters.capacity} requests wait for a descriptor`));
  }

  private issue(parent: number, p: Pending): void {
    const vol = this.volumes[p.volumeIndex];
    if (vol === undefined || this.closedReason !== null) {
      this.freeParent(parent);
      return p.reject(new DataPathError(vol === undefined ? 'EINVAL' : 'ESHUTDOWN', this.closedReason ?? `volume index ${p.volumeIndex} is not bound`));
    }
    const t = this.v.table;
    const w = this.v.words;
    const b = parent * DESC_WORDS;
    const seq = this.sequence;
    this.sequence = (this.sequence + 1) % SEQUENCE_MODULUS;
    t.reset(parent);
    w[b + D.ID_HI] = requestIdHi(p.cls, p.op, p.volumeIndex, seq) | 0;
    w[b + D.ID_LO] = requestIdLo(seq) | 0;
    t.setOffset(parent, p.offsetBytes);
    w[b + D.LENGTH] = p.lengthBytes;
    w[b + D.SLOT] = p.slot;
    w[b + D.SLOT_OFFSET] = p.slotOffset;
    w[b + D.FLAGS] = p.flags;
    w[b + D.STATUS] = DescStatus.QUEUED;
    w[b + D.TARGET] = p.volumeIndex;
    w[b + D.OP] = p.op;
    if (p.element >= 0) w[b + D.AUX] = p.element;
    this.pending[parent] = p;
    this.outstandingCount++;
    this.perVolume[p.volumeIndex] = (this.perVolume[p.volumeIndex] ?? 0) + 1;
    if (this.inline !== null) return this.dispatchInline(this.inline, parent);
    if (this.router !== null && (p.flags & FLAG_ELEMENT) !== 0) return this.dispatchInline(this.router, parent);
    this.middleToRing = true;
    // Level 3 is served first by the priority policy; other policies ignore it.
    const priority = p.op === Op.CACHE ? 0 : p.cls === 'remote' ? 2 : 1;
    // Cannot fail: a queue holds at most `parents` entries and has room for all of them.
    if (!pushSure(vol.queue, parent, priority, PUSH_TIMEOUT_MS)) throw new Error(`volume queue ${p.volumeIndex} refused parent ${parent} for ${PUSH_TIMEOUT_MS} ms`);
    this.scheduleRing();
    this.arm();
  }

  /** Serves page-cache reads inline (null: every request takes the queue). */
  setFastLane(lane: FastLane | null): void {
    this.lane = lane;
  }

  /** Runs the middle stage on this thread instead of a pool (the calibration's "logical stage"). */
  setInlineMiddle(core: MiddleCore): void {
    this.inline = core;
    this.router = core;
  }

  /** The main-thread core for element-addressed parents when the middle stage has workers. */
  setElementRouter(core: MiddleCore): void {
    this.router ??= core;
  }

  get stalledCount(): number {
    return this.stalled.length;
  }

  private dispatchInline(core: MiddleCore, parent: number): void {
    const plan = core.plan(parent);
    if (plan !== null) this.stalled.push(plan); // order kept: a new plan queues behind stalled ones
    this.resumeInline();
    this.arm();
  }

  private resumeInline(): void {
    const core = this.router!; // the inline core when there is one (setInlineMiddle), else the element router
    while (this.stalled.length > 0) {
      const plan = this.stalled[0]!;
      this.subsToWake += core.push(plan);
      if (plan.next < plan.extents.length) break;
      this.stalled.shift();
    }
    if (this.subsToWake > 0) this.scheduleRing();
    if (this.stalled.length > 0) this.waitForSubs();
  }

  /** Async twin of the middle worker's blocking wait: no thread stalls while subs are short. */
  private waitForSubs(): void {
    if (this.subWaitArmed) return;
    this.subWaitArmed = true;
    const bell = this.v.subFreedBell;
    const ticket = bell.prepareSleep();
    const resume = (): void => {
      this.subWaitArmed = false;
      if (this.stalled.length > 0) this.resumeInline();
      this.arm();
    };
    if (this.v.subPool.available() > 0) {
      bell.cancelSleep();
      queueMicrotask(resume);
      return;
    }
    bell.sleepAsync(ticket, SUB_WAIT_MS).then(resume, (err: unknown) => this.fail('EIO', `sub-descriptor wait failed: ${String(err)}`));
  }

  /** One middle doorbell per burst of submissions in the same tick, not one per request. */
  private scheduleRing(): void {
    if (this.ringScheduled) return;
    this.ringScheduled = true;
    queueMicrotask(() => {
      this.ringScheduled = false;
      if (this.middleToRing) this.v.middleBell.ring();
      this.middleToRing = false;
      this.subsToWake = 0;
      this.router?.ringBells();
    });
  }

  private arm(): void {
    if (this.armed || this.outstandingCount === 0) return;
    const bell = this.v.completionBell;
    const ticket = bell.prepareSleep();
    if (this.v.completion.size() > 0) {
      bell.cancelSleep();
      this.armed = true;
      queueMicrotask(() => {
        this.armed = false;
        this.drain();
      });
      return;
    }
    this.armed = true;
    bell.sleepAsync(ticket, COMPLETION_SLEEP_MS).then(
      () => {
        this.armed = false;
        this.drain();
      },
      (err: unknown) => {
        this.armed = false;
        this.fail('EIO', `completion wait failed: ${String(err)}`);
      },
    );
  }

  /** Drains the completion ring completely (bounded by the parent count), then re-arms. */
  private drain(): void {
    for (let i = 0; i < this.v.params.parents; i++) {
      const parent = this.v.completion.tryPop();
      if (parent < 0) break;
      this.complete(parent);
    }
    this.arm();
  }

  private complete(parent: number): void {
    const w = this.v.words;
    const b = parent * DESC_WORDS;
    const result = w[b + D.RESULT]!;
    const failedLegs = w[b + D.AUX]!;
    const p = this.pending[parent];
    this.pending[parent] = undefined;
    if (p === undefined) throw new Error(`completion for parent ${parent} that is not outstanding`);
    this.outstandingCount--;
    this.perVolume[p.volumeIndex]!--;
    this.freeParent(parent);
    if (result === 0) {
      const held = this.ackGate === null ? null : this.ackGate(p.volumeIndex, p.op);
      if (held === null) return p.resolve();
      held.then(p.resolve, p.reject);
      return;
    }
    if (result === EIO && failedLegs > 0 && p.retries > 0 && this.closedReason === null) {
      // The leg is marked failed now, so the middle stage picks another one.
      return this.start({ ...p, retries: p.retries - 1 });
    }
    const errno: DataPathErrno = errnoName(result);
    p.reject(new DataPathError(errno, `${opName(p.op)} volume #${p.volumeIndex} [${p.offsetBytes}, +${p.lengthBytes}): ${errno}`));
  }

  private freeParent(parent: number): void {
    this.v.table.reset(parent);
    const next = this.parentWaiters.shift();
    if (next !== undefined) return next.resolve(parent); // hand over directly: FIFO, no race
    this.v.parentPool.free(parent);
  }

  /** Stops accepting requests; those already issued still complete. */
  close(reason: string): void {
    this.closedReason ??= reason;
    for (let w = this.parentWaiters.shift(); w !== undefined; w = this.parentWaiters.shift()) w.reject(new DataPathError('ESHUTDOWN', reason));
  }

  /** Fatal: the workers are gone. Settles every outstanding request so nothing hangs. */
  fail(errno: DataPathErrno, reason: string): void {
    this.close(reason);
    this.stalled.length = 0;
    this.pending.forEach((p, parent) => {
      if (p === undefined) return;
      this.pending[parent] = undefined;
      this.outstandingCount--;
      this.perVolume[p.volumeIndex]!--;
      p.reject(new DataPathError(errno, reason));
    });
  }
}

/**
 * Mirrored reads retry after a leg fails (it is marked failed, so the next plan avoids it). Each
 * retry that can still succeed follows at least one newly failed leg: raid1 has legs - 1 to
 * spare; raid10 at most n/2 (one more and some pair has no leg left: the planner refuses).
 */
function readRetries(vol: TopVolume | undefined): number {
  if (vol?.layout === 'raid1') return vol.legs - 1;
  if (vol?.layout === 'raid10') return vol.legs / 2;
  return 0;
}

function opName(op: OpCode): string {
  return Object.entries(Op).find(([, code]) => code === op)?.[0] ?? `op${op}`;
}
