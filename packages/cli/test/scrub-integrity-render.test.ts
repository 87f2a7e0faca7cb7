// The summary line of a scrub of an integrity volume names each element whose copy failed its
// checksums, with its bad / repaired / unrecoverable block counts (ScrubStatus.byElement); an
// older daemon's result (no byElement) reads as before. The real scrub: test/scrub-integrity.test.ts.
import { describe, expect, it } from 'vitest';
import type { ScrubStatus } from '@onestack/engine';
import { scrubSummary } from '../src/render.js';

const base: ScrubStatus = {
  kind: 'check', startedMs: 1000, finishedMs: 3000, outcome: 'done', checkedBytes: 64 * 1024 * 1024, skippedBytes: 0,
  mismatchedUnits: 0, mismatchedBytes: 0, repairedUnits: 0, ioErrors: 0,
};

describe('scrubSummary with checksum verdicts', () => {
  it('names the element and its blocks on a check and a repair, and says so when none failed', () => {
    const bad = { ...base, mismatchedUnits: 2, mismatchedBytes: 11, byElement: [{ element: 'far', badBlocks: 3, repairedBlocks: 0, unrecoverableBlocks: 0 }] };
    expect(scrubSummary(bad, 'mir')).toMatch(/2 units mismatched \(11 bytes differ\), element far: 3 bad blocks$/);
    const fixed = { ...bad, kind: 'repair' as const, repairedUnits: 2, byElement: [{ element: 'far', badBlocks: 3, repairedBlocks: 3, unrecoverableBlocks: 0 }] };
    expect(scrubSummary(fixed, 'mir')).toMatch(/2 repaired, element far: 3 bad blocks, 3 repaired$/);
    expect(scrubSummary({ ...base, byElement: [] }, 'mir')).toMatch(/no mismatch, checksums: 0 bad blocks$/);
    expect(scrubSummary(base, 'mir')).toMatch(/no mismatch$/);
  });

  it('shows blocks no copy verifies as unrecoverable on every element that holds them', () => {
    const lost = { ...base, kind: 'repair' as const, mismatchedUnits: 1, byElement: [
      { element: 'a0', badBlocks: 1, repairedBlocks: 0, unrecoverableBlocks: 1 }, { element: 'a1', badBlocks: 1, repairedBlocks: 0, unrecoverableBlocks: 1 }] };
    expect(scrubSummary(lost, 'v')).toContain('element a0: 1 bad block, 0 repaired, 1 unrecoverable (no copy verifies), element a1: 1 bad block, 0 repaired, 1 unrecoverable (no copy verifies)');
  });
});
