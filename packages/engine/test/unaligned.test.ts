// Requests that are not multiples of the elements' block size: the span maths (unaligned.ts),
// the write gate's exclusive mode (the range lock behind read-modify-write), and the data path
// over O_DIRECT elements (linear, raid1 of O_DIRECT + page cache, raid5) checked against a model
// and the element files, with the read cache on, the NBD write-buffer path, concurrent writes into
// one block, and the copy counters. Data-path tests import the BUILT dist (workers are .js files).
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataPath } from '../dist/datapath/datapath.js';
import { alignedSpan, chunksSource, isAligned, requestViews, spanFor, splitEdges } from '../src/datapath/unaligned.js';
import { WriteGate, type GateMode } from '../src/datapath/write-gate.js';
import { DATA_OFFSET_BYTES } from '../src/meta/types.js';
import { DATA_BYTES, KiB, MiB, elementsFor, equalBytes, pattern, sparseFiles, tempDir, volume, within } from './datapath-harness.js';
import { readFileRange, rng } from './helpers.js';
import { startParity, stopParity, type ParityRig } from './raid56-harness.js';

type Io = ReturnType<DataPath['volumeIo']>;

describe('span maths', () => {
  it('alignedSpan and isAligned', () => {
    expect(alignedSpan(100, 200, 4096)).toEqual({ start: 0, end: 4096 });
    expect(alignedSpan(4095, 2, 4096)).toEqual({ start: 0, end: 8192 });
    expect(alignedSpan(8192, 4096, 4096)).toEqual({ start: 8192, end: 12288 });
    expect(alignedSpan(12345, 0, 4096)).toEqual({ start: 12345, end: 12345 });
    expect(alignedSpan(513, 511, 512)).toEqual({ start: 512, end: 1024 });
    expect(isAligned(4096, 8192, 4096)).toBe(true);
    expect(isAligned(4096, 100, 4096)).toBe(false);
    expect(isAligned(100, 0, 4096)).toBe(true); // nothing to touch
    expect(isAligned(3, 5, 1)).toBe(true);
    expect(() => alignedSpan(-1, 10, 4096)).toThrow(RangeError);
  });

  it('splitEdges covers the range exactly: partial edges inside one block each, an aligned middle', () => {
    const a = 512;
    for (let off = 0; off < 3 * a; off += 37) {
      for (let len = 1; len < 4 * a; len += 41) {
        const { head, middle, tail } = splitEdges(off, len, a);
        const parts = [head, middle, tail].filter((p) => p !== null);
        expect(parts[0]!.start).toBe(off);
        expect(parts.at(-1)!.end).toBe(off + len);
        for (let i = 1; i < parts.length; i++) expect(parts[i]!.start).toBe(parts[i - 1]!.end);
        if (middle !== null) expect(isAligned(middle.start, middle.end - middle.start, a)).toBe(true);
        for (const e of [head, tail]) {
          if (e === null) continue;
          expect(Math.floor(e.start / a)).toBe(Math.floor((e.end - 1) / a)); // one block
          expect(isAligned(e.start, e.end - e.start, a)).toBe(false);
        }
      }
    }
    expect(splitEdges(0, 8192, 4096)).toEqual({ head: null, middle: { start: 0, end: 8192 }, tail: null });
    expect(splitEdges(4000, 200, 4096)).toEqual({ head: { start: 4000, end: 4096 }, middle: null, tail: { start: 4096, end: 4200 } });
  });

  it('requestViews hands out views of the asked bytes, and chunksSource copies across chunks', () => {
    const span = new Uint8Array(3 * 16).map((_, i) => i);
    const views = [span.subarray(0, 16), span.subarray(16, 32), span.subarray(32, 48)];
    const got = requestViews(views, 1000, 1005, 30);
    expect(got.map((v) => v.length)).toEqual([11, 16, 3]);
    expect(got[0]!.buffer).toBe(span.buffer); // views, not copies
    expect([...Buffer.concat(got)]).toEqual([...span.subarray(5, 35)]);
    expect(() => requestViews(views, 1000, 1040, 20)).toThrow(RangeError);
    const into = new Uint8Array(20);
    chunksSource(views)(10, into);
    expect([...into]).toEqual([...span.subarray(10, 30)]);
    expect(() => chunksSource(views)(40, new Uint8Array(20))).toThrow(RangeError);
  });

  it('spanFor refuses a span past the volume end and a block that does not divide a slot', () => {
    const vol = { name: 'v', sizeBytes: 10_000, alignBytes: 4096 };
    expect(spanFor(100, 200, vol, 8192)).toEqual({ start: 0, end: 4096 });
    expect(spanFor(4096, 4096, vol, 8192)).toEqual({ start: 4096, end: 8192 });
    expect(() => spanFor(9000, 100, vol, 8192)).toThrow(/partial last block/);
    expect(() => spanFor(100, 100, { ...vol, alignBytes: 3000 }, 8192)).toThrow(/does not divide/);
  });
});

