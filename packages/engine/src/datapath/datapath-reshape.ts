// The data path's side of online reshape (docs/reshape.md): the stable per-volume handle that
// clients hold (it follows the volume through reshape topologies and can pause it), the routers
// of reshaping volumes, and the topology checks for them.
import type { RequestClass } from '@onestack/queue';
import type { NbdReadResult, NbdWriteBuffer } from '@onestack/nbd';
import { EngineError } from '../api-types.js';
import { DataPathError } from './errno.js';
import { isParityLayout } from './map-parity.js';
import { ReshapeRouter } from './reshape-router.js';
import type { TopologyVolume } from './topology.js';
import type { VolumeCacheStats, VolumeIo, VolumeStats } from './volume-io-types.js';
import { BoundedFifo } from './waiters.js';
import type { WriteGate } from './write-gate.js';

/**
 * What DataPath.volumeIo hands out: one object per bound volume that resolves, per call, to what
 * serves the volume now (its ReshapeRouter while it reshapes, else its own VolumeIo). An NBD
 * connection opened before a reshape thus goes through the router, and one opened during it
 * reaches the plain volume once it finishes. It counts requests in flight so pause() can hold
 * new ones and wait for the rest. Removed volumes detach it: it then keeps the last target.
 */
export class VolumeHandle implements VolumeIo {
  private inFlight = 0;
  private held: BoundedFifo<() => void> | null = null;
  private idle: (() => void)[] = [];
  private last: VolumeIo;
  private detached = false;
  /** Which target gave out a write buffer: another one cannot take it (the target changed since). */
  private readonly bufferOwners = new WeakMap<NbdWriteBuffer, VolumeIo>();

  constructor(
    private readonly current: () => VolumeIo | undefined,
    first: VolumeIo,
    private readonly waitersMax: number,
  ) {
    this.last = first;
  }

  private target(): VolumeIo {
    if (!this.detached) this.last = this.current() ?? this.last;
    return this.last;
  }

  /** The volume left the topology: keep answering through the last target (it fails as the removed volume does). */
  detach(): void {
    this.detached = true;
    this.resume();
  }

  get sizeBytes(): number {
    return this.target().sizeBytes;
  }

  get gate(): WriteGate {
    return this.target().gate;
  }

  get alignBytes(): number {
    return this.target().alignBytes;
  }

  get paused(): boolean {
    return this.held !== null;
  }

  /** Holds new requests, waits until none is in flight; resolves with the resume. */
  async pause(): Promise<() => void> {
    if (this.held !== null) throw new EngineError('conflict', 'the volume is already paused');
    this.held = new BoundedFifo(this.waitersMax);
    if (this.inFlight > 0) await new Promise<void>((resolve) => this.idle.push(resolve));
    return () => this.resume();
  }

  private resume(): void {
    const held = this.held;
    this.held = null;
    for (let w = held?.shift(); w !== undefined; w = held!.shift()) w();
  }

  private track<T>(fn: (io: VolumeIo) => Promise<T>): Promise<T> {
    if (this.held !== null) return this.later(fn);
    this.inFlight++;
    let run: Promise<T>;
    try {
      run = fn(this.target());
    } catch (err) {
      run = Promise.reject(err);
    }
    return run.finally(() => {
      if (--this.inFlight === 0 && this.idle.length > 0) {
        const idle = this.idle;
        this.idle = [];
        for (const f of idle) f();
      }
    });
  }

  private async later<T>(fn: (io: VolumeIo) => Promise<T>): Promise<T> {
    await new Promise<void>((resolve, reject) => {
      if (!this.held!.push(resolve)) reject(new DataPathError('ENOMEM', `more than ${this.waitersMax} requests wait for a paused volume`));
    });
    return this.track(fn);
  }

  read(off: number, len: number, cls?: RequestClass): Promise<Uint8Array> {
    return this.track((io) => io.read(off, len, cls));
  }

  write(off: number, data: Uint8Array, opts?: { fua?: boolean }, cls?: RequestClass): Promise<void> {
    return this.track((io) => io.write(off, data, opts, cls));
  }

  readSlots(off: number, len: number, cls?: RequestClass): Promise<NbdReadResult> {
    return this.track((io) => io.readSlots(off, len, cls));
  }

  async acquireWriteBuffer(lengthBytes: number): Promise<NbdWriteBuffer> {
    const io = this.target();
    const buf = await io.acquireWriteBuffer(lengthBytes);
    this.bufferOwners.set(buf, io);
    return buf;
  }

