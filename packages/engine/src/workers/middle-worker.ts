// MIDDLE driver loop: a piscina task that runs until the stop flag. Pops parents from the
// volume queues round-robin, maps them (MiddleCore) and feeds the bottom ring. Batches: up to
// BATCH_MAX parents, then one bottom doorbell; sleeps only after a re-check finds nothing.
import { attach } from '../datapath/shared-layout.js';
import { MiddleCore, type Plan } from '../datapath/middle-core.js';
import { errnoCode } from '../datapath/errno.js';
import { ControlChannel, type LoopTask } from './control.js';

const BATCH_MAX = 64;
const ESHUTDOWN = errnoCode('ESHUTDOWN');
/** Wait for a freed sub-descriptor in slices of this, re-checking stop between slices. */
const SUB_WAIT_SLICE_MS = 100;
/** After this long without a single freed sub, the bottom stage is wedged: fail loudly. */
const SUB_WAIT_MAX_MS = 120_000;

export default function middleLoop(task: LoopTask): string {
  const v = attach(task.handles);
  const core = new MiddleCore(v);
  const control = new ControlChannel(v, task.port);
  const ringBottom = (): void => core.ringBells();
  const ringCompletion = (): void => {
    if (core.completedAny) v.completionBell.ring();
    core.completedAny = false;
  };
  const pushAll = (plan: Plan): void => {
    let waitedMs = 0;
    for (;;) {
      const n = core.push(plan);
      if (plan.next >= plan.extents.length) return;
      if (n > 0) waitedMs = 0;
      if (control.stopRequested()) return core.abandon(plan, ESHUTDOWN);
      // Out of subs: let the bottom stage run what we pushed, then wait for it to free some.
      ringBottom();
      ringCompletion();
      const ticket = v.subFreedBell.prepareSleep();
      if (v.subPool.available() > 0) {
        v.subFreedBell.cancelSleep();
        continue;
      }
      v.subFreedBell.sleep(ticket, SUB_WAIT_SLICE_MS);
      waitedMs += SUB_WAIT_SLICE_MS;
      if (waitedMs >= SUB_WAIT_MAX_MS) throw new Error(`middle: no sub-descriptor freed in ${SUB_WAIT_MAX_MS} ms`);
    }
  };
  while (!control.stopRequested()) {
    control.poll((msg) => {
      core.apply(msg);
      return {};
    });
    let n = 0;
    for (; n < BATCH_MAX; n++) {
      const parent = core.popParent();
      if (parent < 0) break;
      const plan = core.plan(parent);
      if (plan !== null) pushAll(plan);
    }
    ringBottom();
    ringCompletion();
    if (n === 0) control.idle(v.middleBell, () => core.queued() > 0);
  }
  control.close();
  return 'stopped';
}