const tick = (ms = 5): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('WriteGate exclusive mode (the read-modify-write range lock)', () => {
  it('an exclusive write waits for overlapping writes in flight and keeps new ones out until released', async () => {
    const gate = new WriteGate();
    const events: string[] = [];
    const plain = await gate.enter(100, 100);
    const rmw = gate.enter(0, 4096, 'exclusive').then((r) => { events.push('rmw'); return r; });
    await tick();
    expect(events).toEqual([]);
    const far = await gate.enter(8192, 4096); // no overlap: straight in
    const later = gate.enter(4000, 200).then((r) => { events.push('later'); return r; });
    plain();
    const releaseRmw = await rmw;
    await tick();
    expect(events).toEqual(['rmw']);
    releaseRmw();
    (await later)();
    far();
    expect(events).toEqual(['rmw', 'later']);
    expect(gate.writesInFlight).toBe(0);
    expect(gate.writesWaiting).toBe(0);
  });

  it('is FIFO: a queued exclusive write is not overtaken by later overlapping plain writes (no starvation)', async () => {
    const gate = new WriteGate();
    const order: string[] = [];
    const first = await gate.enter(0, 4096);
    const rmw = gate.enter(0, 4096, 'exclusive').then((r) => { order.push('rmw'); return r; });
    // Plain writes are compatible with the one in flight, but the exclusive one queued first.
    const plains = [0, 1, 2].map((i) => gate.enter(i * 100, 100).then((r) => { order.push(`plain${i}`); return r; }));
    await tick();
    expect(order).toEqual([]);
    first();
    const releaseRmw = await rmw;
    await tick();
    expect(order).toEqual(['rmw']);
    releaseRmw();
    for (const p of plains) (await p)();
    expect(order).toEqual(['rmw', 'plain0', 'plain1', 'plain2']);
  });

  it('two exclusive writes on one block run one after the other; fences and exclusive writes exclude each other', async () => {
    const gate = new WriteGate();
    const events: string[] = [];
    const a = await gate.enter(0, 4096, 'exclusive');
    const b = gate.enter(0, 4096, 'exclusive').then((r) => { events.push('b'); return r; });
    await tick();
    expect(events).toEqual([]);
    const fence = gate.fence(2048, 4096).then((lift) => { events.push('fence'); return lift; });
    await tick();
    expect(events).toEqual([]); // the fence drains a first
    a();
    // A fence holds back queued writes as well as new ones: b waits until it lifts.
    const lift = await fence;
    await tick();
    expect(events).toEqual(['fence']);
    const c = gate.enter(4096, 100, 'exclusive').then((r) => { events.push('c'); return r; });
    await tick();
    expect(events).toEqual(['fence']);
    lift();
    (await b)();
    (await c)();
    expect(events).toEqual(['fence', 'b', 'c']);
    expect(gate.writesInFlight).toBe(0);
  });

  it('random mixes never admit two conflicting writes at once, and every write gets in (bounded)', async () => {
    const gate = new WriteGate();
    const next = rng(7);
    const inside: { start: number; end: number; exclusive: boolean }[] = [];
    let maxInside = 0;
    const one = async (i: number): Promise<void> => {
      const start = next(64) * 512;
      const len = 1 + next(4096);
      const mode: GateMode = next(3) === 0 ? 'exclusive' : 'shared';
      await tick(next(3));
      const release = await gate.enter(start, len, mode);
      const me = { start, end: start + len, exclusive: mode === 'exclusive' };
      for (const o of inside) {
        const overlap = o.start < me.end && me.start < o.end;
        expect(overlap && (o.exclusive || me.exclusive), `write ${i} admitted over a conflicting one`).toBe(false);
      }
      inside.push(me);
      maxInside = Math.max(maxInside, inside.length);
      await tick(next(4));
      inside.splice(inside.indexOf(me), 1);
      release();
    };
    await within(Promise.all(Array.from({ length: 300 }, (_, i) => one(i))), 30_000, 'random gate mix');
    expect(maxInside).toBeGreaterThan(1); // plain writes did overlap in time
    expect(gate.writesInFlight).toBe(0);
    expect(gate.writesWaiting).toBe(0);
  });
});