  /** Zero-copy when the buffer's giver still serves the volume and it is not paused; else its bytes are copied out and its slots freed first. */
  writeBuffer(off: number, buf: NbdWriteBuffer, opts: { fua: boolean }, cls?: RequestClass): Promise<void> {
    const owner = this.bufferOwners.get(buf);
    if (owner === undefined) {
      buf.release();
      return Promise.reject(new DataPathError('EINVAL', 'write buffer was not acquired from this volume or was already released'));
    }
    this.bufferOwners.delete(buf);
    if (this.held === null && owner === this.target()) return this.track((io) => io.writeBuffer(off, buf, opts, cls));
    const data = new Uint8Array(buf.chunks.reduce((a, c) => a + c.length, 0));
    let at = 0;
    for (const c of buf.chunks) {
      data.set(c, at);
      at += c.length;
    }
    buf.release();
    return this.track((io) => io.write(off, data, opts, cls));
  }

  flush(): Promise<void> {
    return this.track((io) => io.flush());
  }

  trim(off: number, len: number, opts?: { fua?: boolean }): Promise<void> {
    return this.track((io) => io.trim(off, len, opts));
  }

  writeZeroes(off: number, len: number, opts?: { fua?: boolean; noHole?: boolean }): Promise<void> {
    return this.track((io) => io.writeZeroes(off, len, opts));
  }

  cache(off: number, len: number): Promise<void> {
    return this.track((io) => io.cache(off, len));
  }

  stats(): VolumeStats {
    return this.target().stats();
  }

  cacheStats(): VolumeCacheStats {
    return this.target().cacheStats();
  }

  drainBehind(): Promise<void> {
    return this.target().drainBehind?.() ?? Promise.resolve();
  }

  invalidateCache(off: number, len: number): void {
    this.target().invalidateCache(off, len);
  }
}

/** Topology checks of reshaping volumes: the old view exists, is internal, holds the exposed bytes, and journals elsewhere. */
export function validateReshapes(volumes: readonly TopologyVolume[]): void {
  const byIndex = new Map(volumes.map((v) => [v.index, v]));
  const from = new Set<number>();
  for (const vol of volumes) {
    const r = vol.reshape;
    if (r === undefined) continue;
    const old = byIndex.get(r.fromIndex);
    if (old === undefined || old === vol || old.reshape !== undefined || old.internal !== true || from.has(r.fromIndex)) {
      throw new EngineError('invalid', `volume ${vol.name}: reshape source ${r.fromIndex} must be another internal volume of the topology, used once`, vol.name);
    }
    from.add(r.fromIndex);
    if (!(Number.isSafeInteger(r.exposedBytes) && r.exposedBytes >= 0 && r.exposedBytes <= old.sizeBytes && r.exposedBytes <= vol.sizeBytes)) {
      throw new EngineError('invalid', `volume ${vol.name}: reshape exposes ${r.exposedBytes} bytes, its views hold ${old.sizeBytes} and ${vol.sizeBytes}`, vol.name);
    }
    if (!(Number.isSafeInteger(r.positionBytes) && r.positionBytes >= 0 && r.positionBytes <= r.exposedBytes)) {
      throw new EngineError('invalid', `volume ${vol.name}: reshape position ${r.positionBytes} outside [0, ${r.exposedBytes}]`, vol.name);
    }
    if (isParityLayout(vol.layout) && isParityLayout(old.layout) && (vol.journal ?? 'full') === (old.journal ?? 'full')) {
      throw new EngineError('invalid', `volume ${vol.name}: both views of a reshape journal in the ${vol.journal ?? 'full'} area`, vol.name);
    }
  }
}

/** The routers of reshaping volumes, kept across topologies that keep their reshape (the position never moves back). */
export class Reshapes {
  private readonly routers = new Map<number, { readonly fromIndex: number; readonly router: ReshapeRouter }>();

  constructor(private readonly waitersMax: number) {}

  router(index: number): ReshapeRouter | undefined {
    return this.routers.get(index)?.router;
  }

  /** After a topology is bound: `ios` holds every volume's own VolumeIo. */
  apply(volumes: readonly TopologyVolume[], ios: ReadonlyMap<number, VolumeIo>): void {
    const keep = new Set<number>();
    for (const vol of volumes) {
      const r = vol.reshape;
      if (r === undefined) continue;
      const oldIo = ios.get(r.fromIndex);
      const newIo = ios.get(vol.index);
      if (oldIo === undefined || newIo === undefined) throw new Error(`reshape of ${vol.name}: a view is not bound`);
      keep.add(vol.index);
      const had = this.routers.get(vol.index);
      if (had !== undefined && had.fromIndex === r.fromIndex) had.router.rebind(oldIo, newIo, r.exposedBytes);
      else this.routers.set(vol.index, { fromIndex: r.fromIndex, router: new ReshapeRouter(oldIo, newIo, r.positionBytes, r.exposedBytes, this.waitersMax) });
    }
    for (const index of [...this.routers.keys()]) if (!keep.has(index)) this.routers.delete(index);
  }
}
