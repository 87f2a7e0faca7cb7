// BOTTOM driver loop: a piscina task that runs until the stop flag. Pops sub-descriptors in
// batches, does the element I/O, completes parents, and rings the completion doorbell once per
// batch (a wakeup costs 15-20 µs; the ring itself is nearly free). READ/WRITE/FLUSH of elements
// in the io_uring scope go through one submitAndWait per batch (uring-batch.ts); everything
// else, and everything when there is no ring, runs synchronously (element-io.ts).
import * as fs from 'node:fs';
import { nativeInfo } from '@onestack/native';
import { D, DESC_WORDS, DescStatus, Op } from '@onestack/queue';
import { finishSub } from '../datapath/complete.js';
import { errnoCode, errnoFromError, DataPathError } from '../datapath/errno.js';
import { attach, type SharedViews } from '../datapath/shared-layout.js';
import type { TopologyMessage } from '../datapath/topology.js';
import { ControlChannel, type LoopTask } from './control.js';
import { closeElement, openElement, runSub, type ElementHandle, type Scratch } from './element-io.js';
import { TRACE_IDS, traceSub } from './trace.js';
import { BOTTOM_BATCH_MAX, UringBatch, uringScope } from './uring-batch.js';

const BATCH_MAX = BOTTOM_BATCH_MAX;
const CACHE_SCRATCH_BYTES = 256 * 1024;

class BottomLoop {
  private handles: (ElementHandle | undefined)[] = [];
  private readonly scratch: Scratch;
  /** null: no io_uring here (reason logged once at start); every sub runs synchronously. */
  private readonly batch: UringBatch | null;
  private readonly finish = (sub: number, errno: number, serviceUs: number): boolean => finishSub(this.v, sub, errno, serviceUs);

  constructor(private readonly v: SharedViews, data: SharedArrayBuffer) {
    this.scratch = { zeros: v.slab.view(v.zeroSlot), cache: new Uint8Array(CACHE_SCRATCH_BYTES), slabMisalignmentBytes: v.params.misalignmentBytes ?? 0 };
    const opened = UringBatch.open(data, uringScope());
    this.batch = opened.batch;
    // Not an error: the sync path serves everything. Said once when the addon is there but the
    // ring is not (kernel refusal, old addon); switched off or no addon is what status says.
    if (opened.batch === null && process.env['ONESTACK_URING'] !== 'off' && nativeInfo().backend === 'native') {
      fs.writeSync(2, `onestack: bottom worker: io_uring not used (${opened.reason}); element I/O is synchronous\n`);
    }
  }

  apply(msg: TopologyMessage): { openErrors: { index: number; reason: string }[] } {
    // Handles may close below: no batched record may still name their fds.
    if (this.batch !== null && this.batch.size !== 0) throw new Error('topology applied with an io_uring batch pending');
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

  /**
   * Takes one popped sub: into the io_uring batch when it qualifies (running the batch first
   * if the sub must not overlap it), else runs the batch and then the sub synchronously, so
   * subs still take effect in ring order. Returns true when a parent got finalised.
   */
  take(sub: number): boolean {
    const batch = this.batch;
    if (batch === null) return this.run(sub);
    const v = this.v;
    const w = v.words;
    const sb = sub * DESC_WORDS;
    const element = w[sb + D.TARGET]!;
    const h = this.handles[element];
    const op = w[sb + D.OP]!;
    const slot = w[sb + D.SLOT]!;
    if (h === undefined || !batch.accepts(h, op) || (op !== Op.FLUSH && slot < 0)) {
      const ran = batch.run(this.finish);
      return this.run(sub) || ran;
    }
    const offsetBytes = v.table.getOffset(sub);
    const lengthBytes = w[sb + D.LENGTH]!;
    let completed = false;
    if (batch.full() || batch.conflicts(element, op, offsetBytes, lengthBytes)) completed = batch.run(this.finish);
    w[sb + D.STATUS] = DescStatus.RUNNING;
    if (TRACE_IDS) traceSub('bottom', w, sub, offsetBytes);
    const slabByteOffset = op === Op.FLUSH ? 0 : v.slab.byteOffsetOf(slot) + w[sb + D.SLOT_OFFSET]!;
    try {
      batch.add(sub, element, h, op, w[sb + D.FLAGS]!, offsetBytes, lengthBytes, slabByteOffset, this.scratch);
    } catch (err) {
      // Refused before submission (misaligned O_DIRECT): finish it now, as the sync path would.
      return finishSub(v, sub, errnoCode(err instanceof DataPathError ? err.errno : errnoFromError(err))) || completed;
    }
    return completed;
  }

  /** Runs what the io_uring batch holds; true when a parent got finalised. */
  drain(): boolean {
    return this.batch === null ? false : this.batch.run(this.finish);
  }

  /** Runs one sub; returns true when its parent got finalised. Never throws for an I/O error. */
  run(sub: number): boolean {
    const v = this.v;
    const w = v.words;
    const sb = sub * DESC_WORDS;
    let errno = 0;
    const t0 = performance.now(); // service time for the element's latency EWMA (transport.ts)
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
    return finishSub(v, sub, errno, (performance.now() - t0) * 1000);
  }

  close(): void {
    this.batch?.close();
    for (const h of this.handles) if (h !== undefined) closeElement(h);
    this.handles = [];
  }
}

export default function bottomLoop(task: LoopTask): string {
  const v = attach(task.handles);
  const loop = new BottomLoop(v, task.handles.data);
  const control = new ControlChannel(v, task.port);
  try {
    while (!control.stopRequested()) {
      control.poll((msg) => loop.apply(msg));
      let n = 0;
      let completed = false;
      for (; n < BATCH_MAX; n++) {
        const sub = v.bottom.tryPop();
        if (sub < 0) break;
        if (loop.take(sub)) completed = true;
      }
      if (loop.drain()) completed = true;
      if (completed) v.completionBell.ring();
      if (n === 0) control.idle(v.bottomBell, () => v.bottom.size() > 0);
    }
  } finally {
    loop.close();
    control.close();
  }
  return 'stopped';
}
