// In-process harness for the raid10 planner and failure rule: the real shared memory, MiddleCore
// and complete.ts, no threads. A test plays the bottom stage: it pops the subs and finishes each
// one with the errno it chooses, in the order it chooses.
import { createQueue, D, DESC_WORDS, Op, type OpCode } from '@onestack/queue';
import type { Layout } from '../src/config/types.js';
import { finishSub } from '../src/datapath/complete.js';
import { MiddleCore } from '../src/datapath/middle-core.js';
import { attach, createShared, type SharedHandles, type SharedViews } from '../src/datapath/shared-layout.js';
import { decodeState, encodeState, type TopologyElement } from '../src/datapath/topology.js';
import type { ElementState } from '../src/meta/types.js';

export const KiB = 1024;
export const MiB = 1024 * 1024;
export const CHUNK = 64 * KiB;
/** Unequal data offsets, so a leg that got its partner's offset would show. */
export const DATA_OFFSETS = [4 * MiB, 4 * MiB + 4096, 8 * MiB, 4 * MiB, 4 * MiB, 4 * MiB];

export interface Sub {
  readonly index: number;
  readonly element: number;
  readonly offsetBytes: number;
  readonly lengthBytes: number;
  readonly slotOffsetBytes: number;
}

export interface Submitted {
  readonly parent: number;
  /** False when the planner failed the request before any I/O. */
  readonly planned: boolean;
  readonly subs: readonly Sub[];
}

export class Harness {
  readonly handles: SharedHandles;
  readonly v: SharedViews;
  readonly core: MiddleCore;

  constructor(layout: Layout = 'raid10', count = 4, sizeBytes = 4 * MiB) {
    this.handles = createShared({ parents: 64, subs: 256, maxVolumes: 2, maxElements: 8, slots: 2, slotBytes: 4096, remoteRings: 1 }, () => 0);
    this.v = attach(this.handles);
    createQueue('fifo', this.v.control, this.v.volumeQueueOffset(0), this.v.params.parents, true);
    this.core = new MiddleCore(this.v);
    const elements: TopologyElement[] = Array.from({ length: count }, (_, i) => ({
      index: i, name: `e${i}`, kind: 'local', path: `/nonexistent/e${i}`, direct: false,
      dataOffsetBytes: DATA_OFFSETS[i]!, dataSizeBytes: 64 * MiB, state: 'active', blockSizeBytes: 1,
    }));
    const volume = { index: 0, name: 'v', layout, chunkBytes: CHUNK, sizeBytes, order: 'fifo' as const, elements: elements.map((e) => e.index) };
    this.core.apply({ type: 'topology', generation: 1, volumes: [volume], elements });
  }

  setState(element: number, state: ElementState): void {
    Atomics.store(this.v.elemState, element, encodeState(state));
  }

  state(element: number): ElementState {
    return decodeState(Atomics.load(this.v.elemState, element));
  }

  /** Plans one request and pushes all its subs; the subs are popped off the bottom ring. */
  submit(op: OpCode, offsetBytes: number, lengthBytes: number): Submitted {
    const v = this.v;
    const parent = v.parentPool.tryAlloc();
    if (parent < 0) throw new Error('harness: out of parents (a test forgot to collect)');
    const w = v.words;
    const b = parent * DESC_WORDS;
    v.table.reset(parent);
    v.table.setOffset(parent, offsetBytes);
    w[b + D.LENGTH] = lengthBytes;
    w[b + D.SLOT] = 0;
    w[b + D.OP] = op;
    w[b + D.TARGET] = 0;
    const plan = this.core.plan(parent);
    if (plan === null) return { parent, planned: false, subs: [] };
    this.core.push(plan);
    if (plan.next !== plan.extents.length) throw new Error('harness: sub pool too small for this request');
    const subs: Sub[] = [];
    for (let sub = v.bottom.tryPop(); sub >= 0; sub = v.bottom.tryPop()) {
      const sb = sub * DESC_WORDS;
      subs.push({ index: sub, element: w[sb + D.TARGET]!, offsetBytes: v.table.getOffset(sub), lengthBytes: w[sb + D.LENGTH]!, slotOffsetBytes: w[sb + D.SLOT_OFFSET]! });
    }
    return { parent, planned: true, subs };
  }

  finish(sub: Sub, errno: number): void {
    finishSub(this.v, sub.index, errno);
  }

  /** Takes the finished parent off the completion ring: its RESULT (0 or -errno) and failed-leg count. */
  collect(parent: number): { result: number; failedLegs: number } {
    const got = this.v.completion.tryPop();
    if (got !== parent) throw new Error(`harness: expected parent ${parent} on the completion ring, got ${got}`);
    const w = this.v.words;
    const out = { result: w[parent * DESC_WORDS + D.RESULT]!, failedLegs: w[parent * DESC_WORDS + D.AUX]! };
    this.v.table.reset(parent);
    this.v.parentPool.free(parent);
    return out;
  }

  /** Nothing finished yet: the parent is not on the completion ring. */
  completed(): boolean {
    return this.v.completion.size() > 0;
  }
}

export const { READ, WRITE, TRIM, WRITE_ZEROES, FLUSH, CACHE } = Op;
