// What the raid5/6 stripe engine (main thread) does through the common queue: element-addressed
// reads and writes on its own volume's queue (FLAG_ELEMENT: the middle stage sends them to one
// element, local or remote, like the raw channel), COMPUTE ops for the middle stage, element
// states, and the scratch buffers (the slab's stripe slots, taken all at once per unit).
import { DescFlags, Op } from '@onestack/queue';
import { ComputeParams } from './compute-layout.js';
import { DataPathError, isDeviceError } from './errno.js';
import type { ParityGeometry } from './map-parity.js';
import type { SharedViews } from './shared-layout.js';
import type { Top } from './top.js';
import type { JournalArea } from './journal-area.js';
import { failElementState, FLAG_ELEMENT, STATE_ACTIVE, STATE_REBUILDING } from './topology.js';
import { BoundedFifo } from './waiters.js';

/** What a role can do now: nothing, take writes only (being rebuilt), or serve reads too. */
export const ABSENT = 0;
export const WRITABLE = 1;
export const READABLE = 2;

export interface StripeVolume {
  readonly index: number;
  readonly name: string;
  readonly g: ParityGeometry;
  /** Element index by role. */
  readonly elements: readonly number[];
  readonly arrayId: Uint8Array;
  /** Where this volume's journal lives on its elements (journal-area.ts; 'full' unless reshaping). */
  readonly journal: JournalArea;
}

export class StripeIo {
  constructor(
    private readonly top: Top,
    readonly v: SharedViews,
    public vol: StripeVolume,
  ) {}

  state(role: number): number {
    const s = Atomics.load(this.v.elemState, this.vol.elements[role]!);
    return s === STATE_ACTIVE ? READABLE : s === STATE_REBUILDING ? WRITABLE : ABSENT;
  }

  /** Roles whose state is at least `min` (WRITABLE: active or being rebuilt; READABLE: active). */
  roles(min: number): number[] {
    const out: number[] = [];
    for (let role = 0; role < this.vol.g.n; role++) if (this.state(role) >= min) out.push(role);
    return out;
  }

  /** EIO when more elements are lost than the parity covers (the volume is failed). */
  checkSurvives(what: string): void {
    const lost = this.vol.g.n - this.roles(WRITABLE).length;
    if (lost > this.vol.g.np) throw new DataPathError('EIO', `${this.vol.name}: ${what}: ${lost} elements lost, the layout survives ${this.vol.g.np}`);
  }

  private element(role: number): number {
    const e = this.vol.elements[role];
    if (e === undefined) throw new DataPathError('EINVAL', `${this.vol.name}: no role ${role}`);
    return e;
  }

  read(role: number, offsetBytes: number, lengthBytes: number, slot: number, slotOffset: number): Promise<void> {
    return this.top.submit(this.vol.index, Op.READ, offsetBytes, lengthBytes, FLAG_ELEMENT, slot, 'local', this.element(role), slotOffset);
  }

  write(role: number, offsetBytes: number, lengthBytes: number, slot: number, slotOffset: number, fua = false): Promise<void> {
    const flags = FLAG_ELEMENT | (fua ? DescFlags.FUA : 0);
    return this.top.submit(this.vol.index, Op.WRITE, offsetBytes, lengthBytes, flags, slot, 'local', this.element(role), slotOffset);
  }

  zero(role: number, offsetBytes: number, lengthBytes: number): Promise<void> {
    return this.top.submit(this.vol.index, Op.WRITE_ZEROES, offsetBytes, lengthBytes, FLAG_ELEMENT, -1, 'local', this.element(role));
  }

  flush(role: number): Promise<void> {
    return this.top.submit(this.vol.index, Op.FLUSH, 0, 0, FLAG_ELEMENT, -1, 'local', this.element(role));
  }

  /** Runs a filled parameter block in the middle stage. */
  compute(params: ComputeParams, lengthBytes: number): Promise<void> {
    return this.top.submit(this.vol.index, Op.COMPUTE, 0, lengthBytes, 0, -1, 'local', params.block);
  }

  params(block: number): ComputeParams {
    return new ComputeParams(this.v.computeParams, block);
  }

  /**
   * Marks a role failed after a device error (as complete.ts does for mirror legs), unless it
   * already is. Errors that are not the element's fault are rethrown: they fail the request.
   */
  fail(role: number, err: unknown): void {
    if (!isDeviceError(err)) throw err;
    const e = this.element(role);
    failElementState(this.v.elemState, e);
  }

