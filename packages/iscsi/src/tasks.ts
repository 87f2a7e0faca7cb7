// The task table: a slab of command slots allocated once, an ITT per send (slot in the low 16
// bits, a per-slot generation above, so a late PDU for an earlier use of the slot never matches),
// and the FIFO of commands waiting for the CmdSN window or a connection.

import type { RemoteError } from './errors.js';

export interface ScsiRequest {
  /** CDB of at most 16 bytes. */
  readonly cdb: Uint8Array;
  /** Destination of Data-In (a read); may be a view over a SharedArrayBuffer. */
  readonly dataIn?: Uint8Array;
  /** Source of Data-Out (a write); sent without copying. */
  readonly dataOut?: Uint8Array;
  /** For messages: "READ(16) of 4096 bytes at byte 0". */
  readonly describe: string;
}

export interface ScsiResult {
  readonly status: number;
  /** Sense bytes from a CHECK CONDITION, else null. */
  readonly sense: Uint8Array | null;
  /** Bytes the target did not transfer (underflow), 0 when all were. */
  readonly residualBytes: number;
}

export type TaskState = 'free' | 'queued' | 'sent';

export interface Task {
  readonly slot: number;
  state: TaskState;
  itt: number;
  generation: number;
  cmdSN: number;
  request: ScsiRequest;
  /** Internal command sent before others after a reconnect (TEST UNIT READY). */
  probe: boolean;
  deadlineAt: number;
  timer: NodeJS.Timeout | null;
  resolve: (r: ScsiResult) => void;
  reject: (e: RemoteError) => void;
}

/** ITTs of tasks never set the top bit; these tags are for the session's own PDUs. */
export const PING_ITT = 0x80000001;
export const LOGOUT_ITT = 0x80000002;
export const LOGIN_ITT = 0x80000003;
export const TEXT_ITT = 0x80000004;

const GENERATION_MAX = 0x7fff;
const noop = (): void => undefined;
const EMPTY_REQUEST: ScsiRequest = { cdb: new Uint8Array(0), describe: '' };

export class TaskTable {
  private readonly tasks: Task[];
  private readonly free: number[];
  /** Waiting to be sent, in order; each task at most once. */
  readonly queue: Task[] = [];

  constructor(readonly capacity: number) {
    if (!(capacity > 0 && capacity <= 0xffff)) throw new RangeError(`task capacity ${capacity}`);
    this.tasks = Array.from({ length: capacity }, (_, slot) => ({
      slot, state: 'free' as TaskState, itt: 0, generation: 0, cmdSN: 0, request: EMPTY_REQUEST, probe: false, deadlineAt: 0, timer: null, resolve: noop, reject: noop,
    }));
    this.free = Array.from({ length: capacity }, (_, i) => capacity - 1 - i);
  }

  get active(): number {
    return this.capacity - this.free.length;
  }

  /** A slot for a new command, or null when all are taken. */
  allocate(): Task | null {
    const slot = this.free.pop();
    if (slot === undefined) return null;
    const t = this.tasks[slot]!;
    if (t.state !== 'free') throw new Error(`task slot ${slot} allocated while ${t.state}`);
    return t;
  }

  /** Gives the task a fresh ITT for a (re)send. */
  assignTag(t: Task): number {
    t.generation = t.generation >= GENERATION_MAX ? 1 : t.generation + 1;
    t.itt = (t.generation * 0x10000 + t.slot) >>> 0;
    return t.itt;
  }

  /** The sent task this ITT names, or null for a stale or foreign tag. */
  bySentTag(itt: number): Task | null {
    const t = this.tasks[itt & 0xffff];
    return t !== undefined && t.state === 'sent' && t.itt === itt && itt < 0x80000000 ? t : null;
  }

  release(t: Task): void {
    if (t.state === 'free') throw new Error(`task slot ${t.slot} released twice`);
    if (t.timer !== null) clearTimeout(t.timer);
    if (t.state === 'queued') this.unqueue(t);
    t.timer = null;
    t.state = 'free';
    t.request = EMPTY_REQUEST;
    t.resolve = noop;
    t.reject = noop;
    t.probe = false;
    this.free.push(t.slot);
  }

  private unqueue(t: Task): void {
    const i = this.queue.indexOf(t);
    if (i >= 0) this.queue.splice(i, 1);
  }

  /** Tasks on the wire, oldest CmdSN first (serial order relative to `base`). */
  sent(base: number): Task[] {
    return this.tasks.filter((t) => t.state === 'sent').sort((a, b) => ((a.cmdSN - base) | 0) - ((b.cmdSN - base) | 0));
  }

  /** Every task not free: for shutdown. */
  allActive(): Task[] {
    return this.tasks.filter((t) => t.state !== 'free');
  }
}
