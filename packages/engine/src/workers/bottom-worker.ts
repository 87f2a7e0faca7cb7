// BOTTOM driver loop: a piscina task that runs until the stop flag. Pops sub-descriptors in
// batches, does the element I/O synchronously, completes parents, and rings the completion
// doorbell once per batch (a wakeup costs 15-20 µs; the ring itself is nearly free).
import { D, DESC_WORDS, DescStatus } from '@onestack/queue';
import { finishSub } from '../datapath/complete.js';
import { errnoCode, errnoFromError, DataPathError } from '../datapath/errno.js';
import { attach, type SharedViews } from '../datapath/shared-layout.js';
import type { TopologyMessage } from '../datapath/topology.js';
import { ControlChannel, type LoopTask } from './control.js';
import { closeElement, openElement, runSub, type ElementHandle, type Scratch } from './element-io.js';
import { TRACE_IDS, traceSub } from './trace.js';

const BATCH_MAX = 32;
const CACHE_SCRATCH_BYTES = 256 * 1024;

class BottomLoop {
  private handles: (ElementHandle | undefined)[] = [];
  private readonly scratch: Scratch;

  constructor(private readonly v: SharedViews) {
    this.scratch = { zeros: v.slab.view(v.zeroSlot), cache: new Uint8Array(CACHE_SCRATCH_BYTES), slabMisalignmentBytes: v.params.misalignmentBytes ?? 0 };
  }

  apply(msg: TopologyMessage): { openErrors: { index: number; reason: string }[] } {
    const next: (ElementHandle | undefined)[] = [];
    const openErrors: { index: number; reason: string }[] = [];
    for (const e of msg.elements) {
      if (e.kind !== 'local') continue; // remote elements belong to the remote loops
      const h = openElement(e, this.handles[e.index]);
      next[e.index] = h;
      if (h.fd < 0) openErrors.push({ index: e.index, reason: h.reason ?? 'not open' });
    }
    // Close what the new topology no longer names (or reopened under another path/mode).
    this.handles.forEach((h, i) => {
      if (h !== undefined && next[i]?.fd !== h.fd) closeElement(h);
    });
    this.handles = next;
    return { openErrors };
  }

  /** Runs one sub; returns true when its parent got finalised. Never throws for an I/O error. */
  run(sub: number): boolean {
    const v = this.v;
    const w = v.words;
    const sb = sub * DESC_WORDS;
    let errno = 0;
    try {
      w[sb + D.STATUS] = DescStatus.RUNNING;
      const element = w[sb + D.TARGET]!;
      const h = this.handles[element];
      if (h === undefined) throw new DataPathError('EIO', `element ${element} is not in this worker's topology`);
      const op = w[sb + D.OP]!;
      const lengthBytes = w[sb + D.LENGTH]!;
      const slot = w[sb + D.SLOT]!;
      if (TRACE_IDS) traceSub('bottom', w, sub, v.table.getOffset(sub));
      const view = slot >= 0 ? v.slab.view(slot, w[sb + D.SLOT_OFFSET]!, lengthBytes) : null;
      runSub(h, { op, flags: w[sb + D.FLAGS]!, offsetBytes: v.table.getOffset(sub), lengthBytes, view }, this.scratch);
    } catch (err) {
      errno = errnoCode(err instanceof DataPathError ? err.errno : errnoFromError(err));
    }
    return finishSub(v, sub, errno);
  }

  close(): void {
    for (const h of this.handles) if (h !== undefined) closeElement(h);
    this.handles = [];
  }
}

export default function bottomLoop(task: LoopTask): string {
  const v = attach(task.handles);
  const loop = new BottomLoop(v);
  const control = new ControlChannel(v, task.port);
  try {
    while (!control.stopRequested()) {
      control.poll((msg) => loop.apply(msg));
      let n = 0;
      let completed = false;
      for (; n < BATCH_MAX; n++) {
        const sub = v.bottom.tryPop();
        if (sub < 0) break;
        if (loop.run(sub)) completed = true;
      }
      if (completed) v.completionBell.ring();
      if (n === 0) control.idle(v.bottomBell, () => v.bottom.size() > 0);
    }
  } finally {
    loop.close();
    control.close();
  }
  return 'stopped';
}
