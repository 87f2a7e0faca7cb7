// The data path's shared memory: one control SAB (descriptors, pools, queues, doorbells,
// element words) and one data slab SAB, both allocated once at start-up. `createShared` runs on
// the main thread; `attach` rebuilds the same views in a worker from the handles alone.
import {
  alignUp,
  DescriptorTable,
  Doorbell,
  IndexPool,
  queueBytes,
  Ring,
  Slab,
  type QueuePolicy,
} from '@onestack/queue';
import { PARAM_WORDS } from './compute-layout.js';

export const HEADER_WORDS = 16;
/** Header word indices. */
export const H = { STOP: 0, GENERATION: 1, MAGIC: 2 } as const;
const LAYOUT_MAGIC = 0x4f4e4453; // 'ONDS'
const REGION_ALIGN = 64;
/** middle, bottom, completion, sub-freed; the remote loops' bells follow. */
const BELLS_FIXED = 4;
/**
 * Per-element I/O counters (complete.ts countElementIo): words of `elemIo`, ELEM_IO_WORDS per
 * element. 64-bit so they never wrap in practice (2^63 bytes); Atomics keep them exact across threads.
 */
export const ELEM_IO = { READ_OPS: 0, WRITE_OPS: 1, READ_BYTES: 2, WRITE_BYTES: 3 } as const;
export const ELEM_IO_WORDS = 4;
/** Per-element latency/throughput EWMAs (transport.ts): Int32 words of `elemLat`, ELEM_LAT_WORDS each. */
export const ELEM_LAT = { READ_US_X16: 0, WRITE_US_X16: 1, READ_KIBPS: 2, WRITE_KIBPS: 3, WINDOW_MS: 4, READ_AT_MS: 5, WRITE_AT_MS: 6 } as const;
export const ELEM_LAT_WORDS = 8;
/** BigInt64 words of `elemMark`: the byte counters at the start of the current throughput window. */
export const ELEM_MARK = { READ_BYTES: 0, WRITE_BYTES: 1 } as const;
export const ELEM_MARK_WORDS = 2;

export interface LayoutParams {
  /** Parent descriptors = queue.depth (power of two). */
  readonly parents: number;
  /** Sub-descriptors = 4 × depth. */
  readonly subs: number;
  readonly maxVolumes: number;
  readonly maxElements: number;
  readonly slots: number;
  readonly slotBytes: number;
  /** Extra slab slots after the zero slot, owned by the raid5/6 stripe engine (scratch buffers); each also names one compute parameter block. */
  readonly stripeSlots: number;
  /** Remote bottom loops (pools.remote); each has its own ring and doorbell. */
  readonly remoteRings: number;
  /** Address of the data SAB's byte 0 modulo 4096; null when unknown (O_DIRECT refused). */
  readonly misalignmentBytes: number | null;
}

export interface SharedHandles {
  readonly control: SharedArrayBuffer;
  readonly data: SharedArrayBuffer;
  readonly params: LayoutParams;
}

interface Offsets {
  readonly table: number;
  readonly parentPool: number;
  readonly subPool: number;
  readonly volumeQueues: number;
  readonly volumeQueueBytes: number;
  readonly bottom: number;
  readonly completion: number;
  readonly remote: number;
  readonly bells: number;
  readonly elemState: number;
  readonly elemErrors: number;
  readonly elemQueued: number;
  readonly elemIo: number;
  readonly elemLat: number;
  readonly elemMark: number;
  readonly computeParams: number;
  readonly total: number;
}

/** Region size for one volume slot: the largest policy, so any order fits when the slot is rebound. */
export function volumeQueueBytes(capacity: number): number {
  const policies: QueuePolicy[] = ['fifo', 'lifo', 'priority'];
  return alignUp(Math.max(...policies.map((p) => queueBytes(p, capacity))), REGION_ALIGN);
}

/** A push that the sizing guarantees may wait this long for a paused consumer before it is a bug. */
export const PUSH_TIMEOUT_MS = 5000;

/**
 * Rings hold descriptor indices, so `items` bounds what they ever carry. Twice that much room
 * makes a transient refusal (a consumer paused mid-pop, see queue/ring.ts) rare; pushSure covers the rest.
 */
function ringCapacity(items: number): number {
  return 2 * items;
}

/** One remote ring's region, padded so the next one starts on its own cache line. */
function remoteRingBytes(subs: number): number {
  return alignUp(Ring.bytesFor(ringCapacity(subs)), REGION_ALIGN);
}