interface Rig {
  readonly dp: DataPath;
  readonly dir: string;
  readonly paths: string[];
}

/** Volume 0: linear over one O_DIRECT element; volume 1: raid1 of an O_DIRECT and a page-cache element. */
async function startRig(opts: { slots?: number; slotKiB?: number; readCacheMiB?: number } = {}): Promise<Rig | null> {
  const dir = tempDir();
  const paths = sparseFiles(dir, 3);
  const dp = await DataPath.start({
    pools: { top: 1, middle: 1, bottom: 2, remote: 1 },
    queue: { depth: 64, slots: opts.slots ?? 16, slotKiB: opts.slotKiB ?? 64 },
    probeDir: dir,
    readCacheMiB: opts.readCacheMiB ?? 0,
  });
  if (dp.slabMisalignmentBytes === null) {
    await dp.close();
    fs.rmSync(dir, { recursive: true, force: true });
    return null; // O_DIRECT needs the slab's real address (native addon or an O_DIRECT-capable probe dir)
  }
  const els = elementsFor(paths).map((e, i) => ({ ...e, direct: i !== 2 }));
  await dp.setTopology([volume(0, 'linear', [0], DATA_BYTES), volume(1, 'raid1', [1, 2], DATA_BYTES)], els);
  return { dp, dir, paths };
}

async function stopRig(rig: Rig | null): Promise<void> {
  if (rig === null) return;
  await rig.dp.close();
  fs.rmSync(rig.dir, { recursive: true, force: true });
}

async function nbdWrite(io: Io, off: number, data: Uint8Array): Promise<void> {
  const buf = await io.acquireWriteBuffer(data.length);
  let at = 0;
  for (const c of buf.chunks) {
    c.set(data.subarray(at, at + c.length));
    at += c.length;
  }
  await io.writeBuffer(off, buf, { fua: false });
}

async function nbdRead(io: Io, off: number, len: number): Promise<Uint8Array> {
  const r = await io.readSlots(off, len);
  const out = new Uint8Array(Buffer.concat(r.chunks.map((c) => Buffer.from(c.buffer, c.byteOffset, c.length))));
  r.release();
  return out;
}

const REGION_BYTES = 2 * MiB;

/** Random unaligned (and some aligned) writes, zeroes, trims and reads through both APIs, against a model. */
async function randomOps(io: Io, model: Uint8Array, seed: number, count: number): Promise<void> {
  const next = rng(seed);
  for (let i = 0; i < count; i++) {
    const len = next(4) === 0 ? 4096 * (1 + next(40)) : 1 + next(next(2) === 0 ? 9000 : 300_000);
    const off = next(5) === 0 ? 4096 * next((REGION_BYTES - len) / 4096) : next(REGION_BYTES - len);
    const kind = next(10);
    if (kind < 4) {
      const data = pattern(len, seed * 1000 + i);
      model.set(data, off);
      await (kind < 2 ? io.write(off, data, { fua: next(4) === 0 }) : nbdWrite(io, off, data));
    } else if (kind < 6) {
      model.fill(0, off, off + len);
      await (kind === 4 ? io.writeZeroes(off, len) : io.trim(off, len));
    } else {
      const got = kind < 8 ? await io.read(off, len) : await nbdRead(io, off, len);
      expect(equalBytes(got, model.subarray(off, off + len)), `op ${i}: read [${off}, +${len})`).toBe(true);
    }
  }
}

