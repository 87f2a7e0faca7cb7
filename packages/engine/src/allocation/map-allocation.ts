// Pure mapping of base:allocation through a volume's layout (no I/O; unit-tested like map.ts).
// A volume range is cut into segments; each segment is a hole only where EVERY one of its
// sources (element ranges of the same length) is a hole: the legs a read may be served from
// (raid1/raid10), or the surviving units a degraded raid5/6 read XORs. A segment without
// sources is data: when we cannot tell, we say data, never hole.
import { checkRange, mapLinear, type VolumeGeometry } from '../datapath/map.js';
import { elementOffset, indexRole, isParityLayout, parityGeometry } from '../datapath/map-parity.js';
import { raid10Pairs } from '../datapath/map-raid10.js';

/** An element byte range a segment's answer depends on (element offsets include dataOffsetBytes). */
export interface AllocSource {
  readonly role: number;
  readonly elementOffsetBytes: number;
}

export interface AllocSegment {
  readonly volumeOffsetBytes: number;
  readonly lengthBytes: number;
  /** Hole only where every source is a hole; empty = data. */
  readonly sources: readonly AllocSource[];
}

/** One run of an element's (or a volume's) allocation: `zero` = a hole that reads as zeroes. */
export interface AllocRun {
  readonly lengthBytes: number;
  readonly zero: boolean;
}

/** Sorted, contiguous runs of one element from startBytes; they may end before what was asked. */
export interface ElementRuns {
  readonly startBytes: number;
  readonly runs: readonly AllocRun[];
}

/**
 * Segments covering a prefix of [offsetBytes, +lengthBytes): all of it, or the first
 * `segmentsMax` (at least one when lengthBytes > 0). `readable[role]`: the data path reads from
 * that element now (state active); others are never a source.
 */
export function allocationSegments(g: VolumeGeometry, readable: readonly boolean[], offsetBytes: number, lengthBytes: number, segmentsMax: number): AllocSegment[] {
  checkRange(offsetBytes, lengthBytes, g.sizeBytes);
  if (!(Number.isInteger(segmentsMax) && segmentsMax >= 1)) throw new RangeError(`segmentsMax ${segmentsMax} must be a positive integer`);
  if (readable.length !== g.elements.length) throw new RangeError(`${readable.length} readable flags for ${g.elements.length} elements`);
  if (lengthBytes === 0) return [];
  const at = (role: number, off: number): AllocSource => ({ role, elementOffsetBytes: g.elements[role]!.dataOffsetBytes + off });
  switch (g.layout) {
    case 'linear':
      return mapLinear(g, offsetBytes, lengthBytes).slice(0, segmentsMax).map((x) => ({
        volumeOffsetBytes: offsetBytes + x.bufferOffsetBytes, lengthBytes: x.lengthBytes,
        sources: readable[x.role] === true ? [{ role: x.role, elementOffsetBytes: x.elementOffsetBytes }] : [],
      }));
    case 'raid1': {
      const legs = g.elements.map((_, role) => role).filter((role) => readable[role] === true);
      return [{ volumeOffsetBytes: offsetBytes, lengthBytes, sources: legs.map((role) => at(role, offsetBytes)) }];
    }
    case 'raid0':
    case 'raid10': {
      const pairs = g.layout === 'raid10';
      const width = pairs ? raid10Pairs(g) : g.elements.length;
      return chunked(g.chunkBytes, offsetBytes, lengthBytes, segmentsMax, (chunk, within) => {
        const column = chunk % width;
        const off = Math.floor(chunk / width) * g.chunkBytes + within;
        const roles = pairs ? [2 * column, 2 * column + 1] : [column];
        return roles.filter((role) => readable[role] === true).map((role) => at(role, off));
      });
    }
    case 'raid5':
    case 'raid6':
      return paritySegments(g, readable, offsetBytes, lengthBytes, segmentsMax);
    default:
      throw new RangeError(`layout ${String(g.layout)} has no allocation mapping`);
  }
}