function offsets(p: LayoutParams): Offsets {
  let at = HEADER_WORDS * 4;
  const take = (bytes: number): number => {
    const start = alignUp(at, REGION_ALIGN);
    at = start + bytes;
    return start;
  };
  const table = take(DescriptorTable.bytesFor(p.parents + p.subs));
  const parentPool = take(IndexPool.bytesFor(p.parents));
  const subPool = take(IndexPool.bytesFor(p.subs));
  const vqBytes = volumeQueueBytes(p.parents);
  const volumeQueues = take(vqBytes * p.maxVolumes);
  const bottom = take(Ring.bytesFor(ringCapacity(p.subs)));
  const completion = take(Ring.bytesFor(ringCapacity(p.parents)));
  const remote = take(remoteRingBytes(p.subs) * p.remoteRings);
  const bells = take(Doorbell.BYTES * (BELLS_FIXED + p.remoteRings));
  const elemState = take(p.maxElements * 4);
  const elemErrors = take(p.maxElements * 4);
  const elemQueued = take(p.maxElements * 4);
  const elemIo = take(p.maxElements * ELEM_IO_WORDS * 8);
  const elemLat = take(p.maxElements * ELEM_LAT_WORDS * 4);
  const elemMark = take(p.maxElements * ELEM_MARK_WORDS * 8);
  const computeParams = take(p.stripeSlots * PARAM_WORDS * 4);
  return { table, parentPool, subPool, volumeQueues, volumeQueueBytes: vqBytes, bottom, completion, remote, bells, elemState, elemErrors, elemQueued, elemIo, elemLat, elemMark, computeParams, total: alignUp(at, REGION_ALIGN) };
}

export interface SharedViews {
  readonly params: LayoutParams;
  readonly control: SharedArrayBuffer;
  readonly header: Int32Array;
  /** Parents are descriptors [0, parents); sub i of the sub pool is descriptor parents + i. */
  readonly table: DescriptorTable;
  readonly words: Int32Array;
  readonly parentPool: IndexPool;
  readonly subPool: IndexPool;
  readonly bottom: Ring;
  readonly completion: Ring;
  /** Ring k carries the subs of remote elements served by remote loop k (element index % remoteRings). */
  readonly remote: readonly Ring[];
  readonly remoteBells: readonly Doorbell[];
  readonly middleBell: Doorbell;
  readonly bottomBell: Doorbell;
  readonly completionBell: Doorbell;
  readonly subFreedBell: Doorbell;
  readonly elemState: Int32Array;
  readonly elemErrors: Int32Array;
  /** Subs queued or running per element (raid1 least-queued read choice). */
  readonly elemQueued: Int32Array;
  /** Successful READ/WRITE subs and bytes per element, ELEM_IO_WORDS each (see ELEM_IO). */
  readonly elemIo: BigInt64Array;
  /** Latency and throughput EWMAs per element, ELEM_LAT_WORDS each (transport.ts). */
  readonly elemLat: Int32Array;
  /** Throughput window marks per element, ELEM_MARK_WORDS each (transport.ts). */
  readonly elemMark: BigInt64Array;
  readonly slab: Slab;
  /** A slot that is never handed out and stays zero: the source of zero writes (aligned for O_DIRECT). */
  readonly zeroSlot: number;
  /** First of the stripe engine's `params.stripeSlots` slots (zeroSlot + 1). */
  readonly stripeSlotBase: number;
  /** COMPUTE parameter blocks (compute.ts), PARAM_WORDS each, one per stripe slot. */
  readonly computeParams: Int32Array;
  readonly volumeQueueOffset: (volumeIndex: number) => number;
}

function checkParams(p: LayoutParams): void {
  const pow2 = (n: number): boolean => Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
  if (!pow2(p.parents) || !pow2(p.subs)) throw new Error(`queue depth ${p.parents} must be a power of two`);
  if (!(p.maxVolumes > 0 && p.maxVolumes <= 4096 && p.maxElements > 0)) throw new Error('maxVolumes/maxElements out of range');
  if (!(Number.isInteger(p.remoteRings) && p.remoteRings >= 1 && p.remoteRings <= 8)) throw new Error(`remote rings ${p.remoteRings} outside [1, 8]`);
  if (!(p.slots > 0 && p.slotBytes > 0 && p.slotBytes % 4096 === 0)) throw new Error(`slot size ${p.slotBytes} must be a positive multiple of 4096`);
  if (!(Number.isInteger(p.stripeSlots) && p.stripeSlots >= 0 && p.stripeSlots <= 1024)) throw new Error(`stripe slots ${p.stripeSlots} outside [0, 1024]`);
}

