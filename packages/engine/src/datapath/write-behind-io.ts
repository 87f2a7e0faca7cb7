// Glue between a raid1 volume's I/O and its write-behind writer (write-behind.ts): the leg's
// element-addressed writes go through the raw channel of the common queue, its state word says
// whether it takes writes, and a failed write takes it out like a failed mirror leg.
import { Op, type Slab } from '@onestack/queue';
import { stripeLocate, stripeSplit } from './map.js';
import type { SharedViews } from './shared-layout.js';
import type { Top } from './top.js';
import { failElementState, FLAG_ELEMENT, STATE_ACTIVE, STATE_REBUILDING, type TopologyElement, type TopologyVolume } from './topology.js';
import type { SlotPool } from './waiters.js';
import { WriteBehind, type BehindSink } from './write-behind.js';
import type { VolumeIntegrity } from '../integrity/checksum-io.js';
import { INTEGRITY_BLOCK_BYTES } from '../integrity/types.js';

export type { WriteBehindStatus } from './write-behind.js';

export interface BehindLink {
  readonly writer: WriteBehind;
  /** Element index of the leg written behind. */
  readonly element: number;
  readonly maxLagBytes: number;
  readonly drainOnFlush: boolean;
  /** The leg takes writes (active or rebuilding). */
  legUp(): boolean;
  /** Some other leg of the volume is active (then writes may be acknowledged without the leg). */
  otherActive(): boolean;
  /** Flushes the leg alone (a clean stop without drainOnFlush still leaves it on stable storage). */
  flushLeg(): Promise<void>;
  /** The parts of a write (slot-sized chunks from `offsetBytes`) the leg holds: all of it (raid1), its pair's chunks (raid10). */
  piecesOf(offsetBytes: number, chunks: readonly Uint8Array[], slotBytes: number): { chunks: Uint8Array[]; offsets: number[] };
}

export interface BehindDeps {
  readonly top: Top;
  readonly slots: SlotPool;
  readonly slab: Slab;
  readonly rawIndex: number;
  readonly v: SharedViews;
}

/** The link a bound volume needs now: `prev` when nothing changed (the queue carries on), a new one, or null. */
export function behindLinkFor(vol: TopologyVolume, elements: ReadonlyMap<number, TopologyElement>, deps: BehindDeps, prev: BehindLink | null): BehindLink | null {
  const cfg = vol.layout === 'raid1' || vol.layout === 'raid10' ? vol.writeBehind : undefined;
  if (cfg === undefined || !vol.elements.includes(cfg.element)) return null;
  const role = vol.elements.indexOf(cfg.element);
  const pairs = vol.elements.length / 2;
  // raid10: the leg holds its pair's chunks, each at the same element offset as on its partner.
  const elementOffset = vol.layout === 'raid1' ? (off: number): number => off : (off: number): number => stripeLocate(vol.chunkBytes, pairs, off).columnOffsetBytes;
  const piecesOf = vol.layout === 'raid1' ? wholeWrite : pairPieces(vol.chunkBytes, pairs, role >> 1);
  if (prev !== null && prev.element === cfg.element && prev.maxLagBytes === cfg.maxLagBytes && prev.drainOnFlush === cfg.drainOnFlush) return { ...prev, otherActive: othersOf(vol, cfg.element, deps.v), piecesOf };
  const el = elements.get(cfg.element);
  if (el === undefined) return null;
  const state = deps.v.elemState;
  const legUp = (): boolean => {
    const s = Atomics.load(state, cfg.element);
    return s === STATE_ACTIVE || s === STATE_REBUILDING;
  };
  const sink: BehindSink = {
    slotBytes: deps.slab.slotBytes,
    acquireWindow: (n) => deps.slots.acquire(n),
    releaseWindow: (slots) => deps.slots.release(slots),
    view: (slot, off, len) => deps.slab.view(slot, off, len),
    // FLAG_ELEMENT: element-addressed, so the top maps it inline (no middle-worker hop per write).
    write: (off, len, slot, slotOffset) => deps.top.submit(deps.rawIndex, Op.WRITE, el.dataOffsetBytes + elementOffset(off), len, FLAG_ELEMENT, slot, 'local', cfg.element, slotOffset),
    legUp,
    fail: () => {
      Atomics.add(deps.v.elemErrors, cfg.element, 1);
      // Like a failed mirror leg (complete.ts failParent): out at once; the bitmap keeps its regions.
      failElementState(state, cfg.element);
    },
  };
  const flushLeg = (): Promise<void> => deps.top.submit(deps.rawIndex, Op.FLUSH, 0, 0, FLAG_ELEMENT, -1, 'local', cfg.element);
  return { writer: new WriteBehind(sink, cfg.maxLagBytes), element: cfg.element, maxLagBytes: cfg.maxLagBytes, drainOnFlush: cfg.drainOnFlush, legUp, otherActive: othersOf(vol, cfg.element, deps.v), flushLeg, piecesOf };
}