/** One segment per chunk touched, at most segmentsMax. */
function chunked(chunkBytes: number, offsetBytes: number, lengthBytes: number, segmentsMax: number, sourcesOf: (chunk: number, within: number) => AllocSource[]): AllocSegment[] {
  const out: AllocSegment[] = [];
  const end = offsetBytes + lengthBytes;
  for (let at = offsetBytes; at < end && out.length < segmentsMax; ) {
    const chunk = Math.floor(at / chunkBytes);
    const within = at - chunk * chunkBytes;
    const len = Math.min(end - at, chunkBytes - within);
    out.push({ volumeOffsetBytes: at, lengthBytes: len, sources: sourcesOf(chunk, within) });
    at += len;
  }
  return out;
}

/**
 * raid5/6: a data chunk on a readable element is that element's allocation. On a missing one it
 * is rebuilt from the row's survivors (data and parity): a hole only where all of them are; with
 * more elements missing than the parity covers the read fails, so say data.
 */
function paritySegments(g: VolumeGeometry, readable: readonly boolean[], offsetBytes: number, lengthBytes: number, segmentsMax: number): AllocSegment[] {
  if (!isParityLayout(g.layout)) throw new RangeError(`layout ${g.layout} keeps no parity`);
  const pg = parityGeometry(g);
  const missing = readable.filter((r) => !r).length;
  return chunked(pg.chunkBytes, offsetBytes, lengthBytes, segmentsMax, (chunk, within) => {
    const row = Math.floor(chunk / pg.k);
    const role = indexRole(pg, row, chunk % pg.k);
    if (readable[role] === true) return [{ role, elementOffsetBytes: elementOffset(pg, role, row, within) }];
    if (missing > pg.np) return [];
    const survivors: AllocSource[] = [];
    for (let r = 0; r < pg.n; r++) if (readable[r] === true) survivors.push({ role: r, elementOffsetBytes: elementOffset(pg, r, row, within) });
    return survivors;
  });
}

/** Per role, the element range its sources span (what to ask each element once). */
export function elementSpans(segments: readonly AllocSegment[]): Map<number, { startBytes: number; endBytes: number }> {
  const spans = new Map<number, { startBytes: number; endBytes: number }>();
  for (const s of segments) {
    for (const src of s.sources) {
      const end = src.elementOffsetBytes + s.lengthBytes;
      const span = spans.get(src.role);
      if (span === undefined) spans.set(src.role, { startBytes: src.elementOffsetBytes, endBytes: end });
      else spans.set(src.role, { startBytes: Math.min(span.startBytes, src.elementOffsetBytes), endBytes: Math.max(span.endBytes, end) });
    }
  }
  return spans;
}

/** Absolute [start, end) intervals of an element's runs, for binary search. */
interface Indexed {
  readonly starts: number[];
  readonly ends: number[];
  readonly zero: boolean[];
  readonly endBytes: number;
}

function indexRuns(r: ElementRuns): Indexed {
  const starts: number[] = [];
  const ends: number[] = [];
  const zero: boolean[] = [];
  let at = r.startBytes;
  for (const run of r.runs) {
    if (!(Number.isSafeInteger(run.lengthBytes) && run.lengthBytes > 0)) throw new RangeError(`element run of ${run.lengthBytes} bytes`);
    starts.push(at);
    at += run.lengthBytes;
    ends.push(at);
    zero.push(run.zero);
  }
  return { starts, ends, zero, endBytes: at };
}

/** Hole intervals of one source within [0, len) of its segment, and how far it is known (<= len). */
function sourceHoles(ix: Indexed, from: number, len: number): { holes: [number, number][]; knownBytes: number } {
  // Runs must start where asked: bytes before the first run are unknown, not holes.
  if (ix.starts.length === 0 || ix.starts[0]! > from) return { holes: [], knownBytes: 0 };
  const knownBytes = Math.max(0, Math.min(len, ix.endBytes - from));
  const holes: [number, number][] = [];
  // First run ending after `from`.
  let lo = 0;
  let hi = ix.ends.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (ix.ends[mid]! <= from) lo = mid + 1;
    else hi = mid;
  }
  for (let i = lo; i < ix.starts.length && ix.starts[i]! < from + knownBytes; i++) {
    if (!ix.zero[i]) continue;
    const a = Math.max(ix.starts[i]!, from) - from;
    const b = Math.min(ix.ends[i]!, from + knownBytes) - from;
    if (b > a) holes.push([a, b]);
  }
  return { holes, knownBytes };
}

