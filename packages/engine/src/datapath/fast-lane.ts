// The top driver's fast lane: a READ whose bytes are all in the page cache is served on the main
// thread with preadv2(RWF_NOWAIT) straight into its slab slot, without a descriptor, a ring or a
// wakeup (each worker hop costs 15-20 µs here, CALIBRATION.md; a cached 4 KiB pread costs ~2).
// Anything else — a miss (EAGAIN), a short read, an error, O_DIRECT or remote elements, writes
// (buffered RWF_NOWAIT writes are EOPNOTSUPP on ext4), element-addressed maintenance I/O — goes
// through the common queue as before, so the lane can only ever save work, never change results.
import * as fs from 'node:fs';
import { Op, type Slab } from '@onestack/queue';
import type { PreadNowait } from '@onestack/native';
import { countElementIo } from './complete.js';
import { mapLinear, mapRaid0, mapRaid1, pickReadLeg, type Extent, type VolumeGeometry } from './map.js';
import { STATE_ACTIVE, type TopologyMessage } from './topology.js';

interface LaneVolume {
  readonly layout: 'linear' | 'raid0' | 'raid1';
  readonly geom: VolumeGeometry;
  /** Element index by role. */
  readonly elements: readonly number[];
}

/** Extents a lane read may touch at most (a 4 KiB or 1 MiB read maps to one or a few). */
const EXTENTS_MAX = 16;

export interface FastLaneStats {
  /** Reads served inline from the page cache. */
  hits: number;
  /** Reads tried inline that went to the queue (not cached, short, or an error). */
  misses: number;
}

export class FastLane {
  /** Element index → fd opened by the main thread for page-cache local elements, else -1. */
  private fds: number[] = [];
  /** Element index → the path its fd was opened on (a replaced element gets a new fd). */
  private paths: string[] = [];
  private volumes: (LaneVolume | undefined)[] = [];
  private rotation = 0;
  readonly stats: FastLaneStats = { hits: 0, misses: 0 };

  constructor(
    private readonly pread: PreadNowait,
    private readonly slab: Slab,
    private readonly elemState: Int32Array,
    private readonly elemQueued: Int32Array,
    /** Per-element I/O counters (shared-layout.ts elemIo): lane reads count like subs; null = not counted. */
    private readonly elemIo: BigInt64Array | null = null,
  ) {}

  /** Follows the control plane: opens the lane's own fds, closes those no longer named. */
  apply(msg: TopologyMessage): void {
    const byIndex = new Map(msg.elements.map((e) => [e.index, e]));
    const fds: number[] = [];
    const paths: string[] = [];
    for (const e of msg.elements) {
      if (e.kind !== 'local' || e.direct || e.path === undefined) continue;
      const old = this.fds[e.index] ?? -1;
      fds[e.index] = old >= 0 && this.paths[e.index] === e.path ? old : openReadOnly(e.path);
      paths[e.index] = e.path;
    }
    this.fds.forEach((fd, i) => {
      if (fd >= 0 && fds[i] !== fd) closeQuietly(fd);
    });
    this.fds = fds;
    this.paths = paths;
    const volumes: (LaneVolume | undefined)[] = [];
    for (const vol of msg.volumes) {
      // A write-behind leg may lag: its volume's reads go through the middle stage, which avoids it.
      if (vol.raw === true || vol.writeBehind !== undefined || (vol.layout !== 'linear' && vol.layout !== 'raid0' && vol.layout !== 'raid1')) continue;
      const els = vol.elements.map((i) => byIndex.get(i));
      if (els.some((e) => e === undefined || (fds[e.index] ?? -1) < 0)) continue; // every leg must be page-cache local
      const elements = els.map((e) => ({ dataOffsetBytes: e!.dataOffsetBytes, dataSizeBytes: e!.dataSizeBytes }));
      volumes[vol.index] = { layout: vol.layout, elements: vol.elements, geom: { layout: vol.layout, chunkBytes: vol.chunkBytes, sizeBytes: vol.sizeBytes, elements } };
    }
    this.volumes = volumes;
  }

  /**
   * Tries to serve READ [offsetBytes, +lengthBytes) of `volume` into `slot` at `slotOffset`.
   * True: every byte is there. False: nothing is promised (the queue must do the whole read).
   */
  tryRead(volume: number, op: number, flags: number, offsetBytes: number, lengthBytes: number, slot: number, slotOffset: number): boolean {
    if (op !== Op.READ || flags !== 0 || slot < 0 || lengthBytes === 0) return false;
    const vol = this.volumes[volume];
    if (vol === undefined) return false;
    const extents = this.map(vol, offsetBytes, lengthBytes);
    if (extents === null) return false;
    const view = this.slab.wholeView();
    const base = this.slab.byteOffsetOf(slot) + slotOffset;
    for (const x of extents) {
      const element = vol.elements[x.role]!;
      const fd = this.fds[element] ?? -1;
      const n = fd < 0 ? -1 : this.pread(fd, view, base + x.bufferOffsetBytes, x.lengthBytes, x.elementOffsetBytes);
      if (n !== x.lengthBytes) {
        this.stats.misses++;
        return false;
      }
    }
    this.stats.hits++;
    // Only now: a lane read that missed is read again, and counted, by the queue.
    if (this.elemIo !== null) for (const x of extents) countElementIo(this.elemIo, vol.elements[x.role]!, Op.READ, x.lengthBytes);
    return true;
  }

  close(): void {
    for (const fd of this.fds) if (fd >= 0) closeQuietly(fd);
    this.fds = [];
    this.paths = [];
    this.volumes = [];
  }

  /** Same mapping as the middle stage (middle-core.ts), restricted to what the lane serves. */
  private map(vol: LaneVolume, off: number, len: number): readonly Extent[] | null {
    if (off + len > vol.geom.sizeBytes) return null;
    let extents: Extent[];
    if (vol.layout === 'raid1') {
      const active: number[] = [];
      vol.elements.forEach((el, role) => {
        if (Atomics.load(this.elemState, el) === STATE_ACTIVE) active.push(role);
      });
      const role = pickReadLeg(active, (r) => Atomics.load(this.elemQueued, vol.elements[r]!), this.rotation++ & 0x3fffffff);
      return role < 0 ? null : mapRaid1(vol.geom, [role], off, len);
    }
    extents = vol.layout === 'linear' ? mapLinear(vol.geom, off, len) : mapRaid0(vol.geom, off, len);
    if (extents.length > EXTENTS_MAX) return null;
    for (const x of extents) if (Atomics.load(this.elemState, vol.elements[x.role]!) !== STATE_ACTIVE) return null;
    return extents;
  }
}

function openReadOnly(path: string): number {
  try {
    return fs.openSync(path, fs.constants.O_RDONLY);
  } catch {
    return -1; // the queue path reports the element's real open error
  }
}

function closeQuietly(fd: number): void {
  try {
    fs.closeSync(fd);
  } catch {
    // gone either way
  }
}
