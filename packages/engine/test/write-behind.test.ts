// The write-behind writer on a fake leg (datapath/write-behind.ts): order of overlapping writes,
// the staging bound and back-pressure, failure (the leg goes out, the queue is dropped), drain.
import { describe, expect, it } from 'vitest';
import { WriteBehind, type BehindSink } from '../dist/datapath/write-behind.js';
import { WriteGate } from '../dist/datapath/write-gate.js';

const SLOT = 16 * 1024;

interface Sent {
  off: number;
  bytes: Uint8Array;
  finish: (err?: Error) => void;
}

class FakeLeg implements BehindSink {
  readonly slotBytes = SLOT;
  readonly slab = new Uint8Array(SLOT * 8);
  readonly sent: Sent[] = [];
  readonly disk = new Map<number, number>(); // offset → first byte written last
  up = true;
  failed = 0;
  maxInFlight = 0;
  private inFlight = 0;
  private windowHeld: number[] = [];
  acquireWindow(count: number): Promise<number[]> {
    this.windowHeld = Array.from({ length: count }, (_, i) => i);
    return Promise.resolve(this.windowHeld);
  }
  releaseWindow(): void {
    this.windowHeld = [];
  }
  view(slot: number, off: number, len: number): Uint8Array {
    return this.slab.subarray(slot * SLOT + off, slot * SLOT + off + len);
  }
  write(off: number, len: number, slot: number, slotOffset: number): Promise<void> {
    const bytes = this.view(slot, slotOffset, len).slice();
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    return new Promise((resolve, reject) => {
      this.sent.push({ off, bytes, finish: (err) => {
        this.inFlight--;
        if (err !== undefined) return reject(err);
        this.disk.set(off, bytes[0]!);
        resolve();
      } });
    });
  }
  legUp(): boolean {
    return this.up;
  }
  fail(): void {
    this.up = false;
    this.failed++;
  }
  get windowSlots(): number {
    return this.windowHeld.length;
  }
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));
const chunk = (len: number, fill: number): Uint8Array => new Uint8Array(len).fill(fill);

async function put(wb: WriteBehind, off: number, len: number, fill: number): Promise<void> {
  const t = await wb.stageChunks([chunk(len, fill)]);
  if (t === null) throw new Error('writer closed');
  wb.commit(t, [off]);
}

