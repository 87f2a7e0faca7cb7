// REMOTE bottom loop: like the bottom loop, but its elements are sockets (our NBD client and
// iSCSI initiator), so it is asynchronous. It drains its ring in batches, starts each sub on the
// element's link without waiting, and when idle sleeps with Atomics.waitAsync so socket events
// keep flowing. Element k is served by loop k % pools.remote, so one element's requests (and its
// FLUSH) all go down the same connections: one channel per thread, as in SPDK.
import { D, DESC_WORDS, DescStatus, VOLUME_INDEX_MAX } from '@onestack/queue';
import { finishSub } from '../datapath/complete.js';
import { DataPathError, errnoCode } from '../datapath/errno.js';
import { attach, type SharedViews } from '../datapath/shared-layout.js';
import type { TopologyElement, TopologyMessage } from '../datapath/topology.js';
import { ControlChannel, IDLE_SLEEP_MS, type LoopTask } from './control.js';
import { RemoteLink, type LinkTier } from './remote-link.js';
import { TRACE_IDS, traceSub } from './trace.js';

const BATCH_MAX = 64;
const EIO = errnoCode('EIO');
/** Bits 44..55 of a request ID (@onestack/queue ids.ts) name its volume: bits 12..23 of the hi word. */
const ID_VOLUME_SHIFT = 12;

class RemoteLoop {
  private links: (RemoteLink | undefined)[] = [];
  private completedAny = false;
  private ringScheduled = false;
  /** The data path's maintenance channel (topology `raw`): its reads bypass cache tiers. */
  private rawVolume = -1;
  inFlight = 0;

  constructor(
    private readonly v: SharedViews,
    private readonly loopId: number,
  ) {}

  apply(msg: TopologyMessage): { openErrors: { index: number; reason: string }[] } {
    const ringCount = this.v.remote.length;
    const mine = msg.elements.filter((e) => e.remote !== undefined && e.index % ringCount === this.loopId);
    const tierOf = (e: TopologyElement): LinkTier | undefined => (e.cacheTier === undefined ? undefined : { spec: e.cacheTier, fromBytes: e.dataOffsetBytes });
    const kept = new Set<RemoteLink>();
    for (const e of mine) {
      const old = this.links[e.index];
      if (old !== undefined && old.sameAs(e.remote!, tierOf(e))) kept.add(old);
    }
    // Links that go are closed first: a new link may reopen (truncate) the cache file an old one used.
    this.links.forEach((link) => {
      if (link !== undefined && !kept.has(link)) void link.close();
    });
    const next: (RemoteLink | undefined)[] = [];
    for (const e of mine) {
      const old = this.links[e.index];
      next[e.index] = old !== undefined && kept.has(old) ? old.adopt(tierOf(e)) : new RemoteLink(e.remote!, (line) => log(this.loopId, line), tierOf(e));
    }
    this.links = next;
    this.rawVolume = msg.volumes.find((vol) => vol.raw === true)?.index ?? -1;
    return { openErrors: [] }; // links connect on first use; failures surface as I/O errors
  }

  start(sub: number): void {
    const v = this.v;
    const w = v.words;
    const sb = sub * DESC_WORDS;
    w[sb + D.STATUS] = DescStatus.RUNNING;
    const element = w[sb + D.TARGET]!;
    const op = w[sb + D.OP]!;
    const lengthBytes = w[sb + D.LENGTH]!;
    const slot = w[sb + D.SLOT]!;
    const offsetBytes = v.table.getOffset(sub);
    if (TRACE_IDS) traceSub(`remote[${this.loopId}]`, w, sub, offsetBytes);
    const link = this.links[element];
    this.inFlight++;
    const t0 = performance.now(); // request sent to its reply: the remote's service time (transport.ts)
    const done = (errno: number): void => {
      this.inFlight--;
      if (finishSub(v, sub, errno, (performance.now() - t0) * 1000)) this.completedAny = true;
      this.scheduleRing();
    };
    if (link === undefined) return done(EIO);
    const view = slot >= 0 ? v.slab.view(slot, w[sb + D.SLOT_OFFSET]!, lengthBytes) : null;
    const maintenance = ((w[sb + D.ID_HI]! >>> ID_VOLUME_SHIFT) & VOLUME_INDEX_MAX) === this.rawVolume;
    link.run({ op, flags: w[sb + D.FLAGS]!, offsetBytes, lengthBytes, view, maintenance }).then(
      () => done(0),
      (err: unknown) => done(errnoCode(err instanceof DataPathError ? err.errno : 'EIO')),
    );
  }

  /** One completion doorbell for all subs that finished in the same turn of the event loop. */
  private scheduleRing(): void {
    if (this.ringScheduled) return;
    this.ringScheduled = true;
    queueMicrotask(() => {
      this.ringScheduled = false;
      if (this.completedAny) this.v.completionBell.ring();
      this.completedAny = false;
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.links.map((l) => l?.close()));
    this.links = [];
  }
}

function log(loopId: number, line: string): void {
  process.stderr.write(`onestack: remote[${loopId}]: ${line}\n`);
}

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

export default async function remoteLoop(task: LoopTask): Promise<string> {
  const v = attach(task.handles);
  const ring = v.remote[task.workerId];
  const bell = v.remoteBells[task.workerId];
  if (ring === undefined || bell === undefined) throw new Error(`remote loop ${task.workerId}: no ring (pools.remote = ${v.remote.length})`);
  const loop = new RemoteLoop(v, task.workerId);
  const control = new ControlChannel(v, task.port);
  try {
    while (!control.stopRequested()) {
      control.poll((msg) => loop.apply(msg));
      let n = 0;
      for (; n < BATCH_MAX; n++) {
        const sub = ring.tryPop();
        if (sub < 0) break;
        loop.start(sub);
      }
      if (n > 0) {
        await turn(); // let the sockets send and receive before the next batch
        continue;
      }
      const ticket = bell.prepareSleep();
      if (ring.size() > 0 || control.stopRequested() || control.changed()) {
        bell.cancelSleep();
        await turn();
        continue;
      }
      await bell.sleepAsync(ticket, IDLE_SLEEP_MS);
    }
  } finally {
    await loop.close();
    control.close();
  }
  return 'stopped';
}
