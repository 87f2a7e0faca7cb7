// Worker pools: one Piscina per stage, minThreads = maxThreads = n, each thread running one
// long-lived loop task (middle or bottom) that returns only when the stop flag is set. Control
// messages travel on a MessagePort per loop, handed over in the task's transferList.
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { Piscina } from 'piscina';
import type { SharedHandles } from './shared-layout.js';
import type { AckMessage, TopologyMessage } from './topology.js';

export type StageKind = 'middle' | 'bottom' | 'remote';

/** Piscina's idle timeout only matters for threads without tasks; ours never idle out. */
const IDLE_TIMEOUT_MS = 24 * 3600 * 1000;

interface Loop {
  readonly port: MessagePort;
  readonly done: Promise<unknown>;
  ackedGeneration: number;
  readonly ackWaiters: Set<() => void>;
  lastAck: AckMessage | null;
}

export class StagePool {
  private readonly loops: Loop[] = [];

  private constructor(
    readonly kind: StageKind,
    private readonly piscina: Piscina,
  ) {}

  static start(kind: StageKind, threads: number, handles: SharedHandles, onExit: (kind: StageKind, err: unknown) => void): StagePool {
    if (!(Number.isInteger(threads) && threads >= 1 && threads <= 64)) throw new RangeError(`${kind} threads ${threads} outside [1, 64]`);
    const filename = new URL(`../workers/${kind}-worker.js`, import.meta.url).href;
    const piscina = new Piscina({ filename, minThreads: threads, maxThreads: threads, idleTimeout: IDLE_TIMEOUT_MS, concurrentTasksPerWorker: 1 });
    const pool = new StagePool(kind, piscina);
    for (let workerId = 0; workerId < threads; workerId++) {
      const { port1, port2 } = new MessageChannel();
      const done = piscina.run({ handles, port: port2, workerId }, { transferList: [port2] });
      const loop: Loop = { port: port1, done, ackedGeneration: 0, ackWaiters: new Set(), lastAck: null };
      port1.on('message', (msg: AckMessage) => {
        if (msg.type !== 'ack') return;
        loop.ackedGeneration = Math.max(loop.ackedGeneration, msg.generation);
        loop.lastAck = msg;
        for (const wake of loop.ackWaiters) wake();
      });
      done.then(
        () => onExit(kind, null),
        (err: unknown) => onExit(kind, err),
      );
      pool.loops.push(loop);
    }
    return pool;
  }

  get threads(): number {
    return this.piscina.threads.length;
  }

  get loopCount(): number {
    return this.loops.length;
  }

  post(msg: TopologyMessage): void {
    for (const loop of this.loops) loop.port.postMessage(msg);
  }

  /** Resolves with every loop's ack once all loops acked `generation`; rejects after timeoutMs. */
  async acks(generation: number, timeoutMs: number): Promise<AckMessage[]> {
    await Promise.all(this.loops.map((loop) => waitAck(loop, generation, timeoutMs, this.kind)));
    return this.loops.map((loop) => loop.lastAck!).filter((a) => a !== null);
  }

  /** Waits (bounded) for the loops to return after the stop flag, then destroys the pool. */
  async stop(timeoutMs: number): Promise<boolean> {
    const all = Promise.allSettled(this.loops.map((l) => l.done));
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs);
    });
    const result = await Promise.race([all, timedOut]);
    clearTimeout(timer);
    for (const loop of this.loops) loop.port.close();
    await this.piscina.destroy();
    return result !== 'timeout';
  }
}

function waitAck(loop: Loop, generation: number, timeoutMs: number, kind: StageKind): Promise<void> {
  if (loop.ackedGeneration >= generation) return Promise.resolve();
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      loop.ackWaiters.delete(check);
      reject(new Error(`${kind} worker did not ack topology generation ${generation} within ${timeoutMs} ms`));
    }, timeoutMs);
    const check = (): void => {
      if (loop.ackedGeneration < generation) return;
      clearTimeout(timer);
      loop.ackWaiters.delete(check);
      resolve();
    };
    loop.ackWaiters.add(check);
  });
}