describe('write-behind writer', () => {
  it('sends overlapping writes one after the other, in commit order; others at once', async () => {
    const leg = new FakeLeg();
    const wb = new WriteBehind(leg, 64 * 1024);
    await tick();
    await put(wb, 0, 4096, 1);
    await put(wb, 0, 4096, 2); // same block: must wait for the first
    await put(wb, 1 << 20, 4096, 3); // elsewhere: goes at once
    expect(leg.sent.map((s) => s.bytes[0])).toEqual([1, 3]);
    expect(wb.status()).toMatchObject({ lagBytes: 3 * 4096, writesInFlight: 2, writesQueued: 3 });
    leg.sent[1]!.finish();
    leg.sent[0]!.finish();
    await tick();
    expect(leg.sent.map((s) => s.bytes[0])).toEqual([1, 3, 2]);
    leg.sent[2]!.finish();
    await tick();
    expect(leg.disk.get(0)).toBe(2);
    expect(wb.status()).toMatchObject({ lagBytes: 0, writesInFlight: 0, writesQueued: 0, writesDone: 3 });
  });

  it('bounds the staged bytes: a writer waits until the leg has taken earlier writes', async () => {
    const leg = new FakeLeg();
    const wb = new WriteBehind(leg, 32 * 1024);
    await tick();
    for (let i = 0; i < 8; i++) await put(wb, i * SLOT * 4, 4096, i + 1);
    let staged = false;
    const next = wb.stageChunks([chunk(4096, 9)]).then((t) => {
      staged = true;
      return t;
    });
    await tick();
    expect(staged).toBe(false); // 8 × 4 KiB = 32 KiB: full
    expect(wb.status().lagBytes).toBe(32 * 1024);
    leg.sent[3]!.finish(); // not the oldest: its space is freed only in ring order
    await tick();
    expect(staged).toBe(false);
    leg.sent[0]!.finish();
    await tick();
    expect(staged).toBe(true);
    wb.commit((await next)!, [9 * SLOT * 4]);
    expect(wb.status().lagBytes).toBeLessThanOrEqual(32 * 1024);
  });

  it('wraps the staging ring without overwriting bytes still queued', async () => {
    const leg = new FakeLeg();
    const wb = new WriteBehind(leg, 3 * SLOT, { bucketBytes: 4096 });
    await tick();
    await put(wb, 0, SLOT, 1);
    await put(wb, SLOT, SLOT, 2);
    leg.sent[0]!.finish();
    await tick();
    await put(wb, 2 * SLOT, SLOT - 4096, 3);
    await put(wb, 3 * SLOT, SLOT, 4); // does not fit at the end: wraps to the freed front
    await tick();
    for (const s of leg.sent.slice(1)) s.finish();
    await tick();
    for (const s of leg.sent.slice(3)) s.finish();
    await tick();
    expect(leg.sent.map((s) => [s.off, s.bytes[0], s.bytes.at(-1)])).toEqual([[0, 1, 1], [SLOT, 2, 2], [2 * SLOT, 3, 3], [3 * SLOT, 4, 4]]);
  });

  it('a failed write takes the leg out and drops the queue; drain resolves', async () => {
    const leg = new FakeLeg();
    const wb = new WriteBehind(leg, 64 * 1024);
    await tick();
    await put(wb, 0, 4096, 1);
    await put(wb, 0, 4096, 2);
    await put(wb, 1 << 20, 4096, 3);
    const drained = wb.drain();
    leg.sent[0]!.finish(new Error('EIO'));
    await tick();
    expect(leg.failed).toBe(1);
    leg.sent[1]!.finish();
    await drained;
    expect(wb.status()).toMatchObject({ lagBytes: 0, writesQueued: 0, droppedWrites: 2, writesDone: 1 });
    expect(leg.sent.length).toBe(2); // the write queued behind the failed one was never sent
  });

  it('drain waits only for writes committed before it; in-flight sends stay bounded', async () => {
    const leg = new FakeLeg();
    const wb = new WriteBehind(leg, 1024 * 1024, { maxInFlight: 4 });
    await tick();
    for (let i = 0; i < 10; i++) await put(wb, i * 65536, 4096, i);
    expect(leg.sent.length).toBe(4);
    let done = false;
    const d = wb.drain().then(() => {
      done = true;
    });
    await put(wb, 99 * 65536, 4096, 99); // after the drain: not waited for
    for (let n = 0; n < 10; n++) {
      for (const s of leg.sent.slice(n, n + 1)) s.finish();
      await tick();
    }
    await d;
    expect(done).toBe(true);
    expect(leg.maxInFlight).toBeLessThanOrEqual(4);
    expect(wb.status().writesQueued).toBe(1);
    wb.close();
    leg.sent[10]?.finish();
    await tick();
    expect(leg.windowSlots).toBe(0);
  });

  it('merges pending ranges for the bitmap', async () => {
    const leg = new FakeLeg();
    const wb = new WriteBehind(leg, 64 * 1024, { maxInFlight: 1 });
    await tick();
    await put(wb, 0, 4096, 1);
    await put(wb, 4096, 4096, 2);
    await put(wb, 65536, 4096, 3);
    expect(wb.pendingRanges()).toEqual([{ start: 0, end: 8192 }, { start: 65536, end: 65536 + 4096 }]);
  });

  it('a fence (resync copy, scrub) waits until the leg has the writes under it; the bitmap sees them in flight', async () => {
    const leg = new FakeLeg();
    const wb = new WriteBehind(leg, 64 * 1024, { bucketBytes: 4096 });
    await tick();
    const gate = new WriteGate();
    gate.setLagging({ ranges: () => wb.pendingRanges(), settle: (a, b) => wb.settle(a, b) });
    await put(wb, 0, 4096, 1);
    await put(wb, 1 << 20, 4096, 2);
    expect(gate.inFlightRanges()).toEqual([{ start: 0, end: 4096 }, { start: 1 << 20, end: (1 << 20) + 4096 }]);
    let fenced = false;
    const fence = gate.fence(0, 65536).then((lift) => {
      fenced = true;
      return lift;
    });
    const elsewhere = await gate.fence(2 << 20, 65536); // nothing lags there: at once
    elsewhere();
    leg.sent[1]!.finish();
    await tick();
    expect(fenced).toBe(false);
    leg.sent[0]!.finish();
    (await fence)();
    expect(fenced).toBe(true);
    expect(gate.inFlightRanges()).toEqual([]);
  });

  it('close: a writer waiting for staging gets null (it then writes every leg itself); sends in flight end first', async () => {
    const leg = new FakeLeg();
    const wb = new WriteBehind(leg, 16 * 1024);
    await tick();
    for (let i = 0; i < 4; i++) await put(wb, i * 65536, 4096, i);
    const waiting = wb.stageChunks([chunk(4096, 9)]);
    wb.close();
    expect(await waiting).toBeNull();
    expect(await wb.stageChunks([chunk(4096, 9)])).toBeNull();
    expect(leg.windowSlots).toBeGreaterThan(0); // four sends still out
    for (const s of leg.sent) s.finish();
    await wb.drain();
    expect(leg.windowSlots).toBe(0);
  });

  it('an after-step (integrity: the leg\'s checksums) runs once the data is on the leg; drain, settle and the bitmap wait for it', async () => {
    const leg = new FakeLeg();
    const wb = new WriteBehind(leg, 64 * 1024, { bucketBytes: 4096 });
    await tick();
    const gate = new WriteGate();
    gate.setLagging({ ranges: () => wb.pendingRanges(), settle: (a, b) => wb.settle(a, b) });
    const order: string[] = [];
    let endAfter: () => void = () => undefined;
    const t = await wb.stageChunks([chunk(4096, 7)]);
    wb.commit(t!, [8192], [() => {
      order.push(`after (data on leg: ${leg.disk.get(8192) === 7})`);
      return new Promise<void>((resolve) => { endAfter = resolve; });
    }]);
    let drained = false;
    const drain = wb.drain().then(() => { drained = true; });
    let settled = false;
    const settle = gate.settleLagging(8192, 12288).then(() => { settled = true; });
    await tick();
    expect(order).toEqual([]); // the data write is still out: no checksums ahead of it
    leg.sent[0]!.finish();
    await tick();
    expect(order).toEqual(['after (data on leg: true)']);
    expect(drained || settled).toBe(false);
    expect(gate.inFlightRanges()).toEqual([{ start: 8192, end: 12288 }]); // the bit stays set
    endAfter();
    await Promise.all([drain, settle]);
    expect(gate.inFlightRanges()).toEqual([]);
    expect(wb.status()).toMatchObject({ writesDone: 1, droppedWrites: 0 });
  });

  it('a failed after-step fails the leg (its checksums would no longer describe its data)', async () => {
    const leg = new FakeLeg();
    const wb = new WriteBehind(leg, 64 * 1024);
    await tick();
    const t = await wb.stageChunks([chunk(4096, 1)]);
    wb.commit(t!, [0], [() => Promise.reject(new Error('checksum page unreadable'))]);
    await put(wb, 0, 4096, 2); // queued behind it
    leg.sent[0]!.finish();
    await wb.drain();
    expect(leg.failed).toBe(1);
    expect(leg.sent.length).toBe(1);
    expect(wb.status()).toMatchObject({ droppedWrites: 2, writesDone: 0, lagBytes: 0 });
  });

  it('settleLagging with no write-behind leg resolves at once', async () => {
    await new WriteGate().settleLagging(0, 4096);
  });

  it('a write larger than the staging ring less one piece is refused for staging (it would wait forever); smaller ones fit even after a wrap', async () => {
    const leg = new FakeLeg();
    const wb = new WriteBehind(leg, 4 * SLOT);
    await tick();
    expect(wb.canStage([SLOT, SLOT, SLOT])).toBe(true);
    expect(wb.canStage([SLOT, SLOT, SLOT, 4096])).toBe(false);
    expect(new WriteBehind(new FakeLeg(), SLOT).canStage([4096])).toBe(true); // a one-slot ring still takes 4 KiB pieces
    await expect(wb.stageChunks([chunk(SLOT, 1), chunk(SLOT, 1), chunk(SLOT, 1), chunk(SLOT, 1)])).rejects.toThrow(/does not fit/);
    // Head at an odd place in the ring: three whole slots still fit once earlier writes are on the leg.
    await put(wb, 0, 4096, 1);
    leg.sent[0]!.finish();
    await wb.drain();
    const t = await wb.stageChunks([chunk(SLOT, 2), chunk(SLOT, 3), chunk(SLOT, 4)]);
    expect(t).not.toBeNull();
    wb.commit(t!, [SLOT, 2 * SLOT, 3 * SLOT]);
    for (let i = 1; i < 4; i++) {
      await tick(); // one 64 KiB bucket: each waits for the one before
      leg.sent[i]!.finish();
    }
    await wb.drain();
    expect([1, 2, 3].map((i) => leg.disk.get(i * SLOT))).toEqual([2, 3, 4]);
  });
});