function intersect(a: readonly [number, number][], b: readonly [number, number][]): [number, number][] {
  const out: [number, number][] = [];
  for (let i = 0, j = 0; i < a.length && j < b.length; ) {
    const lo = Math.max(a[i]![0], b[j]![0]);
    const hi = Math.min(a[i]![1], b[j]![1]);
    if (hi > lo) out.push([lo, hi]);
    if (a[i]![1] < b[j]![1]) i++;
    else j++;
  }
  return out;
}

/**
 * Volume runs of the segments, in order, given each role's element runs. Stops at the first
 * segment a source does not fully know (keeping the part it does know).
 */
export function combineSegments(segments: readonly AllocSegment[], runsByRole: ReadonlyMap<number, ElementRuns>): AllocRun[] {
  const indexed = new Map<number, Indexed>();
  for (const [role, r] of runsByRole) indexed.set(role, indexRuns(r));
  const out: { lengthBytes: number; zero: boolean }[] = [];
  for (const s of segments) {
    let known = s.lengthBytes;
    let holes: [number, number][] = [];
    s.sources.forEach((src, i) => {
      const ix = indexed.get(src.role);
      const h = ix === undefined ? { holes: [], knownBytes: 0 } : sourceHoles(ix, src.elementOffsetBytes, s.lengthBytes);
      known = Math.min(known, h.knownBytes);
      // One source (linear, raid0, healthy raid5) is the common case: no intersection to build.
      holes = i === 0 ? h.holes : intersect(holes, h.holes);
    });
    let at = 0;
    for (const [a, b] of holes) {
      if (a >= known) break;
      pushRun(out, a - at, false);
      const end = Math.min(b, known);
      pushRun(out, end - a, true);
      at = end;
    }
    pushRun(out, known - at, false);
    if (known < s.lengthBytes) break;
  }
  return out;
}

/** Appends a run, merged into the last one when alike (a striped range yields one run per chunk otherwise). */
function pushRun(out: { lengthBytes: number; zero: boolean }[], lengthBytes: number, zero: boolean): void {
  if (lengthBytes <= 0) return;
  const last = out[out.length - 1];
  if (last !== undefined && last.zero === zero) last.lengthBytes += lengthBytes;
  else out.push({ lengthBytes, zero });
}

/**
 * Merges equal neighbours, shrinks holes to `alignBytes` boundaries (volume offsets) except at
 * the answer's start and end (a hole narrower than that becomes data), and keeps at most
 * extentsMax runs. Flags: 3 = hole|zero, 0 = data.
 */
export function finishRuns(runs: readonly AllocRun[], offsetBytes: number, alignBytes: number, extentsMax: number): { lengthBytes: number; flags: number }[] {
  if (!(Number.isInteger(alignBytes) && alignBytes >= 1)) throw new RangeError(`alignBytes ${alignBytes} must be a positive integer`);
  if (!(Number.isInteger(extentsMax) && extentsMax >= 1)) throw new RangeError(`extentsMax ${extentsMax} must be a positive integer`);
  const merged = mergeRuns(runs);
  const total = merged.reduce((sum, r) => sum + r.lengthBytes, 0);
  const end = offsetBytes + total;
  // Absolute hole intervals, shrunk inward to the grid where they border data.
  const aligned: AllocRun[] = [];
  let at = offsetBytes;
  let pos = offsetBytes;
  for (const r of merged) {
    const start = pos;
    pos += r.lengthBytes;
    if (!r.zero) continue;
    const a = start === offsetBytes ? start : Math.ceil(start / alignBytes) * alignBytes;
    const b = pos === end ? pos : Math.floor(pos / alignBytes) * alignBytes;
    if (b <= a) continue;
    if (a > at) aligned.push({ lengthBytes: a - at, zero: false });
    aligned.push({ lengthBytes: b - a, zero: true });
    at = b;
  }
  if (end > at) aligned.push({ lengthBytes: end - at, zero: false });
  return mergeRuns(aligned).slice(0, extentsMax).map((r) => ({ lengthBytes: r.lengthBytes, flags: r.zero ? 3 : 0 }));
}

function mergeRuns(runs: readonly AllocRun[]): AllocRun[] {
  const out: { lengthBytes: number; zero: boolean }[] = [];
  for (const r of runs) pushRun(out, r.lengthBytes, r.zero);
  return out;
}
