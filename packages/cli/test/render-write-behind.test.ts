// Pure test of the write-behind line under a leg in `onestack status` text (docs/durability.md "Write-behind legs").
import { describe, expect, it } from 'vitest';
import { writeBehindLine } from '../src/render.js';

describe('write-behind status line', () => {
  it('shows lag, bound, in flight, queued and dropped', () => {
    const line = writeBehindLine({ lagBytes: 1.2 * 1024 * 1024, maxLagBytes: 64 * 1024 * 1024, writesInFlight: 32, writesQueued: 310, writesDone: 9000, droppedWrites: 0, peakLagBytes: 2 * 1024 * 1024 });
    expect(line.trim()).toBe('write-behind: lag 1.20 MiB of 64.00 MiB, 32 in flight, 310 queued, 0 dropped');
  });
});