describe('unaligned I/O over O_DIRECT elements', () => {
  let rig: Rig | null = null;
  beforeAll(async () => {
    rig = await startRig({ readCacheMiB: 4 });
  });
  afterAll(() => stopRig(rig));

  for (const [index, name] of [[0, 'linear over O_DIRECT'], [1, 'raid1 of O_DIRECT + page cache']] as const) {
    it(`${name}: random unaligned writes, zeroes, trims and reads match a model and the element files`, async (ctx) => {
      if (rig === null) return ctx.skip();
      const io = rig.dp.volumeIo(index);
      expect(io.alignBytes).toBe(4096);
      const model = new Uint8Array(REGION_BYTES);
      await randomOps(io, model, 11 + index, 300);
      expect(equalBytes(await io.read(0, REGION_BYTES), model)).toBe(true);
      await io.flush();
      const files = index === 0 ? [rig.paths[0]!] : [rig.paths[1]!, rig.paths[2]!];
      for (const f of files) expect(equalBytes(readFileRange(f, DATA_OFFSET_BYTES, REGION_BYTES), model), f).toBe(true);
      const stats = io.stats();
      expect(stats.rmwOps).toBeGreaterThan(50);
      expect(stats.errors).toBe(0);
      expect(rig.dp.elementState(index === 0 ? 0 : 1)).toBe('active');
    });
  }

  it('concurrent unaligned writes into one block (both APIs) all land, with aligned writes around them', async (ctx) => {
    if (rig === null) return ctx.skip();
    const io = rig.dp.volumeIo(1);
    const base = 3 * MiB;
    const model = new Uint8Array(4 * 4096);
    const writes: Promise<void>[] = [];
    // 16 disjoint pieces of the same two blocks, plus whole-block writes next to them, all in flight at once.
    for (let i = 0; i < 16; i++) {
      const off = 100 + i * 500;
      const data = pattern(300 + (i % 3), 500 + i);
      model.set(data, off);
      writes.push(i % 2 === 0 ? io.write(base + off, data) : nbdWrite(io, base + off, data));
    }
    const aligned = pattern(4096, 77);
    model.set(aligned, 3 * 4096);
    writes.push(io.write(base + 3 * 4096, aligned));
    await within(Promise.all(writes), 30_000, 'concurrent unaligned writes');
    expect(equalBytes(await io.read(base, model.length), model)).toBe(true);
    for (const f of [rig.paths[1]!, rig.paths[2]!]) expect(equalBytes(readFileRange(f, DATA_OFFSET_BYTES + base, model.length), model), f).toBe(true);
  });

  it('the read cache stays right: a cached block rewritten by an unaligned write or zeroes reads new bytes', async (ctx) => {
    if (rig === null) return ctx.skip();
    const io = rig.dp.volumeIo(0);
    const base = 5 * MiB;
    const old = pattern(16 * KiB, 1);
    await io.write(base, old);
    expect(equalBytes(await io.read(base, old.length), old)).toBe(true);
    const hits = io.cacheStats().hits;
    expect(equalBytes(await io.read(base + 5, 100), old.subarray(5, 105))).toBe(true);
    expect(io.cacheStats().hits).toBe(hits + 1);
    const patch = pattern(3000, 2);
    await nbdWrite(io, base + 4000, patch);
    const want = old.slice();
    want.set(patch, 4000);
    expect(equalBytes(await nbdRead(io, base, want.length), want)).toBe(true);
    await io.writeZeroes(base + 10, 20);
    want.fill(0, 10, 30);
    expect(equalBytes(await io.read(base, want.length), want)).toBe(true);
    // Reads racing an unaligned write see the old or the new bytes, never a mix put back in the cache.
    const next = pattern(16 * KiB, 3);
    const racing = [io.read(base, 8192), io.write(base + 1, next.subarray(1, 8000)), io.read(base, 8192)];
    await Promise.all(racing);
    want.set(next.subarray(1, 8000), 1);
    expect(equalBytes(await io.read(base, want.length), want)).toBe(true);
    expect(equalBytes(readFileRange(rig.paths[0]!, DATA_OFFSET_BYTES + base, want.length), want)).toBe(true);
  });
});

