// The fast lane (datapath/fast-lane.ts): page-cache reads served on the main thread must return
// exactly what the queue path would, follow the element states, and leave everything else alone.
import * as fs from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { preadNowait } from '@onestack/native';
import { DATA_OFFSET_BYTES } from '../src/meta/types.js';
import { DATA_BYTES, equalBytes, KiB, MiB, pattern, startWith, stop, within, type Started } from './datapath-harness.js';

const skip = preadNowait() === null ? 'the native addon (preadNowait) is not built or ONESTACK_NOWAIT=off; run pnpm build:native' : null;

describe.skipIf(skip !== null)(`fast lane: inline page-cache reads${skip === null ? '' : ` (skipped: ${skip})`}`, () => {
  let s: Started | undefined;
  afterEach(async () => {
    await stop(s);
    s = undefined;
  });

  it('serves raid0 reads across chunk and element boundaries with the bytes written through the queue', async () => {
    s = await startWith('raid0', 2, { chunkBytes: 64 * KiB });
    const io = s.dp.volumeIo(0);
    const data = pattern(512 * KiB, 7);
    await within(io.write(3 * MiB - 4 * KiB, data), 5000, 'write');
    const before = s.dp.fastLaneStats()!;
    for (const [off, len] of [[3 * MiB - 4 * KiB, 512 * KiB], [3 * MiB + 60 * KiB, 8 * KiB], [3 * MiB, 4 * KiB]] as const) {
      const got = await within(io.read(off, len), 5000, 'read');
      const at = off - (3 * MiB - 4 * KiB);
      expect(equalBytes(got, data.subarray(at, at + len))).toBe(true);
    }
    // The 512 KiB read is two slot-sized pieces (256 KiB slots): 4 lane reads in all, none missed.
    expect(s.dp.fastLaneStats()!.hits - before.hits).toBe(4);
    expect(s.dp.fastLaneStats()!.misses).toBe(before.misses);
  });

  it('reads a raid1 only from active legs: a failed leg holding other bytes is never read', async () => {
    s = await startWith('raid1', 2);
    const io = s.dp.volumeIo(0);
    const data = pattern(64 * KiB, 9);
    await within(io.write(MiB, data), 5000, 'write');
    s.dp.setElementState(1, 'failed');
    // Garbage on the failed leg, where the lane would read it if it ignored the state.
    const fd = fs.openSync(s.paths[1]!, 'r+');
    fs.writeSync(fd, new Uint8Array(64 * KiB).fill(0xee), 0, 64 * KiB, DATA_OFFSET_BYTES + MiB);
    fs.closeSync(fd);
    for (let i = 0; i < 8; i++) {
      const got = await within(io.read(MiB, 64 * KiB), 5000, 'read');
      expect(equalBytes(got, data)).toBe(true);
    }
    expect(s.dp.fastLaneStats()!.hits).toBeGreaterThanOrEqual(8);
  });

  it('counts the element reads it serves, like the queue does', async () => {
    s = await startWith('linear', 1);
    const io = s.dp.volumeIo(0);
    await within(io.write(2 * MiB, pattern(64 * KiB, 5)), 5000, 'write');
    const before = { lane: s.dp.fastLaneStats()!, element: s.dp.elementStats(0) };
    for (let i = 0; i < 8; i++) await within(io.read(2 * MiB + i * 4 * KiB, 4 * KiB), 5000, 'read');
    const lane = s.dp.fastLaneStats()!;
    const element = s.dp.elementStats(0);
    // Written through the page cache a moment ago: every read is a lane hit, and each counts once.
    expect(lane.hits - before.lane.hits).toBe(8);
    expect(element.readOps - before.element.readOps).toBe(8);
    expect(element.readBytes - before.element.readBytes).toBe(32 * KiB);
    expect(element.writeOps).toBe(before.element.writeOps);
    expect(io.stats().readLatencyUs.count).toBe(8);
  });

  it('leaves reads of O_DIRECT volumes to the queue', async () => {
    s = await startWith('linear', 1, { direct: true });
    const io = s.dp.volumeIo(0);
    const data = pattern(16 * KiB, 3);
    await within(io.write(DATA_BYTES - 16 * KiB, data), 5000, 'write');
    const got = await within(io.read(DATA_BYTES - 16 * KiB, 16 * KiB), 5000, 'read');
    expect(equalBytes(got, data)).toBe(true);
    expect(s.dp.fastLaneStats()).toEqual({ hits: 0, misses: 0 });
  });
});
