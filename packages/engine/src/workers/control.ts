// Control plane of a worker loop: topology messages arrive on a MessagePort that the loop reads
// synchronously (receiveMessageOnPort) when the generation word in the control SAB changes, so
// an idle check costs one atomic load and the loop never yields to its event loop.
import { receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import type { Doorbell } from '@onestack/queue';
import { H, type SharedHandles, type SharedViews } from '../datapath/shared-layout.js';
import type { AckMessage, TopologyMessage } from '../datapath/topology.js';

export interface LoopTask {
  readonly handles: SharedHandles;
  readonly port: MessagePort;
  readonly workerId: number;
}

/** Idle sleep bound: a sleeping loop re-checks stop/generation at least this often. */
export const IDLE_SLEEP_MS = 1000;
/** Messages handled per control poll (bounded loop). */
const MESSAGES_MAX = 64;

export class ControlChannel {
  private seenGeneration = 0;

  constructor(
    private readonly v: SharedViews,
    private readonly port: MessagePort,
  ) {}

  stopRequested(): boolean {
    return Atomics.load(this.v.header, H.STOP) !== 0;
  }

  changed(): boolean {
    return Atomics.load(this.v.header, H.GENERATION) !== this.seenGeneration;
  }

  /** Applies pending topology messages in order and acks the last one. */
  poll(apply: (msg: TopologyMessage) => Omit<AckMessage, 'type' | 'generation'>): void {
    if (!this.changed()) return;
    for (let i = 0; i < MESSAGES_MAX; i++) {
      const got = receiveMessageOnPort(this.port);
      if (got === undefined) break;
      const msg = got.message as TopologyMessage;
      if (msg.type !== 'topology') continue;
      let extra: Omit<AckMessage, 'type' | 'generation'>;
      try {
        extra = apply(msg);
      } catch (err) {
        extra = { openErrors: [{ index: -1, reason: `topology rejected by worker: ${String(err)}` }] };
      }
      this.seenGeneration = msg.generation;
      const ack: AckMessage = { type: 'ack', generation: msg.generation, ...extra };
      this.port.postMessage(ack);
    }
    // The main thread posts before it bumps the word, so the message is in the port; until
    // seenGeneration catches up, changed() stays true and the loop polls instead of sleeping.
  }

  /** The sleeping half of the doorbell protocol; `hasWork` is the re-check. */
  idle(bell: Doorbell, hasWork: () => boolean): void {
    const ticket = bell.prepareSleep();
    if (hasWork() || this.stopRequested() || this.changed()) {
      bell.cancelSleep();
      return;
    }
    bell.sleep(ticket, IDLE_SLEEP_MS);
  }

  close(): void {
    this.port.close();
  }
}
