// The data path's worker loops: the middle, bottom and remote stage pools plus the main thread's
// own middle core. Every loop learns each topology from a broadcast and acks it before the data
// path serves that topology; stopping wakes every sleeper so that it sees the stop flag.
import type { PoolsConfig } from '../config/types.js';
import type { FastLane } from './fast-lane.js';
import { MiddleCore } from './middle-core.js';
import { StagePool, type StageKind } from './pools.js';
import { H, type SharedHandles, type SharedViews } from './shared-layout.js';
import type { Top } from './top.js';
import type { AckMessage, TopologyElement, TopologyMessage, TopologyVolume } from './topology.js';

export class StageLoops {
  private generation = 0;

  private constructor(
    private readonly v: SharedViews,
    /** null when pools.middle = 0: the middle stage then runs inline in `top`. */
    readonly middle: StagePool | null,
    readonly bottom: StagePool,
    /** Async loops for nbd/iscsi elements (pools.remote threads). */
    readonly remote: StagePool,
    /** The main thread's middle core: all of the middle stage when pools.middle = 0, else element-addressed I/O only (top.ts). */
    readonly inlineCore: MiddleCore,
  ) {}

  /** Starts the pools (sizes already checked: datapath-options.ts) and wires the inline core into `top`. */
  static start(handles: SharedHandles, v: SharedViews, top: Top, pools: PoolsConfig, onExit: (kind: StageKind, err: unknown) => void): StageLoops {
    // pools.middle = 0: no middle threads, one hop less (CALIBRATION.md); the top thread maps.
    const inlineCore = new MiddleCore(v);
    if (pools.middle === 0) top.setInlineMiddle(inlineCore);
    else top.setElementRouter(inlineCore);
    const middle = pools.middle > 0 ? StagePool.start('middle', pools.middle, handles, onExit) : null;
    const bottom = StagePool.start('bottom', pools.bottom, handles, onExit);
    const remote = StagePool.start('remote', pools.remote, handles, onExit);
    return new StageLoops(v, middle, bottom, remote, inlineCore);
  }

  /** Posts a topology to every loop (and the fast lane), then bumps the generation word and wakes sleepers; waits for all acks. */
  async broadcast(volumes: readonly TopologyVolume[], elements: readonly TopologyElement[], lane: FastLane | null, ackTimeoutMs: number): Promise<AckMessage[]> {
    const generation = ++this.generation;
    const msg: TopologyMessage = { type: 'topology', generation, volumes, elements };
    this.middle?.post(msg);
    this.inlineCore.apply(msg);
    lane?.apply(msg);
    this.bottom.post(msg);
    this.remote.post(msg);
    Atomics.store(this.v.header, H.GENERATION, generation);
    this.v.middleBell.ring(Infinity);
    this.v.bottomBell.ring(Infinity);
    for (const bell of this.v.remoteBells) bell.ring(Infinity);
    const [m, b, r] = await Promise.all([this.middle?.acks(generation, ackTimeoutMs) ?? [], this.bottom.acks(generation, ackTimeoutMs), this.remote.acks(generation, ackTimeoutMs)]);
    return [...m, ...b, ...r];
  }

  /** Sets the stop flag, wakes every sleeper so it sees it, and waits (bounded) for the loops to return. */
  async stop(timeoutMs: number): Promise<void> {
    Atomics.store(this.v.header, H.STOP, 1);
    for (const bell of [this.v.middleBell, this.v.bottomBell, this.v.subFreedBell, this.v.completionBell, ...this.v.remoteBells]) bell.ring(Infinity);
    await Promise.all([this.middle?.stop(timeoutMs), this.bottom.stop(timeoutMs), this.remote.stop(timeoutMs)]);
  }
}