  /** Waits for every op; fails the roles whose op hit a device error and returns them. */
  async settle(ops: readonly (readonly [number, Promise<void>])[]): Promise<number[]> {
    const results = await Promise.allSettled(ops.map(([, op]) => op));
    const failed: number[] = [];
    let fatal: unknown = null;
    results.forEach((r, i) => {
      if (r.status === 'fulfilled') return;
      const role = ops[i]![0];
      try {
        this.fail(role, r.reason);
        failed.push(role);
      } catch (err) {
        fatal ??= err;
      }
    });
    if (fatal !== null) throw fatal;
    return failed;
  }
}

/** One unit's scratch: `count` buffers, each a 4 KiB journal header followed by `dataBytes`. */
export interface Scratch {
  readonly slots: readonly number[];
  /** The compute parameter block this unit owns (its first slot's). */
  readonly block: number;
  readonly bufBytes: number;
  readonly perSlot: number;
  readonly count: number;
}

export function bufferSlot(s: Scratch, i: number): number {
  if (!(i >= 0 && i < s.count)) throw new RangeError(`scratch buffer ${i} of ${s.count}`);
  return s.slots[Math.floor(i / s.perSlot)]!;
}

/** Offset in its slot of buffer i's header; its data follows 4 KiB later. */
export function bufferHeader(s: Scratch, i: number): number {
  return (i % s.perSlot) * s.bufBytes;
}

export function bufferData(s: Scratch, i: number): number {
  return bufferHeader(s, i) + 4096;
}

interface ScratchWaiter {
  readonly slots: number;
  readonly resolve: (slots: number[]) => void;
}

/**
 * The stripe slots but the first (kept for the journal's checkpoints and replay, so they never
 * wait behind units that wait for journal space). A unit takes all its slots at once, FIFO.
 */
export class ScratchPool {
  private readonly free: number[] = [];
  private readonly waiters: BoundedFifo<ScratchWaiter>;

  constructor(
    private readonly v: SharedViews,
    waitersMax: number,
  ) {
    for (let i = v.params.stripeSlots - 1; i >= 1; i--) this.free.push(i);
    this.waiters = new BoundedFifo(waitersMax);
  }

  get slotBytes(): number {
    return this.v.params.slotBytes;
  }

  /** Slots a unit may hold: half the pool, so two units always make progress side by side. */
  get slotsPerUnit(): number {
    return Math.max(1, Math.floor((this.v.params.stripeSlots - 1) / 2));
  }

  async acquire(count: number, dataBytes: number): Promise<Scratch> {
    const bufBytes = 4096 + Math.ceil(dataBytes / 4096) * 4096;
    const perSlot = Math.floor(this.slotBytes / bufBytes);
    const need = perSlot === 0 ? Infinity : Math.ceil(count / perSlot);
    if (!(count >= 1 && need <= this.slotsPerUnit)) throw new DataPathError('ENOMEM', `stripe unit of ${count} × ${bufBytes} bytes does not fit ${this.slotsPerUnit} scratch slots`);
    const rel = this.waiters.size === 0 && this.free.length >= need ? this.free.splice(this.free.length - need, need) : await this.wait(need);
    const slots = rel.map((i) => this.v.stripeSlotBase + i);
    return { slots, block: rel[0]!, bufBytes, perSlot, count };
  }

  private wait(slots: number): Promise<number[]> {
    return new Promise((resolve, reject) => {
      if (!this.waiters.push({ slots, resolve })) reject(new DataPathError('ENOMEM', `more than ${this.waiters.capacity} stripe units wait for scratch slots`));
    });
  }

  release(s: Scratch): void {
    for (const slot of s.slots) {
      const rel = slot - this.v.stripeSlotBase;
      if (!(rel >= 1 && rel < this.v.params.stripeSlots) || this.free.includes(rel)) throw new Error(`stripe slot ${slot} released twice or foreign`);
      this.free.push(rel);
    }
    for (let w = this.waiters.peek(); w !== undefined && w.slots <= this.free.length; w = this.waiters.peek()) {
      this.waiters.shift();
      w.resolve(this.free.splice(this.free.length - w.slots, w.slots));
    }
  }

  private journalChain: Promise<unknown> = Promise.resolve();

  /** Runs `fn` with the slot kept for the journal (checkpoint headers, replay), one caller at a time across volumes. */
  withJournalSlot<T>(fn: (slot: number) => Promise<T>): Promise<T> {
    const run = this.journalChain.then(() => fn(this.v.stripeSlotBase));
    this.journalChain = run.catch(() => undefined);
    return run;
  }
}
