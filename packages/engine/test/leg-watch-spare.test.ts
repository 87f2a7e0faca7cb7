// Automatic spare choice (durable/leg-watch.ts): a spare for an integrity volume must hold a leg's
// data AND its checksum area (replace.ts refuses less), so a too-small one is skipped (logged
// once) rather than tried, failed and marked failed; a spare of unknown size is still tried.
import { describe, expect, it } from 'vitest';
import { LegWatch, legNeedBytes } from '../dist/durable/leg-watch.js';
import { integrityAreaBytes, integrityDataBytes } from '../dist/meta/layout.js';
import { DATA_OFFSET_BYTES } from '../dist/meta/types.js';

const MiB = 1024 * 1024;
const D = integrityDataBytes(DATA_OFFSET_BYTES + 64 * MiB);
const WITH_SUMS = D + integrityAreaBytes(D);

function volume(integrity: boolean, spares: string[]) {
  return {
    config: { name: 'm', layout: 'raid1', integrity, spares, elements: ['a', 'b'] },
    elements: ['a', 'b'].map((name, role) => ({ config: { name }, role, dataSizeBytes: D })),
  };
}

/** LegWatch over a fake host: spares of the given data sizes, all idle. */
function watchWith(spareBytes: Record<string, number>) {
  const logs: string[] = [];
  const elements = new Map(Object.entries(spareBytes).map(([name, dataSizeBytes], index) => [name, { index, dataSizeBytes }]));
  const host = {
    registry: { elements, ownerOf: () => undefined },
    dataPath: { elementState: () => 'spare' },
    log: (_level: string, line: string) => logs.push(line),
  };
  const watch = new LegWatch(host as never, {} as never);
  const pick = (vol: ReturnType<typeof volume>): string | undefined =>
    (watch as unknown as { freeSpare(entry: { assembled: unknown }): string | undefined }).freeSpare({ assembled: vol });
  return { pick, logs };
}

describe('automatic spare selection', () => {
  it('a leg of an integrity volume needs its data and its checksum area', () => {
    expect(WITH_SUMS).toBeGreaterThan(D);
    expect(legNeedBytes(volume(true, []) as never)).toBe(WITH_SUMS);
    expect(legNeedBytes(volume(false, []) as never)).toBe(D);
  });

  it('skips a spare that holds the data but not the checksums, takes the next that fits', () => {
    const { pick, logs } = watchWith({ small: D, big: WITH_SUMS });
    expect(pick(volume(true, ['small', 'big']))).toBe('big');
    expect(logs.filter((l) => l.includes('spare small'))).toHaveLength(1);
    expect(logs[0]).toMatch(/checksums included/);
    // Seen again next tick: not logged again.
    pick(volume(true, ['small', 'big']));
    expect(logs.filter((l) => l.includes('spare small'))).toHaveLength(1);
  });

  it('no spare fits: none is chosen (nothing tried and failed)', () => {
    const { pick } = watchWith({ small: D });
    expect(pick(volume(true, ['small']))).toBeUndefined();
  });

  it('without integrity the data alone fits; a spare of unknown size (0) is still tried', () => {
    expect(watchWith({ small: D }).pick(volume(false, ['small']))).toBe('small');
    expect(watchWith({ remote: 0 }).pick(volume(true, ['remote']))).toBe('remote');
  });
});