/**
 * Allocates and formats both SABs. `probe` learns the data SAB's address modulo 4096 (native
 * addon); it returns null when unknown.
 */
export function createShared(input: Omit<LayoutParams, 'misalignmentBytes' | 'stripeSlots'> & { stripeSlots?: number }, probe: (data: SharedArrayBuffer) => number | null): SharedHandles {
  const params = { ...input, stripeSlots: input.stripeSlots ?? 0 };
  checkParams({ ...params, misalignmentBytes: 0 });
  const o = offsets({ ...params, misalignmentBytes: 0 });
  const control = new SharedArrayBuffer(o.total);
  const data = new SharedArrayBuffer(Slab.sabBytesFor(params.slots + 1 + params.stripeSlots, params.slotBytes));
  const misalignmentBytes = probe(data);
  const full: LayoutParams = { ...params, misalignmentBytes };
  const table = new DescriptorTable(control, o.table, params.parents + params.subs);
  table.resetAll();
  new IndexPool(control, o.parentPool, params.parents, true);
  new IndexPool(control, o.subPool, params.subs, true);
  new Ring(control, o.bottom, ringCapacity(params.subs), true);
  new Ring(control, o.completion, ringCapacity(params.parents), true);
  for (let k = 0; k < params.remoteRings; k++) new Ring(control, o.remote + k * remoteRingBytes(params.subs), ringCapacity(params.subs), true);
  for (let i = 0; i < BELLS_FIXED + params.remoteRings; i++) new Doorbell(control, o.bells + i * Doorbell.BYTES, true);
  const header = new Int32Array(control, 0, HEADER_WORDS);
  Atomics.store(header, H.MAGIC, LAYOUT_MAGIC);
  return { control, data, params: full };
}

/** Rebuilds the views over SABs created by createShared (any thread). */
export function attach(handles: SharedHandles): SharedViews {
  const p = handles.params;
  checkParams(p);
  const o = offsets(p);
  const c = handles.control;
  if (c.byteLength !== o.total) throw new Error(`control SAB is ${c.byteLength} bytes, layout needs ${o.total}`);
  const header = new Int32Array(c, 0, HEADER_WORDS);
  if (Atomics.load(header, H.MAGIC) !== LAYOUT_MAGIC) throw new Error('control SAB was not formatted by createShared');
  const table = new DescriptorTable(c, o.table, p.parents + p.subs);
  const bell = (i: number): Doorbell => new Doorbell(c, o.bells + i * Doorbell.BYTES, false);
  return {
    params: p,
    control: c,
    header,
    table,
    words: table.words,
    parentPool: new IndexPool(c, o.parentPool, p.parents, false),
    subPool: new IndexPool(c, o.subPool, p.subs, false),
    bottom: new Ring(c, o.bottom, ringCapacity(p.subs), false),
    completion: new Ring(c, o.completion, ringCapacity(p.parents), false),
    remote: Array.from({ length: p.remoteRings }, (_, k) => new Ring(c, o.remote + k * remoteRingBytes(p.subs), ringCapacity(p.subs), false)),
    remoteBells: Array.from({ length: p.remoteRings }, (_, k) => bell(BELLS_FIXED + k)),
    middleBell: bell(0),
    bottomBell: bell(1),
    completionBell: bell(2),
    subFreedBell: bell(3),
    elemState: new Int32Array(c, o.elemState, p.maxElements),
    elemErrors: new Int32Array(c, o.elemErrors, p.maxElements),
    elemQueued: new Int32Array(c, o.elemQueued, p.maxElements),
    elemIo: new BigInt64Array(c, o.elemIo, p.maxElements * ELEM_IO_WORDS),
    elemLat: new Int32Array(c, o.elemLat, p.maxElements * ELEM_LAT_WORDS),
    elemMark: new BigInt64Array(c, o.elemMark, p.maxElements * ELEM_MARK_WORDS),
    slab: new Slab(handles.data, p.slots + 1 + p.stripeSlots, p.slotBytes, p.misalignmentBytes ?? 0),
    zeroSlot: p.slots,
    stripeSlotBase: p.slots + 1,
    computeParams: new Int32Array(c, o.computeParams, p.stripeSlots * PARAM_WORDS),
    volumeQueueOffset: (volumeIndex: number): number => {
      if (!(Number.isInteger(volumeIndex) && volumeIndex >= 0 && volumeIndex < p.maxVolumes)) {
        throw new Error(`volume index ${volumeIndex} outside [0, ${p.maxVolumes})`);
      }
      return o.volumeQueues + volumeIndex * o.volumeQueueBytes;
    },
  };
}
