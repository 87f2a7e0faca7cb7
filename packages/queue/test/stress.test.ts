// Several producer and consumer worker_threads push unique request IDs through small queues of
// each policy; every ID must come out exactly once. Speed is not asserted (see bench/).
import { Worker } from 'node:worker_threads';
import { beforeAll, describe, expect, it } from 'vitest';
import { DescriptorTable, Doorbell, IndexPool, queueBytes, createQueue, type QueuePolicy } from '../src/index.js';
import { distIndexUrl, ensureBuilt, fixtureUrl } from './helpers.js';

const TOTAL = 200_000;
const PRODUCERS = 2;
const CONSUMERS = 2;
const POOL_COUNT = 64;
const SEQ_BASE = 2 ** 32 - TOTAL / 2; // IDs cross the 32-bit word boundary halfway through
const RUN_MS_MAX = 45_000;

interface WorkerStats {
  items: number;
  sleeps: number;
  timeouts: number;
  fullPushes: number;
  emptyPools: number;
}

function layoutFor(policy: QueuePolicy) {
  // LIFO values must lie in [0, capacity): make it as large as the descriptor pool. The FIFO and
  // priority queues are smaller than the pool so producers hit back-pressure.
  const capacity = policy === 'lifo' ? POOL_COUNT : 16;
  let off = 0;
  const take = (bytes: number) => {
    const at = off;
    off += Math.ceil(bytes / 64) * 64;
    return at;
  };
  const layout = {
    policy,
    capacity,
    poolCount: POOL_COUNT,
    volumeIndex: 42,
    queueOff: take(queueBytes(policy, capacity)),
    poolOff: take(IndexPool.bytesFor(POOL_COUNT)),
    descOff: take(DescriptorTable.bytesFor(POOL_COUNT)),
    workBellOff: take(Doorbell.BYTES),
    spaceBellOff: take(Doorbell.BYTES),
    countersOff: take(16),
    seenOff: take(TOTAL * 4),
  };
  return { layout, bytes: off };
}

function runWorker(workerData: Record<string, unknown>): Promise<WorkerStats> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(fixtureUrl('stress-worker.mjs'), { workerData });
    let stats: WorkerStats | undefined;
    worker.once('message', (m: WorkerStats) => (stats = m));
    worker.once('error', reject);
    worker.once('exit', (code) => (code === 0 && stats ? resolve(stats) : reject(new Error(`worker exited ${code}`))));
  });
}

describe('multi-thread stress', () => {
  beforeAll(() => ensureBuilt());

  it.each<QueuePolicy>(['fifo', 'lifo', 'priority'])(
    '%s: 200k unique IDs through a small queue, each delivered exactly once',
    async (policy) => {
      const { layout, bytes } = layoutFor(policy);
      const sab = new SharedArrayBuffer(bytes);
      createQueue(policy, sab, layout.queueOff, layout.capacity, true);
      const pool = new IndexPool(sab, layout.poolOff, POOL_COUNT, true);
      new DescriptorTable(sab, layout.descOff, POOL_COUNT).resetAll();
      const workBell = new Doorbell(sab, layout.workBellOff, true);
      new Doorbell(sab, layout.spaceBellOff, true);

      const common = { distIndexUrl, sab, layout, total: TOTAL, seqBase: SEQ_BASE, deadlineMs: Date.now() + RUN_MS_MAX };
      const perProducer = TOTAL / PRODUCERS;
      const runs: Array<Promise<WorkerStats>> = [];
      for (let c = 0; c < CONSUMERS; c++) runs.push(runWorker({ ...common, role: 'consumer', index: c }));
      for (let p = 0; p < PRODUCERS; p++) {
        runs.push(runWorker({ ...common, role: 'producer', index: p, from: p * perProducer, to: (p + 1) * perProducer }));
      }
      const stats = await Promise.all(runs);

      const seen = new Int32Array(sab, layout.seenOff, TOTAL);
      const wrong = seen.findIndex((n) => n !== 1);
      expect(wrong, `ID ${wrong} seen ${seen[wrong]} times`).toBe(-1);
      const consumed = stats.slice(0, CONSUMERS).reduce((sum, s) => sum + s.items, 0);
      const produced = stats.slice(CONSUMERS).reduce((sum, s) => sum + s.items, 0);
      expect(consumed).toBe(TOTAL);
      expect(produced).toBe(TOTAL);
      expect(pool.available()).toBe(POOL_COUNT); // every descriptor came back
      expect(createQueue(policy, sab, layout.queueOff, layout.capacity, false).tryPop()).toBe(-1);
      expect(workBell.sleepers()).toBe(0);
      const sleeps = stats.reduce((sum, s) => sum + s.sleeps, 0);
      const blocked = stats.reduce((sum, s) => sum + s.fullPushes + s.emptyPools, 0);
      console.log(`${policy}: sleeps=${sleeps} wakeups=${workBell.wakeups()} producer-blocked=${blocked}`);
    },
    60_000,
  );
});
