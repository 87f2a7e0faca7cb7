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
/**
 * Busy-wait before sleeping, in µs (ONESTACK_SPIN_US, default 0). Measured on 2 cores with fio
 * on the same machine (bench/README.md): a spinning worker takes the CPU the client and the
 * main thread need, so the default sleeps at once and relies on batched doorbells instead.
 */
/** Bound on a spin, whatever the setting: a stuck setting cannot turn a worker into a busy loop. */
const SPIN_US_MAX = 1000;
const SPIN_US = spinSetting(process.env['ONESTACK_SPIN_US']);

function spinSetting(raw: string | undefined): number {
  const n = Number(raw ?? '0');
  return Number.isFinite(n) && n > 0 ? Math.min(n, SPIN_US_MAX) : 0;
}

/** True when work showed up within `us` microseconds. */
function spinFor(us: number, hasWork: () => boolean): boolean {
  const until = performance.now() + us / 1000;
  while (performance.now() < until) if (hasWork()) return true;
  return false;
}

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
    if (SPIN_US > 0 && spinFor(SPIN_US, hasWork)) return;
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
