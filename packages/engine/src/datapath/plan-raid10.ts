// The middle stage's raid10 planner: which legs of which pairs a request goes to, and what each
// sub must check when it ends (the per-pair rule in complete.ts). Runs in a middle worker or
// inline on the main thread; reads element states, writes only the parent's descriptor.
import { D, DESC_WORDS, Op } from '@onestack/queue';
import { PEER_UNWRITTEN, peerWord } from './complete.js';
import type { ColumnExtent, Extent, VolumeGeometry } from './map.js';
import { mapRaid10Pairs, mapRaid10PairsCoalesced, raid10Leg, raid10Pairs } from './map-raid10.js';
import { pickLeg, type ReadPolicy } from './read-choice.js';
import type { SharedViews } from './shared-layout.js';
import { FLAG_MIRRORED, FLAG_SKIP_BEHIND, STATE_ACTIVE, STATE_REBUILDING, type TopologyVolume } from './topology.js';
import { latencyUs, nowMs, readIsStale } from './transport.js';

export interface PairedPlan {
  readonly extents: Extent[];
  /** Per role: the SUB_PEER word of its subs; null for reads (any failed leg fails a read). */
  readonly peers: Int32Array | null;
}

/**
 * Maps a raid10 parent: reads and cache go to one active leg per chunk (the faster, read-choice.ts), writes,
 * trims, zeroes and flushes to every active or rebuilding leg of each pair touched (a leg being
 * rebuilt must stay current where it was already copied). Returns null when a touched pair has no
 * active leg: nothing can hold (or serve) those bytes, so the caller fails the request with EIO
 * before any I/O, and no other pair gets half of it. A rebuilding leg never holds: its own sub
 * names its active partner (checkPair then needs that partner), and the partner's sub says
 * PEER_UNWRITTEN, as for a failed leg.
 */
export function planPaired(v: SharedViews, parent: number, spec: TopologyVolume, g: VolumeGeometry, rotation: number, policy: ReadPolicy = 'latency'): PairedPlan | null {
  const w = v.words;
  const pb = parent * DESC_WORDS;
  const op = w[pb + D.OP]!;
  const pairs = raid10Pairs(g);
  if (spec.elements.length !== g.elements.length) throw new Error(`raid10 ${spec.name}: ${spec.elements.length} elements but ${g.elements.length} geometries`);
  // One snapshot per request: every decision below (legs, peers) agrees with the same states.
  const states = spec.elements.map((el) => Atomics.load(v.elemState, el));
  const active = states.map((s) => s === STATE_ACTIVE);
  const written = states.map((s) => s === STATE_ACTIVE || s === STATE_REBUILDING);
  const read = op === Op.READ || op === Op.CACHE;
  // A write-behind leg (write-behind.ts) serves no read while its partner can, and a write the
  // volume I/O stages for it later skips it: its partner alone holds the write meanwhile.
  const behind = spec.writeBehind === undefined ? -1 : spec.elements.indexOf(spec.writeBehind.element);
  const readable = behind >= 0 && active[behind] && active[behind ^ 1] ? active.map((x, role) => x && role !== behind) : active;
  if (behind >= 0 && !read && (w[pb + D.FLAGS]! & FLAG_SKIP_BEHIND) !== 0) {
    written[behind] = false;
    active[behind] = false;
  }
  const queued = (role: number): number => Atomics.load(v.elemQueued, spec.elements[role]!);
  const now = nowMs();
  const readUs = (role: number): number => latencyUs(v.elemLat, spec.elements[role]!, true);
  const stale = (role: number): boolean => readIsStale(v.elemLat, spec.elements[role]!, now);
  const pieces = op === Op.FLUSH ? everyPair(pairs) : piecesOf(v, parent, g, op);
  const extents: Extent[] = [];
  for (const x of pieces) {
    const a = 2 * x.column;
    const b = a + 1;
    if (!active[a] && !active[b]) return null;
    if (read) {
      // Ties alternate by row, so one long read takes turns on both legs of each pair.
      const row = Math.floor(x.columnOffsetBytes / g.chunkBytes);
      const leg = readable[a] && readable[b] ? pickLeg(policy, [a, b], queued, readUs, rotation + row, stale) : readable[a] ? a : b;
      extents.push(raid10Leg(g, x, leg));
      continue;
    }
    for (const role of [a, b]) if (written[role]) extents.push(op === Op.FLUSH ? { role, elementOffsetBytes: 0, lengthBytes: 0, bufferOffsetBytes: -1 } : raid10Leg(g, x, role));
  }
  w[pb + D.FLAGS] = w[pb + D.FLAGS]! | FLAG_MIRRORED;
  // Reads: the counting rule with 1 (a failed leg leaves a hole in the buffer; Top retries on
  // the partner). Writes: 0 turns counting off, the per-pair rule decides (complete.ts).
  w[pb + D.SPARE] = read ? 1 : 0;
  Atomics.store(w, pb + D.AUX, 0);
  if (read) return { extents, peers: null };
  const peers = Int32Array.from(spec.elements, (_, role) => (active[role ^ 1] ? peerWord(spec.elements[role ^ 1]!) : PEER_UNWRITTEN));
  return { extents, peers };
}

/** FLUSH has no range: it touches every pair (and so needs every pair to have an active leg). */
function everyPair(pairs: number): ColumnExtent[] {
  return Array.from({ length: pairs }, (_, column) => ({ column, columnOffsetBytes: 0, lengthBytes: 0, bufferOffsetBytes: -1 }));
}

function piecesOf(v: SharedViews, parent: number, g: VolumeGeometry, op: number): ColumnExtent[] {
  const off = v.table.getOffset(parent);
  const len = v.words[parent * DESC_WORDS + D.LENGTH]!;
  // Data ops follow the buffer chunk by chunk; trim, zeroes and cache need one extent per leg.
  return op === Op.READ || op === Op.WRITE ? mapRaid10Pairs(g, off, len) : mapRaid10PairsCoalesced(g, off, len);
}
