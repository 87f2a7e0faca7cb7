// Micro-benchmarks for @onestack/queue: single-thread push+pop pairs per structure and a
// cross-thread round trip (main → worker → main) through two Rings with Doorbells.
// Build: pnpm exec tsc -p bench    Run: node bench/dist/queue.bench.js
// The same file is the worker (isMainThread === false) so the bench stays one file.
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { Bench } from 'tinybench';
import { Doorbell, IndexPool, LifoStack, PriorityQueue, Ring } from '@onestack/queue';

const RING_CAPACITY = 256;
const INNER = 1_000; // operations per tinybench call, so the harness overhead does not dominate
const SLEEP_MS = 1_000; // bounded sleeps: a lost wakeup would show as a stall, not a hang

interface RoundTripLayout {
  reqOff: number;
  repOff: number;
  workerBellOff: number;
  mainBellOff: number;
  stopOff: number;
  bytes: number;
}

function roundTripLayout(): RoundTripLayout {
  const ringBytes = Ring.bytesFor(RING_CAPACITY);
  return {
    reqOff: 0,
    repOff: ringBytes,
    workerBellOff: 2 * ringBytes,
    mainBellOff: 2 * ringBytes + 64,
    stopOff: 2 * ringBytes + 128,
    bytes: 2 * ringBytes + 192,
  };
}

/** Worker side: echo every request back, ring the main thread once per drained burst. */
function echoWorker(sab: SharedArrayBuffer, layout: RoundTripLayout): void {
  const requests = new Ring(sab, layout.reqOff, RING_CAPACITY, false);
  const replies = new Ring(sab, layout.repOff, RING_CAPACITY, false);
  const myBell = new Doorbell(sab, layout.workerBellOff, false);
  const mainBell = new Doorbell(sab, layout.mainBellOff, false);
  const stop = new Int32Array(sab, layout.stopOff, 1);
  while (Atomics.load(stop, 0) === 0) {
    let moved = 0;
    for (let v = requests.tryPop(); v >= 0; v = requests.tryPop()) {
      while (!replies.tryPush(v)) mainBell.ring(); // replies sized to never fill; belt and braces
      moved++;
    }
    if (moved > 0) {
      mainBell.ring();
      continue;
    }
    const ticket = myBell.prepareSleep();
    if (requests.size() > 0 || Atomics.load(stop, 0) !== 0) {
      myBell.cancelSleep();
      continue;
    }
    myBell.sleep(ticket, SLEEP_MS);
  }
  parentPort?.postMessage('stopped');
}

function singleThreadBenches(bench: Bench): void {
  const ring = new Ring(new SharedArrayBuffer(Ring.bytesFor(RING_CAPACITY)), 0, RING_CAPACITY, true);
  const lifo = new LifoStack(new SharedArrayBuffer(LifoStack.bytesFor(RING_CAPACITY)), 0, RING_CAPACITY, true);
  const prio = new PriorityQueue(new SharedArrayBuffer(PriorityQueue.bytesFor(RING_CAPACITY, 4)), 0, RING_CAPACITY, 4, true);
  const pool = new IndexPool(new SharedArrayBuffer(IndexPool.bytesFor(RING_CAPACITY)), 0, RING_CAPACITY, true);
  bench.add('Ring push+pop', () => {
    for (let i = 0; i < INNER; i++) {
      ring.tryPush(i);
      ring.tryPop();
    }
  });
  bench.add('LifoStack push+pop', () => {
    for (let i = 0; i < INNER; i++) {
      lifo.tryPush(i & (RING_CAPACITY - 1));
      lifo.tryPop();
    }
  });
  bench.add('PriorityQueue push+pop (level 1 of 4)', () => {
    // Level 1: tryPop looks at the empty levels 3 and 2 first, a realistic middle case.
    for (let i = 0; i < INNER; i++) {
      prio.tryPush(i, 1);
      prio.tryPop();
    }
  });
  bench.add('IndexPool alloc+free', () => {
    for (let i = 0; i < INNER; i++) pool.free(pool.tryAlloc());
  });
}

interface RoundTrip {
  run(batch: number): Promise<void>;
  stop(): Promise<void>;
  mainBell: Doorbell;
  workerBell: Doorbell;
}

function startRoundTrip(): RoundTrip {
  const layout = roundTripLayout();
  const sab = new SharedArrayBuffer(layout.bytes);
  const requests = new Ring(sab, layout.reqOff, RING_CAPACITY, true);
  const replies = new Ring(sab, layout.repOff, RING_CAPACITY, true);
  const workerBell = new Doorbell(sab, layout.workerBellOff, true);
  const mainBell = new Doorbell(sab, layout.mainBellOff, true);
  const worker = new Worker(new URL(import.meta.url), { workerData: { sab, layout } });
  const stopped = new Promise<void>((resolve, reject) => {
    worker.once('message', () => resolve());
    worker.once('error', reject);
  });
  async function run(batch: number): Promise<void> {
    for (let i = 0; i < batch; i++) requests.tryPush(i);
    workerBell.ring();
    let got = 0;
    while (got < batch) {
      if (replies.tryPop() >= 0) {
        got++;
        continue;
      }
      const ticket = mainBell.prepareSleep();
      if (replies.size() > 0) {
        mainBell.cancelSleep();
        continue;
      }
      await mainBell.sleepAsync(ticket, SLEEP_MS);
    }
  }
  async function stop(): Promise<void> {
    Atomics.store(new Int32Array(sab, layout.stopOff, 1), 0, 1);
    workerBell.ring(Infinity);
    await stopped;
    await worker.terminate();
  }
  return { run, stop, mainBell, workerBell };
}

async function main(): Promise<void> {
  const bench = new Bench({ name: '@onestack/queue', time: 1_000, warmupTime: 200 });
  singleThreadBenches(bench);
  const rt = startRoundTrip();
  bench.add('round trip main→worker→main, batch 32', () => rt.run(32));
  bench.add('round trip main→worker→main, batch 1', () => rt.run(1));
  const itemsPerCall = new Map<string, number>([
    ['round trip main→worker→main, batch 32', 32],
    ['round trip main→worker→main, batch 1', 1],
  ]);
  await bench.run();
  await rt.stop();

  const rows = bench.tasks.map((task) => {
    const r = task.result;
    const items = itemsPerCall.get(task.name) ?? INNER;
    if (r.state !== 'completed') return { task: task.name, 'ops/s': r.state, 'ns/op': '-', samples: 0 };
    const opsPerSec = r.throughput.mean * items;
    return {
      task: task.name,
      'ops/s': Math.round(opsPerSec).toLocaleString('en-US'),
      'ns/op': (1e9 / opsPerSec).toFixed(1),
      samples: r.latency.samplesCount,
    };
  });
  console.log(`${bench.name} (node ${process.version}; an op = one push+pop pair / alloc+free / round trip)`);
  console.table(rows);
  console.log(`round-trip wakeups: worker woken ${rt.workerBell.wakeups()}×, main woken ${rt.mainBell.wakeups()}×`);
}

if (isMainThread) {
  await main();
} else {
  const data = workerData as { sab: SharedArrayBuffer; layout: RoundTripLayout };
  echoWorker(data.sab, data.layout);
}
