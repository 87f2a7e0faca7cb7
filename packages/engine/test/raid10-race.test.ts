// The per-pair rule under real concurrency: two threads end the two legs of one pair at the same
// instant (a spin barrier), thousands of times. Whatever the interleaving, a write whose pair has
// no active leg left must fail. Workers are .js, so they run the BUILT complete.js (tsc -b first).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { errnoCode } from '../src/datapath/errno.js';
import { CHUNK, Harness, WRITE } from './raid10-harness.js';

const EIO = errnoCode('EIO');
const ROUNDS = 2000;
const WAIT_MS = 10_000;
/** Control words: round number, arrivals at the barrier, subs finished, then each worker's sub and mode. */
const C = { ROUND: 0, ARRIVED: 1, DONE: 2, SUB: 3, MODE: 5 } as const;

// Mode 0: the leg's own sub fails. Mode 1: another request fails the leg (state store) and this
// request's sub on it then succeeds — the data landed on a leg that is out of the array.
const WORKER_SOURCE = (completeUrl: string, layoutUrl: string): string => `
import { workerData } from 'node:worker_threads';
const { finishSub } = await import(${JSON.stringify(completeUrl)});
const { attach } = await import(${JSON.stringify(layoutUrl)});
const v = attach(workerData.handles);
const c = new Int32Array(workerData.control);
const me = workerData.me;
for (let round = 1; ; round++) {
  while (Atomics.load(c, ${C.ROUND}) < round) Atomics.wait(c, ${C.ROUND}, round - 1, 1000);
  if (Atomics.load(c, ${C.ROUND}) < 0) break;
  const sub = c[${C.SUB} + me];
  const element = v.words[sub * 16 + 12];
  Atomics.add(c, ${C.ARRIVED}, 1);
  while (Atomics.load(c, ${C.ARRIVED}) < 2 * round) {} // both threads leave the barrier together
  if (c[${C.MODE} + me] === 1) {
    Atomics.store(v.elemState, element, 1);
    finishSub(v, sub, 0);
  } else {
    finishSub(v, sub, ${EIO});
  }
  Atomics.add(c, ${C.DONE}, 1);
  Atomics.notify(c, ${C.DONE});
}
`;

describe('raid10 per-pair rule under concurrency', () => {
  let dir = '';
  let workers: Worker[] = [];
  let h: Harness;
  const control = new Int32Array(new SharedArrayBuffer(16 * 4));

  beforeAll(() => {
    const root = fileURLToPath(new URL('../../../.tmp/', import.meta.url));
    fs.mkdirSync(root, { recursive: true });
    dir = fs.mkdtempSync(path.join(root, 'raid10-race-'));
    const dist = (f: string): string => pathToFileURL(fileURLToPath(new URL(`../dist/datapath/${f}`, import.meta.url))).href;
    const file = path.join(dir, 'leg-worker.mjs');
    fs.writeFileSync(file, WORKER_SOURCE(dist('complete.js'), dist('shared-layout.js')));
    h = new Harness();
    workers = [0, 1].map((me) => new Worker(file, { workerData: { handles: h.handles, control: control.buffer, me } }));
  });

  afterAll(async () => {
    Atomics.store(control, C.ROUND, -1);
    Atomics.notify(control, C.ROUND);
    await Promise.all(workers.map((w) => w.terminate()));
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it(`fails every write whose two legs end not active at the same instant (${ROUNDS} rounds)`, () => {
    const tally = { eio: 0, other: 0 };
    for (let round = 1; round <= ROUNDS; round++) {
      for (const e of [0, 1, 2, 3]) h.setState(e, 'active');
      const r = h.submit(WRITE, 0, CHUNK); // chunk 0: pair (0,1), one sub per leg
      expect(r.subs.map((s) => s.element)).toEqual([0, 1]);
      control[C.SUB] = r.subs[0]!.index;
      control[C.SUB + 1] = r.subs[1]!.index;
      control[C.MODE] = 0;
      control[C.MODE + 1] = round % 2; // odd rounds: leg 1 is failed by "another request"
      Atomics.store(control, C.ROUND, round);
      Atomics.notify(control, C.ROUND);
      const deadline = Date.now() + WAIT_MS;
      while (Atomics.load(control, C.DONE) < 2 * round) {
        if (Date.now() > deadline) throw new Error(`round ${round}: workers did not finish within ${WAIT_MS} ms`);
        Atomics.wait(control, C.DONE, Atomics.load(control, C.DONE), 100);
      }
      const { result } = h.collect(r.parent);
      if (result === -EIO) tally.eio++;
      else tally.other++;
    }
    expect(tally).toEqual({ eio: ROUNDS, other: 0 });
    expect(h.completed()).toBe(false);
  });
});