function wholeWrite(offsetBytes: number, chunks: readonly Uint8Array[], slotBytes: number): { chunks: Uint8Array[]; offsets: number[] } {
  return { chunks: [...chunks], offsets: chunks.map((_, i) => offsetBytes + i * slotBytes) };
}

/** raid10: the chunk pieces of a write that land on pair `pair` (a piece never crosses a chunk, so one element offset each). */
function pairPieces(chunkBytes: number, pairs: number, pair: number) {
  return (offsetBytes: number, chunks: readonly Uint8Array[], slotBytes: number): { chunks: Uint8Array[]; offsets: number[] } => {
    const out: { chunks: Uint8Array[]; offsets: number[] } = { chunks: [], offsets: [] };
    chunks.forEach((c, i) => {
      const base = offsetBytes + i * slotBytes;
      for (const x of stripeSplit(chunkBytes, pairs, base, c.length)) {
        if (x.column !== pair) continue;
        out.chunks.push(c.subarray(x.bufferOffsetBytes, x.bufferOffsetBytes + x.lengthBytes));
        out.offsets.push(base + x.bufferOffsetBytes);
      }
    });
    return out;
  };
}

/** Whether the leg's data has another active holder: any other raid1 leg, the raid10 partner. */
function othersOf(vol: TopologyVolume, element: number, v: SharedViews): () => boolean {
  const role = vol.elements.indexOf(element);
  const others = vol.layout === 'raid10' ? [vol.elements[role ^ 1]!] : vol.elements.filter((e) => e !== element);
  return () => others.some((e) => Atomics.load(v.elemState, e) === STATE_ACTIVE);
}

/**
 * A write on a volume with a write-behind leg: staged (back-pressure when the lag is at its
 * bound), acknowledged once the other legs have it (`skipping`), then queued for the leg in that
 * order. With no other active leg, or when it is too large for the staging ring, it goes to every
 * leg (`all`), after the queue has drained.
 */
export async function writeWithBehind(wb: BehindLink, chunks: readonly Uint8Array[], offsets: readonly number[], skipping: () => Promise<void>, all: () => Promise<void>,
  afters?: readonly (() => Promise<void>)[]): Promise<void> {
  if (chunks.length === 0) return all(); // raid10: nothing on the leg's pair
  // A write larger than the staging ring (less a piece) could never be staged: every leg takes it, after the queue (below).
  if (wb.legUp() && wb.otherActive() && wb.writer.canStage(chunks.map((c) => c.length))) {
    const tickets = await wb.writer.stageChunks(chunks);
    if (tickets === null) return all(); // the writer was stopped (topology change): every leg now
    try {
      await skipping();
    } catch (err) {
      wb.writer.cancel(tickets);
      // The other legs went away meanwhile: the write-behind leg alone takes it (below).
      if (!(wb.legUp() && !wb.otherActive())) throw err;
      await wb.writer.drain();
      return all();
    }
    if (wb.writer.isClosed) {
      // Stopped while the other legs wrote: nothing will carry it to the leg, so every leg gets it now (same bytes; the gate still holds the range).
      wb.writer.cancel(tickets);
      return all();
    }
    wb.writer.commit(tickets, offsets, afters);
    return;
  }
  if (wb.writer.lagBytes > 0) await wb.writer.drain();
  return all();
}

/**
 * An integrity volume's checksums for a write-behind write (docs/integrity.md, "Write-behind
 * legs"): computed once from the client's bytes; `record` stores them for every leg but the
 * write-behind one (with the acknowledged write), `afters[i]` for the write-behind leg once
 * piece i (`mine`, from piecesOf) is on it. Null without integrity.
 */
export function behindSums(integrity: VolumeIntegrity | null, element: number, offsetBytes: number, chunks: readonly Uint8Array[], mine: { readonly chunks: readonly Uint8Array[]; readonly offsets: readonly number[] }):
  { record(fua: boolean): Promise<void>; afters: (() => Promise<void>)[] } | null {
  if (integrity === null) return null;
  const sums = integrity.sumsOf(chunks); // consecutive chunks from offsetBytes, whole blocks
  return {
    record: (fua) => integrity.record(offsetBytes, sums, fua, { skip: element }),
    afters: mine.offsets.map((off, i) => {
      const at = (off - offsetBytes) / INTEGRITY_BLOCK_BYTES;
      const piece = sums.subarray(at, at + mine.chunks[i]!.length / INTEGRITY_BLOCK_BYTES);
      return () => integrity.recordLeg(element, off, piece);
    }),
  };
}