describe('copy counters', () => {
  let rig: Rig | null = null;
  beforeAll(async () => {
    rig = await startRig({ slots: 16, slotKiB: 4 });
  });
  afterAll(() => stopRig(rig));

  it('NBD reads from slots copy nothing; the embedding API copies once each way; unaligned NBD writes bounce once', async (ctx) => {
    if (rig === null) return ctx.skip();
    const io = rig.dp.volumeIo(1);
    const delta = (before: { copies: number; bytesCopied: number }): [number, number] => [io.stats().copies - before.copies, io.stats().bytesCopied - before.bytesCopied];
    let s = io.stats();
    await nbdWrite(io, 8192, pattern(8192, 1)); // aligned: the payload is already in the slots
    expect(delta(s)).toEqual([0, 0]);
    s = io.stats();
    expect((await nbdRead(io, 8192, 8192)).length).toBe(8192); // aligned, slot views
    expect((await nbdRead(io, 8200, 100)).length).toBe(100); // unaligned: views inside the span's slots
    expect(delta(s)).toEqual([0, 0]);
    s = io.stats();
    await io.write(0, pattern(12 * KiB, 2)); // spans 3 slots: still one copy of the request
    await io.read(0, 12 * KiB);
    expect(delta(s)).toEqual([2, 24 * KiB]);
    s = io.stats();
    await nbdWrite(io, 100, pattern(5000, 3)); // unaligned: one bounce into slots laid out like the span
    await io.write(100, pattern(5000, 4)); // unaligned: the usual copy, into the span's slots
    expect(delta(s)).toEqual([2, 10_000]);
    expect(io.stats().rmwOps).toBe(2);
    expect(io.stats().readOps + io.stats().writeOps).toBe(7);
  });

  it('many concurrent unaligned NBD writes on a tiny slab finish (the RMW slots come from the reserve)', async (ctx) => {
    if (rig === null) return ctx.skip();
    const io = rig.dp.volumeIo(0);
    // 40 disjoint byte ranges, two or three to a 4 KiB block, each write holding payload slots of
    // its own while it waits at the gate for the read-modify-write before it.
    const writes = Array.from({ length: 40 }, (_, i) => ({ off: i * 1500, data: pattern(1 + ((i * 997) % 1400), 900 + i) }));
    await within(Promise.all(writes.map((w) => nbdWrite(io, w.off, w.data))), 60_000, 'unaligned writes on a 16-slot slab');
    const back = await io.read(0, 64 * KiB);
    for (const w of writes) expect(equalBytes(back.subarray(w.off, w.off + w.data.length), w.data), `write at ${w.off}`).toBe(true);
    expect(io.stats()).toMatchObject({ errors: 0, rmwOps: 40 });
  });
});

describe('raid5 over O_DIRECT elements: unaligned writes through the stripe engine', () => {
  let rig: ParityRig | undefined;
  beforeAll(async () => {
    try {
      rig = await startParity('raid5', 3, { direct: true });
    } catch (err) {
      if (!/alignment is unknown/.test(String(err))) throw err; // needs the slab's real alignment
    }
  });
  afterAll(() => stopParity(rig));

  it('random unaligned ops match a model, and degraded reads give the same bytes', async (ctx) => {
    if (rig === undefined) return ctx.skip();
    const io = rig.dp.volumeIo(0);
    const model = new Uint8Array(REGION_BYTES);
    await randomOps(io, model, 21, 120);
    expect(io.stats().rmwOps).toBeGreaterThan(10);
    rig.dp.setElementState(1, 'failed');
    expect(equalBytes(await io.read(0, REGION_BYTES), model)).toBe(true);
    expect(equalBytes(await io.read(777, 5000), model.subarray(777, 5777))).toBe(true);
  });
});
